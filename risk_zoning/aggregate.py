"""Cell-to-unit aggregation over a sparse cover (cell, unit, weight) with ``numpy.bincount``."""

from __future__ import annotations

import numpy as np

from risk_zoning.grading import N_GRADES


def _cover(
    n_values: int, cell: np.ndarray, unit: np.ndarray, weight: np.ndarray, n_units: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = np.asarray(cell)
    u = np.asarray(unit)
    w = np.asarray(weight, dtype=np.float64)
    if c.ndim != 1 or c.shape != u.shape or c.shape != w.shape:
        raise ValueError(f"cover arrays must be 1-D and parallel, got {c.shape}, {u.shape}, {w.shape}")
    if c.size and not (np.issubdtype(c.dtype, np.integer) and np.issubdtype(u.dtype, np.integer)):
        raise ValueError("cover cell and unit indices must be integers")
    if isinstance(n_units, bool) or not isinstance(n_units, int | np.integer) or n_units < 0:
        raise ValueError(f"n_units must be a non-negative integer, got {n_units!r}")
    if c.size:
        if c.min() < 0 or c.max() >= n_values:
            raise ValueError(f"cover cell index outside the grid of {n_values} cells")
        if u.min() < 0 or u.max() >= n_units:
            raise ValueError(f"cover unit index outside 0..{n_units - 1}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("cover weights must be finite and non-negative")
    return c.astype(np.intp, copy=False), u.astype(np.intp, copy=False), w


def aggregate_mean(
    values: np.ndarray, cell: np.ndarray, unit: np.ndarray, weight: np.ndarray, n_units: int
) -> np.ndarray:
    """Weighted mean of a grid per unit: ``sum(w * values[cell]) / sum(w)`` over each unit's cover entries.

    ``values`` is the grid (flattened in C order, so ``cell`` is a flat index); ``cell``, ``unit``, ``weight``
    are parallel arrays, one entry per piece of a cell inside a unit (weight e.g. the people there). Entries
    whose value is NaN (or ±inf) are skipped; a unit with zero total weight left gets NaN.

    >>> grid = np.array([[0.2, 0.4], [np.nan, 0.8]])
    >>> cell, unit = np.array([0, 1, 2, 3, 1]), np.array([0, 0, 0, 1, 1])
    >>> aggregate_mean(grid, cell, unit, np.array([1.0, 3.0, 5.0, 1.0, 1.0]), 3).round(4).tolist()
    [0.35, 0.6, nan]
    """
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    c, u, w = _cover(flat.size, cell, unit, weight, n_units)
    v = flat[c]
    ok = np.isfinite(v)
    u, w, v = u[ok], w[ok], v[ok]
    total = np.bincount(u, weights=w * v, minlength=n_units)
    mass = np.bincount(u, weights=w, minlength=n_units)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mass > 0, total / mass, np.nan)


def aggregate_sum(
    values: np.ndarray, cell: np.ndarray, unit: np.ndarray, weight: np.ndarray, n_units: int
) -> np.ndarray:
    """Sum of ``values[cell] * weight`` per unit, e.g. people in grade-5 cells with a 0/1 grid of grade 5.

    Entries whose value is NaN (or ±inf) add nothing; a unit with no entries gets 0.

    >>> grid, people = np.array([1.0, 0.0, 1.0, np.nan]), np.array([10.0, 5.0, 7.0, 3.0])
    >>> aggregate_sum(grid, np.array([0, 1, 2, 3]), np.array([0, 0, 1, 1]), people, 2).tolist()
    [10.0, 7.0]
    """
    flat = np.asarray(values, dtype=np.float64).reshape(-1)
    c, u, w = _cover(flat.size, cell, unit, weight, n_units)
    v = flat[c]
    ok = np.isfinite(v)
    return np.bincount(u[ok], weights=w[ok] * v[ok], minlength=n_units)


def grade_population(
    grades: np.ndarray, cell: np.ndarray, unit: np.ndarray, population: np.ndarray, n_units: int
) -> np.ndarray:
    """People per risk grade per unit, (n_units, 5) int64; column g - 1 holds grade g.

    ``grades`` is the grid of int grades 1..5 (0 = no grade, ignored); ``population`` is the people in each
    cover entry (fractional where a cell is split). Counts are rounded by largest remainder so that each row
    sums to the total people of the unit's graded cells rounded half up; equal remainders favour the higher
    grade.

    >>> grades = np.array([1, 5, 5, 0])
    >>> cell, unit = np.array([0, 1, 2, 3]), np.array([0, 0, 0, 0])
    >>> grade_population(grades, cell, unit, np.array([2.4, 1.3, 1.3, 9.0]), 1).tolist()
    [[2, 0, 0, 0, 3]]
    """
    flat = np.asarray(grades).reshape(-1)
    if flat.size and not np.issubdtype(flat.dtype, np.integer):
        raise ValueError(f"grades must be integers, got dtype {flat.dtype}")
    if flat.size and (flat.min() < 0 or flat.max() > N_GRADES):
        raise ValueError(f"grades must be 0..{N_GRADES}, got {int(flat.min())}..{int(flat.max())}")
    c, u, w = _cover(flat.size, cell, unit, population, n_units)
    g = flat[c].astype(np.intp)
    ok = g > 0
    people = np.bincount(u[ok] * N_GRADES + (g[ok] - 1), weights=w[ok], minlength=n_units * N_GRADES).reshape(
        n_units, N_GRADES
    )
    whole = np.floor(people)
    target = np.floor(people.sum(axis=1) + 0.5)
    short = np.clip(target - whole.sum(axis=1), 0, N_GRADES).astype(np.intp)
    remainder = people - whole
    # Rank remainders within each row, largest first; the reversed columns make ties go to the higher grade.
    order = np.argsort(-remainder[:, ::-1], axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(N_GRADES)[None, :], axis=1)
    whole += (rank < short[:, None])[:, ::-1]
    return whole.astype(np.int64)
