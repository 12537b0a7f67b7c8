"""The register of terminals (village loudspeakers, LED displays): who listens where, serving how many people.

Rows are checked completely (`TerminalRow`, and every area a unit of the region) before one is written; a
terminal registered again is updated (its area, kind, population served), never doubled.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Sequence
from typing import Annotated, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from risk_zoning.unit_tree import geocode


class TerminalRow(BaseModel):
    """One terminal as registered."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=False)
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


CSV_COLUMNS = ("terminal_id", "kind", "area", "population_served")
OPTIONAL_COLUMNS = ("target", "name")
MAX_ROWS = 200_000


def parse_terminals_csv(text: str, name: str = "CSV") -> list[TerminalRow]:
    """The rows of a terminals CSV (header: terminal_id, kind, area, population_served, and optionally
    target, name); an area may be a 6-, 9- or 12-digit admin code. Every row is checked; any problem raises
    `TerminalError` naming the first few rows at fault, so that nothing of a bad file is written."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in CSV_COLUMNS if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown:
        raise TerminalError(
            f"{name}: the header needs {', '.join(CSV_COLUMNS)} (optional: {', '.join(OPTIONAL_COLUMNS)})"
            + (f"; missing {', '.join(missing)}" if missing else "")
            + (f"; unknown {', '.join(unknown)}" if unknown else "")
        )
    rows, problems = [], []
    for i, raw in enumerate(reader, 2):  # line 1 is the header
        if i - 1 > MAX_ROWS:
            raise TerminalError(f"{name}: more than {MAX_ROWS} rows")
        values = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            problems.append(f"line {i}: more fields than the header")
            continue
        values["area"] = geocode(values.get("area", "")) or values.get("area", "")
        values = {k: v for k, v in values.items() if v or k in CSV_COLUMNS}
        try:
            rows.append(TerminalRow.model_validate(values))
        except ValidationError as e:
            first = e.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "row"
            problems.append(f"line {i}: {field}: {first['msg']}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise TerminalError(f"{name}: " + "; ".join(problems[:5]) + more)
    if not rows:
        raise TerminalError(f"{name}: no terminal rows")
    return rows
