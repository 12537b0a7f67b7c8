"""The coverage figures kept for each warning (`svc.coverage_snapshot`): the time series while it is live, the
figure at each checkpoint (minutes after issue) and the final one; written by the coverage watch
(`warnings_svc.coverage.watch`), read by the API and the console.

Every snapshot keeps the whole figure set (`Measurement.as_json`) beside the columns a plot needs. A checkpoint
snapshot holds the figure *at* that minute after issue, whenever it is written; at most one is stored per
warning and minute, and one final per warning, so a watch that runs twice (or again after a restart) stores
nothing twice.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import asyncpg

from warnings_svc.coverage.evidence import Measurement


class SnapshotKind(StrEnum):
    series = "series"
    checkpoint = "checkpoint"
    final = "final"


def at_checkpoint(measurement: Measurement, minutes: int) -> Measurement:
    """The measurement as it stood `minutes` after issue (its figures, and the target reached only if it was
    by then): what a checkpoint snapshot keeps."""
    figure = measurement.at_minutes(minutes)
    reached = measurement.reached_target_at
    if reached is not None and reached > figure.at:
        reached = None
    return dataclasses.replace(measurement, now=figure, reached_target_at=reached)


def minutes_after_issue(measurement: Measurement) -> float:
    return max(0.0, (measurement.now.at - measurement.warning.issued_at).total_seconds() / 60)


async def store(
    conn: asyncpg.Connection,
    measurement: Measurement,
    kind: SnapshotKind,
    *,
    checkpoint_min: int | None = None,
    taken_at: datetime | None = None,
) -> bool:
    """Store one snapshot of the measurement (a checkpoint's: `at_checkpoint` first); false when that
    checkpoint or the final one of the warning is stored already."""
    figure = measurement.now
    status = await conn.execute(
        """INSERT INTO svc.coverage_snapshot (warning_id, version, kind, checkpoint_min, taken_at, minutes, public,
                  measured, population, reached, target, figures)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::jsonb)
           ON CONFLICT DO NOTHING""",
        measurement.warning.warning_id,
        measurement.warning.version,
        str(kind),
        checkpoint_min,
        taken_at or datetime.now(UTC),
        minutes_after_issue(measurement),
        min(1.0, max(0.0, figure.public)),
        min(1.0, max(0.0, figure.measured)),
        figure.population,
        figure.reached,
        measurement.target,
        json.dumps(measurement.as_json(), ensure_ascii=False),
    )
    return bool(status.endswith(" 1"))


async def series(conn: asyncpg.Connection, warning_id: int) -> list[dict[str, Any]]:
    """The warning's time series, oldest first: minutes after issue, public and measured coverage (0-1), when."""
    rows = await conn.fetch(
        """SELECT minutes, public, measured, taken_at FROM svc.coverage_snapshot
           WHERE warning_id = $1 AND kind IN ('series', 'final') ORDER BY minutes, taken_at""",
        warning_id,
    )
    return [
        {
            "minutes": round(r["minutes"], 2),
            "public": round(r["public"], 4),
            "measured": round(r["measured"], 4),
            "taken_at": r["taken_at"].isoformat(),
        }
        for r in rows
    ]


async def checkpoints(conn: asyncpg.Connection, warning_id: int) -> list[dict[str, Any]]:
    """The warning's checkpoints passed so far, in order: minutes after issue, the public coverage at that
    minute, whether it met the target."""
    rows = await conn.fetch(
        """SELECT checkpoint_min, public, target FROM svc.coverage_snapshot
           WHERE warning_id = $1 AND kind = 'checkpoint' ORDER BY checkpoint_min""",
        warning_id,
    )
    return [
        {"minutes": r["checkpoint_min"], "public": round(r["public"], 4), "met": r["public"] >= r["target"]}
        for r in rows
    ]


async def stored_checkpoints(conn: asyncpg.Connection, warning_id: int) -> set[int]:
    """The minutes of the checkpoints already stored for the warning."""
    rows = await conn.fetch(
        "SELECT checkpoint_min FROM svc.coverage_snapshot WHERE warning_id = $1 AND kind = 'checkpoint'",
        warning_id,
    )
    return {r[0] for r in rows}


async def ever_met(conn: asyncpg.Connection, warning_id: int) -> bool:
    """Whether a stored snapshot of the warning already met the target."""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM svc.coverage_snapshot
                              WHERE warning_id = $1 AND kind <> 'checkpoint' AND public >= target)""",
            warning_id,
        )
    )
