"""Forecast and historical grids as real centres write them, read into one canonical form.

The canonical form, shared by the hazard climatology and the forecast ingest:

- dims ``time`` (valid time, tz-naive UTC ``datetime64[ns]``, strictly increasing), optionally ``member``,
  then ``lat`` (ascending) and ``lon`` (ascending, -180..180);
- canonical units: degC, mm (per time step), m, m s-1; dust keeps its own units;
- ``attrs`` carry provenance: ``quantity``, ``units``, ``source_files``, ``source_variable``,
  ``original_units``, ``conversion``;
- a forecast keeps its run as the non-dimension coordinates ``forecast_reference_time`` and
  ``forecast_period`` along ``time`` when the file says what they are.

Every problem with a file is a `GridDataError` naming the file and the problem in one line.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import cf_units
import numpy as np
import scipy.io
import xarray as xr

from risk_zoning.errors import GridDataError
from risk_zoning.grid import RegularGrid

PathLike = str | Path
Accumulation = Literal["auto", "since_start", "per_step"]

# An accumulation since the run start may dip between consecutive steps by GRIB packing noise (tp is packed
# to about 1e-7 m, i.e. 1e-4 mm; resampled products are coarser). Dips down to this are set to 0; anything
# deeper means the field is not an accumulation since the run start and the file is rejected.
ACCUMULATION_DIP_TOLERANCE_MM = 0.1
NETCDF_SUFFIXES = frozenset({".nc", ".nc4", ".netcdf", ".cdf"})  # file names read as NetCDF

# Coordinate spellings met in files from ECMWF (cfgrib), CMA, NCEP, CMIP/CORDEX and WRF.
_LAT_UNITS = frozenset({"degrees_north", "degree_north", "degree_n", "degrees_n", "degreen", "degreesn"})
_LON_UNITS = frozenset({"degrees_east", "degree_east", "degree_e", "degrees_e", "degreee", "degreese"})
_PLAIN_DEGREES = frozenset({"", "degrees", "degree", "deg"})
_LAT_NAMES = frozenset({"lat", "latitude", "nav_lat"})
_LON_NAMES = frozenset({"lon", "longitude", "nav_lon"})
_NOT_GEOGRAPHIC = frozenset(
    {"grid_latitude", "grid_longitude", "projection_x_coordinate", "projection_y_coordinate"}
)
_MEMBER_NAMES = frozenset(
    {"member", "number", "realization", "realisation", "ensemble", "ens", "ensemble_member"}
)
_LEAD_NAMES = frozenset({"step", "forecast_period", "lead_time", "leadtime", "fcst_period"})
_REFERENCE_NAMES = frozenset({"forecast_reference_time", "reference_time"})
_HEIGHT_NAMES = frozenset({"height", "heightaboveground", "height_above_ground", "height2m", "height10m"})
# Unit strings some centres write that UDUNITS cannot parse, mapped to what they mean.
_UNIT_ALIASES = {"m of water equivalent": "m", "mm of water equivalent": "mm", "~": "1"}
_TRUTHY = frozenset({"1", "true", "yes", "y", "t"})
_TIME_CODER = xr.coders.CFDatetimeCoder(time_unit="ns")
_NS = np.timedelta64(1, "ns")
_SECOND = np.timedelta64(1, "s")


class QuantityNotFoundError(GridDataError):
    """None of the files holds the quantity asked for (the caller may try another one)."""


@dataclass(frozen=True)
class Quantity:
    """A quantity the system uses, how to recognise it in a file, and the units it is returned in.

    A variable is recognised by CF ``standard_name`` first (in the order given, so the first listed wins),
    then by common short names (ECMWF/cfgrib, CMIP, WRF, CMA habits), compared case-insensitively with the
    variable name and its ``GRIB_shortName``. A short name never overrides a contradicting ``standard_name``
    (E-OBS ``tg`` is a daily mean air temperature, so it is not taken for ground temperature).
    """

    name: str
    units: str | None  # canonical CF units; None keeps the source units
    standard_names: tuple[str, ...]
    short_names: tuple[str, ...]
    # "maximum"/"minimum": an extreme over each step (cell_methods "time: maximum"); None: anything but an
    # extreme (instant, mean, sum); "any": extremes too (a daily minimum visibility is still visibility)
    time_method: Literal["maximum", "minimum", "any"] | None = None
    height_m: float | None = None  # checked when the variable carries a height coordinate
    long_name: str = ""
    output_standard_name: str | None = None


QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity(
            "air_temperature",
            "degC",
            ("air_temperature",),
            ("t2m", "2t", "tas", "t2"),
            height_m=2.0,
            long_name="2 m air temperature",
            output_standard_name="air_temperature",
        ),
        Quantity(
            "air_temperature_max",
            "degC",
            ("air_temperature",),
            ("mx2t", "tmax", "tasmax", "mx2t6", "mx2t3", "mx2t24", "tx"),
            time_method="maximum",
            height_m=2.0,
            long_name="maximum 2 m air temperature",
            output_standard_name="air_temperature",
        ),
        Quantity(
            "air_temperature_min",
            "degC",
            ("air_temperature",),
            ("mn2t", "tmin", "tasmin", "mn2t6", "mn2t3", "mn2t24", "tn"),
            time_method="minimum",
            height_m=2.0,
            long_name="minimum 2 m air temperature",
            output_standard_name="air_temperature",
        ),
        Quantity(
            "ground_temperature",
            "degC",
            ("surface_temperature",),
            ("skt", "ts", "tg", "gst"),
            long_name="ground surface (0 cm) temperature",
            output_standard_name="surface_temperature",
        ),
        Quantity(
            "ground_temperature_min",
            "degC",
            ("surface_temperature",),
            ("gstmin", "gst_min", "tgmin", "tsmin"),
            time_method="minimum",
            long_name="minimum ground surface (0 cm) temperature",
            output_standard_name="surface_temperature",
        ),
        Quantity(
            "precipitation",
            "mm",
            (
                "precipitation_amount",
                "lwe_thickness_of_precipitation_amount",
                "precipitation_flux",
                "lwe_precipitation_rate",
                "thickness_of_rainfall_amount",
                "rainfall_amount",
                "rainfall_flux",
            ),
            ("tp", "pr", "precip", "precipitation", "rain", "apcp", "pre"),
            long_name="precipitation amount per time step",
            output_standard_name="precipitation_amount",
        ),
        Quantity(
            "visibility",
            "m",
            ("visibility_in_air",),
            ("vis", "visibility"),
            time_method="any",
            long_name="horizontal visibility",
            output_standard_name="visibility_in_air",
        ),
        Quantity(
            "wind_speed",
            "m s-1",
            ("wind_speed",),
            ("si10", "10si", "ws10", "wind10", "sfcwind", "ws"),
            height_m=10.0,
            long_name="10 m wind speed",
            output_standard_name="wind_speed",
        ),
        Quantity(
            "wind_gust",
            "m s-1",
            ("wind_speed_of_gust",),
            ("fg10", "10fg", "i10fg", "gust", "fg310", "10fg3"),
            time_method="any",
            long_name="10 m wind gust",
            output_standard_name="wind_speed_of_gust",
        ),
        Quantity(
            "dust_concentration",
            None,
            (
                "mass_concentration_of_dust_dry_aerosol_particles_in_air",
                "atmosphere_optical_thickness_due_to_dust_ambient_aerosol_particles",
            ),
            ("dust_conc", "dust", "duaod", "duaod550"),
            time_method="any",
            long_name="dust concentration (source units)",
        ),
    )
}

# 10 m wind components: wind_speed is their hypotenuse when a file has no wind speed variable.
_EASTWARD_10M = Quantity(
    "eastward_wind", "m s-1", ("eastward_wind",), ("u10", "10u", "uas", "u10m"), height_m=10.0
)
_NORTHWARD_10M = Quantity(
    "northward_wind", "m s-1", ("northward_wind",), ("v10", "10v", "vas", "v10m"), height_m=10.0
)
_ALL_SHORT_NAMES = {
    s: q.name for q in (*QUANTITIES.values(), _EASTWARD_10M, _NORTHWARD_10M) for s in q.short_names
}


# ---------------------------------------------------------------------------------------------- opening


def open_grid(path: PathLike) -> xr.Dataset:
    """Open a NetCDF file with the netCDF4 engine (xarray never probes other backends), times decoded.

    Times decode to ``datetime64[ns]``; lead times (``step``, ``forecast_period``) are left numeric and
    decoded by `read_quantity` from their units. Classic-format files are checked for truncation first,
    because the netCDF library reads missing bytes of a truncated classic file as zeros without complaint.
    The caller closes the dataset (``with open_grid(p) as ds:``).

    Raises `GridDataError` (file, one line) for a missing, empty, non-NetCDF, truncated or undecodable file.
    """
    p = Path(path)
    if not p.exists():
        raise GridDataError(p, "no such file")
    if not p.is_file():
        raise GridDataError(p, "not a regular file")
    try:
        with p.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise GridDataError(p, f"cannot read the file: {e.strerror or e}") from e
    if not magic:
        raise GridDataError(p, "empty file")
    if magic in (b"CDF\x01", b"CDF\x02"):
        _check_classic_complete(p)
    try:
        return xr.open_dataset(p, engine="netcdf4", decode_times=_TIME_CODER, decode_timedelta=False)
    except Exception as e:  # the netCDF4/HDF5 stack raises OSError, RuntimeError, ValueError, KeyError, ...
        raise GridDataError(p, f"not a readable NetCDF file ({_one_line(e)})") from e


def _check_classic_complete(p: Path) -> None:
    # scipy's classic reader maps every variable onto the file at open: a short file fails right there.
    try:
        with scipy.io.netcdf_file(p, "r", mmap=True):
            pass
    except Exception as e:
        raise GridDataError(p, f"truncated or corrupt NetCDF classic file ({_one_line(e)})") from e


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return re.sub(r":\s*b?'[^']*'$", "", text)  # netCDF4 appends the path we already name


# ---------------------------------------------------------------------------------------------- finding


def _standard_name(var: xr.DataArray) -> str | None:
    sn = var.attrs.get("standard_name")
    return None if not sn or str(sn).lower() == "unknown" else str(sn)


def _time_method(var: xr.DataArray) -> str | None:
    """The CF cell method over time, e.g. 'maximum' for ``"area: mean time: maximum (interval: 1 hour)"``."""
    m = re.search(r"\btime\s*:\s*(?:\w+\s*:\s*)*(\w+)", str(var.attrs.get("cell_methods", "")))
    return m.group(1).lower() if m else None


def _height_m(var: xr.DataArray) -> float | None:
    for name, c in var.coords.items():
        if c.size != 1 or not (
            c.attrs.get("standard_name") == "height" or str(name).lower() in _HEIGHT_NAMES
        ):
            continue
        try:
            return float(
                cf_units.Unit(str(c.attrs.get("units", "m"))).convert(float(np.ravel(c.values)[0]), "m")
            )
        except ValueError:
            return None
    return None


def _fits(var: xr.DataArray, q: Quantity, *, by_standard_name: bool) -> bool:
    method = _time_method(var)
    if q.time_method is None:
        if method in ("maximum", "minimum"):
            return False
    elif q.time_method == "any":
        pass
    elif method != q.time_method and (by_standard_name or method is not None):
        return False
    if _is_profile(var):
        return False
    height = _height_m(var)
    return q.height_m is None or height is None or abs(height - q.height_m) <= 0.5


_VERTICAL_STANDARD_NAMES = frozenset(
    {
        "air_pressure",
        "height",
        "altitude",
        "depth",
        "model_level_number",
        "atmosphere_hybrid_sigma_pressure_coordinate",
        "atmosphere_sigma_coordinate",
    }
)
_VERTICAL_NAMES = frozenset(
    {"level", "lev", "plev", "isobaricinhpa", "pressure", "hybrid", "depth", "height"}
)


def _is_profile(var: xr.DataArray) -> bool:
    """A field on several vertical levels is not a surface quantity."""
    return any(
        var.sizes[d] > 1
        and (
            str(d).lower() in _VERTICAL_NAMES
            or (d in var.coords and var[d].attrs.get("standard_name") in _VERTICAL_STANDARD_NAMES)
        )
        for d in var.dims
    )


def _locate(ds: xr.Dataset, q: Quantity, path: Path) -> str | None:
    """Name of the variable holding `q` in `ds`, None if there is none; ambiguity is an error, not a guess."""
    candidates = [str(n) for n, v in ds.data_vars.items() if v.ndim >= 2]
    for sn in q.standard_names:
        hits = [
            n for n in candidates if _standard_name(ds[n]) == sn and _fits(ds[n], q, by_standard_name=True)
        ]
        # A variable that carries another quantity's short name (mx2t tagged air_temperature) is that one;
        # among several, one carrying this quantity's short name (t2m) is the one meant.
        hits = [n for n in hits if _ALL_SHORT_NAMES.get(n.lower(), q.name) == q.name] or hits
        own = [n for n in hits if n.lower() in q.short_names]
        hits = own if len(own) == 1 else hits
        if len(hits) > 1:
            raise GridDataError(path, f"several variables could be {q.name} ({', '.join(hits)}); keep one")
        if hits:
            return hits[0]
    for short in q.short_names:
        hits = [
            n
            for n in candidates
            if short in (n.lower(), str(ds[n].attrs.get("GRIB_shortName", "")).lower())
            and _standard_name(ds[n]) in (None, *q.standard_names)
            and _fits(ds[n], q, by_standard_name=False)
        ]
        if len(hits) > 1:
            raise GridDataError(path, f"several variables could be {q.name} ({', '.join(hits)}); keep one")
        if hits:
            return hits[0]
    return None


# ---------------------------------------------------------------------------------------------- coordinates


def _is_datetime(c: xr.DataArray) -> bool:
    if np.issubdtype(c.dtype, np.datetime64):
        return True
    return c.dtype == object and c.size > 0 and hasattr(np.ravel(c.values)[0], "calendar")


def _is_lead(name: str, c: xr.DataArray) -> bool:
    if np.issubdtype(c.dtype, np.timedelta64):
        return True
    return (
        name.lower() in _LEAD_NAMES or c.attrs.get("standard_name") == "forecast_period"
    ) and np.issubdtype(c.dtype, np.number)


def _as_datetime64(c: xr.DataArray, path: Path) -> np.ndarray:
    values = c.values
    if values.dtype == object:  # cftime dates of a non-standard calendar
        try:
            values = xr.CFTimeIndex(np.ravel(values)).to_datetimeindex(unsafe=True).values.reshape(c.shape)
        except (ValueError, TypeError, OverflowError) as e:
            cal = getattr(np.ravel(c.values)[0], "calendar", "?")
            raise GridDataError(
                path, f"times of calendar '{cal}' do not map onto real dates ({_one_line(e)})"
            ) from e
    return np.asarray(values).astype("datetime64[ns]")


def _as_timedelta64(name: str, c: xr.DataArray, path: Path) -> np.ndarray:
    if np.issubdtype(c.dtype, np.timedelta64):
        return c.values.astype("timedelta64[ns]")
    units = c.attrs.get("units")
    if not units:
        raise GridDataError(path, f"lead time '{name}' has no units")
    try:
        seconds = cf_units.Unit(str(units)).convert(np.asarray(c.values, dtype=np.float64), "s")
    except ValueError as e:
        raise GridDataError(path, f"lead time '{name}' has units '{units}', not a duration") from e
    return np.round(np.asarray(seconds) * 1e9).astype(np.int64).astype("timedelta64[ns]")


def _geo_kind(name: str, c: xr.DataArray) -> str | None:
    sn = c.attrs.get("standard_name")
    units = str(c.attrs.get("units", "")).strip().lower()
    if sn in _NOT_GEOGRAPHIC:
        return "rotated"
    if (
        sn == "latitude"
        or units in _LAT_UNITS
        or (sn is None and units in _PLAIN_DEGREES and name.lower() in _LAT_NAMES)
    ):
        return "lat"
    if (
        sn == "longitude"
        or units in _LON_UNITS
        or (sn is None and units in _PLAIN_DEGREES and name.lower() in _LON_NAMES)
    ):
        return "lon"
    return None


def _spatial_dims(var: xr.DataArray, name: str, path: Path) -> tuple[xr.DataArray, str, str]:
    """Find (or swap in) the 1-D latitude and longitude dimensions of `var`."""
    found: dict[str, str] = {}
    for d in var.dims:
        if d in var.coords and var[d].ndim == 1 and (kind := _geo_kind(str(d), var[d])) in ("lat", "lon"):
            found.setdefault(kind, str(d))
    for cname, c in var.coords.items():  # auxiliary 1-D coordinates, e.g. lat(y), lon(x)
        kind = _geo_kind(str(cname), c)
        if kind in ("lat", "lon") and kind not in found and c.ndim == 1 and c.dims[0] not in found.values():
            var = var.swap_dims({c.dims[0]: cname})
            found[kind] = str(cname)
    if "lat" in found and "lon" in found:
        return var, found["lat"], found["lon"]
    if any(_geo_kind(str(n), c) in ("lat", "lon") and c.ndim == 2 for n, c in var.coords.items()):
        raise GridDataError(
            path,
            f"variable '{name}' is on a curvilinear grid (2-D latitude/longitude); "
            "regrid it to a regular latitude/longitude grid first",
        )
    if any(_geo_kind(str(n), c) == "rotated" for n, c in var.coords.items()):
        raise GridDataError(
            path,
            f"variable '{name}' is on a rotated or projected grid; "
            "regrid it to a regular latitude/longitude grid first",
        )
    raise GridDataError(
        path,
        f"variable '{name}' has no latitude and longitude dimensions (dims: {', '.join(map(str, var.dims))})",
    )


def _time_parts(
    var: xr.DataArray, name: str, path: Path
) -> tuple[xr.DataArray, xr.DataArray | None, xr.DataArray | None]:
    """(valid time, reference time or None, lead time or None) as DataArrays over some of `var`'s dims."""
    stamps = {str(n): c for n, c in var.coords.items() if _is_datetime(c)}
    leads = {str(n): c for n, c in var.coords.items() if _is_lead(str(n), c)}
    refs = {
        n: c
        for n, c in stamps.items()
        if c.attrs.get("standard_name") == "forecast_reference_time" or n.lower() in _REFERENCE_NAMES
    }
    valids = {n: c for n, c in stamps.items() if n not in refs}
    # A 'time' that does not vary along the lead-time dimension cannot be the valid time: it is the run's
    # reference time (GRIB habit).
    if (
        leads
        and not refs
        and list(valids) == ["time"]
        and set(next(iter(leads.values())).dims) - set(valids["time"].dims)
    ):
        refs, valids = valids, {}
    if len(leads) > 1:
        raise GridDataError(path, f"variable '{name}' has several lead-time coordinates ({', '.join(leads)})")
    if len(refs) > 1:
        raise GridDataError(
            path, f"variable '{name}' has several reference-time coordinates ({', '.join(refs)})"
        )
    if len(valids) > 1:
        preferred = [n for n in ("valid_time", "time") if n in valids]
        if not preferred:
            raise GridDataError(path, f"variable '{name}' has several time coordinates ({', '.join(valids)})")
        valids = {preferred[0]: valids[preferred[0]]}

    def as_dt(c: xr.DataArray) -> xr.DataArray:
        return xr.DataArray(_as_datetime64(c, path), dims=c.dims)

    ref = as_dt(next(iter(refs.values()))) if refs else None
    lead = None
    if leads:
        lname, lc = next(iter(leads.items()))
        lead = xr.DataArray(_as_timedelta64(lname, lc, path), dims=lc.dims)
    if valids:
        valid = as_dt(next(iter(valids.values())))
    elif ref is not None and lead is not None:
        valid = ref + lead
    elif ref is not None:
        raise GridDataError(
            path, f"variable '{name}' has a forecast reference time but no lead or valid time"
        )
    else:
        raise GridDataError(path, f"variable '{name}' has no time coordinate")
    if ref is None and lead is not None:
        ref = valid - lead
    elif lead is None and ref is not None:
        lead = valid - ref
    return valid, ref, lead


def _normalise(
    var: xr.DataArray, ds: xr.Dataset, name: str, path: Path, grid: RegularGrid | None
) -> xr.DataArray:
    """Canonical dims (time, [member], lat, lon), ascending lat/lon in -180..180, valid times.

    Stays lazy until the field has been cropped to `grid` (when given), so a national file is read only
    over the region.
    """
    var, lat_dim, lon_dim = _spatial_dims(var, name, path)
    valid, ref, lead = _time_parts(var, name, path)
    bounds = _time_bounds(var, ds, name, path, valid)
    if any(d not in var.dims for d in valid.dims):
        raise GridDataError(
            path, f"variable '{name}': its valid time varies along a dimension it does not have"
        )
    member_dims = [
        str(d)
        for d in var.dims
        if str(d).lower() in _MEMBER_NAMES
        or (d in var.coords and var[d].attrs.get("standard_name") == "realization")
    ]
    if len(member_dims) > 1:
        raise GridDataError(
            path, f"variable '{name}' has several ensemble dimensions ({', '.join(member_dims)})"
        )
    keep = {lat_dim, lon_dim, *member_dims}
    var = var.drop_vars([c for c in var.coords if c not in keep])
    renames = {lat_dim: "lat", lon_dim: "lon"}
    if member_dims:
        renames[member_dims[0]] = "member"
    clash = [d for d in ("lat", "lon", "member") if d in var.dims and d not in renames.values()]
    if clash or any(k in valid.dims for k in renames):
        raise GridDataError(path, f"variable '{name}' uses the names lat/lon/member for other dimensions")
    var = var.rename({k: v for k, v in renames.items() if k != v})
    var = _order_lat_lon(var, name, path)
    if grid is not None:
        var = crop_to_region(var, grid, source=path)

    tdims = [str(d) for d in valid.dims]
    if not tdims:
        var = var.expand_dims("time")
    elif len(tdims) == 1:
        var = var.rename({tdims[0]: "time"}) if tdims[0] != "time" else var
    else:  # several runs x lead times (cfgrib 'time' x 'step'): one valid-time axis, run after run
        var = var.stack(_valid=tdims, create_index=False).rename(_valid="time")

    def flat(a: xr.DataArray) -> np.ndarray:
        return xr.broadcast(a, valid)[0].transpose(*tdims).values.ravel()

    coords: dict[str, Any] = {"time": ("time", flat(valid))}
    if ref is not None and lead is not None:
        coords["forecast_reference_time"] = ("time", flat(ref))
        coords["forecast_period"] = ("time", flat(lead))
    if bounds is not None:
        coords["interval_start"] = ("time", bounds[0])
        coords["interval_end"] = ("time", bounds[1])
    var = var.assign_coords(coords)
    for d in [str(d) for d in var.dims if d not in ("time", "member", "lat", "lon")]:
        if var.sizes[d] != 1:
            raise GridDataError(
                path, f"variable '{name}' has an unexpected dimension '{d}' of size {var.sizes[d]}"
            )
        var = var.isel({d: 0}, drop=True)
    var = var.transpose("time", *(["member"] if member_dims else []), "lat", "lon")
    _check_times(var.time.values, path, f"variable '{name}'")
    return var


def _time_bounds(
    var: xr.DataArray, ds: xr.Dataset, name: str, path: Path, valid: xr.DataArray
) -> tuple[np.ndarray, np.ndarray] | None:
    """(lower, upper) CF ``bounds`` of the valid-time coordinate when the file has them."""
    if valid.ndim != 1:
        return None
    tdim = valid.dims[0]
    coord = var.coords.get(tdim)
    bname = None if coord is None else coord.attrs.get("bounds") or coord.encoding.get("bounds")
    if not bname or bname not in ds.variables:
        return None
    bounds = ds[bname]
    if bounds.ndim != 2 or bounds.sizes.get(tdim) != valid.size:
        raise GridDataError(path, f"time bounds '{bname}' of '{name}' do not match its time axis")
    other = next(d for d in bounds.dims if d != tdim)
    lower = _as_datetime64(bounds.isel({other: 0}), path)
    upper = _as_datetime64(bounds.isel({other: -1}), path)
    if not (upper > lower).all():
        raise GridDataError(path, f"time bounds '{bname}' of '{name}' are empty or reversed")
    return lower, upper


def _order_lat_lon(var: xr.DataArray, name: str, path: Path) -> xr.DataArray:
    lat = np.asarray(var.lat.values, dtype=np.float64)
    lon = np.asarray(var.lon.values, dtype=np.float64)
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise GridDataError(path, f"variable '{name}' has missing latitude or longitude values")
    if lon.size and lon.max() > 180.0:
        lon = (lon + 180.0) % 360.0 - 180.0
    var = var.assign_coords(lat=("lat", lat), lon=("lon", lon))
    _, first = np.unique(lon, return_index=True)
    if first.size != lon.size:  # 0 and 360 both present: the same meridian twice
        var = var.isel(lon=np.sort(first))
    if np.unique(lat).size != lat.size:
        raise GridDataError(path, f"variable '{name}' repeats latitudes")
    if not np.all(np.diff(var.lat.values) > 0):
        var = var.sortby("lat")
    if not np.all(np.diff(var.lon.values) > 0):
        var = var.sortby("lon")
    return var


def _check_times(t: np.ndarray, source: str | Path, what: str) -> None:
    d = np.diff(t)
    if np.isnat(t).any():
        raise GridDataError(source, f"{what} has missing (NaT) times")
    if (d == np.timedelta64(0, "ns")).any():
        raise GridDataError(
            source, f"{what} has duplicate times, e.g. {t[1:][d == np.timedelta64(0, 'ns')][0]}"
        )
    if (d < np.timedelta64(0, "ns")).any():
        raise GridDataError(
            source, f"{what} has times out of order at {t[1:][d < np.timedelta64(0, 'ns')][0]}"
        )


# ---------------------------------------------------------------------------------------------- units


def _unit(units: Any, name: str, path: Path) -> cf_units.Unit:
    if units is None or str(units).strip() == "":
        raise GridDataError(path, f"variable '{name}' has no units attribute; refusing to guess")
    text = _UNIT_ALIASES.get(str(units).strip(), str(units).strip())
    try:
        return cf_units.Unit(text)
    except ValueError as e:
        raise GridDataError(path, f"variable '{name}' has units '{units}' that UDUNITS cannot read") from e


def _convert(values: np.ndarray, src: cf_units.Unit, dst: str) -> np.ndarray:
    out = src.convert(values, cf_units.Unit(dst)) if str(src) != dst else values
    return np.asarray(out)


@dataclass
class _Piece:
    """One file's share of a quantity, normalised, cropped, loaded and in canonical units (or mm s-1)."""

    data: xr.DataArray
    path: Path
    variable: str
    original_units: str
    form: Literal["state", "amount", "rate"]
    accumulated: bool
    note: str


def _precipitation_form(
    src: cf_units.Unit, name: str, path: Path
) -> tuple[str, str, Literal["amount", "rate"]]:
    """(unit to convert to, label, form): water mass per area is water depth (1 kg m-2 = 1 mm)."""
    for dst, label, form in (
        ("mm", "mm", "amount"),
        ("kg m-2", "mm (1 kg m-2 of water = 1 mm)", "amount"),
        ("mm s-1", "mm s-1", "rate"),
        ("kg m-2 s-1", "mm s-1 (1 kg m-2 of water = 1 mm)", "rate"),
    ):
        if src.is_convertible(cf_units.Unit(dst)):
            return dst, label, form  # type: ignore[return-value]
    raise GridDataError(
        path, f"variable '{name}': cannot convert units '{src}' to 'mm' or a precipitation rate"
    )


def _is_accumulated(var: xr.DataArray, piece: xr.DataArray, accumulation: Accumulation) -> bool:
    """Whether precipitation is accumulated since the run start (see `read_quantity` for the rule)."""
    if accumulation != "auto":
        return accumulation == "since_start"
    attrs = var.attrs
    if str(attrs.get("accumulated", "")).strip().lower() in _TRUTHY:
        return True
    if str(attrs.get("accumulation", "")).strip().lower() in (
        "since_start",
        "since_run_start",
        "since_forecast_reference_time",
    ):
        return True
    has_lead = "forecast_period" in piece.coords
    if str(attrs.get("GRIB_stepType", "")).lower() == "accum" and has_lead:
        return True
    if _time_method(var) == "sum" and "interval_start" in piece.coords:
        start = piece["interval_start"].values
        anchor = piece["forecast_reference_time"].values if has_lead else start[:1]
        return bool(start.size > 1 and np.all(start == anchor))
    return False


def _read_piece(
    ds: xr.Dataset, name: str, q: Quantity, path: Path, grid: RegularGrid | None, accumulation: Accumulation
) -> _Piece:
    var = ds[name]
    units_attr = var.attrs.get("units")
    src = _unit(units_attr, name, path) if q.units is not None else None
    if units_attr is None or str(units_attr).strip() == "":
        raise GridDataError(path, f"variable '{name}' has no units attribute; refusing to guess")
    da = _normalise(var, ds, name, path, grid)
    try:
        da = da.load()
    except Exception as e:  # a damaged HDF5 chunk surfaces only when read
        raise GridDataError(path, f"cannot read variable '{name}' ({_one_line(e)})") from e
    dtype = np.float32 if da.dtype == np.float32 else np.float64
    values = np.asarray(da.values, dtype=np.float64)
    accumulated = False
    form: Literal["state", "amount", "rate"] = "state"
    if src is None or q.units is None:
        note = f"kept in {units_attr}"
        units_out = str(units_attr)
    elif q.name == "precipitation":
        dst, label, form = _precipitation_form(src, name, path)
        values = _convert(values, src, dst)
        note = f"{src} -> {label}"
        units_out = "mm" if form == "amount" else "mm s-1"
        accumulated = _is_accumulated(var, da, accumulation)
    else:
        if not src.is_convertible(cf_units.Unit(q.units)):
            raise GridDataError(
                path, f"variable '{name}': cannot convert units '{units_attr}' to '{q.units}'"
            )
        values = _convert(values, src, q.units)
        note = f"{src} -> {q.units}" if str(src) != q.units else f"already {q.units}"
        units_out = q.units
    out = da.copy(data=values.astype(dtype))
    if (accumulated or form == "rate") and "forecast_period" in out.coords:
        # lead time 0 closes a zero-length interval; dropping it here also keeps run N+1's analysis step
        # from colliding with run N's last step when consecutive runs are read together
        out = out.isel(time=out["forecast_period"].values > np.timedelta64(0, "ns"))
    out.attrs = {"units": units_out}
    if (cm := var.attrs.get("cell_methods")) is not None:
        out.attrs["cell_methods"] = str(cm)
    return _Piece(out, path, name, str(units_attr), form, accumulated, note)


# ---------------------------------------------------------------------------------------------- combining


def _label(paths: Sequence[Path]) -> str:
    return str(paths[0]) if len(paths) == 1 else f"{paths[0]} (+{len(paths) - 1} more files)"


def _combine(pieces: list[_Piece], q: Quantity) -> xr.DataArray:
    for a, b in itertools.pairwise(pieces):
        if b.data.time.values[0] <= a.data.time.values[-1]:
            raise GridDataError(f"{a.path}, {b.path}", f"files overlap in time at {b.data.time.values[0]}")
    if len({p.form for p in pieces}) > 1 or len({p.accumulated for p in pieces}) > 1:
        raise GridDataError(
            _label([p.path for p in pieces]),
            f"files give {q.name} in different forms (amounts, rates, accumulations); use one",
        )
    datas = [p.data for p in pieces]
    common = set.intersection(*(set(map(str, d.coords)) for d in datas))
    datas = [d.drop_vars([c for c in d.coords if str(c) not in common]) for d in datas]
    if len(datas) == 1:
        return datas[0]
    try:
        return xr.concat(
            datas, dim="time", join="exact", coords="minimal", compat="override", combine_attrs="override"
        )
    except ValueError as e:
        raise GridDataError(
            _label([p.path for p in pieces]), f"files cannot be joined along time: {_one_line(e)}"
        ) from e


def _runs(da: xr.DataArray) -> list[np.ndarray]:
    """Positions along time of each forecast run (one run when the files do not say)."""
    if "forecast_reference_time" not in da.coords:
        return [np.arange(da.sizes["time"])]
    ref = da["forecast_reference_time"].values
    return [np.flatnonzero(ref == r) for r in np.unique(ref)]


def _check_run_start(lead: np.ndarray, source: str, what: str) -> None:
    """A run's first step must not be longer than the next one: else the files start mid-run."""
    positive = lead[lead > np.timedelta64(0, "ns")]
    if positive.size >= 2 and positive[0] > (positive[1] - positive[0]) * 1.01:
        raise GridDataError(
            source,
            f"{what} starts {positive[0] / np.timedelta64(1, 'h'):g} h into its run but steps are "
            f"{(positive[1] - positive[0]) / np.timedelta64(1, 'h'):g} h apart: the files start mid-run; "
            "include the earlier steps",
        )


def _deaccumulate(da: xr.DataArray, source: str) -> tuple[xr.DataArray, str]:
    values = np.asarray(da.values, dtype=np.float64)
    out = np.empty_like(values)
    lead = da["forecast_period"].values if "forecast_period" in da.coords else None
    for idx in _runs(da):
        x = values[idx]
        if lead is not None:
            _check_run_start(lead[idx], source, "accumulated precipitation")
        out[idx] = np.diff(x, axis=0, prepend=np.zeros_like(x[:1]))
    with np.errstate(invalid="ignore"):
        dips = out < 0
    worst = float(out[dips].min()) if dips.any() else 0.0
    if worst < -ACCUMULATION_DIP_TOLERANCE_MM:
        when = da.time.values[np.argwhere(out == worst)[0][0]]
        raise GridDataError(
            source,
            f"precipitation marked as accumulated since the run start falls by {-worst:.3g} mm at {when}; "
            "if it holds per-step amounts, read it with accumulation='per_step'",
        )
    out[dips] = 0.0
    note = "accumulated since run start -> per-step differences (first step from 0"
    note += f"; {int(dips.sum())} dips down to {worst:.3g} mm set to 0)" if dips.any() else ")"
    return da.copy(data=out.astype(da.dtype)), note


def _step_seconds(da: xr.DataArray, source: str) -> np.ndarray:
    """Length of each step's interval, for turning mean rates into amounts."""
    t = da.time.values
    if "interval_start" in da.coords:
        return cast(np.ndarray, (da["interval_end"].values - da["interval_start"].values) / _SECOND)
    if "forecast_period" in da.coords:
        lead = da["forecast_period"].values
        sec = np.empty(t.size)
        for idx in _runs(da):
            _check_run_start(lead[idx], source, "precipitation rate")
            sec[idx] = np.diff(lead[idx], prepend=np.timedelta64(0, "ns")) / _SECOND
        return sec
    if t.size < 2:
        raise GridDataError(
            source, "a single precipitation rate without time bounds: its interval is unknown"
        )
    d = np.diff(t)
    if not (d == d[0]).all():
        raise GridDataError(
            source,
            "precipitation rates on irregular time steps without time bounds: the interval of each "
            "step is unknown",
        )
    return np.full(t.size, d[0] / _SECOND)


def _read(
    paths: Sequence[Path], q: Quantity, grid: RegularGrid | None, accumulation: Accumulation
) -> tuple[xr.DataArray, list[_Piece]] | None:
    pieces: list[_Piece] = []
    for path in paths:
        with open_grid(path) as ds:
            name = _locate(ds, q, path)
            if name is not None:
                pieces.append(_read_piece(ds, name, q, path, grid, accumulation))
    if not pieces:
        return None
    if not any(p.data.sizes["time"] for p in pieces):
        raise GridDataError(_label([p.path for p in pieces]), f"no {q.name} step is left after lead time 0")
    pieces = [p for p in pieces if p.data.sizes["time"]]
    pieces.sort(key=lambda p: p.data.time.values[0])
    source = _label([p.path for p in pieces])
    cell_methods = pieces[0].data.attrs.get("cell_methods")
    da = _combine(pieces, q)
    _check_times(da.time.values, source, q.name)
    notes = []
    if pieces[0].form == "amount" and pieces[0].accumulated:
        da, note = _deaccumulate(da, source)
        notes.append(note)
    elif pieces[0].form == "rate":
        if pieces[0].accumulated:
            raise GridDataError(source, "a precipitation rate cannot be accumulated since the run start")
        seconds = _step_seconds(da, source)
        da = da.copy(data=(da.values * seconds.reshape((-1,) + (1,) * (da.ndim - 1))).astype(da.dtype))
        notes.append("mean rate x step length -> per-step amount")
    if not np.isfinite(da.values).any():
        where = " within the region" if grid is not None else ""
        raise GridDataError(
            source, f"variable '{pieces[0].variable}' has no valid values{where} (all missing)"
        )
    if q.name == "precipitation" and "interval_end" in da.coords:
        # the contract: an amount is stamped at the end of its interval (CMIP stamps daily means at noon)
        da = da.assign_coords(time=da["interval_end"].values)
        _check_times(da.time.values, source, q.name)
    da = da.drop_vars([c for c in ("interval_start", "interval_end") if c in da.coords])
    units = "mm" if q.name == "precipitation" else pieces[0].data.attrs["units"]
    da.attrs = {
        "quantity": q.name,
        "units": units,
        "source_files": ", ".join(str(p.path) for p in pieces),
        "source_variable": ", ".join(dict.fromkeys(p.variable for p in pieces)),
        "original_units": ", ".join(dict.fromkeys(p.original_units for p in pieces)),
        "conversion": "; ".join([*dict.fromkeys(p.note for p in pieces), *notes]),
    }
    if q.long_name:
        da.attrs["long_name"] = q.long_name
    if q.output_standard_name:
        da.attrs["standard_name"] = q.output_standard_name
    if cell_methods is not None:
        da.attrs["cell_methods"] = cell_methods
    da.name = q.name
    return da, pieces


def read_quantity(
    paths: Sequence[PathLike] | PathLike,
    quantity: str,
    grid: RegularGrid | None = None,
    *,
    method: str = "auto",
    regrid: bool = True,
    accumulation: Accumulation = "auto",
) -> xr.DataArray:
    """Read one quantity from one or more NetCDF files into the canonical form (see the module docstring).

    Files may hold one run each or one variable each; those without the quantity are skipped. Pieces are
    sorted by their first valid time and joined along time (a running window may straddle two files);
    overlapping or out-of-order times, different grids, missing units or unconvertible units are errors.
    With `grid`, each file is cropped to the region (one source cell of margin) before it is read, and the
    result is put on the grid by `to_region_grid` (`method`) unless `regrid` is False.

    ``wind_speed`` comes from a wind-speed variable or, failing that, from 10 m components (u10/v10,
    uas/vas, eastward_wind/northward_wind at 10 m): speed = hypot(u, v).

    Precipitation is returned as the amount per step in mm, over the interval ending at each valid time:

    - amounts (mm, m, kg m-2; 1 kg m-2 of water = 1 mm) are kept per step, unless they are accumulated
      since the run start: with ``accumulation="auto"`` that is when the variable says so explicitly
      (``accumulated`` true, or ``accumulation`` = ``since_start``), or GRIB_stepType is ``accum`` *and*
      the file gives the lead time (step/forecast_period), or cell_methods has ``time: sum`` and the time
      bounds all start at the run's reference time. GRIB ``accum`` without a lead time (ERA5 as delivered in
      NetCDF) is taken as per-step: ERA5 accumulates over the hour ending at the valid time only. Pass
      ``accumulation="since_start"`` or ``"per_step"`` to state it. (ERA5-Land, which restarts its
      accumulation at 00 UTC each day without saying so in NetCDF, is not recognised.);
    - accumulations are differenced run by run (runs by ``forecast_reference_time``), the first step of a
      run from zero, so a run split over two files is differenced across the split; a lead-time-0 step
      (a zero-length interval) is dropped from accumulations and rates, file by file, so consecutive runs
      join without colliding; a run that starts mid-way (first lead longer than the step after it) is
      rejected because its first difference would span hours that are not in the files; dips down to
      `ACCUMULATION_DIP_TOLERANCE_MM` (packing noise) are set to 0 and counted in ``conversion``; deeper
      dips reject the file;
    - rates (kg m-2 s-1, mm h-1, m s-1) are means over the step: multiplied by the time-bounds width, else by
      the lead-time difference within the run, else by the (regular) spacing of the valid times;
    - with CF time bounds, each amount is stamped at its upper bound (CMIP stamps a daily total at noon).

    >>> da = read_quantity(["ecmwf_0p1_2024070100.nc"], "precipitation", wuhai_grid)  # doctest: +SKIP
    >>> da.attrs["conversion"]  # doctest: +SKIP
    'm -> mm; accumulated since run start -> per-step differences (first step from 0)'
    """
    path_list = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    if not path_list:
        raise ValueError("read_quantity needs at least one file")
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown quantity '{quantity}'; known: {', '.join(QUANTITIES)}")
    q = QUANTITIES[quantity]
    found = _read(path_list, q, grid, accumulation)
    if found is not None:
        da = found[0]
    elif quantity == "wind_speed":
        da = _wind_from_components(path_list, grid)
    else:
        raise QuantityNotFoundError(
            _label(path_list),
            f"no {quantity} variable (looked for standard_name {' / '.join(q.standard_names)} "
            f"or a variable named {' / '.join(q.short_names)})",
        )
    if grid is not None and regrid:
        da = to_region_grid(da, grid, method)
    return da


def _wind_from_components(paths: list[Path], grid: RegularGrid | None) -> xr.DataArray:
    u = _read(paths, _EASTWARD_10M, grid, "per_step")
    v = _read(paths, _NORTHWARD_10M, grid, "per_step")
    if u is None or v is None:
        raise QuantityNotFoundError(
            _label(paths),
            "no wind_speed variable and no pair of 10 m wind components (u10/v10, uas/vas, "
            "eastward_wind/northward_wind)",
        )
    try:
        ua, va = xr.align(u[0], v[0], join="exact")
    except ValueError as e:
        raise GridDataError(_label(paths), "10 m wind components are not on the same grid and times") from e
    speed = xr.apply_ufunc(np.hypot, ua, va, keep_attrs=False)
    q = QUANTITIES["wind_speed"]
    speed.attrs = {
        "quantity": q.name,
        "units": "m s-1",
        "long_name": q.long_name,
        "standard_name": "wind_speed",
        "source_files": ", ".join(dict.fromkeys(str(p.path) for p in (*u[1], *v[1]))),
        "source_variable": f"hypot({u[0].attrs['source_variable']}, {v[0].attrs['source_variable']})",
        "original_units": ", ".join(
            dict.fromkeys((u[0].attrs["original_units"], v[0].attrs["original_units"]))
        ),
        "conversion": f"{u[0].attrs['conversion']}; speed = hypot(u, v)",
    }
    speed.name = q.name
    return cast(xr.DataArray, speed)


# ---------------------------------------------------------------------------------------------- regridding

REGRID_METHODS = ("auto", "bilinear", "nearest", "block_mean")
_DEG_TOL = 1e-6


def _spacing(c: np.ndarray) -> float:
    return float(np.median(np.abs(np.diff(c)))) if c.size > 1 else float("nan")


def crop_to_region(da: xr.DataArray, grid: RegularGrid, *, source: str | Path | None = None) -> xr.DataArray:
    """The part of a canonical field over the region's bounds plus one source cell on every side.

    Works on lazy arrays, so a national file is cut down before it is read. An empty result is a
    `GridDataError`: the file does not reach the region.
    """
    lon0, lat0, lon1, lat1 = grid.bounds
    lat, lon = da.lat.values, da.lon.values
    mlat = (_spacing(lat) if lat.size > 1 else grid.step) * 1.001
    mlon = (_spacing(lon) if lon.size > 1 else grid.step) * 1.001
    out = da.sel(lat=slice(lat0 - mlat, lat1 + mlat), lon=slice(lon0 - mlon, lon1 + mlon))
    if out.sizes["lat"] == 0 or out.sizes["lon"] == 0:
        raise GridDataError(
            source or da.attrs.get("source_files", "grid"),
            f"the grid (lon {_extent(lon)}, lat {_extent(lat)}) does not reach the region "
            f"(lon {lon0:g}..{lon1:g}, lat {lat0:g}..{lat1:g})",
        )
    return out


def _extent(c: np.ndarray) -> str:
    return f"{c.min():g}..{c.max():g}" if c.size else "empty"


def to_region_grid(da: xr.DataArray, grid: RegularGrid, method: str = "auto") -> xr.DataArray:
    """Crop a canonical field to the region (one source cell of margin) and put it on the region grid.

    Methods (xarray/scipy do the arithmetic):

    - ``bilinear`` (``DataArray.interp``, linear in lat and lon): for a source coarser than, or about as fine
      as, the region grid. Forecast fields are smooth on the scale of their own spacing, so interpolating
      between the four surrounding source points is the best estimate at a cell centre; a constant field
      stays exactly constant and a linear one is reproduced.
    - ``block_mean``: the mean of the source points whose centres fall inside each region cell (sums and
      counts grouped by region row and column; missing points are left out). For a source at least twice
      as fine as the grid it is conservative-ish: it keeps the cell's mean precipitation (a bilinear sample
      would pick a few source points and alias showers), and for every other field it gives the cell's
      mean rather than a point sample. A point on a cell edge belongs to the cell east/north of it.
    - ``nearest`` (``DataArray.sel(method="nearest")``): only when asked for, e.g. to keep categorical
      values.
    - ``auto``: ``block_mean`` when the source spacing is at most half the grid step in both directions,
      else ``bilinear``.

    Nothing is extrapolated: if the source does not cover every region cell centre (bilinear), every cell
    (block mean) or every cell centre within half a source cell (nearest), a `GridDataError` says what the
    source covers and what the region needs.

    >>> g = RegularGrid(lon_min=106.5, lat_min=39.0, step=0.1, nx=3, ny=2)
    >>> lat, lon = [38.9, 39.0, 39.1, 39.2], [106.4, 106.5, 106.6, 106.7, 106.8]
    >>> src = xr.DataArray(np.full((4, 5), 21.5), dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    >>> to_region_grid(src, g).values.tolist()
    [[21.5, 21.5, 21.5], [21.5, 21.5, 21.5]]
    """
    if method not in REGRID_METHODS:
        raise ValueError(f"unknown regridding method '{method}'; use one of {', '.join(REGRID_METHODS)}")
    source = str(da.attrs.get("source_files", da.name or "grid"))
    if "lat" not in da.dims or "lon" not in da.dims:
        raise GridDataError(source, f"field has no lat/lon dimensions (dims: {', '.join(map(str, da.dims))})")
    if not (np.all(np.diff(da.lat.values) > 0) and np.all(np.diff(da.lon.values) > 0)):
        da = da.sortby(["lat", "lon"])  # canonical fields are ascending already; others are made so
    lat, lon = da.lat.values, da.lon.values
    dlat, dlon = _spacing(lat), _spacing(lon)
    chosen = method
    if method == "auto":
        fine = np.isfinite(dlat) and np.isfinite(dlon) and max(dlat, dlon) <= grid.step / 2 + _DEG_TOL
        chosen = "block_mean" if fine else "bilinear"
    _check_covered(lat, lon, dlat, dlon, grid, chosen, source)
    cropped = crop_to_region(da, grid, source=source)
    if chosen == "bilinear":
        out = cropped.interp(
            lat=np.clip(grid.lat, lat[0], lat[-1]), lon=np.clip(grid.lon, lon[0], lon[-1]), method="linear"
        )
    elif chosen == "nearest":
        out = cropped.sel(lat=grid.lat, lon=grid.lon, method="nearest")
    else:
        out = _block_mean(cropped, grid, source)
    out = out.assign_coords(lat=grid.lat, lon=grid.lon).transpose(*da.dims)
    if out.dtype != da.dtype and np.issubdtype(da.dtype, np.floating):
        out = out.astype(da.dtype)
    out.attrs = {
        **da.attrs,
        "regridding": f"{chosen} from {dlat:.4g} x {dlon:.4g} deg to {grid.step:.4g} deg",
    }
    out.name = da.name
    return out


def _check_covered(
    lat: np.ndarray, lon: np.ndarray, dlat: float, dlon: float, grid: RegularGrid, method: str, source: str
) -> None:
    if method == "bilinear":  # target cell centres inside the hull of source points
        need = (grid.lat[0], grid.lat[-1], grid.lon[0], grid.lon[-1])
        have = (lat[0], lat[-1], lon[0], lon[-1]) if lat.size and lon.size else None
        what = "cell centres"
    else:  # cells (block mean) or centres (nearest) inside the source cells
        half_lat = (dlat if np.isfinite(dlat) else grid.step) / 2
        half_lon = (dlon if np.isfinite(dlon) else grid.step) / 2
        if method == "block_mean":
            lon0, lat0, lon1, lat1 = grid.bounds
            need = (lat0, lat1, lon0, lon1)
        else:
            need = (grid.lat[0], grid.lat[-1], grid.lon[0], grid.lon[-1])
        have = (
            (lat[0] - half_lat, lat[-1] + half_lat, lon[0] - half_lon, lon[-1] + half_lon)
            if lat.size and lon.size
            else None
        )
        what = "cells"
    ok = have is not None and (
        have[0] <= need[0] + _DEG_TOL
        and have[1] >= need[1] - _DEG_TOL
        and have[2] <= need[2] + _DEG_TOL
        and have[3] >= need[3] - _DEG_TOL
    )
    if not ok:
        covers = "nothing" if have is None else f"lon {have[2]:g}..{have[3]:g}, lat {have[0]:g}..{have[1]:g}"
        raise GridDataError(
            source,
            f"the grid covers {covers} but the region's {what} need lon {need[2]:g}..{need[3]:g}, "
            f"lat {need[0]:g}..{need[1]:g} ({method}; no extrapolation)",
        )


def _block_mean(da: xr.DataArray, grid: RegularGrid, source: str) -> xr.DataArray:
    col = np.floor((da.lon.values - grid.lon_min) / grid.step + 1e-9).astype(np.int64)
    row = np.floor((da.lat.values - grid.lat_min) / grid.step + 1e-9).astype(np.int64)
    in_col = np.flatnonzero((col >= 0) & (col < grid.nx))
    in_row = np.flatnonzero((row >= 0) & (row < grid.ny))
    sub = da.isel(lon=in_col, lat=in_row).assign_coords(col=("lon", col[in_col]), row=("lat", row[in_row]))
    total = sub.fillna(0.0).groupby("col").sum().groupby("row").sum()
    count = sub.notnull().groupby("col").sum().groupby("row").sum()
    if (np.bincount(row[in_row], minlength=grid.ny) == 0).any() or (
        np.bincount(col[in_col], minlength=grid.nx) == 0
    ).any():
        raise GridDataError(
            source,
            "block mean leaves region cells without any source point; "
            "the source is not finer than the grid, use bilinear",
        )
    mean = total / count.where(count > 0)
    return mean.rename(row="lat", col="lon").drop_vars(["lat", "lon"], errors="ignore")
