"""Fan-out expansion: turning the promise an issued version wrote (svc.fanout) into one delivery per person.

`plan` is the pure decision for one chunk of people: who gets a message about this version, and which of
the version's areas concern them (stored with the delivery, so the next Update can be compared with what
each person was actually told). `expand_next` is the I/O around it: claim one pending fan-out (``SKIP
LOCKED``, red first), read the next chunk of people after its cursor, COPY the deliveries and move the
cursor in the same transaction. A crash between chunks loses nothing and writes nothing twice.

Who is a candidate:

- an Alert: the people `recipients.selection` picks for its hazard and areas (consented, not opted out;
  for an exercise only test recipients);
- an Update: those, plus everyone who was told an earlier version (an Update that drops a person's area
  tells them so); `recipients.needs_message` then skips people for whom nothing changed;
- a Cancel: only the people who were told an earlier version.

`write_relayer_deliveries` adds to a version's fan-out the relayers it left out (coverage escalation).

A fan-out whose version stopped being in force before it was fully expanded (an Update or Cancel approved,
or it expired) is dropped with the reason; the successor's own fan-out reaches the people.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from risk_zoning.store import UnitRecord
from warnings_svc.dissemination.delivery_states import DeliveryEvent, DeliveryState, transition
from warnings_svc.dissemination.outbox import (
    DROPPED_REASON,
    TOLD_STATES,
    Claimed,
    delivery_key,
    notify_dispatchers,
)
from warnings_svc.dissemination.recipients import needs_message, reach, relevant_areas, selection

# How long a taker waits for a fan-out another is expanding: a chunk holds it for tens of milliseconds
TAKER_LOCK_WAIT_MS = 2000
DELIVERY_COLUMNS = (
    "fanout_id",
    "warning_id",
    "version",
    "channel",
    "recipient_id",
    "address",
    "language",
    "areas",
    "priority",
)


@dataclass(frozen=True, slots=True)
class VersionFacts:
    """What expansion needs to know about the version a fan-out is for."""

    warning_id: int
    version: int
    msg_type: str
    level: str
    hazard: str
    areas: tuple[str, ...]
    onset: datetime
    expires: datetime
    exercise: bool

    def told(self, areas: Sequence[str]) -> dict[str, Any]:
        """What a person whose relevant areas are `areas` is told by this version (`needs_message` form)."""
        return {
            "msg_type": self.msg_type,
            "level": self.level,
            "areas": list(areas),
            "onset": self.onset,
            "expires": self.expires,
        }


class Candidate(NamedTuple):
    """A person who may get a message about the version (a tuple: a fan-out makes one per person)."""

    id: int
    address: str
    language: str
    areas: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Expanded:
    """What one call of `expand_next` did."""

    fanout_id: int
    warning_id: int
    version: int
    channel: str
    deliveries: int
    unchanged: int
    done: bool
    dropped: bool = False
    claimed: Sequence[Claimed] = ()  # the deliveries written leased to the taker, by id


@dataclass(frozen=True, slots=True)
class Taker:
    """A dispatcher's sender expanding for itself: the chunk's deliveries are written already leased to it
    (state 'sending' under `lease`, for `lease_s` seconds), at most `limit` of them, on `channel`."""

    channel: str
    lease: str
    lease_s: float
    limit: int


def plan(
    fanout_id: int,
    channel: str,
    priority: int,
    version: VersionFacts,
    candidates: Sequence[Candidate],
    previous: Mapping[int, Mapping[str, Any]],
    units: Mapping[str, UnitRecord],
) -> tuple[list[tuple[Any, ...]], int]:
    """The delivery rows (in `DELIVERY_COLUMNS` order) for `candidates` and how many were left unchanged.

    `previous` maps a person's id to what they were last told about the warning (`needs_message` form)."""
    rows: list[tuple[Any, ...]] = []
    unchanged = 0
    # many people share the same areas: what they are told is worked out once per set of areas
    told: dict[tuple[str, ...], tuple[list[str], dict[str, Any]]] = {}
    for c in candidates:
        known = told.get(c.areas)
        if known is None:
            areas = list(relevant_areas(version.areas, c.areas, units))
            known = told[c.areas] = (areas, version.told(areas))
        areas, now_told = known
        if not needs_message(previous.get(c.id), now_told):
            unchanged += 1
            continue
        rows.append(
            (fanout_id, version.warning_id, version.version, channel, c.id, c.address, c.language, areas,
             priority)
        )  # fmt: skip
    return rows, unchanged


async def expand_next(
    conn: asyncpg.Connection,
    units: Mapping[str, UnitRecord],
    *,
    chunk: int,
    first_chunk: int,
    taker: Taker | None = None,
) -> Expanded | None:
    """Expand the next chunk of the most urgent pending fan-out; None when there is none. The first chunk of a
    fan-out is small so the first messages go out at once.

    Without a `taker` the deliveries go to the queue for any dispatcher to claim, and a fan-out someone else
    is expanding is skipped. With one, the chunk (at most `taker.limit` people) is written already leased to
    it: its first attempts need no claim. A taker waits its turn on a fan-out another is expanding (takers
    share one fan-out a chunk at a time), and leaves fan-outs alone while the queue holds ready deliveries as
    urgent (retries, deliveries whose dispatcher died): those are claimed first. A fan-out held longer than a
    chunk ever takes (`TAKER_LOCK_WAIT_MS`: by someone's open transaction, say) is given up for now: None."""
    try:
        return await _expand_next(conn, units, chunk=chunk, first_chunk=first_chunk, taker=taker)
    except asyncpg.LockNotAvailableError:
        return None


async def _expand_next(
    conn: asyncpg.Connection,
    units: Mapping[str, UnitRecord],
    *,
    chunk: int,
    first_chunk: int,
    taker: Taker | None,
) -> Expanded | None:
    async with conn.transaction():
        if taker is None:
            f = await conn.fetchrow(_NEXT_FANOUT.format(where="", lock="FOR UPDATE OF f SKIP LOCKED"))
        else:
            await conn.execute(f"SET LOCAL lock_timeout = {TAKER_LOCK_WAIT_MS}")
            f = await conn.fetchrow(
                _NEXT_FANOUT.format(where=_NOTHING_AS_URGENT_READY, lock="FOR UPDATE OF f"), taker.channel
            )
        if f is None:
            return None
        if not f["live"]:
            await conn.execute(
                "UPDATE svc.fanout SET state = 'dropped', reason = $2, done_at = now() WHERE id = $1",
                f["id"],
                DROPPED_REASON,
            )
            return Expanded(f["id"], f["warning_id"], f["version"], f["channel"], 0, 0, True, dropped=True)
        version = VersionFacts(
            f["warning_id"], f["version"], f["msg_type"], f["level"], f["hazard"], tuple(f["areas"]),
            f["onset"], f["expires"], f["exercise"],
        )  # fmt: skip
        limit = first_chunk if f["after_recipient"] == 0 else chunk
        if taker is not None:
            limit = min(limit, taker.limit)
        # After a first chunk the fan-out is known to be large, and its next people are read in id order from
        # the cursor on (each chunk costs what it reads). The planner, which cannot estimate how many people
        # an areas overlap matches, scanned every person and sorted the matches for each chunk near the start
        # of the table instead: 31 ms a chunk instead of 5 at 100,000 people. A first chunk keeps the
        # planner's choice: a warning that reaches few of many people is found fastest through the areas index.
        ordered = f["after_recipient"] > 0
        if ordered:
            await conn.execute("SET LOCAL enable_sort = off")
        candidates = await _candidates(conn, version, f["channel"], units, f["after_recipient"], limit)
        if ordered:
            await conn.execute("SET LOCAL enable_sort TO DEFAULT")  # the rest plans as configured
        previous = await _previous(conn, version, f["channel"], [c.id for c in candidates])
        rows, unchanged = plan(f["id"], f["channel"], f["priority"], version, candidates, previous, units)
        claimed: list[Claimed] = []
        if rows and taker is None:
            await conn.copy_records_to_table(
                "delivery", schema_name="svc", columns=DELIVERY_COLUMNS, records=rows
            )
            await notify_dispatchers(conn, "delivery")
        elif rows and taker is not None:  # taker is known here; the test says so to mypy
            claimed = await _write_leased(conn, rows, taker)
        done = len(candidates) < limit
        await conn.execute(
            """UPDATE svc.fanout SET after_recipient = $2, deliveries = deliveries + $3, unchanged = unchanged + $4,
                      state = CASE WHEN $5 THEN 'done' ELSE state END, done_at = CASE WHEN $5 THEN now() END
               WHERE id = $1""",
            f["id"],
            candidates[-1].id if candidates else f["after_recipient"],
            len(rows),
            unchanged,
            done,
        )
    return Expanded(
        f["id"],
        version.warning_id,
        version.version,
        f["channel"],
        len(rows),
        unchanged,
        done,
        claimed=claimed,
    )


_NEXT_FANOUT = """SELECT f.id, f.warning_id, f.version, f.channel, f.priority, f.after_recipient,
                         v.msg_type, v.level, v.hazard, v.areas, v.onset, v.expires, v.exercise,
                         (v.status = 'issued' AND v.expires > now()) AS live
                  FROM svc.fanout f JOIN svc.warning_version v USING (warning_id, version)
                  WHERE f.state = 'pending' {where}
                  ORDER BY f.priority, f.id LIMIT 1
                  {lock}"""
# a taker's fan-out: of its channel, and no delivery as urgent ready in the queue (read from the queue's index)
_NOTHING_AS_URGENT_READY = """AND f.channel = $1 AND NOT EXISTS (
                                  SELECT FROM svc.delivery d WHERE d.queued AND d.channel = $1
                                  AND d.priority <= f.priority AND d.next_attempt_at <= now())"""
_LEASED_COLUMNS = ("id", "state", "queued", "lease_owner", "attempts")
# a fan-out's first attempts are written already claimed: pending and claimed in one step
_LEASED_STATE = transition(DeliveryState.pending, DeliveryEvent.claim).value


async def _write_leased(conn: asyncpg.Connection, rows: list[tuple[Any, ...]], taker: Taker) -> list[Claimed]:
    """Write a chunk's deliveries already leased to `taker` (under one lease row, as a claim would) and return
    them as claimed. Their ids are drawn first: COPY cannot return them."""
    ids = await conn.fetchval(
        "SELECT array_agg(nextval('svc.delivery_id_seq')) FROM generate_series(1, $1)", len(rows)
    )
    await conn.copy_records_to_table(
        "delivery",
        schema_name="svc",
        columns=(*DELIVERY_COLUMNS, *_LEASED_COLUMNS),
        records=[(*row, i, _LEASED_STATE, False, taker.lease, 1) for row, i in zip(rows, ids, strict=True)],
    )
    await conn.execute(
        "INSERT INTO svc.delivery_lease (lease, until, ids) VALUES ($1, now() + make_interval(secs => $2), $3)",
        taker.lease,
        taker.lease_s,
        ids,
    )
    # (fanout_id, warning_id, version, channel, recipient_id, address, language, ...): DELIVERY_COLUMNS
    return [
        Claimed(i, delivery_key(r[1], r[2], r[3], r[4]), r[1], r[2], r[5], r[6], 1)
        for r, i in zip(rows, ids, strict=True)
    ]


async def _candidates(
    conn: asyncpg.Connection,
    version: VersionFacts,
    channel: str,
    units: Mapping[str, UnitRecord],
    after: int,
    limit: int,
) -> list[Candidate]:
    told = """EXISTS (SELECT 1 FROM svc.delivery d WHERE d.warning_id = {w} AND d.recipient_id = r.id
                         AND d.version < {v} AND d.channel = {c} AND d.state = ANY ({s}::text[]))"""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if version.msg_type == "Cancel":
        chosen = "consent AND opted_out_at IS NULL"
    else:
        where, selection_args = selection(version.hazard, version.exercise, reach(version.areas, units))
        args.extend(selection_args)  # $1, $2, ... in `where`: first in the list
        chosen = f"({where})"
    if version.msg_type != "Alert":
        was_told = told.format(
            w=arg(version.warning_id), v=arg(version.version), c=arg(channel), s=arg(list(TOLD_STATES))
        )
        chosen = (
            f"consent AND opted_out_at IS NULL AND {was_told}"
            if version.msg_type == "Cancel"
            else f"({chosen} OR (consent AND opted_out_at IS NULL AND {was_told}))"
        )
    after_arg, limit_arg = arg(after), arg(limit)
    rows = await conn.fetch(
        f"""SELECT id, phone, language, areas FROM svc.recipient r
            WHERE {chosen} AND id > {after_arg} ORDER BY id LIMIT {limit_arg}""",
        *args,
    )
    return [Candidate(r[0], r[1], r[2], tuple(r[3])) for r in rows]  # by position: a fan-out reads many


async def _previous(
    conn: asyncpg.Connection, version: VersionFacts, channel: str, people: list[int]
) -> dict[int, dict[str, Any]]:
    """What each of `people` was last told about the warning on `channel` (`needs_message` form)."""
    if version.version == 1 or not people:
        return {}
    rows = await conn.fetch(
        """SELECT DISTINCT ON (d.recipient_id) d.recipient_id, v.msg_type, v.level, d.areas, v.onset, v.expires
           FROM svc.delivery d JOIN svc.warning_version v USING (warning_id, version)
           WHERE d.warning_id = $1 AND d.version < $2 AND d.channel = $3 AND d.recipient_id = ANY ($4::bigint[])
                 AND d.state = ANY ($5::text[])
           ORDER BY d.recipient_id, d.version DESC""",
        version.warning_id,
        version.version,
        channel,
        people,
        list(TOLD_STATES),
    )
    return {
        r["recipient_id"]: {
            "msg_type": r["msg_type"],
            "level": r["level"],
            "areas": list(r["areas"]),
            "onset": r["onset"],
            "expires": r["expires"],
        }
        for r in rows
    }


async def write_relayer_deliveries(
    conn: asyncpg.Connection, warning_id: int, version: int, channel: str, units: Mapping[str, UnitRecord]
) -> int | None:
    """Text the version to every consenting relayer (再传播) registered in its areas who was not sent it on
    `channel` yet, whatever hazards they chose (coverage escalation: more relayers); call it inside a
    transaction. The deliveries join the version's fan-out on `channel`, whose row is locked meanwhile: while
    it is still being expanded, the relayers ahead of its cursor that it will reach are left to it, and those
    it will pass over (they chose other hazards) are written here. None, and nothing written, when the version has no fan-out on `channel`; else how many."""
    f = await conn.fetchrow(
        """SELECT f.id, f.priority, f.state, f.after_recipient, v.msg_type, v.level, v.hazard, v.areas, v.onset,
                  v.expires, v.exercise
           FROM svc.fanout f JOIN svc.warning_version v USING (warning_id, version)
           WHERE f.warning_id = $1 AND f.version = $2 AND f.channel = $3
           FOR UPDATE OF f""",
        warning_id,
        version,
        channel,
    )
    if f is None:
        return None
    facts = VersionFacts(
        warning_id, version, f["msg_type"], f["level"], f["hazard"], tuple(f["areas"]), f["onset"],
        f["expires"], f["exercise"],
    )  # fmt: skip
    where, args = selection(None, facts.exercise, reach(facts.areas, units))
    n = len(args)
    # ahead of a fan-out still being expanded, only the relayers it will pass over (another hazard chosen)
    rows = await conn.fetch(
        f"""SELECT id, phone, language, areas FROM svc.recipient r
            WHERE {where} AND 'relayer' = ANY (roles)
              AND (${n + 1}::bigint IS NULL OR id <= ${n + 1}
                   OR NOT (cardinality(hazards) = 0 OR ${n + 5} = ANY (hazards)))
              AND NOT EXISTS (SELECT 1 FROM svc.delivery d WHERE d.warning_id = ${n + 2} AND d.recipient_id = r.id
                              AND d.version = ${n + 3} AND d.channel = ${n + 4})
            ORDER BY id""",
        *args,
        f["after_recipient"] if f["state"] == "pending" else None,
        warning_id,
        version,
        channel,
        f["hazard"],
    )
    candidates = [Candidate(r[0], r[1], r[2], tuple(r[3])) for r in rows]
    planned, _ = plan(f["id"], channel, f["priority"], facts, candidates, {}, units)
    if planned:
        await conn.copy_records_to_table(
            "delivery", schema_name="svc", columns=DELIVERY_COLUMNS, records=planned
        )
        await conn.execute(
            "UPDATE svc.fanout SET deliveries = deliveries + $2 WHERE id = $1", f["id"], len(planned)
        )
        await notify_dispatchers(conn, "delivery")
    return len(planned)
