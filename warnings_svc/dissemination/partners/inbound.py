"""Messages from phones: stored as they come (`store_inbound`, one loop per SMS endpoint in the dispatcher),
then made sense of (`handle_pending`, run by the loop that escalates acknowledgements).

A message is, in this order of reading:

- a relayer's report (再传播), when it says "已传达 120", "已转发120人", "传达120" ...: the sender must be a
  recipient with the role relayer; the report goes to the warning most recently told to them (svc.delivery)
  that is still in force, as ``svc.relay_report`` (the latest report replaces an earlier one), counting at
  most the people the relayer serves (``svc.recipient.serves``, or else the population of their areas within
  the warning's areas);
- an acknowledgement (叫应), when it carries a short code ("1234", "收到1234", "确认 1234"): the sender's
  number must belong to the duty chain of the department the code was given to;
- a score of the service (the plan's public satisfaction), when the whole message is a digit 1-5, maybe after
  a word saying so: "4", "４", "评分 4", "打分：5", "满意度 3", "SCORE 4", "score: 2", "4分" (`read_text`); the
  sender must be a recipient; the score goes to the warning most recently sent to them (svc.delivery, in
  force or not), as ``svc.satisfaction`` via 'sms', one per person and warning (a later score replaces the
  earlier), placed in the first of their registered areas inside that warning's areas;
- anything else: noted in ``outcome`` and left there.

Nothing is answered to any message (an automatic answer to an automatic sender could go on for ever); what a
message came to stays in ``svc.inbound_sms.outcome``.

An unknown number, an acknowledgement for a warning no longer in force, or a second acknowledgement change
nothing but the message's ``outcome``. Handling a message twice is harmless: it is marked handled in the
transaction that acts on it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg

from channels.smpp.mobile import InboundBatch, InboundSms
from risk_zoning.store import UnitRecord
from risk_zoning.unit_tree import ancestors, geocode_ancestors
from warnings_svc.dissemination.keys import kept_secret
from warnings_svc.dissemination.partners import acknowledgements as acks

log = logging.getLogger(__name__)

HANDLE_BATCH = 100  # messages handled per transaction round
STORE_BATCH = 100
_RELAY = re.compile(r"(?:已经?|已)?(?:传达|转发|通知|转告)\D{0,6}?(\d{1,7})\s*(?:人|户)?")
_CODE = re.compile(r"(?<!\d)(\d{4,8})(?!\d)")
# The whole message a score: a digit 1-5, maybe after one of these words and a colon, maybe followed by 分
_SCORE = re.compile(r"^(?:评分|打分|满意度|score|rating)?\s*[:：]?\s*([1-5])\s*分?[.。!！]?$", re.IGNORECASE)
_AREA = re.compile(r"^[0-9]{12}$")  # what svc.satisfaction takes as a place
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


# ---------------------------------------------------------------------------------------------- storing


async def store_batch(conn: asyncpg.Connection, endpoint_name: str, batch: Sequence[InboundSms]) -> int:
    """Store messages from phones as they came; how many."""
    await conn.executemany(
        """INSERT INTO svc.inbound_sms (endpoint, source, destination, text, received_at)
           VALUES ($1, $2, $3, $4, $5)""",
        [(endpoint_name, m.source[:32], m.destination[:32], m.text[:1000], m.received_at) for m in batch],
    )
    return len(batch)


async def store_inbound(pool: asyncpg.Pool, endpoint_name: str, channel: object) -> None:
    """Store every batch of messages from phones the channel yields, then acknowledge it to the SMSC (a
    batch not stored is never acknowledged: the SMSC sends it again). A database outage is waited out with
    capped backoff, holding the batch. Returns when the channel is closed."""
    inbound = getattr(channel, "inbound", None)
    if inbound is None:
        return  # a channel that takes no messages from phones
    batches = inbound(max_batch=STORE_BATCH, linger_s=0.05)
    batch: InboundBatch
    async for batch in batches:
        delay = 0.1
        while True:
            try:
                async with pool.acquire() as conn:
                    await store_batch(conn, endpoint_name, batch)
                break
            except _DB_ERRORS as e:
                log.warning(
                    "database unavailable",
                    extra={"while": "inbound sms", "endpoint": endpoint_name, "error": str(e)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        batch.ack()


# ---------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True, slots=True)
class Reading:
    """What a message says: a report of people reached, a short code, or nothing understood."""

    kind: str  # relay | code | score | other
    number: int | None = None
    code: str = ""


def read_text(text: str) -> Reading:
    """What a message from a phone says.

    >>> read_text("已传达 120"), read_text("已转发120人").number, read_text("收到1234").code
    (Reading(kind='relay', number=120, code=''), 120, '1234')
    >>> read_text("确认 1234").code, read_text("好的").kind
    ('1234', 'other')
    >>> read_text("4").number, read_text("评分 5").number, read_text("SCORE: 2").number, read_text("6").kind
    (4, 5, 2, 'other')
    """
    cleaned = text.strip().translate(str.maketrans("０１２３４５６７８９", "0123456789"))
    relay = _RELAY.search(cleaned)
    if relay:
        return Reading("relay", int(relay.group(1)))
    code = _CODE.search(cleaned)
    if code:
        return Reading("code", code=code.group(1))
    score = _SCORE.match(cleaned)
    if score:
        return Reading("score", int(score.group(1)))
    return Reading("other")


# ---------------------------------------------------------------------------------------------- handling


@dataclass(frozen=True, slots=True)
class Handled:
    """What one message came to (for the caller to audit what changed)."""

    sms_id: int
    source: str
    outcome: str
    acknowledged: acks.AckResult | None = None  # set when a request was acknowledged
    by: str = ""
    relay: tuple[int, int, int, int] | None = None  # (warning, recipient, reported, people) when stored
    score: tuple[int, int, int] | None = None  # (warning, recipient, score) when stored


async def handle_pending(
    conn: asyncpg.Connection, *, now: datetime, units: Mapping[str, UnitRecord], limit: int = HANDLE_BATCH
) -> list[Handled]:
    """Handle up to `limit` unhandled messages, oldest first (call in a transaction: each is marked handled
    with its outcome in it); what each came to."""
    rows = await conn.fetch(
        """SELECT id, source, text FROM svc.inbound_sms WHERE handled_at IS NULL ORDER BY id LIMIT $1
           FOR UPDATE SKIP LOCKED""",
        limit,
    )
    done = []
    for row in rows:
        handled = await _handle(conn, row["id"], _e164(row["source"]), row["text"], now, units)
        await conn.execute(
            "UPDATE svc.inbound_sms SET handled_at = $2, outcome = $3 WHERE id = $1",
            row["id"],
            now,
            handled.outcome[:300],
        )
        done.append(handled)
    return done


def _e164(source: str) -> str:
    """The sender as the registry writes numbers: +86... for a bare Chinese mobile number."""
    digits = source.strip()
    if digits.startswith("+"):
        return digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    if len(digits) == 11 and digits.startswith("1"):
        return "+86" + digits
    if digits.startswith("86") and len(digits) == 13:
        return "+" + digits
    return "+" + digits if digits.isdigit() else digits


async def _handle(
    conn: asyncpg.Connection,
    sms_id: int,
    phone: str,
    text: str,
    now: datetime,
    units: Mapping[str, UnitRecord],
) -> Handled:
    reading = read_text(text)
    if reading.kind == "relay" and reading.number is not None:
        return await _relay(conn, sms_id, phone, reading.number, now, units, via="sms")
    if reading.kind == "score" and reading.number is not None:
        return await _score(conn, sms_id, phone, reading.number, now, units)
    if reading.kind == "code":
        found = await acks.requests_for_code(conn, phone, reading.code)
        if not found:
            known = await conn.fetchval("SELECT 1 FROM svc.duty_person WHERE phone = $1 LIMIT 1", phone)
            return Handled(sms_id, phone, "unknown code" if known else "unknown number")
        results = []
        for request_id, who in found:  # newest first: the first one that acknowledges ends it
            result = await acks.acknowledge(conn, request_id, by=who, via="sms", now=now)
            if result.outcome is acks.AckOutcome.acknowledged:
                return Handled(
                    sms_id,
                    phone,
                    f"acknowledged request {request_id} ({result.department}) by {who}",
                    result,
                    who,
                )
            results.append(result)
        first = results[0]
        if first.outcome is acks.AckOutcome.duplicate:
            return Handled(sms_id, phone, f"duplicate: request {first.request_id} was acknowledged before")
        return Handled(
            sms_id, phone, f"not in force: request {first.request_id}'s warning is no longer in force"
        )
    known = await conn.fetchval(
        """SELECT 1 FROM svc.duty_person WHERE phone = $1 UNION ALL SELECT 1 FROM svc.recipient WHERE phone = $1
           LIMIT 1""",
        phone,
    )
    return Handled(sms_id, phone, "not understood" if known else "unknown number")


async def _relay(
    conn: asyncpg.Connection,
    sms_id: int,
    phone: str,
    number: int,
    now: datetime,
    units: Mapping[str, UnitRecord],
    *,
    via: str,
) -> Handled:
    recipient = await conn.fetchrow(
        "SELECT id, areas, serves, roles FROM svc.recipient WHERE phone = $1 AND opted_out_at IS NULL", phone
    )
    if recipient is None:
        return Handled(sms_id, phone, "unknown number")
    if "relayer" not in recipient["roles"]:
        return Handled(sms_id, phone, "not a relayer: report ignored")
    told = await conn.fetchrow(
        """SELECT d.warning_id, d.areas FROM svc.delivery d
           WHERE d.recipient_id = $1 AND EXISTS (SELECT 1 FROM svc.warning_version v
                 WHERE v.warning_id = d.warning_id AND v.status = 'issued' AND v.msg_type <> 'Cancel'
                 AND v.expires > $2)
           ORDER BY d.created_at DESC, d.id DESC LIMIT 1""",
        recipient["id"],
        now,
    )
    if told is None:
        return Handled(sms_id, phone, "no warning in force was told to this relayer")
    stored = await store_relay_report(
        conn, told["warning_id"], recipient["id"], number, now=now, units=units, via=via
    )
    if stored is None:
        return Handled(sms_id, phone, "no warning in force was told to this relayer")
    return Handled(
        sms_id,
        phone,
        f"relay report: warning {told['warning_id']}, {number} reported, {stored} counted",
        relay=(told["warning_id"], recipient["id"], number, stored),
    )


async def _score(
    conn: asyncpg.Connection,
    sms_id: int,
    phone: str,
    score: int,
    now: datetime,
    units: Mapping[str, UnitRecord],
) -> Handled:
    recipient = await conn.fetchrow("SELECT id, areas FROM svc.recipient WHERE phone = $1", phone)
    if recipient is None:
        return Handled(sms_id, phone, "unknown number")
    told = await conn.fetchrow(
        """SELECT warning_id, areas FROM svc.delivery WHERE recipient_id = $1
           ORDER BY created_at DESC, id DESC LIMIT 1""",
        recipient["id"],
    )
    if told is None:
        return Handled(sms_id, phone, "no warning was sent to this number: score ignored")
    mine = list(recipient["areas"])
    area = next((a for a in mine if _within(a, told["areas"], units)), mine[0] if mine else None)
    await conn.execute(
        """INSERT INTO svc.satisfaction (score, area, warning_id, via, recipient_id, given_at)
           VALUES ($1, $2, $3, 'sms', $4, $5)
           ON CONFLICT (recipient_id, warning_id)
               WHERE via = 'sms' AND recipient_id IS NOT NULL AND warning_id IS NOT NULL
           DO UPDATE SET score = excluded.score, area = excluded.area, given_at = excluded.given_at""",
        score,
        area if area is not None and _AREA.match(area) else None,
        told["warning_id"],
        recipient["id"],
        now,
    )
    return Handled(
        sms_id,
        phone,
        f"score {score} for warning {told['warning_id']}",
        score=(told["warning_id"], recipient["id"], score),
    )


async def store_relay_report(
    conn: asyncpg.Connection,
    warning_id: int,
    recipient_id: int,
    reported: int,
    *,
    now: datetime,
    units: Mapping[str, UnitRecord],
    via: str,
) -> int | None:
    """Store a relayer's report for a warning in force (the latest replaces an earlier one); the people
    counted, capped by those the relayer serves; None when the warning is not in force for their areas."""
    recipient = await conn.fetchrow("SELECT areas, serves FROM svc.recipient WHERE id = $1", recipient_id)
    warning = await conn.fetchrow(
        """SELECT areas FROM svc.warning_version WHERE warning_id = $1 AND status = 'issued'
           AND msg_type <> 'Cancel' AND expires > $2 ORDER BY version DESC LIMIT 1""",
        warning_id,
        now,
    )
    if recipient is None or warning is None:
        return None
    mine = list(recipient["areas"])
    inside = [a for a in mine if _within(a, warning["areas"], units)]
    inside += [w for w in warning["areas"] if w not in inside and any(_within(w, [a], units) for a in mine)]
    if not inside:
        return None
    cap = recipient["serves"]
    if cap is None:
        cap = sum(units[a].population for a in inside if a in units) if units else reported
    people = min(reported, cap)
    await conn.execute(
        """INSERT INTO svc.relay_report (warning_id, recipient_id, area, reported, people, via, reported_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (warning_id, recipient_id) DO UPDATE SET area = excluded.area, reported = excluded.reported,
               people = excluded.people, via = excluded.via, reported_at = excluded.reported_at""",
        warning_id,
        recipient_id,
        inside[0],
        reported,
        people,
        via,
        now,
    )
    return people


def _within(area: str, warned: Sequence[str], units: Mapping[str, UnitRecord]) -> bool:
    """Whether a relayer's area is one of the warned areas or lies inside one."""
    if area in warned:
        return True
    around = ancestors(area, units) if area in units else geocode_ancestors(area)
    return bool(set(around) & set(warned))


# ---------------------------------------------------------------------------------------------- relayers' links


RELAY_KEY_FILE = "relay-link.key"


def relay_secret(data_dir: Path) -> bytes:
    """The secret of relayers' standing links: made once (32 random bytes) in `data_dir/keys`, kept across
    restarts so links given out before one still work."""
    return kept_secret(data_dir, RELAY_KEY_FILE)


def relay_token(secret: bytes, recipient_id: int) -> str:
    """A relayer's standing link token: their id and an HMAC of it (unforgeable, no table needed).

    >>> relay_token(b"k" * 32, 7)[:2]
    '7.'
    """
    digest = hmac.new(secret, f"relay:{recipient_id}".encode(), hashlib.sha256).digest()
    return f"{recipient_id}.{base64.urlsafe_b64encode(digest[:18]).decode()}"


def recipient_of_token(secret: bytes, token: str) -> int | None:
    """The recipient a relayer's token names, or None when it is not one of ours."""
    head, _, _ = token.partition(".")
    if not (head.isascii() and head.isdigit()) or len(head) > 18:
        return None
    recipient_id = int(head)
    return recipient_id if hmac.compare_digest(relay_token(secret, recipient_id), token) else None


async def relayer(conn: asyncpg.Connection, recipient_id: int) -> asyncpg.Record | None:
    """A relayer (not opted out) by id: name, phone, areas, serves."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT id, name, phone, areas, serves FROM svc.recipient
           WHERE id = $1 AND 'relayer' = ANY (roles) AND opted_out_at IS NULL""",
        recipient_id,
    )
    return row


async def warnings_for_relayer(
    conn: asyncpg.Connection, areas: Sequence[str], units: Mapping[str, UnitRecord], *, now: datetime
) -> list[dict[str, Any]]:
    """The warnings in force that concern a relayer's areas (newest first), with their latest report."""
    rows = await conn.fetch(
        """SELECT v.warning_id, v.version, v.hazard, v.level, v.areas, v.expires,
                  coalesce(v.rendered->'zh-CN'->>'headline', '') AS headline
           FROM svc.warning_version v
           WHERE v.status = 'issued' AND v.msg_type <> 'Cancel' AND v.expires > $1 AND NOT v.exercise
           ORDER BY v.sent DESC""",
        now,
    )
    out = []
    for r in rows:
        if any(
            _within(a, r["areas"], units) or any(_within(w, [a], units) for w in r["areas"]) for a in areas
        ):
            out.append(dict(r))
    return out
