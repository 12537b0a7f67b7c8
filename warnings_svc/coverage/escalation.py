"""The escalation ladder: what happens when a checkpoint finds a warning below the coverage target.

At a checkpoint of its level (`[coverage] checkpoints_min`) a warning whose public coverage at that minute is
below the target raises an alert (an audit entry; the watch's metrics) and the next rung of the ladder
configured for its level (`[coverage.escalation] ladders`): one step per checkpoint missed, the first rung at
the first miss, the second at the next, and so on; a miss after the last rung raises the alert alone. With
``mode = "automatic"`` the step is applied at once, by the watch; with ``one_click`` it waits, proposed, for
the duty officer (`decide`, the API's apply and decline).

A step's states move only through `ESCALATION_TRANSITIONS`, in `escalation_transition`; each move is written
in one transaction with its audit entry. Applying a step really queues messages:

- ``area_sms_again``: the version put out again to every operator area SMS target (a new round of area
  deliveries, `area_outbox.write_area_again`);
- ``cell_broadcast``: the version put out to the cell broadcast centres it was not queued for (the level may
  have been left out of their ``levels``);
- ``loudspeakers_again``: the version put out again to the MQTT brokers of the terminals and to the emergency
  broadcast platforms;
- ``more_relayers``: an SMS to every consenting relayer in the warned areas not yet sent this version
  (`expansion.write_relayer_deliveries`).

A step with nothing to apply (no such target configured, nothing stored to send) ends ``skipped`` with the
reason. The ladder stops once the target is met: `stop_open` moves the steps still proposed to ``stopped``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

import asyncpg

from risk_zoning.store import UnitRecord
from warnings_svc.dissemination import area_outbox, expansion
from warnings_svc.dissemination.area_outbox import AreaTarget
from warnings_svc.lifecycle import audit_log
from warnings_svc.lifecycle.store import Issuing
from warnings_svc.settings import CoverageSettings

WATCH_ACTOR = "coverage-watch"  # who raises steps and applies them in automatic mode
SMS_CHANNEL = "sms"  # the registered people's channel: relayers are texted on it


class EscalationState(StrEnum):
    proposed = "proposed"  # waiting for the duty officer
    applied = "applied"  # its messages are queued
    declined = "declined"  # the duty officer said no
    skipped = "skipped"  # nothing to apply (the reason says why)
    stopped = "stopped"  # the target was met (or the warning ended) before anyone decided


class EscalationEvent(StrEnum):
    apply = "apply"
    skip = "skip"  # an apply that found nothing to do
    decline = "decline"
    stop = "stop"


ESCALATION_TRANSITIONS: Mapping[tuple[EscalationState, EscalationEvent], EscalationState] = {
    (EscalationState.proposed, EscalationEvent.apply): EscalationState.applied,
    (EscalationState.proposed, EscalationEvent.skip): EscalationState.skipped,
    (EscalationState.proposed, EscalationEvent.decline): EscalationState.declined,
    (EscalationState.proposed, EscalationEvent.stop): EscalationState.stopped,
}

# the area channels each action puts the version out on, and whether it goes again where it went before
_AREA_ACTIONS: Mapping[str, tuple[tuple[str, ...], bool]] = {
    "area_sms_again": (("area_sms",), True),
    "cell_broadcast": (("cell_broadcast",), False),
    "loudspeakers_again": (("mqtt", "broadcast_platform"), True),
}


class EscalationError(Exception):
    """A decision that cannot be taken: ``not_found`` (no such step of that warning) or ``conflict`` (not
    proposed any more, or the warning is no longer in force); one line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class StepCounter(Protocol):
    """Where each step's new state is counted (`warnings_svc.coverage.metrics.CoverageMetrics`)."""

    def count_step(self, action: str, state: str) -> None: ...


def escalation_transition(state: EscalationState, event: EscalationEvent) -> EscalationState:
    """The state a step moves to on `event`; `EscalationError` ``conflict`` when the move is not allowed."""
    found = ESCALATION_TRANSITIONS.get((state, event))
    if found is None:
        raise EscalationError("conflict", f"a step that is {state} cannot be {event}: only a proposed one")
    return found


def next_rung(ladder: Sequence[str], raised: int) -> tuple[int, str] | None:
    """The step to raise after `raised` steps: (its number from 1, its action); None when the ladder is done.

    >>> next_rung(("area_sms_again", "cell_broadcast"), 1), next_rung(("more_relayers",), 1)
    ((2, 'cell_broadcast'), None)
    """
    if raised >= len(ladder):
        return None
    return raised + 1, ladder[raised]


@dataclass
class Changes:
    """The steps whose state changed in one call: (action, new state), to count once committed."""

    steps: list[tuple[str, str]] = field(default_factory=list)

    def counted(self, counter: StepCounter | None) -> None:
        if counter is not None:
            for action, state in self.steps:
                counter.count_step(action, state)


# ------------------------------------------------------------------------------------------------ raising


async def checkpoint_missed(
    conn: asyncpg.Connection,
    ctx: Issuing,
    coverage: CoverageSettings,
    *,
    warning_id: int,
    version: int,
    level: str,
    checkpoint_min: int,
    public: float,
    units: Mapping[str, UnitRecord],
    now: datetime,
    changes: Changes,
    raise_step: bool = True,
) -> int | None:
    """The alert and the next rung of the level's ladder for a checkpoint found below the target; call it in
    the transaction that stores the checkpoint. The new step's id (None when the ladder is done, or when
    `raise_step` is false: a checkpoint passed late, beside a later one, or with the target met since, is
    alerted only). The rungs are counted under the current level: an upgraded warning starts its new ladder."""
    raised = await conn.fetchval(
        """SELECT count(*) FROM svc.coverage_escalation e
           JOIN svc.warning_version v USING (warning_id, version)
           WHERE e.warning_id = $1 AND v.level = $2""",
        warning_id,
        level,
    )
    ladder = coverage.escalation.ladders.get(level, ())  # type: ignore[call-overload]
    rung = next_rung(ladder, raised) if raise_step else None
    alert = {
        "version": version,
        "level": level,
        "checkpoint_min": checkpoint_min,
        "coverage": round(public, 4),
        "target": coverage.target,
        "step": None if rung is None else rung[0],
        "action": None if rung is None else rung[1],
        "mode": coverage.escalation.mode,
    }
    await _audit(conn, ctx, now, WATCH_ACTOR, "coverage_below_target", warning_id, None, alert)
    if rung is None:
        return None
    step, action = rung
    row = await conn.fetchrow(
        """INSERT INTO svc.coverage_escalation (warning_id, version, checkpoint_min, step, action, state, coverage,
                  created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (warning_id, checkpoint_min, step) DO NOTHING
           RETURNING *""",
        warning_id,
        version,
        checkpoint_min,
        step,
        action,
        str(EscalationState.proposed),
        min(1.0, max(0.0, public)),
        now,
    )
    if row is None:  # raised before (a watch that ran twice): nothing new
        return None
    changes.steps.append((action, str(EscalationState.proposed)))
    await _audit(conn, ctx, now, WATCH_ACTOR, "escalation_proposed", warning_id, None, _row_json(row))
    if coverage.escalation.mode == "automatic":
        await _decide_locked(
            conn, ctx, row, EscalationEvent.apply, actor=WATCH_ACTOR, reason="", units=units, now=now,
            changes=changes,
        )  # fmt: skip
    return int(row["id"])


# ----------------------------------------------------------------------------------------------- deciding


async def decide(
    conn: asyncpg.Connection,
    ctx: Issuing,
    warning_id: int,
    escalation_id: int,
    event: EscalationEvent,
    *,
    actor: str,
    reason: str,
    units: Mapping[str, UnitRecord],
    now: datetime,
    counter: StepCounter | None = None,
) -> dict[str, Any]:
    """The duty officer applies or declines a proposed step, in one transaction with its audit entry; the
    step as it now stands. `EscalationError` when there is no such step of the warning or it is not proposed."""
    changes = Changes()
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT * FROM svc.coverage_escalation WHERE id = $1 AND warning_id = $2 FOR UPDATE",
            escalation_id,
            warning_id,
        )
        if row is None:
            raise EscalationError("not_found", f"warning {warning_id} has no escalation step {escalation_id}")
        escalation_transition(EscalationState(row["state"]), event)  # refused before anything is written
        if await _version_in_force(conn, warning_id, now) is None:  # decline too: the watch stops it soon
            raise EscalationError("conflict", f"warning {warning_id} is no longer in force")
        row = await _decide_locked(
            conn, ctx, row, event, actor=actor, reason=reason, units=units, now=now, changes=changes
        )
    changes.counted(counter)
    return _row_json(row)


async def stop_open(
    conn: asyncpg.Connection, ctx: Issuing, warning_id: int, *, reason: str, now: datetime, changes: Changes
) -> int:
    """Stop every step of the warning still proposed (the target is met, or the warning ended), each with its
    audit entry; call it inside a transaction. How many."""
    rows = await conn.fetch(
        "SELECT * FROM svc.coverage_escalation WHERE warning_id = $1 AND state = 'proposed' ORDER BY id FOR UPDATE",
        warning_id,
    )
    for row in rows:
        await _decide_locked(
            conn, ctx, row, EscalationEvent.stop, actor=WATCH_ACTOR, reason=reason, units={}, now=now,
            changes=changes,
        )  # fmt: skip
    return len(rows)


async def _decide_locked(
    conn: asyncpg.Connection,
    ctx: Issuing,
    row: asyncpg.Record,
    event: EscalationEvent,
    *,
    actor: str,
    reason: str,
    units: Mapping[str, UnitRecord],
    now: datetime,
    changes: Changes,
) -> asyncpg.Record:
    """Move a locked step on `event` (an apply queues its messages first, or becomes a skip), write it and
    its audit entry."""
    detail: dict[str, Any] = json.loads(row["detail"])
    if event is EscalationEvent.apply:
        skipped, detail = await _apply(conn, ctx, row, units, now)
        if skipped:
            event, reason = EscalationEvent.skip, skipped
    state = escalation_transition(EscalationState(row["state"]), event)
    updated = await conn.fetchrow(
        """UPDATE svc.coverage_escalation SET state = $2, decided_by = $3, reason = $4, detail = $5::jsonb,
                  decided_at = $6
           WHERE id = $1 RETURNING *""",
        row["id"],
        str(state),
        actor,
        reason[:500],
        json.dumps(detail, ensure_ascii=False),
        now,
    )
    changes.steps.append((row["action"], str(state)))
    await _audit(
        conn, ctx, now, actor, f"escalation_{state}", row["warning_id"], {"state": row["state"]},
        _row_json(updated),
    )  # fmt: skip
    return updated


async def _version_in_force(conn: asyncpg.Connection, warning_id: int, now: datetime) -> int | None:
    version: int | None = await conn.fetchval(
        """SELECT version FROM svc.warning_version
           WHERE warning_id = $1 AND status = 'issued' AND msg_type IN ('Alert', 'Update') AND expires > $2""",
        warning_id,
        now,
    )
    return version


async def _apply(
    conn: asyncpg.Connection,
    ctx: Issuing,
    row: asyncpg.Record,
    units: Mapping[str, UnitRecord],
    now: datetime,
) -> tuple[str, dict[str, Any]]:
    """Queue the step's messages for the warning's version in force: ("", what was queued), or (why nothing
    could be, {}). `EscalationError` ``conflict`` when no version of the warning is in force any more."""
    version = await _version_in_force(conn, row["warning_id"], now)
    if version is None:
        raise EscalationError("conflict", f"warning {row['warning_id']} is no longer in force")
    action = row["action"]
    if action == "more_relayers":
        written = await expansion.write_relayer_deliveries(
            conn, row["warning_id"], version, SMS_CHANNEL, units
        )
        if written is None:
            return "this version has no SMS fan-out (sms is not among the dispatch channels)", {}
        if written == 0:
            return (
                "every consenting relayer in the warned areas was sent this version already, or is about to be "
                "by its fan-out",
                {},
            )
        return "", {"version": version, "relayers": written}
    channels, repeat = _AREA_ACTIONS[action]
    targets: list[AreaTarget] = [t for t in ctx.area_targets if t.channel in channels]
    if not targets:
        return f"no {' or '.join(channels)} target is configured", {}
    queued = await area_outbox.write_area_again(conn, row["warning_id"], version, targets, repeat=repeat)
    if queued is None:
        return "no area channel took this version at issue: there is no stored content to put out", {}
    if not queued:
        return f"{' and '.join(channels)} already had this version queued", {}
    return "", {"version": version, "queued": queued}


# ------------------------------------------------------------------------------------------------ reading


async def escalations_of(conn: asyncpg.Connection, warning_id: int) -> list[dict[str, Any]]:
    """Every escalation step of the warning, oldest first, as the API gives them."""
    rows = await conn.fetch(
        "SELECT * FROM svc.coverage_escalation WHERE warning_id = $1 ORDER BY created_at, id", warning_id
    )
    return [_row_json(r) for r in rows]


def _row_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "warning_id": row["warning_id"],
        "version": row["version"],
        "checkpoint_min": row["checkpoint_min"],
        "step": row["step"],
        "action": row["action"],
        "state": row["state"],
        "coverage": round(row["coverage"], 4),
        "decided_by": row["decided_by"],
        "reason": row["reason"],
        "detail": json.loads(row["detail"]),
        "created_at": row["created_at"].isoformat(),
        "decided_at": None if row["decided_at"] is None else row["decided_at"].isoformat(),
    }


async def _audit(
    conn: asyncpg.Connection,
    ctx: Issuing,
    now: datetime,
    actor: str,
    action: str,
    warning_id: int,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any],
) -> None:
    await audit_log.append(
        conn,
        at=now,
        actor=actor,
        action=action,
        subject=f"warning:{warning_id}",
        before=None if before is None else dict(before),
        after=dict(after),
        key=ctx.audit_key,
    )
