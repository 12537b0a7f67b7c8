"""Risk per cell and per unit for one hazard: normalise, weight, combine, grade, aggregate (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from risk_zoning.aggregate import aggregate_mean, grade_population
from risk_zoning.combine import COMBINATIONS, weighted_sum
from risk_zoning.grading import GRADINGS, assign_grades
from risk_zoning.normalise import minmax
from risk_zoning.region import HazardModel
from risk_zoning.weights import ahp_weights, configured_weights, entropy_weights

# Components enter a weighted product rescaled to [0.5, 1] so that one zero cannot erase the others
# (the 0.5 + 0.5 * min-max variant of the provincial standards); a weighted sum uses [0, 1].
PRODUCT_FLOOR = 0.5


@dataclass(frozen=True)
class HazardAssessment:
    """The result for one hazard on the grid; arrays have the grid's shape, NaN / grade 0 outside the region."""

    hazard: str
    risk_index: np.ndarray
    grades: np.ndarray
    components: dict[str, np.ndarray]
    indicator_weights: dict[str, dict[str, float]]
    component_weights: dict[str, float]
    breaks: np.ndarray
    method: dict[str, Any]
    consistency_ratio: float | None = None


@dataclass(frozen=True)
class UnitRisk:
    """Population-weighted risk per unit, its grade (same breaks as the cells) and residents per cell grade."""

    index: np.ndarray
    grade: np.ndarray
    population_by_grade: np.ndarray  # (n_units, 5)
    extra: dict[str, Any] = field(default_factory=dict)


def _indicator(values: np.ndarray, transform: str | None, valid: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if transform == "log1p":
        x = np.log1p(np.clip(x, 0.0, None))
    return minmax(x, invert=transform == "invert", valid=valid)


def _weights_over(columns: list[np.ndarray], valid: np.ndarray, method: str) -> np.ndarray:
    if len(columns) == 1 or method == "equal":
        return np.full(len(columns), 1.0 / len(columns))
    matrix = np.column_stack([c[valid] for c in columns])
    return entropy_weights(matrix)


def assess_hazard(
    hazard: str, model: HazardModel, layers: Mapping[str, np.ndarray], valid: np.ndarray
) -> HazardAssessment:
    """Risk index and grades of every valid cell for one hazard.

    Each component (hazard, sensitivity, exposure, vulnerability) is the weighted sum of its min-max normalised
    indicators (entropy weights by default); components are rescaled and combined (weighted product by
    default) with configured, AHP or entropy weights; cells are graded 1-5 by percentiles or natural breaks.
    """
    missing = [name for names in model.components().values() for name in names if name not in layers]
    if missing:
        raise ValueError(
            f"hazards.{hazard}: unknown layer {missing[0]!r}; available: {', '.join(sorted(layers))}"
        )
    valid = np.asarray(valid, dtype=bool)
    floor = PRODUCT_FLOOR if model.combination == "weighted_product" else 0.0
    components: dict[str, np.ndarray] = {}
    indicator_weights: dict[str, dict[str, float]] = {}
    for comp, names in model.components().items():
        columns = [_indicator(layers[n], model.transforms.get(n), valid) for n in names]
        w = _weights_over(columns, valid, model.indicator_weighting)
        indicator_weights[comp] = {n: float(x) for n, x in zip(names, w, strict=True)}
        components[comp] = minmax(weighted_sum(columns, w), floor=floor, valid=valid)
    names = list(components)
    cr: float | None = None
    if model.component_weighting == "configured":
        cw = configured_weights(model.component_weights, names)
    elif model.component_weighting == "ahp":
        cw, cr = ahp_weights(np.asarray(model.component_pairwise, dtype=float))
    else:
        cw = _weights_over(list(components.values()), valid, "entropy")
    risk = COMBINATIONS[model.combination]([components[c] for c in names], cw)
    risk = np.where(valid, risk, np.nan)
    grading_options: dict[str, Any] = {}
    if model.grading == "percentiles":
        grading_options["percentiles"] = tuple(model.percentiles)
    breaks = np.asarray(GRADINGS[model.grading](risk[valid], None, **grading_options), dtype=float)
    grades = np.where(valid, assign_grades(risk, breaks), 0).astype(np.int8)
    method = {
        "normalisation": "min-max over the region's cells"
        + ("; components rescaled to [0.5, 1]" if floor else ""),
        "transforms": dict(model.transforms),
        "indicator_weighting": model.indicator_weighting,
        "component_weighting": model.component_weighting,
        "combination": model.combination,
        "grading": model.grading,
        **grading_options,
    }
    return HazardAssessment(
        hazard=hazard,
        risk_index=risk.astype(np.float32),
        grades=grades,
        components={k: v.astype(np.float32) for k, v in components.items()},
        indicator_weights=indicator_weights,
        component_weights={n: float(x) for n, x in zip(names, cw, strict=True)},
        breaks=breaks,
        method=method,
        consistency_ratio=cr,
    )


def assess_units(
    assessment: HazardAssessment,
    cell: np.ndarray,
    unit: np.ndarray,
    people: np.ndarray,
    area_fraction: np.ndarray,
    n_units: int,
) -> UnitRisk:
    """Aggregate a hazard's cell risk to units: population-weighted mean (area-weighted where nobody lives)."""
    flat = assessment.risk_index.astype(np.float64).ravel()
    index = aggregate_mean(flat, cell, unit, people.astype(np.float64), n_units)
    empty = np.isnan(index)
    if empty.any():
        by_area = aggregate_mean(flat, cell, unit, area_fraction.astype(np.float64), n_units)
        index = np.where(empty, by_area, index)
    grade = assign_grades(index, assessment.breaks).astype(np.int8)
    by_grade = grade_population(assessment.grades.ravel(), cell, unit, people, n_units)
    return UnitRisk(index=index, grade=grade, population_by_grade=by_grade)
