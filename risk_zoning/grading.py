"""Five risk grades, 1 = lowest (低) to 5 = highest (高): thresholds by percentiles or natural breaks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import jenkspy
import numpy as np

N_GRADES = 5


def _finite(values: np.ndarray) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("no finite value to grade")
    return x


def percentile_breaks(
    values: np.ndarray,
    percentiles: Sequence[float] = (60, 80, 90, 95),
    weights: np.ndarray | None = None,
) -> np.ndarray:
    """Four thresholds at the given percentiles of the finite values (NaN and ±inf ignored).

    The p-th percentile is the smallest value v whose cumulative share (of the count, or of ``weights`` such
    as population) of values <= v reaches p % (the inverted CDF, ``numpy.percentile(method="inverted_cdf")``).
    With ``assign_grades`` a value equal to a threshold falls in the lower grade, so at least p % of the
    values (or weight) lie in the grades below each threshold, exactly p % when values are distinct.
    Thresholds are non-decreasing; they repeat where many values are equal, which leaves a grade empty.

    Raises ``ValueError`` unless there are exactly 4 percentiles, strictly increasing, in (0, 100); for bad
    weights; or when no finite value (with positive weight) is left.

    >>> percentile_breaks(np.arange(1.0, 21.0)).tolist()  # 12 values <= 12 is 60 % of 20
    [12.0, 16.0, 18.0, 19.0]
    >>> percentile_breaks(np.array([1.0, 2.0, 3.0]), weights=np.array([8.0, 1.0, 1.0])).tolist()
    [1.0, 1.0, 2.0, 3.0]
    """
    p = np.asarray(percentiles, dtype=np.float64)
    if p.shape != (N_GRADES - 1,):
        raise ValueError(f"need exactly {N_GRADES - 1} percentiles, got {list(percentiles)}")
    if not ((p > 0).all() and (p < 100).all() and (np.diff(p) > 0).all()):
        raise ValueError(f"percentiles must be strictly increasing in (0, 100), got {list(percentiles)}")
    x = np.asarray(values, dtype=np.float64).ravel()
    if weights is None:
        w = np.ones(x.size)
    else:
        w = np.asarray(weights, dtype=np.float64).ravel()
        if w.shape != x.shape:
            raise ValueError(f"weights have {w.size} values, values {x.size}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite and non-negative")
    keep = np.isfinite(x) & (w > 0)
    if not keep.any():
        raise ValueError("no finite value with positive weight to grade")
    order = np.argsort(x[keep], kind="stable")
    x, w = x[keep][order], w[keep][order]
    cumulative = np.cumsum(w)
    # Compare shares as cumulative >= p/100 * total; the small relative slack absorbs summation rounding.
    targets = p / 100.0 * cumulative[-1] * (1.0 - 1e-12)
    index = np.minimum(np.searchsorted(cumulative, targets, side="left"), x.size - 1)
    return cast(np.ndarray, x[index])


def natural_breaks(
    values: np.ndarray, n_classes: int = 5, max_sample: int = 5000, seed: int = 0
) -> np.ndarray:
    """The ``n_classes - 1`` inner thresholds of Jenks natural breaks of the finite values (via ``jenkspy``).

    Each threshold is the largest value of its class, so with ``assign_grades`` (a value equal to a threshold
    falls in the lower grade) the grades reproduce the Jenks classes. Jenks is quadratic in the number of
    values, so above ``max_sample`` values a random sample fixed by ``seed`` is classified, always including
    the minimum and the maximum.

    With no more distinct values than classes, the sorted distinct values u_0 < ... < u_{m-1} are taken as
    their own classes: thresholds are u_0, ..., u_{m-2} followed by u_{m-1} repeated, so the k-th smallest
    value gets grade k and the higher grades stay empty (e.g. a constant field is all grade 1).

    Raises ``ValueError`` for n_classes < 2, max_sample < n_classes, or no finite value.

    >>> natural_breaks(np.array([1.0, 1.1, 1.2, 5.0, 5.1, 9.0, 9.2, 20.0, 30.0, 31.0])).tolist()
    [1.2, 5.1, 9.2, 20.0]
    >>> natural_breaks(np.array([2.0, 2.0, 7.0])).tolist()
    [2.0, 7.0, 7.0, 7.0]
    """
    if isinstance(n_classes, bool) or not isinstance(n_classes, int | np.integer) or n_classes < 2:
        raise ValueError(f"natural breaks need an integer number of classes >= 2, got {n_classes!r}")
    if max_sample < n_classes:
        raise ValueError(f"max_sample ({max_sample}) must be at least the number of classes ({n_classes})")
    x = _finite(values)
    if x.size > max_sample:
        rng = np.random.default_rng(seed)
        ends = np.array([np.argmin(x), np.argmax(x)])
        rest = np.delete(np.arange(x.size), ends)
        x = x[np.concatenate([ends, rng.choice(rest, size=max_sample - 2, replace=False)])]
    distinct = np.unique(x)
    if distinct.size <= n_classes:
        breaks = np.full(n_classes - 1, distinct[-1])
        breaks[: distinct.size - 1] = distinct[:-1]
        return breaks
    bounds = jenkspy.jenks_breaks(x.tolist(), n_classes=int(n_classes))
    return np.asarray(bounds[1:-1], dtype=np.float64)


def assign_grades(values: np.ndarray, breaks: np.ndarray) -> np.ndarray:
    """Grades 1 .. len(breaks) + 1 (int8) from non-decreasing thresholds; NaN gets 0 (no grade).

    ``grade = 1 + (number of thresholds strictly below the value)``, i.e.
    ``breaks[k - 2] < v <= breaks[k - 1]`` gives grade k (with breaks[-1] = -inf and breaks[len] = +inf): a
    value equal to a threshold falls in the lower grade. Where thresholds repeat, the grade between them is
    empty.

    Raises ``ValueError`` unless ``breaks`` is 1-D, finite, non-decreasing, with 1 to 126 thresholds.

    >>> risk = np.array([0.1, 0.6, 0.65, 0.95, 0.99, np.nan])
    >>> assign_grades(risk, np.array([0.6, 0.8, 0.9, 0.95])).tolist()
    [1, 1, 2, 4, 5, 0]
    """
    b = np.asarray(breaks, dtype=np.float64)
    if b.ndim != 1 or not 1 <= b.size <= 126:
        raise ValueError(f"breaks must be a 1-D array of 1 to 126 thresholds, got shape {b.shape}")
    if not np.isfinite(b).all() or (np.diff(b) < 0).any():
        raise ValueError(f"breaks must be finite and non-decreasing, got {b.tolist()}")
    x = np.asarray(values, dtype=np.float64)
    grades = (np.searchsorted(b, x, side="left") + 1).astype(np.int8)
    grades[np.isnan(x)] = 0
    return grades


def _percentile_grading(values: np.ndarray, weights: np.ndarray | None, **options: Any) -> np.ndarray:
    return percentile_breaks(values, weights=weights, **options)


def _natural_grading(values: np.ndarray, weights: np.ndarray | None, **options: Any) -> np.ndarray:
    if weights is not None:
        raise ValueError("natural breaks do not take weights")
    return natural_breaks(values, **options)


# name -> (values, weights, **options) -> thresholds
GRADINGS: dict[str, Callable[..., np.ndarray]] = {
    "percentiles": _percentile_grading,
    "natural_breaks": _natural_grading,
}
