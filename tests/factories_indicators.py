"""Warnings of a given year, their stored coverage snapshots and evidence, and scores, for the indicator
reports' tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta

import asyncpg

from risk_zoning import BEIJING

HAIBOWAN, HAINAN, WUDA = "150302000000", "150303000000", "150304000000"


def beijing_time(year: int, month: int, day: int, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=BEIJING)


async def move_to(conn: asyncpg.Connection, warning_id: int, sent: datetime) -> None:
    """Make the warning's issued versions sent at `sent` (a warning of an earlier year), each a second after
    the one before, with the identifier an issue then would have given them (the sender code and the send
    time). Moved with their identifiers of today, they stood in the way of warnings issued a moment later:
    an issue in the same second as one of theirs failed on the identifier's unique key."""
    await conn.execute(
        """UPDATE svc.warning_version SET
               sent = $2::timestamptz + (version - 1) * interval '1 second',
               identifier = split_part(identifier, '_', 1) || '_'
                   || to_char(($2::timestamptz + (version - 1) * interval '1 second') AT TIME ZONE 'Asia/Shanghai',
                              'YYYYMMDDHH24MISS')
           WHERE warning_id = $1 AND sent IS NOT NULL""",
        warning_id,
        sent,
    )


def by_area(figures: Mapping[str, tuple[int, int]], level: str = "district") -> dict[str, dict[str, object]]:
    """``Coverage.as_json``'s by_area from {code: (population, reached)}."""
    return {
        code: {
            "level": level,
            "population": population,
            "reached": reached,
            "coverage": round(reached / population, 4),
            "measured": round(reached / population, 4),
        }
        for code, (population, reached) in figures.items()
    }


async def add_snapshot(
    conn: asyncpg.Connection,
    warning_id: int,
    kind: str,
    figures: Mapping[str, tuple[int, int]],
    *,
    minutes: float,
    checkpoint_min: int | None = None,
    target: float = 0.95,
) -> None:
    """A stored coverage snapshot of the warning's latest issued version with these district figures."""
    version = await conn.fetchval(
        "SELECT max(version) FROM svc.warning_version WHERE warning_id = $1 AND sent IS NOT NULL", warning_id
    )
    population = sum(p for p, _ in figures.values())
    reached = sum(r for _, r in figures.values())
    doc = {
        "population": population,
        "reached": reached,
        "public": reached / population,
        "by_area": by_area(figures),
    }
    await conn.execute(
        """INSERT INTO svc.coverage_snapshot (warning_id, version, kind, checkpoint_min, minutes, public, measured,
                                              population, reached, target, figures)
           VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10)""",
        warning_id,
        version,
        kind,
        checkpoint_min,
        minutes,
        reached / population,
        population,
        reached,
        target,
        json.dumps(doc),
    )


async def add_broadcast_evidence(
    conn: asyncpg.Connection, warning_id: int, target: str, area: str, people: int, at: datetime
) -> None:
    """A cell broadcast centre's estimate of the people it reached in `area` by `at`."""
    await conn.execute(
        """INSERT INTO svc.reach_evidence (warning_id, version, channel, target, area, kind, measured, people,
                                           reported_at)
           VALUES ($1, 1, 'cbc', $2, $3, 'broadcast', false, $4, $5)""",
        warning_id,
        target,
        area,
        people,
        at,
    )


async def add_score(
    conn: asyncpg.Connection,
    score: int,
    area: str | None,
    given_at: datetime,
    *,
    warning_id: int | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO svc.satisfaction (score, area, warning_id, via, given_at) VALUES ($1, $2, $3, 'web', $4)""",
        score,
        area,
        warning_id,
        given_at,
    )


def minutes_after(when: datetime, minutes: float) -> datetime:
    return when + timedelta(minutes=minutes)
