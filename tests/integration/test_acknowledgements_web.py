"""Acknowledgements on the web against a real PostgreSQL and real HTTP: the one-time link page, the partners'
signed callback (signed by the independent `standardwebhooks` package), the console's panel, call list and
actions, and the relayers' link page."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from standardwebhooks.webhooks import Webhook

from channels.webhooks.signing import new_secret
from tests.factories_acks import add_department, add_relayer, audit_of_request, calls_of, request_of
from tests.factories_app import service
from tests.factories_cli import run_service_cli
from tests.factories_dispatch import expand_all, issue, successor
from warnings_svc.dissemination.partners import inbound
from warnings_svc.lifecycle import acknowledgement_steps as steps
from warnings_svc.web.accounts import create_user
from warnings_svc.web.acknowledgements import RELAY_SECRET
from warnings_svc.web.appkeys import ISSUING

PASSWORD = "correct horse battery"


@pytest.fixture
async def client(built_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    warnings = {
        "public_url": "http://warnings.example.cn"
    }  # http: the session cookie works over the test HTTP
    async with service(built_url, tmp_path, warnings=warnings) as c:
        yield c


@pytest.fixture
async def conn(built_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(built_url)
    yield c
    await c.close()


async def _token_of(conn: asyncpg.Connection, request_id: int) -> str:
    text = json.loads((await calls_of(conn, request_id))[0]["body"])["text"]
    match = re.search(r"/ack/(\S+)$", text)
    assert match, text
    return match.group(1)


async def _state(conn: asyncpg.Connection, request_id: int) -> tuple[str, str]:
    row = await conn.fetchrow("SELECT state, via FROM svc.ack_request WHERE id = $1", request_id)
    return row["state"], row["via"]


async def test_the_one_time_link_shows_acknowledges_once_and_then_says_used(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    department = await add_department(conn)
    v = await issue(conn, level="red", ctx=client.app[ISSUING])
    request = await request_of(conn, v.warning_id, department["id"])
    token = await _token_of(conn, request["id"])
    page = await client.get(f"/ack/{token}")
    html = await page.text()
    assert page.status == 200 and 'id="ack-button"' in html and "确认收到" in html
    done = await client.post(f"/ack/{token}")
    assert done.status == 200 and 'data-state="acknowledged"' in await done.text()
    assert await _state(conn, request["id"]) == ("acknowledged", "link")
    for method in (client.get, client.post):
        again = await method(f"/ack/{token}")
        assert again.status == 410 and 'data-state="used"' in await again.text()
    assert (await audit_of_request(conn, request["id"])).count("acknowledged") == 1
    unknown = await client.post("/ack/not-a-token-at-all")
    assert unknown.status == 404 and 'data-state="unknown"' in await unknown.text()


async def test_a_link_for_a_cancelled_warning_is_gone_and_writes_nothing(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    department = await add_department(conn)
    ctx = client.app[ISSUING]
    v = await issue(conn, level="red", ctx=ctx)
    request = await request_of(conn, v.warning_id, department["id"])
    token = await _token_of(conn, request["id"])
    await successor(conn, v.warning_id, None, ctx=ctx)
    gone = await client.post(f"/ack/{token}")
    assert gone.status == 410 and 'data-state="expired"' in await gone.text()
    assert await _state(conn, request["id"]) == ("closed", "")


def _signed(secret: str, body: bytes, *, at: datetime | None = None) -> dict[str, str]:
    msg_id = f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
        "Content-Type": "application/json",
    }


async def test_a_partner_callback_signed_by_the_department_acknowledges_once(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    department = await add_department(conn)
    other = await add_department(conn)
    secret, old, stranger = new_secret(), new_secret(), new_secret()
    await conn.execute(
        """INSERT INTO svc.subscription (owner, department_id, channel, address, secret, previous_secret,
                                         previous_until)
           VALUES ('partner', $1, 'webhook', 'https://partner.example/hook', $2, $3, now() + interval '1 hour')""",
        department["id"],
        secret,
        old,
    )
    v = await issue(conn, level="red", ctx=client.app[ISSUING])
    request = await request_of(conn, v.warning_id, department["id"])
    body = json.dumps({"identifier": v.identifier, "department": department["code"], "by": "张三"}).encode()

    async def post(b: bytes, headers: dict[str, str]) -> tuple[int, dict]:
        response = await client.post("/api/v1/acknowledgements", data=b, headers=headers)
        return response.status, await response.json()

    # refused, writing nothing: another secret, another department's claim, too old, headers missing, bad body
    assert (await post(body, _signed(stranger, body)))[0] == 401
    claim = json.dumps({"identifier": v.identifier, "department": other["code"], "by": "x"}).encode()
    assert (await post(claim, _signed(secret, claim)))[0] == 401
    assert (await post(body, _signed(secret, body, at=datetime.now(UTC) - timedelta(minutes=6))))[0] == 401
    status, problem = await post(body, {"Content-Type": "application/json"})
    assert status == 400 and problem["code"] == "invalid"
    bad = json.dumps({"identifier": v.identifier, "department": "NOT A CODE", "by": "x"}).encode()
    status, problem = await post(bad, _signed(secret, bad))
    assert status == 422 and problem["field"] == "department"
    assert await _state(conn, request["id"]) == ("waiting", "")
    # the previous secret still works during the rotation; a second callback is a duplicate
    status, answer = await post(body, _signed(old, body))
    assert (status, answer["outcome"]) == (202, "acknowledged")
    status, answer = await post(body, _signed(secret, body))
    assert (status, answer["outcome"]) == (202, "duplicate")
    row = await request_of(conn, v.warning_id, department["id"])
    assert (row["state"], row["via"], row["acknowledged_by"]) == ("acknowledged", "callback", "张三")


async def _log_in(client: TestClient, conn: asyncpg.Connection, role: str) -> tuple[str, str]:
    name = f"{role[:4]}{uuid.uuid4().hex[:8]}"
    _, token = await create_user(conn, name, role, password=PASSWORD)
    client.session.cookie_jar.clear()
    response = await client.post(
        "/console/login", data={"name": name, "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 303
    return name, token


async def test_the_console_shows_acknowledgements_and_records_one_received_by_phone(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    department = await add_department(conn)
    v = await issue(conn, level="red", ctx=client.app[ISSUING])
    request = await request_of(conn, v.warning_id, department["id"])
    name, token = await _log_in(client, conn, "forecaster")
    page = await (await client.get(f"/console/warnings/{v.warning_id}")).text()
    assert f'id="ack-{request["id"]}"' in page and request["code"] in page and "叫应" in page
    assert department["people"]["duty"]["phone"] in page and f'id="acknowledge-{request["id"]}"' in page
    assert "⟦" not in page  # every label translated
    url = f"/api/v1/acknowledgements/{request['id']}/acknowledge"
    _, dept_token = await create_user(conn, f"dept{uuid.uuid4().hex[:8]}", "department", password=PASSWORD)
    refused = await client.post(url, json={"by": "x"}, headers={"Authorization": f"Bearer {dept_token}"})
    assert refused.status == 403
    invalid = await client.post(url, json={"by": ""}, headers={"Authorization": f"Bearer {token}"})
    assert invalid.status == 422
    assert await _state(conn, request["id"]) == ("waiting", "")
    done = await client.post(url, json={"by": "王科长（电话）"}, headers={"Authorization": f"Bearer {token}"})
    assert done.status == 200, await done.text()
    again = await client.post(url, json={"by": "王科长"}, headers={"Authorization": f"Bearer {token}"})
    assert again.status == 409
    row = await request_of(conn, v.warning_id, department["id"])
    assert (row["state"], row["via"], row["acknowledged_by"]) == (
        "acknowledged",
        "console",
        f"王科长（电话） ({name})",
    )
    page = await (await client.get(f"/console/warnings/{v.warning_id}?lang=en")).text()
    assert "console (by phone)" in page and "⟦" not in page


async def test_the_call_list_shows_the_whole_chain_and_takes_the_outcome(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    department = await add_department(conn, ranks={"duty": False, "deputy": False, "leader": True})
    ctx = client.app[ISSUING]
    v = await issue(conn, level="red", ctx=ctx)
    request = await request_of(conn, v.warning_id, department["id"])
    now = datetime.now(UTC)
    for minutes in (11, 22, 33, 44):  # red: 10 minutes a step
        await steps.escalate(conn, ctx, now=now + timedelta(minutes=minutes))
    assert await _state(conn, request["id"]) == ("calling", "")
    _, token = await _log_in(client, conn, "operations")
    page = await (await client.get("/console/acknowledgements")).text()
    assert f'id="ack-{request["id"]}"' in page
    for person in department["people"].values():
        assert person["phone"] in page
    url = f"/api/v1/acknowledgements/{request['id']}/call"
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.post(url, json={"outcome": "maybe"}, headers=auth)).status == 422
    noted = await client.post(url, json={"outcome": "not_reached", "note": "关机"}, headers=auth)
    assert noted.status == 200 and (await noted.json())["outcome"] == "noted"
    assert await _state(conn, request["id"]) == ("calling", "")
    reached = await client.post(url, json={"outcome": "reached", "note": "局长已确认"}, headers=auth)
    assert reached.status == 200
    assert await _state(conn, request["id"]) == ("acknowledged", "call")
    page = await (await client.get("/console/acknowledgements")).text()
    assert f'id="ack-{request["id"]}"' not in page


async def test_a_relayer_reports_on_their_standing_link(client: TestClient, conn: asyncpg.Connection) -> None:
    relayer = await add_relayer(conn, serves=50)
    await expand_all(conn)
    v = await issue(conn, level="yellow", ctx=client.app[ISSUING])
    token = inbound.relay_token(client.app[RELAY_SECRET], relayer["id"])
    page = await client.get(f"/relay/{token}")
    html = await page.text()
    assert page.status == 200 and f'data-warning-id="{v.warning_id}"' in html
    assert (await client.get(f"/relay/{relayer['id']}.forged")).status == 404
    wrong = await client.post(f"/relay/{token}", data={"warning_id": str(v.warning_id), "people": "many"})
    assert wrong.status == 422
    stored = await client.post(f"/relay/{token}", data={"warning_id": str(v.warning_id), "people": "70"})
    assert stored.status == 200 and 'data-state="stored"' in await stored.text()
    row = await conn.fetchrow(
        "SELECT reported, people, via FROM svc.relay_report WHERE warning_id = $1 AND recipient_id = $2",
        v.warning_id,
        relayer["id"],
    )
    assert (row["reported"], row["people"], row["via"]) == (70, 50, "link")


async def test_the_cli_lists_relayers_links_that_the_service_opens(
    client: TestClient, conn: asyncpg.Connection, built_url: str, tmp_path: Path
) -> None:
    relayer = await add_relayer(conn)
    done = run_service_cli(built_url, "recipients", "relay-links", "--data-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    links = {d["id"]: d for d in map(json.loads, done.stdout.splitlines())}
    link = links[relayer["id"]]["link"]
    assert links[relayer["id"]]["phone"] == relayer["phone"]
    assert link.startswith("/relay/")  # no public URL configured for the command
    assert (await client.get(link)).status == 200
