"""The forecaster console against a real PostgreSQL: pages, escaping, roles, and live events over SSE."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient
from prometheus_client import CollectorRegistry

from tests.factories_app import service
from warnings_svc.dissemination.partners.registry import DEMO_SOURCE, import_csv
from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.transitions import Action, Actor, Role
from warnings_svc.settings import Settings
from warnings_svc.vocabulary import LEVEL_COLOURS
from warnings_svc.web.accounts import create_user
from warnings_svc.web.events import EVENT_HUB, Event, EventHub, EventMetrics, parse_notification

PASSWORD = "correct horse battery"
DEMO_DEPARTMENTS = Path(__file__).parents[2] / "warnings_svc" / "demo" / "departments.csv"
XSS = "<script>alert(1)</script>"
CTX = ws.Issuing.from_settings(Settings())
EVENT_SECONDS = 5.0


@asynccontextmanager
async def console(url: str, data_dir: Path) -> AsyncIterator[TestClient]:
    """The production app factory on a real pool, with its event listener up."""
    async with service(url, data_dir) as client:
        assert await client.app[EVENT_HUB].wait_listening(10)
        yield client


@pytest.fixture
async def client(built_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with console(built_url, tmp_path) as c:
        yield c


@pytest.fixture
async def conn(built_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(built_url)
    try:
        yield c
    finally:
        await c.close()


async def new_user(conn: asyncpg.Connection, role: str, display_name: str = "") -> tuple[str, str]:
    """A user with a password; returns (name, bearer token)."""
    name = f"{role[:4]}{uuid.uuid4().hex[:8]}"
    user, token = await create_user(conn, name, role, password=PASSWORD, display_name=display_name)
    return user.name, token


async def log_in(client: TestClient, name: str) -> None:
    client.session.cookie_jar.clear()
    response = await client.post(
        "/console/login", data={"name": name, "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 303, await response.text()


async def seed_proposal(
    conn: asyncpg.Connection,
    *,
    hazard: str = "sandstorm",
    level: str = "orange",
    areas: tuple[str, ...] = ("150302000000", "150304000000"),
    action: str = "new",
) -> int:
    """An open proposal of a stored run, shaped like `warnings-svc score` output."""
    now = datetime.now(UTC).replace(microsecond=0)
    onset, expires = now + timedelta(hours=3), now + timedelta(hours=12)
    run_id = await conn.fetchval(
        """INSERT INTO svc.forecast_run (content_sha256, files, reference_time, summary)
           VALUES ($1, '[]', $2, $3) RETURNING id""",
        uuid.uuid4().hex,
        now,
        json.dumps({"reference_time": now.isoformat()}),
    )
    document = {
        "hazard": hazard,
        "level": level,
        "action": action,
        "replaces": None,
        "areas": list(areas),
        "onset": onset.isoformat(),
        "expires": expires.isoformat(),
        "probability": 0.8,
        "exposed_population": 12345,
        "polygons": [],
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[106.8, 39.6], [106.9, 39.6], [106.9, 39.7], [106.8, 39.6]]],
        },
        "impacts": [
            {"code": a, "exposed_population": 1000, "vulnerable": {"outdoor_workers": 321.0}} for a in areas
        ],
    }
    return await conn.fetchval(
        """INSERT INTO svc.proposal (run_id, hazard, level, action, areas, onset, expires, probability,
                                     exposed_population, document)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 0.8, 12345, $8) RETURNING id""",
        run_id,
        hazard,
        level,
        action,
        list(areas),
        onset,
        expires,
        json.dumps(document),
    )


async def draft(
    conn: asyncpg.Connection,
    author: str,
    *,
    level: str = "orange",
    note: str = "",
    role: Role = Role.forecaster,
) -> ws.Version:
    now = datetime.now(UTC)
    return await ws.create(
        conn,
        CTX,
        Actor(author, role),
        hazard="heat",
        level=level,
        onset=now + timedelta(hours=2),
        expires=now + timedelta(hours=20),
        content=ws.Content(areas=("150303000000",), note=note),
        now=now,
    )


def csrf_of(html: str) -> str:
    match = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert match, "no csrf meta tag"
    return match.group(1)


async def page(client: TestClient, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/html")
    return await response.text()


# ---------------------------------------------------------------------------------------------- pages


async def test_the_console_sends_a_visitor_who_is_not_logged_in_to_the_login_form(client: TestClient) -> None:
    response = await client.get("/console/", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/console/login?next=/console/")
    response = await client.get("/console/warnings/1?lang=en", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].endswith("&lang=en")


async def test_the_console_shows_the_map_proposals_and_warnings_by_status(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    name, _ = await new_user(conn, "forecaster")
    approver, _ = await new_user(conn, "approver")
    proposal_id = await seed_proposal(conn)
    drafted = await draft(conn, name, level="yellow")
    issued = await draft(conn, name, level="red")
    await ws.act(
        conn, CTX, Actor(name, Role.forecaster), issued.warning_id, Action.submit, now=datetime.now(UTC)
    )
    await ws.act(
        conn, CTX, Actor(approver, Role.approver), issued.warning_id, Action.approve, now=datetime.now(UTC)
    )
    await log_in(client, name)

    html = await page(client, "/console/")
    assert f'data-create-draft="{proposal_id}"' in html
    assert f'data-url="/api/v1/proposals/{proposal_id}/draft"' in html
    assert "创建草稿" in html and "沙尘暴" in html and "海勃湾区、乌达区" in html
    assert f'href="/console/warnings/{drafted.warning_id}"' in html
    drafts = html.split('id="warnings-drafts"')[1].split('id="warnings-pending"')[0]
    assert f'data-warning="{drafted.warning_id}"' in drafts
    live = html.split('id="warnings-issued"')[1]
    assert f'data-warning="{issued.warning_id}"' in live
    # the issued red warning fills Hainan district and its towns; the proposal is a dashed outline
    assert re.search(rf'data-code="150303000000" fill="{LEVEL_COLOURS["red"]}"', html)
    assert re.search(rf'data-code="150303100000" fill="{LEVEL_COLOURS["red"]}"', html)
    assert 'class="proposal-outline"' in html and 'stroke-dasharray="8 5"' in html
    # the yellow draft is a dotted outline of its areas, named, with its own legend line (the issued
    # warning, no longer being prepared, is not)
    draft_outlines = re.findall(r'stroke="([^"]+)" stroke-width="4"\s+stroke-dasharray="0.1 7" '
                                r'stroke-linecap="round"\s+fill-rule="evenodd" class="draft-outline">'
                                r'<title>([^<]*)</title>', html)  # fmt: skip
    assert draft_outlines == [(LEVEL_COLOURS["yellow"], f"#{drafted.warning_id} 高温黄色预警 · 草稿")], (
        draft_outlines
    )
    assert "草稿、待批和退回的预警（点线）" in html and "预警建议（虚线）" in html
    assert html.count('class="unit district') == 3 and html.count('class="unit town') == 20


async def test_every_text_is_escaped_on_the_console_pages(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    name, _ = await new_user(conn, "forecaster", display_name=XSS)
    v = await draft(conn, name, note=XSS)
    await ws.edit(
        conn,
        CTX,
        Actor(name, Role.forecaster),
        v.warning_id,
        {"texts": {"zh-CN": {"headline": XSS, "description": f'"><img src=x onerror=alert(1)>{XSS}'}}},
        now=datetime.now(UTC),
    )
    await log_in(client, name)
    for path in ("/console/", f"/console/warnings/{v.warning_id}"):
        html = await page(client, path)
        assert XSS not in html and "<img src=x" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    html = await page(client, f"/console/warnings/{v.warning_id}")
    assert 'id="warning-note">&lt;script&gt;alert(1)&lt;/script&gt;</dd>' in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in html  # inside the textarea, quote and all
    assert html.count("<script") == 2  # the labels (JSON) and console.js, nothing else


async def test_pages_forbid_framing_and_inline_scripts(client: TestClient, conn: asyncpg.Connection) -> None:
    name, _ = await new_user(conn, "forecaster")
    await log_in(client, name)
    response = await client.get("/console/")
    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    html = await response.text()
    script = re.search(r'<script src="(/static/console\.js\?v=[0-9a-f]{12})" defer>', html)
    assert script, "console.js is not linked with a content hash"
    served = await client.get(script.group(1))
    assert served.status == 200 and "EventSource" in await served.text()


async def test_the_warning_page_shows_impact_responders_channel_texts_and_history(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    name, _ = await new_user(conn, "forecaster")
    proposal_id = await seed_proposal(conn)
    # the demo's synthetic departments, as the demo seeds them
    assert (await import_csv(conn, DEMO_DEPARTMENTS, "wuhai", origin=DEMO_SOURCE)).rejected == []
    await log_in(client, name)
    html = await page(client, "/console/")
    response = await client.post(
        f"/api/v1/proposals/{proposal_id}/draft", headers={"X-CSRF-Token": csrf_of(html)}
    )
    assert response.status == 201, await response.text()
    warning_id = (await response.json())["id"]

    html = await page(client, f"/console/warnings/{warning_id}")
    assert "沙尘暴橙色预警" in html
    assert 'id="impact-population">463,400<' in html  # Haibowan 341,000 + Wuda 122,400
    assert "户外作业人员（人）" in html and "642" in html  # 321 in each of the two areas
    responders = html.split('id="impact-responders"')[1].split("</table>")[0]
    assert "应急管理局" in responders and "教育局" in responders and "交通运输局" in responders
    assert "水务局" not in responders  # rainstorm only
    assert "海南区" not in responders and "乌海市" in responders
    # the city's emergency bureau: its duty contact's phone, then its deputy and leader in small print
    assert (
        "+8615404730011" in responders
        and "副职: 值班副职" in responders
        and "带班领导: 带班领导" in responders
    )
    assert "示例数据/demo data" in html
    assert 'id="sms-short-zh-CN"' in html and "短信（完整）" in html and "小区广播" in html
    assert re.search(r'id="sms-full-segments-zh-CN">\d+ 字 · \d+ / 3 条', html)
    assert "若此刻批准将发布的文本" in html
    timeline = html.split('id="timeline"')[1].split("</ol>")[0]
    assert name in timeline and "创建草稿" in timeline
    # the map of this warning fills its two districts in orange
    warning_map = html.split('id="warning-map"')[1].split("</figure>")[0]
    assert f'data-code="150302000000" fill="{LEVEL_COLOURS["orange"]}"' in warning_map
    assert 'svg viewBox="0 0 640.0' in warning_map and "selectable" in warning_map


async def test_english_is_kept_in_a_cookie(client: TestClient, conn: asyncpg.Connection) -> None:
    name, _ = await new_user(conn, "forecaster")
    await log_in(client, name)
    html = await page(client, "/console/?lang=en")
    assert "Open proposals" in html and '<html lang="en">' in html
    html = await page(client, "/console/")
    assert "Open proposals" in html
    html = await page(client, "/console/?lang=zh")
    assert "待处理的预警建议" in html and '<html lang="zh-CN">' in html


async def test_every_page_in_either_language_shows_no_untranslated_text(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    name, _ = await new_user(conn, "approver")
    await seed_proposal(conn)
    warning = await draft(conn, "someone")
    pages = {}
    for lang in ("zh", "en"):
        pages[f"login {lang}"] = await page(client, f"/console/login?lang={lang}")
        pages[f"first page {lang}"] = await page(client, f"/?lang={lang}")
    await log_in(client, name)
    for lang in ("zh", "en"):
        pages[f"home {lang}"] = await page(client, f"/console/?lang={lang}")
        pages[f"warning {lang}"] = await page(client, f"/console/warnings/{warning.warning_id}?lang={lang}")
        missing = await client.get(f"/console/warnings/999999?lang={lang}")
        pages[f"not found {lang}"] = await missing.text()
    refused = await client.post("/console/logout")  # no CSRF token: the HTML error page
    assert refused.status == 403
    pages["error"] = await refused.text()
    for what, html in pages.items():
        assert "⟦" not in html, f"{what}: {re.findall(r'⟦[^⟧]*⟧', html)}"
    assert "用户名" in pages["login zh"] and "User name" in pages["login en"]
    lead = '<p class="lead">{}<span class="sub">{}</span></p>'
    assert lead.format("气象灾害风险区划", "Meteorological disaster risk zoning") in pages["first page zh"]
    assert lead.format("Meteorological disaster risk zoning", "气象灾害风险区划") in pages["first page en"]
    assert "待处理的预警建议" in pages["home zh"] and "Open proposals" in pages["home en"]
    assert "影响预评估" in pages["warning zh"] and "Impact preview" in pages["warning en"]
    assert "已拒绝跨站或未经验证的请求 Cross-site or unverified request refused" in pages["error"]


async def test_an_unknown_warning_is_a_404_page(client: TestClient, conn: asyncpg.Connection) -> None:
    name, _ = await new_user(conn, "forecaster")
    await log_in(client, name)
    for path in ("/console/warnings/999999", "/console/warnings/x<b>"):
        response = await client.get(path)
        assert response.status == 404
        assert response.headers["Content-Type"].startswith("text/html")
        assert "<b>" not in await response.text()


async def test_a_warning_id_of_digits_that_are_not_ascii_is_a_404_page_not_a_500(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    # str.isdigit() says yes to superscripts and other scripts' digits, which int() refuses
    name, _ = await new_user(conn, "forecaster")
    await log_in(client, name)
    for raw in ("²", "١٢", "12³"):
        response = await client.get(f"/console/warnings/{raw}")
        assert response.status == 404, raw
        assert response.headers["Content-Type"].startswith("text/html")


# ---------------------------------------------------------------------------------------------- roles


def _actions(html: str) -> set[str]:
    return set(re.findall(r'data-action="(\w+)"', html))


async def test_buttons_follow_the_role_the_status_and_the_two_person_rule(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    forecaster, _ = await new_user(conn, "forecaster")
    author, _ = await new_user(conn, "approver")
    other, _ = await new_user(conn, "approver")
    department, _ = await new_user(conn, "department")
    mine = await draft(conn, author, level="orange", role=Role.approver)
    await ws.act(
        conn, CTX, Actor(author, Role.approver), mine.warning_id, Action.submit, now=datetime.now(UTC)
    )
    theirs = await draft(conn, forecaster, level="yellow")
    url = f"/console/warnings/{mine.warning_id}"

    await log_in(client, forecaster)
    html = await page(client, f"/console/warnings/{theirs.warning_id}")
    assert _actions(html) == {"submit", "discard"} and 'id="edit-form"' in html
    html = await page(client, url)
    assert _actions(html) == {"discard"}  # pending: forecasters can neither approve nor return

    await log_in(client, author)
    html = await page(client, url)
    assert _actions(html) == {"approve", "return", "discard"}
    assert re.search(r'id="action-approve" disabled aria-describedby="two-person-note"', html)
    assert "双人规则" in html and "橙色" in html.split('id="two-person-note"')[1].split("</p>")[0]
    # the server refuses too, and names the rule
    response = await client.post(
        f"/api/v1/warnings/{mine.warning_id}/approve", headers={"X-CSRF-Token": csrf_of(html)}
    )
    assert response.status == 403
    problem = await response.json()
    assert problem["code"] == "self_approval"

    await log_in(client, other)
    html = await page(client, url)
    assert re.search(r'id="action-approve">', html) and "two-person-note" not in html

    await log_in(client, department)
    html = await page(client, url)
    assert _actions(html) == set() and 'id="edit-form"' not in html
    home = await page(client, "/console/")
    assert "data-create-draft" not in home


async def test_after_a_discarded_update_draft_the_update_and_cancel_buttons_come_back(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    forecaster, _ = await new_user(conn, "forecaster")
    chief, _ = await new_user(conn, "approver")
    v1 = await draft(conn, forecaster, level="yellow")
    now = datetime.now(UTC)
    await ws.act(conn, CTX, Actor(forecaster, Role.forecaster), v1.warning_id, Action.submit, now=now)
    await ws.act(conn, CTX, Actor(chief, Role.approver), v1.warning_id, Action.approve, now=now)
    await log_in(client, forecaster)
    url = f"/console/warnings/{v1.warning_id}"
    assert _actions(await page(client, url)) == {"update", "cancel"}
    await ws.start_update(conn, CTX, Actor(forecaster, Role.forecaster), v1.warning_id, {}, now=now)
    assert "update" not in _actions(await page(client, url))  # a successor draft is open
    await ws.act(conn, CTX, Actor(forecaster, Role.forecaster), v1.warning_id, Action.discard, now=now)
    assert _actions(await page(client, url)) == {"update", "cancel"}


async def test_the_page_token_lets_the_session_edit_and_nothing_works_without_it(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    name, _ = await new_user(conn, "forecaster")
    v = await draft(conn, name)
    await log_in(client, name)
    html = await page(client, f"/console/warnings/{v.warning_id}")
    body = {"note": "kept"}
    refused = await client.patch(f"/api/v1/warnings/{v.warning_id}", json=body)
    assert refused.status == 403
    done = await client.patch(
        f"/api/v1/warnings/{v.warning_id}", json=body, headers={"X-CSRF-Token": csrf_of(html)}
    )
    assert done.status == 200, await done.text()
    html = await page(client, f"/console/warnings/{v.warning_id}")
    assert 'id="warning-note">kept</dd>' in html
    assert "修改了 note" in html


# ---------------------------------------------------------------------------------------------- live events


async def next_event(response: ClientResponse, kind: str, seconds: float = EVENT_SECONDS) -> dict[str, Any]:
    """The data of the next event called `kind` on an open stream (other events and comments skipped)."""
    async with asyncio.timeout(seconds):
        name = None
        while True:
            line = (await response.content.readline()).decode()
            if not line:
                raise AssertionError("the stream ended")
            if line.startswith("event: "):
                name = line.removeprefix("event: ").strip()
            elif line.startswith("data: ") and name == kind:
                return json.loads(line.removeprefix("data: "))
            elif line == "\n":
                name = None


async def test_the_event_stream_needs_a_login(client: TestClient) -> None:
    response = await client.get("/api/v1/events")
    assert response.status == 401
    assert (await response.json())["type"].endswith("unauthenticated")


async def test_a_warning_store_action_reaches_the_event_stream_within_seconds(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    name, token = await new_user(conn, "forecaster")
    response = await client.get("/api/v1/events", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert (await response.content.readline()).startswith(b"retry: ")
    started = asyncio.get_running_loop().time()
    v = await draft(conn, name)
    data = await next_event(response, "warning")
    assert data == {
        "kind": "warning",
        "id": v.warning_id,
        "version": 1,
        "action": "create",
        "status": "draft",
    }
    assert asyncio.get_running_loop().time() - started < EVENT_SECONDS
    proposal_id = await seed_proposal(conn, hazard="heat", level="yellow", areas=("150303000000",))
    await ws.draft_from_proposal(conn, CTX, Actor(name, Role.forecaster), proposal_id, now=datetime.now(UTC))
    data = await next_event(response, "proposal")
    assert data["id"] == proposal_id and data["status"] == "accepted"
    response.close()


async def test_the_listener_reconnects_after_its_connection_is_killed_and_says_resync(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    name, token = await new_user(conn, "forecaster")
    response = await client.get("/api/v1/events", headers={"Authorization": f"Bearer {token}"})
    killed = await conn.fetchval(
        """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
           WHERE datname = current_database() AND query LIKE 'LISTEN%'"""
    )
    assert killed >= 1
    await next_event(response, "resync", seconds=15)
    v = await draft(conn, name)
    assert (await next_event(response, "warning"))["id"] == v.warning_id
    response.close()


# ---------------------------------------------------------------------------------------------- pure parts


def test_only_the_services_own_notifications_become_events() -> None:
    assert parse_notification('{"kind": "run", "id": 3}').name == "run"
    for payload in ('{"kind": "<script>"}', "[1]", "", '{"id": 1}'):
        assert parse_notification(payload) is None
    event = Event("warning", {"kind": "warning", "id": 1, "note": "a\nb"})
    assert event.encode() == b'event: warning\ndata: {"kind": "warning", "id": 1, "note": "a\\nb"}\n\n'


async def test_a_subscriber_that_does_not_keep_up_is_dropped_and_the_others_are_not() -> None:
    async def never() -> asyncpg.Connection:
        raise OSError("unused")

    hub = EventHub(never, never, EventMetrics(CollectorRegistry()), queue_size=3)  # type: ignore[arg-type]
    with hub.subscribe() as slow, hub.subscribe() as fast:
        for i in range(5):
            hub.publish(Event("warning", {"kind": "warning", "id": i}))
            if not fast.queue.empty():
                fast.queue.get_nowait()
        assert slow.dropped and not fast.dropped
        items = []
        while not slow.queue.empty():
            items.append(slow.queue.get_nowait())
        assert not isinstance(items[-1], Event)  # the end marker: the stream closes, the browser reconnects
