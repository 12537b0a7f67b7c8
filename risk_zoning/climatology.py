"""Hazard climatology indicators from historical grids: pure functions over canonical fields, and the driver.

Inputs are canonical DataArrays as `risk_zoning.io.netcdf.read_quantity` returns them: dims ``time`` (UTC),
optionally ``member``, then ``lat``, ``lon``; units degC, mm per step, m. Outputs have the non-time dims
(``member`` averaged away) and attrs naming units, threshold, years and method.

Days are Beijing calendar days (UTC+8). A sub-daily value belongs to the Beijing day of its instant
(instantaneous fields such as 2 m temperature or visibility), or of the middle of its step for values
describing the step that ends at their time (precipitation amounts, maxima and minima over the step as in
ECMWF ``mx2t6``): an hourly amount stamped 16:00 UTC fell 23:00-24:00 Beijing time, on the earlier day.
Only complete days count (every step present); daily input cannot be re-cut into Beijing days and keeps
its own day labels (a daily amount is labelled by the day its interval ends in).

A year enters the means only if at least `min_year_coverage` of its days (of the growing season for frost)
are complete in that cell; the years used are recorded in ``attrs["years"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import cf_units
import numpy as np
import xarray as xr

from risk_zoning import HAZARDS
from risk_zoning.errors import GridDataError
from risk_zoning.grid import RegularGrid
from risk_zoning.io.netcdf import QuantityNotFoundError, read_quantity, to_region_grid

BEIJING_OFFSET = np.timedelta64(8, "h")
BEIJING_DAYS = "Beijing (UTC+8) calendar days"
# Instantaneous samples further apart than this miss the daily maximum or minimum; extremes over each
# step (mx2t6, tasmax) are fine at any step up to a day.
MAX_SAMPLING_STEP = np.timedelta64(3, "h")
DEFAULT_GROWING_MONTHS: tuple[int, ...] = (4, 5, 6, 7, 8, 9, 10)
DEFAULT_MIN_YEAR_COVERAGE = 0.9
# The ground surface (0 cm) minimum is colder than the 2 m air minimum on clear, calm nights; a typical
# difference, to be calibrated against the region's stations, used only when no ground temperature exists.
DEFAULT_AIR_TO_GROUND_OFFSET_DEGC = 2.0

_DAY = np.timedelta64(1, "D").astype("timedelta64[ns]")
_NS = "datetime64[ns]"
Threshold = float | str


# ---------------------------------------------------------------------------------------------- days


def _source(da: xr.DataArray) -> str:
    return str(da.attrs.get("source_files") or da.name or "data")


def _time_method(da: xr.DataArray) -> str | None:
    text = str(da.attrs.get("cell_methods", ""))
    for method in ("maximum", "minimum", "sum", "mean"):
        if f"time: {method}" in text:
            return method
    return None


def _describes_step(da: xr.DataArray) -> bool:
    """Whether values describe the step ending at their time (amounts, extremes over the step)."""
    quantity = str(da.attrs.get("quantity", ""))
    return quantity == "precipitation" or quantity.endswith(("_max", "_min")) or _time_method(da) is not None


def _step(da: xr.DataArray) -> np.timedelta64:
    t = da.time.values.astype(_NS)
    if t.size < 2:
        raise GridDataError(_source(da), "a climatology needs a time series, not a single time")
    d = np.diff(t)
    step = d.min()
    if step <= np.timedelta64(0, "ns"):
        raise GridDataError(_source(da), "times are not strictly increasing")
    if (d % step).astype(np.int64).any():
        raise GridDataError(
            _source(da), f"irregular time steps (smallest {step / np.timedelta64(1, 'h'):g} h)"
        )
    return cast(np.timedelta64, step)


def _rest(da: xr.DataArray) -> tuple[tuple[str, ...], dict[str, Any]]:
    dims = tuple(str(d) for d in da.dims if d != "time")
    return dims, {d: da[d].values for d in dims if d in da.coords}


def _on_days(da: xr.DataArray) -> tuple[np.ndarray, np.ndarray, np.timedelta64]:
    """Values as (day, step of day, ...) over consecutive Beijing days; NaN where a step is missing."""
    step = _step(da)
    t = da.time.values.astype(_NS)
    x = np.asarray(da.transpose("time", ...).values, dtype=np.float64)
    describes_step = _describes_step(da)
    if step == _DAY:
        label = t - _DAY // 2 if da.attrs.get("quantity") == "precipitation" else t
        day = label.astype("datetime64[D]")
        pos = (day - day[0]).astype(np.int64)
        out = np.full((int(pos[-1]) + 1, 1, *x.shape[1:]), np.nan)
        out[pos, 0] = x
        return out, day[0] + np.arange(out.shape[0]), step
    if step > _DAY or (_DAY % step).astype(np.int64):
        raise GridDataError(_source(da), f"steps of {step / np.timedelta64(1, 'h'):g} h do not divide a day")
    local = t + BEIJING_OFFSET - (step // 2 if describes_step else np.timedelta64(0, "ns"))
    day0 = local[0].astype("datetime64[D]")
    origin = day0.astype(_NS) + (local[0] - day0.astype(_NS)) % step
    per_day = int(_DAY // step)
    pos = ((local - origin) // step).astype(np.int64)
    ndays = int(pos[-1]) // per_day + 1
    out = np.full((ndays * per_day, *x.shape[1:]), np.nan)
    out[pos] = x
    return out.reshape(ndays, per_day, *x.shape[1:]), day0 + np.arange(ndays), step


def daily_values(da: xr.DataArray, how: Literal["max", "min", "sum"]) -> xr.DataArray:
    """The daily maximum, minimum or sum over Beijing calendar days; NaN on incomplete days.

    Already-daily input from this function is returned as is. Instantaneous samples (2 m temperature,
    visibility) must be at most `MAX_SAMPLING_STEP` apart for a maximum or minimum.

    >>> t = np.datetime64("2024-07-01T16", "ns") + np.arange(24) * np.timedelta64(1, "h")
    >>> tas = xr.DataArray(np.arange(24.0), dims="time", coords={"time": t}, attrs={"units": "degC"})
    >>> daily_values(tas, "max").values.tolist()  # 16 UTC = 00 Beijing: one whole Beijing day
    [23.0]
    """
    if da.attrs.get("time_axis") == BEIJING_DAYS:
        return da
    step = _step(da)
    if how in ("max", "min") and not _describes_step(da) and step > MAX_SAMPLING_STEP:
        raise GridDataError(
            _source(da),
            f"instantaneous {da.attrs.get('quantity', 'values')} every {step / np.timedelta64(1, 'h'):g} h "
            f"miss the daily {how}imum; give hourly or 3-hourly data or a daily {how}imum",
        )
    values, days, _ = _on_days(da)
    reduce = cast("Callable[..., np.ndarray]", {"max": np.max, "min": np.min, "sum": np.sum}[how])
    dims, coords = _rest(da)
    return xr.DataArray(
        reduce(values, axis=1),  # NaN anywhere in the day makes the day NaN: complete days only
        dims=("time", *dims),
        coords={"time": days.astype(_NS), **coords},
        attrs={**da.attrs, "time_axis": BEIJING_DAYS, "daily": how},
        name=da.name,
    )


def _threshold(value: Threshold, da: xr.DataArray) -> float:
    """A threshold in the data's units; a string carries its own units ("35 degC", "308.15 K")."""
    if not isinstance(value, str):
        return float(value)
    number, _, units = value.strip().partition(" ")
    data_units = da.attrs.get("units")
    if not data_units:
        raise GridDataError(_source(da), f"data without units cannot be compared with '{value}'")
    try:
        return float(
            cf_units.Unit(units.strip() or "1").convert(float(number), cf_units.Unit(str(data_units)))
        )
    except ValueError as e:
        raise ValueError(f"threshold '{value}' cannot be put in the data's units '{data_units}'") from e


# ---------------------------------------------------------------------------------------------- years


def _years_of(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[Y]").astype(np.int64) + 1970


def _months_of(days: np.ndarray) -> np.ndarray:
    return days.astype("datetime64[M]").astype(np.int64) % 12 + 1


def _days_in(year: int, months: Sequence[int] | None) -> int:
    """Number of days of `year` in `months` (all months if None)."""
    months = range(1, 13) if months is None else months
    first = [np.datetime64(f"{year}-{m:02d}-01") for m in months]
    after = [np.datetime64(f"{year + m // 12}-{m % 12 + 1:02d}-01") for m in months]
    return sum(int((b - a).astype(np.int64)) for a, b in zip(first, after, strict=True))


@dataclass(frozen=True)
class _Annual:
    """Per-year values (year, ...) and whether each year has enough complete days in each cell."""

    values: np.ndarray
    ok: np.ndarray
    years: np.ndarray


def _annual(
    daily: np.ndarray,
    days: np.ndarray,
    reduce: Callable[..., np.ndarray],
    min_coverage: float,
    months: Sequence[int] | None = None,
) -> _Annual:
    """Reduce daily values (NaN = incomplete day) year by year, optionally within some months only."""
    years, in_months = _years_of(days), np.ones(days.size, dtype=bool)
    if months is not None:
        in_months = np.isin(_months_of(days), list(months))
    values, ok, kept = [], [], []
    for year in np.unique(years):
        sel = (years == year) & in_months
        if not sel.any():
            continue
        block = daily[sel]
        complete = np.isfinite(block).sum(axis=0)
        values.append(reduce(block, axis=0))
        ok.append((complete > 0) & (complete >= min_coverage * _days_in(int(year), months)))
        kept.append(int(year))
    if not kept:
        return _Annual(
            np.zeros((0, *daily.shape[1:])), np.zeros((0, *daily.shape[1:]), dtype=bool), np.array([])
        )
    return _Annual(np.stack(values), np.stack(ok), np.array(kept))


def _nansum(a: np.ndarray, axis: int) -> np.ndarray:
    return cast(np.ndarray, np.nansum(a, axis=axis))


def _nanmax(a: np.ndarray, axis: int) -> np.ndarray:
    out = np.full(a.shape[1:], np.nan)
    has = np.isfinite(a).any(axis=axis)
    out[has] = np.max(np.where(np.isfinite(a), a, -np.inf), axis=axis)[has]
    return out


def _mean_over_years(annual: _Annual) -> np.ndarray:
    """Mean over the years that qualify in each cell; NaN where none does."""
    n = annual.ok.sum(axis=0)
    total = np.where(annual.ok, annual.values, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _year_text(years: np.ndarray) -> str:
    """Compact list of years: '2001-2005, 2007'."""
    parts: list[str] = []
    for y in sorted(int(v) for v in years):
        if parts and parts[-1].split("-")[-1] == str(y - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{y}"
        else:
            parts.append(str(y))
    return ", ".join(parts)


def _result(
    values: np.ndarray,
    template: xr.DataArray,
    annual: _Annual,
    name: str,
    units: str,
    long_name: str,
    **attrs: Any,
) -> xr.DataArray:
    dims, coords = _rest(template)
    used: np.ndarray | list[int] = (
        annual.years[annual.ok.reshape(annual.ok.shape[0], -1).any(axis=1)] if annual.years.size else []
    )
    if not np.isfinite(values).any():
        raise GridDataError(
            _source(template), f"{name}: no year has enough complete days (see min_year_coverage)"
        )
    out = xr.DataArray(values, dims=dims, coords=coords, name=name)
    provenance = {
        k: template.attrs[k] for k in ("source_files", "source_variable", "quantity") if k in template.attrs
    }
    out.attrs = {
        "units": units,
        "long_name": long_name,
        "years": _year_text(np.asarray(used)),
        "n_years": len(used),
        "day_boundary": BEIJING_DAYS,
        **{f"source_{k}" if k == "quantity" else k: v for k, v in provenance.items()},
        **attrs,
    }
    if "member" in out.dims:
        n = out.sizes["member"]
        out = out.mean("member", keep_attrs=True)
        out.attrs["ensemble"] = f"mean over {n} members"
    return out


# ---------------------------------------------------------------------------------------------- heat


def _hot_days(tmax: xr.DataArray, threshold: Threshold) -> tuple[xr.DataArray, float, np.ndarray, np.ndarray]:
    daily = daily_values(tmax, "max")
    thr = _threshold(threshold, daily)
    values = np.asarray(daily.values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        hot = np.where(np.isfinite(values), (values >= thr).astype(np.float64), np.nan)
    return daily, thr, values, hot


def heat_days_ge35(
    tmax: xr.DataArray,
    threshold: Threshold = "35 degC",
    *,
    min_year_coverage: float = DEFAULT_MIN_YEAR_COVERAGE,
) -> xr.DataArray:
    """Mean annual number of days with daily maximum 2 m temperature >= `threshold`.

    `tmax` is hourly (or 3-hourly) 2 m temperature, a maximum over each step, or daily maxima.

    >>> t = np.datetime64("2023-01-01", "ns") + np.arange(365) * np.timedelta64(1, "D")
    >>> tx = np.zeros(365)
    >>> tx[180:183] = [36.0, 35.0, 34.9]  # daily maxima; 35.0 counts, 34.9 does not
    >>> tx = xr.DataArray(tx, dims="time", coords={"time": t},
    ...                   attrs={"units": "degC", "quantity": "air_temperature_max"})
    >>> float(heat_days_ge35(tx)), float(heat_days_ge35(tx, "309 K"))
    (2.0, 1.0)
    """
    daily, thr, _, hot = _hot_days(tmax, threshold)
    annual = _annual(hot, daily.time.values.astype("datetime64[D]"), _nansum, min_year_coverage)
    return _result(
        _mean_over_years(annual),
        daily,
        annual,
        "heat_days_ge35",
        "day year-1",
        "mean annual number of days with maximum 2 m temperature at or above the threshold",
        threshold=f"{thr:g} {daily.attrs.get('units', '')}".strip(),
        method="daily maximum >= threshold, counted per Beijing calendar year, averaged over years",
    )


def heat_processes(
    tmax: xr.DataArray,
    threshold: Threshold = "35 degC",
    min_days: int = 3,
    *,
    min_year_coverage: float = DEFAULT_MIN_YEAR_COVERAGE,
) -> xr.DataArray:
    """Mean annual number of heat processes: runs of at least `min_days` consecutive days >= `threshold`.

    A run is counted once, in the year it starts; a missing day ends a run.
    """
    daily, thr, _, hot = _hot_days(tmax, threshold)
    h = np.nan_to_num(hot, nan=0.0).astype(bool)
    n = h.shape[0]
    csum = np.concatenate([np.zeros((1, *h.shape[1:]), dtype=np.int64), np.cumsum(h, axis=0)])
    long_enough = np.zeros_like(h)
    if n >= min_days:
        long_enough[: n - min_days + 1] = (csum[min_days:] - csum[:-min_days]) == min_days
    before = np.concatenate([np.zeros((1, *h.shape[1:]), dtype=bool), h[:-1]])
    starts = np.where(np.isfinite(hot), (long_enough & ~before).astype(np.float64), np.nan)
    annual = _annual(starts, daily.time.values.astype("datetime64[D]"), _nansum, min_year_coverage)
    return _result(
        _mean_over_years(annual),
        daily,
        annual,
        "heat_processes",
        "year-1",
        f"mean annual number of spells of at least {min_days} consecutive days at or above the threshold",
        threshold=f"{thr:g} {daily.attrs.get('units', '')}".strip(),
        min_days=min_days,
        method="runs of consecutive days with daily maximum >= threshold, counted in the year they start",
    )


def heat_intensity(
    tmax: xr.DataArray,
    threshold: Threshold = "35 degC",
    *,
    min_year_coverage: float = DEFAULT_MIN_YEAR_COVERAGE,
) -> xr.DataArray:
    """Mean excess of the daily maximum over `threshold` on days at or above it (0 where there are none)."""
    daily, thr, values, hot = _hot_days(tmax, threshold)
    days = daily.time.values.astype("datetime64[D]")
    excess = np.where(hot == 1.0, values - thr, np.where(np.isfinite(hot), 0.0, np.nan))
    total = _annual(excess, days, _nansum, min_year_coverage)
    count = _annual(hot, days, _nansum, min_year_coverage)
    n_hot = np.where(count.ok, count.values, 0.0).sum(axis=0)
    sum_excess = np.where(total.ok, total.values, 0.0).sum(axis=0)
    any_year = count.ok.any(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        values_out = np.where(any_year, np.where(n_hot > 0, sum_excess / np.maximum(n_hot, 1), 0.0), np.nan)
    return _result(
        values_out,
        daily,
        count,
        "heat_intensity",
        str(daily.attrs.get("units", "degC")),
        "mean excess of the daily maximum 2 m temperature over the threshold on hot days",
        threshold=f"{thr:g} {daily.attrs.get('units', '')}".strip(),
        method="sum of (daily maximum - threshold) over hot days / number of hot days; 0 where none",
    )


# ---------------------------------------------------------------------------------------------- rain


# Cells handled at once by the running-window sums: bounds the temporaries to about 100 MB.
_WINDOW_BLOCK_VALUES = 12_000_000


def _window_sums(amounts: xr.DataArray, hours: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Daily maxima of running `hours` sums (windows ending in each day), the days, the window used (h)."""
    values, days, step = _on_days(amounts)
    ndays, per_day = values.shape[:2]
    n = ndays * per_day
    flat = values.reshape(n, -1)
    step_h = step / np.timedelta64(1, "h")
    k = max(1, round(hours / step_h))  # steps coarser than the window: the step itself is the window
    daily_max = np.full((ndays, flat.shape[1]), np.nan)
    block = max(1, _WINDOW_BLOCK_VALUES // max(n, 1))
    for c0 in range(0, flat.shape[1] if n >= k else 0, block):
        x = flat[:, c0 : c0 + block]
        zero = np.zeros((1, x.shape[1]))
        sums = np.concatenate([zero, np.cumsum(np.nan_to_num(x, nan=0.0), axis=0)])
        gaps = np.concatenate([zero, np.cumsum(np.isnan(x), axis=0)])
        out = np.full(x.shape, np.nan)
        window = np.maximum(sums[k:] - sums[:-k], 0.0)  # cumulative-sum round-off never goes below 0
        out[k - 1 :] = np.where(gaps[k:] - gaps[:-k] == 0, window, np.nan)
        daily_max[:, c0 : c0 + block] = out.reshape(ndays, per_day, -1).max(axis=1)  # any gap: incomplete day
    return daily_max.reshape(ndays, *values.shape[2:]), days, k * step_h


def rain_max_window(
    amounts: xr.DataArray, hours: float, *, min_year_coverage: float = DEFAULT_MIN_YEAR_COVERAGE
) -> xr.DataArray:
    """Mean over years of the annual maximum precipitation in a running `hours` window (mm).

    Windows are sums of consecutive per-step amounts (a window of ``round(hours / step)`` steps, at least
    one: with steps coarser than the window the step is the window, recorded in ``window_hours``). A
    window belongs to the Beijing day, and year, in which it ends.
    """
    daily_max, days, used = _window_sums(amounts, hours)
    annual = _annual(daily_max, days, _nanmax, min_year_coverage)
    name = f"rain_max_{hours:g}h"
    return _result(
        _mean_over_years(annual),
        amounts,
        annual,
        name,
        "mm",
        f"mean annual maximum precipitation in {hours:g} hours",
        window_hours=used,
        method=f"running sums over {used:g} h of per-step amounts; annual maximum; mean over years",
    )


def rain_max_6h(
    amounts: xr.DataArray, *, min_year_coverage: float = DEFAULT_MIN_YEAR_COVERAGE
) -> xr.DataArray:
    """Mean annual maximum 6-hour precipitation (mm); see `rain_max_window`."""
    return rain_max_window(amounts, 6, min_year_coverage=min_year_coverage)


def rain_max_24h(
    amounts: xr.DataArray, *, min_year_coverage: float = DEFAULT_MIN_YEAR_COVERAGE
) -> xr.DataArray:
    """Mean annual maximum 24-hour (running) precipitation (mm); see `rain_max_window`."""
    return rain_max_window(amounts, 24, min_year_coverage=min_year_coverage)


def rain_days_ge50(
    amounts: xr.DataArray,
    threshold: Threshold = "50 mm",
    *,
    min_year_coverage: float = DEFAULT_MIN_YEAR_COVERAGE,
) -> xr.DataArray:
    """Mean annual number of Beijing days with precipitation >= `threshold`."""
    daily = daily_values(amounts, "sum")
    thr = _threshold(threshold, daily)
    values = np.asarray(daily.values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        wet = np.where(np.isfinite(values), (values >= thr).astype(np.float64), np.nan)
    annual = _annual(wet, daily.time.values.astype("datetime64[D]"), _nansum, min_year_coverage)
    return _result(
        _mean_over_years(annual),
        daily,
        annual,
        "rain_days_ge50",
        "day year-1",
        "mean annual number of days with precipitation at or above the threshold",
        threshold=f"{thr:g} mm",
        method="Beijing-day sums >= threshold, counted per year, averaged over years",
    )


# ---------------------------------------------------------------------------------------------- frost


def ground_minimum_from_air(
    tmin_2m: xr.DataArray, offset: float = DEFAULT_AIR_TO_GROUND_OFFSET_DEGC
) -> xr.DataArray:
    """Daily ground-surface minimum estimated as the 2 m air minimum minus `offset` (°C); says so in attrs.

    Use only when the grids carry no ground (0 cm, skin) temperature: frost is defined on the ground.
    """
    daily = daily_values(tmin_2m, "min")
    if daily.attrs.get("units") not in ("degC", "Celsius", "°C"):
        raise GridDataError(_source(daily), "the 2 m minimum must be in degC to subtract the offset")
    out = daily - offset
    out.attrs = {
        **daily.attrs,
        "ground_source": f"2 m air minimum ({daily.attrs.get('source_variable', '?')}) minus {offset:g} degC",
    }
    return out


def frost_days_growing(
    ground_min: xr.DataArray,
    threshold: Threshold = "0 degC",
    months: Sequence[int] = DEFAULT_GROWING_MONTHS,
    *,
    min_year_coverage: float = DEFAULT_MIN_YEAR_COVERAGE,
) -> xr.DataArray:
    """Mean annual number of growing-season days (`months`) with ground minimum temperature < `threshold`.

    `ground_min` is a ground (0 cm / skin) temperature, its minimum over each step, daily minima, or the
    result of `ground_minimum_from_air`; which one is recorded in ``attrs["ground_source"]``.
    """
    daily = daily_values(ground_min, "min")
    thr = _threshold(threshold, daily)
    values = np.asarray(daily.values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        frost = np.where(np.isfinite(values), (values < thr).astype(np.float64), np.nan)
    annual = _annual(frost, daily.time.values.astype("datetime64[D]"), _nansum, min_year_coverage, months)
    source = daily.attrs.get("ground_source") or (
        f"{daily.attrs.get('quantity', 'ground temperature')} ({daily.attrs.get('source_variable', '?')})"
    )
    return _result(
        _mean_over_years(annual),
        daily,
        annual,
        "frost_days_growing",
        "day year-1",
        "mean annual number of growing-season days with ground minimum temperature below the threshold",
        threshold=f"{thr:g} {daily.attrs.get('units', '')}".strip(),
        growing_months=",".join(str(m) for m in months),
        ground_source=source,
        method="daily ground minimum < threshold in the growing-season months, counted per year",
    )


# ---------------------------------------------------------------------------------------------- sand


def sand_days_vis_lt1000(
    visibility: xr.DataArray,
    threshold: Threshold = "1000 m",
    *,
    min_year_coverage: float = DEFAULT_MIN_YEAR_COVERAGE,
) -> xr.DataArray:
    """Mean annual number of days with minimum visibility < `threshold` (sandstorm or worse)."""
    daily = daily_values(visibility, "min")
    thr = _threshold(threshold, daily)
    values = np.asarray(daily.values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        low = np.where(np.isfinite(values), (values < thr).astype(np.float64), np.nan)
    annual = _annual(low, daily.time.values.astype("datetime64[D]"), _nansum, min_year_coverage)
    return _result(
        _mean_over_years(annual),
        daily,
        annual,
        "sand_days_vis_lt1000",
        "day year-1",
        "mean annual number of days with minimum visibility below the threshold",
        threshold=f"{thr:g} {daily.attrs.get('units', '')}".strip(),
        method="daily minimum visibility < threshold, counted per year, averaged over years",
    )


# ---------------------------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class ClimatologyOptions:
    """Thresholds and choices of the hazard climatology; the defaults are the national (CMA 2007) values."""

    heat_threshold: Threshold = "35 degC"
    heat_min_days: int = 3
    rain_threshold: Threshold = "50 mm"
    frost_threshold: Threshold = "0 degC"
    growing_months: tuple[int, ...] = DEFAULT_GROWING_MONTHS
    air_to_ground_offset: float = DEFAULT_AIR_TO_GROUND_OFFSET_DEGC
    visibility_threshold: Threshold = "1000 m"
    min_year_coverage: float = DEFAULT_MIN_YEAR_COVERAGE


# Quantities tried in order for each hazard (the first the files hold is used).
HAZARD_SOURCES: dict[str, tuple[str, ...]] = {
    "heat": ("air_temperature_max", "air_temperature"),
    "rainstorm": ("precipitation",),
    "frost": ("ground_temperature_min", "ground_temperature", "air_temperature_min", "air_temperature"),
    "sandstorm": ("visibility",),
}


def climatology_steps(hazards: Sequence[str] = HAZARDS) -> tuple[str, ...]:
    """Names of the steps `compute_climatology` reports, in order (for sizing a progress bar)."""
    return tuple(step for h in hazards for step in (f"read {h}", f"{h} indicators"))


def _read_first(paths: Sequence[Path], grid: RegularGrid, hazard: str) -> xr.DataArray:
    for quantity in HAZARD_SOURCES[hazard]:
        try:
            return read_quantity(paths, quantity, grid, regrid=False)
        except QuantityNotFoundError:
            continue
    raise QuantityNotFoundError(
        paths[0] if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more files)",
        f"no data for {hazard}: none of {', '.join(HAZARD_SOURCES[hazard])} found",
    )


def _indicators(hazard: str, data: xr.DataArray, opts: ClimatologyOptions) -> dict[str, xr.DataArray]:
    cov = {"min_year_coverage": opts.min_year_coverage}
    if hazard == "heat":
        tmax = daily_values(data, "max")
        return {
            "heat_days_ge35": heat_days_ge35(tmax, opts.heat_threshold, **cov),
            "heat_processes": heat_processes(tmax, opts.heat_threshold, opts.heat_min_days, **cov),
            "heat_intensity": heat_intensity(tmax, opts.heat_threshold, **cov),
        }
    if hazard == "rainstorm":
        return {
            "rain_max_6h": rain_max_6h(data, **cov),
            "rain_max_24h": rain_max_24h(data, **cov),
            "rain_days_ge50": rain_days_ge50(data, opts.rain_threshold, **cov),
        }
    if hazard == "frost":
        quantity = data.attrs.get("quantity")
        ground = (
            ground_minimum_from_air(data, opts.air_to_ground_offset)
            if quantity in ("air_temperature_min", "air_temperature")
            else daily_values(data, "min")
        )
        return {
            "frost_days_growing": frost_days_growing(ground, opts.frost_threshold, opts.growing_months, **cov)
        }
    return {"sand_days_vis_lt1000": sand_days_vis_lt1000(data, opts.visibility_threshold, **cov)}


def compute_climatology(
    paths: Sequence[str | Path],
    grid: RegularGrid,
    hazards: Sequence[str] = HAZARDS,
    progress: Callable[[str], None] | None = None,
    *,
    options: ClimatologyOptions | None = None,
) -> dict[str, xr.DataArray]:
    """Hazard indicators on the region grid from historical NetCDF files.

    Each hazard's data is read with `read_quantity` (cropped to the region, not regridded), the indicators
    are computed on the source grid, then put on the region grid with `to_region_grid` (computing on the
    source grid keeps the time series short and makes the day counts those of real grid points). Which
    quantity fed each hazard is in ``source_quantity``; frost falls back from ground minimum to ground
    temperature to 2 m minimum (minus ``options.air_to_ground_offset``) and says so in ``ground_source``.

    `progress`, if given, is called with each step's name as it completes (`climatology_steps`).
    Unusable or missing data raise `GridDataError`.
    """
    unknown = [h for h in hazards if h not in HAZARD_SOURCES]
    if unknown:
        raise ValueError(f"unknown hazards {', '.join(unknown)}; known: {', '.join(HAZARD_SOURCES)}")
    opts = options or ClimatologyOptions()
    files = [Path(p) for p in paths]
    out: dict[str, xr.DataArray] = {}
    for hazard in hazards:
        data = _read_first(files, grid, hazard)
        if progress is not None:
            progress(f"read {hazard}")
        for name, indicator in _indicators(hazard, data, opts).items():
            regridded = to_region_grid(indicator, grid)
            regridded.attrs["hazard"] = hazard
            out[name] = regridded
        if progress is not None:
            progress(f"{hazard} indicators")
    return out
