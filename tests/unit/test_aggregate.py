"""Aggregation of cell values to assessment units over a sparse cover."""

from __future__ import annotations

import doctest
import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import risk_zoning.aggregate
from risk_zoning.aggregate import aggregate_mean, aggregate_sum, grade_population


@st.composite
def covers(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """A grid of values (some NaN) and a cover (cell int64, unit int32, weight) over n_units units."""
    n_cells = draw(st.integers(1, 40))
    n_units = draw(st.integers(1, 8))
    n = draw(st.integers(0, 80))
    values = draw(
        hnp.arrays(np.float64, n_cells, elements=st.one_of(st.floats(-100.0, 100.0), st.just(np.nan)))
    )
    cell = draw(hnp.arrays(np.int64, n, elements=st.integers(0, n_cells - 1)))
    unit = draw(hnp.arrays(np.int32, n, elements=st.integers(0, n_units - 1)))
    weight = draw(hnp.arrays(np.float64, n, elements=st.one_of(st.just(0.0), st.floats(0.0, 1000.0))))
    return values, cell, unit, weight, n_units


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(risk_zoning.aggregate).failed == 0


def test_aggregate_mean_weights_by_population_and_skips_nan_cells() -> None:
    grid = np.array([[0.2, 0.4], [np.nan, 0.8]])
    cell = np.array([0, 1, 2, 3], dtype=np.int64)
    unit = np.array([0, 0, 0, 1], dtype=np.int32)
    out = aggregate_mean(grid, cell, unit, np.array([100.0, 300.0, 1e6, 5.0]), 3)
    np.testing.assert_allclose(out[:2], [0.35, 0.8])
    assert np.isnan(out[2])


def test_aggregate_mean_gives_nan_to_a_unit_whose_people_all_live_in_nan_cells() -> None:
    out = aggregate_mean(np.array([np.nan, 1.0]), np.array([0, 1]), np.array([0, 0]), np.array([5.0, 0.0]), 1)
    assert np.isnan(out[0])


def test_aggregate_sum_counts_people_in_grade_five_cells() -> None:
    grades = np.array([5, 3, 5, 0], dtype=np.int8)
    cell = np.array([0, 1, 2, 3, 2])
    unit = np.array([0, 0, 1, 1, 0])
    people = np.array([10.0, 20.0, 30.0, 40.0, 5.0])
    np.testing.assert_allclose(
        aggregate_sum((grades == 5).astype(float), cell, unit, people, 2), [15.0, 30.0]
    )


def test_grade_population_rows_sum_to_the_rounded_total_of_graded_people() -> None:
    grades = np.array([1, 2, 3, 4, 5, 0], dtype=np.int8)
    cell = np.arange(6)
    unit = np.zeros(6, dtype=np.int32)
    people = np.array([0.4, 0.4, 0.4, 0.4, 0.4, 100.0])
    out = grade_population(grades, cell, unit, people, 1)
    assert out.dtype == np.int64
    # 2.0 people: the two units of remainder go to the highest grades on a tie.
    assert out.tolist() == [[0, 0, 0, 1, 1]]


def test_grade_population_gives_zeros_to_units_without_cells() -> None:
    out = grade_population(np.array([2]), np.array([0]), np.array([1]), np.array([7.0]), 3)
    assert out.tolist() == [[0] * 5, [0, 7, 0, 0, 0], [0] * 5]


@pytest.mark.parametrize(
    ("cell", "unit", "weight", "n_units", "message"),
    [
        (np.array([0, 5]), np.array([0, 0]), np.array([1.0, 1.0]), 1, "cell index outside"),
        (np.array([0, -1]), np.array([0, 0]), np.array([1.0, 1.0]), 1, "cell index outside"),
        (np.array([0, 1]), np.array([0, 2]), np.array([1.0, 1.0]), 2, "unit index outside"),
        (np.array([0, 1]), np.array([0, 0]), np.array([1.0]), 1, "parallel"),
        (np.array([0, 1]), np.array([0, 0]), np.array([1.0, -1.0]), 1, "non-negative"),
        (np.array([0, 1]), np.array([0, 0]), np.array([1.0, np.nan]), 1, "finite"),
        (np.array([0.0, 1.0]), np.array([0, 0]), np.array([1.0, 1.0]), 1, "integers"),
        (np.array([0, 1]), np.array([0, 0]), np.array([1.0, 1.0]), -1, "n_units"),
    ],
)
def test_aggregation_rejects_a_bad_cover(
    cell: np.ndarray, unit: np.ndarray, weight: np.ndarray, n_units: int, message: str
) -> None:
    values = np.array([0.1, 0.2, 0.3])
    for aggregate in (aggregate_mean, aggregate_sum):
        with pytest.raises(ValueError, match=message):
            aggregate(values, cell, unit, weight, n_units)


@pytest.mark.parametrize(
    ("grades", "message"),
    [(np.array([0, 6, 1]), "0..5"), (np.array([0, -1, 1]), "0..5"), (np.ones(3), "integers")],
)
def test_grade_population_rejects_bad_grades(grades: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        grade_population(grades, np.array([0, 1]), np.array([0, 0]), np.array([1.0, 1.0]), 1)


@given(covers())
def test_aggregate_mean_equals_a_plain_python_loop(cover: tuple) -> None:
    values, cell, unit, weight, n_units = cover
    total = [0.0] * n_units
    mass = [0.0] * n_units
    for c, u, w in zip(cell.tolist(), unit.tolist(), weight.tolist(), strict=True):
        if not math.isnan(values[c]):
            total[u] += w * values[c]
            mass[u] += w
    expected = [t / m if m > 0 else math.nan for t, m in zip(total, mass, strict=True)]
    np.testing.assert_allclose(
        aggregate_mean(values, cell, unit, weight, n_units), expected, rtol=1e-9, atol=1e-9
    )


@given(covers())
def test_aggregate_sum_equals_a_plain_python_loop_and_preserves_the_total(cover: tuple) -> None:
    values, cell, unit, weight, n_units = cover
    expected = [0.0] * n_units
    for c, u, w in zip(cell.tolist(), unit.tolist(), weight.tolist(), strict=True):
        if not math.isnan(values[c]):
            expected[u] += w * values[c]
    out = aggregate_sum(values, cell, unit, weight, n_units)
    np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-6)
    assert out.sum() == pytest.approx(np.nansum(values[cell] * weight), rel=1e-9, abs=1e-6)


@given(covers(), st.data())
def test_grade_population_rounds_each_row_to_its_rounded_total_and_each_count_within_one(
    cover: tuple, data: st.DataObject
) -> None:
    values, cell, unit, people, n_units = cover
    grades = data.draw(hnp.arrays(np.int8, values.size, elements=st.integers(0, 5)))
    exact = np.zeros((n_units, 5))
    for c, u, p in zip(cell.tolist(), unit.tolist(), people.tolist(), strict=True):
        if grades[c] > 0:
            exact[u, grades[c] - 1] += p
    out = grade_population(grades, cell, unit, people, n_units)
    assert out.shape == (n_units, 5) and out.dtype == np.int64
    assert (out >= 0).all()
    np.testing.assert_array_equal(out.sum(axis=1), np.floor(exact.sum(axis=1) + 0.5))
    assert (np.abs(out - exact) < 1.0 + 1e-9).all()
