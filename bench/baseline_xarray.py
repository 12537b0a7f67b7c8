"""The warning criteria written the straightforward way with xarray (and xclim where it has the indicator).

The benchmark's baseline (`bench/scoring.py`): the same criteria as `warnings_svc.forecast.hazards` (thresholds,
windows, horizons and days from the same `Criteria`, the same relative tolerance at thresholds), on the
same canonical DataArrays, giving each level's probability and onset. Each criterion is what one would
write first:

- rain windows: ``rolling(time=n, min_periods=1).sum()`` (windows at the start of the run hold fewer
  hours, as in the kernels; a window with a missing step is masked with a second rolling count only when the
  data have gaps);
- heat spells: hourly maxima shifted to Beijing time and ``resample(time="1D")`` to daily maxima and
  coverage, then ``xclim.indices.run_length.first_run`` for the first run of N hot days;
- steps within N hours: plain comparisons on ``sel(time=slice(...))``, ``.any("time")`` and
  ``.argmax("time")`` for the onset;
- ensembles: ``.mean("member")`` over the members valid at a cell, ``.min("member")`` for the onset.

Not computed: the end of each period (the kernels follow a period past the horizon while it lasts), so this
baseline does less work than the kernels. Thresholds are converted into the data's dtype rounding towards
the safe side, so a float32 comparison decides exactly as a float64 one would (see bench/LOG.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import xarray as xr
from xclim.indices.run_length import first_run

from warnings_svc.forecast.criteria import Criteria, LevelCriterion
from warnings_svc.forecast.hazards import REL_TOL

HOUR = np.timedelta64(3600, "s")
ONE_NS = np.timedelta64(1, "ns")


def threshold_in_dtype(comparison: str, threshold: float, dtype: np.dtype) -> np.floating:
    """The threshold moved by the relative tolerance, as a number of `dtype` that decides every value of
    that dtype as the exact float64 comparison would (``v >= t`` iff ``v >= t32`` for float32 `v`)."""
    tol = REL_TOL * abs(threshold)
    t = threshold - tol if comparison in ("ge", "lt") else threshold + tol
    t_d = dtype.type(t)
    # ge/lt: the smallest value of dtype >= t; gt/le: the largest value of dtype <= t
    if comparison in ("ge", "lt") and float(t_d) < t:
        t_d = np.nextafter(t_d, dtype.type(np.inf))
    if comparison in ("gt", "le") and float(t_d) > t:
        t_d = np.nextafter(t_d, dtype.type(-np.inf))
    return t_d


def reaches(values: xr.DataArray, comparison: str, threshold: float) -> xr.DataArray:
    """``values <comparison> threshold`` with the tolerance of the criteria (NaN never reaches)."""
    t = threshold_in_dtype(comparison, threshold, values.dtype)
    if comparison in ("ge", "gt"):
        return values >= t if comparison == "ge" else values > t
    return values <= t if comparison == "le" else values < t


def _horizon(da: xr.DataArray, reference: np.datetime64, within_h: float) -> xr.DataArray:
    return da.sel(time=slice(reference + ONE_NS, reference + np.timedelta64(round(within_h * 3600), "s")))


def _first_time(hit: xr.DataArray, start: xr.DataArray) -> xr.DataArray:
    """Start of the first interval in which `hit` holds (NaT where never)."""
    return start.isel(time=hit.argmax("time")).where(hit.any("time")).drop_vars("time", errors="ignore")


def _combine(
    hits: list[xr.DataArray], onsets: list[xr.DataArray], valid: list[xr.DataArray], names: list[str]
) -> xr.Dataset:
    """Per level: at least this level (this one or a stronger one), over members: probability and onset."""
    probability, onset = [], []
    for i in range(len(names)):
        reached = hits[i]
        first = onsets[i]
        for j in range(i + 1, len(names)):
            reached = reached | hits[j]
            first = xr.where(hits[j] & (first.isnull() | (onsets[j] < first)), onsets[j], first)
        ok = valid[i] | reached
        if "member" in reached.dims:
            p = reached.where(ok).mean("member")
            o = first.where(reached).min("member", skipna=True)  # NaT propagates by default
        else:
            p = reached.where(ok).astype(np.float64)
            o = first.where(reached)
        probability.append(p.astype(np.float32))
        onset.append(o)
    return xr.Dataset(
        {
            "probability": xr.concat(probability, "level").assign_coords(level=names),
            "onset": xr.concat(onset, "level").assign_coords(level=names),
        }
    )


def _step_level(
    da: xr.DataArray,
    lv: LevelCriterion,
    reference: np.datetime64,
    period: bool,
    extra: xr.DataArray | None = None,
) -> tuple[xr.DataArray, xr.DataArray, xr.DataArray]:
    values = _horizon(da, reference, lv.within_h)
    hit = reaches(values, lv.comparison, lv.threshold)
    if extra is not None:
        hit = hit & _horizon(extra, reference, lv.within_h)
    step = da["time"].diff("time").values[0]
    start = values["time"] - step if period else values["time"]
    return hit.any("time"), _first_time(hit, start), values.notnull().any("time")


def heat(tx: xr.DataArray, criteria: Criteria, reference: np.datetime64) -> xr.Dataset:
    """Yellow: N consecutive hot local days; orange/red: a step at or above the threshold within N hours."""
    hc = criteria.heat
    offset = np.timedelta64(round(criteria.calendar.utc_offset * 3600), "s")
    step = tx["time"].diff("time").values[0]
    hits, onsets, valid, names = [], [], [], []
    for lv in hc.levels():
        names.append(lv.name)
        if lv.consecutive_days is None:
            h, o, v = _step_level(tx, lv, reference, period=True)
        else:
            # the day of an hourly maximum is the local day of its interval's middle
            local = tx.assign_coords(time=tx["time"] - step / 2 + offset).resample(time="1D")
            daily_max = local.max()
            covered = local.count() * (step / HOUR) >= hc.min_day_coverage
            start_utc = daily_max["time"] - offset
            in_horizon = (start_utc < reference + np.timedelta64(round(lv.within_h * 3600), "s")) & (
                start_utc + np.timedelta64(1, "D") > reference
            )
            days = daily_max.where(covered).isel(time=in_horizon.values)
            hot = reaches(days, lv.comparison, lv.threshold)
            first_day = first_run(hot, window=lv.consecutive_days, dim="time")  # index, NaN if none
            h = first_day.notnull()
            o = start_utc.isel(time=in_horizon.values).isel(time=first_day.fillna(0).astype(int)).where(h)
            o = o.drop_vars("time", errors="ignore")
            v = (local.count().isel(time=in_horizon.values) > 0).any("time")
        hits.append(h)
        onsets.append(o)
        valid.append(v)
    return _combine(hits, onsets, valid, names)


def rainstorm(pr: xr.DataArray, criteria: Criteria, reference: np.datetime64) -> xr.Dataset:
    """Accumulation over a running window of `window` hours at or above the threshold within N hours."""
    step = pr["time"].diff("time").values[0]
    gaps = bool(pr.isnull().any())
    sums: dict[int, xr.DataArray] = {}
    hits, onsets, valid, names = [], [], [], []
    for lv in criteria.rainstorm.levels():
        assert lv.window_h is not None
        n = max(1, math.ceil(lv.window_h * HOUR / step - 1e-9))
        if n not in sums:
            total = pr.rolling(time=n, min_periods=1).sum()
            if gaps:
                total = total.where(pr.isnull().rolling(time=n, min_periods=1).sum() == 0)
            sums[n] = total
        values = _horizon(sums[n], reference, lv.within_h)
        hit = reaches(values, lv.comparison, lv.threshold)
        first_start = pr["time"].values[0] - step
        start = np.maximum(values["time"] - n * step, first_start)  # windows at the start hold fewer hours
        names.append(lv.name)
        hits.append(hit.any("time"))
        onsets.append(_first_time(hit, start))
        valid.append(values.notnull().any("time"))
    return _combine(hits, onsets, valid, names)


def frost(tg: xr.DataArray, criteria: Criteria, reference: np.datetime64) -> xr.Dataset:
    """Ground-surface minimum at or below the threshold at a step within N hours."""
    hits, onsets, valid, names = [], [], [], []
    for lv in criteria.frost.levels():
        h, o, v = _step_level(tg, lv, reference, period=True)
        names.append(lv.name)
        hits.append(h)
        onsets.append(o)
        valid.append(v)
    return _combine(hits, onsets, valid, names)


def sandstorm(
    vis: xr.DataArray, gust: xr.DataArray, criteria: Criteria, reference: np.datetime64
) -> xr.Dataset:
    """Visibility below the threshold at a step within N hours where the gust raises dust at that step."""
    sc = criteria.sandstorm
    assert sc.gust_ge is not None
    windy = reaches(gust, "ge", sc.gust_ge)
    hits, onsets, valid, names = [], [], [], []
    for lv in sc.levels():
        h, o, v = _step_level(vis, lv, reference, period=False, extra=windy)
        names.append(lv.name)
        hits.append(h)
        onsets.append(o)
        valid.append(v)
    return _combine(hits, onsets, valid, names)


def evaluate_all(
    data: Mapping[str, xr.DataArray], criteria: Criteria, reference: np.datetime64
) -> dict[str, xr.Dataset]:
    """Probability and onset of every level of the four hazards (inputs as in `bench/scoring.py`)."""
    return {
        "heat": heat(data["air_temperature_max"], criteria, reference),
        "rainstorm": rainstorm(data["precipitation"], criteria, reference),
        "frost": frost(data["ground_temperature_min"], criteria, reference),
        "sandstorm": sandstorm(data["visibility"], data["wind_gust"], criteria, reference),
    }
