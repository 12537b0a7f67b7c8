"""The outbox of the channels that reach everyone in an area, and the evidence of reach they bring back.

Only SQL on an asyncpg connection, and the pure conversions between rows and `channels.area` types. The
area dispatcher (`warnings_svc.dissemination.area_dispatch`) decides when to call what.

- `write_area_deliveries` runs inside the transaction that issues a version: one delivery per configured
  target of the area channels, carrying the content as issued (`alert_content`), so a retry never sends a
  text rebuilt later. `write_expiries` runs inside the transaction that expires versions: what they left at
  a target (retained messages, a running task) is taken back. `write_area_again` puts an issued version out
  once more (coverage escalation), in a new round with a key of its own.
- `claim_area` leases the next ready delivery of a target; a delivery waits while an earlier one to that
  target for the same warning is pending or sending, so an Update or a Cancel always finds the id the target
  gave what it replaces. A delivery whose version was superseded or expired before it went out is dropped.
- `record_area_result` stores what the target made of it through `area_states.area_transition`.
- `store_evidence` and `store_terminal_acks` keep the evidence of reach per version, channel, target, area.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from channels.area import AlertArea, AlertTexts, AreaAlert, AreaSendResult, Evidence
from channels.base import SendOutcome
from warnings_svc.dissemination.area_states import AreaDeliveryEvent as Event
from warnings_svc.dissemination.area_states import AreaDeliveryState as State
from warnings_svc.dissemination.area_states import area_transition
from warnings_svc.dissemination.policy import priority_of

AREA_DISPATCH_CHANNEL = "svc_area_dispatch"  # NOTIFY channel that wakes area dispatchers
NOTHING_OUT = "nothing was out at the target to take back"
ENDED = "（已到期解除）"  # appended to the headline of a warning that ran out: "(expired, lifted)"
DROPPED_REASON = "warning no longer in force"

_CLAIMED = area_transition(State.pending, Event.claim).value
_DROPPED = area_transition(State.pending, Event.drop).value
_RECLAIMED = area_transition(State.sending, Event.reclaim).value


@dataclass(frozen=True, slots=True)
class AreaTarget:
    """A configured target of an area channel and the warning levels it is used for."""

    channel: str  # mqtt | area_sms | cell_broadcast | broadcast_platform | radio_tv
    name: str
    levels: frozenset[str]
    handsets_per_person: float | None = None  # an operator's, for the handsets expected before approval


def area_delivery_key(
    warning_id: int, version: int, channel: str, target: str, msg_type: str, again: int = 0
) -> str:
    """The idempotency key of one version put out to one target; an expiry is a key of its own, and so is each
    round of escalation that puts the version out again (`write_area_again`)."""
    key = f"{warning_id}-{version}/{channel}/{target}"
    if again:
        key += f"/again-{again}"
    return key + "/expire" if msg_type == "Expire" else key


def alert_content(
    *,
    identifier: str,
    warning_id: int,
    version: int,
    status: str,
    hazard: str,
    level: str,
    severity: str,
    urgency: str,
    onset: datetime,
    expires: datetime,
    areas: Sequence[AlertArea],
    texts: AlertTexts,
    cap_url: str = "",
    audio_url: str = "",
    area_units: Sequence[str] = (),
) -> dict[str, Any]:
    """What every area delivery of a version carries, as stored (JSON)."""
    return {
        "identifier": identifier,
        "warning_id": warning_id,
        "version": version,
        "status": status,
        "hazard": hazard,
        "level": level,
        "severity": severity,
        "urgency": urgency,
        "onset": onset.isoformat(),
        "expires": expires.isoformat(),
        "areas": [asdict(a) for a in areas],
        "texts": asdict(texts),
        "cap_url": cap_url,
        "audio_url": audio_url,
        "area_units": list(area_units),
    }


def alert_of(
    content: dict[str, Any], *, key: str, msg_type: str, previous_remote_id: str, update_number: int
) -> AreaAlert:
    """The `AreaAlert` a stored delivery puts out. An expiry goes out as a Cancel of what is out, marked
    `expired`, its texts saying the warning ended (never the warning's own text again)."""
    texts = AlertTexts(**content["texts"])
    if msg_type == "Expire":
        ended = f"{texts.headline}{ENDED}"
        texts = AlertTexts(headline=ended, sms=ended, broadcast="", led=ended, description=ended)
    return AreaAlert(
        key=key,
        identifier=content["identifier"],
        warning_id=content["warning_id"],
        version=content["version"],
        msg_type="Cancel" if msg_type == "Expire" else msg_type,  # type: ignore[arg-type]
        status=content["status"],
        hazard=content["hazard"],
        level=content["level"],
        severity=content["severity"],
        urgency=content["urgency"],
        onset=datetime.fromisoformat(content["onset"]),
        expires=datetime.fromisoformat(content["expires"]),
        areas=tuple(
            AlertArea(a["code"], a["name"], a["population"], tuple(a["polygons"])) for a in content["areas"]
        ),
        texts=texts,
        priority=priority_of(content["level"]),
        previous_remote_id=previous_remote_id,
        update_number=update_number,
        cap_url=content["cap_url"],
        audio_url=content["audio_url"],
        area_units=tuple(content.get("area_units", ())),
        expired=msg_type == "Expire",
    )


# ------------------------------------------------------------------------------------------------ writing


async def write_area_deliveries(
    conn: asyncpg.Connection,
    warning_id: int,
    version: int,
    msg_type: str,
    level: str,
    targets: Iterable[AreaTarget],
    content: dict[str, Any],
) -> int:
    """Promise the version to each of `targets` (chosen by the lifecycle: the forecaster's choice, or the
    level's defaults; every target for a Cancel); call it inside the issuing transaction."""
    chosen = list(targets)
    if not chosen:
        return 0
    await conn.execute(
        """WITH promised AS (
               INSERT INTO svc.area_delivery (warning_id, version, channel, target, msg_type, priority, content)
               SELECT $1, $2, t.channel, t.target, $3, $4, $5::jsonb
               FROM unnest($6::text[], $7::text[]) AS t (channel, target)
               ON CONFLICT DO NOTHING)
           SELECT pg_notify($8, 'area')""",
        warning_id,
        version,
        msg_type,
        priority_of(level),
        json.dumps(content, ensure_ascii=False),
        [t.channel for t in chosen],
        [t.name for t in chosen],
        AREA_DISPATCH_CHANNEL,
    )
    return len(chosen)


async def write_area_again(
    conn: asyncpg.Connection, warning_id: int, version: int, targets: Iterable[AreaTarget], *, repeat: bool
) -> list[str] | None:
    """Put an issued version out once more to `targets` (coverage escalation): to a target it was put out to
    before, in a new round when `repeat` (the people there are told again), else not at all; to a target it
    never went to, for the first time. The content is the version's as stored with its other area deliveries
    (never rebuilt); None, and nothing written, when none was stored (no area target took the version at
    issue). The targets written ("channel/target")."""
    chosen = list(targets)
    source = await conn.fetchrow(
        """SELECT msg_type, priority, content FROM svc.area_delivery
           WHERE warning_id = $1 AND version = $2 AND msg_type IN ('Alert', 'Update') ORDER BY id LIMIT 1""",
        warning_id,
        version,
    )
    if source is None:
        return None
    rows = await conn.fetch(
        """WITH chosen AS (
               SELECT t.channel, t.target,
                      (SELECT max(d.again) FROM svc.area_delivery d
                       WHERE d.warning_id = $1 AND d.version = $2 AND d.channel = t.channel AND d.target = t.target
                         AND d.msg_type IN ('Alert', 'Update')) AS last
               FROM unnest($3::text[], $4::text[]) AS t (channel, target))
           INSERT INTO svc.area_delivery (warning_id, version, channel, target, msg_type, priority, content, again)
           SELECT $1, $2, c.channel, c.target, $5, $6, $7::jsonb, coalesce(c.last + 1, 0)
           FROM chosen c WHERE c.last IS NULL OR $8
           ON CONFLICT DO NOTHING
           RETURNING channel || '/' || target""",
        warning_id,
        version,
        [t.channel for t in chosen],
        [t.name for t in chosen],
        source["msg_type"],
        source["priority"],
        source["content"],
        repeat,
    )
    if rows:
        await conn.execute("SELECT pg_notify($1, 'area')", AREA_DISPATCH_CHANNEL)
    return [r[0] for r in rows]


async def write_expiries(conn: asyncpg.Connection, versions: Sequence[tuple[int, int]]) -> None:
    """Take back, at every target where anything of the warning may be out, what the expired versions' warnings
    left there; call it inside the transaction that expires them. "May be out": an Alert or Update of any
    version of the warning done there, or tried with its outcome unknown, and no Cancel or expiry since."""
    if not versions:
        return
    await conn.execute(
        """WITH expired AS (SELECT * FROM unnest($1::bigint[], $2::int[]) AS e (warning_id, version)),
           latest AS (
               SELECT DISTINCT ON (d.warning_id, d.channel, d.target) d.warning_id, e.version, d.channel, d.target,
                      d.priority, d.content, d.msg_type
               FROM svc.area_delivery d JOIN expired e USING (warning_id)
               WHERE d.state IN ('done', 'pending', 'sending') AND (d.state = 'done' OR d.attempts > 0
                                                                    OR d.msg_type IN ('Cancel', 'Expire'))
               ORDER BY d.warning_id, d.channel, d.target, d.id DESC),
           promised AS (
               INSERT INTO svc.area_delivery (warning_id, version, channel, target, msg_type, priority, content)
               SELECT warning_id, version, channel, target, 'Expire', priority, content FROM latest
               WHERE msg_type IN ('Alert', 'Update')
               ON CONFLICT DO NOTHING)
           SELECT pg_notify($3, 'area')""",
        [w for w, _ in versions],
        [v for _, v in versions],
        AREA_DISPATCH_CHANNEL,
    )


def peer_text(text: str, limit: int) -> str:
    """A peer's words as they can be stored: no NUL or lone surrogate (PostgreSQL refuses them), at most
    `limit` characters.

    >>> peer_text("bad\\x00answer\\ud800", 100)
    'badanswer'
    """
    return "".join(c for c in text[: limit * 2] if c != "\x00" and not "\ud800" <= c <= "\udfff")[:limit]


# ----------------------------------------------------------------------------------------------- claiming


@dataclass(frozen=True, slots=True)
class AreaClaim:
    """An area delivery leased to this dispatcher for one attempt, with what it puts out."""

    id: int
    alert: AreaAlert
    msg_type: str  # as stored: Alert, Update, Cancel or Expire
    attempts: int  # including this one


# The oldest ready delivery of a target that no earlier one for the same warning holds back. An Alert or
# Update whose version is no longer issued and in force is dropped instead of sent, unless an attempt was
# made already (its outcome unknown: the target may have it), which is finished so that what replaces or
# cancels it finds its id; a Cancel or expiry goes out whatever the clock says. The earlier deliveries' ids at the target come along: the latest is what this
# one updates or cancels, their number the update number.
_CLAIM_AREA = f"""WITH ready AS (
    SELECT d.id, (d.msg_type IN ('Cancel', 'Expire') OR (v.status = 'issued' AND v.expires > now())
                  OR d.attempts > 0) AS live
    FROM svc.area_delivery d JOIN svc.warning_version v USING (warning_id, version)
    WHERE d.state = 'pending' AND d.channel = $1 AND d.target = $2 AND d.next_attempt_at <= now()
      AND NOT EXISTS (SELECT 1 FROM svc.area_delivery e
                      WHERE e.warning_id = d.warning_id AND e.channel = d.channel AND e.target = d.target
                        AND e.id < d.id AND e.state IN ('pending', 'sending'))
    ORDER BY d.priority, d.next_attempt_at, d.id
    LIMIT 1
    FOR UPDATE OF d SKIP LOCKED)
UPDATE svc.area_delivery d
SET state = CASE WHEN ready.live THEN '{_CLAIMED}' ELSE '{_DROPPED}' END,
    lease_owner = CASE WHEN ready.live THEN $3 END,
    lease_until = CASE WHEN ready.live THEN now() + make_interval(secs => $4) END,
    attempts = d.attempts + ready.live::int,
    reason = CASE WHEN ready.live THEN d.reason ELSE $5 END,
    done_at = CASE WHEN ready.live THEN NULL ELSE now() END
FROM ready WHERE d.id = ready.id
RETURNING d.id, d.warning_id, d.version, d.channel, d.target, d.msg_type, d.again, d.attempts, d.content, ready.live,
    (SELECT p.remote_id FROM svc.area_delivery p
     WHERE p.warning_id = d.warning_id AND p.channel = d.channel AND p.target = d.target AND p.id < d.id
       AND p.state = 'done' AND p.msg_type IN ('Alert', 'Update') AND p.remote_id <> ''
     ORDER BY p.id DESC LIMIT 1) AS previous_remote_id,
    (SELECT count(*) FROM svc.area_delivery p
     WHERE p.warning_id = d.warning_id AND p.channel = d.channel AND p.target = d.target AND p.id < d.id
       AND p.state = 'done' AND p.msg_type IN ('Alert', 'Update'))::int AS done_before"""


async def claim_area(
    conn: asyncpg.Connection, channel: str, target: str, lease: str, lease_s: float
) -> tuple[AreaClaim | None, bool]:
    """Lease the next ready delivery of a target: (the claim, whether a row was taken at all). A row dropped on
    the way (its version no longer in force) is taken without a claim: call again."""
    row = await conn.fetchrow(_CLAIM_AREA, channel, target, lease, lease_s, DROPPED_REASON)
    if row is None:
        return None, False
    if not row["live"]:
        return None, True
    msg_type = row["msg_type"]
    alert = alert_of(
        json.loads(row["content"]),
        key=area_delivery_key(row["warning_id"], row["version"], channel, target, msg_type, row["again"]),
        msg_type=msg_type,
        previous_remote_id=row["previous_remote_id"] or "",
        # the Alert is 0; the n-th Update at a target whose Alert went out is n
        update_number=row["done_before"] if msg_type == "Update" else 0,
    )
    return AreaClaim(row["id"], alert, msg_type, row["attempts"]), True


async def record_area_result(
    conn: asyncpg.Connection,
    claim_id: int,
    lease: str,
    event: Event,
    result: AreaSendResult | None,
    *,
    retry_in_s: float = 0.0,
    reason: str = "",
) -> bool:
    """Store what became of a claimed delivery (`event`: accept, skip, retry, give_up or refuse); false when
    the lease was lost meanwhile (another dispatcher has it now)."""
    state = area_transition(State.sending, event).value
    final = state != State.pending
    accepted = result is not None and result.outcome is SendOutcome.ACCEPTED
    status = await conn.execute(
        """UPDATE svc.area_delivery
           SET state = $3, lease_owner = NULL, lease_until = NULL,
               remote_id = CASE WHEN $4 <> '' THEN $4 ELSE remote_id END,
               route = CASE WHEN $5 <> '' THEN $5 ELSE route END,
               reason = $6, next_attempt_at = now() + make_interval(secs => $7),
               done_at = CASE WHEN $8 THEN now() END
           WHERE id = $1 AND state = 'sending' AND lease_owner = $2""",
        claim_id,
        lease,
        state,
        peer_text(result.remote_id, 4000) if accepted and result is not None else "",
        peer_text(result.route, 500) if result is not None else "",
        peer_text(reason or (result.reason if result is not None else ""), 500),
        retry_in_s,
        final,
    )
    return bool(status.endswith(" 1"))


async def reclaim_area_leases(conn: asyncpg.Connection) -> int:
    """Return the deliveries whose lease ran out (their dispatcher died mid-send) to the queue."""
    status = await conn.execute(
        f"""UPDATE svc.area_delivery SET state = '{_RECLAIMED}', lease_owner = NULL, lease_until = NULL,
                   reason = 'lease expired: put out again', next_attempt_at = now()
            WHERE state = 'sending' AND lease_until < now()"""
    )
    return int(status.split()[-1])


# ------------------------------------------------------------------------------------------------ evidence


def _version_of_key(key: str) -> tuple[int, int, int] | None:
    """(warning, version, round) of an idempotency key (`area_delivery_key`); None for a key that is not one,
    or an expiry's (what clears a warning away is no evidence of reach)."""
    head, *rest = key.split("/")
    warning, _, version = head.partition("-")
    if not (warning.isdigit() and version.isdigit()) or rest[-1:] == ["expire"]:
        return None
    again = rest[2] if len(rest) > 2 else ""
    round_ = int(again.removeprefix("again-")) if again.startswith("again-") and again[6:].isdigit() else 0
    return int(warning), int(version), round_


MAX_COUNT = 10**12  # more handsets or terminals than any peer can have: a report above is refused


def evidence_problem(e: Evidence) -> str:
    """Why a peer's report cannot be evidence ("" when it can): an area that is not a 12-digit code, counts
    out of range or out of order, text PostgreSQL refuses."""
    if e.area and not (len(e.area) == 12 and e.area.isascii() and e.area.isdigit()):
        return f"area {e.area[:20]!r} is not a 12-digit code"
    if not all(0 <= n < MAX_COUNT for n in (e.targeted, e.sent, e.delivered)):
        return "a count is negative or too large"
    people = e.detail.get("people")
    if people is not None and not (people.isascii() and people.isdigit() and int(people) < MAX_COUNT):
        return "people is not a count"
    if any(peer_text(v, 10_000) != v for v in (*e.detail.keys(), *e.detail.values(), e.key, e.remote_id)):
        return "text with NUL or a lone surrogate"
    return ""


async def store_evidence(
    conn: asyncpg.Connection, channel: str, target: str, batch: Sequence[Evidence]
) -> int:
    """Store a batch of evidence from one target (cumulative figures: a later report replaces an earlier one
    for the same version and area). Evidence that names no version this target was given, or that is not
    well formed (`evidence_problem`), is skipped. The number stored."""
    rows = []
    arrived = datetime.now(UTC)
    for e in batch:
        if evidence_problem(e):
            continue
        version = _version_of_key(e.key) if e.key else None
        if version is None and not e.key and e.remote_id:
            found = await conn.fetchrow(
                """SELECT warning_id, version, again FROM svc.area_delivery
                   WHERE channel = $1 AND target = $2 AND remote_id = $3 AND msg_type IN ('Alert', 'Update')
                   ORDER BY id DESC LIMIT 1""",
                channel,
                target,
                e.remote_id,
            )
            version = None if found is None else (found[0], found[1], found[2])
        if version is None:
            continue
        people = e.detail.get("people")
        rows.append(
            (
                version[0],
                version[1],
                e.area,
                str(e.kind),
                e.measured,
                e.targeted,
                e.sent,
                e.delivered,
                int(people) if people is not None else None,
                e.final,
                json.dumps(e.detail, ensure_ascii=False),
                # a peer's clock is believed only up to the time its report arrived here
                min(e.at, arrived) if e.at else arrived,
                version[2],
            )
        )
    if not rows:
        return 0
    columns = list(zip(*rows, strict=True))
    stored: int = await conn.fetchval(
        """WITH reported AS (
               SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::bool[], $6::bigint[],
                                    $7::bigint[], $8::bigint[], $9::bigint[], $10::bool[], $11::text[],
                                    $12::timestamptz[], $15::smallint[])
                   AS r (warning_id, version, area, kind, measured, targeted, sent, delivered, people, final,
                         detail, reported_at, round)),
           given AS (  -- only versions (and rounds) this target was given
               SELECT DISTINCT ON (r.warning_id, r.version, r.area, r.kind, r.round) r.* FROM reported r
               WHERE EXISTS (SELECT 1 FROM svc.area_delivery d
                             WHERE d.warning_id = r.warning_id AND d.version = r.version AND d.channel = $13
                               AND d.target = $14 AND d.msg_type IN ('Alert', 'Update') AND d.again = r.round)
               ORDER BY r.warning_id, r.version, r.area, r.kind, r.round, r.reported_at DESC),
           stored AS (
               INSERT INTO svc.reach_evidence AS e (warning_id, version, channel, target, area, kind, measured,
                      targeted, sent, delivered, people, final, detail, reported_at, round)
               SELECT warning_id, version, $13, $14, area, kind, measured, targeted, sent, delivered, people, final,
                      detail::jsonb, reported_at, round
               FROM given
               ON CONFLICT (warning_id, version, channel, target, area, kind, round) DO UPDATE
               SET measured = excluded.measured, targeted = excluded.targeted, sent = excluded.sent,
                   delivered = excluded.delivered, people = excluded.people, final = excluded.final,
                   detail = excluded.detail, reported_at = excluded.reported_at, updated_at = now()
               WHERE e.reported_at IS NULL OR e.reported_at <= excluded.reported_at
               RETURNING 1)
           SELECT count(*) FROM stored""",
        *[list(c) for c in columns[:12]],
        channel,
        target,
        list(columns[12]),
    )
    return stored


async def store_terminal_acks(conn: asyncpg.Connection, target: str, acks: Sequence[Evidence]) -> int:
    """Store terminals' acknowledgements of playback heard on one broker, and add them to the playback
    evidence of their version and area: terminals that acknowledged (of those registered there), the people
    they serve. One statement: only acknowledgements stored now are added, so a repeated one counts once. An
    acknowledgement from an unregistered or retired terminal, or for a version this broker was not given for
    the terminal's unit (neither done nor tried there), is not stored. The number of new acknowledgements stored."""
    if not acks:
        return 0
    stored: int = await conn.fetchval(
        """WITH heard AS (
               SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS h (terminal_id, identifier, played_at)),
           stored AS (
               INSERT INTO svc.terminal_ack (terminal_id, warning_id, version, played_at)
               SELECT DISTINCT ON (t.terminal_id, v.warning_id, v.version) t.terminal_id, v.warning_id, v.version,
                      h.played_at
               FROM heard h
               JOIN svc.terminal t ON t.terminal_id = h.terminal_id AND t.target = $4 AND t.retired_at IS NULL
               JOIN svc.warning_version v ON v.identifier = h.identifier
               -- only what this broker was given, in the terminal's own unit: nothing else counts as reach.
               -- Given: done, or tried at least once. A terminal plays its topic's message while the dispatcher
               -- is still publishing the other units' topics (the delivery is sending), and the broker does
               -- not send an acknowledgement refused here again
               JOIN svc.area_delivery d ON d.warning_id = v.warning_id AND d.version = v.version
                    AND d.channel = 'mqtt' AND d.target = $4 AND d.msg_type IN ('Alert', 'Update')
                    AND (d.state = 'done' OR d.attempts > 0) AND d.content -> 'area_units' ? t.area
               ON CONFLICT DO NOTHING
               RETURNING terminal_id, warning_id, version, played_at),
           counted AS (
               SELECT s.warning_id, s.version, t.area, count(*) AS n, sum(t.population_served) AS people,
                      max(s.played_at) AS played_at
               FROM stored s JOIN svc.terminal t USING (terminal_id)
               GROUP BY s.warning_id, s.version, t.area),
           evidence AS (
               INSERT INTO svc.reach_evidence AS r (warning_id, version, channel, target, area, kind, measured,
                      targeted, sent, delivered, people, final, reported_at)
               SELECT c.warning_id, c.version, 'mqtt', $4, c.area, 'playback', true,
                      (SELECT count(*) FROM svc.terminal t
                       WHERE t.target = $4 AND t.area = c.area AND t.retired_at IS NULL),
                      0, c.n, c.people, false, c.played_at
               FROM counted c
               ON CONFLICT (warning_id, version, channel, target, area, kind, round) DO UPDATE
               SET targeted = excluded.targeted, delivered = r.delivered + excluded.delivered,
                   people = coalesce(r.people, 0) + excluded.people,
                   reported_at = greatest(r.reported_at, excluded.reported_at), updated_at = now())
           SELECT count(*) FROM stored""",
        [a.terminal_id for a in acks],
        [a.identifier for a in acks],
        [a.at or datetime.now(UTC) for a in acks],
        target,
    )
    return stored


# ------------------------------------------------------------------------------------------------ reading


async def area_summary(conn: asyncpg.Connection, warning_id: int) -> list[dict[str, Any]]:
    """Each area delivery of a warning (version, channel, target, what it was, where it stands) with the
    evidence its target brought back for that version, summed over the areas: the API's and console's view."""
    rows = await conn.fetch(
        """SELECT d.version, d.channel, d.target, d.msg_type, d.state, d.attempts, d.route, d.remote_id, d.reason,
                  d.done_at, e.areas, e.targeted, e.sent, e.delivered, e.people, e.measured, e.final
           FROM svc.area_delivery d
           LEFT JOIN LATERAL (
               SELECT count(*) AS areas, sum(targeted)::bigint AS targeted, sum(sent)::bigint AS sent,
                      sum(delivered)::bigint AS delivered, sum(people)::bigint AS people,
                      bool_and(measured) AS measured, bool_and(final) AS final
               FROM svc.reach_evidence r
               WHERE (r.warning_id, r.version, r.channel, r.target, r.round)
                     = (d.warning_id, d.version, d.channel, d.target, d.again)
               HAVING count(*) > 0) e ON d.msg_type IN ('Alert', 'Update')
           WHERE d.warning_id = $1 ORDER BY d.version, d.channel, d.target, d.id""",
        warning_id,
    )
    out = []
    for r in rows:
        item = {k: r[k] for k in ("version", "channel", "target", "msg_type", "state", "attempts", "route",
                                  "remote_id", "reason", "done_at")}  # fmt: skip
        item["evidence"] = None
        if r["areas"] is not None:
            item["evidence"] = {k: r[k] for k in ("areas", "targeted", "sent", "delivered", "people", "measured",
                                                  "final")}  # fmt: skip
        out.append(item)
    return out


async def terminals_in(conn: asyncpg.Connection, units: Sequence[str]) -> dict[str, tuple[int, int]]:
    """Registered terminals in these units, per MQTT target: (terminals, people they serve)."""
    rows = await conn.fetch(
        """SELECT target, count(*) AS n, coalesce(sum(population_served), 0)::bigint AS people FROM svc.terminal
           WHERE retired_at IS NULL AND area = ANY($1::text[]) GROUP BY target""",
        list(units),
    )
    return {r["target"]: (r["n"], r["people"]) for r in rows}


async def confirm_airing(
    conn: asyncpg.Connection, token: str, audience_shares: dict[str, float]
) -> dict[str, Any] | None:
    """A broadcaster's confirmation that the version it was sent went on air: evidence for each of the
    version's areas, estimated as population times the broadcaster's audience share, final. None (nothing
    written) when no radio or TV delivery carries this token, or its broadcaster is no longer configured."""
    row = await conn.fetchrow(
        """SELECT warning_id, version, target, content FROM svc.area_delivery
           WHERE channel = 'radio_tv' AND remote_id = $1 AND state = 'done' AND msg_type IN ('Alert', 'Update')""",
        token,
    )
    if row is None or row["target"] not in audience_shares:
        return None
    share = audience_shares[row["target"]]
    areas = json.loads(row["content"])["areas"]
    now = datetime.now(UTC)
    await conn.executemany(
        """INSERT INTO svc.reach_evidence AS r (warning_id, version, channel, target, area, kind, measured,
                  targeted, sent, delivered, people, final, detail, reported_at)
           VALUES ($1, $2, 'radio_tv', $3, $4, 'airing', false, $5, $5, $6, $6, true, $7::jsonb, $8)
           ON CONFLICT (warning_id, version, channel, target, area, kind, round) DO NOTHING""",
        [
            (row["warning_id"], row["version"], row["target"], a["code"], a["population"],
             round(a["population"] * share), json.dumps({"audience_share": share}), now)
            for a in areas
        ],
    )  # fmt: skip
    return {
        "confirmed": f"{row['warning_id']}-{row['version']}",
        "target": row["target"],
        "areas": len(areas),
        "estimated_people": sum(round(a["population"] * share) for a in areas),
        "method": "population x audience share (an estimate)",
    }


LEVEL_ORDER = ("blue", "yellow", "orange", "red")


async def others_in_force(
    conn: asyncpg.Connection, target: str, warning_id: int, units: Sequence[str]
) -> list[tuple[dict[str, Any], str, list[str]]]:
    """The other warnings in force that this MQTT broker carries on any of `units`: (the content of the
    version put out, its delivery's message type, the units it shares with `units`), least severe first, so
    that re-publishing them in this order leaves the most severe retained on each topic."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (d.warning_id) d.content, d.msg_type, v.level, v.sent
           FROM svc.area_delivery d JOIN svc.warning_version v USING (warning_id, version)
           WHERE d.channel = 'mqtt' AND d.target = $1 AND d.warning_id <> $2 AND d.state = 'done'
             AND d.msg_type IN ('Alert', 'Update') AND v.status = 'issued' AND v.expires > now()
             AND d.content -> 'area_units' ?| $3::text[]
           ORDER BY d.warning_id, d.id DESC""",
        target,
        warning_id,
        list(units),
    )
    wanted = set(units)
    out = []
    for r in sorted(rows, key=lambda r: (LEVEL_ORDER.index(r["level"]), r["sent"])):
        content = json.loads(r["content"])
        shared = [u for u in content.get("area_units", ()) if u in wanted]
        out.append((content, r["msg_type"], shared))
    return out
