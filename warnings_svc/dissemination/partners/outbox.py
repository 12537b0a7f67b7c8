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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from risk_zoning.store import UnitRecord
from warnings_svc.dissemination.partners import subscriptions
from warnings_svc.dissemination.partners.states import PartnerDeliveryEvent as Event
from warnings_svc.dissemination.partners.states import partner_transition, states_before

PARTNER_DISPATCH_CHANNEL = "svc_partner_dispatch"  # NOTIFY channel that wakes partner dispatchers
PARTNER_CHANNELS = ("webhook", "email", "mqtt", "sms")
EXPIRED_REASON = "the warning expired before it could be delivered"
DROPPED_REASON = "the subscription is no longer active"
CALL_DROPPED_REASON = "the acknowledgement came in before the call went out"
# a delivery put back by "send again" (partners.log) says so until its next attempt, which is marked manual
RESEND_REASON = "sent again at the request of "


@dataclass(frozen=True, slots=True)
class PartnerDocument:
    """What every partner gets of one issued version: the JSON document (`payload`, with the CAP document in
    it), an email's subject and text, and the SMS text."""

    payload: dict[str, Any]
    subject: str
    text: str
    sms_text: str


def document_of(
    *,
    identifier: str,
    warning_id: int,
    version: int,
    sent: datetime,
    status: str,
    msg_type: str,
    hazard: str,
    level: str,
    severity: str,
    urgency: str,
    areas: Sequence[tuple[str, str]],
    onset: datetime,
    expires: datetime,
    headline: str,
    description: str,
    instruction: str,
    sms_text: str,
    cap_xml: str,
    web: str = "",
) -> PartnerDocument:
    """The partner document of one issued version (`areas` as (code, name)): the webhook's JSON body, which
    the MQTT topic and the email carry too, and the texts for people."""
    payload = {
        "identifier": identifier,
        "warning_id": warning_id,
        "version": version,
        "sent": sent.isoformat(),
        "status": status,
        "msgType": msg_type,
        "hazard": hazard,
        "level": level,
        "severity": severity,
        "urgency": urgency,
        "areas": [{"code": code, "name": name} for code, name in areas],
        "onset": onset.isoformat(),
        "expires": expires.isoformat(),
        "headline": headline,
        "description": description,
        "instruction": instruction,
        "web": web,
        "cap": cap_xml,
        "cap_url": f"{web}.cap" if web else "",
    }
    text = "\n\n".join(t for t in (headline, description, instruction, web) if t)
    return PartnerDocument(payload, headline, text, sms_text)


def message_id_of(warning_id: int, version: int, subscription_id: int) -> str:
    """The idempotency key of one version sent to one subscription (the webhook-id), stable across retries.

    >>> message_id_of(12, 2, 7)
    'msg_12-2_s7'
    """
    return f"msg_{warning_id}-{version}_s{subscription_id}"


async def write_partner_deliveries(
    conn: asyncpg.Connection,
    *,
    warning_id: int,
    version: int,
    msg_type: str,
    hazard: str,
    level: str,
    areas: Sequence[str],
    units: Mapping[str, UnitRecord],
    document: PartnerDocument,
    give_up_at: datetime,
) -> int:
    """In the transaction that issues a version: one delivery per matching subscription (for an Update or a
    Cancel, also every active subscription an earlier version of the warning was written for, even when the
    new version's level or areas no longer match it), and the version's partner document once; how many
    deliveries were written."""
    found = await subscriptions.matching(
        conn, hazard=hazard, level=level, msg_type=msg_type, areas=areas, units=units
    )
    if msg_type != "Alert":  # whoever got an earlier version hears how it ends, whatever it now covers
        found += await subscriptions.told_of(
            conn, warning_id=warning_id, msg_type=msg_type, besides=[s.id for s in found]
        )
    if not found:
        return 0
    await conn.execute(
        """INSERT INTO svc.partner_document (warning_id, version, payload, subject, text, sms_text)
           VALUES ($1, $2, $3::jsonb, $4, $5, $6) ON CONFLICT DO NOTHING""",
        warning_id,
        version,
        json.dumps(document.payload, ensure_ascii=False),
        document.subject,
        document.text,
        document.sms_text,
    )
    written = await conn.fetchval(
        """WITH added AS (
               INSERT INTO svc.partner_delivery (subscription_id, warning_id, version, msg_type, channel, address,
                      message_id, give_up_at, body)
               SELECT s, $1, $2, $3, c, a, m, $4, '{}'::jsonb
               FROM unnest($5::bigint[], $6::text[], $7::text[], $8::text[]) AS x(s, c, a, m)
               ON CONFLICT DO NOTHING RETURNING 1)
           SELECT count(*) FROM added""",
        warning_id,
        version,
        msg_type,
        give_up_at,
        [s.id for s in found],
        [s.channel for s in found],
        [s.address for s in found],
        [message_id_of(warning_id, version, s.id) for s in found],
    )
    await conn.execute("SELECT pg_notify($1, '')", PARTNER_DISPATCH_CHANNEL)
    return int(written)


@dataclass(frozen=True, slots=True)
class PartnerClaim:
    """A delivery leased for one attempt, with everything the attempt needs."""

    id: int
    subscription_id: int | None
    ack_request_id: int | None
    warning_id: int
    version: int
    msg_type: str
    channel: str
    address: str  # the subscription's address now (it may have changed since the delivery was written)
    message_id: str
    attempts: int  # including this one
    give_up_at: datetime
    call: (
        dict[str, Any] | None
    )  # an acknowledgement call's own text ({"subject", "text"}); None: the document
    secrets: tuple[str, ...]
    manual: bool = False  # the attempt after a "send again" (the delivery's reason says so until then)


@dataclass(frozen=True, slots=True)
class IssuedDocument:
    """What every delivery of one issued version sends (immutable once issued: read once per version)."""

    identifier: str
    payload_json: str  # the partner document, as stored ("{}" when no subscription matched)
    subject: str
    text: str
    sms_text: str
    cap_xml: str


async def issued_document(conn: asyncpg.Connection, warning_id: int, version: int) -> IssuedDocument:
    """The partner document and the CAP document of an issued version."""
    row = await conn.fetchrow(
        """SELECT v.identifier, v.cap_xml, doc.payload, doc.subject, doc.text, doc.sms_text
           FROM svc.warning_version v
           LEFT JOIN svc.partner_document doc ON (doc.warning_id, doc.version) = (v.warning_id, v.version)
           WHERE v.warning_id = $1 AND v.version = $2""",
        warning_id,
        version,
    )
    return IssuedDocument(
        identifier=row["identifier"] or "",
        payload_json=row["payload"] or "{}",
        subject=row["subject"] or "",
        text=row["text"] or "",
        sms_text=row["sms_text"] or "",
        cap_xml=bytes(row["cap_xml"] or b"").decode("utf-8"),
    )


_CLAIMED = partner_transition("pending", Event.claim).value
_DROPPED = partner_transition("pending", Event.drop).value
_EXPIRED = partner_transition("pending", Event.expire).value
_RECLAIMED = partner_transition("sending", Event.reclaim).value


async def claim_partner(
    conn: asyncpg.Connection, channel: str, owner: str, lease_s: float, limit: int
) -> list[PartnerClaim]:
    """Lease up to `limit` ready deliveries of `channel` (oldest first, ``SKIP LOCKED``), in one statement.
    A delivery is ready when its subscription is active (or, for a call, its acknowledgement is still
    awaited) and its warning's expiry has not passed; `settle_waiting` drops or gives up the others."""
    rows = await conn.fetch(
        f"""WITH ready AS (
                SELECT d.id FROM svc.partner_delivery d
                WHERE d.state = 'pending' AND d.channel = $1 AND d.next_attempt_at <= now()
                  AND d.give_up_at >= now()
                  AND (d.subscription_id IS NULL OR EXISTS (
                        SELECT 1 FROM svc.subscription s
                        WHERE s.id = d.subscription_id AND s.state = 'active' AND s.deleted_at IS NULL))
                  AND (d.ack_request_id IS NULL OR EXISTS (
                        SELECT 1 FROM svc.ack_request r
                        WHERE r.id = d.ack_request_id AND r.state NOT IN ('acknowledged', 'closed')))
                ORDER BY d.next_attempt_at, d.id LIMIT $4 FOR UPDATE OF d SKIP LOCKED),
            claimed AS (
                UPDATE svc.partner_delivery d
                SET state = '{_CLAIMED}', lease_owner = $2, lease_until = now() + $3, attempts = d.attempts + 1
                FROM ready WHERE d.id = ready.id
                RETURNING d.*)
            SELECT d.id, d.subscription_id, d.ack_request_id, d.warning_id, d.version, d.msg_type, d.channel,
                   coalesce(s.address, d.address) AS address, d.message_id, d.attempts, d.give_up_at,
                   CASE WHEN d.ack_request_id IS NOT NULL THEN d.body END AS call,
                   s.secret, CASE WHEN s.previous_until > now() THEN s.previous_secret ELSE '' END AS previous,
                   starts_with(d.reason, $5) AS manual
            FROM claimed d
            LEFT JOIN svc.subscription s ON s.id = d.subscription_id
            ORDER BY d.id""",
        channel,
        owner,
        timedelta(seconds=lease_s),
        limit,
        RESEND_REASON,
    )
    return [_claim(r) for r in rows]


async def settle_waiting(conn: asyncpg.Connection) -> int:
    """Drop the waiting deliveries of subscriptions no longer active and the calls whose acknowledgement
    came in; give up those whose warning expired while they waited. How many were settled."""
    settled = 0
    for statement, reason in (
        (
            f"""UPDATE svc.partner_delivery d SET state = '{_DROPPED}', reason = $1, done_at = now()
                FROM svc.subscription s
                WHERE d.subscription_id = s.id AND d.state = 'pending'
                  AND (s.state <> 'active' OR s.deleted_at IS NOT NULL)""",
            DROPPED_REASON,
        ),
        (
            f"""UPDATE svc.partner_delivery d SET state = '{_DROPPED}', reason = $1, done_at = now()
                FROM svc.ack_request r
                WHERE d.ack_request_id = r.id AND d.state = 'pending' AND r.state IN ('acknowledged', 'closed')""",
            CALL_DROPPED_REASON,
        ),
        (
            f"""UPDATE svc.partner_delivery SET state = '{_EXPIRED}', reason = $1, done_at = now()
                WHERE state = 'pending' AND give_up_at < now()""",
            EXPIRED_REASON,
        ),
    ):
        done = await conn.execute(statement, reason)
        settled += int(done.split()[-1])
    return settled


def _claim(row: asyncpg.Record) -> PartnerClaim:
    secrets = tuple(s for s in (row["secret"], row["previous"]) if s)
    return PartnerClaim(
        id=row["id"],
        subscription_id=row["subscription_id"],
        ack_request_id=row["ack_request_id"],
        warning_id=row["warning_id"],
        version=row["version"],
        msg_type=row["msg_type"],
        channel=row["channel"],
        address=row["address"],
        message_id=row["message_id"],
        attempts=row["attempts"],
        give_up_at=row["give_up_at"],
        call=None if row["call"] is None else json.loads(row["call"]),
        secrets=secrets,
        manual=row["manual"],
    )


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """What one attempt came to, as the dispatcher stores it."""

    delivery_id: int
    attempt: int
    started_at: datetime
    latency_ms: int
    outcome: str  # delivered | temporary_failure | permanent_failure
    status: int | None
    error: str
    event: Event  # accept | retry | give_up | refuse
    manual: bool = False  # the attempt after a "send again"
    next_attempt_at: datetime | None = None  # for a retry
    disable_subscription: int | None = None  # the endpoint is gone (410)
    slow_subscription_until: tuple[int, datetime] | None = None  # the endpoint asked to slow down


def _sql_tuple(values: Sequence[str]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


# the attempts into the log and their effect on the deliveries, in one statement
_RECORD_RESULTS = f"""WITH x AS (
        SELECT * FROM unnest($2::bigint[], $3::int[], $4::timestamptz[], $5::int[], $6::text[],
                             $7::int[], $8::text[], $9::boolean[], $10::text[], $11::timestamptz[])
            AS x(id, attempt, started_at, latency_ms, outcome, status, error, manual, event, next_at)),
    logged AS (
        INSERT INTO svc.partner_attempt (delivery_id, attempt, started_at, latency_ms, outcome, status,
                                         error, manual)
        SELECT id, attempt, started_at, latency_ms, outcome, status, error, manual FROM x),
    done AS (
        UPDATE svc.partner_delivery d SET
            state = CASE x.event WHEN 'accept' THEN '{partner_transition("sending", Event.accept)}'
                                 WHEN 'retry' THEN '{partner_transition("sending", Event.retry)}'
                                 ELSE '{partner_transition("sending", Event.give_up)}' END,
            next_attempt_at = coalesce(x.next_at, d.next_attempt_at),
            lease_owner = NULL, lease_until = NULL, last_status = x.status,
            reason = left(x.error, 300),
            done_at = CASE WHEN x.event = 'retry' THEN NULL ELSE now() END
        FROM x
        WHERE d.id = x.id AND d.state IN {_sql_tuple(states_before(Event.accept))}
          AND d.lease_owner = $1 AND d.attempts = x.attempt
        RETURNING 1)
    SELECT count(*) FROM done"""


async def record_partner_results(
    conn: asyncpg.Connection, owner: str, records: Sequence[AttemptRecord]
) -> int:
    """Store the attempts and what they did to their deliveries, in one transaction; how many deliveries this
    dispatcher still held for that very attempt (a lease that ran out let another attempt take it, even this
    dispatcher's own: a late result is kept in the log only, never over a newer attempt's)."""
    if not records:
        return 0
    arguments = (
        owner,
        [r.delivery_id for r in records],
        [r.attempt for r in records],
        [r.started_at for r in records],
        [max(0, r.latency_ms) for r in records],
        [r.outcome for r in records],
        [r.status for r in records],
        [r.error[:500] for r in records],
        [r.manual for r in records],
        [r.event.value for r in records],
        [r.next_attempt_at for r in records],
    )
    asides = [
        r for r in records if r.disable_subscription is not None or r.slow_subscription_until is not None
    ]
    if not asides:  # one statement is a transaction of its own: one round trip, not three
        return int(await conn.fetchval(_RECORD_RESULTS, *arguments))
    async with conn.transaction():
        kept = await conn.fetchval(_RECORD_RESULTS, *arguments)
        for r in asides:
            if r.disable_subscription is not None:
                await conn.execute(
                    """UPDATE svc.subscription SET state = 'disabled', reason = $2, updated_at = now()
                       WHERE id = $1 AND state <> 'disabled'""",
                    r.disable_subscription,
                    f"the endpoint answered {r.status or 410}: disabled ({r.error[:200]})",
                )
            if r.slow_subscription_until is not None:
                sid, until = r.slow_subscription_until
                await conn.execute(
                    """UPDATE svc.partner_delivery SET next_attempt_at = greatest(next_attempt_at, $2)
                       WHERE subscription_id = $1 AND state = 'pending'""",
                    sid,
                    until,
                )
    return int(kept)


async def release_partner_claims(conn: asyncpg.Connection, owner: str, ids: Sequence[int]) -> int:
    """Put back in the queue deliveries `owner` claimed and never attempted (a dispatcher stopping), as if never
    claimed; how many."""
    done = await conn.execute(
        f"""UPDATE svc.partner_delivery
            SET state = '{_RECLAIMED}', lease_owner = NULL, lease_until = NULL, attempts = attempts - 1
            WHERE id = ANY($2::bigint[]) AND lease_owner = $1 AND state = 'sending'""",
        owner,
        list(ids),
    )
    given_back = int(done.split()[-1])
    if given_back:  # another dispatcher takes them now, not at its next poll
        await conn.execute("SELECT pg_notify($1, '')", PARTNER_DISPATCH_CHANNEL)
    return given_back


async def reclaim_partner_leases(conn: asyncpg.Connection) -> int:
    """Return deliveries whose lease ran out (their dispatcher died mid-send) to the queue; how many."""
    done = await conn.execute(
        f"""UPDATE svc.partner_delivery SET state = '{_RECLAIMED}', lease_owner = NULL, lease_until = NULL
            WHERE state = 'sending' AND lease_until < now()"""
    )
    return int(done.split()[-1])


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
