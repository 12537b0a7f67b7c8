"""Builders of partner subscriptions, deliveries and attempts, written with SQL as the subscription API and the
partner dispatcher would leave them (the tests of the delivery log depend on neither).

The warnings issued here (frost, blue) match no subscription made here unless a test asks for it (their
default filter is sandstorm only), so issuing writes no delivery of its own beside the builders' ones."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.transitions import Action, Actor, Role
from warnings_svc.settings import Settings

CTX = ws.Issuing.from_settings(Settings())


@dataclass(frozen=True)
class Try:
    """One attempt to record: its outcome, status, error and latency."""

    outcome: str
    status: int | None = None
    error: str = ""
    latency_ms: int = 120
    manual: bool = False


async def issued_warning(
    conn: asyncpg.Connection, hazard: str = "frost", level: str = "blue"
) -> tuple[int, int]:
    """A warning issued now over Haibowan through the store: (warning_id, version)."""
    now = datetime.now(UTC)
    v = await ws.create(
        conn,
        CTX,
        Actor("wang", Role.forecaster),
        hazard=hazard,
        level=level,
        onset=now + timedelta(hours=1),
        expires=now + timedelta(hours=12),
        content=ws.Content(areas=("150302",)),
        now=now,
    )
    await ws.act(conn, CTX, Actor("wang", Role.forecaster), v.warning_id, Action.submit, now=now)
    issued = await ws.act(conn, CTX, Actor("li", Role.approver), v.warning_id, Action.approve, now=now)
    return issued.warning_id, issued.state.version


async def subscription(
    conn: asyncpg.Connection,
    owner: str,
    *,
    channel: str = "webhook",
    address: str = "https://partner.example.cn/hooks/warnings?token=s3cret",
    name: str = "",
    hazards: Sequence[str] = ("sandstorm",),
    levels: Sequence[str] = (),
    areas: Sequence[str] = (),
    msg_types: Sequence[str] = (),
    state: str = "active",
    deleted: bool = False,
    secret: str = "whsec_dGVzdC1zZWNyZXQtbmV2ZXItc2hvd24=",
) -> int:
    """A subscription of `owner`; its id."""
    subscription_id: int = await conn.fetchval(
        """INSERT INTO svc.subscription (owner, name, channel, address, hazards, levels, areas, msg_types, state,
                  secret, deleted_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $11 THEN now() END) RETURNING id""",
        owner,
        name,
        channel,
        address,
        list(hazards),
        list(levels),
        list(areas),
        list(msg_types),
        state,
        secret,
        deleted,
    )
    return subscription_id


async def delivery(
    conn: asyncpg.Connection,
    subscription_id: int,
    warning: tuple[int, int],
    *,
    state: str = "delivered",
    tries: Sequence[Try] = (),
    give_up_at: datetime | None = None,
    channel: str = "webhook",
    address: str = "https://partner.example.cn/hooks/warnings?token=s3cret",
) -> int:
    """One delivery of `warning` to the subscription in `state`, with its attempts; its id."""
    now = datetime.now(UTC)
    started = now - timedelta(minutes=len(tries) + 1)
    last_status = tries[-1].status if tries else None
    delivery_id: int = await conn.fetchval(
        """INSERT INTO svc.partner_delivery (subscription_id, warning_id, version, msg_type, channel, address,
                  message_id, state, attempts, next_attempt_at, give_up_at, lease_owner, lease_until, body,
                  last_status, reason, done_at)
           VALUES ($1, $2, $3, 'Alert', $4, $5, $6, $7, $8, $9, $10,
                   CASE WHEN $7 = 'sending' THEN 'test' END, CASE WHEN $7 = 'sending' THEN $9::timestamptz + interval '1 minute' END,
                   $11::jsonb, $12, $13, CASE WHEN $7 IN ('delivered', 'dead', 'dropped') THEN $9 END)
           RETURNING id""",
        subscription_id,
        warning[0],
        warning[1],
        channel,
        address,
        f"msg_{uuid.uuid4().hex}",
        state,
        len(tries),
        now,
        give_up_at or now + timedelta(hours=12),
        json.dumps({"payload": {"identifier": "x"}, "subject": "s", "text": "t"}),
        last_status,
        tries[-1].error if tries else "",
    )
    for n, t in enumerate(tries, start=1):
        await conn.execute(
            """INSERT INTO svc.partner_attempt (delivery_id, attempt, started_at, latency_ms, outcome, status, error,
                      manual)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            delivery_id,
            n,
            started + timedelta(minutes=n),
            t.latency_ms,
            t.outcome,
            t.status,
            t.error,
            t.manual,
        )
    return delivery_id
