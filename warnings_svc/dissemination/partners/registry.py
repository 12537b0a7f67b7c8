"""Departments and their duty chains (duty contact, deputy, leader): whom a warning calls, and the registry's
import from CSV and its changes from the console.

`departments_in` answers which departments a warning concerns: those whose area is one of the warning's
areas, lies inside one (a town's office under a warned district) or around one (the city's bureau for a
warned town), that respond to the warning's hazard at its level.

The CSV (docs/departments.md) has one department a row: ``code, name, name_en, sector, area, hazards,
min_level`` and for each rank of `RANKS` ``{rank}_name, {rank}_phone, {rank}_email``. `check_row` checks a
row (the pydantic model `DepartmentCsvRow`, one reason per faulty column); the console's add and edit forms
carry the same fields and go through the same check. Decisions where the issue is silent:

- A line whose first field starts with ``#`` is a comment (no code can start so); blank lines are skipped.
- ``code`` is folded to lower case; a later row repeating a code of the file is rejected.
- ``area`` is a unit the region's risk database knows (6-, 9- or 12-digit code, padded to 12 digits).
- ``hazards`` are separated by ``;`` (English keys or Chinese names); empty means all four. ``min_level``
  empty means blue.
- The duty contact (name and phone) is required; a deputy or leader is given with both name and phone or
  not at all; an email is optional. Phones are Chinese mobile numbers (`recipients.check_phone`).
- Import upserts by code in one transaction after every row was checked; rejected rows are reported and
  skipped. A department's duty chain becomes exactly the row's (a rank left empty is vacated). A department
  absent from a later file is *not* retired (files are often partial: one district's offices); retiring is
  a decision made in the console. A retired department named in a file is updated and stays retired.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core import ErrorDetails

from risk_zoning import HAZARD_NAMES, HAZARDS
from risk_zoning.store import UnitRecord, region_units
from risk_zoning.unit_tree import ancestors, geocode_ancestors
from warnings_svc.dissemination import csv_files
from warnings_svc.dissemination.recipients import (
    RecipientError,
    Rejection,
    check_phone,
    full_code,
)
from warnings_svc.vocabulary import LEVEL_NAMES, LEVELS

log = logging.getLogger(__name__)

RANKS: tuple[str, ...] = ("duty", "deputy", "leader")  # the order a duty chain is called in
DEMO_SOURCE = "demo"  # the `source` of the demo's synthetic departments, which the console labels as such
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
    source: str = ""  # "csv:<file>", "console", "demo"
    retired_at: datetime | None = None

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
        """SELECT d.id, d.code, d.name, d.name_en, d.sector, d.area, d.hazards, d.min_level, d.source,
                  d.retired_at,
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
        source=row["source"],
        retired_at=row["retired_at"],
    )


def _ancestors(code: str, units: Mapping[str, UnitRecord]) -> list[str]:
    """The units around `code`, nearest first: from the unit tree, or from the geocode's digits when the risk
    database does not know the code."""
    return ancestors(code, units) if code in units else geocode_ancestors(code)


# ---------------------------------------------------------------------------------------------- the CSV

MAX_NAME_CHARS = 80
MAX_NAME_EN_CHARS = 120
MAX_EMAIL_CHARS = 254

REQUIRED_COLUMNS: tuple[str, ...] = ("code", "name", "sector", "area", "duty_name", "duty_phone")
COLUMNS: tuple[str, ...] = (
    "code",
    "name",
    "name_en",
    "sector",
    "area",
    "hazards",
    "min_level",
    *(f"{rank}_{what}" for rank in RANKS for what in ("name", "phone", "email")),
)

_CODE = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_SECTOR_ALIASES: Mapping[str, str] = {
    "应急管理": "emergency",
    "应急": "emergency",
    "教育": "education",
    "农牧": "agriculture",
    "农业": "agriculture",
    "交通运输": "transport",
    "交通": "transport",
    "住房和城乡建设": "housing",
    "住建": "housing",
    "水务": "water",
    "水利": "water",
    "电力": "power",
    "卫生健康": "health",
    "卫健": "health",
    "媒体": "media",
    "其他": "other",
}
_HAZARD_ALIASES: Mapping[str, str] = {name: hazard for hazard, name in HAZARD_NAMES["zh"].items()}
_LEVEL_ALIASES: Mapping[str, str] = {zh: level for level, (zh, _) in LEVEL_NAMES.items()}
_T = TypeVar("_T")


class DepartmentError(Exception):
    """A registry operation that cannot be done as asked (unreadable file, unknown department ...); one line."""


class DepartmentRowError(DepartmentError):
    """A row (or a form) that cannot be registered; `problems` holds (column, value, reason) for each fault."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{column}: {reason}" for column, _, reason in problems))


@dataclass(frozen=True)
class PersonRow:
    """One checked person of a duty chain."""

    name: str
    phone: str  # E.164
    email: str


@dataclass(frozen=True)
class DepartmentRow:
    """One checked CSV row (or console form), ready to write; `people` by rank, vacant ranks absent."""

    code: str
    name: str
    name_en: str
    sector: str
    area: str
    hazards: tuple[str, ...]
    min_level: str
    people: Mapping[str, PersonRow]


@dataclass(frozen=True)
class ImportReport:
    """What an import did. `still_retired`: rows naming a retired department (written if changed, left
    retired: restoring is the console's)."""

    inserted: int
    updated: int
    unchanged: int
    still_retired: int
    rejected_rows: int
    rejected: list[Rejection]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _text(value: str, limit: int, required: bool) -> str:
    text = " ".join(unicodedata.normalize("NFKC", value).split())
    if required and not text:
        raise DepartmentError("is required")
    if len(text) > limit:
        raise DepartmentError(f"longer than {limit} characters")
    return text


def _code(text: str) -> str:
    code = unicodedata.normalize("NFKC", text).strip().lower()
    if not code:
        raise DepartmentError("a code is required (the key later imports match on)")
    if code == "new":
        raise DepartmentError("'new' is the address of the console's add form; choose another code")
    if not _CODE.fullmatch(code):
        raise DepartmentError(
            "is 1 to 64 of a-z, 0-9 and _ . - (starting with a letter or digit), like wuhai-emergency"
        )
    return code


def _sector(text: str) -> str:
    sector = _SECTOR_ALIASES.get(text.strip(), text.strip().lower())
    if sector not in SECTORS:
        raise DepartmentError(f"unknown sector {text[:30]!r}; sectors: {', '.join(SECTORS)}")
    return sector


def _area(text: str, units: Mapping[str, UnitRecord]) -> str:
    if not text.strip():
        raise DepartmentError("an area (admin code of the city, a district or a town) is required")
    try:
        code = full_code(text)
    except RecipientError as e:
        raise DepartmentError(str(e)) from None
    if code not in units:
        raise DepartmentError(f"area {text.strip()[:20]} is not a unit of this region")
    return code


def _hazards(text: str) -> tuple[str, ...]:
    items = [i for i in (s.strip() for s in re.split(r"[;；]", unicodedata.normalize("NFKC", text))) if i]
    out = set()
    for item in items:
        hazard = _HAZARD_ALIASES.get(item, item.lower())
        if hazard not in HAZARDS:
            raise DepartmentError(
                f"unknown hazard {item[:30]!r}; hazards: {'; '.join(HAZARDS)} (separated by ;, empty: all)"
            )
        out.add(hazard)
    return tuple(h for h in HAZARDS if h in out) if out else tuple(HAZARDS)


def _min_level(text: str) -> str:
    text = text.strip()
    if not text:
        return "blue"
    level = _LEVEL_ALIASES.get(text.removesuffix("预警"), text.lower())
    if level not in LEVELS:
        raise DepartmentError(f"unknown level {text[:20]!r}; levels: {', '.join(LEVELS)}")
    return level


def _phone(text: str) -> str | None:
    if not text.strip():
        return None
    try:
        return check_phone(text)
    except RecipientError as e:
        raise DepartmentError(str(e)) from None


def _email(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).strip()
    if not text:
        return ""
    if len(text) > MAX_EMAIL_CHARS or not _EMAIL.fullmatch(text):
        raise DepartmentError(f"{text[:60]!r} is not an email address (name@example.org)")
    return text


def _checked(check: Callable[..., _T], *args: Any) -> _T:
    """`check(*args)`, its `DepartmentError` as the `ValueError` pydantic reports (with the same message)."""
    try:
        return check(*args)
    except DepartmentError as e:
        raise ValueError(str(e)) from None


def _units(info: ValidationInfo) -> Mapping[str, UnitRecord]:
    context = info.context
    if not isinstance(context, dict) or "units" not in context:
        raise TypeError("a departments CSV row is validated with context={'units': ...}")
    units: Mapping[str, UnitRecord] = context["units"]
    return units


class DepartmentCsvRow(BaseModel):
    """One departments CSV row (or console form), checked column by column: each field is a column (same
    name) whose validator turns its text into its value or fails with the reason a report gives. Absent
    columns are empty. Validate with ``context={"units": ...}`` (the region's units); `check_row` does, and
    adds the rules between a rank's columns (name and phone together)."""

    model_config = ConfigDict(frozen=True)

    code: str
    name: str
    name_en: str
    sector: str
    area: str
    hazards: tuple[str, ...]
    min_level: str
    duty_name: str
    duty_phone: str | None
    duty_email: str
    deputy_name: str
    deputy_phone: str | None
    deputy_email: str
    leader_name: str
    leader_phone: str | None
    leader_email: str

    @field_validator("code", mode="before")
    @classmethod
    def _check_code(cls, text: str) -> str:
        return _checked(_code, text)

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, text: str) -> str:
        return _checked(_text, text, MAX_NAME_CHARS, True)

    @field_validator("name_en", mode="before")
    @classmethod
    def _check_name_en(cls, text: str) -> str:
        return _checked(_text, text, MAX_NAME_EN_CHARS, False)

    @field_validator("sector", mode="before")
    @classmethod
    def _check_sector(cls, text: str) -> str:
        return _checked(_sector, text)

    @field_validator("area", mode="before")
    @classmethod
    def _check_area(cls, text: str, info: ValidationInfo) -> str:
        return _checked(_area, text, _units(info))

    @field_validator("hazards", mode="before")
    @classmethod
    def _check_hazards(cls, text: str) -> tuple[str, ...]:
        return _checked(_hazards, text)

    @field_validator("min_level", mode="before")
    @classmethod
    def _check_min_level(cls, text: str) -> str:
        return _checked(_min_level, text)

    @field_validator("duty_name", "deputy_name", "leader_name", mode="before")
    @classmethod
    def _check_person_name(cls, text: str) -> str:
        return _checked(_text, text, MAX_NAME_CHARS, False)

    @field_validator("duty_phone", "deputy_phone", "leader_phone", mode="before")
    @classmethod
    def _check_phone(cls, text: str) -> str | None:
        return _checked(_phone, text)

    @field_validator("duty_email", "deputy_email", "leader_email", mode="before")
    @classmethod
    def _check_email(cls, text: str) -> str:
        return _checked(_email, text)

    def department_row(self) -> DepartmentRow:
        people = {}
        for rank in RANKS:
            name, phone = getattr(self, f"{rank}_name"), getattr(self, f"{rank}_phone")
            if name and phone:
                people[rank] = PersonRow(name, phone, getattr(self, f"{rank}_email"))
        return DepartmentRow(
            self.code,
            self.name,
            self.name_en,
            self.sector,
            self.area,
            self.hazards,
            self.min_level,
            people,
        )


RANK_NAMES: Mapping[str, str] = {"duty": "duty contact", "deputy": "deputy", "leader": "leader"}


def _rank_rules(cells: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(column, value, reason) for each rule between a rank's columns the row breaks: the duty contact is
    required; a deputy or leader has both a name and a phone or neither (an email alone is no person)."""
    problems = []
    for rank in RANKS:
        name, phone, email = (cells[f"{rank}_{what}"] for what in ("name", "phone", "email"))
        if rank == "duty" or name or phone or email:
            if not name:
                problems.append((f"{rank}_name", "", f"the {RANK_NAMES[rank]}'s name is required"))
            if not phone:
                problems.append((f"{rank}_phone", "", f"the {RANK_NAMES[rank]}'s phone is required"))
    return problems


def check_row(fields: Mapping[str, Any], units: Mapping[str, UnitRecord]) -> DepartmentRow:
    """One CSV row or form (column -> text; absent columns are empty) as a `DepartmentRow`, else
    `DepartmentRowError` naming every faulty column with its (stripped) text and the reason, in column order.

    >>> units = {"150302000000": UnitRecord("150302000000", 0, "海勃湾区", "Haibowan", "district", None, 0,
    ...                                     0.0, "official", "official", {})}
    >>> row = check_row({"code": "HBW-Emergency", "name": "海勃湾区应急管理局", "sector": "应急管理",
    ...                  "area": "150302", "hazards": "沙尘暴;heat", "duty_name": "值班员甲",
    ...                  "duty_phone": "154 0000 0001"}, units)
    >>> row.code, row.sector, row.area, row.hazards, row.min_level, row.people["duty"].phone
    ('hbw-emergency', 'emergency', '150302000000', ('heat', 'sandstorm'), 'blue', '+8615400000001')
    >>> try:
    ...     check_row({"code": "x", "name": "X", "sector": "police", "area": "150302", "duty_name": "甲",
    ...                "duty_phone": "13900000000", "deputy_name": "乙"}, units)
    ... except DepartmentRowError as e:
    ...     e.problems  # doctest: +NORMALIZE_WHITESPACE
    [('sector', 'police', "unknown sector 'police'; sectors: emergency, education, agriculture, transport,
      housing, water, power, health, media, other"),
     ('deputy_phone', '', "the deputy's phone is required")]
    """
    cells = {column: str(fields.get(column) or "").strip() for column in COLUMNS}
    problems: list[tuple[str, str, str]] = []
    row = None
    try:
        row = DepartmentCsvRow.model_validate(cells, context={"units": units})
    except ValidationError as e:
        problems = [_problem(error, cells) for error in e.errors(include_url=False)]
    faulty = {column for column, _, _ in problems}
    problems += [p for p in _rank_rules(cells) if p[0] not in faulty]
    if problems or row is None:
        raise DepartmentRowError(sorted(problems, key=lambda p: COLUMNS.index(p[0])))
    return row.department_row()


def _problem(error: ErrorDetails, cells: Mapping[str, str]) -> tuple[str, str, str]:
    column = str(error["loc"][0]) if error["loc"] else ""
    ctx = error.get("ctx") or {}
    reason = str(ctx["error"]) if error["type"] == "value_error" and "error" in ctx else error["msg"]
    return column, cells.get(column, ""), reason


def check_rows(
    rows: Iterable[tuple[int, Mapping[str, str]]], units: Mapping[str, UnitRecord]
) -> tuple[list[DepartmentRow], list[Rejection]]:
    """The accepted rows and every problem of the rejected ones; a later row repeating a code is rejected."""
    accepted: list[DepartmentRow] = []
    rejected: list[Rejection] = []
    seen: dict[str, int] = {}
    for line, fields in rows:
        try:
            if fields.get(""):
                raise DepartmentRowError([("", fields[""], "more fields than the header has columns")])
            row = check_row(fields, units)
        except DepartmentRowError as e:
            rejected.extend(Rejection(line, column, value, reason) for column, value, reason in e.problems)
            continue
        if row.code in seen:
            rejected.append(Rejection(line, "code", fields["code"], f"same code as line {seen[row.code]}"))
            continue
        seen[row.code] = line
        accepted.append(row)
    return accepted, rejected


def parse_csv(text: str, name: str = "CSV") -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows of departments CSV text, each row with its first line number; blank lines and
    comment lines (first field starting with ``#``) are skipped. `DepartmentError` when the text is empty,
    lacks a required column, names an unknown or repeated one, or is not CSV at all."""
    return csv_files.parse_rows(
        text,
        name,
        kind="departments",
        columns=COLUMNS,
        required=REQUIRED_COLUMNS,
        comments=True,
        error=DepartmentError,
    )


def read_departments_csv(source: Path | str | bytes) -> tuple[str, str]:
    """(name for messages, text) of a CSV given as a path, bytes or text; `DepartmentError` in one line when
    it cannot be read as UTF-8 text."""
    if isinstance(source, Path):
        return str(source), csv_files.read_csv_text(source, DepartmentError)
    if isinstance(source, bytes):
        return "CSV", csv_files.decode_csv(source, "CSV", DepartmentError)
    return "CSV", source


# ---------------------------------------------------------------------------------------------- writing


async def import_csv(
    conn: asyncpg.Connection, source: Path | str | bytes, region: str, *, origin: str | None = None
) -> ImportReport:
    """Register or update the departments of a CSV (a `Path`, its bytes or its text) for `region`.

    Every row is checked first; the accepted ones are written in one transaction (upsert by code, each duty
    chain made the row's), the rejected ones reported and skipped. `DepartmentError` (nothing written) when
    the file cannot be read or has not the departments header. `origin` is stored as the departments'
    ``source`` (default ``csv:<file name>``)."""
    name, text = read_departments_csv(source)
    if isinstance(source, Path):
        origin = origin or f"csv:{source.name}"
    _, rows = parse_csv(text, name)
    units = await region_units(conn, region)
    accepted, rejected = check_rows(rows, units)
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    still_retired = 0
    async with conn.transaction():
        for row in accepted:
            outcome, retired = await _write(conn, row, origin or "csv")
            counts[outcome] += 1
            still_retired += retired
    report = ImportReport(
        **counts,
        still_retired=still_retired,
        rejected_rows=len({r.line for r in rejected}),
        rejected=rejected,
    )
    log.info(
        "departments imported",
        extra={k: v for k, v in report.to_json().items() if k != "rejected"} | {"origin": origin or "csv"},
    )
    return report


async def _write(conn: asyncpg.Connection, row: DepartmentRow, source: str) -> tuple[str, bool]:
    """Upsert one department and make its duty chain the row's: ("inserted" | "updated" | "unchanged",
    whether the department is retired)."""
    written = await conn.fetchrow(
        """INSERT INTO svc.department AS d (code, name, name_en, sector, area, hazards, min_level, source)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (code) DO UPDATE SET
               name = EXCLUDED.name, name_en = EXCLUDED.name_en, sector = EXCLUDED.sector,
               area = EXCLUDED.area, hazards = EXCLUDED.hazards, min_level = EXCLUDED.min_level,
               source = EXCLUDED.source, updated_at = now()
           WHERE (d.name, d.name_en, d.sector, d.area, d.hazards, d.min_level)
                 IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.name_en, EXCLUDED.sector, EXCLUDED.area,
                                   EXCLUDED.hazards, EXCLUDED.min_level)
           RETURNING id, xmax = 0 AS inserted, retired_at IS NOT NULL AS retired""",
        row.code,
        row.name,
        row.name_en,
        row.sector,
        row.area,
        list(row.hazards),
        row.min_level,
        source,
    )
    changed = written is not None
    if written is None:  # the department itself is as the row says
        written = await conn.fetchrow(
            """SELECT id, false AS inserted, retired_at IS NOT NULL AS retired
               FROM svc.department WHERE code = $1""",
            row.code,
        )
    department_id = written["id"]
    vacated = await conn.fetch(
        "DELETE FROM svc.duty_person WHERE department_id = $1 AND rank <> ALL ($2::text[]) RETURNING id",
        department_id,
        list(row.people),
    )
    people = await conn.fetch(
        """INSERT INTO svc.duty_person AS p (department_id, rank, name, phone, email)
           SELECT $1, rank, name, phone, email
           FROM unnest($2::text[], $3::text[], $4::text[], $5::text[]) AS x(rank, name, phone, email)
           ON CONFLICT (department_id, rank) DO UPDATE SET
               name = EXCLUDED.name, phone = EXCLUDED.phone, email = EXCLUDED.email, updated_at = now()
           WHERE (p.name, p.phone, p.email) IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.phone, EXCLUDED.email)
           RETURNING id""",
        department_id,
        list(row.people),
        [p.name for p in row.people.values()],
        [p.phone for p in row.people.values()],
        [p.email for p in row.people.values()],
    )
    if (vacated or people) and not changed:
        changed = True
        await conn.execute(
            "UPDATE svc.department SET updated_at = now(), source = $2 WHERE id = $1", department_id, source
        )
    outcome = "inserted" if written["inserted"] else "updated" if changed else "unchanged"
    return outcome, written["retired"]


async def get_department(conn: asyncpg.Connection, code: str) -> DepartmentChain | None:
    """The department with this code (retired or not) with its duty chain, or None."""
    return next((d for d in await _chains(conn, code) if d.code == code), None)


async def _chains(conn: asyncpg.Connection, code: str) -> list[DepartmentChain]:
    rows = await conn.fetch(
        """SELECT d.id, d.code, d.name, d.name_en, d.sector, d.area, d.hazards, d.min_level, d.source,
                  d.retired_at,
                  coalesce(json_agg(json_build_object('id', p.id, 'rank', p.rank, 'name', p.name,
                                    'phone', p.phone, 'email', p.email))
                           FILTER (WHERE p.id IS NOT NULL), '[]') AS people
           FROM svc.department d LEFT JOIN svc.duty_person p ON p.department_id = d.id
           WHERE d.code = $1 GROUP BY d.id""",
        code,
    )
    return [_chain(row) for row in rows]


async def save_department(
    conn: asyncpg.Connection, row: DepartmentRow, *, new: bool, source: str = "console"
) -> tuple[DepartmentChain | None, DepartmentChain]:
    """Add (`new`) or change one department with its duty chain, in one transaction: (before, after).

    `DepartmentRowError` on ``code`` when adding a code that exists; `DepartmentError` when changing one that
    does not. A department's code never changes (imports match on it)."""
    async with conn.transaction():
        before = await get_department(conn, row.code)
        if new and before is not None:
            raise DepartmentRowError([("code", row.code, "a department with this code exists already")])
        if not new and before is None:
            raise DepartmentError(f"no department has code {row.code!r}")
        await _write(conn, row, source)
        after = await get_department(conn, row.code)
    assert after is not None
    return before, after


async def set_retired(
    conn: asyncpg.Connection, code: str, retired: bool
) -> tuple[DepartmentChain, DepartmentChain]:
    """Retire (no warning calls it any more; its row and history stay) or restore a department: (before,
    after); retiring a retired one keeps its first retirement time. `DepartmentError` for an unknown code."""
    async with conn.transaction():
        before = await get_department(conn, code)
        if before is None:
            raise DepartmentError(f"no department has code {code!r}")
        await conn.execute(
            """UPDATE svc.department
               SET retired_at = CASE WHEN $2 THEN coalesce(retired_at, now()) END,
                   updated_at = CASE WHEN (retired_at IS NOT NULL) = $2 THEN updated_at ELSE now() END
               WHERE code = $1""",
            code,
            retired,
        )
        after = await get_department(conn, code)
    assert after is not None
    return before, after


async def has_departments(conn: asyncpg.Connection) -> bool:
    """Whether the registry holds any department in service (the impact preview says when it holds none)."""
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM svc.department WHERE retired_at IS NULL)"))


def department_json(d: DepartmentChain) -> dict[str, Any]:
    """A department as plain JSON values (the CLI's list, the audit log's before and after)."""
    return {
        "code": d.code,
        "name": d.name,
        "name_en": d.name_en,
        "sector": d.sector,
        "area": d.area,
        "hazards": list(d.hazards),
        "min_level": d.min_level,
        "people": {
            rank: {"name": p.name, "phone": p.phone, "email": p.email}
            for rank in RANKS
            if (p := d.people.get(rank)) is not None
        },
        "source": d.source,
        "retired_at": None if d.retired_at is None else d.retired_at.isoformat(),
    }


def form_fields(d: DepartmentChain) -> dict[str, str]:
    """A department as the text of the CSV's columns (the console's edit form starts from them)."""
    fields = {
        "code": d.code,
        "name": d.name,
        "name_en": d.name_en,
        "sector": d.sector,
        "area": d.area,
        "hazards": ";".join(d.hazards),
        "min_level": d.min_level,
    }
    for rank in RANKS:
        p = d.people.get(rank)
        fields |= {
            f"{rank}_name": p.name if p else "",
            f"{rank}_phone": p.phone if p else "",
            f"{rank}_email": p.email if p else "",
        }
    return fields
