"""Combining components into a risk index and grading it into five risk grades."""

from __future__ import annotations

import doctest

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import risk_zoning.combine
import risk_zoning.grading
from risk_zoning.combine import COMBINATIONS, weighted_product, weighted_sum
from risk_zoning.grading import GRADINGS, assign_grades, natural_breaks, percentile_breaks

unit_values = hnp.arrays(np.float64, st.integers(1, 50), elements=st.floats(0.0, 1.0))
risk_values = hnp.arrays(
    np.float64, st.integers(1, 200), elements=st.one_of(st.floats(-1e6, 1e6), st.just(np.nan))
)


@pytest.mark.parametrize("module", [risk_zoning.combine, risk_zoning.grading])
def test_the_docstring_examples_hold(module: object) -> None:
    assert doctest.testmod(module).failed == 0


# --- combine ---------------------------------------------------------------------------------------------


def test_weighted_product_follows_the_provincial_formula() -> None:
    h, e, v = np.array([0.9, 0.5]), np.array([0.6, 1.0]), np.array([0.5, 0.5])
    w = np.array([0.5, 0.3, 0.2])
    expected = h**0.5 * e**0.3 * v**0.2
    np.testing.assert_allclose(weighted_product([h, e, v], w), expected)


def test_weighted_product_propagates_nan_even_with_zero_weight() -> None:
    out = weighted_product([np.array([0.5, 0.5]), np.array([np.nan, 0.2])], np.array([1.0, 0.0]))
    assert np.isnan(out[0])
    assert out[1] == 0.5


def test_weighted_sum_follows_the_lightning_zoning_formula() -> None:
    out = weighted_sum([np.array([[1.0, 0.0]]), np.array([[0.5, 1.0]])], np.array([0.6, 0.4]))
    np.testing.assert_allclose(out, [[0.8, 0.4]])


def test_weighted_sum_propagates_nan() -> None:
    assert np.isnan(weighted_sum([np.array([np.nan]), np.array([1.0])], np.array([0.0, 1.0]))).all()


def test_combinations_name_both_methods() -> None:
    assert COMBINATIONS["weighted_product"] is weighted_product
    assert COMBINATIONS["weighted_sum"] is weighted_sum
    assert len(COMBINATIONS) == 2


@pytest.mark.parametrize("combine", [weighted_product, weighted_sum])
@pytest.mark.parametrize(
    ("components", "weights", "message"),
    [
        ([], np.array([]), "no components"),
        ([np.ones(2), np.ones(2)], np.array([1.0]), "2 components but weights"),
        ([np.ones(2), np.ones(3)], np.array([0.5, 0.5]), "component 1 has shape"),
        ([np.ones(2), np.ones(2)], np.array([1.5, -0.5]), "non-negative"),
        ([np.ones(2), np.ones(2)], np.array([np.nan, 1.0]), "finite"),
    ],
)
def test_combinations_reject_bad_arguments(
    combine: object, components: list[np.ndarray], weights: np.ndarray, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        combine(components, weights)  # type: ignore[operator]


def test_weighted_product_rejects_negative_components() -> None:
    with pytest.raises(ValueError, match="non-negative components"):
        weighted_product([np.array([-0.1])], np.array([1.0]))


@given(st.data(), st.integers(1, 4))
def test_combinations_with_normalised_weights_lie_between_the_smallest_and_largest_component(
    data: st.DataObject, k: int
) -> None:
    n = data.draw(st.integers(1, 30))
    comps = [data.draw(hnp.arrays(np.float64, n, elements=st.floats(0.0, 1.0))) for _ in range(k)]
    raw = np.array(data.draw(st.lists(st.floats(0.01, 1.0), min_size=k, max_size=k)))
    w = raw / raw.sum()
    lo, hi = np.min(comps, axis=0), np.max(comps, axis=0)
    for combine in (weighted_product, weighted_sum):
        r = combine(comps, w)
        assert (r >= lo - 1e-12).all() and (r <= hi + 1e-12).all()


# --- percentile breaks -----------------------------------------------------------------------------------


def test_percentile_breaks_give_shares_of_60_20_10_5_5_percent_on_distinct_values() -> None:
    values = np.random.default_rng(1).permutation(np.linspace(0.0, 1.0, 10_000))
    grades = assign_grades(values, percentile_breaks(values))
    shares = np.bincount(grades, minlength=6)[1:] / values.size
    np.testing.assert_allclose(shares, [0.60, 0.20, 0.10, 0.05, 0.05], atol=1e-3)


def test_percentile_breaks_agree_with_numpy_inverted_cdf() -> None:
    values = np.random.default_rng(2).gamma(2.0, size=777)
    np.testing.assert_array_equal(
        percentile_breaks(values), np.percentile(values, [60, 80, 90, 95], method="inverted_cdf")
    )


def test_weighted_percentile_breaks_equal_breaks_of_repeated_values() -> None:
    rng = np.random.default_rng(3)
    values = rng.random(300)
    people = rng.integers(0, 20, size=300)
    np.testing.assert_array_equal(
        percentile_breaks(values, weights=people.astype(float)), percentile_breaks(np.repeat(values, people))
    )


def test_population_weighted_breaks_put_about_the_right_share_of_people_in_each_grade() -> None:
    rng = np.random.default_rng(4)
    values = rng.random(5000)
    people = rng.lognormal(3.0, 1.0, size=5000)
    grades = assign_grades(values, percentile_breaks(values, weights=people))
    shares = np.bincount(grades, weights=people, minlength=6)[1:] / people.sum()
    np.testing.assert_allclose(shares, [0.60, 0.20, 0.10, 0.05, 0.05], atol=0.01)


def test_percentile_breaks_ignore_nan_and_take_other_percentiles() -> None:
    values = np.array([np.nan, *range(1, 11), np.nan], dtype=float)
    assert percentile_breaks(values, (20, 40, 60, 80)).tolist() == [2.0, 4.0, 6.0, 8.0]


def test_percentile_breaks_repeat_on_tied_values_and_grades_stay_monotone() -> None:
    values = np.array([0.0] * 85 + list(np.linspace(0.1, 1.0, 15)))
    breaks = percentile_breaks(values)
    assert breaks[0] == breaks[1] == 0.0
    grades = assign_grades(np.sort(values), breaks)
    assert (np.diff(grades) >= 0).all()
    assert (grades[:85] == 1).all()


@pytest.mark.parametrize(
    ("percentiles", "message"),
    [
        ((60, 80, 90), "exactly 4"),
        ((60, 80, 90, 95, 99), "exactly 4"),
        ((60, 90, 80, 95), "strictly increasing"),
        ((60, 80, 80, 95), "strictly increasing"),
        ((0, 80, 90, 95), r"\(0, 100\)"),
        ((60, 80, 90, 100), r"\(0, 100\)"),
    ],
)
def test_percentile_breaks_reject_bad_percentiles(percentiles: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        percentile_breaks(np.arange(10.0), percentiles)


@pytest.mark.parametrize(
    ("values", "weights", "message"),
    [
        (np.array([np.nan, np.nan]), None, "no finite value"),
        (np.arange(3.0), np.ones(2), "weights have 2 values"),
        (np.arange(3.0), np.array([1.0, -1.0, 1.0]), "non-negative"),
        (np.arange(3.0), np.zeros(3), "positive weight"),
    ],
)
def test_percentile_breaks_reject_bad_values_or_weights(
    values: np.ndarray, weights: np.ndarray | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        percentile_breaks(values, weights=weights)


@given(risk_values)
def test_percentile_breaks_are_non_decreasing_values_of_the_data(values: np.ndarray) -> None:
    assume(np.isfinite(values).any())
    breaks = percentile_breaks(values)
    assert breaks.shape == (4,)
    assert (np.diff(breaks) >= 0).all()
    assert np.isin(breaks, values).all()


# --- natural breaks --------------------------------------------------------------------------------------


def test_natural_breaks_separate_obvious_clusters() -> None:
    rng = np.random.default_rng(5)
    centres = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    values = (centres[:, None] + rng.random((5, 40))).ravel()
    breaks = natural_breaks(values)
    grades = assign_grades(values, breaks)
    np.testing.assert_array_equal(grades, np.repeat(np.arange(1, 6), 40))


def test_natural_breaks_on_a_large_input_use_a_deterministic_sample_that_keeps_the_ends() -> None:
    rng = np.random.default_rng(6)
    centres = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    values = (centres[:, None] + rng.random((5, 4000))).ravel()
    values[7] = -5.0  # a lone minimum a sample would likely miss
    breaks = natural_breaks(values, max_sample=500)
    np.testing.assert_array_equal(breaks, natural_breaks(values, max_sample=500))
    assert breaks[0] >= -5.0
    grades = assign_grades(values, breaks)
    assert grades[7] == 1
    assert (np.diff(grades[np.argsort(values)]) >= 0).all()


def test_natural_breaks_with_fewer_distinct_values_than_classes_give_the_lowest_grades_in_order() -> None:
    values = np.array([3.0, 1.0, 3.0, 2.0, 1.0])
    breaks = natural_breaks(values)
    assert breaks.tolist() == [1.0, 2.0, 3.0, 3.0]
    assert assign_grades(values, breaks).tolist() == [3, 1, 3, 2, 1]


def test_natural_breaks_of_a_constant_field_make_every_cell_grade_one() -> None:
    values = np.full(10, 0.7)
    assert (assign_grades(values, natural_breaks(values)) == 1).all()


def test_natural_breaks_with_exactly_as_many_distinct_values_as_classes_give_each_its_own_grade() -> None:
    values = np.repeat([1.0, 2.0, 4.0, 8.0, 16.0], 3)
    assert assign_grades(values, natural_breaks(values)).tolist() == np.repeat([1, 2, 3, 4, 5], 3).tolist()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_classes": 1}, "classes >= 2"),
        ({"n_classes": 2.5}, "classes >= 2"),
        ({"max_sample": 3}, "max_sample"),
    ],
)
def test_natural_breaks_reject_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        natural_breaks(np.arange(10.0), **kwargs)


def test_natural_breaks_reject_an_all_nan_input() -> None:
    with pytest.raises(ValueError, match="no finite value"):
        natural_breaks(np.array([np.nan]))


@settings(max_examples=50)
@given(risk_values)
def test_natural_breaks_give_non_decreasing_thresholds_and_monotone_grades(values: np.ndarray) -> None:
    assume(np.isfinite(values).any())
    breaks = natural_breaks(values)
    assert breaks.shape == (4,)
    assert (np.diff(breaks) >= 0).all()
    finite = np.sort(values[np.isfinite(values)])
    grades = assign_grades(finite, breaks)
    assert grades[0] == 1
    assert (np.diff(grades) >= 0).all()


# --- assign grades ---------------------------------------------------------------------------------------


def test_a_value_exactly_at_a_break_falls_in_the_lower_grade() -> None:
    breaks = np.array([0.2, 0.4, 0.6, 0.8])
    assert assign_grades(breaks, breaks).tolist() == [1, 2, 3, 4]
    assert assign_grades(np.nextafter(breaks, np.inf), breaks).tolist() == [2, 3, 4, 5]


def test_assign_grades_give_zero_to_nan_and_keep_the_shape() -> None:
    grades = assign_grades(np.array([[np.nan, -1e9], [1e9, 0.5]]), np.array([0.2, 0.4, 0.6, 0.8]))
    assert grades.dtype == np.int8
    assert grades.tolist() == [[0, 1], [5, 3]]


def test_assign_grades_skip_the_grade_between_repeated_breaks() -> None:
    assert assign_grades(np.array([0.1, 0.5, 0.9]), np.array([0.5, 0.5, 0.5, 0.7])).tolist() == [1, 1, 5]


@pytest.mark.parametrize(
    "breaks",
    [np.array([0.5, 0.4, 0.6, 0.8]), np.array([0.2, np.nan, 0.6, 0.8]), np.array([]), np.ones((2, 2))],
)
def test_assign_grades_reject_bad_breaks(breaks: np.ndarray) -> None:
    with pytest.raises(ValueError, match="breaks"):
        assign_grades(np.array([0.5]), breaks)


@given(risk_values, hnp.arrays(np.float64, 4, elements=st.floats(-1e6, 1e6)))
def test_grades_are_monotone_in_value(values: np.ndarray, raw_breaks: np.ndarray) -> None:
    breaks = np.sort(raw_breaks)
    finite = np.sort(values[~np.isnan(values)])
    grades = assign_grades(finite, breaks)
    assert ((grades >= 1) & (grades <= 5)).all()
    assert (np.diff(grades) >= 0).all()
    # The definition: grade = 1 + number of breaks strictly below the value.
    np.testing.assert_array_equal(grades, 1 + (finite[:, None] > breaks[None, :]).sum(axis=1))


# --- registry --------------------------------------------------------------------------------------------


def test_gradings_dispatch_with_values_weights_and_options() -> None:
    values = np.arange(1.0, 21.0)
    assert GRADINGS["percentiles"](values, None, percentiles=(50, 60, 70, 80)).tolist() == [10, 12, 14, 16]
    np.testing.assert_array_equal(
        GRADINGS["natural_breaks"](values, None, n_classes=3), natural_breaks(values, 3)
    )


def test_natural_breaks_grading_refuses_weights() -> None:
    with pytest.raises(ValueError, match="weights"):
        GRADINGS["natural_breaks"](np.arange(10.0), np.ones(10))
