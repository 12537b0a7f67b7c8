"""Min-max normalisation of indicators."""

from __future__ import annotations

import doctest

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import risk_zoning.normalise
from risk_zoning.normalise import minmax

# Indicator values of realistic magnitude (hi - lo must not overflow), with some NaN.
indicators = hnp.arrays(
    np.float64,
    st.integers(1, 40),
    elements=st.one_of(st.floats(-1e9, 1e9), st.just(np.nan)),
)
floors = st.sampled_from([0.0, 0.25, 0.5])


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(risk_zoning.normalise).failed == 0


def test_minmax_maps_the_range_onto_zero_to_one() -> None:
    assert minmax(np.array([10.0, 20.0, 30.0, 40.0])).tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_minmax_with_floor_one_half_gives_the_provincial_variant() -> None:
    x = np.array([2.0, 4.0, 10.0])
    expected = 0.5 + 0.5 * (x - 2.0) / 8.0
    assert minmax(x, floor=0.5) == pytest.approx(expected)


def test_minmax_inverted_puts_the_largest_value_at_the_floor() -> None:
    assert minmax(np.array([0.0, 1.0, 4.0]), floor=0.5, invert=True).tolist() == [1.0, 0.875, 0.5]


def test_minmax_takes_the_range_over_valid_cells_only() -> None:
    x = np.array([[1.0, 3.0], [1000.0, -50.0]])
    valid = np.array([[True, True], [False, False]])
    out = minmax(x, valid=valid)
    assert out[0].tolist() == [0.0, 1.0]
    assert np.isnan(out[1]).all()


def test_minmax_of_a_constant_indicator_is_one_everywhere_valid() -> None:
    out = minmax(np.array([7.0, 7.0, np.nan, 7.0]), floor=0.5, invert=True)
    assert out[[0, 1, 3]].tolist() == [1.0, 1.0, 1.0]
    assert np.isnan(out[2])


def test_minmax_treats_infinite_values_as_missing() -> None:
    out = minmax(np.array([0.0, np.inf, 2.0, -np.inf]))
    assert out[[0, 2]].tolist() == [0.0, 1.0]
    assert np.isnan(out[[1, 3]]).all()


def test_minmax_returns_float64_for_integer_input() -> None:
    assert minmax(np.array([1, 2, 3], dtype=np.int16)).dtype == np.float64


@pytest.mark.parametrize(
    ("x", "kwargs", "message"),
    [
        (np.array([np.nan, np.nan]), {}, "no finite value"),
        (np.array([1.0, 2.0]), {"valid": np.array([False, False])}, "no finite value"),
        (np.array([1.0, 2.0]), {"valid": np.array([True])}, "valid mask has shape"),
        (np.array([1.0, 2.0]), {"floor": 1.0}, "floor"),
        (np.array([1.0, 2.0]), {"floor": -0.1}, "floor"),
    ],
)
def test_minmax_rejects_bad_arguments_with_a_clear_message(x: np.ndarray, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        minmax(x, **kwargs)


@given(indicators, floors)
def test_minmax_stays_within_floor_and_one_and_reaches_both_ends(x: np.ndarray, floor: float) -> None:
    assume(np.isfinite(x).any())
    y = minmax(x, floor=floor)
    finite = y[~np.isnan(y)]
    assert ((finite >= floor) & (finite <= 1.0)).all()
    assert finite.max() == 1.0
    if np.nanmax(x) > np.nanmin(x):
        assert finite.min() == floor


@given(indicators, floors, st.booleans())
def test_minmax_preserves_nan_exactly_where_the_input_is_nan(
    x: np.ndarray, floor: float, invert: bool
) -> None:
    assume(np.isfinite(x).any())
    np.testing.assert_array_equal(np.isnan(minmax(x, floor=floor, invert=invert)), np.isnan(x))


@given(indicators, floors)
def test_minmax_is_monotone_and_inverted_minmax_is_antitone(x: np.ndarray, floor: float) -> None:
    assume(np.isfinite(x).any())
    keep = ~np.isnan(x)
    order = np.argsort(x[keep], kind="stable")
    assert (np.diff(minmax(x, floor=floor)[keep][order]) >= 0).all()
    assert (np.diff(minmax(x, floor=floor, invert=True)[keep][order]) <= 0).all()


@given(indicators, floors)
def test_minmax_inverted_equals_minmax_of_the_negated_indicator(x: np.ndarray, floor: float) -> None:
    assume(np.isfinite(x).any())
    np.testing.assert_array_equal(minmax(x, floor=floor, invert=True), minmax(-x, floor=floor))
    if np.nanmax(x) > np.nanmin(x):
        # Symmetry: the inverted value mirrors the plain one inside [floor, 1].
        mirrored = floor + 1.0 - minmax(x, floor=floor)
        np.testing.assert_allclose(minmax(x, floor=floor, invert=True), mirrored, atol=1e-12)


@given(indicators, st.data())
def test_minmax_blanks_every_cell_outside_the_valid_mask(x: np.ndarray, data: st.DataObject) -> None:
    valid = data.draw(hnp.arrays(np.bool_, x.shape))
    assume((np.isfinite(x) & valid).any())
    y = minmax(x, valid=valid)
    assert np.isnan(y[~valid]).all()
    np.testing.assert_array_equal(y[valid], minmax(x[valid]))
