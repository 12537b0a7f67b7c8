"""What the operations panel reads from the database: each live warning's deliveries per channel, the queues'
oldest waiting item, each channel's last failure, and the coverage snapshots and escalations of a warning.

The five columns the panel shows are the same for the three outboxes, whose own states differ:

- SMS to registered people (`svc.delivery`): queued = pending or sending; sent = sent or accepted (the SMSC
  took it, no handset receipt yet); delivered; failed (a final failure receipt); dead (given up).
- area channels (`svc.area_delivery`, one task per target): queued = pending or sending with no failed
  attempt yet; failed = waiting for a retry after a failed attempt; sent = done with no evidence back yet;
  delivered = done with evidence of reach (`svc.reach_evidence`); dead.
- partners (`svc.partner_delivery`): queued, failed (waiting for a retry) and dead as for the area
  channels; delivered (a 2xx or the broker's or mail server's acceptance); partners have no "sent" between.

Dropped deliveries (their version stopped being in force before they were sent) are not counted.

The coverage snapshots and escalations are read here with plain SQL until the coverage package's own
readers (`coverage.snapshots.series`, `coverage.escalation.escalations_of`) exist on every branch: the rows
are the contract of migration 0016, so the two agree.
"""

from __future__ import annotations

from typing import Any

import asyncpg

COLUMNS: tuple[str, ...] = ("queued", "sent", "delivered", "failed", "dead")
MAX_SERIES = 2000  # snapshots drawn per warning (one a minute for a day and a half)


async def issued_warnings(
    conn: asyncpg.Connection, *, warning_id: int | None = None, live: bool = False, limit: int = 1
) -> list[asyncpg.Record]:
    """Warnings with an issued version, with that latest issued version's facts: one by id, or (`live`) those
    in force now (issued, not expired; exercises too, marked), most severe and newest first."""
    return await conn.fetch(
        """SELECT w.id, w.hazard, w.level, w.areas, w.onset, w.expires, w.exercise, v.version, v.sent, v.msg_type
           FROM svc.warning w
           JOIN LATERAL (SELECT version, sent, msg_type FROM svc.warning_version
                         WHERE warning_id = w.id AND identifier IS NOT NULL
                         ORDER BY version DESC LIMIT 1) v ON true
           WHERE ($1::bigint IS NULL OR w.id = $1) AND (NOT $2 OR (w.status = 'issued' AND w.expires > now()))
           ORDER BY array_position(ARRAY['red', 'orange', 'yellow', 'blue'], w.level), v.sent DESC NULLS LAST
           LIMIT $3""",
        warning_id,
        live,
        limit,
    )


def _row(kind: str, channel: str) -> dict[str, Any]:
    return {"kind": kind, "channel": channel, **dict.fromkeys(COLUMNS, 0)}


async def channel_progress(conn: asyncpg.Connection, warning_id: int) -> list[dict[str, Any]]:
    """The warning's deliveries (every version) per channel in the panel's five columns, SMS first, then the
    area channels, then the partner channels; a channel with no delivery is not listed."""
    sms = await conn.fetch(
        """SELECT channel, state, count(*) AS n FROM svc.delivery
           WHERE warning_id = $1 AND state <> 'dropped' GROUP BY channel, state""",
        warning_id,
    )
    area = await conn.fetch(
        """SELECT d.channel,
                  CASE WHEN d.state IN ('pending', 'sending') AND d.attempts > 0 AND d.reason <> '' THEN 'failed'
                       WHEN d.state IN ('pending', 'sending') THEN 'queued'
                       WHEN d.state = 'done' AND EXISTS (
                           SELECT 1 FROM svc.reach_evidence r
                           WHERE (r.warning_id, r.version, r.channel, r.target)
                                 = (d.warning_id, d.version, d.channel, d.target)) THEN 'delivered'
                       WHEN d.state = 'done' THEN 'sent'
                       ELSE d.state END AS column_name,
                  count(*) AS n
           FROM svc.area_delivery d
           WHERE d.warning_id = $1 AND d.state <> 'dropped' AND d.msg_type IN ('Alert', 'Update')
           GROUP BY 1, 2""",
        warning_id,
    )
    partner = await conn.fetch(
        """SELECT channel,
                  CASE WHEN state IN ('pending', 'sending') AND attempts > 0 THEN 'failed'
                       WHEN state IN ('pending', 'sending') THEN 'queued'
                       ELSE state END AS column_name,
                  count(*) AS n
           FROM svc.partner_delivery
           WHERE warning_id = $1 AND state <> 'dropped' AND subscription_id IS NOT NULL
           GROUP BY 1, 2""",
        warning_id,
    )
    sms_column = {"pending": "queued", "sending": "queued", "sent": "sent", "accepted": "sent"}
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in sms:
        row = rows.setdefault(("sms", r["channel"]), _row("sms", r["channel"]))
        row[sms_column.get(r["state"], r["state"])] += r["n"]
    for kind, found in (("area", area), ("partner", partner)):
        for r in found:
            row = rows.setdefault((kind, r["channel"]), _row(kind, r["channel"]))
            row[r["column_name"]] += r["n"]
    order = {"sms": 0, "area": 1, "partner": 2}
    out = sorted(rows.values(), key=lambda r: (order[r["kind"]], r["channel"]))
    for r in out:
        r["total"] = sum(r[c] for c in COLUMNS)
    return out


async def queue_ages(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Per outbox and channel, how many deliveries wait (every warning) and the age in seconds of the oldest
    one due now: what `warnings_delivery_queue_oldest_seconds` says, read from the database itself so the
    panel shows it when the dispatchers run in other processes."""
    rows = await conn.fetch(
        """SELECT 'sms' AS kind, channel, count(*) AS waiting,
                  extract(epoch FROM now() - min(created_at) FILTER (WHERE next_attempt_at <= now())) AS oldest_s
           FROM svc.delivery WHERE queued GROUP BY channel
           UNION ALL
           SELECT 'area', channel, count(*),
                  extract(epoch FROM now() - min(created_at) FILTER (WHERE next_attempt_at <= now()))
           FROM svc.area_delivery WHERE state = 'pending' GROUP BY channel
           UNION ALL
           SELECT 'partner', channel, count(*),
                  extract(epoch FROM now() - min(created_at) FILTER (WHERE next_attempt_at <= now()))
           FROM svc.partner_delivery WHERE state = 'pending' GROUP BY channel
           ORDER BY 1, 2"""
    )
    return [dict(r) for r in rows]


async def last_failures(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    """Per outbox and channel, the latest failure in the last day (when and why): where the circuit
    breakers' state is not in this process, what the database can tell of a channel in trouble."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (kind, channel) kind, channel, at, reason, endpoint FROM (
               SELECT 'sms' AS kind, channel, coalesce(final_at, next_attempt_at) AS at, reason,
                      coalesce(endpoint, '') AS endpoint
               FROM svc.delivery
               WHERE state IN ('failed', 'dead') AND coalesce(final_at, next_attempt_at) > now() - interval '1 day'
               UNION ALL
               SELECT 'area', channel, next_attempt_at, reason, target FROM svc.area_delivery
               WHERE reason <> '' AND state <> 'done' AND next_attempt_at > now() - interval '1 day'
               UNION ALL
               SELECT 'partner', d.channel, a.started_at, a.error, '' FROM svc.partner_attempt a
               JOIN svc.partner_delivery d ON d.id = a.delivery_id
               WHERE a.outcome <> 'delivered' AND a.started_at > now() - interval '1 day'
           ) f ORDER BY kind, channel, at DESC"""
    )
    return [dict(r) for r in rows]


async def coverage_series(conn: asyncpg.Connection, warning_id: int) -> list[dict[str, Any]]:
    """The warning's stored coverage figures in time order (series, checkpoints and the final one)."""
    rows = await conn.fetch(
        """SELECT kind, checkpoint_min, minutes, public, measured, taken_at FROM svc.coverage_snapshot
           WHERE warning_id = $1 ORDER BY minutes, id LIMIT $2""",
        warning_id,
        MAX_SERIES,
    )
    return [dict(r) for r in rows]


async def escalations(conn: asyncpg.Connection, warning_id: int) -> list[dict[str, Any]]:
    """The warning's escalation steps, oldest first."""
    rows = await conn.fetch(
        """SELECT id, checkpoint_min, step, action, state, coverage, decided_by, created_at, decided_at
           FROM svc.coverage_escalation WHERE warning_id = $1 ORDER BY checkpoint_min, step""",
        warning_id,
    )
    return [dict(r) for r in rows]
