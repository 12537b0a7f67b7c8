"""Forecast grids to warning levels: for each hazard and level, the probability that a cell reaches it.

Pure computation: canonical `xarray.DataArray`s in (see `risk_zoning.io.netcdf`: dims ``time``, optional
``member``, ``lat``, ``lon``; degC, mm per step, m, m s-1), a `HazardResult` out. No files, no database
(station CSV files are read by `warnings_svc.forecast.ingest.read_station_csv`, which hands the text to
`stations_to_grid` here).

How a criterion is evaluated (the numbers are in ``warnings_svc/config/criteria.toml``):

- **Horizon.** The forecast branch looks at valid times t with ``reference < t <= reference + within``. A
  value valid exactly at the reference time is the analysis: it belongs to the observed branch.
- **Comparison.** ``ge``/``gt``/``le``/``lt`` with a relative tolerance of `REL_TOL`: a value within 1e-6 of
  the threshold counts as equal to it (float32 sums such as 24.9 + 25.0 + 0.1 = 49.9999996 mm must not decide
  a warning).
- **Step criteria** (heat orange/red, frost, sandstorm): any step in the horizon beyond the threshold.
- **Rainstorm windows.** The accumulation over the window ending at each valid time is a difference of a
  running (cumulative) sum. A window of W hours over steps of S hours uses W/S steps; when W is not a whole
  number of steps, the fewest whole steps covering W (3 h over 2 h steps: 2 steps, 4 h); steps longer than
  the window: the step amount. Steps may change length along the run (1 h, then 3 h): each window is the
  fewest whole steps, counted back from its end, that cover W. Windows ending near the start of the data
  reach back before it and hold fewer hours: a lower bound, so exceedance there is certain. A window with a
  missing step is missing. The evidence says which windows were used.
- **Heat days.** Calendar days are local (Beijing, UTC+8): valid times are shifted by the UTC offset before
  grouping into days. A step's day is the day of its interval's middle for maxima/minima/amounts stamped at
  the end of their interval (a maximum over 15-16 UTC is 23-24 Beijing time, the day before the step stamped
  16:00 UTC), and of its valid time for instantaneous values. A day counts, hot or not, only when the finite
  steps assigned to it cover at least ``min_day_coverage`` hours (default 18 of 24 for hourly data; a daily
  maximum covers its whole day). A spell is N consecutive counted hot days among the days that start before
  ``reference + within`` and end after the reference time.
- **Frost offset model.** Without a ground-surface temperature, ``ground_min = t2m_min - offset``
  (``air_to_ground_offset``); applied by moving the thresholds, which is exact, and named in the evidence.
- **Sandstorm wind.** Low visibility counts only at a valid time where the 10 m gust or mean wind, or the
  dust concentration, reaches its threshold: low visibility in calm air is fog, not a sandstorm.
- **Ensembles.** A member reaches "at least level i" when it reaches level i or any stronger one. The
  probability is the fraction of *valid* members that do (IMPROVER's rule): a member counts as valid at a
  cell when the criterion saw at least one finite value there in its horizon, so a member that is missing at
  a cell leaves the denominator. No valid member: NaN. Deterministic runs give 0 or 1.
- **Onset and end** of a level at a cell: the start of the earliest interval in which any member reaches at
  least that level (interval: the step for amounts and extremes, the window for rain, the day for spells;
  an instantaneous value's interval is its valid time), and the end of the latest such interval, where a
  period that reaches the end of the horizon is followed past it while it lasts. NaT where never.
- **Observed branch** ("has reached T and is likely to continue"): observations reach the level's threshold
  at a valid time in ``(reference - lookback, reference]`` AND the forecast reaches the continuation
  threshold in ``(reference, reference + continue_within]``; the probability is the fraction of members
  that continue, at cells whose observations reached the level. Onset: the observed onset; end: the later of
  the observed period's end and the continuation's end.

The kernels are numba functions over arrays shaped (member, time, cell) float32, chunked over cells and
parallel over chunks, fusing every level of a hazard into one pass over the time axis. They read the data in
place whether it is stored member-major or time-major (``(time, member, lat, lon)``, as
`risk_zoning.io.netcdf` gives ensembles), without a layout copy. Each has a plain numpy twin in the tests
(tests/reference_kernels.py) that they are compared against.

Every cell is computed from its own time series only, so a spatial tile gives exactly the corresponding
slice of the whole-grid result; `evaluate_tile` and `tile_template` make that a ``xr.map_blocks`` call:

>>> ds = xr.Dataset({"precipitation": rain}).chunk({"lat": 100, "lon": 100})  # doctest: +SKIP
>>> out = xr.map_blocks(evaluate_tile, ds, kwargs=dict(hazard="rainstorm", criteria=criteria,
...     reference_time=ref), template=tile_template(ds, "rainstorm", criteria))  # doctest: +SKIP

No module state changes after import: `evaluate` may run in several threads or processes at once.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import cf_units
import numpy as np
import xarray as xr
from numba import njit, prange

from risk_zoning import HAZARDS
from risk_zoning.grid import RegularGrid
from risk_zoning.io.netcdf import QUANTITIES
from warnings_svc.forecast.criteria import (
    SYMBOL,
    Criteria,
    FrostCriteria,
    HeatCriteria,
    LevelCriterion,
    ObservedCriterion,
    RainstormCriteria,
    SandstormCriteria,
    format_amount,
)

__all__ = [
    "REL_TOL",
    "HazardError",
    "HazardInputError",
    "HazardResult",
    "MissingInputError",
    "evaluate",
    "evaluate_all",
    "evaluate_tile",
    "stations_to_grid",
    "tile_template",
]

log = logging.getLogger(__name__)

REL_TOL = 1e-6  # values within this fraction of a threshold count as equal to it
CHUNK_CELLS = 512  # cells per kernel work item: (time + 1) x 512 float64 running sums stay in cache

Branch = Literal["forecast", "observed", "forecast+observed"]

_HOUR_NS = 3_600_000_000_000
_DAY_NS = 24 * _HOUR_NS
_NAT = np.iinfo(np.int64).min  # numpy's NaT as int64
_STEP, _WINDOW, _DAYS = 0, 1, 2
_SENSE = {"ge": 0, "gt": 1, "le": 2, "lt": 3}
_IMPORT_PID = os.getpid()

# Quantities per hazard, best first. Frost falls back on 2 m temperatures through the offset model.
_CANDIDATES: dict[str, tuple[str, ...]] = {
    "heat": ("air_temperature_max", "air_temperature"),
    "rainstorm": ("precipitation",),
    "frost": ("ground_temperature_min", "ground_temperature", "air_temperature_min", "air_temperature"),
    "sandstorm": ("visibility",),
}
_FROST_OFFSET_QUANTITIES = frozenset({"air_temperature_min", "air_temperature"})
# Values over the interval ending at their valid time (amounts, extremes); the rest are instantaneous.
_PERIOD_QUANTITIES = frozenset(
    {"air_temperature_max", "air_temperature_min", "ground_temperature_min", "precipitation"}
)
_SANDSTORM_DRIVERS = ("wind_gust", "wind_speed", "dust_concentration")
# Every quantity a hazard may read (callers pass these; `evaluate` says which one it used or what is missing).
HAZARD_INPUTS: dict[str, tuple[str, ...]] = {
    **_CANDIDATES,
    "sandstorm": (*_CANDIDATES["sandstorm"], *_SANDSTORM_DRIVERS),
}


class HazardError(Exception):
    """Base of the errors this module raises on purpose."""


class HazardInputError(HazardError):
    """An input grid or table cannot be used; `str()` is one line naming it and the problem."""


class MissingInputError(HazardInputError):
    """The inputs lack every quantity a hazard can be assessed from."""


# ---------------------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class HazardResult:
    """Warning levels of one hazard on the grid, for one branch (forecast or observed).

    - ``probability`` (level, lat, lon) float32: the fraction of valid ensemble members in which the cell
      reaches at least the level (0 or 1 for a deterministic run; NaN where no member is valid);
    - ``onset``/``end`` (level, lat, lon) datetime64[ns] UTC: start of the earliest and end of the latest
      interval reaching at least the level, over members; NaT where never;
    - ``suppressed``: why the hazard was not assessed (e.g. frost outside the growing season), else None;
    - ``evidence``: JSON-ready facts: reference time, thresholds with units, horizons, windows used,
      members, variable and its source, the offset model if used, notes.
    """

    hazard: str
    levels: tuple[str, ...]
    probability: xr.DataArray
    onset: xr.DataArray
    end: xr.DataArray
    branch: Branch
    suppressed: str | None
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_dataset(self) -> xr.Dataset:
        """The three grids as one Dataset (variables ``probability``, ``onset``, ``end``)."""
        return xr.Dataset(
            {"probability": self.probability, "onset": self.onset, "end": self.end},
            attrs={"hazard": self.hazard, "branch": self.branch, "suppressed": self.suppressed or ""},
        )


# ---------------------------------------------------------------------------------------------- kernels


@njit(cache=True, fastmath=False, nogil=True)
def _kernel_chunk(  # type: ignore[no-untyped-def]  # numba types a compiled kernel's arguments
    x,
    g0,
    g1,
    g2,
    strides,
    n_members,
    n_times,
    gate_thr,
    kind,
    sense,
    thr,
    gated,
    lo,
    hi,
    win_start,
    n_days,
    day_of,
    step_hours,
    n_day_total,
    min_cov,
    start_ns,
    end_ns,
    at_least,
    c0,
    c1,
    prob,
    onset,
    end,
):  # pragma: no cover - compiled; compared with the tests' numpy reference_kernel
    """Every level of one hazard for cells c0..c1, all members, in one pass over the time axis.

    Time runs in the outer loop and the chunk's cells in the inner loops, which are branch-free (selects,
    min/max) so they vectorise. Every comparison is rewritten as ``sign * value >= t2`` (``v > t`` is
    ``v >= nextafter(t, inf)``, ``v <= t`` is ``-v >= -t``; exact in float64). Per member and level the
    pass keeps: whether a finite value was seen in the horizon, the first and last reaching index, and
    whether the reaching period is still open at the end of the horizon (it is followed past it while it
    lasts). A level stops being followed once its horizon is over and no period is open. Members are then
    folded into counts, onset and end per level.

    The data and the three gates are flat float32 arrays: value (member m, step t, cell c) of array i is at
    ``m * strides[i, 0] + t * strides[i, 1] + c`` (cells contiguous), so member-major and time-major
    storage are both read in place; a gate with one member has member stride 0.
    """
    big = 9223372036854775807
    n_levels = kind.shape[0]
    nc = c1 - c0
    has_window = False
    has_days = False
    has_gate = False
    sign = np.empty(n_levels)
    thr2 = np.empty(n_levels)
    for lv in range(n_levels):
        if kind[lv] == 1:
            has_window = True
        elif kind[lv] == 2:
            has_days = True
        if gated[lv]:
            has_gate = True
        s = sense[lv]
        if s == 0:
            sign[lv], thr2[lv] = 1.0, thr[lv]
        elif s == 1:
            sign[lv], thr2[lv] = 1.0, np.nextafter(thr[lv], np.inf)
        elif s == 2:
            sign[lv], thr2[lv] = -1.0, -thr[lv]
        else:
            sign[lv], thr2[lv] = -1.0, np.nextafter(-thr[lv], np.inf)
    use0 = gate_thr[0] == gate_thr[0]
    use1 = gate_thr[1] == gate_thr[1]
    use2 = gate_thr[2] == gate_thr[2]
    n_rows = n_times + 1 if has_window else 1
    csum = np.zeros((n_rows, nc))
    nans = np.zeros((n_rows, nc), np.int64)
    nd = n_day_total if has_days else 1
    dmax = np.empty((nd, nc))
    dcov = np.empty((nd, nc))
    dusty = np.ones(nc, np.bool_)
    val = np.empty(nc)
    valid = np.empty((n_levels, nc), np.bool_)
    first = np.empty((n_levels, nc), np.int64)
    last = np.empty((n_levels, nc), np.int64)
    is_open = np.empty((n_levels, nc), np.bool_)
    done = np.empty(n_levels, np.bool_)
    num = np.zeros((n_levels, nc), np.int64)
    den = np.zeros((n_levels, nc), np.int64)
    on = np.full((n_levels, nc), big, np.int64)
    en = np.full((n_levels, nc), -big - 1, np.int64)

    for m in range(n_members):
        xm = m * strides[0, 0] + c0
        gm0 = m * strides[1, 0] + c0
        gm1 = m * strides[2, 0] + c0
        gm2 = m * strides[3, 0] + c0
        valid[:] = False
        first[:] = big
        last[:] = -1
        is_open[:] = False
        for lv in range(n_levels):
            done[lv] = kind[lv] == 2 or hi[lv] <= lo[lv]
        if has_days:
            dmax[:] = -np.inf
            dcov[:] = 0.0
        for t in range(n_times):
            busy = has_days
            for lv in range(n_levels):
                busy = busy or not done[lv]
            if not busy:
                break
            xt = xm + t * strides[0, 1]  # x[xt + k] is cell c0 + k at member m, step t
            if has_window:
                for k in range(nc):
                    v = np.float64(x[xt + k])
                    finite = v == v
                    csum[t + 1, k] = csum[t, k] + (v if finite else 0.0)
                    nans[t + 1, k] = nans[t, k] + (0 if finite else 1)
            if has_days:
                d = day_of[t]
                h = step_hours[t]
                for k in range(nc):
                    v = np.float64(x[xt + k])
                    dmax[d, k] = v if v > dmax[d, k] else dmax[d, k]
                    dcov[d, k] += h if v == v else 0.0
            if has_gate:
                gt0 = gm0 + t * strides[1, 1]
                gt1 = gm1 + t * strides[2, 1]
                gt2 = gm2 + t * strides[3, 1]
                for k in range(nc):
                    raised = False
                    if use0:
                        raised = raised or g0[gt0 + k] >= gate_thr[0]
                    if use1:
                        raised = raised or g1[gt1 + k] >= gate_thr[1]
                    if use2:
                        raised = raised or g2[gt2 + k] >= gate_thr[2]
                    dusty[k] = raised
            for lv in range(n_levels):
                if done[lv] or t < lo[lv]:
                    continue
                sg = sign[lv]
                th = thr2[lv]
                if kind[lv] == 1:
                    j = win_start[lv, t]
                    for k in range(nc):
                        diff = csum[t + 1, k] - csum[j, k]
                        val[k] = diff if nans[t + 1, k] == nans[j, k] else np.nan
                else:
                    for k in range(nc):
                        val[k] = np.float64(x[xt + k])
                ungated = not gated[lv]
                if t < hi[lv]:
                    for k in range(nc):
                        vk = val[k]
                        ex = (sg * vk >= th) & (dusty[k] | ungated)
                        valid[lv, k] = valid[lv, k] | (vk == vk)
                        first[lv, k] = min(first[lv, k], t if ex else big)
                        last[lv, k] = t if ex else last[lv, k]
                        is_open[lv, k] = ex
                else:
                    n_open = 0
                    for k in range(nc):
                        still = is_open[lv, k] & (sg * val[k] >= th) & (dusty[k] | ungated)
                        is_open[lv, k] = still
                        last[lv, k] = t if still else last[lv, k]
                        n_open += 1 if still else 0
                    if n_open == 0:
                        done[lv] = True
                if t == hi[lv] - 1:
                    n_open = 0
                    for k in range(nc):
                        n_open += 1 if is_open[lv, k] else 0
                    if n_open == 0:
                        done[lv] = True
        if has_days:
            for lv in range(n_levels):
                if kind[lv] != 2:
                    continue
                n = n_days[lv]
                sg = sign[lv]
                th = thr2[lv]
                for k in range(nc):
                    run = 0
                    for d in range(lo[lv], nd):
                        hot = dcov[d, k] >= min_cov and sg * dmax[d, k] >= th
                        if d < hi[lv]:
                            if dcov[d, k] > 0.0:
                                valid[lv, k] = True
                            run = run + 1 if hot else 0
                            if run >= n:
                                if first[lv, k] == big:
                                    first[lv, k] = d - n + 1
                                last[lv, k] = d
                                is_open[lv, k] = True
                            else:
                                is_open[lv, k] = False
                        elif is_open[lv, k] and hot:
                            last[lv, k] = d
                        else:
                            break
        # fold this member in: "at least level i" is level i or any stronger one
        for k in range(nc):
            reached = False
            best_on = big
            best_en = -big - 1
            for lv in range(n_levels - 1, -1, -1):
                hit = first[lv, k] != big
                r = hit
                r_on = 0
                r_en = 0
                if hit:
                    a = start_ns[lv, first[lv, k]]
                    b = end_ns[lv, last[lv, k]]
                    if at_least:
                        reached = True
                        best_on = min(best_on, a)
                        best_en = max(best_en, b)
                        r_on, r_en = best_on, best_en
                    else:
                        r_on, r_en = a, b
                elif at_least and reached:
                    r, r_on, r_en = True, best_on, best_en
                if valid[lv, k] or r:
                    den[lv, k] += 1
                if r:
                    num[lv, k] += 1
                    on[lv, k] = min(on[lv, k], r_on)
                    en[lv, k] = max(en[lv, k], r_en)
    for lv in range(n_levels):
        for k in range(nc):
            c = c0 + k
            if den[lv, k] > 0:
                prob[lv, c] = num[lv, k] / den[lv, k]
            else:
                prob[lv, c] = np.nan
            if num[lv, k] > 0:
                onset[lv, c] = on[lv, k]
                end[lv, c] = en[lv, k]
            else:
                onset[lv, c] = -big - 1
                end[lv, c] = -big - 1


@njit(parallel=True, cache=True, fastmath=False)
def _kernel_parallel(  # type: ignore[no-untyped-def]  # numba types a compiled kernel's arguments
    x, g0, g1, g2, strides, n_members, n_times, n_cells, gate_thr, kind, sense, thr, gated, lo, hi,
    win_start, n_days, day_of, step_hours, n_day_total, min_cov, start_ns, end_ns, at_least, chunk, prob,
    onset, end,
):  # fmt: skip  # pragma: no cover - compiled
    n_chunks = (n_cells + chunk - 1) // chunk
    for i in prange(n_chunks):
        c0 = i * chunk
        c1 = min(n_cells, c0 + chunk)
        _kernel_chunk(
            x, g0, g1, g2, strides, n_members, n_times, gate_thr, kind, sense, thr, gated, lo, hi,
            win_start, n_days, day_of, step_hours, n_day_total, min_cov, start_ns, end_ns, at_least, c0, c1,
            prob, onset, end,
        )  # fmt: skip


@njit(cache=True, fastmath=False, nogil=True)
def _kernel_serial(  # type: ignore[no-untyped-def]  # numba types a compiled kernel's arguments
    x, g0, g1, g2, strides, n_members, n_times, n_cells, gate_thr, kind, sense, thr, gated, lo, hi,
    win_start, n_days, day_of, step_hours, n_day_total, min_cov, start_ns, end_ns, at_least, chunk, prob,
    onset, end,
):  # fmt: skip  # pragma: no cover - compiled
    n_chunks = (n_cells + chunk - 1) // chunk
    for i in range(n_chunks):
        c0 = i * chunk
        c1 = min(n_cells, c0 + chunk)
        _kernel_chunk(
            x, g0, g1, g2, strides, n_members, n_times, gate_thr, kind, sense, thr, gated, lo, hi,
            win_start, n_days, day_of, step_hours, n_day_total, min_cov, start_ns, end_ns, at_least, c0, c1,
            prob, onset, end,
        )  # fmt: skip


@dataclass(frozen=True)
class _Plan:
    """What the kernel needs besides the data: per level (L) and per time step (T) or day (D)."""

    kind: np.ndarray  # (L,) int64: _STEP, _WINDOW or _DAYS
    sense: np.ndarray  # (L,) int64: ge, gt, le, lt -> 0..3
    thr: np.ndarray  # (L,) float64, tolerance (and offset model) applied
    gated: np.ndarray  # (L,) bool: needs raised dust (sandstorm)
    lo: np.ndarray  # (L,) int64: first step (or day) index in the horizon
    hi: np.ndarray  # (L,) int64: one past the last
    win_start: np.ndarray  # (L, T) int64: first step of the window ending at each step
    n_days: np.ndarray  # (L,) int64: consecutive days for _DAYS levels
    day_of: np.ndarray  # (T,) int64: local calendar day of each step
    step_hours: np.ndarray  # (T,) float64: hours each step covers
    n_day_total: int
    min_cov: float
    start_ns: np.ndarray  # (L, max(T, D)) int64: start of the interval judged at each index
    end_ns: np.ndarray  # (L, max(T, D)) int64: its end
    gate_thr: np.ndarray  # (3,) float64: gust, wind, dust thresholds; NaN: not used
    at_least: bool


def _use_parallel(parallel: bool | None) -> bool:
    # numba's OpenMP/workqueue layers must not be entered from several threads at once or after fork():
    # parallel kernels run only in the main thread of the process that imported this module; Dask worker
    # threads and forked workers get the serial kernel (they are the parallelism there).
    if parallel is not None:
        return parallel
    return threading.current_thread() is threading.main_thread() and os.getpid() == _IMPORT_PID


def _flat(a: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(flat, member stride, time stride) in elements for an (M, T, C) array, reading it in place when it
    is C-contiguous (member-major) or a transposed view of a C-contiguous (T, M, C) buffer (time-major, as
    `_unpack` gives ``(time, member, lat, lon)`` data); any other layout or dtype is copied member-major.
    The flat array is always C-contiguous, writeable float32: numba compiles one signature only (it types
    read-only arrays apart, and compiling a second variant at run time would stall a worker for seconds).
    """
    m, t, c = a.shape
    if a.dtype == np.float32 and a.flags.c_contiguous:
        flat, ms, ts = a.reshape(-1), t * c, c
    elif a.dtype == np.float32 and a.transpose(1, 0, 2).flags.c_contiguous:
        flat, ms, ts = a.transpose(1, 0, 2).reshape(-1), c, m * c
    else:
        flat, ms, ts = np.ascontiguousarray(a, dtype=np.float32).reshape(-1), t * c, c
    if not flat.flags.writeable:
        flat = flat.copy()  # same layout, same strides
    return flat, (ms if m > 1 else 0), ts


def _run_kernel(
    x: np.ndarray, gates: Sequence[np.ndarray], plan: _Plan, *, parallel: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probability (L, C) float32, onset (L, C) int64 ns, end (L, C) int64 ns) for x (M, T, C).

    Each gate is (M or 1, T, C), or anything (`_NO_GATE`) where its threshold in ``plan.gate_thr`` is NaN.
    Inputs are read in place when `_flat` can (no copy of time-major ensembles).
    """
    n_members, n_times, n_cells = x.shape
    for a, t in zip(gates, plan.gate_thr, strict=True):
        if t == t and (a.ndim != 3 or a.shape[0] not in (1, n_members) or a.shape[1:] != x.shape[1:]):
            raise ValueError(f"gate of shape {a.shape} does not match data of shape {x.shape}")
    flats, strides = [], np.zeros((4, 2), np.int64)
    for i, a in enumerate((x, *gates)):
        flat, strides[i, 0], strides[i, 1] = _flat(a)
        flats.append(flat)
    n_levels = plan.kind.shape[0]
    prob = np.empty((n_levels, n_cells), np.float32)
    onset = np.empty((n_levels, n_cells), np.int64)
    end = np.empty((n_levels, n_cells), np.int64)
    kernel = _kernel_parallel if _use_parallel(parallel) else _kernel_serial
    kernel(
        flats[0], flats[1], flats[2], flats[3], strides, np.int64(n_members), np.int64(n_times),
        np.int64(n_cells), plan.gate_thr, plan.kind, plan.sense, plan.thr, plan.gated, plan.lo, plan.hi,
        plan.win_start, plan.n_days, plan.day_of, plan.step_hours, np.int64(plan.n_day_total),
        np.float64(plan.min_cov), plan.start_ns, plan.end_ns, bool(plan.at_least), np.int64(CHUNK_CELLS),
        prob, onset, end,
    )  # fmt: skip
    return prob, onset, end


# ---------------------------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _TimeAxis:
    valid: np.ndarray  # (T,) int64 ns, strictly increasing
    step: np.ndarray  # (T,) int64 ns: length of each step's interval
    start: np.ndarray  # (T,) int64 ns: start of the interval judged at each step
    period: bool  # values over (valid - step, valid], else instantaneous at valid


@dataclass(frozen=True)
class _Spec:
    """One row of a plan: a criterion and its horizon (h0, h1] in ns."""

    name: str
    kind: int
    comparison: str
    threshold: float
    h0: int
    h1: int
    window_ns: int = 0
    n_days: int = 0
    gated: bool = False


def _effective_threshold(comparison: str, threshold: float, shift: float) -> float:
    tol = REL_TOL * abs(threshold)
    moved = threshold - tol if comparison in ("ge", "lt") else threshold + tol
    return moved + shift


def _time_axis(times: np.ndarray, reference_ns: int, period: bool, what: str) -> _TimeAxis:
    valid = times.astype("datetime64[ns]").astype(np.int64)
    if valid.size == 0:
        raise HazardInputError(f"{what}: no time steps")
    if (valid == _NAT).any():
        raise HazardInputError(f"{what}: missing (NaT) valid times")
    if valid.size > 1 and not (np.diff(valid) > 0).all():
        raise HazardInputError(f"{what}: valid times are not strictly increasing")
    step = np.empty_like(valid)
    if valid.size > 1:
        step[1:] = np.diff(valid)
        step[0] = step[1]
    else:
        step[0] = valid[0] - reference_ns if valid[0] > reference_ns else _HOUR_NS
    start = valid - step if period else valid.copy()
    return _TimeAxis(valid=valid, step=step, start=start, period=period)


def _iso(ns: int | np.integer) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")) + "Z"


def _hours(ns: int | np.integer | float) -> float:
    return float(f"{float(ns) / _HOUR_NS:.6g}")


def _build_plan(
    specs: Sequence[_Spec],
    axis: _TimeAxis,
    *,
    utc_offset_ns: int,
    min_day_coverage_h: float,
    gate_thr: np.ndarray,
    shift: float,
    at_least: bool,
) -> tuple[_Plan, dict[str, dict[str, Any]], list[str]]:
    """The kernel plan for `specs` on `axis`, and per-level evidence and notes about windows and days."""
    n_times, n_levels = axis.valid.size, len(specs)
    # calendar days: a value over an interval belongs to the day of the interval's middle
    when = axis.valid - axis.step // 2 if axis.period else axis.valid
    local_day = np.floor_divide(when + utc_offset_ns, _DAY_NS)
    day0 = int(local_day.min())
    day_of = (local_day - day0).astype(np.int64)
    n_day_total = int(day_of.max()) + 1
    day_start = (day0 + np.arange(n_day_total, dtype=np.int64)) * _DAY_NS - utc_offset_ns
    day_end = day_start + _DAY_NS
    width = max(n_times, n_day_total)

    kind = np.zeros(n_levels, np.int64)
    sense = np.zeros(n_levels, np.int64)
    thr = np.zeros(n_levels, np.float64)
    gated = np.zeros(n_levels, np.bool_)
    lo = np.zeros(n_levels, np.int64)
    hi = np.zeros(n_levels, np.int64)
    win_start = np.zeros((n_levels, n_times), np.int64)
    n_days = np.zeros(n_levels, np.int64)
    start_ns = np.zeros((n_levels, width), np.int64)
    end_ns = np.zeros((n_levels, width), np.int64)
    evidence: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for i, sp in enumerate(specs):
        ev: dict[str, Any] = {"horizon": f"valid times in ({_iso(sp.h0)}, {_iso(sp.h1)}]"}
        kind[i], sense[i], gated[i] = sp.kind, _SENSE[sp.comparison], sp.gated
        thr[i] = _effective_threshold(sp.comparison, sp.threshold, shift)
        if sp.kind == _DAYS:
            n_days[i] = sp.n_days
            lo[i] = np.searchsorted(day_end, sp.h0, side="right")
            hi[i] = np.searchsorted(day_start, sp.h1, side="left")
            start_ns[i, :n_day_total] = day_start
            end_ns[i, :n_day_total] = day_end
            cover = np.bincount(day_of, weights=axis.step / _HOUR_NS, minlength=n_day_total)
            offset_h = _hours(utc_offset_ns)
            ev["days"] = {
                str(np.datetime64(int(day0 + d), "D")): {
                    "covered_h": _hours(cover[d] * _HOUR_NS),
                    "counted": bool(cover[d] >= min_day_coverage_h),
                }
                for d in range(int(lo[i]), int(hi[i]))
            }
            ev["calendar"] = (
                f"local days (UTC{offset_h:+g} h); a day counts with >= {min_day_coverage_h:g} h covered"
            )
        else:
            lo[i] = np.searchsorted(axis.valid, sp.h0, side="right")
            hi[i] = np.searchsorted(axis.valid, sp.h1, side="right")
            ev["steps_in_horizon"] = int(hi[i] - lo[i])
            end_ns[i, :n_times] = axis.valid
            if sp.kind == _WINDOW:
                starts = axis.valid - axis.step  # amounts are over the interval ending at the valid time
                j = np.searchsorted(starts, axis.valid - sp.window_ns, side="right") - 1
                partial = j < 0
                j = np.clip(j, 0, None)
                win_start[i] = j
                start_ns[i, :n_times] = starts[j]
                ev.update(_window_evidence(sp.window_ns, axis, j, partial, int(lo[i]), int(hi[i])))
            else:
                start_ns[i, :n_times] = axis.start
        if hi[i] <= lo[i]:
            notes.append(f"{sp.name}: no data in the horizon; the level is not assessed (probability NaN)")
        evidence[sp.name] = ev
    plan = _Plan(
        kind=kind,
        sense=sense,
        thr=thr,
        gated=gated,
        lo=lo,
        hi=hi,
        win_start=win_start,
        n_days=n_days,
        day_of=day_of,
        step_hours=(axis.step / _HOUR_NS).astype(np.float64),
        n_day_total=n_day_total,
        min_cov=float(min_day_coverage_h),
        start_ns=start_ns,
        end_ns=end_ns,
        gate_thr=np.asarray(gate_thr, np.float64),
        at_least=at_least,
    )
    return plan, evidence, notes


def _window_evidence(
    window_ns: int, axis: _TimeAxis, j: np.ndarray, partial: np.ndarray, lo: int, hi: int
) -> dict[str, Any]:
    """Which windows the rainstorm criterion really used, in words and hours."""
    ev: dict[str, Any] = {}
    if hi <= lo:
        return ev
    idx = np.arange(lo, hi)
    full = idx[~partial[idx]]
    w = _hours(window_ns)
    used = sorted({_hours(v) for v in (axis.valid[full] - (axis.valid - axis.step)[j[full]])})
    steps = sorted({_hours(s) for s in axis.step[idx]})
    ev["window_used_h"] = used
    if used and min(steps) > w:
        ev["window_note"] = (
            f"steps of {', '.join(f'{s:g}' for s in steps)} h are longer than the {w:g} h window: "
            "the amount of one step is used"
        )
    elif used and used != [w]:
        ev["window_note"] = (
            f"{w:g} h is not a whole number of {', '.join(f'{s:g}' for s in steps)} h steps: the fewest whole "
            f"steps covering it are used ({', '.join(f'{u:g}' for u in used)} h)"
        )
    if partial[idx].any():
        last_partial = idx[partial[idx]][-1]
        ev["partial_windows"] = (
            f"windows ending up to {_iso(axis.valid[last_partial])} reach back before the first step and "
            "cover fewer hours (a lower bound: reaching the threshold is certain, not reaching it is not)"
        )
    return ev


# ---------------------------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class _Field:
    """One canonical DataArray unpacked for the kernel."""

    quantity: str
    values: np.ndarray  # (M, T, C) float32
    times: np.ndarray  # (T,) datetime64[ns]
    lat: np.ndarray
    lon: np.ndarray
    attrs: dict[str, Any]
    period: bool


def _unpack(da: xr.DataArray, quantity: str, role: str) -> _Field:
    what = f"{role} {quantity}"
    if not isinstance(da, xr.DataArray):
        raise HazardInputError(f"{what}: not an xarray.DataArray ({type(da).__name__})")
    dims = set(map(str, da.dims))
    if not {"time", "lat", "lon"} <= dims or not dims <= {"time", "member", "lat", "lon"}:
        raise HazardInputError(
            f"{what}: dims ({', '.join(map(str, da.dims))}) are not (time, [member], lat, lon)"
        )
    if not np.issubdtype(da["time"].dtype, np.datetime64):
        raise HazardInputError(f"{what}: time is not datetime64 (got {da['time'].dtype})")
    order = ("member", "time", "lat", "lon") if "member" in dims else ("time", "lat", "lon")
    values = np.asarray(da.transpose(*order).values, dtype=np.float32)
    if "member" not in dims:
        values = values[None]
    m, t, ny, nx = values.shape
    method = str(da.attrs.get("cell_methods", ""))
    period = quantity in _PERIOD_QUANTITIES or any(
        f"time: {w}" in method for w in ("maximum", "minimum", "sum", "mean")
    )
    return _Field(
        quantity=quantity,
        values=values.reshape(m, t, ny * nx),
        times=da["time"].values,
        lat=np.asarray(da["lat"].values),
        lon=np.asarray(da["lon"].values),
        attrs=dict(da.attrs),
        period=period,
    )


def _same_grid(a: _Field, b: _Field, role: str) -> None:
    # coordinates computed in different ways (39.3 + 0.5 * 0.1 vs 39.35) differ in the last bits
    same = a.lat.shape == b.lat.shape and a.lon.shape == b.lon.shape
    if not (
        same and np.allclose(a.lat, b.lat, rtol=0, atol=1e-6) and np.allclose(a.lon, b.lon, rtol=0, atol=1e-6)
    ):
        raise HazardInputError(
            f"{role} {b.quantity} is not on the same lat/lon grid as {a.quantity} "
            f"({b.lat.size}x{b.lon.size} vs {a.lat.size}x{a.lon.size} cells)"
        )


def _source(f: _Field) -> dict[str, Any]:
    keys = ("source_files", "source_variable", "original_units", "conversion", "regridding")
    return {"quantity": f.quantity, **{k: str(f.attrs[k]) for k in keys if k in f.attrs}}


@dataclass(frozen=True)
class _Inputs:
    main: _Field
    gates: tuple[np.ndarray, np.ndarray, np.ndarray]
    gate_thr: np.ndarray
    shift: float  # added to every threshold (offset model)
    evidence: dict[str, Any]


_NO_GATE = np.full((1, 1, 1), np.nan, np.float32)


def _select(
    hazard: str,
    hc: HeatCriteria | RainstormCriteria | FrostCriteria | SandstormCriteria,
    data: Mapping[str, xr.DataArray],
    role: str,
) -> _Inputs:
    """The best available variable(s) for `hazard` in `data` ('forecast' or 'observations')."""
    quantity = next((q for q in _CANDIDATES[hazard] if data.get(q) is not None), None)
    if quantity is None:
        raise MissingInputError(
            f"{role}: {hazard} needs one of {', '.join(_CANDIDATES[hazard])} "
            f"(have: {', '.join(sorted(map(str, data))) or 'nothing'})"
        )
    main = _unpack(data[quantity], quantity, role)
    evidence: dict[str, Any] = {"variable": _source(main)}
    notes: list[str] = []
    shift = 0.0
    if hazard == "heat" and quantity == "air_temperature":
        notes.append(
            "daily maxima are the maxima of instantaneous 2 m temperatures (no maximum-temperature field): "
            "with 3-hourly or coarser steps they underestimate the true maximum"
        )
    if isinstance(hc, FrostCriteria) and quantity in _FROST_OFFSET_QUANTITIES:
        shift = hc.air_to_ground_offset
        evidence["offset_model"] = (
            f"ground_temperature_min = {quantity} - {format_amount(shift, 'degC')} "
            "(no ground-surface temperature in the data; air_to_ground_offset)"
        )
    if isinstance(hc, FrostCriteria) and quantity == "ground_temperature":
        notes.append("minima of instantaneous ground-surface temperatures (no minimum field)")
    gates = (_NO_GATE, _NO_GATE, _NO_GATE)
    gate_thr = np.full(3, np.nan)
    if isinstance(hc, SandstormCriteria):
        gates, gate_thr, gate_evidence = _sandstorm_gates(hc, data, main, role)
        evidence["dust_raised_by"] = gate_evidence
    if notes:
        evidence["notes"] = notes
    return _Inputs(main=main, gates=gates, gate_thr=gate_thr, shift=shift, evidence=evidence)


def _sandstorm_gates(
    hc: SandstormCriteria, data: Mapping[str, xr.DataArray], vis: _Field, role: str
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray, dict[str, Any]]:
    """Gust, wind and dust arrays on the visibility's steps, their thresholds, and what was used."""
    arrays: list[np.ndarray] = []
    thresholds = np.full(3, np.nan)
    used: dict[str, Any] = {}
    skipped: list[str] = []
    configured: dict[str, Any] = {
        "wind_gust": hc.gust_ge,
        "wind_speed": hc.wind_ge,
        "dust_concentration": hc.dust_ge,
    }
    for i, name in enumerate(_SANDSTORM_DRIVERS):
        da, limit = data.get(name), configured[name]
        if da is None or limit is None:
            arrays.append(_NO_GATE)
            if da is not None:
                skipped.append(f"{name} present but no threshold configured")
            continue
        if name == "dust_concentration":
            value, text = limit.split(maxsplit=1)
            units = str(da.attrs.get("units", ""))
            try:
                limit = float(cf_units.Unit(text).convert(float(value), cf_units.Unit(units)))
            except ValueError:
                arrays.append(_NO_GATE)
                skipped.append(f"dust_concentration in '{units}' cannot be compared with dust_ge {limit}")
                continue
            shown = f"{limit:g} {units}" if units != text else f"{value} {text}"
        else:
            shown = format_amount(limit, "m s-1")
        if not np.array_equal(da["time"].values, vis.times):
            da = da.reindex(time=vis.times)
            skipped.append(
                f"{name} reindexed onto the visibility's valid times (steps without {name} cannot show dust)"
            )
        f = _unpack(da, name, role)
        _same_grid(vis, f, role)
        if f.values.shape[0] not in (1, vis.values.shape[0]):
            raise HazardInputError(
                f"{role} {name} has {f.values.shape[0]} members, visibility {vis.values.shape[0]}"
            )
        arrays.append(f.values)
        thresholds[i] = _effective_threshold("ge", limit, 0.0)
        used[name] = {"ge": shown, **_source(f)}
    if not used:
        raise MissingInputError(
            f"{role}: sandstorm needs wind_gust, wind_speed or dust_concentration besides visibility "
            "(low visibility in calm air is fog, not a sandstorm)"
            + (f"; {'; '.join(skipped)}" if skipped else "")
        )
    evidence: dict[str, Any] = {
        "rule": "visibility counts only at valid times where any of these is reached: "
        + " or ".join(f"{k} >= {v['ge']}" for k, v in used.items())
        + "; low visibility in calm air is fog, not a sandstorm",
        **used,
    }
    if skipped:
        evidence["notes"] = skipped
    return (arrays[0], arrays[1], arrays[2]), thresholds, evidence


# ---------------------------------------------------------------------------------------------- evaluate


def _as_ns(reference_time: Any) -> int:
    if isinstance(reference_time, datetime) and reference_time.tzinfo is not None:
        reference_time = reference_time.astimezone(UTC).replace(tzinfo=None)
    try:
        value = np.datetime64(reference_time, "ns")
    except (TypeError, ValueError) as e:
        raise ValueError(f"reference_time {reference_time!r} is not a time") from e
    if np.isnat(value):
        raise ValueError("reference_time is NaT")
    return int(value.astype(np.int64))


def _level_specs(levels: Sequence[LevelCriterion], h0: int, h1_of: Any, *, gated: bool) -> list[_Spec]:
    specs = []
    for lv in levels:
        if lv.window_h is not None:
            kind = _WINDOW
        elif lv.consecutive_days is not None:
            kind = _DAYS
        else:
            kind = _STEP
        specs.append(
            _Spec(
                name=lv.name,
                kind=kind,
                comparison=lv.comparison,
                threshold=lv.threshold,
                h0=h0,
                h1=h1_of(lv),
                window_ns=round((lv.window_h or 0.0) * _HOUR_NS),
                n_days=lv.consecutive_days or 0,
                gated=gated,
            )
        )
    return specs


def evaluate(
    hazard: str,
    data: Mapping[str, xr.DataArray],
    criteria: Criteria,
    *,
    reference_time: np.datetime64 | datetime | str,
    observations: Mapping[str, xr.DataArray] | None = None,
    parallel: bool | None = None,
) -> HazardResult:
    """Warning levels of `hazard` from canonical forecast grids (see the module docstring for the rules).

    `data` maps quantity names (`risk_zoning.io.netcdf.QUANTITIES`) to canonical DataArrays on one lat/lon grid; the best available
    variable is used and named in the evidence (heat: air_temperature_max, else air_temperature; frost:
    ground_temperature_min, ground_temperature, else air_temperature_min/air_temperature through the
    offset model; sandstorm: visibility with wind_gust/wind_speed/dust_concentration). Without
    `observations` the result is the forecast branch; with them (gridded, same quantity names, same grid,
    no members) the observed branch. `parallel`: None runs the parallel kernel only in the main thread of
    the importing process, the serial one elsewhere (Dask workers, forked pools).

    Raises `MissingInputError` when no usable variable is there, `HazardInputError` for unusable grids,
    `ValueError` for an unknown hazard.

    >>> r = evaluate("rainstorm", {"precipitation": rain}, criteria, reference_time=ref)  # doctest: +SKIP
    >>> r.probability.sel(level="orange").values  # doctest: +SKIP
    """
    if hazard not in HAZARDS:
        raise ValueError(f"unknown hazard '{hazard}'; known: {', '.join(HAZARDS)}")
    ref = _as_ns(reference_time)
    hc = criteria.hazard(hazard)
    levels = hc.levels()
    fc = _select(hazard, hc, data, "forecast")
    branch: Branch = "forecast" if observations is None else "observed"
    evidence: dict[str, Any] = {
        "hazard": hazard,
        "branch": branch,
        "reference_time": _iso(ref),
        "criteria": {"source": hc.source, "files": list(criteria.files)},
        "levels": {lv.name: lv.describe() for lv in levels},
        "comparison": f"ge/gt/le/lt with a relative tolerance of {REL_TOL:g}",
        "members": int(fc.main.values.shape[0]),
        "time_steps": int(fc.main.values.shape[1]),
        **fc.evidence,
    }
    offset_ns = round(criteria.calendar.utc_offset * _HOUR_NS)
    month = int(str(np.datetime64(ref + offset_ns, "ns").astype("datetime64[M]"))[5:7])
    if month not in hc.months:
        reason = (
            f"{hazard} is assessed in months {_months_text(hc.months)} only; the reference time "
            f"{_iso(ref)} is in month {month} (local time)"
        )
        evidence["suppressed"] = reason
        n = len(levels) * fc.main.values.shape[2]
        zeros = np.zeros(n, np.float32).reshape(len(levels), -1)
        never = np.full_like(zeros, _NAT, dtype=np.int64)
        return _result(hazard, levels, fc.main, zeros, never, never, branch, reason, evidence)
    if observations is None:
        prob, onset, end = _forecast_branch(hc, levels, fc, ref, offset_ns, evidence, parallel)
    else:
        prob, onset, end = _observed_branch(
            hazard, hc, levels, fc, observations, ref, offset_ns, evidence, parallel
        )
    return _result(hazard, levels, fc.main, prob, onset, end, branch, None, evidence)


def _months_text(months: Iterable[int]) -> str:
    return ", ".join(str(m) for m in sorted(months))


def _forecast_branch(
    hc: Any,
    levels: Sequence[LevelCriterion],
    fc: _Inputs,
    ref: int,
    offset_ns: int,
    evidence: dict[str, Any],
    parallel: bool | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axis = _time_axis(fc.main.times, ref, fc.main.period, f"forecast {fc.main.quantity}")
    specs = _level_specs(
        levels, ref, lambda lv: ref + round(lv.within_h * _HOUR_NS), gated=isinstance(hc, SandstormCriteria)
    )
    plan, level_ev, notes = _build_plan(
        specs,
        axis,
        utc_offset_ns=offset_ns,
        min_day_coverage_h=getattr(hc, "min_day_coverage", 24.0),
        gate_thr=fc.gate_thr,
        shift=fc.shift,
        at_least=True,
    )
    _merge_level_evidence(evidence, level_ev, notes, axis)
    return _run_kernel(fc.main.values, fc.gates, plan, parallel=parallel)


def _observed_branch(
    hazard: str,
    hc: Any,
    levels: Sequence[LevelCriterion],
    fc: _Inputs,
    observations: Mapping[str, xr.DataArray],
    ref: int,
    offset_ns: int,
    evidence: dict[str, Any],
    parallel: bool | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    oc: ObservedCriterion = hc.observed_criterion()
    ob = _select(hazard, hc, observations, "observations")
    _same_grid(fc.main, ob.main, "observations")
    if ob.main.values.shape[0] != 1:
        raise HazardInputError(f"observations {ob.main.quantity} have {ob.main.values.shape[0]} members")
    sandstorm = isinstance(hc, SandstormCriteria)
    min_cov = getattr(hc, "min_day_coverage", 24.0)
    # 1. observations reach the level in (ref - lookback, ref]
    o_axis = _time_axis(ob.main.times, ref, ob.main.period, f"observations {ob.main.quantity}")
    h0 = ref - round(oc.lookback_h * _HOUR_NS)
    o_specs = _level_specs(levels, h0, lambda _lv: ref, gated=sandstorm)
    o_plan, o_ev, o_notes = _build_plan(
        o_specs,
        o_axis,
        utc_offset_ns=offset_ns,
        min_day_coverage_h=min_cov,
        gate_thr=ob.gate_thr,
        shift=ob.shift,
        at_least=True,
    )
    o_prob, o_onset, o_end = _run_kernel(ob.main.values, ob.gates, o_plan, parallel=parallel)
    # 2. the forecast continues in (ref, ref + continue_within]
    f_axis = _time_axis(fc.main.times, ref, fc.main.period, f"forecast {fc.main.quantity}")
    c_spec = _Spec(
        name="continuation",
        kind=_WINDOW if oc.window_h is not None else _STEP,
        comparison=oc.comparison,
        threshold=oc.threshold,
        h0=ref,
        h1=ref + round(oc.continue_within_h * _HOUR_NS),
        window_ns=round((oc.window_h or 0.0) * _HOUR_NS),
        gated=sandstorm,
    )
    c_plan, c_ev, c_notes = _build_plan(
        [c_spec],
        f_axis,
        utc_offset_ns=offset_ns,
        min_day_coverage_h=min_cov,
        gate_thr=fc.gate_thr,
        shift=fc.shift,
        at_least=False,
    )
    c_prob, _, c_end = _run_kernel(fc.main.values, fc.gates, c_plan, parallel=parallel)
    prob = (o_prob * c_prob[0][None, :]).astype(np.float32)
    hit = prob > 0
    onset = np.where(hit, o_onset, _NAT)
    end = np.where(hit, np.maximum(o_end, np.broadcast_to(c_end[0], o_end.shape)), _NAT)
    evidence["observed"] = {
        **oc.describe(),
        "observations": ob.evidence,
        "observed_levels": o_ev,
        "continuation": c_ev["continuation"],
        "rule": f"observations reach the level in ({_iso(h0)}, {_iso(ref)}] and the forecast reaches "
        f"{SYMBOL[oc.comparison]} {format_amount(oc.threshold, oc.units)} in "
        f"({_iso(ref)}, {_iso(c_spec.h1)}]",
    }
    if o_notes or c_notes:
        evidence.setdefault("notes", []).extend(o_notes + c_notes)
    return prob, onset.astype(np.int64), end.astype(np.int64)


def _merge_level_evidence(
    evidence: dict[str, Any], level_ev: dict[str, dict[str, Any]], notes: list[str], axis: _TimeAxis
) -> None:
    for name, ev in level_ev.items():
        evidence["levels"][name].update(ev)
    evidence["valid_times"] = f"{_iso(axis.valid[0])} .. {_iso(axis.valid[-1])}"
    evidence["step_hours"] = sorted({_hours(s) for s in axis.step})
    if notes:
        evidence.setdefault("notes", []).extend(notes)


def _result(
    hazard: str,
    levels: Sequence[LevelCriterion],
    main: _Field,
    prob: np.ndarray,
    onset: np.ndarray,
    end: np.ndarray,
    branch: Branch,
    suppressed: str | None,
    evidence: dict[str, Any],
) -> HazardResult:
    names = tuple(lv.name for lv in levels)
    shape = (len(names), main.lat.size, main.lon.size)
    coords = {"level": list(names), "lat": main.lat, "lon": main.lon}
    dims = ("level", "lat", "lon")
    probability = xr.DataArray(
        prob.reshape(shape).astype(np.float32, copy=False),
        dims=dims,
        coords=coords,
        name=f"probability_of_{hazard}_at_or_above_level",
        attrs={
            "units": "1",
            "long_name": f"fraction of valid ensemble members in which the cell reaches at least the {hazard} level",
        },
    )

    def times(a: np.ndarray, what: str) -> xr.DataArray:
        return xr.DataArray(
            a.reshape(shape).view("datetime64[ns]"),
            dims=dims,
            coords=coords,
            name=f"{hazard}_{what}_time",
            attrs={"long_name": f"{what} of the period reaching at least the {hazard} level (UTC)"},
        )

    return HazardResult(
        hazard=hazard,
        levels=names,
        probability=probability,
        onset=times(onset, "onset"),
        end=times(end, "end"),
        branch=branch,
        suppressed=suppressed,
        evidence=evidence,
    )


def evaluate_all(
    data: Mapping[str, xr.DataArray],
    criteria: Criteria,
    *,
    reference_time: np.datetime64 | datetime | str,
    hazards: Sequence[str] = HAZARDS,
    observations: Mapping[str, xr.DataArray] | None = None,
    parallel: bool | None = None,
) -> dict[str, HazardResult]:
    """`evaluate` for several hazards; hazards without usable inputs are left out (logged).

    Keys are hazard names for the forecast branch and ``"<hazard>/observed"`` for the observed branch,
    which is evaluated too when `observations` hold what the hazard needs.
    """
    out: dict[str, HazardResult] = {}
    for hazard in hazards:
        try:
            out[hazard] = evaluate(hazard, data, criteria, reference_time=reference_time, parallel=parallel)
        except MissingInputError as e:
            log.info("hazard not assessed", extra={"hazard": hazard, "reason": str(e)})
            continue
        if observations is None:
            continue
        try:
            out[f"{hazard}/observed"] = evaluate(
                hazard,
                data,
                criteria,
                reference_time=reference_time,
                observations=observations,
                parallel=parallel,
            )
        except MissingInputError as e:
            log.info("observed branch not assessed", extra={"hazard": hazard, "reason": str(e)})
    return out


def evaluate_tile(
    tile: xr.Dataset,
    hazard: str,
    criteria: Criteria,
    reference_time: np.datetime64 | datetime | str,
    parallel: bool | None = None,
) -> xr.Dataset:
    """`evaluate` on a Dataset of quantities (one spatial tile), as a Dataset: the function for
    ``xr.map_blocks``. Chunk only lat and lon: every tile needs its whole time axis and all members."""
    data = {str(k): v for k, v in tile.data_vars.items()}
    result = evaluate(hazard, data, criteria, reference_time=reference_time, parallel=parallel)
    return result.to_dataset()


def tile_template(grid: xr.Dataset, hazard: str, criteria: Criteria) -> xr.Dataset:
    """The (lazy) shape of `evaluate_tile`'s output over `grid`, chunked like it: ``map_blocks``'s template."""
    names = [lv.name for lv in criteria.hazard(hazard).levels()]
    quantity = next((q for q in _CANDIDATES[hazard] if q in grid.data_vars), None)
    if quantity is None:
        raise MissingInputError(f"forecast: {hazard} needs one of {', '.join(_CANDIDATES[hazard])}")
    base = grid[quantity].isel(time=0, drop=True)
    if "member" in base.dims:
        base = base.isel(member=0, drop=True)
    base = base.drop_vars([c for c in base.coords if c not in ("lat", "lon")])
    base = base.expand_dims(level=names).transpose("level", "lat", "lon")
    out = xr.Dataset(
        {
            "probability": xr.full_like(base, np.nan, dtype=np.float32),
            "onset": xr.full_like(base, np.datetime64("NaT", "ns"), dtype="datetime64[ns]"),
            "end": xr.full_like(base, np.datetime64("NaT", "ns"), dtype="datetime64[ns]"),
        }
    )
    for v in out.data_vars.values():
        v.attrs = {}
    return out


# ---------------------------------------------------------------------------------------------- stations

# Column names of station tables -> quantity, and how several stations in one cell combine (the value that
# is more severe for the hazards using the quantity; plain mean for instantaneous 2 m temperature).
_STATION_COLUMNS: dict[str, str] = {
    "tmax": "air_temperature_max",
    "tmin": "air_temperature_min",
    "t": "air_temperature",
    "t2m": "air_temperature",
    "tas": "air_temperature",
    "gst": "ground_temperature",
    "gstmin": "ground_temperature_min",
    "pre": "precipitation",
    "precip": "precipitation",
    "rain": "precipitation",
    "vis": "visibility",
    "ws": "wind_speed",
    "wind": "wind_speed",
    "gust": "wind_gust",
    "dust": "dust_concentration",
}
_CANONICAL_UNITS: dict[str, str | None] = {q.name: q.units for q in QUANTITIES.values()}
_COMBINE: dict[str, str] = {
    "air_temperature": "mean",
    "air_temperature_max": "max",
    "air_temperature_min": "min",
    "ground_temperature": "min",
    "ground_temperature_min": "min",
    "precipitation": "max",
    "visibility": "min",
    "wind_speed": "max",
    "wind_gust": "max",
    "dust_concentration": "max",
}


def stations_to_grid(text: str, grid: RegularGrid, *, source: str = "stations") -> dict[str, xr.DataArray]:
    """Station rows placed in the grid cell containing each station, one canonical DataArray per quantity.

    Columns: ``station_id, lon, lat, time`` and quantity columns named ``name[units]``, where name is a
    grid quantity (``air_temperature_max``) or a short name (tmax, tmin, t, gst, gstmin, pre, vis, ws,
    gust, dust), e.g. ``tmax[degC]``, ``pre[mm]`` (amount over the interval ending at `time`), ``vis[km]``.
    Times are ISO 8601 with a UTC offset (``2024-07-01T08:00+08:00``); an empty value is missing. Values are
    converted to canonical units (dust keeps its own). Stations outside the grid are left out (counted in
    ``attrs``); several stations in one cell combine to the more severe value (max of maxima, amounts, wind
    and dust; min of minima, ground temperatures and visibility; mean of 2 m temperature). Cells without a
    station are NaN. Any bad row raises `HazardInputError` naming the source, the line and the column.

    >>> g = RegularGrid(lon_min=106.7, lat_min=39.6, step=0.1, nx=2, ny=2)
    >>> obs = stations_to_grid("station_id,lon,lat,time,tmax[degC]\\n53512,106.78,39.65,2024-07-01T08:00+08:00,36.5\\n", g)
    >>> float(obs["air_temperature_max"].isel(time=0, lat=0, lon=0))
    36.5
    """
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise HazardInputError(f"{source}: empty file") from None
    required = ["station_id", "lon", "lat", "time"]
    missing = [c for c in required if c not in header]
    if missing:
        raise HazardInputError(f"{source}: line 1: missing column(s) {', '.join(missing)}")
    columns: list[tuple[int, str, str, str, cf_units.Unit | None]] = []  # index, header, quantity, units
    for i, h in enumerate(header):
        if h in required:
            continue
        name, _, rest = h.partition("[")
        name = name.strip()
        quantity = _STATION_COLUMNS.get(name.lower(), name if name in _CANONICAL_UNITS else None)
        if quantity is None:
            raise HazardInputError(
                f"{source}: line 1: column '{h}' is not a known quantity "
                f"({', '.join(sorted(_STATION_COLUMNS))} or a grid quantity name)"
            )
        if not rest.endswith("]") or not rest[:-1].strip():
            raise HazardInputError(
                f"{source}: line 1: column '{h}' needs units in brackets, e.g. 'tmax[degC]'"
            )
        units_text = rest[:-1].strip()
        try:
            unit = cf_units.Unit(units_text)
        except ValueError:
            raise HazardInputError(
                f"{source}: line 1: column '{h}': units '{units_text}' are not UDUNITS"
            ) from None
        canonical = _CANONICAL_UNITS[quantity]
        if canonical is not None and not unit.is_convertible(cf_units.Unit(canonical)):
            raise HazardInputError(
                f"{source}: line 1: column '{h}': '{units_text}' cannot be converted to {canonical}"
            )
        if any(c[2] == quantity for c in columns):
            raise HazardInputError(f"{source}: line 1: column '{h}': {quantity} appears twice")
        columns.append((i, h, quantity, units_text, unit if canonical is not None else None))
    if not columns:
        raise HazardInputError(f"{source}: line 1: no quantity columns (e.g. 'tmax[degC]')")
    index = {c: header.index(c) for c in required}
    records: dict[str, list[tuple[int, int, float]]] = {c[2]: [] for c in columns}  # cell, time, value
    seen: set[tuple[str, int]] = set()
    outside: set[str] = set()
    placed: set[str] = set()
    for line, row in enumerate(reader, start=2):
        if not row or all(not v.strip() for v in row):
            continue
        if len(row) != len(header):
            raise HazardInputError(f"{source}: line {line}: {len(row)} fields, the header has {len(header)}")
        station = row[index["station_id"]].strip()
        if not station:
            raise HazardInputError(f"{source}: line {line}: column 'station_id' is empty")
        lon = _station_number(row[index["lon"]], source, line, "lon", -180.0, 360.0)
        lat = _station_number(row[index["lat"]], source, line, "lat", -90.0, 90.0)
        when = _station_time(row[index["time"]], source, line)
        if (station, when) in seen:
            raise HazardInputError(f"{source}: line {line}: station {station} at {_iso(when)} appears twice")
        seen.add((station, when))
        cell = int(grid.flat_index(lon, lat))
        if cell < 0:
            outside.add(station)
            continue
        placed.add(station)
        for i, h, quantity, _, unit in columns:
            raw = row[i].strip()
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError:
                raise HazardInputError(
                    f"{source}: line {line}: column '{h}': '{raw}' is not a number"
                ) from None
            if not math.isfinite(value):
                raise HazardInputError(f"{source}: line {line}: column '{h}': '{raw}' is not finite")
            canonical = _CANONICAL_UNITS[quantity]
            if unit is not None and canonical is not None:
                value = float(unit.convert(value, cf_units.Unit(canonical)))
            records[quantity].append((cell, when, value))
    out: dict[str, xr.DataArray] = {}
    for _, h, quantity, units_text, _ in columns:
        rows = records[quantity]
        if not rows:
            continue
        cells = np.array([r[0] for r in rows], np.int64)
        when_ns = np.array([r[1] for r in rows], np.int64)
        values = np.array([r[2] for r in rows], np.float64)
        times, t_index = np.unique(when_ns, return_inverse=True)
        field_ = _combine_cells(cells, t_index, values, times.size, grid.size, _COMBINE[quantity])
        canonical = _CANONICAL_UNITS[quantity]
        out[quantity] = xr.DataArray(
            field_.reshape(times.size, grid.ny, grid.nx).astype(np.float32),
            dims=("time", "lat", "lon"),
            coords={"time": times.view("datetime64[ns]"), "lat": grid.lat, "lon": grid.lon},
            name=quantity,
            attrs={
                "quantity": quantity,
                "units": canonical or units_text,
                "source_files": source,
                "source_variable": h,
                "original_units": units_text,
                "conversion": f"{units_text} -> {canonical}"
                if canonical and canonical != units_text
                else "none",
                "stations_placed": len(placed),
                "stations_outside_grid": len(outside),
                "placement": f"station in the grid cell containing it; several in one cell: {_COMBINE[quantity]}",
            },
        )
    return out


def _station_number(raw: str, source: str, line: int, column: str, low: float, high: float) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise HazardInputError(
            f"{source}: line {line}: column '{column}': '{raw.strip()}' is not a number"
        ) from None
    if not (low <= value <= high):
        raise HazardInputError(f"{source}: line {line}: column '{column}': {value:g} is out of range")
    return value


def _station_time(raw: str, source: str, line: int) -> int:
    text = raw.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise HazardInputError(
            f"{source}: line {line}: column 'time': '{text}' is not an ISO 8601 time"
        ) from None
    if when.tzinfo is None:
        raise HazardInputError(
            f"{source}: line {line}: column 'time': '{text}' has no UTC offset (write e.g. +08:00 or Z)"
        )
    return _as_ns(when)


def _combine_cells(
    cells: np.ndarray, t_index: np.ndarray, values: np.ndarray, n_times: int, n_cells: int, how: str
) -> np.ndarray:
    flat = t_index * n_cells + cells
    out = np.full(n_times * n_cells, np.nan)
    if how == "mean":
        total = np.bincount(flat, weights=values, minlength=out.size)
        count = np.bincount(flat, minlength=out.size)
        has = count > 0
        out[has] = total[has] / count[has]
    elif how == "max":
        out_max = np.full(out.size, -np.inf)
        np.maximum.at(out_max, flat, values)
        out = np.where(np.isfinite(out_max), out_max, np.nan)
    else:
        out_min = np.full(out.size, np.inf)
        np.minimum.at(out_min, flat, values)
        out = np.where(np.isfinite(out_min), out_min, np.nan)
    return out


def combine_branches(forecast: HazardResult, observed: HazardResult) -> HazardResult:
    """One result from both branches: per level and cell the larger probability, the earlier onset and the
    later end; cells without observations (NaN) keep the forecast. Evidence keeps both branches'."""
    if forecast.levels != observed.levels:
        raise HazardInputError(f"{forecast.hazard}: branches disagree on levels")
    probability = np.fmax(forecast.probability.values, observed.probability.values)
    onset = np.where(
        np.isnat(observed.onset.values),
        forecast.onset.values,
        np.where(
            np.isnat(forecast.onset.values),
            observed.onset.values,
            np.minimum(forecast.onset.values, observed.onset.values),
        ),
    )
    end = np.where(
        np.isnat(observed.end.values),
        forecast.end.values,
        np.where(
            np.isnat(forecast.end.values),
            observed.end.values,
            np.maximum(forecast.end.values, observed.end.values),
        ),
    )
    return HazardResult(
        hazard=forecast.hazard,
        levels=forecast.levels,
        probability=forecast.probability.copy(data=probability.astype(np.float32)),
        onset=forecast.onset.copy(data=onset),
        end=forecast.end.copy(data=end),
        branch="forecast+observed",
        suppressed=forecast.suppressed,
        evidence={**forecast.evidence, "observed": observed.evidence},
    )
