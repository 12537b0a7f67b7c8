"""Combining normalised components (hazard, exposure, vulnerability, ...) into one risk index per cell."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _checked(components: Sequence[np.ndarray], weights: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    arrays = [np.asarray(c, dtype=np.float64) for c in components]
    w = np.asarray(weights, dtype=np.float64)
    if not arrays:
        raise ValueError("no components to combine")
    if w.shape != (len(arrays),):
        raise ValueError(f"{len(arrays)} components but weights of shape {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")
    shape = arrays[0].shape
    for i, a in enumerate(arrays):
        if a.shape != shape:
            raise ValueError(f"component {i} has shape {a.shape}, component 0 {shape}")
    return arrays, w


def weighted_product(components: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Risk as the weighted geometric combination ``R = prod_i x_i ** w_i`` of components in [0, 1].

    Weights are used as given (pass them normalised to sum 1 so R stays on the scale of the components).
    A NaN in any component gives NaN, even where that component's weight is 0. Raises ``ValueError`` for
    mismatched shapes, bad weights, or a negative component value (its fractional power is undefined).

    >>> h, e = np.array([1.0, 0.25, np.nan]), np.array([0.5, 1.0, 1.0])
    >>> weighted_product([h, e], np.array([0.5, 0.5])).round(4).tolist()
    [0.7071, 0.5, nan]
    """
    arrays, w = _checked(components, weights)
    risk = np.ones(arrays[0].shape)
    missing = np.zeros(arrays[0].shape, dtype=bool)
    for a, wi in zip(arrays, w, strict=True):
        if (a < 0).any():
            raise ValueError("weighted product needs non-negative components, got a negative value")
        missing |= np.isnan(a)
        risk *= np.power(a, wi)
    # nan ** 0 == 1 in IEEE arithmetic, so missing values are restored explicitly.
    risk[missing] = np.nan
    return risk


def weighted_sum(components: Sequence[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Risk as the weighted sum ``R = sum_i w_i x_i``; NaN in any component gives NaN.

    Weights are used as given. Raises ``ValueError`` for mismatched shapes or bad weights.

    >>> h, e = np.array([1.0, 0.2, np.nan]), np.array([0.0, 0.6, 1.0])
    >>> weighted_sum([h, e], np.array([0.75, 0.25])).round(4).tolist()
    [0.75, 0.3, nan]
    """
    arrays, w = _checked(components, weights)
    risk = np.zeros(arrays[0].shape)
    for a, wi in zip(arrays, w, strict=True):
        risk += wi * a
    return risk


COMBINATIONS: dict[str, Callable[[Sequence[np.ndarray], np.ndarray], np.ndarray]] = {
    "weighted_product": weighted_product,
    "weighted_sum": weighted_sum,
}
