"""Indicator and component weights: information entropy, AHP pairwise comparison, configured values."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np

# Saaty's average random consistency index RI for a pairwise matrix of order n = 1..15 (index n - 1).
SAATY_RANDOM_INDEX: tuple[float, ...] = (
    0.0,
    0.0,
    0.58,
    0.90,
    1.12,
    1.24,
    1.32,
    1.41,
    1.45,
    1.49,
    1.51,
    1.48,
    1.56,
    1.57,
    1.59,
)

# a_ij * a_ji may differ from 1 by this much: TOML holds 1/3 as 0.33 or 0.333, 1/7 as 0.143.
RECIPROCAL_TOLERANCE = 1e-2


def entropy_weights(matrix: np.ndarray, sample_weights: np.ndarray | None = None) -> np.ndarray:
    """Information-entropy weights of the columns (indicators) of an (n_samples, n_indicators) matrix.

    Values must be normalised and non-negative. Rows with any NaN are ignored, as are rows whose sample
    weight is 0. With ``m`` rows left and ``p_ij = x_ij / sum_i x_ij``::

        e_j = -(1 / ln m) * sum_i p_ij ln p_ij      (0 ln 0 = 0)
        d_j = 1 - e_j
        w_j = d_j / sum_j d_j

    A column with no variation (max == min over the rows used) has e_j = 1 and gets weight exactly 0; if
    every column is constant (or only one row is left) the weights are equal.

    ``sample_weights`` (n_samples,), e.g. population, make row i count as ``s_i / mean(s)`` samples:
    ``p_ij = s_i x_ij / sum_i s_i x_ij`` and ``e_j = -(1 / ln m) * sum_i s_i' q_ij ln q_ij`` with
    ``s' = s / mean(s)`` and ``q_ij = x_ij / sum_i s_i' x_ij`` (still e_j <= 1). Equal sample weights give
    the unweighted result, scaling all of them changes nothing, and a weight of 0 drops the row.

    Raises ``ValueError`` for a matrix that is not 2-D with at least one column, a negative or infinite
    value, bad sample weights, or no complete row.

    >>> x = np.array([[0.0, 0.5], [0.5, 0.5], [1.0, 0.5]])
    >>> entropy_weights(x).tolist()  # the second indicator is constant
    [1.0, 0.0]
    >>> x = np.array([[0.0, 0.2], [0.5, 0.4], [1.0, 0.9]])
    >>> entropy_weights(x).round(3).tolist()  # e = (0.579, 0.844), d = (0.421, 0.156)
    [0.73, 0.27]
    """
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"entropy weights need an (n_samples, n_indicators) matrix, got shape {x.shape}")
    n_rows, n_cols = x.shape
    complete = ~np.isnan(x).any(axis=1)
    if np.isinf(x[complete]).any():
        raise ValueError("entropy weights need finite values, got inf")
    if (x[complete] < 0).any():
        raise ValueError("entropy weights need non-negative (normalised) values, got a negative one")
    if sample_weights is None:
        s = np.ones(n_rows)
    else:
        s = np.asarray(sample_weights, dtype=np.float64)
        if s.shape != (n_rows,):
            raise ValueError(f"sample weights have shape {s.shape}, expected ({n_rows},)")
        if not np.isfinite(s).all() or (s < 0).any():
            raise ValueError("sample weights must be finite and non-negative")
    used = complete & (s > 0)
    m = int(used.sum())
    if m == 0:
        raise ValueError("entropy weights need at least one complete row with a positive sample weight")
    x, s = x[used], s[used]
    constant = x.max(axis=0) == x.min(axis=0)
    if m == 1 or constant.all():
        return np.full(n_cols, 1.0 / n_cols)
    s = s * (m / s.sum())
    totals = s @ x  # (n_cols,), > 0 for every non-constant column
    q = x / np.where(totals > 0, totals, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        q_ln_q = np.where(q > 0, q * np.log(q), 0.0)
    entropy = -(s @ q_ln_q) / math.log(m)
    # e_j <= 1 always; clip removes rounding above 1.
    d = np.where(constant, 0.0, np.clip(1.0 - entropy, 0.0, None))
    total = d.sum()
    if total <= 0:
        return np.full(n_cols, 1.0 / n_cols)
    return cast(np.ndarray, d / total)


def ahp_weights(pairwise: np.ndarray, max_consistency_ratio: float = 0.1) -> tuple[np.ndarray, float]:
    """Weights from an AHP pairwise-comparison matrix (principal eigenvector) and its consistency ratio.

    ``pairwise[i, j]`` says how much more important item i is than item j (Saaty's 1-9 scale), so the matrix
    must be square, positive and reciprocal (``a_ij * a_ji`` within 1 % of 1, diagonal 1).
    ``CR = CI / RI`` with ``CI = (lambda_max - n) / (n - 1)`` and Saaty's random index RI for n = 1..15;
    for n <= 2 every reciprocal matrix is consistent and CR is 0.

    Raises ``ValueError`` for a malformed matrix, n > 15, or a CR above ``max_consistency_ratio``.

    >>> a = np.array([[1, 3, 5], [1 / 3, 1, 3], [1 / 5, 1 / 3, 1]])
    >>> w, cr = ahp_weights(a)
    >>> w.round(3).tolist(), round(cr, 3)
    ([0.637, 0.258, 0.105], 0.033)
    """
    a = np.asarray(pairwise, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] == 0:
        raise ValueError(f"AHP pairwise matrix must be square and non-empty, got shape {a.shape}")
    n = a.shape[0]
    if n > len(SAATY_RANDOM_INDEX):
        raise ValueError(f"AHP pairwise matrix of order {n} is larger than {len(SAATY_RANDOM_INDEX)}")
    if not (np.isfinite(max_consistency_ratio) and max_consistency_ratio > 0):
        raise ValueError(f"maximum consistency ratio must be positive, got {max_consistency_ratio}")
    if not np.isfinite(a).all() or (a <= 0).any():
        raise ValueError("AHP pairwise matrix must hold finite positive numbers")
    off = np.abs(a * a.T - 1.0)
    if (off > RECIPROCAL_TOLERANCE).any():
        i, j = np.unravel_index(int(np.argmax(off)), off.shape)
        raise ValueError(
            f"AHP pairwise matrix is not reciprocal: a[{i}][{j}] = {a[i, j]:g} but a[{j}][{i}] = {a[j, i]:g}"
        )
    eigenvalues, eigenvectors = np.linalg.eig(a)
    k = int(np.argmax(eigenvalues.real))
    lambda_max = float(eigenvalues[k].real)
    # Perron-Frobenius: the principal eigenvector of a positive matrix has one sign.
    vector = np.abs(eigenvectors[:, k].real)
    weights = vector / vector.sum()
    if n <= 2:
        return weights, 0.0
    cr = max(0.0, (lambda_max - n) / (n - 1) / SAATY_RANDOM_INDEX[n - 1])
    if cr > max_consistency_ratio:
        raise ValueError(
            f"AHP pairwise matrix is inconsistent: consistency ratio {cr:.3f} "
            f"exceeds {max_consistency_ratio:g}"
        )
    return weights, cr


def configured_weights(weights: Mapping[str, float], names: Sequence[str]) -> np.ndarray:
    """Configured weights in the order of ``names``, normalised to sum to 1.

    Every name needs a weight and no other weight may be given; each must be a finite number >= 0 and at
    least one must be positive. Raises ``ValueError`` naming the first offending key.

    >>> configured = {"exposure": 1, "hazard": 2, "vulnerability": 1}
    >>> configured_weights(configured, ["hazard", "exposure", "vulnerability"]).tolist()
    [0.5, 0.25, 0.25]
    """
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate names among {list(names)}")
    if not names:
        raise ValueError("no names to weight")
    missing = [n for n in names if n not in weights]
    if missing:
        raise ValueError(f"missing weight for {missing[0]!r}")
    extra = sorted(k for k in weights if k not in set(names))
    if extra:
        raise ValueError(f"weight given for unknown {extra[0]!r}; expected: {', '.join(names)}")
    values = np.empty(len(names))
    for i, name in enumerate(names):
        value = weights[name]
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"weight for {name!r} must be a number, got {value!r}")
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"weight for {name!r} must be finite and >= 0, got {value!r}")
        values[i] = value
    total = values.sum()
    if total <= 0:
        raise ValueError("all weights are zero")
    return cast(np.ndarray, values / total)
