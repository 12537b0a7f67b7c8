"""Departments and their duty chains (duty contact, deputy, leader): whom a warning calls.

`departments_in` answers which departments a warning concerns: those whose area is one of the warning's
areas, lies inside one (a town's office under a warned district) or around one (the city's bureau for a
warned town), that respond to the warning's hazard at its level.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import asyncpg

from risk_zoning.store import UnitRecord
from risk_zoning.unit_tree import ancestors, geocode_ancestors
from warnings_svc.vocabulary import LEVELS

RANKS: tuple[str, ...] = ("duty", "deputy", "leader")  # the order a duty chain is called in
SECTORS: tuple[str, ...] = (
    "emergency",
    "education",
    "agriculture",
    "transport",
    "housing",
    "water",
    "power",
    "health",
    "media",
    "other",
)


@dataclass(frozen=True, slots=True)
class DutyPerson:
    """One person of a department's duty chain."""

    id: int
    rank: str  # duty | deputy | leader
    name: str
    phone: str  # E.164
    email: str = ""


@dataclass(frozen=True, slots=True)
class DepartmentChain:
    """A department with its duty chain, by rank (a rank may be vacant)."""

    id: int
    code: str
    name: str
    name_en: str
    sector: str
    area: str
    hazards: tuple[str, ...]
    min_level: str
    people: Mapping[str, DutyPerson] = field(default_factory=dict)

    def responds_to(self, hazard: str, level: str) -> bool:
        """Whether a warning of `hazard` at `level` calls this department."""
        return hazard in self.hazards and LEVELS.index(level) >= LEVELS.index(self.min_level)


def concerns(area: str, warned: Iterable[str], units: Mapping[str, UnitRecord]) -> bool:
    """Whether a department serving `area` is concerned by a warning for the `warned` areas: the same unit,
    a unit inside a warned one, or a unit around a warned one."""
    named = set(warned)
    if area in named:
        return True
    if named & set(_ancestors(area, units)):
        return True
    return any(area in _ancestors(code, units) for code in named)


async def departments_in(
    conn: asyncpg.Connection,
    *,
    hazard: str,
    level: str,
    areas: Iterable[str],
    units: Mapping[str, UnitRecord],
) -> list[DepartmentChain]:
    """The departments (not retired) a warning of `hazard` at `level` for `areas` calls, with their duty
    chains, ordered by area and code."""
    warned = list(areas)
    return [
        d
        for d in await all_departments(conn)
        if d.responds_to(hazard, level) and concerns(d.area, warned, units)
    ]


async def all_departments(conn: asyncpg.Connection, *, retired: bool = False) -> list[DepartmentChain]:
    """Every department (with the retired ones when `retired`), with its duty chain, by area and code."""
    rows = await conn.fetch(
        """SELECT d.id, d.code, d.name, d.name_en, d.sector, d.area, d.hazards, d.min_level,
                  coalesce(json_agg(json_build_object('id', p.id, 'rank', p.rank, 'name', p.name,
                                    'phone', p.phone, 'email', p.email))
                           FILTER (WHERE p.id IS NOT NULL), '[]') AS people
           FROM svc.department d LEFT JOIN svc.duty_person p ON p.department_id = d.id
           WHERE $1 OR d.retired_at IS NULL
           GROUP BY d.id ORDER BY d.area, d.code""",
        retired,
    )
    return [_chain(row) for row in rows]


def _chain(row: asyncpg.Record) -> DepartmentChain:
    people = json.loads(row["people"]) if isinstance(row["people"], str) else row["people"]
    return DepartmentChain(
        id=row["id"],
        code=row["code"],
        name=row["name"],
        name_en=row["name_en"],
        sector=row["sector"],
        area=row["area"],
        hazards=tuple(row["hazards"]),
        min_level=row["min_level"],
        people={p["rank"]: DutyPerson(p["id"], p["rank"], p["name"], p["phone"], p["email"]) for p in people},
    )


def _ancestors(code: str, units: Mapping[str, UnitRecord]) -> list[str]:
    """The units around `code`, nearest first: from the unit tree, or from the geocode's digits when the risk
    database does not know the code."""
    return ancestors(code, units) if code in units else geocode_ancestors(code)
