"""Acknowledgement deadlines (叫应): who owes an acknowledgement for a high-level warning, the calls that ask
for it, and the escalation when a deadline passes.

For the levels in ``[acknowledgements] deadline_min``, the transaction that issues a version writes one
``svc.ack_request`` per department the warning calls (`write_requests`) and queues the first calls in the
partner outbox: an SMS to the duty contact and, when they have an address, an email. Each call carries the
request's short code (a reply "1234" or "收到1234" acknowledges) and a one-time link of its own (only the
SHA-256 of its token is stored, in ``svc.ack_token``).

Each passed deadline moves a waiting request one step along ``[acknowledgements] steps``: ``again`` calls the
duty contact again, ``deputy`` and ``leader`` call that person (a vacant rank is skipped: the next step is
taken at once), ``call_list`` puts the request on the duty officer's call list (state ``calling``). Steps
exhausted without a ``call_list`` end on the call list too: a request nobody answered is never left silent.
Every move is decided by `ack_transition` from `ACK_TRANSITIONS`; `escalate_due` applies them and returns
what it did, so that the lifecycle layer (warnings_svc/lifecycle/acknowledgement_steps.py) audits each one in
the same transaction.

Versions after the first:

- an Update keeps the acknowledgements already given: an acknowledged department stays acknowledged (its row
  keeps the version it acknowledged). A department whose request is still open is called again at the new
  version from the first step (its code stays, its deadline starts again); a department the update no longer
  concerns has its open request closed; a newly concerned department gets a request. An update to a level
  without acknowledgements closes every open request;
- a Cancel closes the warning's open requests; so does `escalate_due` for a warning that expired or was
  otherwise stopped.

A call's message id is ``ack-{request}-{version}-{step}-{channel}``: the same call written twice is one
message, and a call at a later version is a new one.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import asyncpg

from channels.sms.encoding import segment_count
from risk_zoning.store import UnitRecord
from warnings_svc.dissemination.partners import outbox
from warnings_svc.dissemination.partners.registry import (
    RANKS,
    DepartmentChain,
    DutyPerson,
    all_departments,
    departments_in,
)
from warnings_svc.settings import AcknowledgementSettings

MAX_SEGMENTS = 3  # a call's SMS: the headline is shortened until the text fits this many segments
CODE_DIGITS = 4
TOKEN_BYTES = 18  # 24 URL-safe characters


# ---------------------------------------------------------------------------------------------- states


class AckState(StrEnum):
    """Where an acknowledgement request stands (``svc.ack_request.state``)."""

    waiting = "waiting"
    acknowledged = "acknowledged"
    calling = "calling"
    closed = "closed"


class AckEvent(StrEnum):
    """What happens to an acknowledgement request."""

    deadline = "deadline"  # its deadline passed with no acknowledgement
    acknowledge = "acknowledge"  # by SMS, link, callback, console or a call
    not_reached = "not_reached"  # the duty officer rang and reached nobody
    recall = "recall"  # an Update of the warning calls the department again
    close = "close"  # the warning was cancelled, expired, or no longer concerns the department


@dataclass(frozen=True, slots=True)
class AckMove:
    """What an event does: the next state, whether the step counter advances, and whom to call (a rank),
    if anyone."""

    state: AckState
    advance: bool = False
    call: str | None = None


_W, _A, _C, _X = AckState.waiting, AckState.acknowledged, AckState.calling, AckState.closed
_E = AckEvent
# (state, step, event) -> move. `step` is the step the event takes ("again", "deputy", "leader", "call_list";
# "end" when the configured steps are used up) for a deadline, "-" for any other event.
ACK_TRANSITIONS: Mapping[tuple[AckState, str, AckEvent], AckMove] = {
    (_W, "again", _E.deadline): AckMove(_W, True, "duty"),
    (_W, "deputy", _E.deadline): AckMove(_W, True, "deputy"),
    (_W, "leader", _E.deadline): AckMove(_W, True, "leader"),
    (_W, "call_list", _E.deadline): AckMove(_C, True),
    (_W, "end", _E.deadline): AckMove(_C),
    (_W, "-", _E.acknowledge): AckMove(_A),
    (_C, "-", _E.acknowledge): AckMove(_A),
    (_C, "-", _E.not_reached): AckMove(_C),
    (_W, "-", _E.recall): AckMove(_W, False, "duty"),
    (_C, "-", _E.recall): AckMove(_W, False, "duty"),
    (_X, "-", _E.recall): AckMove(_W, False, "duty"),
    (_W, "-", _E.close): AckMove(_X),
    (_C, "-", _E.close): AckMove(_X),
}


class AckStateError(ValueError):
    """An event the table does not allow in that state (e.g. a second acknowledgement)."""

    def __init__(self, state: str, step: str, event: str) -> None:
        super().__init__(f"an acknowledgement request that is {state} cannot {event} (step {step})")


def ack_transition(state: AckState | str, event: AckEvent | str, step: str = "-") -> AckMove:
    """The move `event` makes from `state` (at `step`, for a deadline).

    >>> ack_transition("waiting", "deadline", "deputy")
    AckMove(state=<AckState.waiting: 'waiting'>, advance=True, call='deputy')
    >>> ack_transition("acknowledged", "acknowledge")
    Traceback (most recent call last):
    ...
    warnings_svc.dissemination.partners.acknowledgements.AckStateError: an acknowledgement request that is acknowledged cannot acknowledge (step -)
    """
    try:
        return ACK_TRANSITIONS[AckState(state), step, AckEvent(event)]
    except (KeyError, ValueError):
        raise AckStateError(str(state), step, str(event)) from None


def step_name(steps: Sequence[str], step: int) -> str:
    """The step a deadline takes from a request at escalation `step` (0: only the first call was made)."""
    return steps[step] if step < len(steps) else "end"


# ---------------------------------------------------------------------------------------------- pure parts


def new_token() -> str:
    """A one-time link's token (URL-safe)."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    """What is stored of a token: its SHA-256."""
    return hashlib.sha256(token.encode()).digest()


def new_code(taken: set[str]) -> str:
    """A short code not in `taken`: 4 digits (not starting with 0) while any is free, else 6."""
    for digits in (CODE_DIGITS, 6):
        low, span = 10 ** (digits - 1), 9 * 10 ** (digits - 1)
        for _ in range(50):
            code = str(low + secrets.randbelow(span))
            if code not in taken:
                return code
        start = secrets.randbelow(span)  # crowded: walk on from a random place to a free one
        for i in range(span):
            code = str(low + (start + i) % span)
            if code not in taken:
                return code
    raise RuntimeError("no free acknowledgement code")


def call_text(issuer: str, headline: str, code: str, link: str) -> str:
    """The call's SMS (and email body): within MAX_SEGMENTS segments, the headline shortened if it must be.

    >>> call_text("乌海市气象台", "乌海市气象台发布高温红色预警", "1234", "https://w.example/ack/abc")
    '【乌海市气象台】请确认收到：乌海市气象台发布高温红色预警。回复 1234 确认，或打开 https://w.example/ack/abc'
    """
    tail = f"。回复 {code} 确认" + (f"，或打开 {link}" if link else "")
    text = f"【{issuer}】请确认收到：{headline}{tail}"
    cut = headline
    while segment_count(text) > MAX_SEGMENTS and cut:
        cut = cut[:-1]
        text = f"【{issuer}】请确认收到：{cut}…{tail}"
    return text


def call_subject(headline: str) -> str:
    """The call's email subject."""
    return f"请确认收到：{headline}"


def ack_link(public_url: str, token: str) -> str:
    """The one-time link (empty without a public URL: the SMS then asks only for the reply)."""
    return f"{public_url.rstrip('/')}/ack/{token}" if public_url else ""


def message_id(request_id: int, version: int, step: int, channel: str) -> str:
    """The idempotency key of one call (the same call written twice is one message)."""
    return f"ack-{request_id}-{version}-{step}-{channel}"


# ---------------------------------------------------------------------------------------------- issuing


@dataclass(frozen=True, slots=True)
class IssuedFacts:
    """What the calls need of an issued version."""

    warning_id: int
    version: int
    msg_type: str
    status: str
    hazard: str
    level: str
    areas: tuple[str, ...]
    expires: datetime
    headline: str


async def _facts(conn: asyncpg.Connection, warning_id: int, version: int) -> IssuedFacts:
    row = await conn.fetchrow(
        """SELECT warning_id, version, msg_type, status, hazard, level, areas, expires,
                  coalesce(rendered->'zh-CN'->>'headline', '') AS headline
           FROM svc.warning_version WHERE warning_id = $1 AND version = $2""",
        warning_id,
        version,
    )
    if row is None:
        raise LookupError(f"no version {version} of warning {warning_id}")
    return IssuedFacts(
        row["warning_id"],
        row["version"],
        row["msg_type"],
        row["status"],
        row["hazard"],
        row["level"],
        tuple(row["areas"]),
        row["expires"],
        row["headline"],
    )


@dataclass(frozen=True, slots=True)
class Call:
    """Who is called for a request, at which step (for the caller to audit)."""

    request_id: int
    warning_id: int
    department: str
    step: int
    step_name: str
    state: str
    person: str  # "name (rank)", or "" when nobody is called
    delivery_ids: tuple[int, ...] = ()


async def write_requests(
    conn: asyncpg.Connection,
    *,
    warning_id: int,
    version: int,
    units: Mapping[str, UnitRecord],
    settings: AcknowledgementSettings,
    issuer: str,
    public_url: str = "",
    now: datetime,
    facts: IssuedFacts | None = None,
) -> list[Call]:
    """In the transaction that issues `version` of a warning: write (or, for an Update, carry over) its
    acknowledgement requests and queue their first calls; a Cancel closes the open ones. What was called.
    `facts`: the version as the caller holds it (else it is read); statements are spent only where needed,
    as this runs in every approval."""
    facts = facts or await _facts(conn, warning_id, version)
    existing = {}
    if facts.msg_type != "Alert":  # an Alert is a new warning: nothing was asked of anyone yet
        existing = {
            r["department_id"]: r
            for r in await conn.fetch(
                """SELECT r.*, d.code AS department FROM svc.ack_request r
                   JOIN svc.department d ON d.id = r.department_id
                   WHERE r.warning_id = $1 ORDER BY r.id FOR UPDATE OF r""",
                warning_id,
            )
        }
    minutes = settings.deadline_min.get(facts.level)  # type: ignore[call-overload]
    wanted: list[DepartmentChain] = []
    if facts.msg_type != "Cancel" and minutes is not None:
        wanted = await departments_in(
            conn, hazard=facts.hazard, level=facts.level, areas=facts.areas, units=units
        )
    calls: list[Call] = []
    keep = {d.id for d in wanted}
    for department_id, row in existing.items():
        if department_id not in keep and row["state"] in (AckState.waiting, AckState.calling):
            await _move(conn, row["id"], ack_transition(row["state"], AckEvent.close), now=now)
            calls.append(Call(row["id"], warning_id, row["department"], row["step"], "close", "closed", ""))
    if minutes is None or not wanted:
        return calls
    deadline = now + timedelta(minutes=minutes)
    taken = {
        r["code"]
        for r in await conn.fetch(
            """SELECT code FROM svc.ack_request WHERE warning_id = $1 OR state IN ('waiting', 'calling')""",
            warning_id,
        )
    }
    for department in wanted:
        row = existing.get(department.id)
        if row is not None and row["state"] == AckState.acknowledged:
            continue  # an Update keeps the acknowledgement already given
        if row is None:
            code = new_code(taken)
            taken.add(code)
            request_id = await conn.fetchval(
                """INSERT INTO svc.ack_request (warning_id, version, department_id, code, token_hash, deadline)
                   VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
                warning_id,
                version,
                department.id,
                code,
                token_hash(new_token()),  # replaced by the first call's own token below
                deadline,
            )
        else:
            request_id = row["id"]
            code = row["code"]
            ack_transition(row["state"], AckEvent.recall)  # checked: waiting, calling or closed
            await conn.execute(
                """UPDATE svc.ack_request SET version = $2, step = 0, state = 'waiting', deadline = $3,
                          call_outcome = '', updated_at = now() WHERE id = $1""",
                request_id,
                version,
                deadline,
            )
        person = _first_present(department, RANKS)
        ids = await _call(conn, facts, request_id, code, 0, person, issuer, public_url)
        calls.append(Call(request_id, warning_id, department.code, 0, "call", "waiting", _who(person), ids))
    return calls


def _first_present(department: DepartmentChain, ranks: Sequence[str]) -> DutyPerson | None:
    for rank in ranks:
        if rank in department.people:
            return department.people[rank]
    return None


def _who(person: DutyPerson | None) -> str:
    return "" if person is None else f"{person.name} ({person.rank})"


async def _call(
    conn: asyncpg.Connection,
    facts: IssuedFacts,
    request_id: int,
    code: str,
    step: int,
    person: DutyPerson | None,
    issuer: str,
    public_url: str,
) -> tuple[int, ...]:
    """Queue one call (SMS, and email when the person has an address) with a fresh one-time link."""
    if person is None:
        return ()
    token = new_token()
    digest = token_hash(token)
    await conn.execute(
        """INSERT INTO svc.ack_token (token_hash, request_id, person_id, version, step) VALUES ($1, $2, $3, $4, $5)""",
        digest,
        request_id,
        person.id,
        facts.version,
        step,
    )
    await conn.execute("UPDATE svc.ack_request SET token_hash = $2 WHERE id = $1", request_id, digest)
    text = call_text(issuer, facts.headline, code, ack_link(public_url, token))
    ids: list[int] = []
    channels = [("sms", person.phone)] + ([("email", person.email)] if person.email else [])
    for channel, address in channels:
        delivery_id = await outbox.enqueue_message(
            conn,
            warning_id=facts.warning_id,
            version=facts.version,
            channel=channel,
            address=address,
            message_id=message_id(request_id, facts.version, step, channel),
            give_up_at=facts.expires,
            text=text,
            subject=call_subject(facts.headline),
            ack_request_id=request_id,
            msg_type=facts.msg_type,
        )
        if delivery_id is not None:
            ids.append(delivery_id)
    return tuple(ids)


async def _move(
    conn: asyncpg.Connection, request_id: int, move: AckMove, *, now: datetime, **extra: Any
) -> None:
    sets = ["state = $2", "updated_at = $3"]
    args: list[Any] = [request_id, str(move.state), now]
    if move.advance:
        sets.append("step = least(step + 1, 4)")
    for column, value in extra.items():
        args.append(value)
        sets.append(f"{column} = ${len(args)}")
    await conn.execute(f"UPDATE svc.ack_request SET {', '.join(sets)} WHERE id = $1", *args)


# ---------------------------------------------------------------------------------------------- escalation


_IN_FORCE = """EXISTS (SELECT 1 FROM svc.warning_version v WHERE v.warning_id = r.warning_id
                      AND v.status = 'issued' AND v.msg_type <> 'Cancel' AND v.expires > $1)"""


async def escalate_due(
    conn: asyncpg.Connection,
    now: datetime,
    settings: AcknowledgementSettings,
    *,
    issuer: str,
    public_url: str = "",
) -> list[Call]:
    """Close the open requests of warnings no longer in force, and move every waiting request past its
    deadline one step (a vacant rank is skipped to the next step at once). Call it in a transaction; what
    it did, for the caller to audit."""
    done: list[Call] = []
    for row in await conn.fetch(
        f"""SELECT r.id, r.warning_id, r.step, r.state, d.code FROM svc.ack_request r
            JOIN svc.department d ON d.id = r.department_id
            WHERE r.state IN ('waiting', 'calling') AND NOT {_IN_FORCE} ORDER BY r.id FOR UPDATE OF r""",
        now,
    ):
        await _move(conn, row["id"], ack_transition(row["state"], AckEvent.close), now=now)
        done.append(Call(row["id"], row["warning_id"], row["code"], row["step"], "close", "closed", ""))
    due = await conn.fetch(
        """SELECT r.id, r.warning_id, r.version, r.step, r.state, r.code, r.department_id, v.level
           FROM svc.ack_request r JOIN svc.warning_version v USING (warning_id, version)
           WHERE r.state = 'waiting' AND r.deadline <= $1 ORDER BY r.deadline, r.id
           FOR UPDATE OF r SKIP LOCKED""",
        now,
    )
    if not due:
        return done
    chains = {d.id: d for d in await _chains(conn, {r["department_id"] for r in due})}
    for row in due:
        department = chains[row["department_id"]]
        facts = await _facts(conn, row["warning_id"], row["version"])
        minutes = settings.deadline_min.get(facts.level, min(settings.deadline_min.values(), default=10.0))  # type: ignore[call-overload]
        step = row["step"]
        while True:
            name = step_name(settings.steps, step)
            move = ack_transition(AckState.waiting, AckEvent.deadline, name)
            person = department.people.get(move.call) if move.call else None
            if move.call and person is None and step + 1 <= len(settings.steps):
                done.append(
                    Call(row["id"], row["warning_id"], department.code, step + 1, name, "skipped", "")
                )
                step += 1  # a vacant rank: take the next step now
                continue
            break
        new_step = min(step + 1, 4) if move.advance else min(step, 4)
        await conn.execute(
            """UPDATE svc.ack_request SET state = $2, step = $3, deadline = $4, updated_at = $5 WHERE id = $1""",
            row["id"],
            str(move.state),
            new_step,
            now + timedelta(minutes=minutes),
            now,
        )
        ids = (
            await _call(conn, facts, row["id"], row["code"], new_step, person, issuer, public_url)
            if person is not None
            else ()
        )
        done.append(
            Call(
                row["id"],
                row["warning_id"],
                department.code,
                new_step,
                name,
                str(move.state),
                _who(person),
                ids,
            )
        )
    return done


async def overdue_count(conn: asyncpg.Connection, now: datetime) -> int:
    """Requests of warnings in force whose first deadline passed with no acknowledgement: still waiting
    after an escalation step, left to the duty officer's call list, or due and not yet escalated."""
    return int(
        await conn.fetchval(
            f"""SELECT count(*) FROM svc.ack_request r
                WHERE (r.state = 'calling' OR (r.state = 'waiting' AND (r.step > 0 OR r.deadline <= $1)))
                  AND {_IN_FORCE}""",
            now,
        )
    )


async def _chains(conn: asyncpg.Connection, ids: set[int]) -> list[DepartmentChain]:
    return [d for d in await all_departments(conn, retired=True) if d.id in ids]


# ---------------------------------------------------------------------------------------------- acknowledging


class AckOutcome(StrEnum):
    """What an acknowledgement attempt came to."""

    acknowledged = "acknowledged"
    duplicate = "duplicate"  # acknowledged before: nothing changes
    not_in_force = "not_in_force"  # the warning expired, was cancelled or superseded: nothing changes
    noted = "noted"  # a call that reached nobody: the outcome noted, the request stays on the call list
    unknown = "unknown"


@dataclass(frozen=True, slots=True)
class AckResult:
    """The outcome of an acknowledgement, with the request it concerned (None when unknown)."""

    outcome: AckOutcome
    request_id: int | None = None
    warning_id: int | None = None
    department: str = ""


async def acknowledge(
    conn: asyncpg.Connection, request_id: int, *, by: str, via: str, now: datetime
) -> AckResult:
    """Record that a request was acknowledged (call in a transaction). A second acknowledgement, or one for a
    warning no longer in force, changes nothing and says so."""
    row = await conn.fetchrow(
        f"""SELECT r.id, r.state, r.warning_id, d.code, {_IN_FORCE} AS in_force
            FROM svc.ack_request r JOIN svc.department d ON d.id = r.department_id
            WHERE r.id = $2 FOR UPDATE OF r""",
        now,
        request_id,
    )
    if row is None:
        return AckResult(AckOutcome.unknown)
    found = (row["id"], row["warning_id"], row["code"])
    if row["state"] == AckState.acknowledged:
        return AckResult(AckOutcome.duplicate, *found)
    if row["state"] == AckState.closed or not row["in_force"]:
        return AckResult(AckOutcome.not_in_force, *found)
    move = ack_transition(row["state"], AckEvent.acknowledge)
    await _move(conn, request_id, move, now=now, acknowledged_at=now, acknowledged_by=by[:120], via=via)
    return AckResult(AckOutcome.acknowledged, *found)


async def record_call(
    conn: asyncpg.Connection, request_id: int, *, reached: bool, note: str, by: str, now: datetime
) -> AckResult:
    """The duty officer's call: reached and acknowledged (via 'call'), or not reached (the request stays on
    the call list, the outcome noted)."""
    if reached:
        result = await acknowledge(conn, request_id, by=by, via="call", now=now)
        if result.outcome is AckOutcome.acknowledged:
            await conn.execute(
                "UPDATE svc.ack_request SET call_outcome = $2 WHERE id = $1", request_id, note[:300]
            )
        return result
    row = await conn.fetchrow(
        """SELECT r.id, r.state, r.warning_id, d.code FROM svc.ack_request r
           JOIN svc.department d ON d.id = r.department_id WHERE r.id = $1 FOR UPDATE OF r""",
        request_id,
    )
    if row is None:
        return AckResult(AckOutcome.unknown)
    found = (row["id"], row["warning_id"], row["code"])
    if row["state"] == AckState.acknowledged:
        return AckResult(AckOutcome.duplicate, *found)
    if row["state"] != AckState.calling:
        return AckResult(AckOutcome.not_in_force, *found)
    move = ack_transition(row["state"], AckEvent.not_reached)
    outcome = f"{now:%H:%M} {by}: {note}".strip()[:300]
    await _move(conn, request_id, move, now=now, call_outcome=outcome)
    return AckResult(AckOutcome.noted, *found)


# ---------------------------------------------------------------------------------------------- links and codes


class TokenState(StrEnum):
    """What a one-time link's token leads to."""

    open = "open"  # the request waits for this acknowledgement
    used = "used"  # acknowledged already (through this link or otherwise)
    expired = "expired"  # the warning is no longer in force, or the request was closed
    unknown = "unknown"


@dataclass(frozen=True, slots=True)
class TokenLookup:
    """A token's request and what the link page shows."""

    state: TokenState
    request_id: int | None = None
    warning_id: int | None = None
    department: str = ""
    person: str = ""
    headline: str = ""
    level: str = ""
    expires: datetime | None = None


async def lookup_token(conn: asyncpg.Connection, token: str, *, now: datetime) -> TokenLookup:
    """The request a one-time link's token belongs to, and whether it can still be used."""
    if not token or len(token) > 100:
        return TokenLookup(TokenState.unknown)
    row = await conn.fetchrow(
        f"""SELECT r.id, r.state, r.warning_id, d.name AS department, t.used_at, {_IN_FORCE} AS in_force,
                   coalesce(p.name, '') AS person, coalesce(p.rank, '') AS rank,
                   coalesce(v.rendered->'zh-CN'->>'headline', '') AS headline, v.level, v.expires
            FROM svc.ack_token t JOIN svc.ack_request r ON r.id = t.request_id
            JOIN svc.department d ON d.id = r.department_id
            JOIN svc.warning_version v ON v.warning_id = r.warning_id AND v.version = r.version
            LEFT JOIN svc.duty_person p ON p.id = t.person_id
            WHERE t.token_hash = $2""",
        now,
        token_hash(token),
    )
    if row is None:
        return TokenLookup(TokenState.unknown)
    if row["used_at"] is not None or row["state"] == AckState.acknowledged:
        state = TokenState.used
    elif row["state"] == AckState.closed or not row["in_force"]:
        state = TokenState.expired
    else:
        state = TokenState.open
    person = f"{row['person']}" if row["person"] else ""
    return TokenLookup(
        state,
        row["id"],
        row["warning_id"],
        row["department"],
        person,
        row["headline"],
        row["level"],
        row["expires"],
    )


async def acknowledge_token(
    conn: asyncpg.Connection, token: str, *, now: datetime
) -> tuple[TokenLookup, AckResult]:
    """Acknowledge through a one-time link (call in a transaction): nothing is written unless the token is
    open; the token is then used up."""
    found = await lookup_token(conn, token, now=now)
    if found.state is not TokenState.open or found.request_id is None:
        return found, AckResult(AckOutcome.unknown)
    result = await acknowledge(
        conn, found.request_id, by=found.person or found.department, via="link", now=now
    )
    if result.outcome is AckOutcome.acknowledged:
        await conn.execute(
            "UPDATE svc.ack_token SET used_at = $2 WHERE token_hash = $1", token_hash(token), now
        )
    return found, result


async def request_for_department(conn: asyncpg.Connection, identifier: str, department: str) -> int | None:
    """The request of the warning issued as `identifier` (any of its versions) owed by `department` (code)."""
    value: int | None = await conn.fetchval(
        """SELECT r.id FROM svc.ack_request r JOIN svc.department d ON d.id = r.department_id
           WHERE d.code = $2 AND r.warning_id =
                 (SELECT warning_id FROM svc.warning_version WHERE identifier = $1)""",
        identifier,
        department,
    )
    return value


async def requests_for_code(conn: asyncpg.Connection, phone: str, code: str) -> list[tuple[int, str]]:
    """The requests whose short code is `code` and whose department's duty chain has `phone`, newest first,
    with the name of that person (and rank)."""
    rows = await conn.fetch(
        """SELECT r.id, p.name, p.rank FROM svc.ack_request r
           JOIN svc.duty_person p ON p.department_id = r.department_id
           WHERE r.code = $2 AND p.phone = $1 ORDER BY r.created_at DESC, r.id DESC""",
        phone,
        code,
    )
    return [(r["id"], f"{r['name']} ({r['rank']})") for r in rows]


# ---------------------------------------------------------------------------------------------- views


@dataclass(frozen=True, slots=True)
class RequestView:
    """One department's acknowledgement of a warning, as the console shows it."""

    id: int
    warning_id: int
    version: int
    department: str
    department_code: str
    code: str
    state: str
    step: int
    step_name: str
    deadline: datetime
    overdue: bool
    acknowledged_at: datetime | None
    acknowledged_by: str
    via: str
    call_outcome: str
    people: tuple[DutyPerson, ...]


async def requests_of(
    conn: asyncpg.Connection,
    *,
    now: datetime,
    steps: Sequence[str],
    warning_id: int | None = None,
    calling_only: bool = False,
) -> list[RequestView]:
    """The acknowledgement requests of one warning (or every one on the call list), with the duty chains."""
    rows = await conn.fetch(
        """SELECT r.*, d.name AS department, d.code AS department_code FROM svc.ack_request r
           JOIN svc.department d ON d.id = r.department_id
           WHERE ($1::bigint IS NULL OR r.warning_id = $1) AND (NOT $2 OR r.state = 'calling')
           ORDER BY r.warning_id, d.area, d.code""",
        warning_id,
        calling_only,
    )
    chains = {d.id: d for d in await _chains(conn, {r["department_id"] for r in rows})} if rows else {}
    out = []
    for r in rows:
        chain = chains.get(r["department_id"])
        people = tuple(chain.people[k] for k in RANKS if chain and k in chain.people)
        out.append(
            RequestView(
                r["id"], r["warning_id"], r["version"], r["department"], r["department_code"], r["code"],
                r["state"], r["step"], "call" if r["step"] == 0 else steps[min(r["step"], len(steps)) - 1],
                r["deadline"], r["state"] == AckState.waiting and r["deadline"] <= now,
                r["acknowledged_at"], r["acknowledged_by"], r["via"], r["call_outcome"], people,
            )
        )  # fmt: skip
    return out
