"""`warnings-svc demo --smoke`: the whole chain once, on a fresh embedded database, and a JSON summary.

Ingest the demo forecast -> proposals -> a draft from the most severe new one -> submitted by the duty
forecaster, approved by the chief (two people) -> dispatched over SMS to the demo's synthetic people ->
receipts -> reach. Each step's figures go into the summary; the first step that fails stops the run and is
named in ``failed``. Dispatch needs an SMSC (``--smsc``, which `scripts/demo` starts when Node.js is there);
without one the chain stops after approval and the summary says so, and one that takes no TCP connection
fails the dispatch step at once.

Reach is what this service can measure today: the share of the people a warning was sent to whose every SMS
segment was reported delivered to the handset. The public coverage the climate plan asks for (95 % of the
population, across every channel and with confirmations) is not measured yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from risk_zoning.io.database import upgrade
from risk_zoning.store import ensure_built, region_units
from warnings_svc.coverage.evidence import measure, region_of
from warnings_svc.database import MIGRATIONS
from warnings_svc.demo.peers.stage import DemoStage
from warnings_svc.demo.peers.terminals import demo_terminal_rows
from warnings_svc.demo.seeding import seed_demo_departments, seed_demo_forecast
from warnings_svc.demo.users import seed_demo_recipients, seed_demo_users
from warnings_svc.dissemination import outbox
from warnings_svc.dissemination.area_dispatch import (
    AreaDispatcher,
    AreaDispatchOptions,
    area_targets_from_settings,
)
from warnings_svc.dissemination.dispatcher import Dispatcher, endpoints_from_settings, pool_size
from warnings_svc.dissemination.partners import registry
from warnings_svc.dissemination.partners.dispatch import (
    PartnerDispatcher,
    options_from_settings,
    partner_channels_from_settings,
)
from warnings_svc.dissemination.terminals import register_terminals
from warnings_svc.forecast.runs import Inbox, RejectedRun, RunScorer, ScoringUnavailable
from warnings_svc.lifecycle import acknowledgement_steps
from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.transitions import Action, Actor, LifecycleError, Role
from warnings_svc.settings import Settings
from warnings_svc.vocabulary import LEVELS

DISPATCH_TIMEOUT_S = 120.0
AREA_TIMEOUT_S = 60.0  # a loaded machine (CI beside other jobs) is slow to connect hundreds of terminals
SMSC_CONNECT_TIMEOUT_S = 5.0  # an SMSC that does not take a connection by then is reported, not waited for


class SmokeFailed(Exception):
    """A step of the chain failed; the message says which and why."""


async def run_smoke(settings: Settings, url: str, *, peers: bool = True) -> dict[str, Any]:
    """Run the chain on the database at `url` (fresh: the demo forecast must be its first run); with `peers`
    also over the area channels, to the demo's simulated peers."""
    summary: dict[str, Any] = {"ok": False, "region": settings.region}
    started = time.monotonic()
    if not peers:
        await _run_steps(settings, url, summary, None)
        summary["seconds"] = round(time.monotonic() - started, 1)
        return summary
    async with DemoStage(terminal_delay_s=0.05) as stage:
        # the demo's own broker with simulated terminals, and the simulated gateways, CBC and platform
        settings = settings.model_copy(
            update={
                "dispatch": stage.dispatch(settings.dispatch),
                "partners": stage.partner_settings(settings.partners),
            }
        )
        await _run_steps(settings, url, summary, stage)
    summary["seconds"] = round(time.monotonic() - started, 1)
    return summary


async def _run_steps(settings: Settings, url: str, summary: dict[str, Any], stage: DemoStage | None) -> None:
    sms = bool(settings.dispatch.sms)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=pool_size(settings.dispatch) + 2)
    try:
        step = "database"
        try:
            async with pool.acquire() as conn:
                await upgrade(conn, MIGRATIONS)
                summary["risk_database_version"] = await ensure_built(conn, settings.region, progress=False)
            step = "ingest"
            summary["ingest"] = await _ingest(pool, url, settings)
            if stage is not None:
                step = "terminals"
                summary["terminals"] = await _register_terminals(pool, settings, stage)
                async with pool.acquire() as conn:
                    await stage.partners.subscribe(conn, settings.region)
            step = "departments"
            summary["departments"] = await _seed_departments(pool, settings)
            step = "issue"
            summary["warning"] = await _issue(pool, settings, summary["ingest"]["proposals"])
            summary["departments"]["called"] = await _called(pool, settings, summary["warning"])
            if (
                sms
            ):  # before anything sends SMS (the partners' acknowledgement calls too): fail at once, naming it
                step = "dispatch"
                await _reachable(settings)
            if stage is not None:
                step = "broadcast"
                broken = sorted(stage.fleet.broken) if stage.fleet else []
                summary["broadcast"] = await _put_out(pool, url, settings, summary["warning"]["id"], broken)
                step = "partners"
                summary["partners"] = await _send_to_partners(
                    pool, url, settings, summary["warning"]["id"], stage
                )
                step = "acknowledgements"
                summary["acknowledgements"] = await _acknowledgements(
                    pool, settings, summary["warning"]["id"], stage
                )
            if sms:
                step = "dispatch"
                summary["dispatch"] = await _dispatch(pool, url, settings, summary["warning"]["id"])
                summary["reach"] = _reach(summary["dispatch"])
            else:
                summary["dispatch"] = {"skipped": "no SMSC: give --smsc HOST:PORT (scripts/demo starts one)"}
            step = "coverage"
            summary["coverage"] = await _coverage(pool, settings, summary["warning"]["id"])
            summary["ok"] = True
        except SmokeFailed as e:
            summary["failed"] = {"step": step, "error": str(e)}
    finally:
        await pool.close()


async def _seed_departments(pool: asyncpg.Pool, settings: Settings) -> dict[str, Any]:
    """The demo's synthetic departments with their duty chains, as the demo seeds them."""
    report = await seed_demo_departments(pool, settings.region)
    if report is not None and report.rejected:
        first = report.rejected[0]
        raise SmokeFailed(f"departments.csv line {first.line}, {first.column}: {first.reason}")
    async with pool.acquire() as conn:
        departments = await registry.all_departments(conn)
    return {
        "registered": len(departments),
        "people": sum(len(d.people) for d in departments),
        "sectors": sorted({d.sector for d in departments}),
    }


async def _called(pool: asyncpg.Pool, settings: Settings, warning: dict[str, Any]) -> int:
    """How many departments the issued warning calls (the impact preview lists them)."""
    async with pool.acquire() as conn:
        units = await region_units(conn, settings.region)
        called = await registry.departments_in(
            conn, hazard=warning["hazard"], level=warning["level"], areas=warning["areas"], units=units
        )
    return len(called)


async def _register_terminals(pool: asyncpg.Pool, settings: Settings, stage: DemoStage) -> dict[str, Any]:
    """The demo's simulated loudspeakers and displays, registered and connected to the embedded broker."""
    async with pool.acquire() as conn:
        units = await region_units(conn, settings.region)
        rows = demo_terminal_rows(units)
        await register_terminals(conn, rows)
    stage.populate(units)
    connected = await stage.start_terminals(rows)
    return {
        "registered": len(rows),
        "connected": connected,
        "broker": stage.url,
        "simulated": True,
        "broken": len(stage.fleet.broken) if stage.fleet else 0,
    }


async def _put_out(
    pool: asyncpg.Pool, url: str, settings: Settings, warning_id: int, broken: list[str]
) -> dict[str, Any]:
    """Put the warning out to every target of the area channels, and wait for the terminals' playback
    acknowledgements (those of working terminals in the warned areas, or the timeout)."""
    dispatcher = AreaDispatcher(
        pool, url, area_targets_from_settings(settings), AreaDispatchOptions(poll_s=0.2)
    )

    async def settled() -> bool:
        async with pool.acquire() as conn:
            done = await _area_progress(conn, warning_id, broken)
        return bool(
            done["pending"] == 0
            and done["acknowledged"] >= done["expected_acknowledgements"]
            and done["unreported"] == 0
        )

    seconds = await _run_until(dispatcher, settled, "the area dispatcher")
    async with pool.acquire() as conn:
        done = await _area_progress(conn, warning_id, broken)
        evidence = await conn.fetch(
            """SELECT channel, kind, measured, sum(targeted)::bigint AS targeted,
                      sum(delivered)::bigint AS delivered, sum(people)::bigint AS people, count(*) AS areas
               FROM svc.reach_evidence WHERE warning_id = $1 GROUP BY channel, kind, measured""",
            warning_id,
        )
    if done["pending"]:
        raise SmokeFailed(f"{done['pending']} area deliveries not put out within {AREA_TIMEOUT_S:.0f} s")
    return {
        "deliveries": done["states"],
        # every working terminal in the warned areas acknowledges: fewer means acknowledgements were lost
        "terminal_acknowledgements": {
            "expected": done["expected_acknowledgements"],
            "stored": done["acknowledged"],
        },
        "evidence": [
            {
                k: (int(v) if isinstance(v, int | float) and not isinstance(v, bool) else v)
                for k, v in dict(r).items()
            }
            for r in evidence
        ],
        "seconds": round(seconds, 1),
    }


async def _run_until(
    dispatcher: AreaDispatcher | PartnerDispatcher, settled: Callable[[], Awaitable[bool]], what: str
) -> float:
    """Run `dispatcher` until `settled()` says its work is done (at most `AREA_TIMEOUT_S`, polled every
    0.2 s), then stop it; the seconds it ran. `SmokeFailed` when it stopped by itself."""
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    started = time.monotonic()
    try:
        while time.monotonic() - started < AREA_TIMEOUT_S:
            if task.done():
                raise SmokeFailed(f"{what} stopped: {task.exception() or 'without an error'}")
            if await settled():
                break
            await asyncio.sleep(0.2)
        return time.monotonic() - started
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def _send_to_partners(
    pool: asyncpg.Pool, url: str, settings: Settings, warning_id: int, stage: DemoStage
) -> dict[str, Any]:
    """Send the warning to the demo's partner subscriptions (webhooks, emails, an MQTT topic) and report what
    was delivered and what the partners' endpoints received."""
    dispatcher = PartnerDispatcher(
        pool, url, partner_channels_from_settings(settings),
        dataclasses.replace(options_from_settings(settings), poll_s=0.2),
    )  # fmt: skip

    async def settled() -> bool:
        states = await _partner_states(pool, warning_id, dispatcher.channels)
        return not states.get("pending") and not states.get("sending")

    seconds = await _run_until(dispatcher, settled, "the partner dispatcher")
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT channel, state, count(*) AS n FROM svc.partner_delivery
               WHERE warning_id = $1 AND subscription_id IS NOT NULL GROUP BY channel, state ORDER BY 1, 2""",
            warning_id,
        )
    by_channel: dict[str, dict[str, int]] = {}
    for r in rows:
        by_channel.setdefault(r["channel"], {})[r["state"]] = r["n"]
    states = await _partner_states(pool, warning_id, dispatcher.channels)
    if states.get("pending") or states.get("sending"):
        raise SmokeFailed(f"partner deliveries not settled within {AREA_TIMEOUT_S:.0f} s: {states}")
    return {
        "deliveries": by_channel,
        "received": stage.partners.inbox.summary(),
        "seconds": round(seconds, 1),
    }


async def _acknowledgements(
    pool: asyncpg.Pool, settings: Settings, warning_id: int, stage: DemoStage
) -> dict[str, Any]:
    """The simulated duty contacts answer the calls that reached them (four in five, by SMS reply); the
    replies are handled as the service handles them, and the warning's requests are reported by state."""
    ctx = ws.Issuing.from_settings(settings)
    async with pool.acquire() as conn:
        units = await region_units(conn, settings.region)
        replies = await stage.partners.reply_to_calls(conn)
        await acknowledgement_steps.handle_messages(conn, ctx, units, now=datetime.now(UTC))
        rows = await conn.fetch(
            """SELECT state, via, count(*) AS n FROM svc.ack_request WHERE warning_id = $1
               GROUP BY state, via ORDER BY 1, 2""",
            warning_id,
        )
    by_state: dict[str, int] = {}
    by_via: dict[str, int] = {}
    for r in rows:
        by_state[r["state"]] = by_state.get(r["state"], 0) + r["n"]
        if r["via"]:
            by_via[r["via"]] = by_via.get(r["via"], 0) + r["n"]
    return {
        "requests": sum(by_state.values()),
        "by_state": by_state,
        "acknowledged_via": by_via,
        "calls_by_email": len(stage.partners.inbox.calls),
        "replies_from_simulated_contacts": replies,
    }


async def _partner_states(pool: asyncpg.Pool, warning_id: int, channels: Iterable[str]) -> dict[str, int]:
    """The warning's partner deliveries by state, on the channels the smoke has (without an SMSC the calls
    by SMS wait for one)."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            """SELECT state, count(*) AS n FROM svc.partner_delivery
               WHERE warning_id = $1 AND channel = ANY ($2::text[]) GROUP BY state""",
            warning_id,
            list(channels),
        )
    return {r["state"]: r["n"] for r in rows}


async def _area_progress(conn: asyncpg.Connection, warning_id: int, broken: list[str]) -> dict[str, Any]:
    rows = await conn.fetch(
        "SELECT channel || ' ' || target AS target, state FROM svc.area_delivery WHERE warning_id = $1",
        warning_id,
    )
    acknowledged = await conn.fetchval(
        "SELECT count(*) FROM svc.terminal_ack WHERE warning_id = $1", warning_id
    )
    # the working terminals in the warned areas: each should acknowledge once
    expected = await conn.fetchval(
        """SELECT count(*) FROM svc.terminal t, svc.area_delivery d
           WHERE d.warning_id = $1 AND d.channel = 'mqtt' AND d.target = t.target
             AND t.area = ANY(ARRAY(SELECT jsonb_array_elements_text(d.content -> 'area_units')))
             AND t.terminal_id NOT IN (SELECT unnest($2::text[]))""",
        warning_id,
        broken,
    )
    # operators and the platform report progress until their task is done: wait for each one's last report
    unreported = await conn.fetchval(
        """SELECT count(*) FROM svc.area_delivery d
           WHERE d.warning_id = $1 AND d.state = 'done' AND d.channel IN ('area_sms', 'broadcast_platform')
             AND d.msg_type IN ('Alert', 'Update')
             AND (NOT EXISTS (SELECT 1 FROM svc.reach_evidence r
                             WHERE (r.warning_id, r.version, r.channel, r.target) = (d.warning_id, d.version, d.channel, d.target))
              OR EXISTS (SELECT 1 FROM svc.reach_evidence r
                         WHERE (r.warning_id, r.version, r.channel, r.target) = (d.warning_id, d.version, d.channel, d.target)
                           AND NOT r.final))""",
        warning_id,
    )
    return {
        "unreported": unreported,
        "states": {r["target"]: r["state"] for r in rows},
        "pending": sum(r["state"] in ("pending", "sending") for r in rows),
        "acknowledged": acknowledged,
        "expected_acknowledgements": expected,
    }


async def _ingest(pool: asyncpg.Pool, url: str, settings: Settings) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    folder = await loop.run_in_executor(None, seed_demo_forecast, settings.data_dir, settings.region)
    if folder is None:
        raise SmokeFailed(
            f"the inbox in {settings.data_dir} is not empty: the smoke run needs a fresh folder"
        )
    scorer = RunScorer(pool, url, settings.scoring)
    try:
        outcome = await scorer.ingest(Inbox.files_of(folder), settings.region)
    except (RejectedRun, ScoringUnavailable) as e:
        raise SmokeFailed(str(e)) from e
    finally:
        scorer.close()
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, hazard, level, action, areas FROM svc.proposal WHERE id = ANY($1::bigint[]) ORDER BY id",
            outcome.proposal_ids,
        )
    if not rows:
        raise SmokeFailed("the demo forecast gave no proposal")
    return {
        "run_id": outcome.run_id,
        "files": len(Inbox.files_of(folder)),
        "proposals": [dict(r) | {"areas": list(r["areas"])} for r in rows],
    }


async def _issue(pool: asyncpg.Pool, settings: Settings, proposals: list[dict[str, Any]]) -> dict[str, Any]:
    new = [p for p in proposals if p["action"] == "new"]
    if not new:
        raise SmokeFailed("no proposal for a new warning among those of the demo forecast")
    chosen = max(new, key=lambda p: (LEVELS.index(p["level"]), -p["id"]))
    users = {u["name"]: u for u in await seed_demo_users(pool, settings.data_dir)}
    forecaster = Actor("forecaster", Role(users["forecaster"]["role"]))
    chief = Actor("chief", Role(users["chief"]["role"]))
    ctx = ws.Issuing.from_settings(settings)
    try:
        async with pool.acquire() as conn:
            draft = await ws.draft_from_proposal(conn, ctx, forecaster, chosen["id"], now=datetime.now(UTC))
            await ws.act(conn, ctx, forecaster, draft.warning_id, Action.submit, now=datetime.now(UTC))
            issued = await ws.act(
                conn, ctx, chief, draft.warning_id, Action.approve, now=datetime.now(UTC), reason="smoke run"
            )
    except (ws.StoreError, LifecycleError) as e:
        raise SmokeFailed(f"proposal {chosen['id']}: {e}") from e
    return {
        "id": issued.warning_id,
        "from_proposal": chosen["id"],
        "hazard": issued.state.hazard,
        "level": issued.state.level,
        "status": str(issued.state.status),
        "areas": list(issued.content.areas),
        "drafted_by": forecaster.name,
        "approved_by": chief.name,
    }


async def _reachable(settings: Settings) -> None:
    """Fail at once, naming it, when an SMSC does not take a TCP connection (rather than waiting out the
    dispatch timeout with the deliveries queued)."""
    for e in settings.dispatch.sms:
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(e.host, e.port), SMSC_CONNECT_TIMEOUT_S
            )
        except TimeoutError:
            raise SmokeFailed(
                f"the SMSC {e.name} at {e.host}:{e.port} took no connection within {SMSC_CONNECT_TIMEOUT_S:.0f} s"
            ) from None
        except OSError as err:
            raise SmokeFailed(
                f"the SMSC {e.name} at {e.host}:{e.port} is unreachable: {err.strerror or err}"
            ) from None
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _dispatch(pool: asyncpg.Pool, url: str, settings: Settings, warning_id: int) -> dict[str, Any]:
    await _reachable(settings)
    async with pool.acquire() as conn:
        units = await region_units(conn, settings.region)
    towns = sorted(code for code, unit in units.items() if unit.level == "town") or sorted(units)
    registered = await seed_demo_recipients(pool, towns)
    dispatcher = Dispatcher(
        pool, url, settings.dispatch, endpoints_from_settings(settings.dispatch), region=settings.region
    )
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    started = time.monotonic()
    try:
        while not await _settled(pool, warning_id):
            if task.done():
                raise SmokeFailed(f"the dispatcher stopped: {task.exception() or 'without an error'}")
            if time.monotonic() - started > DISPATCH_TIMEOUT_S:
                raise SmokeFailed(
                    f"deliveries not settled within {DISPATCH_TIMEOUT_S:.0f} s (is the SMSC up?)"
                )
            await asyncio.sleep(0.2)
        seconds = time.monotonic() - started
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    async with pool.acquire() as conn:
        progress = await outbox.summary(conn, warning_id)
    return {
        "recipients_registered": registered,
        "deliveries": progress["deliveries"],
        "segments": progress["segments"],
        "receipts": dispatcher.counters["receipts"],
        "seconds": round(seconds, 1),
    }


async def _settled(pool: asyncpg.Pool, warning_id: int) -> bool:
    """Whether the warning's fan-outs are expanded and none of its deliveries waits for a send or a receipt."""
    async with pool.acquire() as conn:
        return bool(
            await conn.fetchval(
                """SELECT EXISTS (SELECT FROM svc.fanout WHERE warning_id = $1)
                      AND NOT EXISTS (SELECT FROM svc.fanout WHERE warning_id = $1 AND state = 'pending')
                      AND NOT EXISTS (SELECT FROM svc.delivery WHERE warning_id = $1
                                      AND state IN ('pending', 'sending', 'sent'))""",
                warning_id,
            )
        )


def _reach(dispatch: dict[str, Any]) -> dict[str, Any]:
    deliveries = dispatch["deliveries"]
    sent_to = sum(n for state, n in deliveries.items() if state != "dropped")
    delivered = deliveries.get("delivered", 0)
    return {
        "people_sent_to": sent_to,
        "delivered_to_handset": delivered,
        "share": round(delivered / sent_to, 4) if sent_to else None,
    }


async def _coverage(pool: asyncpg.Pool, settings: Settings, warning_id: int) -> dict[str, Any]:
    """The warning's public coverage, by the production engine, from the evidence the peers returned."""
    async with pool.acquire() as conn:
        region = region_of(await region_units(conn, settings.region))
        measured = await measure(conn, warning_id, region, settings.coverage, settings.dispatch)
    if measured is None:
        raise SmokeFailed(f"warning {warning_id} was never issued")
    return measured.as_json()
