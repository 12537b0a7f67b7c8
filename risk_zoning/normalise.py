"""Min-max normalisation of risk indicators over the region's cells."""

from __future__ import annotations

import numpy as np


def minmax(
    x: np.ndarray, *, floor: float = 0.0, invert: bool = False, valid: np.ndarray | None = None
) -> np.ndarray:
    """Rescale an indicator linearly to [floor, 1], using the minimum and maximum over the valid cells.

    ``y = floor + (1 - floor) * (x - min) / (max - min)``, or with ``(max - x)`` for ``invert=True``
    (indicators where a larger value is safer, e.g. shelter capacity). ``floor=0.5`` gives the variant
    ``0.5 + 0.5 * (x - min) / (max - min)`` of the provincial standards, which keeps a weighted product from
    being zeroed by one component.

    The minimum and maximum are taken over cells that are inside ``valid`` (a boolean mask of the same shape;
    all cells when ``None``) and finite. NaN stays NaN, ±inf is treated as missing and becomes NaN, and every
    cell outside ``valid`` becomes NaN.

    A constant indicator (max == min) carries no information about where risk is higher; every valid cell
    then gets 1.0, which is neutral in a weighted product (1 ** w == 1) and only adds the same constant to
    every cell of a weighted sum, so it changes neither the ranking nor the grades.

    Raises ``ValueError`` if ``valid`` has another shape, ``floor`` is not in [0, 1), or no valid cell is
    finite.

    >>> minmax(np.array([10.0, 20.0, 30.0])).tolist()
    [0.0, 0.5, 1.0]
    >>> minmax(np.array([10.0, 20.0, 30.0]), floor=0.5).tolist()
    [0.5, 0.75, 1.0]
    >>> minmax(np.array([10.0, 20.0, 30.0]), invert=True).tolist()
    [1.0, 0.5, 0.0]
    >>> minmax(np.array([10.0, np.nan, 30.0, 99.0]), valid=np.array([True, True, True, False])).tolist()
    [0.0, nan, 1.0, nan]
    >>> minmax(np.array([4.0, 4.0])).tolist()
    [1.0, 1.0]
    """
    values = np.asarray(x, dtype=np.float64)
    if not (np.isfinite(floor) and 0.0 <= floor < 1.0):
        raise ValueError(f"floor must be in [0, 1), got {floor}")
    usable = np.isfinite(values)
    if valid is not None:
        mask = np.asarray(valid, dtype=bool)
        if mask.shape != values.shape:
            raise ValueError(f"valid mask has shape {mask.shape}, the indicator {values.shape}")
        usable &= mask
    if not usable.any():
        raise ValueError("indicator has no finite value inside the valid cells")
    used = values[usable]
    lo, hi = float(used.min()), float(used.max())
    out = np.full(values.shape, np.nan, dtype=np.float64)
    if hi == lo:
        out[usable] = 1.0
        return out
    scaled = (hi - used) / (hi - lo) if invert else (used - lo) / (hi - lo)
    # Clip guards the range against rounding in (x - lo) / (hi - lo) for extreme magnitudes.
    out[usable] = np.clip(floor + (1.0 - floor) * scaled, floor, 1.0)
    return out
