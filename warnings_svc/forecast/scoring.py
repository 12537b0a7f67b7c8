"""From hazard levels and probabilities to warning proposals: exposure per area, inclusion, polygons, diff.

Pure computation over a `HazardResult` (warnings_svc.forecast.hazards) and a loaded `RiskDatabase`; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely

from risk_zoning import BEIJING
from risk_zoning.aggregate import aggregate_sum
from risk_zoning.store import RiskDatabase
from warnings_svc.forecast.polygons import level_polygon
from warnings_svc.vocabulary import LEVELS

# What a proposal asks of the live warnings, with its names (Chinese, English) as the pages show them.
ACTION_NAMES: dict[str, tuple[str, str]] = {
    "new": ("新发布", "new"),
    "extend": ("延长", "extend"),
    "upgrade": ("升级", "upgrade"),
    "downgrade": ("降级", "downgrade"),
    "expand": ("扩大范围", "expand area"),
    "shrink": ("缩小范围", "shrink area"),
    "unchanged": ("维持", "unchanged"),
    "cancel": ("解除", "cancel"),
}
ACTIONS: tuple[str, ...] = tuple(ACTION_NAMES)

# Vulnerable groups reported per area: (label, layer, how). "people" weighs the layer by residents (a share),
# "count" sums the layer (persons per cell), "km2" sums the layer times cell area (a fraction of the cell).
VULNERABLE_GROUPS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "heat": (("elderly_65plus", "elderly_share", "people"), ("outdoor_workers", "outdoor_workers", "count")),
    "rainstorm": (
        ("mining_area_km2", "mining_fraction", "km2"),
        ("people_in_gully_zones", "gully_density", "people"),
    ),
    "frost": (("cropland_km2", "cropland_fraction", "km2"),),
    "sandstorm": (
        ("outdoor_workers", "outdoor_workers", "count"),
        ("road_exposure_km2", "road_exposure", "km2"),
    ),
}


@dataclass(frozen=True)
class InclusionRules:
    """When a cell counts as exposed and an area is included in a proposal (configurable)."""

    area_level: str = "district"  # the admin level whose codes a warning names: city | district | town
    min_probability: float = 0.3  # a cell is exposed to a level when P(at least that level) reaches this
    min_fraction_exposed: float = 0.05  # an area is included when this share of its residents is exposed ...
    min_exposed_population: int = 500  # ... or at least this many residents are
    max_vertices: int = 100  # per CAP polygon
    min_polygon_area_km2: float = 1.0
    expiry_margin_h: float = 0.0  # added to the end of the exceedance

    def __post_init__(self) -> None:
        if self.area_level not in ("city", "district", "town"):
            raise ValueError(f"area_level must be city, district or town, got {self.area_level!r}")
        if not 0.0 < self.min_probability <= 1.0:
            raise ValueError(f"min_probability must be in (0, 1], got {self.min_probability}")


@dataclass(frozen=True)
class AreaImpact:
    code: str
    name: str
    population: int
    exposed_population: int
    fraction_exposed: float
    max_probability: float
    risk_grade: int | None
    vulnerable: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "population": self.population,
            "exposed_population": self.exposed_population,
            "fraction_exposed": round(self.fraction_exposed, 4),
            "max_probability": round(self.max_probability, 3),
            "risk_grade": self.risk_grade,
            "vulnerable": {k: round(v, 1) for k, v in self.vulnerable.items()},
        }


@dataclass(frozen=True)
class Proposal:
    """A proposed warning (or change to a live one) for one hazard and level."""

    hazard: str
    level: str
    areas: tuple[str, ...]
    area_names: tuple[str, ...]
    onset: datetime
    expires: datetime
    probability: float
    exposed_population: int
    polygons: tuple[str, ...]  # CAP 1.2 "lat,lon ..." strings, largest first
    geometry: dict[str, Any] | None  # GeoJSON MultiPolygon of the same polygons
    impacts: tuple[AreaImpact, ...]
    evidence: dict[str, Any]
    action: str = "new"
    replaces: int | None = None  # id of the live warning this changes or cancels
    changes: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "hazard": self.hazard,
            "level": self.level,
            "action": self.action,
            "replaces": self.replaces,
            "changes": self.changes,
            "areas": list(self.areas),
            "area_names": list(self.area_names),
            "onset": self.onset.astimezone(BEIJING).isoformat(),
            "expires": self.expires.astimezone(BEIJING).isoformat(),
            "probability": round(self.probability, 3),
            "exposed_population": self.exposed_population,
            "polygons": list(self.polygons),
            "geometry": self.geometry,
            "impacts": [i.to_json() for i in self.impacts],
            "evidence": self.evidence,
        }


@dataclass(frozen=True)
class LiveWarning:
    """What the diff needs to know of a warning that is in force."""

    id: int
    hazard: str
    level: str
    areas: frozenset[str]
    onset: datetime
    expires: datetime


def _to_datetime(t: np.datetime64) -> datetime:
    return datetime.fromtimestamp(t.astype("datetime64[us]").astype(np.int64) / 1e6, tz=UTC)


def _unit_max(values: np.ndarray, cell: np.ndarray, unit: np.ndarray, n_units: int) -> np.ndarray:
    out = np.zeros(n_units)
    np.maximum.at(out, unit, np.nan_to_num(values[cell], nan=0.0))
    return out


def _cells_of(cell: np.ndarray, entries: np.ndarray, size: int) -> np.ndarray:
    """Flat boolean grid of the cells of the selected cover entries."""
    out = np.zeros(size, dtype=bool)
    out[cell[entries]] = True
    return out


def _vulnerable(
    db: RiskDatabase,
    hazard: str,
    exposed_part: np.ndarray,
    cell: np.ndarray,
    unit: np.ndarray,
    people: np.ndarray,
    n_units: int,
) -> dict[str, np.ndarray]:
    """Per area: each vulnerable group's size among the exposed parts of cells."""
    area_km2 = db.grid.cell_area_km2().ravel()
    out = {}
    for label, layer, how in VULNERABLE_GROUPS.get(hazard, ()):
        if layer not in db.arrays:
            continue
        values = db.layer(layer).astype(np.float64).ravel()
        if how == "people":
            weight = people * exposed_part
        elif how == "count":
            # a count per cell is shared among units like the cell's residents are (area share where nobody lives)
            cell_people = np.bincount(cell, weights=people, minlength=values.size)
            share = np.divide(
                people, cell_people[cell], out=np.zeros_like(people), where=cell_people[cell] > 0
            )
            weight = share * exposed_part
        else:
            weight = area_km2[cell] * exposed_part
        out[label] = aggregate_sum(values, cell, unit, weight, n_units)
    return out


def propose(
    result: Any, db: RiskDatabase, rules: InclusionRules, run: Mapping[str, Any] | None = None
) -> list[Proposal]:
    """Proposals for one hazard: each area gets the strongest level it qualifies for; one proposal per level."""
    if result.suppressed:
        return []
    hazard = result.hazard
    units = db.units_at(rules.area_level)
    cover = db.cover(rules.area_level)
    cell, unit = cover.cell, cover.unit.astype(np.int64)
    people = cover.people.astype(np.float64)
    n = len(units)
    unit_pop = np.bincount(unit, weights=people, minlength=n)
    levels = list(result.levels)
    prob = np.asarray(result.probability.values, dtype=np.float64).reshape(len(levels), -1)
    chosen = np.full(n, -1)
    stats: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for li in range(len(levels)):
        p = prob[li]
        exposed_cells = (p >= rules.min_probability).astype(np.float64)
        exposed = aggregate_sum(exposed_cells, cell, unit, people, n)
        fraction = np.divide(exposed, unit_pop, out=np.zeros(n), where=unit_pop > 0)
        pmax = _unit_max(p, cell, unit, n)
        qualifies = (pmax >= rules.min_probability) & (
            (fraction >= rules.min_fraction_exposed) | (exposed >= rules.min_exposed_population)
        )
        chosen[qualifies] = li  # levels go weakest to strongest, so the strongest qualifying one wins
        stats[li] = (exposed, fraction, pmax)
    proposals = []
    for li in sorted(set(chosen[chosen >= 0].tolist()), reverse=True):
        members = np.flatnonzero(chosen == li)
        in_areas = np.isin(unit, members)
        p = prob[li]
        mask_entries = in_areas & (p[cell] >= rules.min_probability)
        mask = np.zeros(db.grid.size, dtype=bool)
        mask[cell[mask_entries]] = True
        exposed, fraction, pmax = stats[li]
        vulnerable = _vulnerable(
            db, hazard, (p[cell] >= rules.min_probability).astype(np.float64), cell, unit, people, n
        )
        risk = db.unit_risk.get(hazard, {})
        impacts = tuple(
            AreaImpact(
                code=units[u].code,
                name=units[u].name,
                population=round(unit_pop[u]),
                exposed_population=round(exposed[u]),
                fraction_exposed=float(fraction[u]),
                max_probability=float(pmax[u]),
                risk_grade=risk.get(units[u].code, (None, None))[1],
                vulnerable={k: float(v[u]) for k, v in vulnerable.items()},
            )
            for u in members
        )
        clip = shapely.union_all([units[u].shape() for u in members])
        poly = level_polygon(
            mask.reshape(db.grid.shape),
            db.grid,
            clip=clip,
            max_vertices=rules.max_vertices,
            min_area_km2=rules.min_polygon_area_km2,
        )
        onset_grid = np.asarray(result.onset.values).reshape(len(levels), -1)[li]
        # the warning covers the whole event in its areas: until the hazard ends at any level (a later run
        # downgrades it), not only until this level's peak passes
        end_grid = np.asarray(result.end.values).reshape(len(levels), -1)[0]
        onsets = onset_grid[mask]
        ends = end_grid[_cells_of(cell, in_areas, db.grid.size)]
        onsets, ends = onsets[~np.isnat(onsets)], ends[~np.isnat(ends)]
        if onsets.size == 0:
            continue
        onset = _to_datetime(onsets.min())
        end = _to_datetime(ends.max()) if ends.size else onset
        expires = max(end + timedelta(hours=rules.expiry_margin_h), onset + timedelta(hours=1))
        geometry = shapely.geometry.mapping(shapely.MultiPolygon(poly.polygons)) if poly.polygons else None
        proposals.append(
            Proposal(
                hazard=hazard,
                level=levels[li],
                areas=tuple(units[u].code for u in members),
                area_names=tuple(units[u].name for u in members),
                onset=onset,
                expires=expires,
                probability=float(p[mask].max()),
                exposed_population=round(sum(i.exposed_population for i in impacts)),
                polygons=tuple(poly.cap_strings),
                geometry=geometry,
                impacts=impacts,
                evidence={
                    "run": dict(run or {}),
                    "hazard": result.evidence,
                    "branch": result.branch,
                    "inclusion": {
                        "area_level": rules.area_level,
                        "min_probability": rules.min_probability,
                        "min_fraction_exposed": rules.min_fraction_exposed,
                        "min_exposed_population": rules.min_exposed_population,
                    },
                    "risk_database_version": db.version_id,
                    "polygon": {
                        "vertices": list(poly.vertex_counts),
                        "simplified": poly.simplified,
                        "area_km2": round(poly.total_area_km2, 1),
                    },
                },
            )
        )
    return proposals


def diff_against_live(proposals: Sequence[Proposal], live: Iterable[LiveWarning]) -> list[Proposal]:
    """Turn a run's proposals into changes of the warnings in force: new, extend, upgrade, downgrade,
    expand, shrink, unchanged, or cancel (a live warning the run no longer supports).

    Each proposal is matched to the live warning of the same hazard whose areas overlap it most; a live
    warning is matched at most once.
    """
    live = list(live)
    used: set[int] = set()
    out: list[Proposal] = []
    for p in sorted(proposals, key=lambda x: -LEVELS.index(x.level)):
        candidates = [w for w in live if w.hazard == p.hazard and w.id not in used and w.areas & set(p.areas)]
        if not candidates:
            out.append(replace(p, action="new"))
            continue
        w = max(candidates, key=lambda c: (len(c.areas & set(p.areas)), -c.id))
        used.add(w.id)
        new_rank, old_rank = LEVELS.index(p.level), LEVELS.index(w.level)
        added, removed = sorted(set(p.areas) - w.areas), sorted(w.areas - set(p.areas))
        if new_rank > old_rank:
            action = "upgrade"
        elif new_rank < old_rank:
            action = "downgrade"
        elif added:
            action = "expand"
        elif removed:
            action = "shrink"
        elif p.expires > w.expires:
            action = "extend"
        else:
            action = "unchanged"
        changes = {
            "from_level": w.level,
            "to_level": p.level,
            "areas_added": added,
            "areas_removed": removed,
            "expires_from": w.expires.astimezone(BEIJING).isoformat(),
            "expires_to": p.expires.astimezone(BEIJING).isoformat(),
        }
        out.append(replace(p, action=action, replaces=w.id, changes=changes))
    for w in live:
        if w.id in used:
            continue
        out.append(
            Proposal(
                hazard=w.hazard,
                level=w.level,
                areas=tuple(sorted(w.areas)),
                area_names=(),
                onset=w.onset,
                expires=w.expires,
                probability=0.0,
                exposed_population=0,
                polygons=(),
                geometry=None,
                impacts=(),
                evidence={"reason": "the latest run no longer reaches this warning's level in its areas"},
                action="cancel",
                replaces=w.id,
            )
        )
    return out
