"""The partner delivery log: each delivery to a subscription (or acknowledgement call) with every attempt the
dispatcher made, newest first; and "send again", the ``resend`` event of `states.partner_transition`.

Only SQL on an asyncpg connection; who may read or resend what is the web layer's decision
(`warnings_svc.web.api.partner_log`).

Decisions where the issue is silent:

- "Send again" puts the delivery back to pending with the body it was stored with (never rebuilt), due now;
  its attempts so far stay, and the next is numbered after them. A warning that has expired in the meantime
  is sent anyway: a person asked for it. So that the dispatcher does not give up at once, ``give_up_at`` is
  moved to `RESEND_GRACE` from now when it has passed (kept when it is later).
- The delivery's ``reason`` becomes `RESEND_REASON` with who asked, until the next attempt writes its own:
  the dispatcher marks the attempt that follows a resend ``manual`` (`is_resend`).
- Refused: a delivery that is pending or sending (it is about to be sent, or being sent), one whose
  subscription was deleted (its owner asked for no more), and one whose subscription is paused or disabled
  (the dispatcher would drop it at once: the subscription is to be resumed or enabled first).
- Addresses are shown without their secrets (`shown_address`): a webhook URL's password and query values,
  which often carry tokens, are masked. The subscription's signing secrets are never read here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg

from warnings_svc.dissemination.partners.outbox import PARTNER_DISPATCH_CHANNEL, RESEND_REASON
from warnings_svc.dissemination.partners.states import (
    PartnerDeliveryEvent,
    PartnerDeliveryState,
    PartnerDeliveryStateError,
    partner_transition,
)

MAX_PAGE = 200  # deliveries per page of the log at most
RESEND_GRACE = timedelta(hours=1)  # time a resent delivery gets before the dispatcher gives up on it
MASK = "***"


class PartnerLogError(Exception):
    """A refused look-up or resend: ``code`` is ``not_found``, ``not_resendable``, ``subscription_deleted`` or
    ``subscription_inactive``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Attempt:
    """One try of a delivery, as the dispatcher recorded it."""

    attempt: int
    started_at: datetime
    latency_ms: int
    outcome: str  # delivered | temporary_failure | permanent_failure
    status: int | None  # HTTP status or SMTP reply code
    error: str
    manual: bool  # the try after a "send again"

    def to_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "started_at": self.started_at.isoformat(),
            "latency_ms": self.latency_ms,
            "outcome": self.outcome,
            "status": self.status,
            "error": self.error,
            "manual": self.manual,
        }


@dataclass(frozen=True)
class Delivery:
    """One version sent to one subscription (or one acknowledgement call) and its attempts, oldest first."""

    id: int
    subscription_id: int | None
    ack_request_id: int | None
    owner: str | None  # the subscription's owner (None for an acknowledgement call)
    subscription_deleted: bool
    subscription_state: str | None  # active | paused | disabled (None for an acknowledgement call)
    warning_id: int
    version: int
    msg_type: str
    channel: str
    address: str  # as `shown_address` shows it
    message_id: str
    state: PartnerDeliveryState
    attempt_count: int
    next_attempt_at: datetime
    give_up_at: datetime
    last_status: int | None
    reason: str
    created_at: datetime
    done_at: datetime | None
    attempts: tuple[Attempt, ...]

    @property
    def resendable(self) -> bool:
        """Whether "send again" may be asked now."""
        try:
            partner_transition(self.state, PartnerDeliveryEvent.resend)
        except PartnerDeliveryStateError:
            return False
        return not self.subscription_deleted and self.subscription_state in (None, "active")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subscription_id": self.subscription_id,
            "ack_request_id": self.ack_request_id,
            "warning_id": self.warning_id,
            "version": self.version,
            "msg_type": self.msg_type,
            "channel": self.channel,
            "address": self.address,
            "message_id": self.message_id,
            "state": str(self.state),
            "attempt_count": self.attempt_count,
            "next_attempt_at": self.next_attempt_at.isoformat(),
            "give_up_at": self.give_up_at.isoformat(),
            "last_status": self.last_status,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "done_at": None if self.done_at is None else self.done_at.isoformat(),
            "resendable": self.resendable,
            "attempts": [a.to_json() for a in self.attempts],
        }


@dataclass(frozen=True)
class Subscription:
    """What the log shows of a subscription (never its secrets)."""

    id: int
    owner: str
    name: str
    channel: str
    address: str  # as `shown_address` shows it
    hazards: tuple[str, ...]  # empty: all
    levels: tuple[str, ...]
    areas: tuple[str, ...]
    msg_types: tuple[str, ...]
    state: str  # active | paused | disabled
    reason: str
    created_at: datetime
    deleted_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "name": self.name,
            "channel": self.channel,
            "address": self.address,
            "hazards": list(self.hazards),
            "levels": list(self.levels),
            "areas": list(self.areas),
            "msg_types": list(self.msg_types),
            "state": self.state,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
            "deleted_at": None if self.deleted_at is None else self.deleted_at.isoformat(),
        }


def shown_address(channel: str, address: str) -> str:
    """An address as the log shows it: a webhook URL without its password or query values.

    >>> shown_address("webhook", "https://ops:pw@example.cn/hook?token=abc&v=2#x")
    'https://ops:***@example.cn/hook?token=***&v=***'
    >>> shown_address("email", "duty@example.cn")
    'duty@example.cn'
    """
    if channel != "webhook":
        return address
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return MASK  # not a URL we can take apart: show nothing of it
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username is not None:
        netloc = parts.username + (f":{MASK}" if parts.password is not None else "") + "@" + netloc
    query = "&".join(f"{name}={MASK}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def is_resend(reason: str) -> bool:
    """Whether a delivery's reason says it was put back by "send again" (its next attempt is ``manual``)."""
    return reason.startswith(RESEND_REASON)


_DELIVERY_COLUMNS = """d.id, d.subscription_id, d.ack_request_id, s.owner, s.deleted_at IS NOT NULL AS deleted,
    s.state AS subscription_state, s.reason AS subscription_reason,
    d.warning_id, d.version, d.msg_type, d.channel, d.address, d.message_id, d.state, d.attempts,
    d.next_attempt_at, d.give_up_at, d.last_status, d.reason, d.created_at, d.done_at"""

_DELIVERIES_SQL = f"""SELECT {_DELIVERY_COLUMNS}
    FROM svc.partner_delivery d LEFT JOIN svc.subscription s ON s.id = d.subscription_id
    WHERE ($1::bigint IS NULL OR d.subscription_id = $1) AND ($2::bigint IS NULL OR d.warning_id = $2)
      AND ($3::text IS NULL OR d.state = $3) AND ($4::bigint IS NULL OR d.id < $4)
    ORDER BY d.id DESC LIMIT $5"""

_ONE_SQL = f"""SELECT {_DELIVERY_COLUMNS}
    FROM svc.partner_delivery d LEFT JOIN svc.subscription s ON s.id = d.subscription_id WHERE d.id = $1"""

_ATTEMPTS_SQL = """SELECT delivery_id, attempt, started_at, latency_ms, outcome, status, error, manual
    FROM svc.partner_attempt WHERE delivery_id = ANY($1::bigint[]) ORDER BY delivery_id, attempt, id"""

_SUBSCRIPTION_COLUMNS = """id, owner, name, channel, address, hazards, levels, areas, msg_types, state, reason,
    created_at, deleted_at"""


async def deliveries(
    conn: asyncpg.Connection,
    *,
    subscription_id: int | None = None,
    warning_id: int | None = None,
    state: PartnerDeliveryState | str | None = None,
    before_id: int | None = None,
    limit: int,
) -> list[Delivery]:
    """Deliveries newest first (by id), each with its attempts; only those before `before_id` when given (the
    next page starts before the last id of this one)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1 to {MAX_PAGE}, not {limit}")
    wanted = None if state is None else str(PartnerDeliveryState(state))
    rows = await conn.fetch(_DELIVERIES_SQL, subscription_id, warning_id, wanted, before_id, limit)
    return await _with_attempts(conn, rows)


async def delivery(conn: asyncpg.Connection, delivery_id: int) -> Delivery:
    """One delivery with its attempts; `PartnerLogError` ``not_found`` when there is none."""
    row = await conn.fetchrow(_ONE_SQL, delivery_id)
    if row is None:
        raise PartnerLogError("not_found", f"no partner delivery {delivery_id}")
    return (await _with_attempts(conn, [row]))[0]


async def resend(
    conn: asyncpg.Connection, delivery_id: int, by: str, *, now: datetime | None = None
) -> Delivery:
    """Send a delivery again ("send again" in the log): back to pending, due now, with more time before the
    dispatcher gives up when its time had passed; wakes the dispatchers. In its own transaction (a savepoint in
    the caller's). `PartnerLogError` when there is no such delivery (``not_found``), it is pending or sending
    (``not_resendable``) or its subscription was deleted (``subscription_deleted``)."""
    async with conn.transaction():
        row = await conn.fetchrow(
            f"{_ONE_SQL} FOR UPDATE OF d", delivery_id
        )  # held until commit: a dispatcher's claim of the same row waits, then sees it pending
        if row is None:
            raise PartnerLogError("not_found", f"no partner delivery {delivery_id}")
        try:
            target = partner_transition(row["state"], PartnerDeliveryEvent.resend)
        except PartnerDeliveryStateError as e:
            raise PartnerLogError(
                "not_resendable",
                f"partner delivery {delivery_id} is {row['state']}: it goes out without being asked again",
            ) from e
        if row["deleted"]:
            raise PartnerLogError(
                "subscription_deleted",
                f"partner delivery {delivery_id} belongs to subscription {row['subscription_id']}, "
                "which was deleted",
            )
        if row["subscription_state"] not in (None, "active"):
            why = f" ({row['subscription_reason']})" if row["subscription_reason"] else ""
            raise PartnerLogError(
                "subscription_inactive",
                f"partner delivery {delivery_id} belongs to subscription {row['subscription_id']}, which is "
                f"{row['subscription_state']}{why}: resume or enable it first",
            )
        moment = now if now is not None else await conn.fetchval("SELECT now()")
        await conn.execute(
            """UPDATE svc.partner_delivery
               SET state = $2, next_attempt_at = $3,
                   give_up_at = CASE WHEN give_up_at <= $3 THEN $3 + $4::interval ELSE give_up_at END,
                   done_at = NULL, lease_owner = NULL, lease_until = NULL, reason = $5
               WHERE id = $1""",
            delivery_id,
            str(target),
            moment,
            RESEND_GRACE,
            (RESEND_REASON + by)[:300],
        )
        await conn.execute("SELECT pg_notify($1, $2)", PARTNER_DISPATCH_CHANNEL, row["channel"])
    return await delivery(conn, delivery_id)


async def subscription(conn: asyncpg.Connection, subscription_id: int) -> Subscription:
    """One subscription as the log shows it (deleted ones too); `PartnerLogError` ``not_found``."""
    row = await conn.fetchrow(
        f"SELECT {_SUBSCRIPTION_COLUMNS} FROM svc.subscription WHERE id = $1", subscription_id
    )
    if row is None:
        raise PartnerLogError("not_found", f"no subscription {subscription_id}")
    return _subscription(row)


async def subscriptions(
    conn: asyncpg.Connection, *, owner: str | None = None, limit: int
) -> list[Subscription]:
    """The subscriptions not deleted (of `owner` when given), newest first."""
    rows = await conn.fetch(
        f"""SELECT {_SUBSCRIPTION_COLUMNS} FROM svc.subscription
            WHERE deleted_at IS NULL AND ($1::text IS NULL OR owner = $1) ORDER BY id DESC LIMIT $2""",
        owner,
        limit,
    )
    return [_subscription(r) for r in rows]


def _subscription(row: asyncpg.Record) -> Subscription:
    return Subscription(
        id=row["id"],
        owner=row["owner"],
        name=row["name"],
        channel=row["channel"],
        address=shown_address(row["channel"], row["address"]),
        hazards=tuple(row["hazards"]),
        levels=tuple(row["levels"]),
        areas=tuple(row["areas"]),
        msg_types=tuple(row["msg_types"]),
        state=row["state"],
        reason=row["reason"],
        created_at=row["created_at"],
        deleted_at=row["deleted_at"],
    )


async def _with_attempts(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> list[Delivery]:
    found: dict[int, list[Attempt]] = {r["id"]: [] for r in rows}
    if found:
        for a in await conn.fetch(_ATTEMPTS_SQL, list(found)):
            found[a["delivery_id"]].append(
                Attempt(
                    attempt=a["attempt"],
                    started_at=a["started_at"],
                    latency_ms=a["latency_ms"],
                    outcome=a["outcome"],
                    status=a["status"],
                    error=a["error"],
                    manual=a["manual"],
                )
            )
    return [
        Delivery(
            id=r["id"],
            subscription_id=r["subscription_id"],
            ack_request_id=r["ack_request_id"],
            owner=r["owner"],
            subscription_deleted=r["deleted"],
            subscription_state=r["subscription_state"],
            warning_id=r["warning_id"],
            version=r["version"],
            msg_type=r["msg_type"],
            channel=r["channel"],
            address=shown_address(r["channel"], r["address"]),
            message_id=r["message_id"],
            state=PartnerDeliveryState(r["state"]),
            attempt_count=r["attempts"],
            next_attempt_at=r["next_attempt_at"],
            give_up_at=r["give_up_at"],
            last_status=r["last_status"],
            reason=r["reason"],
            created_at=r["created_at"],
            done_at=r["done_at"],
            attempts=tuple(found[r["id"]]),
        )
        for r in rows
    ]
