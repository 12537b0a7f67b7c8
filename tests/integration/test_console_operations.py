"""The operations view against a real PostgreSQL: each role's home, a live warning's delivery per channel,
coverage plot and map, escalation banner, acknowledgements, the panel fragment, and the duty marks on the
forecaster's home; every figure from rows written as the outboxes and the coverage watcher write them."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.factories_dispatch import add_recipients, expand_all, issue
from tests.factories_partner_log import Try
from tests.factories_partner_log import delivery as partner_delivery
from tests.factories_partner_log import subscription as partner_subscription
from tests.integration.test_console import CTX, console, log_in, new_user, page, seed_proposal
from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.transitions import Actor, Role

FIRST_PHONE = 13_900_000_000


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


async def live_warning_with_deliveries(conn: asyncpg.Connection, *, hours: float = 24) -> ws.Version:
    """A red warning over the city with six SMS deliveries in every state of the panel: two delivered, one
    sent, one failed, one dead, one still queued."""
    await add_recipients(conn, 6, first_phone=FIRST_PHONE + 100 * (uuid.uuid4().int % 10_000))
    v = await issue(conn, level="red", hours=hours)
    await expand_all(conn)
    ids = [
        r["id"]
        for r in await conn.fetch(
            "SELECT id FROM svc.delivery WHERE warning_id = $1 ORDER BY id LIMIT 6", v.warning_id
        )
    ]
    assert len(ids) == 6
    for delivery_id, state in zip(
        ids, ("delivered", "delivered", "sent", "failed", "dead", None), strict=True
    ):
        if state is not None:
            await conn.execute(
                """UPDATE svc.delivery SET state = $2, queued = false, sent_at = now(), final_at = now(),
                          reason = CASE WHEN $2 IN ('failed', 'dead') THEN 'smsc refused: throttled' ELSE '' END
                   WHERE id = $1""",
                delivery_id,
                state,
            )
    return v


async def add_series(conn: asyncpg.Connection, v: ws.Version, figures: list[tuple[float, float]]) -> None:
    """Coverage snapshots (minutes after issue, public coverage) as the coverage watcher stores them."""
    for minutes, public in figures:
        await conn.execute(
            """INSERT INTO svc.coverage_snapshot (warning_id, version, kind, minutes, public, measured, population,
                                                  reached, target, figures)
               VALUES ($1, $2, 'series', $3, $4::float8, $4::float8 * 0.8, 100000, ($4::float8 * 100000)::bigint, 0.95, '{}')""",
            v.warning_id,
            v.state.version,
            minutes,
            public,
        )


async def add_escalation(
    conn: asyncpg.Connection, v: ws.Version, state: str = "proposed", action: str = "area_sms_again"
) -> int:
    """A step of the ladder raised at the 10-minute checkpoint."""
    escalation_id: int = await conn.fetchval(
        """INSERT INTO svc.coverage_escalation (warning_id, version, checkpoint_min, step, action, state, coverage)
           VALUES ($1, $2, 10, 1, $4, $3, 0.42) RETURNING id""",
        v.warning_id,
        v.state.version,
        state,
        action,
    )
    return escalation_id


def cell(html: str, channel: str, column: str) -> str:
    row = html.split(f'data-channel="{channel}"')[1].split("</tr>")[0]
    match = re.search(rf'data-col="{column}">([^<]*)<', row)
    assert match, f"no {column} cell for {channel}"
    return match.group(1)


async def test_the_operations_user_lands_on_the_operations_view_with_each_live_warnings_progress(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    v = await live_warning_with_deliveries(conn)
    await add_series(conn, v, [(0, 0.0), (5, 0.2), (10, 0.42)])
    escalation_id = await add_escalation(conn, v)
    name, _ = await new_user(conn, "operations")
    await log_in(client, name)

    response = await client.get("/console/", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/console/operations"
    html = await page(client, "/console/operations?lang=en")
    panel = html.split(f'id="ops-{v.warning_id}"')[1].split("</section>")[0]
    assert "Heat red warning" in panel
    counts = {c: cell(panel, "sms/sms", c) for c in ("queued", "sent", "delivered", "failed", "dead")}
    assert counts == {"queued": "1", "sent": "1", "delivered": "2", "failed": "1", "dead": "1"}
    # the plot: the stored series and the figure now, against the dashed 95 % line
    plot = panel.split(f'id="plot-{v.warning_id}"')[1].split("</figure>")[0]
    line = re.search(r'class="public-line" points="([^"]+)"', plot)
    assert line and len(line.group(1).split()) == 4, plot
    assert 'class="target-line"' in plot and "target 95%" in plot
    # the map of coverage by town, the documents, the escalation banner with its one-click button
    assert f'id="coverage-map-{v.warning_id}"' in panel and panel.count('class="unit town') == 20
    key = f"{v.warning_id}-{v.state.version}"
    assert f'href="/api/v1/alerts/{key}.cap"' in panel and f'href="/api/v1/alerts/{key}.gbt.xml"' in panel
    assert f'href="/alerts/{key}"' in panel
    assert f'data-escalation="{escalation_id}"' in panel
    assert f'data-url="/api/v1/warnings/{v.warning_id}/escalations/{escalation_id}/apply"' in panel
    assert f'data-url="/api/v1/warnings/{v.warning_id}/escalations/{escalation_id}/decline"' in panel
    assert "operator area SMS again" in panel and "42.0%" in panel
    # the queues and the day's failures of the whole service
    assert "SMS to registered people" in html and "smsc refused: throttled" in html


async def test_the_panel_fragment_follows_new_receipts(client: TestClient, conn: asyncpg.Connection) -> None:
    v = await live_warning_with_deliveries(conn)
    name, _ = await new_user(conn, "operations")
    await log_in(client, name)
    fragment = await page(client, f"/console/operations/warnings/{v.warning_id}")
    assert cell(fragment, "sms/sms", "delivered") == "2"
    await conn.execute(
        "UPDATE svc.delivery SET state = 'delivered', final_at = now() WHERE warning_id = $1 AND state = 'sent'",
        v.warning_id,
    )
    fragment = await page(client, f"/console/operations/warnings/{v.warning_id}")
    assert cell(fragment, "sms/sms", "delivered") == "3" and cell(fragment, "sms/sms", "sent") == "0"
    for path, status in (
        ("/console/operations/warnings/999999999", 404),
        ("/console/operations/warnings/x1", 404),
        ("/console/operations/warnings/0", 404),
        (f"/console/operations/warnings/{v.warning_id}?part=everything", 400),
        ("/console/operations?lang=fr", 400),
    ):
        response = await client.get(path)
        assert response.status == status, path
        assert response.headers["Content-Type"].startswith("text/html"), path  # an error page, as declared
    described = (await (await client.get("/openapi.json")).json())["paths"]
    assert "/console/operations" in described and "/console/operations/warnings/{id}" in described


async def test_an_issued_warnings_page_shows_the_panel_and_links_its_documents(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    v = await live_warning_with_deliveries(conn)
    await add_escalation(conn, v)
    name, _ = await new_user(conn, "forecaster")
    await log_in(client, name)
    html = await page(client, f"/console/warnings/{v.warning_id}")
    assert f'id="ops-{v.warning_id}"' in html
    assert f'data-panel-url="/console/operations/warnings/{v.warning_id}?part=warning"' in html
    key = f"{v.warning_id}-{v.state.version}"
    assert f'href="/api/v1/alerts/{key}.cap"' in html and f'href="/api/v1/alerts/{key}.gbt.xml"' in html
    assert cell(html, "sms/sms", "dead") == "1"
    # a forecaster sees the proposed step but may not apply it
    assert "data-escalation=" in html and "data-apply=" not in html
    # a draft has no panel
    draft = await ws.create(
        conn,
        CTX,
        Actor(name, Role.forecaster),
        hazard="heat",
        level="yellow",
        onset=datetime.now(UTC) + timedelta(hours=2),
        expires=datetime.now(UTC) + timedelta(hours=8),
        content=ws.Content(areas=("150303000000",)),
        now=datetime.now(UTC),
    )
    assert "data-ops-panel" not in await page(client, f"/console/warnings/{draft.warning_id}")


async def test_each_role_sees_its_own_console(client: TestClient, conn: asyncpg.Connection) -> None:
    department, _ = await new_user(conn, "department")
    await log_in(client, department)
    response = await client.get("/console/", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/console/partners"
    assert (await client.get("/console/operations")).status == 403
    forecaster, _ = await new_user(conn, "forecaster")
    await log_in(client, forecaster)
    assert (await client.get("/console/operations")).status == 403
    assert 'id="nav-operations"' not in await page(client, "/console/")
    for role in ("approver", "admin"):
        name, _ = await new_user(conn, role)
        await log_in(client, name)
        assert 'id="nav-operations"' in await page(client, "/console/")
        assert 'class="ops-heading"' in await page(client, "/console/operations")


async def test_the_forecasters_home_marks_late_proposals_and_warnings_about_to_expire(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    late = await seed_proposal(conn)
    fresh = await seed_proposal(conn)
    await conn.execute("UPDATE svc.proposal SET onset = now() - interval '10 minutes' WHERE id = $1", late)
    run_id = await conn.fetchval("SELECT run_id FROM svc.proposal WHERE id = $1", late)
    await conn.execute(
        "UPDATE svc.forecast_run SET reference_time = now() - interval '20 hours' WHERE id = $1", run_id
    )
    ending = await issue(conn, level="yellow", hours=0.5)
    await conn.execute(
        "UPDATE svc.warning SET onset = now() - interval '1 hour' WHERE id = $1", ending.warning_id
    )
    await conn.execute(
        "UPDATE svc.warning SET expires = now() + interval '20 minutes' WHERE id = $1", ending.warning_id
    )
    name, _ = await new_user(conn, "forecaster")
    await log_in(client, name)
    html = await page(client, "/console/?lang=en")
    late_row = html.split(f'id="proposal-{late}"')[1].split("</tr>")[0]
    fresh_row = html.split(f'id="proposal-{fresh}"')[1].split("</tr>")[0]
    assert 'data-mark="onset_passed"' in late_row and 'data-mark="run_old"' in late_row
    assert "data-mark" not in fresh_row
    card = html.split(f'data-warning="{ending.warning_id}"')[-1].split("</li>")[0]
    assert "data-expiring" in card and "expires within the hour" in card


async def test_a_proposed_escalation_is_gone_from_the_banner_once_decided(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    v = await live_warning_with_deliveries(conn)
    escalation_id = await add_escalation(conn, v)
    name, _ = await new_user(conn, "operations")
    await log_in(client, name)
    assert f'data-apply="{escalation_id}"' in await page(client, "/console/operations")
    await conn.execute(
        """UPDATE svc.coverage_escalation SET state = 'applied', decided_by = $2, decided_at = now()
           WHERE id = $1""",
        escalation_id,
        name,
    )
    html = await page(client, f"/console/operations/warnings/{v.warning_id}?lang=en")
    assert f'data-apply="{escalation_id}"' not in html
    assert f'data-escalation-row="{escalation_id}" data-state="applied"' in html and name in html


async def test_area_and_partner_deliveries_fill_their_rows_and_their_failures_show_in_the_queues(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    v = await issue(conn, level="orange", hazard="sandstorm")
    key = (v.warning_id, v.state.version)
    # area channels: one operator done with handsets delivered, another done without evidence yet, the CBC
    # waiting for a retry after a refusal, the broadcast platform given up
    for channel, target, state, attempts, reason in (
        ("area_sms", "china-mobile", "done", 1, ""),
        ("area_sms", "china-unicom", "done", 1, ""),
        ("cell_broadcast", "cbc", "pending", 2, "cbc answered 503"),
        ("broadcast_platform", "county", "dead", 5, "platform refused the token"),
    ):
        await conn.execute(
            """INSERT INTO svc.area_delivery (warning_id, version, channel, target, msg_type, priority, state,
                                              attempts, reason, content, next_attempt_at)
               VALUES ($1, $2, $3, $4, 'Alert', 1, $5, $6, $7, '{}', now() + interval '1 hour')""",
            *key,
            channel,
            target,
            state,
            attempts,
            reason,
        )
    await conn.execute(
        """INSERT INTO svc.reach_evidence (warning_id, version, channel, target, area, kind, measured, targeted,
                                           sent, delivered)
           VALUES ($1, $2, 'area_sms', 'china-mobile', '150302000000', 'handsets', true, 1000, 990, 950)""",
        *key,
    )
    # partners: a webhook delivered, one retrying after a 502, one given up; an email delivered
    owner, _ = await new_user(conn, "department")
    hook, hook2, hook3 = [await partner_subscription(conn, owner) for _ in range(3)]
    mail = await partner_subscription(conn, owner, channel="email", address="duty@example.cn")
    await partner_delivery(conn, hook, key, state="delivered", tries=[Try("delivered", 200)])
    # written given up, then waiting an hour for its retry in one statement: the service's own partner
    # dispatcher never sees it due
    retrying = await partner_delivery(
        conn, hook2, key, state="dead", tries=[Try("temporary_failure", 502, "bad gateway")]
    )
    await conn.execute(
        """UPDATE svc.partner_delivery SET state = 'pending', done_at = NULL, next_attempt_at = now() + interval '1 hour'
           WHERE id = $1""",
        retrying,
    )
    await partner_delivery(conn, hook3, key, state="dead", tries=[Try("permanent_failure", 410, "gone")])
    await partner_delivery(
        conn,
        mail,
        key,
        state="delivered",
        tries=[Try("delivered", 250)],
        channel="email",
        address="duty@example.cn",
    )
    name, _ = await new_user(conn, "operations")
    await log_in(client, name)
    html = await page(client, "/console/operations?lang=en")
    panel = html.split(f'id="ops-{v.warning_id}"')[1].split("</section>")[0]

    def row(channel: str) -> dict[str, str]:
        return {c: cell(panel, channel, c) for c in ("queued", "sent", "delivered", "failed", "dead")}

    zero = dict.fromkeys(("queued", "sent", "delivered", "failed", "dead"), "0")
    assert row("area/area_sms") == zero | {"sent": "1", "delivered": "1"}
    assert row("area/cell_broadcast") == zero | {"failed": "1"}
    assert row("area/broadcast_platform") == zero | {"dead": "1"}
    assert row("partner/webhook") == zero | {"delivered": "1", "failed": "1", "dead": "1"}
    assert row("partner/email") == zero | {"delivered": "1"}
    queues = html.split('id="service-state"')[1].split("</section>")[0]
    assert "cbc answered 503" in queues and "platform refused the token" in queues
    assert "bad gateway" in queues or "gone" in queues  # the webhooks' latest failure of the day
