"""The register of terminals (village loudspeakers, LED displays): who listens where, serving how many people.

Rows are checked completely (`TerminalRow`, and every area a unit of the region) before one is written; a
terminal registered again is updated (its area, kind, population served), never doubled.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Annotated, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field


class TerminalRow(BaseModel):
    """One terminal as registered."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    terminal_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    kind: Literal["loudspeaker", "display"]
    area: Annotated[str, Field(pattern=r"^[0-9]{12}$")]
    population_served: Annotated[int, Field(ge=0, le=10_000_000)]
    target: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")] = "terminals"
    name: Annotated[str, Field(max_length=80)] = ""


class TerminalError(ValueError):
    """Rows that cannot be registered; the message names the first few."""


def check_terminals(rows: Sequence[TerminalRow], units: Collection[str], targets: Collection[str]) -> None:
    """Every row's area is a unit of the region and its target a configured MQTT broker; ids are unique."""
    problems = []
    seen: set[str] = set()
    for i, row in enumerate(rows, 1):
        if row.area not in units:
            problems.append(f"row {i} ({row.terminal_id}): area {row.area} is not a unit of this region")
        if targets and row.target not in targets:
            problems.append(f"row {i} ({row.terminal_id}): no MQTT target named {row.target!r}")
        if row.terminal_id in seen:
            problems.append(f"row {i}: terminal {row.terminal_id} is listed twice")
        seen.add(row.terminal_id)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise TerminalError("; ".join(problems[:5]) + more)


async def register_terminals(conn: asyncpg.Connection, rows: Sequence[TerminalRow]) -> int:
    """Register (or update) the terminals, in one statement; the number written. Check them first."""
    if not rows:
        return 0
    status = await conn.execute(
        """INSERT INTO svc.terminal AS t (terminal_id, kind, area, population_served, target, name)
           SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::text[])
           ON CONFLICT (terminal_id) DO UPDATE
           SET kind = excluded.kind, area = excluded.area, population_served = excluded.population_served,
               target = excluded.target, name = excluded.name, retired_at = NULL""",
        [r.terminal_id for r in rows],
        [r.kind for r in rows],
        [r.area for r in rows],
        [r.population_served for r in rows],
        [r.target for r in rows],
        [r.name for r in rows],
    )
    return int(status.split()[-1])
