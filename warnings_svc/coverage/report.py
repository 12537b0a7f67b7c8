"""The plan's yearly indicators: the public coverage of warning information per district and for the city,
and the public's satisfaction with the service (docs/indicators.md).

Coverage (`coverage_report`): the population-weighted mean coverage over the year's warnings,

    indicator(district) = sum_w reached_w,d / sum_w population_w,d

over every warning w of the year that warned the district d, where population_w,d is the resident population
of d inside w's warned areas and reached_w,d the people reached there: each warning weighs as much as the
people it warned in that district. The city's figure is the same sum over every district. Each warning's
final figure is its stored final snapshot (``svc.coverage_snapshot`` kind ``final``) when there is one, else
its coverage computed now from its evidence (`coverage.evidence.measure`); its figure 10 minutes after issue
is its stored 10-minute checkpoint, else computed from its evidence. A year's warnings are those first issued
in that calendar year, Beijing time; exercises are left out, and so are warnings never issued.

Satisfaction (`satisfaction_report`): the scores (1-5) given that year, by SMS reply or on the public page,
per district of the place the person gave (their registered area for an SMS reply), and for the city (every
score, a place given or not): the mean, and points on 100 as the plan counts them, (mean - 1) / 4 x 100.
Scores answering an exercise are left out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from risk_zoning import BEIJING
from warnings_svc.coverage.evidence import measure, region_of
from warnings_svc.coverage.model import Region
from warnings_svc.settings import CoverageSettings, DispatchSettings

FIRST_YEAR = 2000  # no warning of this service is older; a year before it is a typing mistake
PLAN_2020 = 0.90  # the climate plan's coverage indicator for 2020 (its 2025 one is the configured target)
PLAN_SATISFACTION_POINTS = 90.0  # the plan's public satisfaction indicator, on 100 points
EARLY_MINUTES = 10  # the operational figure the report gives beside the final one
CITY = "city"

METHOD = (
    "population-weighted mean over the year's warnings (first issued in the year, Beijing time; exercises "
    "left out): per district sum(reached) / sum(warned population) over the warnings that warned it, each "
    "warning weighted by the people it warned there; the city over every district. Final figure: the stored "
    "final snapshot, else computed now from the evidence; at 10 min: the stored 10-minute checkpoint, else "
    "computed from the evidence"
)
SATISFACTION_METHOD = (
    "scores 1-5 given in the year (Beijing time) by SMS reply or on the public page; points = (mean - 1) / 4 "
    "x 100; per district of the place given (an SMS reply: the person's registered area), the city over "
    "every score"
)


class ReportError(Exception):
    """A report that cannot be made as asked (a year out of range); `str()` is the one line to show."""


def check_year(year: int, *, now: datetime) -> None:
    """A year the service can have warnings for: from `FIRST_YEAR` to the current year (Beijing time)."""
    current = now.astimezone(BEIJING).year
    if not FIRST_YEAR <= year <= current:
        raise ReportError(f"--year {year}: give a year from {FIRST_YEAR} to {current}")


def year_bounds(year: int) -> tuple[datetime, datetime]:
    """The calendar year in Beijing time, as [start, end)."""
    return datetime(year, 1, 1, tzinfo=BEIJING), datetime(year + 1, 1, 1, tzinfo=BEIJING)


# ---------------------------------------------------------------------------------------------- coverage


@dataclass(frozen=True, slots=True)
class AreaFigures:
    """People warned and reached per district in one warning at one time."""

    population: dict[str, int]
    reached: dict[str, int]


@dataclass(frozen=True, slots=True)
class WarningCoverage:
    """One warning's figures per district, final and 10 minutes after issue, and where they came from."""

    warning_id: int
    issued_at: datetime
    target: float
    final: AreaFigures
    early: AreaFigures
    source: str  # "snapshot" (final and 10-minute figures stored) or "computed" (some computed from evidence)


@dataclass
class Row:
    """One line of the coverage report: a district, or the city."""

    code: str
    name: str
    warnings: int = 0
    population: int = 0  # warned person-warnings: the weights' sum
    reached: int = 0
    reached_early: int = 0
    met: int = 0  # warnings whose figure here reached the target

    @property
    def coverage(self) -> float | None:
        return self.reached / self.population if self.population else None

    @property
    def coverage_early(self) -> float | None:
        return self.reached_early / self.population if self.population else None

    @property
    def met_share(self) -> float | None:
        return self.met / self.warnings if self.warnings else None


@dataclass
class CoverageReport:
    """The year's coverage indicator per district and for the city (the last row)."""

    year: int
    target: float
    rows: list[Row]
    warnings: list[WarningCoverage] = field(default_factory=list)
    computed: int = 0  # warnings whose figures (some of them) were computed from evidence
    exercises_left_out: int = 0
    method: str = METHOD

    @property
    def city(self) -> Row:
        return self.rows[-1]


def districts_of(region: Region) -> dict[str, str]:
    """Every unit's district (a district is its own; the city and anything above have none)."""
    out = {}
    for code in region.areas:
        node: str | None = code
        while node is not None and node in region.areas:
            if region.areas[node].level == "district":
                out[code] = node
                break
            node = region.areas[node].parent
    return out


def per_district(by_area: Mapping[str, Mapping[str, Any]], region: Region) -> AreaFigures:
    """People warned and reached per district from a figure's ``by_area`` (``Coverage.as_json``'s): a district
    listed is taken as it is; otherwise its smallest units listed are added up (the warned areas are the
    city or districts listed with their towns, or towns alone)."""
    district = districts_of(region)
    listed = {c for c in by_area if region.areas.get(c) is not None and region.areas[c].level == "district"}
    population: dict[str, int] = {}
    reached: dict[str, int] = {}
    for code, figure in by_area.items():
        d = district.get(code)
        if d is None:
            continue
        if code == d or (d not in listed and region.leaves(code) == (code,)):
            population[d] = population.get(d, 0) + int(figure["population"])
            reached[d] = reached.get(d, 0) + int(figure["reached"])
    return AreaFigures(population, reached)


async def year_warnings(conn: asyncpg.Connection, year: int) -> tuple[list[int], int]:
    """The warnings first issued in `year` (Beijing time) that are not exercises, by id; and how many
    exercises were left out."""
    start, end = year_bounds(year)
    rows = await conn.fetch(
        """SELECT v.warning_id,
                  bool_or(v.exercise) OR bool_or(w.exercise) AS exercise
           FROM svc.warning_version v JOIN svc.warning w ON w.id = v.warning_id
           WHERE v.sent IS NOT NULL
           GROUP BY v.warning_id
           HAVING min(v.sent) FILTER (WHERE v.msg_type IN ('Alert', 'Update')) >= $1
              AND min(v.sent) FILTER (WHERE v.msg_type IN ('Alert', 'Update')) < $2
           ORDER BY v.warning_id""",
        start,
        end,
    )
    return [r["warning_id"] for r in rows if not r["exercise"]], sum(1 for r in rows if r["exercise"])


async def stored_figures(
    conn: asyncpg.Connection, warning_ids: Sequence[int]
) -> dict[int, dict[str, asyncpg.Record]]:
    """The stored final snapshot and 10-minute checkpoint of each warning that has them: {id: {"final": row,
    "early": row}}."""
    rows = await conn.fetch(
        """SELECT warning_id, kind, target, public, figures FROM svc.coverage_snapshot
           WHERE warning_id = ANY($1::bigint[])
             AND (kind = 'final' OR (kind = 'checkpoint' AND checkpoint_min = $2))""",
        list(warning_ids),
        EARLY_MINUTES,
    )
    out: dict[int, dict[str, asyncpg.Record]] = {}
    for r in rows:
        out.setdefault(r["warning_id"], {})["final" if r["kind"] == "final" else "early"] = r
    return out


async def coverage_report(
    conn: asyncpg.Connection,
    year: int,
    units: Mapping[str, object],
    coverage: CoverageSettings,
    dispatch: DispatchSettings,
    *,
    now: datetime,
    progress: Callable[[int], Any] | None = None,
) -> CoverageReport:
    """The year's coverage indicator (the module's method). `units` are the risk database's
    (`risk_zoning.store.region_units`); `progress(n)` is called with the number of warnings whose figures
    must be computed from evidence, and returns a callable advanced once per warning computed."""
    region = region_of(units)
    ids, exercises = await year_warnings(conn, year)
    stored = await stored_figures(conn, ids)
    to_compute = [w for w in ids if len(stored.get(w, {})) < 2]
    step = progress(len(to_compute)) if progress is not None else None
    found: list[WarningCoverage] = []
    issued = dict(
        await conn.fetch(
            """SELECT warning_id, min(sent) FROM svc.warning_version
               WHERE warning_id = ANY($1::bigint[]) AND sent IS NOT NULL AND msg_type IN ('Alert', 'Update')
               GROUP BY warning_id""",
            ids,
        )
    )
    for warning_id in ids:
        kept = stored.get(warning_id, {})
        final = early = None
        target = coverage.target
        if "final" in kept:
            final = per_district(_json(kept["final"]["figures"])["by_area"], region)
            target = kept["final"]["target"]
        if "early" in kept:
            early = per_district(_json(kept["early"]["figures"])["by_area"], region)
        if final is None or early is None:
            measured = await measure(conn, warning_id, region, coverage, dispatch, now=now)
            if measured is None:  # never issued after all: nothing to count
                continue
            if final is None:
                final = per_district(measured.now.as_json()["by_area"], region)
            if early is None:
                early = per_district(measured.at_minutes(EARLY_MINUTES).as_json()["by_area"], region)
            if step is not None:
                step()
        source = "snapshot" if len(kept) == 2 else "computed"
        found.append(WarningCoverage(warning_id, issued[warning_id], target, final, early, source))
    names = {c: f"{u.name} {u.name_en}" for c, u in units.items()}  # type: ignore[attr-defined]
    return summarise(year, coverage.target, found, names, exercises)


def _json(value: object) -> Any:
    """A jsonb column as asyncpg gives it: text, unless a codec made it a value already."""
    return json.loads(value) if isinstance(value, str) else value


def summarise(
    year: int,
    target: float,
    warnings: Iterable[WarningCoverage],
    names: Mapping[str, str],
    exercises_left_out: int = 0,
) -> CoverageReport:
    """The report's rows from each warning's figures: districts by code, then the city."""
    rows: dict[str, Row] = {}
    city = Row(CITY, "city")
    kept = list(warnings)
    for w in kept:
        population = sum(w.final.population.values())
        if population == 0:
            continue
        for d, people in w.final.population.items():
            if people <= 0:
                continue
            row = rows.setdefault(d, Row(d, names.get(d, d)))
            row.warnings += 1
            row.population += people
            row.reached += w.final.reached.get(d, 0)
            row.reached_early += w.early.reached.get(d, 0)
            row.met += _reaches(w.final.reached.get(d, 0), people, w.target)
        reached = sum(w.final.reached.values())
        city.warnings += 1
        city.population += population
        city.reached += reached
        city.reached_early += sum(w.early.reached.values())
        city.met += _reaches(reached, population, w.target)
    return CoverageReport(
        year,
        target,
        [rows[d] for d in sorted(rows)] + [city],
        kept,
        computed=sum(1 for w in kept if w.source == "computed"),
        exercises_left_out=exercises_left_out,
    )


def _reaches(reached: int, population: int, target: float) -> bool:
    """Whether `reached` of `population` is the target or more (rounded: 0.95 is not exact in binary)."""
    return round(reached / population, 9) >= round(target, 9)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def coverage_table(report: CoverageReport) -> list[list[str]]:
    """The report as rows of text, a header first."""
    out = [["district", "warnings", "coverage (final)", "at 10 min", "met target"]]
    for r in report.rows:
        out.append(
            [
                r.name,
                str(r.warnings),
                _percent(r.coverage),
                _percent(r.coverage_early),
                _percent(r.met_share),
            ]
        )
    return out


def coverage_csv(report: CoverageReport) -> str:
    """The report as CSV: one line per district and the city, with the weights' sums."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["year", "code", "name", "warnings", "warned_population", "reached_final", "coverage_final",
         "reached_10_min", "coverage_10_min", "met_target", "met_share", "target"]
    )  # fmt: skip
    for r in report.rows:
        writer.writerow(
            [report.year, r.code, r.name, r.warnings, r.population, r.reached, _ratio(r.coverage),
             r.reached_early, _ratio(r.coverage_early), r.met, _ratio(r.met_share), report.target]
        )  # fmt: skip
    return buffer.getvalue()


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def coverage_plot(report: CoverageReport) -> bytes:
    """A PNG: the final and 10-minute figures per district and for the city as bars, with the target's line
    (the plan's 2025 indicator) and the plan's 2020 line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = [r.name.split(" ", 1)[-1] if r.code != CITY else "City" for r in report.rows]
    final = [100 * (r.coverage or 0.0) for r in report.rows]
    early = [100 * (r.coverage_early or 0.0) for r in report.rows]
    fig = Figure(figsize=(7.0, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    xs = list(range(len(labels)))
    bars = ax.bar([x - 0.2 for x in xs], final, width=0.4, label="final", color="#2b6cb0")
    ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=-12, color="white")
    bars = ax.bar([x + 0.2 for x in xs], early, width=0.4, label="at 10 min", color="#90cdf4")
    ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.axhline(100 * report.target, color="#c53030", linestyle="-", linewidth=1.2, zorder=3)
    ax.axhline(100 * PLAN_2020, color="#dd6b20", linestyle="--", linewidth=1.0, zorder=3)
    ax.text(len(xs) - 0.5, 100 * report.target, f" {100 * report.target:.0f} % (2025)", va="bottom",
            ha="right", fontsize=8, color="#c53030")  # fmt: skip
    ax.text(len(xs) - 0.5, 100 * PLAN_2020, f" {100 * PLAN_2020:.0f} % (2020)", va="top", ha="right",
            fontsize=8, color="#dd6b20")  # fmt: skip
    ax.set_xticks(xs, labels)
    ax.set_ylim(0, 105)
    ax.set_ylabel("public coverage (%)")
    ax.set_title(f"Public coverage of warnings, {report.year} (population-weighted mean)", fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------- satisfaction


@dataclass
class SatisfactionRow:
    """One line of the satisfaction report: a district, the scores without a place, or the city."""

    code: str
    name: str
    responses: int
    mean: float | None

    @property
    def points(self) -> float | None:
        return None if self.mean is None else (self.mean - 1) / 4 * 100

    @property
    def meets_plan(self) -> bool | None:
        points = self.points
        # rounded: 4.6 is (4.6 - 1) / 4 x 100 = 89.99999999999999 in binary floating point
        return None if points is None else round(points, 9) >= PLAN_SATISFACTION_POINTS


@dataclass
class SatisfactionReport:
    year: int
    rows: list[SatisfactionRow]  # districts by code, then "unknown" (no place given) if any, then the city
    method: str = SATISFACTION_METHOD

    @property
    def city(self) -> SatisfactionRow:
        return self.rows[-1]


async def satisfaction_report(
    conn: asyncpg.Connection, year: int, units: Mapping[str, object]
) -> SatisfactionReport:
    """The year's satisfaction per district and for the city (the module's method)."""
    start, end = year_bounds(year)
    rows = await conn.fetch(
        """SELECT s.area, s.score FROM svc.satisfaction s
           WHERE s.given_at >= $1 AND s.given_at < $2
             AND NOT EXISTS (SELECT 1 FROM svc.warning_version v JOIN svc.warning w ON w.id = v.warning_id
                             WHERE v.warning_id = s.warning_id AND (v.exercise OR w.exercise))""",
        start,
        end,
    )
    region = region_of(units)
    district = districts_of(region)
    names = {c: f"{u.name} {u.name_en}" for c, u in units.items()}  # type: ignore[attr-defined]
    scores: dict[str, list[int]] = {}
    for r in rows:
        d = district.get(r["area"] or "", "unknown")
        scores.setdefault(d, []).append(r["score"])
    out = [
        SatisfactionRow(d, names.get(d, d), len(s), sum(s) / len(s))
        for d, s in sorted(scores.items())
        if d != "unknown"
    ]
    if "unknown" in scores:
        s = scores["unknown"]
        out.append(SatisfactionRow("unknown", "place not given", len(s), sum(s) / len(s)))
    every = [x for s in scores.values() for x in s]
    out.append(SatisfactionRow(CITY, "city", len(every), sum(every) / len(every) if every else None))
    return SatisfactionReport(year, out)


def satisfaction_table(report: SatisfactionReport) -> list[list[str]]:
    out = [["district", "responses", "mean (1-5)", "points", f"plan ({PLAN_SATISFACTION_POINTS:.0f})"]]
    for r in report.rows:
        met = "-" if r.meets_plan is None else ("met" if r.meets_plan else "below")
        out.append(
            [
                r.name,
                str(r.responses),
                "-" if r.mean is None else f"{r.mean:.2f}",
                "-" if r.points is None else f"{r.points:.1f}",
                met,
            ]
        )
    return out


def satisfaction_csv(report: SatisfactionReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["year", "code", "name", "responses", "mean", "points", "plan_points", "meets_plan"])
    for r in report.rows:
        writer.writerow(
            [report.year, r.code, r.name, r.responses, "" if r.mean is None else f"{r.mean:.4f}",
             "" if r.points is None else f"{r.points:.2f}", PLAN_SATISFACTION_POINTS,
             "" if r.meets_plan is None else str(r.meets_plan).lower()]
        )  # fmt: skip
    return buffer.getvalue()
