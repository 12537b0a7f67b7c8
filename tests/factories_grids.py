"""Builders of small NetCDF grids laid out the way real centres write them (CF, cfgrib, CMIP habits)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from risk_zoning.grid import RegularGrid

HOUR = np.timedelta64(1, "h")


def region_grid(step: float = 0.1, nx: int = 4, ny: int = 3) -> RegularGrid:
    """A small region grid near Wuhai: lon 106.6.., lat 39.3.."""
    return RegularGrid(lon_min=106.6, lat_min=39.3, step=step, nx=nx, ny=ny)


def axis(start: float, stop: float, step: float) -> np.ndarray:
    """Regular coordinate values from `start` to `stop` inclusive."""
    return np.round(start + np.arange(round((stop - start) / step) + 1) * step, 9)


def source_lat() -> np.ndarray:
    return axis(38.5, 40.5, 0.25)


def source_lon() -> np.ndarray:
    return axis(105.5, 108.0, 0.25)


def times(start: str, n: int, hours: float = 1.0) -> np.ndarray:
    """`n` valid times from `start` every `hours`, as datetime64[ns]."""
    step = np.timedelta64(round(hours * 3600), "s")
    return (np.datetime64(start, "ns") + np.arange(n) * step).astype("datetime64[ns]")


def series_field(values: Sequence[float], ny: int, nx: int) -> np.ndarray:
    """A (time, lat, lon) array repeating one time series in every cell."""
    v = np.asarray(values, dtype=np.float64)
    return np.repeat(np.repeat(v[:, None, None], ny, axis=1), nx, axis=2)


def field_of(
    f: Callable[[np.ndarray, np.ndarray], np.ndarray], lat: np.ndarray, lon: np.ndarray, nt: int
) -> np.ndarray:
    """A (time, lat, lon) array of f(lat, lon), the same at every time."""
    yy, xx = np.meshgrid(lat, lon, indexing="ij")
    return np.repeat(f(yy, xx)[None], nt, axis=0)


def field_dataset(
    name: str,
    values: np.ndarray,
    *,
    valid: np.ndarray,
    lat: np.ndarray | None = None,
    lon: np.ndarray | None = None,
    units: str | None = "K",
    attrs: dict[str, Any] | None = None,
    layout: str = "time",
    reference: str | None = None,
    member_dim: str | None = None,
    lat_name: str = "lat",
    lon_name: str = "lon",
    descending_lat: bool = False,
    time_bounds: np.ndarray | None = None,
    dtype: str = "float32",
) -> xr.Dataset:
    """A dataset holding one variable.

    `values` is (time, [member], lat, lon) with lat/lon ascending as given. `layout`:

    - ``"time"``: a ``time`` dimension of valid times (CF);
    - ``"valid_time"``: a ``valid_time`` dimension (ERA5 from the new CDS);
    - ``"time+step"``: scalar ``time`` = `reference` (forecast_reference_time), a ``step`` dimension in hours
      and a ``valid_time(step)`` coordinate (cfgrib);
    - ``"reference+period"``: scalar ``forecast_reference_time`` and a ``forecast_period`` dimension in
      hours, no valid time (CF forecast files).
    """
    lat = source_lat() if lat is None else np.asarray(lat, dtype=np.float64)
    lon = source_lon() if lon is None else np.asarray(lon, dtype=np.float64)
    data = np.asarray(values, dtype=dtype)
    if descending_lat:
        lat, data = lat[::-1], data[..., ::-1, :]
    dims: list[str] = ["t"]
    if member_dim:
        dims.append(member_dim)
    dims += [lat_name, lon_name]
    var_attrs = dict(attrs or {})
    if units is not None:
        var_attrs["units"] = units
    coords: dict[str, Any] = {
        lat_name: (lat_name, lat, {"units": "degrees_north", "standard_name": "latitude"}),
        lon_name: (lon_name, lon, {"units": "degrees_east", "standard_name": "longitude"}),
    }
    if member_dim:
        coords[member_dim] = (member_dim, np.arange(data.shape[1]))
    valid = np.asarray(valid, dtype="datetime64[ns]")
    if layout in ("time", "valid_time"):
        tname = layout
        coords[tname] = (tname, valid, {"standard_name": "time"})
    elif layout in ("time+step", "reference+period"):
        ref = np.datetime64(reference, "ns")
        hours = (valid - ref) / HOUR
        if layout == "time+step":
            tname = "step"
            coords["time"] = ((), ref, {"standard_name": "forecast_reference_time"})
            coords["step"] = ("step", hours, {"units": "hours", "standard_name": "forecast_period"})
            coords["valid_time"] = ("step", valid, {"standard_name": "time"})
        else:
            tname = "forecast_period"
            coords["forecast_reference_time"] = ((), ref, {"standard_name": "forecast_reference_time"})
            coords["forecast_period"] = ("forecast_period", hours, {"units": "hours"})
    else:
        raise ValueError(layout)
    dims[0] = tname
    ds = xr.Dataset({name: (dims, data, var_attrs)}, coords=coords)
    if time_bounds is not None:
        ds[tname].attrs["bounds"] = f"{tname}_bnds"
        ds[f"{tname}_bnds"] = ((tname, "nv"), np.asarray(time_bounds, dtype="datetime64[ns]"))
    return ds


def write_dataset(ds: xr.Dataset, path: Path, fmt: str = "NETCDF4") -> Path:
    """Write with explicit time encodings so files look like a centre's, not like pandas nanoseconds."""
    encoding: dict[str, dict[str, Any]] = {}
    for name, v in ds.variables.items():
        if np.issubdtype(v.dtype, np.datetime64):
            encoding[str(name)] = {"units": "hours since 2000-01-01 00:00:00", "dtype": "float64"}
    ds.to_netcdf(path, engine="netcdf4", format=fmt, encoding=encoding)
    return path


def write_field(path: Path, name: str, values: np.ndarray, *, fmt: str = "NETCDF4", **kw: Any) -> Path:
    """Write a one-variable file built by `field_dataset`."""
    return write_dataset(field_dataset(name, values, **kw), path, fmt=fmt)


def write_series(
    path: Path, name: str, series: Sequence[float], *, start: str, hours: float = 1.0, **kw: Any
) -> Path:
    """Write one time series repeated over the default source grid."""
    lat, lon = kw.pop("lat", source_lat()), kw.pop("lon", source_lon())
    values = series_field(series, lat.size, lon.size)
    return write_field(path, name, values, valid=times(start, len(series), hours), lat=lat, lon=lon, **kw)


def canonical(
    values: np.ndarray | Sequence[float],
    *,
    start: str,
    hours: float = 1.0,
    quantity: str = "air_temperature",
    units: str = "degC",
    cells: int = 1,
    **attrs: Any,
) -> xr.DataArray:
    """A canonical field (time, lat, lon) as `read_quantity` returns it: one series in `cells` cells.

    `values` is (time,) for the same series everywhere or (time, cells) for one series per cell.
    """
    v = np.asarray(values, dtype=np.float64)
    v = np.repeat(v[:, None], cells, axis=1) if v.ndim == 1 else v
    return xr.DataArray(
        v[:, None, :],
        dims=("time", "lat", "lon"),
        coords={
            "time": times(start, v.shape[0], hours),
            "lat": [39.5],
            "lon": 106.5 + 0.25 * np.arange(cells),
        },
        attrs={"quantity": quantity, "units": units, "source_files": "synthetic.nc", **attrs},
        name=quantity,
    )


def beijing_year(year: int, hours: float = 1.0) -> tuple[str, int]:
    """(first UTC time, number of steps) covering Beijing calendar year `year` exactly, for instants."""
    days = int((np.datetime64(f"{year + 1}-01-01") - np.datetime64(f"{year}-01-01")).astype(int))
    return f"{year - 1}-12-31T16:00", round(days * 24 / hours)


def at(start: str, when: str, hours: float = 1.0) -> int:
    """Index of UTC time `when` in a series starting at `start` every `hours`."""
    return int(
        (np.datetime64(when, "s") - np.datetime64(start, "s")) / np.timedelta64(round(hours * 3600), "s")
    )


def cfgrib_runs_dataset(
    name: str, per_run: np.ndarray, *, references: Sequence[str], step_hours: Sequence[float], **attrs: Any
) -> xr.Dataset:
    """A cfgrib-style dataset of several runs: dims (time = run, step), ``valid_time(time, step)``.

    `per_run` is (run, step) and is repeated over the default source grid, latitude descending as in GRIB.
    """
    lat, lon = source_lat(), source_lon()
    refs = np.array(references, dtype="datetime64[ns]")
    steps = np.asarray(step_hours, dtype=np.float64)
    valid = refs[:, None] + (steps * 3600).astype("timedelta64[s]")[None, :]
    data = np.broadcast_to(
        np.asarray(per_run, dtype=np.float32)[:, :, None, None], (*valid.shape, lat.size, lon.size)
    )
    return xr.Dataset(
        {name: (("time", "step", "latitude", "longitude"), data[:, :, ::-1, :], attrs)},
        coords={
            "time": ("time", refs, {"standard_name": "forecast_reference_time"}),
            "step": ("step", steps, {"units": "hours", "standard_name": "forecast_period"}),
            "valid_time": (("time", "step"), valid.astype("datetime64[ns]"), {"standard_name": "time"}),
            "latitude": ("latitude", lat[::-1], {"units": "degrees_north", "standard_name": "latitude"}),
            "longitude": ("longitude", lon, {"units": "degrees_east", "standard_name": "longitude"}),
            "number": ((), 0, {"standard_name": "realization"}),
            "surface": ((), 0.0),
        },
    )
