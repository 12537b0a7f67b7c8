"""Plain numpy twins of the forecast's numba kernels (`warnings_svc.forecast.hazards._run_kernel`), criterion
by criterion, slow and obvious: the tests compare the kernels with `reference_kernel` on random data."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from warnings_svc.forecast.hazards import _DAYS, _NAT, _STEP, _Plan

_NEVER = np.iinfo(np.int64).max  # later than any onset: the minimum over levels ignores it


def compare(values: np.ndarray, sense: int, thr: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if sense == 0:
            return values >= thr
        if sense == 1:
            return values > thr
        if sense == 2:
            return values <= thr
        return values < thr


def raised_dust(gates: Sequence[np.ndarray], gate_thr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(M, T, C) bool: raised dust at each member, step and cell."""
    out = np.zeros(shape, bool)
    for g, t in zip(gates, gate_thr, strict=True):
        if not np.isnan(t):
            out |= np.broadcast_to(compare(g.astype(np.float64), 0, float(t)), shape)
    return out


def window_sums(x64: np.ndarray, win_start: np.ndarray) -> np.ndarray:
    """(M, T, C) accumulations over the window ending at each step; NaN if the window has a missing step."""
    missing = np.isnan(x64)
    m, t, c = x64.shape
    csum = np.zeros((m, t + 1, c))
    csum[:, 1:] = np.add.accumulate(np.where(missing, 0.0, x64), axis=1)
    nans = np.zeros((m, t + 1, c), np.int64)
    nans[:, 1:] = np.cumsum(missing, axis=1)
    ends = np.arange(1, t + 1)
    sums = csum[:, ends] - csum[:, win_start]
    sums[(nans[:, ends] - nans[:, win_start]) > 0] = np.nan
    return sums


def exceedance(
    values: np.ndarray, sense: int, thr: float, dusty: np.ndarray | None, lo: int, hi: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(status, first, last), each (M, C), of a step or window criterion on `values` (M, T, C)."""
    m, _, c = values.shape
    status = np.full((m, c), -1, np.int8)
    first = np.full((m, c), -1, np.int64)
    last = np.full((m, c), -1, np.int64)
    if hi <= lo:
        return status, first, last
    finite = ~np.isnan(values)
    ex = compare(values, sense, thr) & finite
    if dusty is not None:
        ex &= dusty
    inside = ex[:, lo:hi]
    hit = inside.any(axis=1)
    status = np.where(hit, 1, np.where(finite[:, lo:hi].any(axis=1), 0, -1)).astype(np.int8)
    first = np.where(hit, lo + inside.argmax(axis=1), -1)
    last_in = hi - 1 - inside[:, ::-1].argmax(axis=1)
    after = ex[:, hi:]
    if after.shape[1]:
        run = np.where(after.all(axis=1), after.shape[1], after.argmin(axis=1))
    else:
        run = np.zeros((m, c), np.int64)
    last = np.where(hit, np.where(last_in == hi - 1, last_in + run, last_in), -1)
    return status, first, last


def days(x64: np.ndarray, plan: _Plan, lv: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(status, first, last) of a spell of consecutive counted days at or above the threshold."""
    m, _, c = x64.shape
    n_days_total, lo, hi, n = plan.n_day_total, int(plan.lo[lv]), int(plan.hi[lv]), int(plan.n_days[lv])
    finite = ~np.isnan(x64)
    dmax = np.full((m, n_days_total, c), -np.inf)
    dcov = np.zeros((m, n_days_total, c))
    for d in range(n_days_total):
        sel = plan.day_of == d
        if sel.any():
            dmax[:, d] = np.fmax.reduce(np.where(finite[:, sel], x64[:, sel], -np.inf), axis=1)
            dcov[:, d] = (finite[:, sel] * plan.step_hours[sel][None, :, None]).sum(axis=1)
    hot = (dcov >= plan.min_cov) & compare(dmax, int(plan.sense[lv]), float(plan.thr[lv]))
    valid = (dcov[:, lo:hi] > 0).any(axis=1) if hi > lo else np.zeros((m, c), bool)
    status = np.where(valid, 0, -1).astype(np.int8)
    first = np.full((m, c), -1, np.int64)
    last = np.full((m, c), -1, np.int64)
    run = np.zeros((m, c), np.int64)
    for d in range(lo, min(hi, n_days_total)):
        run = np.where(hot[:, d], run + 1, 0)
        spell = run >= n
        first = np.where(spell & (first < 0), d - n + 1, first)
        last = np.where(spell, d, last)
        status = np.where(spell, 1, status).astype(np.int8)
    still = (run >= n) if hi > lo else np.zeros((m, c), bool)
    for d in range(max(hi, lo), n_days_total):
        still &= hot[:, d]
        last = np.where(still, d, last)
    return status, first, last


def aggregate(
    status: np.ndarray, first: np.ndarray, last: np.ndarray, plan: _Plan
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold members (axis 0 of (M, L, C)) into probability, onset and end per level."""
    reached = status == 1
    lvl = np.arange(status.shape[1])[None, :, None]
    s_on = np.where(reached, plan.start_ns[lvl, np.clip(first, 0, None)], _NEVER)
    s_en = np.where(reached, plan.end_ns[lvl, np.clip(last, 0, None)], _NAT)
    if plan.at_least:
        reached = np.logical_or.accumulate(reached[:, ::-1], axis=1)[:, ::-1]
        s_on = np.minimum.accumulate(s_on[:, ::-1], axis=1)[:, ::-1]
        s_en = np.maximum.accumulate(s_en[:, ::-1], axis=1)[:, ::-1]
    valid = (status >= 0) | reached
    num = reached.sum(axis=0)
    den = valid.sum(axis=0)
    prob = np.where(den > 0, num / np.maximum(den, 1), np.nan).astype(np.float32)
    onset = np.where(num > 0, np.where(reached, s_on, _NEVER).min(axis=0), _NAT)
    end = np.where(num > 0, np.where(reached, s_en, _NAT).max(axis=0), _NAT)
    return prob, onset.astype(np.int64), end.astype(np.int64)


def reference_kernel(
    x: np.ndarray, gates: Sequence[np.ndarray], plan: _Plan
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain-numpy twin of `hazards._run_kernel`, criterion by criterion (the tests compare the two)."""
    x64 = np.asarray(x, dtype=np.float64)
    m, _, c = x64.shape
    n_levels = plan.kind.shape[0]
    status = np.full((m, n_levels, c), -1, np.int8)
    first = np.full((m, n_levels, c), -1, np.int64)
    last = np.full((m, n_levels, c), -1, np.int64)
    dusty = raised_dust(gates, plan.gate_thr, x64.shape) if plan.gated.any() else None
    for lv in range(n_levels):
        if plan.kind[lv] == _DAYS:
            s, f, la = days(x64, plan, lv)
        else:
            values = x64 if plan.kind[lv] == _STEP else window_sums(x64, plan.win_start[lv])
            s, f, la = exceedance(
                values,
                int(plan.sense[lv]),
                float(plan.thr[lv]),
                dusty if plan.gated[lv] else None,
                int(plan.lo[lv]),
                int(plan.hi[lv]),
            )
        status[:, lv], first[:, lv], last[:, lv] = s, f, la
    return aggregate(status, first, last, plan)
