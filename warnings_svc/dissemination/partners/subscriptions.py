"""Partners' subscriptions: which warnings go where, on which channel.

A subscription names hazards, levels, areas and message types (each empty: all) and one address: a webhook
URL, an email address, an MQTT topic (under `[partners] mqtt_topic_prefix`) or a phone. `check_spec` checks
everything a person gave before anything is written; the web layer adds the webhook's address check (DNS,
private networks) from `channels.webhooks.client`. A webhook's secret is made here, returned once by
`create` and `rotate`, and never listed.

`matching` picks the subscriptions an issued version goes to: active, of the version's hazard, level and
message type, and sharing ground with its areas (the same unit, or one inside the other: a district's
subscription gets the warnings of its towns and of the whole city).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from channels.email.client import InvalidEmail
from channels.email.client import check_address as check_email
from channels.mqtt.partners import check_topic_address
from channels.webhooks.client import EndpointRefused, endpoint_url
from channels.webhooks.signing import new_secret
from risk_zoning.store import UnitRecord
from risk_zoning.unit_tree import same_or_nested
from warnings_svc.dissemination.recipients import RecipientError, check_phone, full_code
from warnings_svc.vocabulary import HAZARD_LEVELS, LEVELS

CHANNELS: tuple[str, ...] = ("webhook", "email", "mqtt", "sms")
MSG_TYPES: tuple[str, ...] = ("Alert", "Update", "Cancel")
STATES: tuple[str, ...] = ("active", "paused", "disabled")
MAX_AREAS = 200
MAX_PER_OWNER = 200  # subscriptions one user may have: each matching warning writes one delivery apiece
_URL = re.compile(r"^https?://[^\s/@?#]+(/[^\s#]*)?$")


class SubscriptionError(ValueError):
    """A subscription that cannot be made or changed as asked: ``code`` for the API (invalid, not_found,
    forbidden), ``field`` the field at fault."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.field = field


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """What a subscription asks for, checked."""

    channel: str
    address: str
    hazards: tuple[str, ...] = ()
    levels: tuple[str, ...] = ()
    areas: tuple[str, ...] = ()
    msg_types: tuple[str, ...] = ()
    name: str = ""
    department_id: int | None = None


@dataclass(frozen=True, slots=True)
class Subscription:
    """A stored subscription, as its owner sees it (never its secret)."""

    id: int
    owner: str
    department_id: int | None
    name: str
    channel: str
    address: str
    hazards: tuple[str, ...]
    levels: tuple[str, ...]
    areas: tuple[str, ...]
    msg_types: tuple[str, ...]
    state: str
    reason: str
    rotating_until: datetime | None
    created_at: datetime
    updated_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "owner": self.owner,
            "department_id": self.department_id,
            "name": self.name,
            "channel": self.channel,
            "address": self.address,
            "hazards": list(self.hazards),
            "levels": list(self.levels),
            "areas": list(self.areas),
            "msg_types": list(self.msg_types),
            "state": self.state,
            "reason": self.reason,
            "rotating_until": self.rotating_until.isoformat() if self.rotating_until else None,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }

    def wants(self, hazard: str, level: str, msg_type: str) -> bool:
        """Whether a version of `hazard` at `level` and of `msg_type` is for this subscription (areas aside)."""
        return (
            (not self.hazards or hazard in self.hazards)
            and (not self.levels or level in self.levels)
            and (not self.msg_types or msg_type in self.msg_types)
        )


def check_address(channel: str, address: str) -> str:
    """The address, checked for its channel (the form only; a webhook's host is checked by the caller).

    >>> check_address("mqtt", "water/ops")
    'water/ops'
    >>> check_address("email", "duty@water.example.org")
    'duty@water.example.org'
    """
    if not isinstance(address, str) or not address or address != address.strip():
        raise SubscriptionError("invalid", "address is empty or has spaces around it", "url")
    if any(ord(c) < 32 or c == "\x7f" for c in address):
        raise SubscriptionError("invalid", "address has control characters", "url")
    if channel == "webhook":
        if len(address) > 2000 or not _URL.match(address):
            raise SubscriptionError(
                "invalid", "url must be an http(s) URL without user:password@ or a #fragment", "url"
            )
        try:
            endpoint_url(address)  # as the webhook channel will read it
        except EndpointRefused as e:
            raise SubscriptionError("invalid", str(e), "url") from None
        return address
    if channel == "email":
        try:
            return check_email(address)  # as the email channel will read it
        except InvalidEmail as e:
            raise SubscriptionError("invalid", str(e), "email") from None
    if channel == "mqtt":
        try:
            return check_topic_address(address)  # as the MQTT partner channel will read it
        except ValueError as e:
            raise SubscriptionError("invalid", str(e), "topic") from None
    if channel == "sms":
        try:
            return check_phone(address)
        except RecipientError as e:
            raise SubscriptionError("invalid", str(e), "phone") from None
    raise SubscriptionError("invalid", f"channel must be one of {', '.join(CHANNELS)}", "channel")


def check_spec(
    channel: str,
    address: str,
    *,
    hazards: Iterable[str] = (),
    levels: Iterable[str] = (),
    areas: Iterable[str] = (),
    msg_types: Iterable[str] = (),
    name: str = "",
    units: Mapping[str, UnitRecord],
    department_id: int | None = None,
) -> SubscriptionSpec:
    """A subscription's request checked field by field; `SubscriptionError` naming the first field at fault."""
    if channel not in CHANNELS:
        raise SubscriptionError("invalid", f"channel must be one of {', '.join(CHANNELS)}", "channel")
    checked_address = check_address(channel, address)
    hazards_ = _members(hazards, tuple(HAZARD_LEVELS), "hazards")
    levels_ = _members(levels, LEVELS, "levels")
    types_ = _members(msg_types, MSG_TYPES, "msg_types")
    codes = list(dict.fromkeys(areas))
    if len(codes) > MAX_AREAS:
        raise SubscriptionError("invalid", f"at most {MAX_AREAS} areas", "areas")
    full = []
    for code in codes:
        try:
            expanded = full_code(code) if isinstance(code, str) else ""
        except RecipientError:
            expanded = ""
        if expanded not in units:
            raise SubscriptionError("invalid", f"unknown area {str(code)[:20]!r}", "areas")
        full.append(expanded)
    if not isinstance(name, str) or len(name) > 80 or any(ord(c) < 32 for c in name):
        raise SubscriptionError("invalid", "name is at most 80 characters without control characters", "name")
    return SubscriptionSpec(
        channel, checked_address, hazards_, levels_, tuple(full), types_, name.strip(), department_id
    )


def _members(values: Iterable[str], allowed: Sequence[str], field: str) -> tuple[str, ...]:
    given = list(dict.fromkeys(values))
    unknown = [v for v in given if v not in allowed]
    if unknown:
        raise SubscriptionError(
            "invalid", f"{field}: unknown {str(unknown[0])[:20]!r} (one of {', '.join(allowed)})", field
        )
    return tuple(v for v in allowed if v in given)  # in the vocabulary's order


_COLUMNS = """id, owner, department_id, name, channel, address, hazards, levels, areas, msg_types, state, reason,
    CASE WHEN previous_until > now() THEN previous_until END AS rotating_until, created_at, updated_at"""


def _subscription(row: asyncpg.Record) -> Subscription:
    return Subscription(
        id=row["id"],
        owner=row["owner"],
        department_id=row["department_id"],
        name=row["name"],
        channel=row["channel"],
        address=row["address"],
        hazards=tuple(row["hazards"]),
        levels=tuple(row["levels"]),
        areas=tuple(row["areas"]),
        msg_types=tuple(row["msg_types"]),
        state=row["state"],
        reason=row["reason"],
        rotating_until=row["rotating_until"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def create(conn: asyncpg.Connection, owner: str, spec: SubscriptionSpec) -> tuple[Subscription, str]:
    """Store a subscription; it and its secret (a webhook's ``whsec_...``, shown this once; "" otherwise)."""
    secret = new_secret() if spec.channel == "webhook" else ""
    row = await conn.fetchrow(
        f"""INSERT INTO svc.subscription (owner, department_id, name, channel, address, hazards, levels, areas,
                   msg_types, secret)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING {_COLUMNS}""",
        owner,
        spec.department_id,
        spec.name,
        spec.channel,
        spec.address,
        list(spec.hazards),
        list(spec.levels),
        list(spec.areas),
        list(spec.msg_types),
        secret,
    )
    return _subscription(row), secret


async def get(conn: asyncpg.Connection, subscription_id: int, *, lock: bool = False) -> Subscription | None:
    """A subscription that was not deleted, or None."""
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM svc.subscription WHERE id = $1 AND deleted_at IS NULL"
        + (" FOR UPDATE" if lock else ""),
        subscription_id,
    )
    return None if row is None else _subscription(row)


async def listed(conn: asyncpg.Connection, owner: str | None) -> list[Subscription]:
    """The subscriptions of `owner` (everyone's for None), oldest first, deleted ones left out."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM svc.subscription
            WHERE deleted_at IS NULL AND ($1::text IS NULL OR owner = $1) ORDER BY id""",
        owner,
    )
    return [_subscription(r) for r in rows]


async def update(
    conn: asyncpg.Connection, subscription_id: int, spec: SubscriptionSpec
) -> tuple[Subscription, str]:
    """Replace what a subscription asks for (its state stays, and its secret); it and the new secret of a
    subscription that became a webhook ("" otherwise, as the old one stays). Deliveries waiting go to the new
    address on the new channel (each attempt reads the subscription's address)."""
    row = await conn.fetchrow(
        f"""UPDATE svc.subscription SET name = $2, channel = $3, address = $4, hazards = $5, levels = $6,
                   areas = $7, msg_types = $8, department_id = $9,
                   secret = CASE WHEN $3 = 'webhook' AND secret = '' THEN $10 ELSE secret END,
                   updated_at = now()
            WHERE id = $1 AND deleted_at IS NULL RETURNING {_COLUMNS}, secret, secret = $10 AS fresh""",
        subscription_id,
        spec.name,
        spec.channel,
        spec.address,
        list(spec.hazards),
        list(spec.levels),
        list(spec.areas),
        list(spec.msg_types),
        spec.department_id,
        new_secret(),
    )
    if row is None:
        raise SubscriptionError("not_found", f"no subscription {subscription_id}")
    await conn.execute(
        """UPDATE svc.partner_delivery SET channel = $2, address = $3
           WHERE subscription_id = $1 AND state = 'pending'""",
        subscription_id,
        spec.channel,
        spec.address,
    )
    fresh = spec.channel == "webhook" and bool(row["fresh"])
    return _subscription(row), (str(row["secret"]) if fresh else "")


async def count_of(conn: asyncpg.Connection, owner: str) -> int:
    """How many subscriptions `owner` has (deleted ones aside)."""
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM svc.subscription WHERE owner = $1 AND deleted_at IS NULL", owner
        )
    )


# what each state change may start from: a disabled subscription is resumed by its owner once fixed
_STATE_CHANGES: Mapping[str, tuple[frozenset[str], str]] = {
    "pause": (frozenset({"active"}), "paused"),
    "resume": (frozenset({"paused", "disabled"}), "active"),
    "disable": (frozenset({"active", "paused"}), "disabled"),
}


def next_state(state: str, action: str) -> str:
    """The state `action` moves a subscription in `state` to; `SubscriptionError` (conflict) otherwise.

    >>> next_state("active", "pause"), next_state("disabled", "resume")
    ('paused', 'active')
    """
    sources, target = _STATE_CHANGES[action]
    if state not in sources:
        raise SubscriptionError("conflict", f"a subscription that is {state} cannot {action}", "state")
    return target


async def change_state(
    conn: asyncpg.Connection, subscription_id: int, action: str, reason: str = ""
) -> Subscription:
    """Pause, resume or disable a subscription (`next_state`); deliveries waiting for it are dropped when it
    stops being active (the dispatcher drops any it claims later, too)."""
    current = await get(conn, subscription_id, lock=True)
    if current is None:
        raise SubscriptionError("not_found", f"no subscription {subscription_id}")
    state = next_state(current.state, action)
    row = await conn.fetchrow(
        f"""UPDATE svc.subscription SET state = $2, reason = $3, updated_at = now() WHERE id = $1
            RETURNING {_COLUMNS}""",
        subscription_id,
        state,
        reason[:300],
    )
    return _subscription(row)


async def delete(conn: asyncpg.Connection, subscription_id: int) -> bool:
    """Delete a subscription (its row and delivery log stay, marked deleted); whether there was one."""
    done = await conn.fetchval(
        """UPDATE svc.subscription SET deleted_at = now(), state = 'paused', reason = 'deleted',
                  secret = '', previous_secret = '', updated_at = now()
           WHERE id = $1 AND deleted_at IS NULL RETURNING id""",
        subscription_id,
    )
    return done is not None


async def rotate(
    conn: asyncpg.Connection, subscription_id: int, overlap_s: float
) -> tuple[Subscription, str]:
    """A new secret for a webhook subscription; the old one keeps signing beside it for `overlap_s`."""
    current = await get(conn, subscription_id, lock=True)
    if current is None:
        raise SubscriptionError("not_found", f"no subscription {subscription_id}")
    if current.channel != "webhook":
        raise SubscriptionError("conflict", "only a webhook subscription has a secret to rotate", "channel")
    secret = new_secret()
    row = await conn.fetchrow(
        f"""UPDATE svc.subscription SET previous_secret = secret, previous_until = now() + $3,
                   secret = $2, updated_at = now()
            WHERE id = $1 RETURNING {_COLUMNS}""",
        subscription_id,
        secret,
        timedelta(seconds=overlap_s),
    )
    return _subscription(row), secret


async def signing_secrets(conn: asyncpg.Connection, subscription_id: int) -> tuple[str, ...]:
    """The secrets a webhook delivery is signed with now: the current one, and the previous one while a
    rotation lasts."""
    row = await conn.fetchrow(
        "SELECT secret, previous_secret, previous_until > now() AS rotating FROM svc.subscription WHERE id = $1",
        subscription_id,
    )
    if row is None or not row["secret"]:
        return ()
    return (row["secret"], row["previous_secret"]) if row["rotating"] else (row["secret"],)


async def matching(
    conn: asyncpg.Connection,
    *,
    hazard: str,
    level: str,
    msg_type: str,
    areas: Sequence[str],
    units: Mapping[str, UnitRecord],
) -> list[Subscription]:
    """The active subscriptions a version of `hazard` at `level`, of `msg_type`, for `areas` goes to."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM svc.subscription
            WHERE state = 'active' AND deleted_at IS NULL
              AND (hazards = '{{}}' OR $1 = ANY (hazards)) AND (levels = '{{}}' OR $2 = ANY (levels))
              AND (msg_types = '{{}}' OR $3 = ANY (msg_types))
            ORDER BY id""",
        hazard,
        level,
        msg_type,
    )
    found = [_subscription(r) for r in rows]
    return [
        s for s in found if not s.areas or any(same_or_nested(a, w, units) for a in s.areas for w in areas)
    ]


async def told_of(
    conn: asyncpg.Connection, *, warning_id: int, msg_type: str, besides: Sequence[int] = ()
) -> list[Subscription]:
    """The active subscriptions an earlier version of the warning was written for (its Update or Cancel goes
    to them too), that take `msg_type`, other than `besides`."""
    rows = await conn.fetch(
        f"""SELECT {_COLUMNS} FROM svc.subscription s
            WHERE s.state = 'active' AND s.deleted_at IS NULL AND (msg_types = '{{}}' OR $2 = ANY (msg_types))
              AND NOT s.id = ANY ($3::bigint[])
              AND EXISTS (SELECT 1 FROM svc.partner_delivery d WHERE d.subscription_id = s.id AND d.warning_id = $1)
            ORDER BY s.id""",
        warning_id,
        msg_type,
        list(besides),
    )
    return [_subscription(r) for r in rows]
