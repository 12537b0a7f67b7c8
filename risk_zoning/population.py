"""Residents per grid cell and unit: a synthetic demo surface, a loader for real population rasters, and the
exact integer split of each (cell, unit) part among the units one level down."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import rasterio
import rasterio.errors
import rasterio.transform
import rasterio.warp
import rasterio.windows
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from shapely.geometry.base import BaseGeometry

from risk_zoning.errors import GridDataError
from risk_zoning.features import KM_PER_DEGREE, distance_km, local_km
from risk_zoning.grid import CellCover, RegularGrid
from risk_zoning.io.netcdf import NETCDF_SUFFIXES

log = logging.getLogger(__name__)

WGS84 = CRS.from_epsg(4326)
_LON_NAMES = frozenset({"lon", "longitude", "x"})
_LAT_NAMES = frozenset({"lat", "latitude", "y"})
# Lognormal sigma of the cell-to-cell noise of the synthetic surface: enough texture that no two cells tie,
# small against the urban/rural contrast (a factor of 1.28 at one sigma).
SYNTHETIC_NOISE_SIGMA = 0.25


@dataclass(frozen=True)
class PopulationSplit:
    """Integer residents of each (cell, unit) part: parallel arrays, one entry per part.

    A border cell appears once per unit it touches, so `per_unit` sums are exact integers and `to_grid` sums
    the parts of each cell back together.
    """

    cell: np.ndarray  # int64 flat cell index
    unit: np.ndarray  # int32 unit index
    people: np.ndarray  # int64 residents in that part of the cell

    def __post_init__(self) -> None:
        cell = np.asarray(self.cell, dtype=np.int64).ravel()
        unit = np.asarray(self.unit, dtype=np.int32).ravel()
        people = np.asarray(self.people, dtype=np.int64).ravel()
        if not cell.size == unit.size == people.size:
            raise ValueError(f"split arrays differ in length: {cell.size}, {unit.size}, {people.size}")
        if (people < 0).any() or (cell < 0).any() or (unit < 0).any():
            raise ValueError("a population split holds no negative cells, units or people")
        object.__setattr__(self, "cell", cell)
        object.__setattr__(self, "unit", unit)
        object.__setattr__(self, "people", people)

    @property
    def total(self) -> int:
        return int(self.people.sum())

    def to_grid(self, grid: RegularGrid) -> np.ndarray:
        """People per cell, shape (ny, nx), float64 (whole numbers)."""
        if self.cell.size and int(self.cell.max()) >= grid.size:
            raise ValueError(
                f"split refers to cell {int(self.cell.max())} beyond a grid of {grid.size} cells"
            )
        return np.bincount(self.cell, weights=self.people, minlength=grid.size).reshape(grid.shape)

    def per_unit(self, n_units: int) -> np.ndarray:
        """People per unit (exact int64)."""
        if self.unit.size and int(self.unit.max()) >= n_units:
            raise ValueError(
                f"split refers to unit {int(self.unit.max())} but only {n_units} units were given"
            )
        out = np.zeros(n_units, dtype=np.int64)
        np.add.at(out, self.unit, self.people)
        return out


@dataclass(frozen=True)
class PopulationCore:
    """An urban core of the synthetic surface: a Gaussian of relative `weight` and width `sigma_km`."""

    lon: float
    lat: float
    weight: float
    sigma_km: float


def apportion(expected: np.ndarray, group: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Round non-negative reals to integers so that each group sums exactly to its target (largest remainder).

    Every entry is first scaled so its group sums to the target, then floored; the people still missing in a
    group go one each to its entries with the largest fractional parts (ties: earlier entry first).

    >>> apportion(np.array([1.5, 1.5, 1.0, 2.0]), np.array([0, 0, 0, 1]), np.array([4, 2])).tolist()
    [2, 1, 1, 2]
    """
    expected = np.asarray(expected, dtype=np.float64)
    group = np.asarray(group, dtype=np.int64)
    targets = np.asarray(targets, dtype=np.int64)
    n_groups = targets.size
    if expected.size == 0:
        if (targets != 0).any():
            raise ValueError("people to place but no parts to place them in")
        return np.zeros(0, dtype=np.int64)
    if (expected < 0).any() or not np.isfinite(expected).all():
        raise ValueError("expected people must be finite and non-negative")
    sums = np.bincount(group, weights=expected, minlength=n_groups)
    empty = (sums <= 0) & (targets > 0)
    if empty.any():
        raise ValueError(
            f"group {int(np.flatnonzero(empty)[0])} has people to place but no weight to place them by"
        )
    scale = np.divide(targets, sums, out=np.zeros(n_groups), where=sums > 0)
    x = expected * scale[group]
    base = np.floor(x).astype(np.int64)
    rem = x - base
    have = np.zeros(n_groups, dtype=np.int64)
    np.add.at(have, group, base)
    short = targets - have  # in [0, n in group] up to floating-point noise
    idx = np.arange(x.size)
    counts = np.bincount(group, minlength=n_groups)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    # One person more for the `short` largest remainders of each group.
    order = np.lexsort((idx, -rem, group))
    rank = np.empty(x.size, dtype=np.int64)
    rank[order] = idx - starts[group[order]]
    base += rank < np.maximum(short, 0)[group]
    if (short < 0).any():  # floating-point overshoot: take back from the smallest remainders with people
        order = np.lexsort((idx, rem, base == 0, group))
        rank[order] = idx - starts[group[order]]
        base -= (rank < np.maximum(-short, 0)[group]) & (base > 0)
    check = np.zeros(n_groups, dtype=np.int64)
    np.add.at(check, group, base)
    if not np.array_equal(check, targets):  # an invariant: only broken by absurd inputs (e.g. 1e300)
        raise ValueError("largest-remainder rounding failed to reach the targets")
    return cast(np.ndarray, base)


def synthesize_population(
    grid: RegularGrid,
    cover: CellCover,
    totals: Sequence[int],
    cores: Sequence[PopulationCore],
    *,
    corridor: BaseGeometry | None = None,
    corridor_sigma_km: float = 3.0,
    corridor_weight: float = 0.1,
    rural_share: float = 0.05,
    seed: int = 0,
) -> PopulationSplit:
    """Synthetic residents per (cell, unit) part, labelled synthetic: a density surface made of Gaussian
    urban cores (weight x exp(-d²/2σ²), d in km from each core centre) plus a weaker Gaussian band along a
    corridor such as the Yellow River (peak `corridor_weight` x the largest core weight, σ =
    `corridor_sigma_km`), times seeded lognormal cell noise (σ = 0.25); each unit's official total is split,
    `rural_share` of it in proportion to the area of each part (a thin rural background) and the rest in
    proportion to density x area, then rounded to whole people by largest remainder so that every unit's
    residents equal its official total exactly.

    Use it only where no population grid exists (a demonstration); `population_from_raster` loads a real one.
    Parts are returned in the order of `cover`. Deterministic for a given `seed`. A unit whose parts carry no
    density at all (far from every core and the corridor) is filled by area alone.

    Example: a unit of 1,000 people with `rural_share=0.05` puts 50 of them evenly by area over its cells and
    950 by density x area, so a cell on a core gets about e² ≈ 7.4 times the density of a cell 2σ away.
    """
    totals_a = _check_totals(totals, cover)
    if not 0 <= rural_share <= 1:
        raise ValueError(f"rural_share must lie in [0, 1], got {rural_share}")
    if corridor_sigma_km <= 0 or corridor_weight < 0:
        raise ValueError("corridor_sigma_km must be positive and corridor_weight non-negative")
    kx, ky = local_km(grid)
    lon, lat = np.meshgrid(grid.lon, grid.lat)
    density = np.zeros(grid.shape)
    for core in cores:
        if not (core.weight > 0 and core.sigma_km > 0):
            raise ValueError(f"core at {core.lon}, {core.lat}: weight and sigma_km must be positive")
        d2 = ((lon - core.lon) * kx) ** 2 + ((lat - core.lat) * ky) ** 2
        density += core.weight * np.exp(-0.5 * d2 / core.sigma_km**2)
    if corridor is not None and corridor_weight > 0:
        peak = corridor_weight * max((c.weight for c in cores), default=1.0)
        d = distance_km(grid, corridor)
        density += peak * np.exp(-0.5 * (d / corridor_sigma_km) ** 2)
    rng = np.random.default_rng(seed)
    density *= rng.lognormal(0.0, SYNTHETIC_NOISE_SIGMA, size=grid.shape)

    area = cover.fraction * grid.cell_area_km2().ravel()[cover.cell]
    weighted = density.ravel()[cover.cell] * area
    n = totals_a.size
    area_u = np.bincount(cover.unit, weights=area, minlength=n)
    weighted_u = np.bincount(cover.unit, weights=weighted, minlength=n)
    by_area = area / np.where(area_u > 0, area_u, 1.0)[cover.unit]
    no_density = (weighted_u <= 0)[cover.unit]
    by_density = np.where(
        no_density, by_area, weighted / np.where(weighted_u > 0, weighted_u, 1.0)[cover.unit]
    )
    share = rural_share * by_area + (1.0 - rural_share) * by_density
    people = _apportion_or_fail(share, cover.unit, totals_a)
    return PopulationSplit(cell=cover.cell, unit=cover.unit, people=people)


def _check_totals(totals: Sequence[int], cover: CellCover) -> np.ndarray:
    totals_a = np.asarray(totals)
    if totals_a.ndim != 1 or (totals_a.size and not np.issubdtype(totals_a.dtype, np.integer)):
        raise ValueError("totals must be a sequence of whole numbers, one per unit")
    totals_a = totals_a.astype(np.int64)
    if (totals_a < 0).any():
        raise ValueError("totals must not be negative")
    if cover.unit.size and int(cover.unit.max()) >= totals_a.size:
        raise ValueError(
            f"cover refers to unit {int(cover.unit.max())} but {totals_a.size} totals were given"
        )
    return totals_a


def _apportion_or_fail(expected: np.ndarray, unit: np.ndarray, totals: np.ndarray) -> np.ndarray:
    counts = np.bincount(unit, minlength=totals.size)
    lost = (counts == 0) & (totals > 0)
    if lost.any():
        u = int(np.flatnonzero(lost)[0])
        raise ValueError(f"unit {u} has {int(totals[u])} people but covers no grid cell")
    return apportion(expected, unit, totals)


# --- real population rasters ------------------------------------------------------------------------------


@dataclass(frozen=True)
class GridSource:
    """A 2-D field read from a raster or NetCDF file: values (NaN = no data) with their georeferencing."""

    data: np.ndarray  # (rows, cols) float64
    transform: Affine  # pixel (col, row) -> CRS (x, y) of the pixel's upper-left corner
    crs: CRS
    path: str

    @property
    def is_wgs84(self) -> bool:
        return (
            self.crs == WGS84
            or self.crs.to_string() in ("OGC:CRS84", "EPSG:4326")
            or self.crs.to_epsg() == 4326
        )


def read_grid_source(
    path: str | Path,
    *,
    variable: str | None = None,
    band: int = 1,
    bounds: tuple[float, float, float, float] | None = None,
) -> GridSource:
    """Read one band (GeoTIFF etc., via rasterio) or one variable (NetCDF, via xarray) of a file.

    NetCDF is recognised by its suffix (.nc, .nc4, .netcdf, .cdf); its variable must have 1-D longitude and
    latitude coordinates (regular spacing, either order, 0-360 longitudes folded to -180..180) and at most one
    other dimension, from which `band` (1-based) picks the slice. `bounds` (lon/lat) limits the read to a
    window around the grid so country-sized files are not loaded whole. Errors are one-line `GridDataError`s.
    """
    path = Path(path)
    if not path.is_file():
        raise GridDataError(path, "file not found")
    if path.suffix.lower() in NETCDF_SUFFIXES:
        return _read_netcdf(path, variable, band, bounds)
    return _read_rasterio(path, band, bounds)


def _read_rasterio(path: Path, band: int, bounds: tuple[float, float, float, float] | None) -> GridSource:
    try:
        ds = rasterio.open(path)
    except rasterio.errors.RasterioError as e:
        raise GridDataError(path, f"cannot read raster: {_one_line(e)}") from e
    with ds:
        if not 1 <= band <= ds.count:
            raise GridDataError(path, f"band {band} requested but the file has {ds.count} band(s)")
        if ds.crs is None:
            raise GridDataError(path, "raster has no CRS; expected geographic WGS84 (EPSG:4326)")
        t = ds.transform
        if t.b != 0 or t.d != 0:
            raise GridDataError(path, "rotated or sheared rasters are not supported")
        window = rasterio.windows.Window(0, 0, ds.width, ds.height)
        if bounds is not None:
            try:
                b = rasterio.warp.transform_bounds(WGS84, ds.crs, *bounds, densify_pts=21)
            except Exception as e:  # PROJ errors come in several types
                raise GridDataError(
                    path, f"cannot transform the grid bounds to the raster CRS: {_one_line(e)}"
                ) from e
            window = _window_around(~t, b, ds.width, ds.height)
            if window is None:
                raise GridDataError(path, "raster does not cover the region grid")
        try:
            data = ds.read(band, window=window, masked=True).astype(np.float64).filled(np.nan)
        except rasterio.errors.RasterioError as e:
            raise GridDataError(path, f"cannot read raster: {_one_line(e)}") from e
        # The window's own transform (rasterio's window_transform uses the deprecated Affine `*`).
        shifted = Affine(t.a, 0.0, t.c + window.col_off * t.a, 0.0, t.e, t.f + window.row_off * t.e)
        return GridSource(data=data, transform=shifted, crs=ds.crs, path=str(path))


def _window_around(
    inverse: Affine, b: tuple[float, float, float, float], width: int, height: int
) -> rasterio.windows.Window | None:
    """Pixel window covering the box b (in the raster CRS) plus one pixel, clipped to the raster."""
    cols, rows = zip(*(inverse @ (x, y) for x in (b[0], b[2]) for y in (b[1], b[3])), strict=True)
    c0, c1 = max(0, math.floor(min(cols)) - 1), min(width, math.ceil(max(cols)) + 1)
    r0, r1 = max(0, math.floor(min(rows)) - 1), min(height, math.ceil(max(rows)) + 1)
    if c1 <= c0 or r1 <= r0:
        return None
    return rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)


def _read_netcdf(
    path: Path, variable: str | None, band: int, bounds: tuple[float, float, float, float] | None
) -> GridSource:
    try:
        ds = xr.open_dataset(path, engine="netcdf4")
    except (OSError, ValueError, RuntimeError) as e:
        raise GridDataError(path, f"cannot read NetCDF: {_one_line(e)}") from e
    with ds:
        if variable is None:
            candidates = [str(n) for n, v in ds.data_vars.items() if v.ndim >= 2]
            if len(candidates) != 1:
                found = ", ".join(candidates) or "none"
                raise GridDataError(path, f"name the variable to read (2-D variables found: {found})")
            variable = candidates[0]
        if variable not in ds.data_vars:
            raise GridDataError(path, f"no variable {variable!r} (have: {', '.join(map(str, ds.data_vars))})")
        da = ds[variable]
        lon_dim = next((d for d in da.dims if _is_axis(da, str(d), _LON_NAMES, "longitude")), None)
        lat_dim = next((d for d in da.dims if _is_axis(da, str(d), _LAT_NAMES, "latitude")), None)
        if lon_dim is None or lat_dim is None:
            raise GridDataError(
                path, f"{variable}: needs 1-D longitude and latitude coordinates, has dims {da.dims}"
            )
        mapping = ds.get(str(da.attrs.get("grid_mapping", "")))
        if (
            mapping is not None
            and mapping.attrs.get("grid_mapping_name", "latitude_longitude") != "latitude_longitude"
        ):
            raise GridDataError(
                path,
                f"{variable}: projected NetCDF ({mapping.attrs['grid_mapping_name']}) "
                "is not supported; give lon/lat coordinates or a GeoTIFF",
            )
        others = [d for d in da.dims if d not in (lon_dim, lat_dim)]
        if len(others) > 1:
            raise GridDataError(
                path, f"{variable}: too many dimensions {da.dims}; at most one besides lon/lat"
            )
        if others:
            size = da.sizes[others[0]]
            if not 1 <= band <= size:
                raise GridDataError(
                    path, f"{variable}: band {band} requested but {others[0]} has {size} entries"
                )
            da = da.isel({others[0]: band - 1})
        da = da.transpose(lat_dim, lon_dim)
        lon = np.asarray(da[lon_dim].values, dtype=np.float64)
        lat = np.asarray(da[lat_dim].values, dtype=np.float64)
        if lon.size < 2 or lat.size < 2:
            raise GridDataError(path, f"{variable}: needs at least 2 x 2 points")
        if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
            raise GridDataError(path, f"{variable}: coordinates are not finite")
        if lon.min() < -180 or lon.max() > 360 or lat.min() < -90 or lat.max() > 90:
            raise GridDataError(path, f"{variable}: coordinates are not longitude/latitude degrees")
        lon = np.where(lon > 180, lon - 360, lon)
        x_order, y_order = np.argsort(lon, kind="stable"), np.argsort(-lat, kind="stable")
        lon, lat = lon[x_order], lat[y_order]
        dx, dy = _regular_step(path, lon, "longitude"), _regular_step(path, -lat, "latitude")
        if bounds is not None:  # keep only rows/columns near the grid before loading values
            keep_x = np.flatnonzero((lon >= bounds[0] - 2 * dx) & (lon <= bounds[2] + 2 * dx))
            keep_y = np.flatnonzero((lat >= bounds[1] - 2 * dy) & (lat <= bounds[3] + 2 * dy))
            if keep_x.size == 0 or keep_y.size == 0:
                raise GridDataError(path, f"{variable}: does not cover the region grid")
            x_order, y_order = x_order[keep_x[0] : keep_x[-1] + 1], y_order[keep_y[0] : keep_y[-1] + 1]
            lon, lat = lon[keep_x[0] : keep_x[-1] + 1], lat[keep_y[0] : keep_y[-1] + 1]
        try:  # load only the rectangle of the file that holds the rows and columns kept
            y0, x0 = int(y_order.min()), int(x_order.min())
            block = da.isel(
                {lat_dim: slice(y0, int(y_order.max()) + 1), lon_dim: slice(x0, int(x_order.max()) + 1)}
            )
            values = np.asarray(block.values, dtype=np.float64)[np.ix_(y_order - y0, x_order - x0)]
        except (OSError, ValueError, RuntimeError) as e:
            raise GridDataError(path, f"{variable}: cannot read values: {_one_line(e)}") from e
    transform = Affine(dx, 0.0, lon[0] - dx / 2, 0.0, -dy, lat[0] + dy / 2)
    return GridSource(data=values, transform=transform, crs=WGS84, path=str(path))


def _is_axis(da: xr.DataArray, dim: str, names: frozenset[str], standard_name: str) -> bool:
    if dim.lower() in names:
        return True
    if dim not in da.coords:
        return False
    attrs = da[dim].attrs
    axis_units = {"longitude": ("degrees_east", "degree_east"), "latitude": ("degrees_north", "degree_north")}
    return (
        attrs.get("standard_name") == standard_name
        or str(attrs.get("units", "")) in axis_units[standard_name]
    )


def _regular_step(path: Path, values: np.ndarray, what: str) -> float:
    steps = np.diff(values)
    step = float(np.median(steps))
    if step <= 0 or not np.allclose(steps, step, rtol=1e-3, atol=1e-9):
        raise GridDataError(path, f"{what} coordinates are not regularly spaced")
    return step


def regrid_counts(source: GridSource, grid: RegularGrid) -> tuple[np.ndarray, np.ndarray]:
    """Put per-pixel counts onto the grid conserving their sum; returns (counts, covered fraction), (ny, nx).

    No-data pixels count as 0. A WGS84 source is regridded exactly: every source pixel is shared among the
    grid cells it overlaps in proportion to the overlap (in degrees, separably in longitude and latitude), so
    a finer source is summed into cells and a coarser one is split by area; aligned finer pixels land whole in
    the cell holding their centre. Any other CRS goes through GDAL (`rasterio.warp.reproject`):
    `Resampling.sum` when the source is finer than the grid, rescaled so that the total equals the sum of the
    source pixels with centres inside the grid; `average` of density (people per projected pixel area) x cell
    area when it is coarser.
    """
    counts = np.where(np.isfinite(source.data), source.data, 0.0)
    if source.is_wgs84:
        (fy, cover_y), (fx, cover_x) = _axis_overlaps(source, grid)
        return fy.T @ counts @ fx, cover_y[:, None] * cover_x[None, :]
    return _regrid_counts_gdal(source, counts, grid), np.ones(grid.shape)


def _axis_overlaps(
    source: GridSource, grid: RegularGrid
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Per axis: the share of each source row (column) inside each grid row (column), shape (rows, ny) and
    (cols, nx), and the fraction of each grid row (column) that the source covers."""
    t = source.transform
    rows, cols = source.data.shape
    lat_edges = t.f + t.e * np.arange(rows + 1)
    lon_edges = t.c + t.a * np.arange(cols + 1)
    grid_lat = grid.lat_min + grid.step * np.arange(grid.ny + 1)
    grid_lon = grid.lon_min + grid.step * np.arange(grid.nx + 1)
    return _overlap(lat_edges, grid_lat), _overlap(lon_edges, grid_lon)


def _overlap(src_edges: np.ndarray, dst_edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo_s = np.minimum(src_edges[:-1], src_edges[1:])[:, None]
    hi_s = np.maximum(src_edges[:-1], src_edges[1:])[:, None]
    length = np.clip(
        np.minimum(hi_s, dst_edges[None, 1:]) - np.maximum(lo_s, dst_edges[None, :-1]), 0.0, None
    )
    return length / (hi_s - lo_s), length.sum(axis=0) / np.diff(dst_edges)


def grid_transform(grid: RegularGrid) -> Affine:
    """The north-up rasterio transform of the grid (row 0 = northernmost row: flip arrays with [::-1])."""
    return Affine(grid.step, 0.0, grid.lon_min, 0.0, -grid.step, grid.lat_min + grid.ny * grid.step)


def _regrid_counts_gdal(source: GridSource, counts: np.ndarray, grid: RegularGrid) -> np.ndarray:
    rows, cols = counts.shape
    try:
        west, south, east, north = rasterio.warp.transform_bounds(
            source.crs, WGS84, *rasterio.transform.array_bounds(rows, cols, source.transform), densify_pts=21
        )
    except Exception as e:  # PROJ errors come in several types
        raise GridDataError(
            source.path, f"cannot reproject from {source.crs} to WGS84: {_one_line(e)}"
        ) from e
    finer = min((east - west) / cols, (north - south) / rows) <= grid.step
    if finer:
        data, resampling = counts, Resampling.sum
    else:  # spread as a density, then back to counts with the cells' own area
        data, resampling = counts / _pixel_area_km2(source), Resampling.average
    dst = np.zeros(grid.shape)
    rasterio.warp.reproject(
        data,
        dst,
        src_transform=source.transform,
        src_crs=source.crs,
        dst_transform=grid_transform(grid),
        dst_crs=WGS84,
        resampling=resampling,
    )
    dst = dst[::-1]
    if not finer:  # conserving up to the source projection's area distortion
        return cast(np.ndarray, dst * grid.cell_area_km2())
    # GDAL's sum is close to conserving; make it exact for the pixels whose centres fall inside the grid.
    r, c = np.mgrid[0:rows, 0:cols]
    xs, ys = source.transform @ (c.ravel() + 0.5, r.ravel() + 0.5)
    lon, lat = (np.asarray(v) for v in rasterio.warp.transform(source.crs, WGS84, xs, ys))
    x0, y0, x1, y1 = grid.bounds
    inside = (lon >= x0) & (lon < x1) & (lat >= y0) & (lat < y1)
    want, have = float(counts.ravel()[inside].sum()), float(dst.sum())
    return dst * (want / have) if have > 0 else dst


def _pixel_area_km2(source: GridSource) -> float:
    """Area of one source pixel: projected units squared, or degrees squared at the source's mid-latitude."""
    t = source.transform
    if source.crs.is_projected:
        return cast(float, abs(t.a * t.e) * source.crs.linear_units_factor[1] ** 2 / 1e6)
    mid_lat = t.f + t.e * source.data.shape[0] / 2
    return abs(t.a * t.e) * KM_PER_DEGREE**2 * math.cos(math.radians(mid_lat))


def population_from_raster(
    path: str | Path,
    grid: RegularGrid,
    cover: CellCover,
    *,
    variable: str | None = None,
    band: int = 1,
    scale_to: Sequence[int] | None = None,
) -> PopulationSplit:
    """Residents per (cell, unit) part from a people-count raster (WorldPop, GHS-POP GeoTIFF, or NetCDF).

    Each source pixel holds people (not density). No-data pixels count as 0 people (WorldPop marks water and
    land outside the country so); a negative count is an error naming the file. Counts are put on the grid
    conserving their total (`regrid_counts`: exact overlap shares for WGS84 sources, GDAL reprojection for any
    other CRS), each cell is shared among units by `cover.fraction` (parts of cells outside every unit are
    dropped), and each unit is rounded to whole people by largest remainder: to `scale_to[u]` exactly when
    given (official totals; the raster then only gives the distribution), otherwise to the rounded raster sum.

    Example: a 1,000-person pixel whose cell lies 30 % in unit 0 and 70 % in unit 1 gives them 300 and 700.
    """
    path = Path(path)
    pad = 2 * grid.step
    x0, y0, x1, y1 = grid.bounds
    source = read_grid_source(
        path, variable=variable, band=band, bounds=(x0 - pad, y0 - pad, x1 + pad, y1 + pad)
    )
    valid = source.data[np.isfinite(source.data)]
    if (valid < 0).any():
        bad = valid[valid < 0]
        raise GridDataError(path, f"negative population count ({bad.min():g}) in {bad.size} pixel(s)")
    counts, covered = regrid_counts(source, grid)
    cells = np.unique(cover.cell)
    short = covered.ravel()[cells] < 0.999
    if short.all() and cells.size:
        raise GridDataError(path, "raster does not cover the region")
    if short.any():
        log.warning(
            "population raster covers the region only in part",
            extra={"path": str(path), "cells_not_covered": int(short.sum())},
        )
    expected = counts.ravel()[cover.cell] * cover.fraction
    n_units = int(cover.unit.max()) + 1 if cover.unit.size else 0
    sums = np.bincount(cover.unit, weights=expected, minlength=n_units)
    if scale_to is None:
        targets = np.rint(sums).astype(np.int64)
    else:
        targets = np.asarray(scale_to, dtype=np.int64)
        if targets.size < n_units or (targets < 0).any():
            raise ValueError(f"scale_to needs {n_units} non-negative totals, got {list(scale_to)}")
        n_units = targets.size
        sums = np.bincount(cover.unit, weights=expected, minlength=n_units)
        empty = (sums <= 0) & (targets > 0)
        if empty.any():
            u = int(np.flatnonzero(empty)[0])
            raise GridDataError(path, f"no people in unit {u} to scale to its total {int(targets[u])}")
    people = apportion(expected, cover.unit, targets)
    return PopulationSplit(cell=cover.cell, unit=cover.unit, people=people)


# --- one level down -----------------------------------------------------------------------------------------


def split_among_children(
    parent: PopulationSplit,
    child_cover: CellCover,
    child_parent: np.ndarray,
    *,
    grid: RegularGrid | None = None,
) -> PopulationSplit:
    """Split each (cell, parent) part's people among the child units (towns of a district) in that cell.

    The children of a part are the child units that overlap its cell and belong to its parent
    (`child_parent[child] == parent`); they share the part's people in proportion to their area fraction
    of the cell, rounded by largest remainder, so in every cell the children of a parent add up exactly to
    the parent's part (hence also per parent unit). A part with people but no such child (a sliver left by
    floating-point differences between the two covers) goes whole to the parent's child nearest to the cell:
    by distance between cell centres when `grid` is given, otherwise by flat-index distance (same-row cells
    first). Returns every pair of `child_cover` (0 people where the parent has no part) plus any sliver pairs.

    Example: 7 people in a cell shared by towns A (fraction 0.5) and B (0.25) of one district: 5 and 2.
    """
    child_parent = np.asarray(child_parent, dtype=np.int64)
    n_children = child_parent.size
    if child_cover.unit.size and int(child_cover.unit.max()) >= n_children:
        raise ValueError(
            f"child cover refers to unit {int(child_cover.unit.max())} but child_parent has {n_children}"
        )
    n_parents = max(
        int(parent.unit.max()) + 1 if parent.unit.size else 0,
        int(child_parent.max()) + 1 if n_children else 0,
    )
    # Parent parts keyed by (cell, parent); duplicates, if any, are merged.
    p_keys, p_inverse = np.unique(parent.cell * n_parents + parent.unit, return_inverse=True)
    p_people = np.zeros(p_keys.size, dtype=np.int64)
    np.add.at(p_people, p_inverse, parent.people)

    c_keys = child_cover.cell * n_parents + child_parent[child_cover.unit]
    at = np.searchsorted(p_keys, c_keys)
    matched = (at < p_keys.size) & (p_keys[np.minimum(at, p_keys.size - 1)] == c_keys)
    group = np.where(matched, at, 0)
    frac = np.where(matched, child_cover.fraction, 0.0)
    frac_sum = np.bincount(group, weights=frac, minlength=p_keys.size)
    # A part whose children all have zero area (cannot happen with cell_cover) is shared equally.
    flat = matched & (frac_sum[group] <= 0)
    weight = np.where(flat, 1.0, frac)
    has_child = np.zeros(p_keys.size, dtype=bool)
    has_child[group[matched]] = True
    targets = np.where(has_child, p_people, 0)
    people = np.zeros(c_keys.size, dtype=np.int64)
    if matched.any():
        people[matched] = apportion(weight[matched], group[matched], targets)

    cells, units, counts = [child_cover.cell], [child_cover.unit.astype(np.int64)], [people]
    orphan = np.flatnonzero(~has_child & (p_people > 0))
    if orphan.size:
        o_cell, o_parent = p_keys[orphan] // n_parents, p_keys[orphan] % n_parents
        o_child = _nearest_child(o_cell, o_parent, child_cover, child_parent, grid)
        cells.append(o_cell)
        units.append(o_child)
        counts.append(p_people[orphan])
    cell = np.concatenate(cells)
    unit = np.concatenate(units)
    n_units = max(n_children, 1)
    keys, inverse = np.unique(cell * n_units + unit, return_inverse=True)
    total = np.zeros(keys.size, dtype=np.int64)
    np.add.at(total, inverse, np.concatenate(counts))
    return PopulationSplit(cell=keys // n_units, unit=keys % n_units, people=total)


def _nearest_child(
    cells: np.ndarray,
    parents: np.ndarray,
    child_cover: CellCover,
    child_parent: np.ndarray,
    grid: RegularGrid | None,
) -> np.ndarray:
    out = np.empty(cells.size, dtype=np.int64)
    for k, (cell, parent) in enumerate(zip(cells, parents, strict=True)):
        mine = child_parent[child_cover.unit] == parent
        if not mine.any():
            children = np.flatnonzero(child_parent == parent)
            if children.size == 0:
                raise ValueError(
                    f"parent unit {int(parent)} has people in cell {int(cell)} but no child unit"
                )
            out[k] = children[0]  # a child without cells: nothing nearer to choose from
            continue
        cand_cell, cand_unit = child_cover.cell[mine], child_cover.unit[mine]
        if grid is None:
            d = np.abs(cand_cell - cell).astype(np.float64)
        else:
            kx, ky = local_km(grid)
            r0, c0 = divmod(int(cell), grid.nx)
            r, c = np.divmod(cand_cell, grid.nx)
            d = np.hypot((c - c0) * kx, (r - r0) * ky) * grid.step
        best = np.lexsort((cand_unit, d))[0]
        out[k] = cand_unit[best]
    return out


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())
