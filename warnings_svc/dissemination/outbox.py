"""The PostgreSQL delivery outbox: what issuing writes, what dispatchers claim, how results and receipts land.

Only SQL on an asyncpg connection lives here; the dispatcher (`warnings_svc.dissemination.dispatcher`) decides
when to call what, and `warnings_svc.dissemination.expansion` turns a fan-out into deliveries. Every function
is one short statement or one short transaction: PostgreSQL queues slow down sharply when long transactions
hold back vacuum.

- `write_fanouts` runs inside the transaction that issues a version, so a warning is never issued without the
  promise to deliver it, and never promised without being issued.
- `claim` takes up to N ready deliveries of a channel, red first, with ``FOR UPDATE SKIP LOCKED`` (any number
  of dispatchers on any hosts share the queue without waiting on each other), under one lease row per batch
  (`svc.delivery_lease`, renewed while the batch is in hand); in the same statement it drops the ready ones
  whose version is no longer in force (updated, cancelled, expired), so nothing is sent late.
- `reclaim_expired_leases` returns the deliveries of a dispatcher that died mid-send to the queue; they are
  sent again, so duplicates are bounded by what that dispatcher had in flight.
- After its claim a delivery's writes (its outcome, its settlement by receipts) change no indexed column, so
  PostgreSQL rewrites it in place on its page when there is room (migration 8 says why).
- `record_results` stores the outcomes of sent batches (each under its own lease), the message-id map and the
  receipts that came before the results (riding with them: a delivery whose every part has its final receipt
  there is settled in the same write, and one delivered at once keeps its parts' ids on its own row instead
  of map rows) in one transaction; `store_receipts` writes the other receipts on their parts' map rows
  (idempotently: an SMSC repeats those it saw unacknowledged) and settles the deliveries they complete. A
  receipt may land before its part's map row (it then creates the row, and the map fills in the delivery);
  `record_results` settles those. A receipt repeated for a part kept on its delivery's row finds no map row
  and stays a row of its own, matched to nothing (the delivery is settled already).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import asyncpg

from channels.base import Receipt, ReceiptState, SendOutcome, SendResult
from warnings_svc.dissemination import delivery_states
from warnings_svc.dissemination.delivery_states import DeliveryEvent, DeliveryState, transition
from warnings_svc.dissemination.policy import priority_of

DISPATCH_CHANNEL = "svc_dispatch"  # NOTIFY channel that wakes dispatchers
# the states as text, in the order of `DeliveryState` (the API's summary lists them so)
STATES = tuple(s.value for s in DeliveryState)
TOLD_STATES = tuple(s.value for s in DeliveryState if s in delivery_states.TOLD_STATES)
FINAL_STATES = tuple(s.value for s in DeliveryState if s in delivery_states.FINAL_STATES)
DROPPED_REASON = "warning no longer in force"

# The states `record_results` and `settled_state` write, taken from the transition table once (as plain text:
# they are compared and sent to PostgreSQL by the hundred thousand)
_SENT = transition(DeliveryState.sending, DeliveryEvent.accept).value
_RETRIED = transition(DeliveryState.sending, DeliveryEvent.retry).value
_GAVE_UP = transition(DeliveryState.sending, DeliveryEvent.give_up).value
_REFUSED = transition(DeliveryState.sending, DeliveryEvent.refuse).value
_DELIVERED = transition(DeliveryState.sent, DeliveryEvent.receipt_delivered).value
_ACCEPTED = transition(DeliveryState.sent, DeliveryEvent.receipt_accepted).value
_FAILED = transition(DeliveryState.sent, DeliveryEvent.receipt_failed).value
_GIVEN_UP_OR_RETRIED = frozenset({_RETRIED, _GAVE_UP, _REFUSED})


class Claimed(NamedTuple):
    """A delivery leased to this dispatcher for one attempt (a tuple: cheap to make by the thousand)."""

    id: int
    key: str
    warning_id: int
    version: int
    address: str
    language: str
    attempts: int  # including this one


def delivery_key(warning_id: int, version: int, channel: str, recipient_id: int) -> str:
    """A delivery's idempotency key, as `claim` spells it in SQL: one per person, version and channel."""
    return f"{warning_id}-{version}/{channel}/{recipient_id}"


@dataclass(frozen=True, slots=True)
class SentBatch:
    """One claim's batch once sent: ``results[i]`` is the outcome of ``claimed[i]`` and ``delays[i]`` the backoff
    to use if it failed temporarily. ``receipts`` are those of its parts that came before its results were
    stored, by remote id: they are stored with the results (a delivery whose every part has its final receipt
    there is settled in the same write)."""

    lease: str
    claimed: Sequence[Claimed]
    results: Sequence[SendResult]
    delays: Sequence[float]
    receipts: Mapping[str, Receipt] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ResultCounts:
    """What one batch's results did to the outbox."""

    sent: int = 0
    retried: int = 0
    dead: int = 0


async def notify_dispatchers(conn: asyncpg.Connection, what: str) -> None:
    """Wake every dispatcher (when the current transaction commits)."""
    await conn.execute("SELECT pg_notify($1, $2)", DISPATCH_CHANNEL, what)


# ---------------------------------------------------------------------------------------------- writing


async def write_fanouts(
    conn: asyncpg.Connection, warning_id: int, version: int, level: str, channels: Iterable[str]
) -> None:
    """Promise the deliveries of an issued version on every channel; call it inside the issuing transaction."""
    # One statement for every channel and the dispatchers' wake-up (delivered, like any NOTIFY, on commit).
    await conn.execute(
        """WITH promised AS (
               INSERT INTO svc.fanout (warning_id, version, channel, priority)
               SELECT $1, $2, channel, $4 FROM unnest($3::text[]) AS channel
               ON CONFLICT (warning_id, version, channel) DO NOTHING)
           SELECT pg_notify($5, 'fanout')""",
        warning_id,
        version,
        list(channels),
        priority_of(level),
        DISPATCH_CHANNEL,
    )


# ---------------------------------------------------------------------------------------------- claiming


async def claim(
    conn: asyncpg.Connection, channel: str, lease: str, limit: int, lease_s: float
) -> list[Claimed]:
    """Lease up to `limit` ready deliveries of `channel` (red first, then by due time) under one lease row;
    drop the ready ones whose version is no longer in force on the way. One statement: the rows are locked only
    while it runs."""
    async with conn.transaction():
        # The ready deliveries are read in the queue index's order, stopping at `limit`. The planner must not
        # sort them all instead: the statistics of a queue never match the burst a fan-out has just written,
        # and with a few thousand ready it chose to sort every one of them for each claim.
        await conn.execute("SET LOCAL enable_sort = off")
        rows = await conn.fetch(
            _CLAIM,
            channel,
            limit,
            lease,
            lease_s,
            DROPPED_REASON,
        )
    out = [Claimed(*r[:7]) for r in rows if r[7]]  # RETURNING lists Claimed's fields in order, then live
    out.sort(key=lambda c: c.id)
    return out


async def reclaim_expired_leases(conn: asyncpg.Connection) -> int:
    """Return to the queue every delivery whose lease ran out (its dispatcher died or hung); how many."""
    status = await conn.execute(_RECLAIM)
    return int(status.split()[-1])


async def renew_leases(conn: asyncpg.Connection, leases: Sequence[str], lease_s: float) -> int:
    """Extend the leases of batches still in hand (being sent, or sent and waiting for their outcomes to be
    stored); how many of `leases` were still held (the reaper deletes a lease that ran out, and its deliveries
    go back to the queue)."""
    status = await conn.execute(
        "UPDATE svc.delivery_lease SET until = now() + make_interval(secs => $2) WHERE lease = ANY($1::text[])",
        list(leases),
        lease_s,
    )
    return int(status.split()[-1])


async def release(conn: asyncpg.Connection, lease: str, ids: Sequence[int]) -> None:
    """Give a batch's leased deliveries back untried (a dispatcher stopping before sending them)."""
    async with conn.transaction():
        await conn.execute(
            _RELEASE,
            list(ids),
            lease,
        )
        await conn.execute("DELETE FROM svc.delivery_lease WHERE lease = $1", lease)


# ---------------------------------------------------------------------------------------------- results


async def record_results(
    conn: asyncpg.Connection, endpoint: str, batches: Sequence[SentBatch], max_attempts: int
) -> list[ResultCounts]:
    """Store the outcomes of sent batches (each under its own claim's lease), the message-id map and the
    receipts that came with them, in one transaction; what each batch did, in order. Only rows still held
    under their batch's lease are changed, and only their outcomes counted: a row whose lease ran out and was
    claimed again (by another dispatcher, or another sender of this one) belongs to that claim now. A
    temporary failure is retried until the delivery has had `max_attempts`, then it is dead. A delivery whose
    every part's final receipt came with its batch is stored settled at once; when every part reached the
    handset (the usual case at full speed) its parts' ids stay on its row and it gets no map rows (migration 9).
    Those are stored by a statement of their own with four narrow parameters, the others by the general one."""
    leases = [b.lease for b in batches]
    delivered = _DeliveredAtOnce()
    rest = _Outcomes()
    for lease_no, batch in enumerate(batches, start=1):  # PostgreSQL's arrays count from 1
        got = batch.receipts
        for item, result, delay in zip(batch.claimed, batch.results, batch.delays, strict=True):
            if result.key != item.key:
                raise ValueError(f"result for {result.key} where {item.key} was expected")
            if result.outcome is SendOutcome.ACCEPTED:
                if got and delivered.take(item.id, lease_no, result.remote_ids, got):
                    continue
                state = (
                    settled_state([r.state if (r := got.get(i)) else None for i in result.remote_ids])
                    if got
                    else None
                ) or _SENT
                done = _latest_done(got[i] for i in result.remote_ids if i in got) if state != _SENT else None
                rest.add(item.id, lease_no, state, "", 0.0, result.remote_ids, done)
            elif result.outcome is SendOutcome.TEMPORARY_FAILURE and item.attempts < max_attempts:
                rest.add(item.id, lease_no, _RETRIED, result.reason or "temporary failure", delay, (), None)
            elif result.outcome is SendOutcome.TEMPORARY_FAILURE:
                reason = f"gave up after {item.attempts} attempts: {result.reason or 'temporary failure'}"
                rest.add(item.id, lease_no, _GAVE_UP, reason, delay, (), None)
            else:
                reason = f"refused: {result.reason or 'permanent failure'}"
                rest.add(item.id, lease_no, _REFUSED, reason, 0.0, (), None)
    async with conn.transaction():
        mine: set[tuple[int, int]] = set()  # (id, lease_no) of the rows still held, and so changed
        if delivered.ids:
            mine.update(
                map(
                    tuple,
                    await conn.fetch(
                        _STORE_DELIVERED,
                        delivered.ids,
                        endpoint,
                        delivered.lease_nos,
                        _ROW_SEPARATOR.join(delivered.parts),
                        delivered.done_at,
                        leases,
                    ),
                )
            )
        if rest.ids:
            segments = [len(r) for r in rest.remote_ids]
            mine.update(
                map(
                    tuple,
                    await conn.fetch(
                        _STORE_OUTCOMES,
                        rest.ids,
                        endpoint,
                        rest.lease_nos,
                        rest.states,
                        rest.reasons,
                        rest.waits,
                        segments,
                        rest.done_at,
                        leases,
                    ),
                )
            )
        await conn.execute("DELETE FROM svc.delivery_lease WHERE lease = ANY($1::text[])", leases)
        # the receipts of the deliveries stored delivered are stored with them; any other receipt that came
        # with a batch is stored on its part's map row (written here when the delivery was stored sent or
        # settled otherwise) or, when its delivery was not stored here (it failed, or its lease ran out), as
        # any other receipt
        mapped: set[str] = set()
        for key, remote_ids in zip(
            zip(delivered.ids, delivered.lease_nos, strict=True), delivered.remote_ids, strict=True
        ):
            if key in mine:
                mapped.update(remote_ids)
        parts: list[tuple[Any, ...]] = []
        unsettled: set[int] = set()
        now = time.time()
        for i, key in enumerate(zip(rest.ids, rest.lease_nos, strict=True)):
            if key not in mine or not rest.remote_ids[i]:
                continue
            got = batches[key[1] - 1].receipts
            waiting = rest.states[i] == _SENT
            if waiting:
                unsettled.add(key[0])
            for remote_id in rest.remote_ids[i]:
                parts.append((remote_id, key[0], waiting, *_receipt_columns(got.get(remote_id), now)))
                mapped.add(remote_id)
        stray = [r for batch in batches for r in batch.receipts.values() if r.remote_id not in mapped]
        if parts or stray:
            await _serialise_with_receipts(conn, endpoint)
        if parts:
            await _write_map(conn, endpoint, parts)
        if stray:
            unsettled |= await _write_receipts(conn, endpoint, stray)
        await _settle(conn, sorted(unsettled))
    changed = Counter(lease_no for _, lease_no in mine)
    retried: Counter[int] = Counter()
    dead: Counter[int] = Counter()
    for key, state in zip(zip(rest.ids, rest.lease_nos, strict=True), rest.states, strict=True):
        if key in mine and state in _GIVEN_UP_OR_RETRIED:
            (retried if state == _RETRIED else dead)[key[1]] += 1
    return [
        ResultCounts(changed[n] - retried[n] - dead[n], retried[n], dead[n])
        for n in range(1, len(batches) + 1)
    ]


# ---------------------------------------------------------------------------------------------- statements

# Claiming: the ready deliveries of a channel, read in the queue index's order up to a limit and locked, are
# leased (their version in force) or dropped (not). Parameters: channel, limit, lease, lease seconds, the
# dropped reason.
_CLAIM = """WITH ready AS (
    SELECT d.id, (v.status = 'issued' AND v.expires > now()) AS live
    FROM svc.delivery d JOIN svc.warning_version v USING (warning_id, version)
    WHERE d.queued AND d.channel = $1 AND d.next_attempt_at <= now()
    ORDER BY d.priority, d.next_attempt_at, d.id
    LIMIT $2
    FOR UPDATE OF d SKIP LOCKED),
claimed AS (
    UPDATE svc.delivery d
    SET queued = false,
        state = CASE WHEN ready.live THEN 'sending' ELSE 'dropped' END,
        lease_owner = CASE WHEN ready.live THEN $3 END,
        attempts = d.attempts + ready.live::int,
        reason = CASE WHEN ready.live THEN d.reason ELSE $5 END,
        final_at = CASE WHEN ready.live THEN NULL ELSE now() END
    FROM ready WHERE d.id = ready.id
    RETURNING d.id,
              d.warning_id || '-' || d.version || '/' || d.channel || '/' || d.recipient_id AS key,
              -- the key as delivery_key spells it
              d.warning_id, d.version, d.address, d.language, d.attempts, ready.live),
leased AS (
    INSERT INTO svc.delivery_lease (lease, until, ids)
    SELECT $3, now() + make_interval(secs => $4), array_agg(id) FROM claimed WHERE live
    HAVING count(*) > 0)
SELECT * FROM claimed"""
# The deliveries whose lease ran out go back to the queue, to be sent again.
_RECLAIM = """WITH expired AS (
    DELETE FROM svc.delivery_lease WHERE until < now() RETURNING lease, ids)
UPDATE svc.delivery d SET state = 'pending', queued = true, lease_owner = NULL,
       reason = 'lease expired: sent again', next_attempt_at = now()
FROM (SELECT lease, unnest(ids) AS id FROM expired) e
WHERE d.id = e.id AND d.state = 'sending' AND d.lease_owner = e.lease"""
# A batch given back untried. Parameters: ids, lease.
_RELEASE = """UPDATE svc.delivery d SET state = 'pending', queued = true, lease_owner = NULL,
       attempts = greatest(attempts - 1, 0)
WHERE id = ANY($1::bigint[]) AND d.state = 'sending' AND lease_owner = $2"""
# Sent deliveries whose every part has its final receipt are settled. Parameter: the deliveries' ids.
_SETTLE = """UPDATE svc.delivery d SET state = s.state, final_at = now(), done_at = s.done_at
FROM (SELECT delivery_id, max(done_at) AS done_at,
             CASE WHEN bool_or(state IN ('failed', 'expired')) THEN 'failed'
                  WHEN count(*) FILTER (WHERE state <> 'en_route') < count(*) THEN NULL
                  WHEN bool_and(state = 'delivered') THEN 'delivered'
                  ELSE 'accepted' END AS state,
             count(*) AS parts
      FROM svc.delivery_part WHERE delivery_id = ANY($1::bigint[]) AND unsettled
      GROUP BY delivery_id) s
WHERE d.id = s.delivery_id AND s.state IS NOT NULL AND d.state = 'sent' AND d.segments = s.parts"""


# Deliveries stored delivered at once (every part's DELIVRD receipt came with the batch): their parts' ids, as
# one text, stay on the row. Parameters: ids, endpoint, lease numbers (into the leases), parts, done_at, leases.
_STORE_DELIVERED = """
UPDATE svc.delivery d
SET state = 'delivered', queued = false, reason = '', lease_owner = NULL, endpoint = $2,
    segments = cardinality(r.parts), sent_at = now(), final_at = now(), remote_ids = r.parts,
    done_at = to_timestamp(r.done_at)
FROM (SELECT u.id, u.lease_no, string_to_array(u.parts, chr(31)) AS parts, u.done_at
      FROM unnest($1::bigint[], $3::int[], string_to_array($4::text, chr(30)), $5::float8[])
           AS u(id, lease_no, parts, done_at)) r
WHERE d.id = r.id AND d.state = 'sending' AND d.lease_owner = ($6::text[])[r.lease_no]
RETURNING d.id, r.lease_no"""
# Every other outcome: sent (a receipt still to come), settled otherwise, retried later, or dead.
_STORE_OUTCOMES = """
UPDATE svc.delivery d
SET state = r.state, queued = r.state = 'pending', reason = r.reason, lease_owner = NULL,
    endpoint = CASE WHEN r.state IN ('pending', 'dead') THEN d.endpoint ELSE $2 END,
    segments = CASE WHEN r.state IN ('pending', 'dead') THEN d.segments ELSE r.segments END,
    sent_at = CASE WHEN r.state IN ('pending', 'dead') THEN d.sent_at ELSE now() END,
    next_attempt_at = CASE WHEN r.state = 'pending' THEN now() + make_interval(secs => r.wait)
                           ELSE d.next_attempt_at END,
    final_at = CASE WHEN r.state IN ('pending', 'sent') THEN d.final_at ELSE now() END,
    remote_ids = NULL, done_at = to_timestamp(r.done_at)
FROM unnest($1::bigint[], $3::int[], $4::text[], $5::text[], $6::float8[], $7::int[], $8::float8[])
     AS r(id, lease_no, state, reason, wait, segments, done_at)
WHERE d.id = r.id AND d.state = 'sending' AND d.lease_owner = ($9::text[])[r.lease_no]
RETURNING d.id, r.lease_no"""
_E = DeliveryEvent
_SETTLING = (_E.receipt_delivered, _E.receipt_accepted, _E.receipt_failed)
# The transitions each statement that changes a delivery's state makes, by (from state, event): the unit tests
# check them against `delivery_states.TRANSITIONS` and against the states the statement spells (a statement
# that takes its new states from a parameter, `_STORE_OUTCOMES`, is given them by `record_results`, from the
# table).
STATEMENT_TRANSITIONS: Mapping[str, tuple[tuple[DeliveryState, DeliveryEvent], ...]] = {
    "_CLAIM": ((DeliveryState.pending, _E.claim), (DeliveryState.pending, _E.drop)),
    "_RECLAIM": ((DeliveryState.sending, _E.reclaim),),
    "_RELEASE": ((DeliveryState.sending, _E.release),),
    "_STORE_DELIVERED": ((DeliveryState.sending, _E.receipt_delivered),),
    "_STORE_OUTCOMES": tuple(
        (DeliveryState.sending, e) for e in (_E.accept, _E.retry, _E.give_up, _E.refuse, *_SETTLING)
    ),
    "_SETTLE": tuple((DeliveryState.sent, e) for e in _SETTLING),
}
# separators of the parts' ids sent as one text: no SMSC puts control characters in a message id, and a
# delivery with an id that has one goes by the general statement
_PART_SEPARATOR = chr(31)  # the unit separator, between a delivery's parts
_ROW_SEPARATOR = chr(30)  # the record separator, between deliveries


class _DeliveredAtOnce:
    """The deliveries of a round stored delivered as their outcome is stored: every part's DELIVRD receipt
    came with the batch. Columns, as the statement takes them."""

    __slots__ = ("done_at", "ids", "lease_nos", "parts", "remote_ids")

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.lease_nos: list[int] = []
        self.parts: list[str] = []  # the parts' ids joined by _PART_SEPARATOR
        self.done_at: list[float | None] = []
        self.remote_ids: list[tuple[str, ...]] = []

    def take(
        self, delivery_id: int, lease_no: int, remote_ids: tuple[str, ...], got: Mapping[str, Receipt]
    ) -> bool:
        """Add a delivery if every part reached the handset by the receipts `got`; whether it was."""
        latest: datetime | None = None
        for remote_id in remote_ids:
            r = got.get(remote_id)
            if r is None or r.state is not ReceiptState.DELIVERED:
                return False
            if r.done_at is not None and (latest is None or r.done_at > latest):
                latest = r.done_at
        joined = _PART_SEPARATOR.join(remote_ids)
        if (
            not remote_ids
            or _ROW_SEPARATOR in joined
            or joined.count(_PART_SEPARATOR) != len(remote_ids) - 1
            or "" in remote_ids  # PostgreSQL splits an empty text into no element
        ):
            return False
        self.ids.append(delivery_id)
        self.lease_nos.append(lease_no)
        self.parts.append(joined)
        self.done_at.append(latest.timestamp() if latest is not None else None)
        self.remote_ids.append(remote_ids)
        return True


class _Outcomes:
    """Every other outcome of a round, for the general statement."""

    __slots__ = ("done_at", "ids", "lease_nos", "reasons", "remote_ids", "states", "waits")

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.lease_nos: list[int] = []
        self.states: list[str] = []
        self.reasons: list[str] = []
        self.waits: list[float] = []
        self.remote_ids: list[tuple[str, ...]] = []
        self.done_at: list[float | None] = []

    def add(
        self,
        delivery_id: int,
        lease_no: int,
        state: str,
        reason: str,
        wait: float,
        remote_ids: tuple[str, ...],
        done_at: float | None,
    ) -> None:
        self.ids.append(delivery_id)
        self.lease_nos.append(lease_no)
        self.states.append(state)
        self.reasons.append(reason)
        self.waits.append(wait)
        self.remote_ids.append(remote_ids)
        self.done_at.append(done_at)


def settled_state(parts: Sequence[ReceiptState | None]) -> str | None:
    """The final state of a sent delivery whose parts' latest receipts are `parts` (None: none yet), or None
    while one is still to come: failed when a part failed or expired, delivered when every part reached the
    handset, accepted otherwise (the network took it, no proof of delivery). `_settle` decides the same in
    SQL, from the stored parts."""
    if any(s is ReceiptState.FAILED or s is ReceiptState.EXPIRED for s in parts):
        return _FAILED
    if not parts or any(s is None or s is ReceiptState.EN_ROUTE for s in parts):
        return None
    return _DELIVERED if all(s is ReceiptState.DELIVERED for s in parts) else _ACCEPTED


def _latest_done(receipts: Iterable[Receipt]) -> float | None:
    """When the last of a delivery's parts reached the handset, by its receipts (epoch seconds), if they say."""
    latest = max((r.done_at for r in receipts if r.done_at is not None), default=None)
    return latest.timestamp() if latest is not None else None


def _receipt_columns(r: Receipt | None, now: float) -> tuple[Any, ...]:
    """A receipt as the map's receipt columns (state, raw_state, error_code, done_at, received_at); times as
    epoch seconds (asyncpg encodes a float in a quarter of the time of a datetime, and receipts come by the
    thousand)."""
    if r is None:
        return None, "", "", None, None
    return (
        str(r.state),
        r.raw_state,
        r.error_code,
        r.done_at.timestamp() if r.done_at is not None else None,
        r.received_at.timestamp() if r.received_at is not None else now,
    )


async def _write_map(conn: asyncpg.Connection, endpoint: str, parts: list[tuple[Any, ...]]) -> None:
    """Store the message-id map of sent deliveries: (remote_id, delivery_id, unsettled, then
    `_receipt_columns`) per part, `unsettled` when the delivery was stored `sent` (a receipt is still to come:
    the part is then indexed by its delivery for `_settle`). A part whose receipt was stored first gets its
    delivery, and keeps the receipt unless this one is final and that one was not. Inside the caller's
    transaction, after `_serialise_with_receipts`."""
    newer = "(excluded.state IS NOT NULL AND (p.state IS NULL OR p.state = 'en_route'))"
    await conn.execute(
        f"""INSERT INTO svc.delivery_part AS p
                  (endpoint, remote_id, delivery_id, unsettled, state, raw_state, error_code, done_at,
                   received_at)
           SELECT $1, r.remote_id, r.delivery_id, r.unsettled, r.state, r.raw_state, r.error_code,
                  to_timestamp(r.done_at), to_timestamp(r.received_at)
           FROM unnest($2::text[], $3::bigint[], $4::bool[], $5::text[], $6::text[], $7::text[], $8::float8[],
                       $9::float8[])
                AS r(remote_id, delivery_id, unsettled, state, raw_state, error_code, done_at, received_at)
           ON CONFLICT (endpoint, remote_id) DO UPDATE
           SET delivery_id = excluded.delivery_id, unsettled = excluded.unsettled,
               state = CASE WHEN {newer} THEN excluded.state ELSE p.state END,
               raw_state = CASE WHEN {newer} THEN excluded.raw_state ELSE p.raw_state END,
               error_code = CASE WHEN {newer} THEN excluded.error_code ELSE p.error_code END,
               done_at = CASE WHEN {newer} THEN excluded.done_at ELSE p.done_at END,
               received_at = CASE WHEN {newer} THEN excluded.received_at ELSE p.received_at END
           WHERE p.delivery_id IS NULL""",
        endpoint,
        *zip(*parts, strict=True),
    )


async def store_receipts(conn: asyncpg.Connection, endpoint: str, receipts: Sequence[Receipt]) -> int:
    """Store receipts (a final state is never overwritten by an interim one) and settle the deliveries whose
    parts they complete; how many deliveries reached a final state."""
    if not receipts:
        return 0
    async with conn.transaction():
        await _serialise_with_receipts(conn, endpoint)
        return await _settle(conn, sorted(await _write_receipts(conn, endpoint, receipts)))


async def _write_receipts(conn: asyncpg.Connection, endpoint: str, receipts: Iterable[Receipt]) -> set[int]:
    """Write receipts on their parts' rows: the part's row if its results came first (its delivery known), a
    new one otherwise; the deliveries known. Inside the caller's transaction, after `_serialise_with_receipts`."""
    latest: dict[str, Receipt] = {}
    for r in receipts:  # a batch may repeat a receipt (an SMSC resending): keep the final one
        if r.remote_id not in latest or r.state.is_final:
            latest[r.remote_id] = r
    now = time.time()
    rows = [(remote_id, *_receipt_columns(r, now)) for remote_id, r in latest.items()]
    delivery_ids = await conn.fetch(
        """INSERT INTO svc.delivery_part AS p
                  (endpoint, remote_id, state, raw_state, error_code, done_at, received_at)
           SELECT $1, r.remote_id, r.state, r.raw_state, r.error_code, to_timestamp(r.done_at),
                  to_timestamp(r.received_at)
           FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::float8[], $7::float8[])
                AS r(remote_id, state, raw_state, error_code, done_at, received_at)
           ON CONFLICT (endpoint, remote_id) DO UPDATE
           SET state = excluded.state, raw_state = excluded.raw_state, error_code = excluded.error_code,
               done_at = excluded.done_at, received_at = excluded.received_at
           WHERE p.state IS NULL OR p.state = 'en_route'
           RETURNING p.delivery_id""",
        endpoint,
        *zip(*rows, strict=True),
    )
    return {r[0] for r in delivery_ids if r[0] is not None}


async def _serialise_with_receipts(conn: asyncpg.Connection, endpoint: str) -> None:
    """Results and receipts of one endpoint are written one transaction at a time. Otherwise a receipt and
    the map row of its part, committed at the same moment, could each miss the other, and the delivery would
    stay ``sent`` for ever. The lock is held for one short transaction; statements after it see everything
    committed before it was granted."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('svc.receipt:' || $1))", endpoint)


async def _settle(conn: asyncpg.Connection, delivery_ids: list[int]) -> int:
    """Move sent deliveries whose every part has a final receipt to delivered (every part reached the
    handset), failed (a part failed or expired) or accepted (the rest: the network took it, no proof of
    delivery); how many moved."""
    if not delivery_ids:
        return 0
    status = await conn.execute(
        _SETTLE,
        delivery_ids,
    )
    return int(status.split()[-1])


# ---------------------------------------------------------------------------------------------- reading


async def queue_stats(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Deliveries by channel and state, with the age in seconds of the oldest ready one per channel: every
    delivery waiting or being sent, and the others only while their version is in force. The outbox keeps
    every delivery ever made; counting all of them every few seconds would grow with its history, while
    these are read through the queue's partial indexes and the deliveries of the few versions in force."""
    rows = await conn.fetch(
        """SELECT channel, 'pending' AS state, count(*) AS n,
                  extract(epoch FROM now() - min(created_at) FILTER (WHERE next_attempt_at <= now())) AS oldest_s
           FROM svc.delivery WHERE queued GROUP BY channel
           UNION ALL
           SELECT d.channel, 'sending', count(*), NULL
           FROM (SELECT unnest(ids) AS id FROM svc.delivery_lease) l JOIN svc.delivery d USING (id)
           WHERE d.state = 'sending' GROUP BY d.channel
           UNION ALL
           SELECT d.channel, d.state, count(*), NULL
           FROM svc.warning_version v JOIN svc.delivery d USING (warning_id, version)
           WHERE v.status = 'issued' AND v.expires > now() AND d.state NOT IN ('pending', 'sending')
           GROUP BY d.channel, d.state
           ORDER BY 1, 2"""
    )
    return [dict(r) for r in rows]


async def summary(conn: asyncpg.Connection, warning_id: int) -> dict[str, Any]:
    """Deliveries of a warning by state with segments, overall and per version, and each fan-out's progress:
    the API's view. One pass over the warning's deliveries."""
    rows = await conn.fetch(
        """SELECT version, state, count(*) AS n, coalesce(sum(segments), 0) AS segments FROM svc.delivery
           WHERE warning_id = $1 GROUP BY version, state ORDER BY version""",
        warning_id,
    )
    fanouts = await conn.fetch(
        """SELECT version, channel, state, deliveries, unchanged, reason FROM svc.fanout WHERE warning_id = $1
           ORDER BY version, channel""",
        warning_id,
    )
    total: dict[str, Any] = {"deliveries": dict.fromkeys(STATES, 0), "segments": 0}
    versions: dict[int, dict[str, Any]] = {
        f["version"]: {"version": f["version"], "deliveries": dict.fromkeys(STATES, 0), "segments": 0}
        for f in fanouts
    }
    for r in rows:
        version = versions.setdefault(
            r["version"], {"version": r["version"], "deliveries": dict.fromkeys(STATES, 0), "segments": 0}
        )
        for part in (total, version):
            part["deliveries"][r["state"]] += r["n"]
            part["segments"] += int(r["segments"])
    return total | {"versions": list(versions.values()), "fanouts": [dict(f) for f in fanouts]}
