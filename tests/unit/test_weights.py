"""Entropy, AHP and configured weights."""

from __future__ import annotations

import doctest

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import risk_zoning.weights
from risk_zoning.weights import SAATY_RANDOM_INDEX, ahp_weights, configured_weights, entropy_weights

normalised_matrices = hnp.arrays(
    np.float64,
    st.tuples(st.integers(2, 30), st.integers(1, 6)),
    elements=st.floats(0.0, 1.0),
)


def test_the_docstring_examples_hold() -> None:
    assert doctest.testmod(risk_zoning.weights).failed == 0


# --- entropy ---------------------------------------------------------------------------------------------


def test_entropy_weights_match_a_hand_computed_example() -> None:
    x = np.array([[0.0, 0.2], [0.5, 0.4], [1.0, 0.9]])
    e1 = -(1 / 3 * np.log(1 / 3) + 2 / 3 * np.log(2 / 3)) / np.log(3)
    p2 = np.array([0.2, 0.4, 0.9]) / 1.5
    e2 = -(p2 * np.log(p2)).sum() / np.log(3)
    d = np.array([1 - e1, 1 - e2])
    np.testing.assert_allclose(entropy_weights(x), d / d.sum(), rtol=1e-12)


def test_entropy_weights_ignore_a_constant_indicator() -> None:
    x = np.array([[0.1, 0.3, 0.0], [0.7, 0.3, 0.2], [0.4, 0.3, 1.0]])
    w = entropy_weights(x)
    assert w[1] == 0.0
    assert w.sum() == pytest.approx(1.0)


def test_entropy_weights_are_equal_when_every_indicator_is_constant() -> None:
    assert entropy_weights(np.full((4, 3), 0.5)).tolist() == pytest.approx([1 / 3] * 3)


def test_entropy_weights_are_equal_with_a_single_complete_row() -> None:
    x = np.array([[0.2, 0.9], [np.nan, 0.1]])
    assert entropy_weights(x).tolist() == [0.5, 0.5]


def test_entropy_weights_skip_rows_with_any_nan() -> None:
    x = np.array([[0.0, 0.2], [0.5, np.nan], [0.5, 0.4], [1.0, 0.9]])
    np.testing.assert_allclose(entropy_weights(x), entropy_weights(x[[0, 2, 3]]))


def test_entropy_weights_with_equal_sample_weights_equal_the_unweighted_ones() -> None:
    x = np.array([[0.0, 0.2], [0.5, 0.4], [1.0, 0.9], [0.3, 0.3]])
    np.testing.assert_allclose(entropy_weights(x, np.full(4, 7.0)), entropy_weights(x), rtol=1e-12)


def test_entropy_sample_weight_zero_drops_the_row() -> None:
    x = np.array([[0.0, 0.2], [0.5, 0.4], [1.0, 0.9], [0.3, 0.3]])
    np.testing.assert_allclose(
        entropy_weights(x, np.array([3.0, 0.0, 1.0, 2.0])),
        entropy_weights(x[[0, 2, 3]], np.array([3.0, 1.0, 2.0])),
    )


def test_entropy_with_population_weights_favours_variation_where_people_live() -> None:
    # Indicator 0 varies only in the empty row, indicator 1 only among the populated rows.
    x = np.array([[1.0, 0.1], [0.2, 0.1], [0.2, 0.9], [0.2, 0.5]])
    w = entropy_weights(x, np.array([0.001, 100.0, 100.0, 100.0]))
    assert w[1] > 0.9


@pytest.mark.parametrize(
    ("matrix", "sample_weights", "message"),
    [
        (np.array([0.1, 0.2]), None, "matrix"),
        (np.zeros((3, 0)), None, "matrix"),
        (np.array([[0.1, -0.2], [0.3, 0.4]]), None, "non-negative"),
        (np.array([[0.1, np.inf], [0.3, 0.4]]), None, "finite"),
        (np.array([[np.nan, 0.2], [0.3, np.nan]]), None, "complete row"),
        (np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([1.0]), "shape"),
        (np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([1.0, -1.0]), "non-negative"),
        (np.array([[0.1, 0.2], [0.3, 0.4]]), np.array([0.0, 0.0]), "positive sample weight"),
    ],
)
def test_entropy_weights_reject_bad_input(
    matrix: np.ndarray, sample_weights: np.ndarray | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        entropy_weights(matrix, sample_weights)


@given(normalised_matrices)
def test_entropy_weights_are_non_negative_and_sum_to_one(x: np.ndarray) -> None:
    w = entropy_weights(x)
    assert w.shape == (x.shape[1],)
    assert (w >= 0).all()
    assert w.sum() == pytest.approx(1.0)


@given(normalised_matrices, st.data())
def test_entropy_weights_are_permutation_equivariant(x: np.ndarray, data: st.DataObject) -> None:
    perm = np.array(data.draw(st.permutations(range(x.shape[1]))))
    np.testing.assert_allclose(entropy_weights(x[:, perm]), entropy_weights(x)[perm], atol=1e-12)
    rows = np.array(data.draw(st.permutations(range(x.shape[0]))))
    np.testing.assert_allclose(entropy_weights(x[rows]), entropy_weights(x), atol=1e-12)


@given(normalised_matrices, st.floats(0.0, 1.0))
def test_entropy_weights_give_an_added_constant_column_zero(x: np.ndarray, c: float) -> None:
    assume((x.max(axis=0) > x.min(axis=0)).any())
    w = entropy_weights(np.column_stack([x, np.full(x.shape[0], c)]))
    assert w[-1] == 0.0
    np.testing.assert_allclose(w[:-1], entropy_weights(x), atol=1e-12)


@given(normalised_matrices, st.floats(1e-3, 1e6))
def test_entropy_weights_do_not_change_when_sample_weights_are_scaled(x: np.ndarray, scale: float) -> None:
    s = np.linspace(1.0, 3.0, x.shape[0])
    np.testing.assert_allclose(entropy_weights(x, s * scale), entropy_weights(x, s), atol=1e-9)


# --- AHP -------------------------------------------------------------------------------------------------


def test_ahp_weights_match_the_published_three_by_three_example() -> None:
    # Saaty's classic example: lambda_max = 3.039, CI = 0.019, CR = 0.033 (RI = 0.58).
    a = np.array([[1, 3, 5], [1 / 3, 1, 3], [1 / 5, 1 / 3, 1]])
    w, cr = ahp_weights(a)
    np.testing.assert_allclose(w, [0.6370, 0.2583, 0.1047], atol=5e-4)
    assert cr == pytest.approx(0.033, abs=5e-4)


def test_ahp_weights_accept_reciprocals_written_with_three_decimals() -> None:
    a = np.array([[1, 3, 7], [0.333, 1, 3], [0.143, 0.333, 1]])
    w, cr = ahp_weights(a)
    assert w.sum() == pytest.approx(1.0)
    assert cr < 0.1


def test_ahp_weights_of_two_items_are_always_consistent() -> None:
    w, cr = ahp_weights(np.array([[1.0, 4.0], [0.25, 1.0]]))
    np.testing.assert_allclose(w, [0.8, 0.2])
    assert cr == 0.0


def test_ahp_weights_of_one_item_are_one() -> None:
    w, cr = ahp_weights(np.array([[1.0]]))
    assert w.tolist() == [1.0]
    assert cr == 0.0


def test_ahp_weights_reject_an_inconsistent_matrix_and_say_the_cr() -> None:
    circular = np.array([[1, 9, 1 / 9], [1 / 9, 1, 9], [9, 1 / 9, 1]])
    with pytest.raises(ValueError, match=r"consistency ratio \d+\.\d{3} exceeds 0.1"):
        ahp_weights(circular)


def test_ahp_weights_allow_a_looser_consistency_limit() -> None:
    a = np.array([[1, 3, 5], [1 / 3, 1, 3], [1 / 5, 1 / 3, 1]])
    with pytest.raises(ValueError, match=r"0\.033"):
        ahp_weights(a, max_consistency_ratio=0.01)


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.ones((2, 3)), "square"),
        (np.ones(3), "square"),
        (np.ones((0, 0)), "square"),
        (np.ones((16, 16)), "larger than 15"),
        (np.array([[1.0, -2.0], [-0.5, 1.0]]), "positive"),
        (np.array([[1.0, np.nan], [1.0, 1.0]]), "positive"),
        (np.array([[1.0, 3.0], [0.5, 1.0]]), r"not reciprocal: a\[0\]\[1\] = 3 but a\[1\]\[0\] = 0.5"),
        (np.array([[2.0, 1.0], [1.0, 1.0]]), "not reciprocal"),
    ],
)
def test_ahp_weights_reject_malformed_matrices(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ahp_weights(matrix)


def test_saaty_random_index_table_covers_orders_one_to_fifteen() -> None:
    assert len(SAATY_RANDOM_INDEX) == 15
    assert SAATY_RANDOM_INDEX[2] == 0.58
    assert SAATY_RANDOM_INDEX[14] == 1.59


@given(st.lists(st.floats(0.05, 20.0), min_size=1, max_size=15))
def test_ahp_of_a_consistent_matrix_recovers_the_generating_weights(raw: list[float]) -> None:
    truth = np.array(raw) / sum(raw)
    w, cr = ahp_weights(truth[:, None] / truth[None, :])
    np.testing.assert_allclose(w, truth, rtol=1e-8, atol=1e-12)
    assert cr == pytest.approx(0.0, abs=1e-9)


# --- configured ------------------------------------------------------------------------------------------


def test_configured_weights_follow_the_order_of_names_and_sum_to_one() -> None:
    w = configured_weights(
        {"vulnerability": 1, "hazard": 0.5, "exposure": 0.5}, ["hazard", "exposure", "vulnerability"]
    )
    assert w.tolist() == [0.25, 0.25, 0.5]


def test_configured_weights_allow_a_zero_weight() -> None:
    assert configured_weights({"a": 0, "b": 3}, ["a", "b"]).tolist() == [0.0, 1.0]


@pytest.mark.parametrize(
    ("weights", "names", "message"),
    [
        ({"a": 1}, ["a", "b"], "missing weight for 'b'"),
        ({"a": 1, "b": 1, "c": 1}, ["a", "b"], "unknown 'c'"),
        ({"a": -1, "b": 1}, ["a", "b"], "'a' must be finite and >= 0"),
        ({"a": float("nan"), "b": 1}, ["a", "b"], "'a' must be finite"),
        ({"a": float("inf"), "b": 1}, ["a", "b"], "'a' must be finite"),
        ({"a": "1", "b": 1}, ["a", "b"], "'a' must be a number"),
        ({"a": True, "b": 1}, ["a", "b"], "'a' must be a number"),
        ({"a": 0, "b": 0.0}, ["a", "b"], "all weights are zero"),
        ({"a": 1}, ["a", "a"], "duplicate"),
        ({}, [], "no names"),
    ],
)
def test_configured_weights_reject_bad_configuration(weights: dict, names: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        configured_weights(weights, names)
