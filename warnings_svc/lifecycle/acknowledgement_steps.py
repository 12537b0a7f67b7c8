"""Acknowledgements (叫应) and relayers' reports with their audit entries: the lifecycle's side of
`warnings_svc.dissemination.partners.acknowledgements` and `.inbound`.

The dissemination layer decides and writes; this layer appends one audit entry per step in the same
transaction (the audit log lives here): the first calls when a version is issued, every escalation step,
every acknowledgement (SMS reply, one-time link, partner callback, console, duty officer's call), every
call outcome, every relayer's report. `run_forever` is the background loop (in `serve`, beside the expiry
clock) that escalates due requests and handles the messages from phones every
``[acknowledgements] check_interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import asyncpg

from risk_zoning.errors import DatabaseError
from risk_zoning.store import UnitRecord
from warnings_svc.database import DATABASE_FAILURES
from warnings_svc.dissemination.partners import acknowledgements as acks
from warnings_svc.dissemination.partners import inbound
from warnings_svc.lifecycle import audit_log

if TYPE_CHECKING:
    from warnings_svc.lifecycle.store import Issuing

log = logging.getLogger(__name__)
CLOCK_ACTOR = "clock"


async def _audit(
    conn: asyncpg.Connection,
    ctx: Issuing,
    now: datetime,
    actor: str,
    action: str,
    warning_id: int | None,
    after: Mapping[str, Any],
) -> None:
    await audit_log.append(
        conn,
        at=now,
        actor=actor,
        action=action,
        subject=f"warning:{warning_id}" if warning_id is not None else "acknowledgements",
        before=None,
        after=dict(after),
        key=ctx.audit_key,
    )


def _call_json(call: acks.Call) -> dict[str, Any]:
    out = asdict(call)
    out["delivery_ids"] = list(call.delivery_ids)
    return out


async def request_acknowledgements(
    conn: asyncpg.Connection,
    ctx: Issuing,
    warning_id: int,
    version: int,
    units: Mapping[str, UnitRecord],
    *,
    actor: str,
    now: datetime,
    facts: acks.IssuedFacts | None = None,
) -> list[acks.Call]:
    """In the transaction that issues a version: its acknowledgement requests and first calls, audited."""
    calls = await acks.write_requests(
        conn,
        warning_id=warning_id,
        version=version,
        units=units,
        settings=ctx.acknowledgements,
        issuer=ctx.issuer.issuer_name,
        public_url=ctx.issuer.public_url or "",
        now=now,
        facts=facts,
    )
    for call in calls:
        action = "acknowledgement_closed" if call.step_name == "close" else "acknowledgement_call"
        await _audit(conn, ctx, now, actor, action, warning_id, _call_json(call))
    return calls


async def escalate(conn: asyncpg.Connection, ctx: Issuing, *, now: datetime) -> list[acks.Call]:
    """Move every request past its deadline one step (and close those of warnings no longer in force), each
    step audited, in one transaction."""
    async with conn.transaction():
        calls = await acks.escalate_due(
            conn,
            now,
            ctx.acknowledgements,
            issuer=ctx.issuer.issuer_name,
            public_url=ctx.issuer.public_url or "",
        )
        for call in calls:
            action = "acknowledgement_closed" if call.step_name == "close" else "acknowledgement_escalated"
            await _audit(conn, ctx, now, CLOCK_ACTOR, action, call.warning_id, _call_json(call))
    return calls


async def handle_messages(
    conn: asyncpg.Connection, ctx: Issuing, units: Mapping[str, UnitRecord], *, now: datetime
) -> list[inbound.Handled]:
    """Handle the messages from phones waiting (a batch per transaction, until none is left); what changed is
    audited with them."""
    handled_all: list[inbound.Handled] = []
    while True:
        async with conn.transaction():
            handled = await inbound.handle_pending(conn, now=now, units=units)
            for h in handled:
                if h.acknowledged is not None:
                    after = {"request_id": h.acknowledged.request_id, "department": h.acknowledged.department}
                    after |= {"by": h.by, "via": "sms", "sms_id": h.sms_id}
                    await _audit(conn, ctx, now, h.source, "acknowledged", h.acknowledged.warning_id, after)
                elif h.relay is not None:
                    warning_id, recipient_id, reported, people = h.relay
                    after = {
                        "recipient_id": recipient_id,
                        "reported": reported,
                        "people": people,
                        "via": "sms",
                    }
                    await _audit(
                        conn, ctx, now, h.source, "relay_report", warning_id, after | {"sms_id": h.sms_id}
                    )
        handled_all += handled
        if len(handled) < inbound.HANDLE_BATCH:
            return handled_all


async def acknowledge(
    conn: asyncpg.Connection, ctx: Issuing, request_id: int, *, by: str, via: str, actor: str, now: datetime
) -> acks.AckResult:
    """Acknowledge a request (console, call, callback), audited when it changed anything."""
    async with conn.transaction():
        result = await acks.acknowledge(conn, request_id, by=by, via=via, now=now)
        if result.outcome is acks.AckOutcome.acknowledged:
            after = {"request_id": request_id, "department": result.department, "by": by, "via": via}
            await _audit(conn, ctx, now, actor, "acknowledged", result.warning_id, after)
    return result


async def acknowledge_link(
    conn: asyncpg.Connection, ctx: Issuing, token: str, *, actor: str, now: datetime
) -> tuple[acks.TokenLookup, acks.AckResult]:
    """Acknowledge through a one-time link, audited when it changed anything."""
    async with conn.transaction():
        found, result = await acks.acknowledge_token(conn, token, now=now)
        if result.outcome is acks.AckOutcome.acknowledged:
            after = {"request_id": found.request_id, "department": result.department, "by": found.person}
            await _audit(conn, ctx, now, actor, "acknowledged", found.warning_id, after | {"via": "link"})
    return found, result


async def record_call(
    conn: asyncpg.Connection,
    ctx: Issuing,
    request_id: int,
    *,
    reached: bool,
    note: str,
    actor: str,
    now: datetime,
) -> acks.AckResult:
    """The duty officer's call outcome, audited."""
    async with conn.transaction():
        result = await acks.record_call(conn, request_id, reached=reached, note=note, by=actor, now=now)
        if result.outcome in (acks.AckOutcome.acknowledged, acks.AckOutcome.noted):
            after = {
                "request_id": request_id,
                "department": result.department,
                "reached": reached,
                "note": note,
            }
            action = "acknowledged" if reached else "acknowledgement_call_outcome"
            await _audit(conn, ctx, now, actor, action, result.warning_id, after | {"via": "call"})
    return result


async def relay_report(
    conn: asyncpg.Connection,
    ctx: Issuing,
    warning_id: int,
    recipient_id: int,
    reported: int,
    units: Mapping[str, UnitRecord],
    *,
    actor: str,
    now: datetime,
) -> int | None:
    """A relayer's report through their link page, audited; the people counted (None: not in force)."""
    async with conn.transaction():
        people = await inbound.store_relay_report(
            conn, warning_id, recipient_id, reported, now=now, units=units, via="link"
        )
        if people is not None:
            after = {"recipient_id": recipient_id, "reported": reported, "people": people, "via": "link"}
            await _audit(conn, ctx, now, actor, "relay_report", warning_id, after)
    return people


async def run_once(
    conn: asyncpg.Connection, ctx: Issuing, units: Mapping[str, UnitRecord], *, now: datetime
) -> tuple[list[acks.Call], list[inbound.Handled]]:
    """One round: the messages from phones first (an acknowledgement that came in time counts before its
    deadline is looked at), then the escalation."""
    handled = await handle_messages(conn, ctx, units, now=now)
    calls = await escalate(conn, ctx, now=now)
    return calls, handled


async def run_forever(
    pool: asyncpg.Pool,
    ctx: Issuing,
    units_of: Callable[[asyncpg.Connection], Any],
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    on_overdue: Callable[[int], None] | None = None,
) -> None:
    """Every ``check_interval_s``: handle the messages from phones and escalate, then tell `on_overdue` how
    many requests are overdue (`acks.overdue_count`); survives a database outage (one line when it is lost,
    one when it is back)."""
    failing = False
    while True:
        try:
            async with pool.acquire() as conn:
                try:
                    units = await units_of(conn)
                except DatabaseError:  # no risk database yet: relayers' caps fall back to what they serve
                    units = {}
                now = clock()
                calls, handled = await run_once(conn, ctx, units, now=now)
                if on_overdue is not None:
                    on_overdue(await acks.overdue_count(conn, now))
            if calls or handled:
                log.info(
                    "acknowledgements checked",
                    extra={"escalated": len(calls), "messages": len(handled)},
                )
            if failing:
                log.info("acknowledgement checks work again")
            failing = False
        except asyncio.CancelledError:
            raise
        except asyncpg.UndefinedTableError:
            log.debug("acknowledgement check skipped: the schema is not up to date yet")
        except DATABASE_FAILURES as e:
            if not failing:
                log.warning("acknowledgement check failed: %s; retrying every tick", " ".join(str(e).split()))
            failing = True
        except Exception:  # a bug in one round must not stop the escalation for good: log it, go on
            log.exception("acknowledgement check failed")
        await asyncio.sleep(ctx.acknowledgements.check_interval_s)
