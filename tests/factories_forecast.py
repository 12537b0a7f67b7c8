"""Builders of canonical forecast grids (as `risk_zoning.io.netcdf` returns them) for the hazard tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

HOUR = np.timedelta64(1, "h")
REFERENCE = np.datetime64("2024-07-01T00:00", "ns")  # 08:00 Beijing time
LAT = np.array([39.35, 39.45])
LON = np.array([106.65, 106.75, 106.85])

UNITS = {
    "air_temperature": "degC",
    "air_temperature_max": "degC",
    "air_temperature_min": "degC",
    "ground_temperature": "degC",
    "ground_temperature_min": "degC",
    "precipitation": "mm",
    "visibility": "m",
    "wind_speed": "m s-1",
    "wind_gust": "m s-1",
    "dust_concentration": "ug m-3",
}


def valid_times(n: int, *, start: np.datetime64 | str = REFERENCE + HOUR, hours: float = 1.0) -> np.ndarray:
    """`n` valid times from `start` every `hours`, datetime64[ns]."""
    step = np.timedelta64(round(hours * 3600), "s")
    return (np.datetime64(start, "ns") + np.arange(n) * step).astype("datetime64[ns]")


def grid_field(
    quantity: str,
    values: np.ndarray,
    times: np.ndarray,
    *,
    members: bool = False,
    lat: np.ndarray = LAT,
    lon: np.ndarray = LON,
    units: str | None = None,
    attrs: dict[str, Any] | None = None,
) -> xr.DataArray:
    """A canonical DataArray from `values` shaped (time, lat, lon), or (time, member, lat, lon) with members."""
    dims = ("time", "member", "lat", "lon") if members else ("time", "lat", "lon")
    coords: dict[str, Any] = {"time": times, "lat": lat, "lon": lon}
    if members:
        coords["member"] = np.arange(values.shape[1])
    return xr.DataArray(
        np.asarray(values, dtype=np.float32),
        dims=dims,
        coords=coords,
        name=quantity,
        attrs={
            "quantity": quantity,
            "units": units or UNITS[quantity],
            "source_files": f"test_{quantity}.nc",
            "source_variable": quantity,
            "original_units": units or UNITS[quantity],
            **(attrs or {}),
        },
    )


def series(
    quantity: str,
    values: Sequence[float],
    *,
    start: np.datetime64 | str = REFERENCE + HOUR,
    hours: float = 1.0,
    ny: int = LAT.size,
    nx: int = LON.size,
    units: str | None = None,
) -> xr.DataArray:
    """One time series repeated in every cell of the small test grid."""
    v = np.asarray(values, dtype=np.float32)
    block = np.broadcast_to(v[:, None, None], (v.size, ny, nx)).copy()
    return grid_field(
        quantity,
        block,
        valid_times(v.size, start=start, hours=hours),
        lat=LAT[:ny],
        lon=LON[:nx],
        units=units,
    )


def ensemble(
    quantity: str,
    member_values: Sequence[Sequence[float]],
    *,
    start: np.datetime64 | str = REFERENCE + HOUR,
    hours: float = 1.0,
    units: str | None = None,
) -> xr.DataArray:
    """Members' time series (one row each), each repeated in every cell."""
    v = np.asarray(member_values, dtype=np.float32)  # (member, time)
    block = np.broadcast_to(v.T[:, :, None, None], (v.shape[1], v.shape[0], LAT.size, LON.size)).copy()
    return grid_field(
        quantity, block, valid_times(v.shape[1], start=start, hours=hours), members=True, units=units
    )


def hourly_with(
    quantity: str, n: int, base: float, at: dict[int, float], *, start: np.datetime64 | str = REFERENCE + HOUR
) -> xr.DataArray:
    """`n` hourly steps of `base`, with step index -> value overrides `at`."""
    v = np.full(n, base, dtype=np.float32)
    for i, value in at.items():
        v[i] = value
    return series(quantity, v, start=start)


def random_field(
    rng: np.random.Generator,
    quantity: str,
    n_times: int,
    *,
    ny: int = 6,
    nx: int = 8,
    members: int = 0,
    scale: float = 1.0,
    offset: float = 0.0,
) -> xr.DataArray:
    """Random values (gamma for precipitation, normal otherwise) on a ny x nx grid near Wuhai."""
    shape = (n_times, members, ny, nx) if members else (n_times, ny, nx)
    if quantity == "precipitation":
        v = np.where(rng.random(shape) < 0.3, rng.gamma(0.6, 15.0, size=shape), 0.0)
    else:
        v = offset + scale * rng.standard_normal(shape)
    lat = np.round(39.0 + 0.1 * np.arange(ny), 6)
    lon = np.round(106.5 + 0.1 * np.arange(nx), 6)
    return grid_field(quantity, v * (1.0 if quantity != "precipitation" else scale), valid_times(n_times),
                      members=members > 0, lat=lat, lon=lon)  # fmt: skip
