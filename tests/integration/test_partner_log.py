"""The partner delivery log against a real PostgreSQL: subscriptions and deliveries written with SQL (as the
subscription API and the dispatcher leave them), read and sent again through the real HTTP API and the
console page."""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests import factories_partner_log as make
from tests.factories_app import service
from tests.factories_db import fresh_database
from tests.factories_dispatch import wait_until
from tests.factories_partner_log import Try
from tests.factories_partners import WebhookReceiver, running_partners
from warnings_svc.dissemination.partners import log
from warnings_svc.dissemination.partners.outbox import PARTNER_DISPATCH_CHANNEL
from warnings_svc.settings import DispatchSettings
from warnings_svc.web.accounts import create_user
from warnings_svc.web.api.partner_log import DeliveryOut, DeliveryPage

PASSWORD = "correct horse battery"
SECRET_QUERY = "token=s3cret"


@dataclass(frozen=True)
class World:
    """Users (name -> bearer token), and the subscriptions and deliveries the tests read and resend."""

    tokens: dict[str, str]
    dept_a: str
    dept_b: str
    ops: str
    admin: str
    forecaster: str
    sub_a: int  # dept_a's webhook, with the log below
    sub_b: int  # dept_b's email
    sub_gone: int  # dept_a's, deleted
    delivered: int  # sub_a: a 500 then a 200
    dead: int  # sub_a: refused with 410, its time long past
    pending: int  # sub_a
    sending: int  # sub_a
    of_b: int  # sub_b: dead
    of_gone: int  # sub_gone: dead
    of_paused: int  # dept_a's paused subscription: dead


@pytest.fixture(scope="module")
async def world(built_url: str) -> World:
    conn = await asyncpg.connect(built_url)
    try:
        tag = uuid.uuid4().hex[:6]
        tokens = {}
        names = {}
        for key, role in [
            ("dept_a", "department"),
            ("dept_b", "department"),
            ("ops", "operations"),
            ("admin", "admin"),
            ("forecaster", "forecaster"),
        ]:
            names[key] = f"{key.replace('_', '')}{tag}"
            _, tokens[names[key]] = await create_user(conn, names[key], role, password=PASSWORD)
        warnings = [await make.issued_warning(conn) for _ in range(6)]
        sub_a = await make.subscription(
            conn,
            names["dept_a"],
            name="防汛办",
            address=f"https://ops:pw@partner.example.cn/hooks?{SECRET_QUERY}",
            hazards=("rainstorm", "heat"),
            levels=("orange", "red"),
            areas=("150302000000",),
            msg_types=("Alert", "Update"),
        )
        sub_b = await make.subscription(conn, names["dept_b"], channel="email", address="duty@b.example.cn")
        sub_gone = await make.subscription(conn, names["dept_a"], deleted=True)
        delivered = await make.delivery(
            conn,
            sub_a,
            warnings[0],
            tries=[Try("temporary_failure", 500, "server error", 3010), Try("delivered", 200, "", 87)],
        )
        dead = await make.delivery(
            conn,
            sub_a,
            warnings[1],
            state="dead",
            tries=[Try("permanent_failure", 410, "gone")],
            give_up_at=datetime.now(UTC) - timedelta(hours=3),
        )
        pending = await make.delivery(conn, sub_a, warnings[2], state="pending")
        sending = await make.delivery(
            conn, sub_a, warnings[3], state="sending", tries=[Try("temporary_failure", 502)]
        )
        of_b = await make.delivery(
            conn,
            sub_b,
            warnings[0],
            state="dead",
            channel="email",
            address="duty@b.example.cn",
            tries=[Try("permanent_failure", 550, "mailbox unavailable")],
        )
        of_gone = await make.delivery(conn, sub_gone, warnings[0], state="dead")
        sub_paused = await make.subscription(conn, names["dept_a"], state="paused")
        of_paused = await make.delivery(conn, sub_paused, warnings[0], state="dead")
    finally:
        await conn.close()
    return World(
        tokens, names["dept_a"], names["dept_b"], names["ops"], names["admin"], names["forecaster"],
        sub_a, sub_b, sub_gone, delivered, dead, pending, sending, of_b, of_gone, of_paused,
    )  # fmt: skip


@pytest.fixture(scope="module")
async def client(
    built_url: str, world: World, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    # no partner dispatcher: the deliveries are the tests' to read and send again, not to be sent
    dispatch = DispatchSettings(embedded=False)
    async with service(built_url, tmp_path_factory.mktemp("partner-log"), dispatch=dispatch) as c:
        yield c


@pytest.fixture
async def conn(built_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(built_url)
    try:
        yield c
    finally:
        await c.close()


def bearer(world: World, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {world.tokens[name]}"}


async def row_of(conn: asyncpg.Connection, delivery_id: int) -> dict:
    return dict(await conn.fetchrow("SELECT * FROM svc.partner_delivery WHERE id = $1", delivery_id))


# ---------------------------------------------------------------------------------------------- reading


async def test_the_owner_reads_the_log_newest_first_with_every_attempt_and_no_secret(
    client: TestClient, world: World
) -> None:
    response = await client.get(
        f"/api/v1/subscriptions/{world.sub_a}/deliveries", headers=bearer(world, world.dept_a)
    )
    assert response.status == 200
    text = await response.text()
    assert "s3cret" not in text and ":pw@" not in text and "whsec_" not in text
    page = DeliveryPage.model_validate_json(text)
    assert [d.id for d in page.deliveries] == [world.sending, world.pending, world.dead, world.delivered]
    assert page.next is None
    assert page.subscription.address == "https://ops:***@partner.example.cn/hooks?token=***"
    assert page.subscription.hazards == ["rainstorm", "heat"] and page.subscription.owner == world.dept_a
    delivered = page.deliveries[-1]
    assert delivered.state == "delivered" and delivered.resendable and delivered.attempt_count == 2
    assert [(a.attempt, a.outcome, a.status, a.error, a.latency_ms) for a in delivered.attempts] == [
        (1, "temporary_failure", 500, "server error", 3010),
        (2, "delivered", 200, "", 87),
    ]
    assert delivered.attempts[0].started_at < delivered.attempts[1].started_at
    assert not page.deliveries[0].resendable and not page.deliveries[1].resendable  # sending, pending


async def test_state_and_warning_filters_narrow_the_log(client: TestClient, world: World) -> None:
    path = f"/api/v1/subscriptions/{world.sub_a}/deliveries"
    page = DeliveryPage.model_validate(
        await (await client.get(path, params={"state": "dead"}, headers=bearer(world, world.ops))).json()
    )
    assert [d.id for d in page.deliveries] == [world.dead]
    warning_id = page.deliveries[0].warning_id
    page = DeliveryPage.model_validate(
        await (
            await client.get(path, params={"warning_id": warning_id}, headers=bearer(world, world.admin))
        ).json()
    )
    assert [d.id for d in page.deliveries] == [world.dead]


async def test_pages_follow_before_until_the_last_without_gaps_or_repeats(
    client: TestClient, world: World
) -> None:
    url: str | None = f"/api/v1/subscriptions/{world.sub_a}/deliveries?limit=1"
    seen = []
    for _ in range(10):  # bounded: four deliveries, one per page
        if url is None:
            break
        page = DeliveryPage.model_validate(
            await (await client.get(url, headers=bearer(world, world.dept_a))).json()
        )
        seen += [d.id for d in page.deliveries]
        url = page.next
    assert seen == [world.sending, world.pending, world.dead, world.delivered]


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=201", "limit"), ("state=lost", "state"), ("before=x", "before"),
     ("page=2", "page"), ("warning_id=-1", "warning_id")],
)  # fmt: skip
async def test_a_bad_or_unknown_parameter_is_a_400_naming_it(
    client: TestClient, world: World, query: str, field: str
) -> None:
    response = await client.get(
        f"/api/v1/subscriptions/{world.sub_a}/deliveries?{query}", headers=bearer(world, world.dept_a)
    )
    assert response.status == 400
    assert (await response.json())["field"] == field


async def test_a_department_sees_only_its_own_subscriptions_and_deliveries(
    client: TestClient, world: World
) -> None:
    for name, path in [
        (world.dept_b, f"/api/v1/subscriptions/{world.sub_a}/deliveries"),
        (world.dept_b, f"/api/v1/partner-deliveries/{world.delivered}"),
        (world.dept_a, f"/api/v1/partner-deliveries/{world.of_b}"),
        (world.forecaster, f"/api/v1/subscriptions/{world.sub_b}/deliveries"),
        (world.dept_a, "/api/v1/subscriptions/999999999/deliveries"),
        (world.ops, "/api/v1/partner-deliveries/999999999"),
        (world.ops, "/api/v1/partner-deliveries/abc"),
    ]:
        response = await client.get(path, headers=bearer(world, name))
        assert response.status == 404, (name, path)
        assert (await response.json())["code"] == "not_found"
    response = await client.get(
        f"/api/v1/partner-deliveries/{world.of_b}", headers=bearer(world, world.dept_b)
    )
    one = DeliveryOut.model_validate(await response.json())
    assert one.channel == "email" and one.address == "duty@b.example.cn" and one.attempts[0].status == 550
    for name in (world.ops, world.admin):
        response = await client.get(
            f"/api/v1/subscriptions/{world.sub_b}/deliveries", headers=bearer(world, name)
        )
        assert response.status == 200
    assert (await client.get(f"/api/v1/subscriptions/{world.sub_a}/deliveries")).status == 401


# ---------------------------------------------------------------------------------------------- send again


async def test_send_again_puts_a_dead_delivery_back_to_pending_keeps_its_attempts_and_wakes_the_dispatcher(
    client: TestClient, world: World, conn: asyncpg.Connection
) -> None:
    woken: asyncio.Queue[str] = asyncio.Queue()
    await conn.add_listener(PARTNER_DISPATCH_CHANNEL, lambda *args: woken.put_nowait(args[3]))
    before = await row_of(conn, world.dead)
    response = await client.post(
        f"/api/v1/partner-deliveries/{world.dead}/resend", headers=bearer(world, world.dept_a)
    )
    assert response.status == 202, await response.text()
    answer = DeliveryOut.model_validate(await response.json())
    assert answer.state == "pending" and not answer.resendable and len(answer.attempts) == 1
    after = await row_of(conn, world.dead)
    now = await conn.fetchval("SELECT now()")
    assert after["state"] == "pending" and after["attempts"] == before["attempts"] == 1
    assert after["done_at"] is None and abs((after["next_attempt_at"] - now).total_seconds()) < 30
    assert after["give_up_at"] >= now + timedelta(minutes=59)  # its time had passed: an hour more
    assert log.is_resend(after["reason"]) and world.dept_a in after["reason"]
    assert after["body"] == before["body"] and after["message_id"] == before["message_id"]
    async with asyncio.timeout(5):
        assert await woken.get() == "webhook"
    audit = await conn.fetchrow(
        "SELECT actor, action FROM svc.audit_log WHERE subject = $1 ORDER BY seq DESC LIMIT 1",
        f"partner_delivery:{world.dead}",
    )
    assert tuple(audit) == (world.dept_a, "partner_resend")
    # now pending: a second send again is refused and changes nothing
    response = await client.post(
        f"/api/v1/partner-deliveries/{world.dead}/resend", headers=bearer(world, world.ops)
    )
    assert response.status == 409 and (await response.json())["code"] == "not_resendable"
    assert await row_of(conn, world.dead) == after


async def test_send_again_keeps_a_give_up_time_still_ahead(
    client: TestClient, world: World, conn: asyncpg.Connection
) -> None:
    before = await row_of(conn, world.delivered)
    response = await client.post(
        f"/api/v1/partner-deliveries/{world.delivered}/resend", headers=bearer(world, world.admin)
    )
    assert response.status == 202
    after = await row_of(conn, world.delivered)
    assert after["state"] == "pending" and after["give_up_at"] == before["give_up_at"]


@pytest.mark.parametrize(
    ("which", "who", "status", "code"),
    [
        ("pending", "dept_a", 409, "not_resendable"),
        ("sending", "ops", 409, "not_resendable"),
        ("of_gone", "dept_a", 409, "subscription_deleted"),
        ("of_paused", "dept_a", 409, "subscription_inactive"),
        ("of_b", "dept_a", 404, "not_found"),
        ("of_b", "forecaster", 404, "not_found"),
    ],
)
async def test_send_again_refuses_and_writes_nothing(
    client: TestClient, world: World, conn: asyncpg.Connection, which: str, who: str, status: int, code: str
) -> None:
    delivery_id = getattr(world, which)
    before = await row_of(conn, delivery_id)
    response = await client.post(
        f"/api/v1/partner-deliveries/{delivery_id}/resend", headers=bearer(world, getattr(world, who))
    )
    assert response.status == status
    assert (await response.json())["code"] == code
    assert await row_of(conn, delivery_id) == before


async def test_send_again_with_an_idempotency_key_is_done_once_and_answered_the_same(
    client: TestClient, world: World, conn: asyncpg.Connection
) -> None:
    sub = await make.subscription(conn, world.dept_b)
    delivery_id = await make.delivery(conn, sub, await make.issued_warning(conn), state="dropped")
    headers = bearer(world, world.dept_b) | {"Idempotency-Key": f"resend-{delivery_id}"}
    first = await client.post(f"/api/v1/partner-deliveries/{delivery_id}/resend", headers=headers)
    assert first.status == 202
    again = await client.post(f"/api/v1/partner-deliveries/{delivery_id}/resend", headers=headers)
    assert again.status == 202 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json()
    count = await conn.fetchval(
        "SELECT count(*) FROM svc.audit_log WHERE subject = $1", f"partner_delivery:{delivery_id}"
    )
    assert count == 1
    refused = await client.post(
        f"/api/v1/partner-deliveries/{delivery_id}/resend", headers=headers, json={"why": "again"}
    )
    assert refused.status == 422  # the same key with another body


async def test_the_log_is_in_the_api_description(client: TestClient) -> None:
    paths = (await (await client.get("/openapi.json")).json())["paths"]
    listing = paths["/api/v1/subscriptions/{id}/deliveries"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"id", "before", "limit", "state", "warning_id"}
    assert "404" in listing["responses"]
    resend = paths["/api/v1/partner-deliveries/{id}/resend"]["post"]
    assert "Idempotency-Key" in {p["name"] for p in resend["parameters"]}
    assert {"202", "409"} <= set(resend["responses"])
    assert "/api/v1/partner-deliveries/{id}" in paths and "/console/partners" in paths


# ---------------------------------------------------------------------------------------------- the console


async def log_in(client: TestClient, name: str) -> None:
    client.session.cookie_jar.clear()
    response = await client.post(
        "/console/login", data={"name": name, "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 303, await response.text()


def csrf_of(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert found is not None
    return found[1]


async def test_the_console_page_shows_a_department_its_subscriptions_and_log_in_chinese(
    client: TestClient, world: World, conn: asyncpg.Connection
) -> None:
    fresh = await make.delivery(
        conn,
        world.sub_a,
        await make.issued_warning(conn),
        state="dead",
        tries=[Try("permanent_failure", 404)],
    )
    await log_in(client, world.dept_a)
    home = await client.get("/console/")
    assert 'id="nav-partners"' in await home.text()
    response = await client.get(f"/console/partners?subscription={world.sub_a}")
    assert response.status == 200
    html = await response.text()
    assert "合作方" in html and "再次发送" in html and "延迟" in html and "⟦" not in html
    assert f'id="subscription-{world.sub_a}"' in html and f'id="subscription-{world.sub_b}"' not in html
    assert f'id="subscription-{world.sub_gone}"' not in html
    assert "s3cret" not in html and "whsec_" not in html and ":pw@" not in html
    assert "server error" in html and "3010" in html and "暴雨" in html
    assert f'data-resend="{fresh}"' in html
    for delivery_id in (world.sending, world.pending):
        assert f'data-resend="{delivery_id}"' not in html
    other = await client.get(f"/console/partners?subscription={world.sub_b}")
    assert other.status == 404 and "server error" not in await other.text()
    english = await (await client.get(f"/console/partners?subscription={world.sub_a}&lang=en")).text()
    assert "Send again" in english and "Latency (ms)" in english and "⟦" not in english


async def test_operations_see_every_subscription_and_a_forecaster_is_refused(
    client: TestClient, world: World, conn: asyncpg.Connection
) -> None:
    await log_in(client, world.ops)
    html = await (await client.get("/console/partners")).text()
    assert f'id="subscription-{world.sub_a}"' in html and f'id="subscription-{world.sub_b}"' in html
    await log_in(client, world.forecaster)
    assert (await client.get("/console/partners")).status == 403
    html = await (await client.get("/console/")).text()
    before = await row_of(conn, world.of_gone)
    response = await client.post(
        f"/console/partners/deliveries/{world.of_gone}/resend",
        data={"csrf_token": csrf_of(html)},
        allow_redirects=False,
    )
    assert response.status == 303 and "refused=not_found" in response.headers["Location"]
    assert await row_of(conn, world.of_gone) == before
    assert 'id="nav-partners"' not in await (await client.get("/console/")).text()


async def test_send_again_from_the_console_needs_the_csrf_token_and_then_queues_it(
    client: TestClient, world: World, conn: asyncpg.Connection
) -> None:
    delivery_id = world.of_b
    await log_in(client, world.dept_b)
    page = await client.get(f"/console/partners?subscription={world.sub_b}")
    html = await page.text()
    assert f'data-resend="{delivery_id}"' in html
    path = f"/console/partners/deliveries/{delivery_id}/resend"
    before = await row_of(conn, delivery_id)
    forged = await client.post(path, data={"subscription": str(world.sub_b)}, allow_redirects=False)
    assert forged.status == 403 and await row_of(conn, delivery_id) == before
    response = await client.post(
        path, data={"csrf_token": csrf_of(html), "subscription": str(world.sub_b)}, allow_redirects=False
    )
    assert response.status == 303
    assert (
        response.headers["Location"] == f"/console/partners?resent={delivery_id}&subscription={world.sub_b}"
    )
    assert (await row_of(conn, delivery_id))["state"] == "pending"
    shown = await (await client.get(response.headers["Location"])).text()
    assert 'id="resent"' in shown and f'data-resend="{delivery_id}"' not in shown
    # once more: refused, and the page says why
    response = await client.post(
        path, data={"csrf_token": csrf_of(html), "subscription": str(world.sub_b)}, allow_redirects=False
    )
    assert response.status == 303 and "refused=not_resendable" in response.headers["Location"]
    assert 'id="refused"' in await (await client.get(response.headers["Location"])).text()


# ---------------------------------------------------------------------------------------------- with the dispatcher


async def test_a_delivery_sent_again_reaches_the_partner_again_with_the_same_webhook_id(
    pg_server_url: str, tmp_path: Path
) -> None:
    async with fresh_database(pg_server_url, built=True) as url, WebhookReceiver() as receiver:
        conn = await asyncpg.connect(url)
        try:
            owner = f"dept{uuid.uuid4().hex[:6]}"
            _, token = await create_user(conn, owner, "department", password=PASSWORD)
            secret = "whsec_" + base64.b64encode(b"a partner's key for this test!!").decode()
            sub = await make.subscription(
                conn, owner, address=receiver.url + "/hook", hazards=("frost",), secret=secret
            )
            receiver.secrets = {"partner": secret}
            async with running_partners(url):
                warning = await make.issued_warning(conn)  # frost: the subscription's
                await wait_until(lambda: _delivered(conn, sub, 1), 10, "the first delivery")
                (row,) = await conn.fetch(
                    "SELECT id FROM svc.partner_delivery WHERE subscription_id = $1", sub
                )
                async with service(url, tmp_path, dispatch=DispatchSettings(embedded=False)) as client:
                    response = await client.post(
                        f"/api/v1/partner-deliveries/{row['id']}/resend",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert response.status == 202
                    await wait_until(lambda: _delivered(conn, sub, 2), 10, "the delivery sent again")
                    listed = await client.get(
                        f"/api/v1/subscriptions/{sub}/deliveries",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    page = DeliveryPage.model_validate(await listed.json())
        finally:
            await conn.close()
    got = receiver.at("/hook")
    assert len(got) == 2 and all(r.verified_with == ["partner"] for r in got)
    assert got[0].headers["webhook-id"] == got[1].headers["webhook-id"]  # one message, sent twice
    assert got[0].body == got[1].body and got[0].json()["warning_id"] == warning[0]
    (delivery,) = page.deliveries
    assert delivery.state == "delivered" and [a.attempt for a in delivery.attempts] == [1, 2]
    assert all(a.outcome == "delivered" and a.status == 204 for a in delivery.attempts)
    assert [a.manual for a in delivery.attempts] == [False, True]  # the second, by a person's "send again"


async def _delivered(conn: asyncpg.Connection, subscription_id: int, attempts: int) -> bool:
    found = await conn.fetchval(
        """SELECT count(*) FROM svc.partner_delivery d JOIN svc.partner_attempt a ON a.delivery_id = d.id
           WHERE d.subscription_id = $1 AND d.state = 'delivered'""",
        subscription_id,
    )
    return bool(found >= attempts)
