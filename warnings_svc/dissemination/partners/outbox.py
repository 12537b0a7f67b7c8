"""The partner outbox: one delivery per issued version and matching subscription (written in the transaction
that issues the version), acknowledgement calls to responsible people, claiming under a lease, the result of
each attempt, the delivery log and "send again".

Only SQL on an asyncpg connection and pure conversions; the partner dispatcher
(`warnings_svc.dissemination.partners.dispatch`) decides when to call what.

A delivery's ``body`` is what goes out, fixed when it is written (a retry never sends a text rebuilt later)::

    {"payload": {...the webhook's JSON document...}, "subject": "headline", "text": "a text for people"}

The CAP document is the version's own (``svc.warning_version.cap_xml``, immutable once issued).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg

PARTNER_DISPATCH_CHANNEL = "svc_partner_dispatch"  # NOTIFY channel that wakes partner dispatchers
PARTNER_CHANNELS = ("webhook", "email", "mqtt", "sms")


async def enqueue_message(
    conn: asyncpg.Connection,
    *,
    warning_id: int,
    version: int,
    channel: str,
    address: str,
    message_id: str,
    give_up_at: datetime,
    text: str,
    subject: str = "",
    payload: dict[str, Any] | None = None,
    ack_request_id: int | None = None,
    subscription_id: int | None = None,
    msg_type: str = "Alert",
) -> int | None:
    """Queue one message to one address (an acknowledgement call when `ack_request_id` is given) in the
    caller's transaction and wake the partner dispatchers; its id, or None when `message_id` was queued
    before (the same call written twice is one message)."""
    if channel not in PARTNER_CHANNELS:
        raise ValueError(f"unknown partner channel {channel!r}")
    body = {"payload": payload or {}, "subject": subject, "text": text}
    delivery_id: int | None = await conn.fetchval(
        """INSERT INTO svc.partner_delivery (subscription_id, ack_request_id, warning_id, version, msg_type,
                  channel, address, message_id, give_up_at, body)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
           ON CONFLICT (message_id) DO NOTHING RETURNING id""",
        subscription_id,
        ack_request_id,
        warning_id,
        version,
        msg_type,
        channel,
        address,
        message_id,
        give_up_at,
        json.dumps(body, ensure_ascii=False),
    )
    if delivery_id is not None:
        await conn.execute("SELECT pg_notify($1, $2)", PARTNER_DISPATCH_CHANNEL, channel)
    return delivery_id
