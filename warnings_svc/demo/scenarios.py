"""Synthetic forecast scenarios over a region, written as NetCDF files laid out like real centres' output.

Everything here is invented for demonstrations and tests, and every file says so (global ``source``
attribute ``"synthetic scenario <name> — not a real forecast"``). The weather is shaped by the region's own
data, never by coordinates in code: the river (warmer nights, cooler ground frost), the mountain ranges
(height, storms at their front), the desert edge (dust), the urban cores (heat island) and the region's
time zone (the diurnal cycle). Height comes from the same proxy as the demo climatology: rise with distance
from the river plus depth inside a mountain polygon.

Scenarios (`scenario_names`):

- ``heat`` (July): daily maxima rising over five days, 36.3-37.3 °C on the valley floor and up to about
  38 °C in the towns, 31-33 °C on the ranges; 3 or more Beijing days >= 35 °C and >= 37 °C on the first
  afternoon in the hottest part. The default run starts at 20:00 Beijing time (12 UTC), so its 72 hours
  hold three nearly whole Beijing days.
- ``rainstorm`` (August): one convective cell at the front of the largest range, on the side facing the
  towns, in the afternoon and evening of the first day (3 h out when the run starts after that afternoon,
  so that it always falls within the 24 h the criteria look ahead): up to about 110 mm in 3 h on a few km²,
  with light rain around it, dry elsewhere.
- ``frost`` (late April): two cold clear nights; ground-surface minimum -1 to -6 °C away from the river and
  on higher ground, above 0 °C along the river.
- ``sandstorm`` (April): a dust front from the north-west, arriving within a few hours; gusts 15-25 m/s,
  visibility below 1000 m within 12 h near and downwind of the desert edge, below 500 m in the worst part,
  with dust concentration (visibility follows the concentration by a power law of the kind fitted to
  northern-China dust observations, PM10 = 3802 V^-0.84 in µg m-3 and km).
- ``quiet`` (September): mild, dry, light winds, clear: no warning level is reached anywhere.

Every scenario writes every quantity (2 m temperature, ground temperature, precipitation, visibility,
gusts, 10 m wind components, dust), as a model would, so each hazard sees a complete run.

Styles (`STYLES`), so that ingest meets the habits of real centres:

- ``"cf"``: one file per run, CF standard names, °C, precipitation in mm per hour (``time: sum`` with time
  bounds), a ``time`` coordinate of valid times (leads 1..hours), latitude ascending.
- ``"ecmwf"``: cfgrib-like files split by GRIB step type (``instant``, ``accum``, ``max``): ``t2m``, ``skt``,
  ``mx2t`` in K, ``tp`` in metres accumulated since the run start (``GRIB_stepType = accum``), ``u10``,
  ``v10``, ``i10fg``, ``vis``, ``duaod550``; scalar ``time`` (the run) with a ``step`` timedelta dimension
  and ``valid_time(step)``; ``latitude`` descending, ``longitude``; leads 0..hours.
- ``"grapes"``: one file per variable (``TMP_2m``, ``TMP_sfc`` in degC, ``APCP`` in kg m-2 per hour, ``VIS``
  in km, ``GUST_10m``, ``UGRD_10m``, ``VGRD_10m``, ``DUST_CONC``), latitude descending.

The forecast domain is a regular grid of `step_deg` (0.025° by default) a few cells larger than the region,
deliberately not the region's own grid, so regridding is exercised. ``members=N`` writes an ensemble along a
``number`` dimension: member 0 is the control (identical to the deterministic run), the others are perturbed
(offsets, displaced and rescaled storms, earlier or later dust fronts) so that probabilities at the edges
of a warning area are fractional. Output is a function of (name, region, reference time, members, style,
seed, hours, step) only.

>>> region = load_region("wuhai")  # doctest: +SKIP
>>> paths = write_scenario("heat", tmp_dir, region, style="ecmwf")  # doctest: +SKIP
>>> [p.name for p in paths]  # doctest: +SKIP
['synthetic_heat_ecmwf_2024071412_instant.nc', 'synthetic_heat_ecmwf_2024071412_accum.nc',
 'synthetic_heat_ecmwf_2024071412_max.nc']
>>> round(float(read_quantity(paths, "air_temperature", region.grid).max()), 1)  # doctest: +SKIP
38.0
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import shapely
import xarray as xr
from scipy.ndimage import gaussian_filter
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from risk_zoning.features import FeatureSet, distance_km, load_features, local_km
from risk_zoning.grid import RegularGrid
from risk_zoning.region import Region, load_region

SCENARIOS: tuple[str, ...] = ("heat", "rainstorm", "frost", "sandstorm", "quiet")
STYLES: tuple[str, ...] = ("cf", "ecmwf", "grapes")

# A run of each scenario in its season. Passing `reference_time` moves the run; the weather stays. The heat
# run starts at 12 UTC (20:00 Beijing time) so that 72 hours cover three Beijing days almost whole (a day
# counts for a heat spell only when the forecast covers most of it); a 00 UTC run of 72 h covers only two.
DEFAULT_REFERENCE_TIMES: dict[str, datetime] = {
    "heat": datetime(2024, 7, 14, 12, tzinfo=UTC),
    "rainstorm": datetime(2024, 8, 2, tzinfo=UTC),
    "frost": datetime(2024, 4, 24, tzinfo=UTC),
    "sandstorm": datetime(2024, 4, 8, tzinfo=UTC),
    "quiet": datetime(2024, 9, 18, tzinfo=UTC),
}
DEFAULT_HOURS = 72
DEFAULT_STEP_DEG = 0.025
DOMAIN_MARGIN_CELLS = 4  # source cells beyond the region's grid on every side

# The quantities of a scenario, by their `risk_zoning.io.netcdf` names, in canonical units.
QUANTITY_UNITS: dict[str, str] = {
    "air_temperature": "degC",
    "ground_temperature": "degC",
    "precipitation": "mm",  # amount in the hour ending at the valid time
    "visibility": "m",
    "wind_gust": "m s-1",
    "eastward_wind": "m s-1",
    "northward_wind": "m s-1",
    "dust_concentration": "ug m-3",
}

# Height proxy (metres above the river), as in the demo climatology.
PLAIN_RISE_M, PLAIN_RISE_KM = 150.0, 8.0
MOUNTAIN_RISE_M, MOUNTAIN_RISE_KM = 700.0, 2.0
LAPSE_DAY_K_PER_M = 0.0065  # afternoon: a well-mixed boundary layer
LAPSE_NIGHT_K_PER_M = 0.003  # night: inversions make the ranges less cold than the day lapse rate says
URBAN_CORE_SIGMA_KM = 3.0

# Dust: PM10 (µg m-3) = DUST_A * visibility(km) ** -DUST_B, inverted for visibility.
DUST_A, DUST_B = 3802.29, 0.84
VISIBILITY_MAX_M = 30_000.0
VISIBILITY_MIN_M = 20.0


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ScenarioFields:
    """A scenario on its forecast domain, in canonical units, before any file layout.

    ``fields[q]`` has shape ``(lead, member, lat, lon)`` (float32, latitude and longitude ascending), for
    leads ``0..hours`` hours after `reference_time`; precipitation at lead 0 is 0 (no interval yet). With
    ``members == 0`` the member axis has length 1 and the files have no ensemble dimension.
    """

    name: str
    reference_time: datetime  # UTC
    lead_hours: np.ndarray  # int, 0..hours
    lat: np.ndarray
    lon: np.ndarray
    members: int
    seed: int
    fields: dict[str, np.ndarray]

    @property
    def valid_times(self) -> np.ndarray:
        """Valid times as naive-UTC datetime64[ns]."""
        ref = np.datetime64(self.reference_time.replace(tzinfo=None), "ns")
        return ref + self.lead_hours.astype("timedelta64[h]")


def scenario_names() -> tuple[str, ...]:
    """The scenario names `write_scenario` knows, for command-line choices.

    >>> scenario_names()
    ('heat', 'rainstorm', 'frost', 'sandstorm', 'quiet')
    """
    return SCENARIOS


def write_scenario(
    name: str,
    out_dir: str | Path,
    region: Region | str | Path,
    *,
    reference_time: datetime | None = None,
    members: int = 0,
    style: str = "cf",
    seed: int = 0,
    hours: int = DEFAULT_HOURS,
    step_deg: float = DEFAULT_STEP_DEG,
) -> list[Path]:
    """Write scenario `name` over `region` as NetCDF files in `out_dir`; returns the paths written.

    `reference_time` (timezone-aware; truncated to the hour) defaults to a run in the scenario's season
    (`DEFAULT_REFERENCE_TIMES`). `members` > 0 writes an ensemble along ``number``; `style` picks the layout
    (see the module docstring); `seed` picks the noise and the ensemble perturbations. Each file is written
    to a temporary name and renamed, so a reader never sees half a file.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; known: {', '.join(STYLES)}")
    region = region if isinstance(region, Region) else load_region(region)
    sf = scenario_fields(
        name,
        region,
        reference_time=reference_time,
        members=members,
        seed=seed,
        hours=hours,
        step_deg=step_deg,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"synthetic_{name}_{style}_{sf.reference_time:%Y%m%d%H}" + (f"_ens{members}" if members else "")
    attrs = _global_attrs(sf, region, style)
    datasets = _ENCODERS[style](sf, attrs)
    paths = []
    for suffix, (ds, encoding) in datasets.items():
        path = out / f"{stem}{suffix}.nc"
        _write_atomically(ds, path, encoding)
        paths.append(path)
    return paths


def scenario_fields(
    name: str,
    region: Region,
    *,
    reference_time: datetime | None = None,
    members: int = 0,
    seed: int = 0,
    hours: int = DEFAULT_HOURS,
    step_deg: float = DEFAULT_STEP_DEG,
) -> ScenarioFields:
    """The scenario's fields in canonical units on its forecast domain (reads the region's feature file)."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    if members < 0:
        raise ValueError(f"members must be 0 (deterministic) or more, got {members}")
    if not 1 <= hours <= 240:
        raise ValueError(f"hours must be between 1 and 240, got {hours}")
    if not 0 < step_deg <= 0.25:
        raise ValueError(f"step_deg must be in (0, 0.25], got {step_deg}")
    ref = _reference_time(name, reference_time)
    features = load_features(region.path(region.config.features.file))
    geo = _Geography(_domain(region.grid, step_deg), features, region.city.geometry, seed)
    clock = _Clock(ref, np.arange(hours + 1), ZoneInfo(region.config.region.timezone))
    build = _BUILDERS[name]
    per_member = [
        build(geo, clock, _Perturbation.draw(seed, SCENARIOS.index(name), m)) for m in range(max(members, 1))
    ]
    fields = {q: np.stack([pm[q] for pm in per_member], axis=1).astype(np.float32) for q in QUANTITY_UNITS}
    return ScenarioFields(
        name=name,
        reference_time=ref,
        lead_hours=clock.lead,
        lat=geo.lat,
        lon=geo.lon,
        members=members,
        seed=seed,
        fields=fields,
    )


def _reference_time(name: str, reference_time: datetime | None) -> datetime:
    if reference_time is None:
        return DEFAULT_REFERENCE_TIMES[name]
    if reference_time.tzinfo is None or reference_time.utcoffset() is None:
        raise ValueError("reference_time must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    return reference_time.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


# ---------------------------------------------------------------------------------------------- geography


def _domain(region_grid: RegularGrid, step: float) -> RegularGrid:
    """The forecast domain: points on multiples of `step`, covering the region's grid plus a margin.

    Returned as a `RegularGrid` whose cell centres are the model's grid points.
    """
    minx, miny, maxx, maxy = region_grid.bounds
    i0 = math.floor(minx / step) - DOMAIN_MARGIN_CELLS
    j0 = math.floor(miny / step) - DOMAIN_MARGIN_CELLS
    i1 = math.ceil(maxx / step) + DOMAIN_MARGIN_CELLS
    j1 = math.ceil(maxy / step) + DOMAIN_MARGIN_CELLS
    return RegularGrid(
        lon_min=(i0 - 0.5) * step, lat_min=(j0 - 0.5) * step, step=step, nx=i1 - i0 + 1, ny=j1 - j0 + 1
    )


class _Geography:
    """Distances, height proxy and local kilometre coordinates on the forecast domain."""

    def __init__(self, grid: RegularGrid, features: FeatureSet, city: BaseGeometry, seed: int) -> None:
        self.grid = grid
        self.features = features
        self.city = city
        self.seed = seed
        self.lon = np.round(grid.lon, 9)
        self.lat = np.round(grid.lat, 9)
        self.kx, self.ky = local_km(grid)
        self.lon_c = float(self.lon.mean())
        self.lat_c = float(self.lat.mean())
        lon2, lat2 = np.meshgrid(self.lon, self.lat)
        self.x = (lon2 - self.lon_c) * self.kx  # km east of the domain centre, (ny, nx)
        self.y = (lat2 - self.lat_c) * self.ky  # km north
        self.river = _finite(distance_km(grid, features.union("river")))
        mountains = features.union("mountain")
        if mountains is not None and mountains.area > 0:
            inside = distance_km(grid, mountains) == 0
            depth = np.where(inside, distance_km(grid, mountains.boundary), 0.0)
        else:
            depth = np.zeros(grid.shape)
        self.height = PLAIN_RISE_M * (1 - np.exp(-self.river / PLAIN_RISE_KM)) + MOUNTAIN_RISE_M * (
            1 - np.exp(-depth / MOUNTAIN_RISE_KM)
        )
        self.cores = np.zeros(grid.shape)
        for core in features.by_role("urban_core"):
            c = core.geometry.centroid
            d = np.hypot((lon2 - c.x) * self.kx, (lat2 - c.y) * self.ky)
            self.cores = np.maximum(self.cores, np.exp(-0.5 * (d / URBAN_CORE_SIGMA_KM) ** 2))

    def km(self, lon: float, lat: float) -> tuple[float, float]:
        """A point in the domain's kilometre frame."""
        return (lon - self.lon_c) * self.kx, (lat - self.lat_c) * self.ky

    def noise(self, stream: int, sigma_cells: float = 2.0) -> np.ndarray:
        """Smooth spatial noise, mean 0 and standard deviation 1, deterministic for (seed, stream)."""
        rng = np.random.default_rng([self.seed, 7919, stream])
        z = gaussian_filter(rng.standard_normal(self.grid.shape), sigma_cells, mode="nearest")
        return (z - z.mean()) / (z.std() or 1.0)

    def population_centre(self) -> tuple[float, float]:
        """Weighted centroid (lon, lat) of the urban cores; the region's centroid without cores."""
        cores = self.features.by_role("urban_core")
        if not cores:
            c = self.city.centroid
            return c.x, c.y
        w = np.array([float(f.properties.get("population_weight", 1.0)) for f in cores])
        xy = np.array([(f.geometry.centroid.x, f.geometry.centroid.y) for f in cores])
        lon, lat = (xy * w[:, None]).sum(axis=0) / w.sum()
        return float(lon), float(lat)

    def stretched_distance(self, geometry: BaseGeometry, toward_deg: float, squeeze: float) -> np.ndarray:
        """Distance (km) to `geometry` with the component along the bearing `toward_deg` divided by
        `squeeze`: a plume carried by the wind reaches that much farther downwind (and upwind, into its
        source area) than across the wind."""
        ux, uy = math.sin(math.radians(toward_deg)), math.cos(math.radians(toward_deg))

        def frame(c: np.ndarray) -> np.ndarray:
            x = (c[:, 0] - self.lon_c) * self.kx
            y = (c[:, 1] - self.lat_c) * self.ky
            return np.column_stack(((x * ux + y * uy) / squeeze, -x * uy + y * ux))

        g = shapely.transform(geometry, frame)
        lon2, lat2 = np.meshgrid(self.lon, self.lat)
        pts = shapely.points(frame(np.column_stack((lon2.ravel(), lat2.ravel()))))
        return shapely.distance(g, pts).reshape(self.grid.shape)


def _finite(d: np.ndarray) -> np.ndarray:
    """Distances with 'no such feature' (inf) replaced by a large distance."""
    return np.where(np.isfinite(d), d, 1e3)


@dataclass(frozen=True)
class _Clock:
    """Lead times and the local (region) time of each, for the diurnal cycle."""

    reference: datetime
    lead: np.ndarray
    tz: ZoneInfo

    @property
    def local(self) -> list[datetime]:
        return [(self.reference + timedelta(hours=int(h))).astimezone(self.tz) for h in self.lead]

    def local_hour(self) -> np.ndarray:
        return np.array([t.hour + t.minute / 60 for t in self.local])

    def local_day(self) -> np.ndarray:
        """Day number of each lead in local time, 0 = the local date of the run's start."""
        dates = [t.date() for t in self.local]
        return np.array([(d - dates[0]).days for d in dates])

    def first_lead_at(self, local_hour: float, not_before: int) -> int:
        """The first lead (>= `not_before`) whose local hour is `local_hour`; the last lead if none."""
        hours = self.local_hour()
        hits = np.flatnonzero((self.lead >= not_before) & (np.abs(hours - local_hour) < 0.5))
        return int(self.lead[hits[0]]) if hits.size else int(self.lead[-1])


@dataclass(frozen=True)
class _Perturbation:
    """An ensemble member's departures from the control (all zero for member 0)."""

    member: int
    offset: float  # standard normal, scaled per scenario (temperature offsets)
    shift_x: float  # standard normal, scaled per scenario (km)
    shift_y: float
    scale: float  # standard normal, used as a log-normal factor
    delay: float  # standard normal, scaled per scenario (hours)
    noise_stream: int

    @classmethod
    def draw(cls, seed: int, scenario: int, member: int) -> _Perturbation:
        if member == 0:
            return cls(0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
        z = [float(x) for x in np.random.default_rng([seed, scenario, member]).standard_normal(5)]
        return cls(member, z[0], z[1], z[2], z[3], z[4], noise_stream=1000 + member)


# ---------------------------------------------------------------------------------------------- weather


@dataclass(frozen=True)
class _Season:
    """Background weather of a scenario: valley-floor daily extremes by local day (last value repeats)."""

    tmax: tuple[float, ...]  # 2 m air, °C, day -1, 0, 1, ...
    tmin: tuple[float, ...]
    ground_day_excess: float  # ground maximum minus air maximum (sunshine)
    ground_night_deficit: float  # air minimum minus ground minimum (radiative cooling)
    wind: float  # mean 10 m wind speed, m s-1
    dust: float  # background dust, µg m-3

    def days(self, values: tuple[float, ...], n: int) -> np.ndarray:
        return np.array([values[min(i, len(values) - 1)] for i in range(n)])


_SEASONS = {
    "heat": _Season(
        tmax=(35.8, 36.3, 36.8, 37.1, 37.3, 37.4, 36.3),
        tmin=(23.0, 23.5, 24.0, 24.5, 25.0, 25.0, 24.0),
        ground_day_excess=18.0,
        ground_night_deficit=2.0,
        wind=2.5,
        dust=80.0,
    ),
    "rainstorm": _Season(
        tmax=(31.0, 31.5, 29.5, 30.5, 31.0),
        tmin=(19.0, 19.5, 19.0, 18.5, 19.0),
        ground_day_excess=14.0,
        ground_night_deficit=2.0,
        wind=3.0,
        dust=50.0,
    ),
    "frost": _Season(
        tmax=(17.0, 15.0, 14.0, 15.5, 18.0),
        tmin=(5.0, 4.0, 1.5, 1.0, 4.0),  # replaced by ground minima + deficit, see _frost
        ground_day_excess=9.0,
        ground_night_deficit=3.5,
        wind=2.0,
        dust=40.0,
    ),
    "sandstorm": _Season(
        tmax=(22.0, 22.5, 21.0, 21.5, 22.0),
        tmin=(11.0, 11.5, 11.0, 11.0, 11.5),
        ground_day_excess=10.0,
        ground_night_deficit=1.0,
        wind=3.5,
        dust=90.0,
    ),
    "quiet": _Season(
        tmax=(26.0, 26.0, 25.5, 26.5, 27.0),
        tmin=(12.0, 12.5, 12.0, 11.5, 12.5),
        ground_day_excess=8.0,
        ground_night_deficit=3.0,
        wind=2.5,
        dust=40.0,
    ),
}


def _diurnal(clock: _Clock, day_max: np.ndarray, day_min: np.ndarray) -> np.ndarray:
    """Hourly values from daily extremes (indexed by local day + 1): minimum at 06, maximum at 15 local.

    Rising branch: half a cosine from the day's minimum to its maximum; falling branch: from the maximum
    to the next day's minimum. Returns (lead, ny, nx).
    """
    hour, day = clock.local_hour(), clock.local_day() + 1
    out = np.empty((hour.size, *day_max.shape[1:]))
    for i, (h, d) in enumerate(zip(hour, day, strict=True)):
        if 6 <= h <= 15:
            lo, hi, s = day_min[d], day_max[d], 0.5 - 0.5 * math.cos(math.pi * (h - 6) / 9)
        elif h > 15:
            lo, hi, s = day_min[d + 1], day_max[d], 0.5 + 0.5 * math.cos(math.pi * (h - 15) / 15)
        else:
            lo, hi, s = day_min[d], day_max[d - 1], 0.5 + 0.5 * math.cos(math.pi * (h + 9) / 15)
        out[i] = lo + (hi - lo) * s
    return out


def _daytime(clock: _Clock) -> np.ndarray:
    """0 at night, 1 at 15 local: the afternoon mixing that strengthens gusts. Shape (lead, 1, 1)."""
    h = clock.local_hour()
    return np.clip(np.cos(np.pi * (h - 15) / 12), 0, None)[:, None, None]


@dataclass
class _Weather:
    """Hourly fields of one member, (lead, ny, nx), canonical units."""

    air: np.ndarray
    ground: np.ndarray
    rain: np.ndarray
    dust: np.ndarray
    u: np.ndarray
    v: np.ndarray
    gust: np.ndarray
    visibility_cap_m: np.ndarray | None = None  # rain lowers visibility independently of dust

    def as_quantities(self) -> dict[str, np.ndarray]:
        vis = dust_visibility_m(self.dust)
        if self.visibility_cap_m is not None:
            vis = np.minimum(vis, self.visibility_cap_m)
        return {
            "air_temperature": self.air,
            "ground_temperature": self.ground,
            "precipitation": self.rain,
            "visibility": vis,
            "wind_gust": self.gust,
            "eastward_wind": self.u,
            "northward_wind": self.v,
            "dust_concentration": self.dust,
        }


def dust_visibility_m(concentration: np.ndarray) -> np.ndarray:
    """Visibility (m) in dust of a given PM10 concentration (µg m-3): V = (3802.29 / C) ** (1 / 0.84) km.

    >>> [round(float(v)) for v in dust_visibility_m(np.array([8000.0, 3802.29, 60.0]))]
    [412, 1000, 30000]
    """
    c = np.maximum(np.asarray(concentration, dtype=np.float64), 1e-3)
    v = (DUST_A / c) ** (1.0 / DUST_B) * 1000.0
    return np.clip(v, VISIBILITY_MIN_M, VISIBILITY_MAX_M)


def _background(
    name: str,
    geo: _Geography,
    clock: _Clock,
    p: _Perturbation,
    *,
    offset_sd: float = 0.5,
    day_max: np.ndarray | None = None,
    night_ground_min: np.ndarray | None = None,
) -> _Weather:
    """A scenario's ordinary weather: temperatures with height, river and heat island; light winds."""
    season = _SEASONS[name]
    n_days = int(clock.local_day().max()) + 3  # day -1 .. last day + 1
    offset = offset_sd * p.offset + (0.3 * geo.noise(p.noise_stream) if p.member else 0.0)
    h = geo.height
    river_night = np.exp(-geo.river / 2.0)
    if day_max is None:
        anom_max = -LAPSE_DAY_K_PER_M * h + 0.7 * geo.cores + 0.3 * geo.noise(1)
        day_max = season.days(season.tmax, n_days)[:, None, None] + anom_max + offset
    if night_ground_min is None:
        anom_min = -LAPSE_NIGHT_K_PER_M * h + 1.0 * geo.cores + 1.0 * river_night + 0.3 * geo.noise(2)
        day_min = season.days(season.tmin, n_days)[:, None, None] + anom_min + offset
        ground_min = day_min - season.ground_night_deficit
    else:
        ground_min = night_ground_min
        day_min = ground_min + season.ground_night_deficit
    air = _diurnal(clock, day_max, day_min)
    ground = _diurnal(clock, day_max + season.ground_day_excess, ground_min)
    nt = clock.lead.size
    speed = season.wind * (1 + 0.25 * geo.noise(3)) * (0.7 + 0.6 * _daytime(clock))
    u = np.broadcast_to(0.45 * speed, (nt, *geo.grid.shape)).copy()  # a light south-south-westerly
    v = np.broadcast_to(0.9 * speed, (nt, *geo.grid.shape)).copy()
    gust = 1.6 * np.hypot(u, v) + 1.5 + 2.0 * _daytime(clock)
    dust = np.broadcast_to(season.dust * (1 + 0.2 * geo.noise(4)), (nt, *geo.grid.shape)).copy()
    rain = np.zeros((nt, *geo.grid.shape))
    return _Weather(air=air, ground=ground, rain=rain, dust=dust, u=u, v=v, gust=gust)


def _heat(geo: _Geography, clock: _Clock, p: _Perturbation) -> dict[str, np.ndarray]:
    return _background("heat", geo, clock, p, offset_sd=0.8).as_quantities()


def _quiet(geo: _Geography, clock: _Clock, p: _Perturbation) -> dict[str, np.ndarray]:
    return _background("quiet", geo, clock, p, offset_sd=0.5).as_quantities()


# Ground minimum on the valley floor far from the river, by local day (the morning of that day): the cold
# air arrives during day 0, so the mornings of days 1 and 2 are the frost nights.
FROST_GROUND_MIN = (4.0, 1.0, -2.0, -2.5, 1.5, 4.0)


def _frost(geo: _Geography, clock: _Clock, p: _Perturbation) -> dict[str, np.ndarray]:
    n_days = int(clock.local_day().max()) + 3
    base = np.array([FROST_GROUND_MIN[min(i, len(FROST_GROUND_MIN) - 1)] for i in range(n_days)])
    offset = 1.0 * p.offset + (0.4 * geo.noise(p.noise_stream) if p.member else 0.0)
    # the river (and its irrigated strip) keeps the ground above freezing; height makes it colder
    anom = 4.0 * np.exp(-geo.river / 2.5) - 0.0045 * geo.height + 0.4 * geo.noise(5)
    ground_min = base[:, None, None] + anom + offset
    return _background("frost", geo, clock, p, night_ground_min=ground_min).as_quantities()


# The convective cell: hourly shares of its rain from the local hour of onset, its spread (km), its drift.
STORM_ONSET_LOCAL_HOUR = 15
# The latest lead the cell may start at: it then ends (6 h, a member up to 1 h late) within the 24 h the
# rainstorm criteria look ahead. A run made after the afternoon would otherwise show it the next afternoon,
# beyond the horizon, and propose nothing; its cell starts 3 h out instead.
STORM_LATEST_ONSET_LEAD = 17
STORM_SHARES = (0.08, 0.22, 0.34, 0.24, 0.09, 0.03)
STORM_SIGMA_KM = (3.5, 5.0)  # across (east-west) and along (north-south) the range front
STORM_DRIFT_KMH = (0.9, 2.4)  # east and north components: slowly north along the front
STORM_MAX_3H_MM = 104.0  # the control member's largest 3-hour total (at a grid point), light rain aside
STORM_OFFSET_KM = 2.0  # from the range front towards the towns: the foothills where the gullies start
LIGHT_RAIN_MM_H = 1.2  # light rain around the cell
LIGHT_RAIN_SIGMA_KM = 7.0
LIGHT_RAIN_HOURS = 6


def _storm_anchor(geo: _Geography) -> tuple[float, float]:
    """Where the cell forms (lon, lat): on the outline of the largest mountain range, inside the region,
    at the point nearest the towns' weighted centre, moved `STORM_OFFSET_KM` towards it; the towns' centre
    itself when the region has no mountain polygons."""
    target = Point(geo.population_centre())
    ranges = [f.geometry for f in geo.features.by_role("mountain") if f.geometry.area > 0]
    if not ranges:
        return target.x, target.y
    outline = max(ranges, key=lambda g: g.area).boundary
    inside = outline.intersection(geo.city)
    front = inside if not inside.is_empty else outline
    anchor = shapely.shortest_line(front, target).coords[0]
    ax, ay = geo.km(*anchor)
    tx, ty = geo.km(target.x, target.y)
    d = math.hypot(tx - ax, ty - ay) or 1.0
    step = min(STORM_OFFSET_KM, d)
    return (
        anchor[0] + (tx - ax) / d * step / geo.kx,
        anchor[1] + (ty - ay) / d * step / geo.ky,
    )


def _storm_onset(clock: _Clock) -> int:
    """The control cell's first lead: the first 15:00 Beijing time at least 3 h out, or 3 h out when that
    afternoon lies beyond the warning horizon (see `STORM_LATEST_ONSET_LEAD`)."""
    onset = clock.first_lead_at(STORM_ONSET_LOCAL_HOUR, not_before=3)
    return onset if onset <= STORM_LATEST_ONSET_LEAD else 3


def _rainstorm(geo: _Geography, clock: _Clock, p: _Perturbation) -> dict[str, np.ndarray]:
    w = _background("rainstorm", geo, clock, p)
    rng = np.random.default_rng([geo.seed, 4242])
    lon0, lat0 = _storm_anchor(geo)
    cx, cy = geo.km(lon0, lat0)
    cx, cy = cx + 1.5 * rng.standard_normal(), cy + 1.5 * rng.standard_normal()  # the seed moves it a little

    def cell(dx: float, dy: float, delay_h: int) -> np.ndarray:
        onset = _storm_onset(clock) + delay_h
        out = np.zeros((clock.lead.size, *geo.grid.shape))
        for k, share in enumerate(STORM_SHARES):
            lead = onset + k
            if not 1 <= lead <= clock.lead[-1]:
                continue
            x0 = cx + dx + STORM_DRIFT_KMH[0] * k
            y0 = cy + dy + STORM_DRIFT_KMH[1] * k
            r2 = ((geo.x - x0) / STORM_SIGMA_KM[0]) ** 2 + ((geo.y - y0) / STORM_SIGMA_KM[1]) ** 2
            out[lead] = share * np.exp(-0.5 * r2)
        return out

    control = cell(0.0, 0.0, 0)
    peak = _max_window_sum(control, 3)
    amplitude = STORM_MAX_3H_MM / peak if peak > 0 else 0.0
    scale = math.exp(0.25 * p.scale) if p.member else 1.0
    delay = int(np.clip(round(p.delay), -1, 1)) if p.member else 0
    conv = cell(4.0 * p.shift_x, 4.0 * p.shift_y, delay) * amplitude * scale
    onset = _storm_onset(clock) + delay - 1
    r2 = ((geo.x - cx) ** 2 + (geo.y - cy) ** 2) / LIGHT_RAIN_SIGMA_KM**2
    light = np.zeros_like(conv)
    for k in range(LIGHT_RAIN_HOURS):
        if 1 <= onset + k <= clock.lead[-1]:
            light[onset + k] = (
                LIGHT_RAIN_MM_H * math.sin(math.pi * (k + 0.5) / LIGHT_RAIN_HOURS) * np.exp(-0.5 * r2)
            )
    w.rain = conv + np.where(light > 0.1, light, 0.0)
    # rain-cooled air and ground, gust fronts, and rain lowering visibility
    recent = np.cumsum(w.rain, axis=0)
    recent[3:] -= recent[:-3].copy()
    cooling = 6.0 * np.clip(recent / 20.0, 0, 1)
    w.air -= cooling
    w.ground -= 1.5 * cooling
    w.gust += 12.0 * np.clip(w.rain / 30.0, 0, 1)
    w.visibility_cap_m = np.maximum(2000.0, 20000.0 / (1.0 + w.rain / 5.0))
    return w.as_quantities()


def _max_window_sum(rain: np.ndarray, window: int) -> float:
    c = np.cumsum(rain, axis=0)
    c = np.concatenate([np.zeros((1, *rain.shape[1:])), c])
    return float((c[window:] - c[:-window]).max()) if rain.shape[0] >= window else float(c[-1].max())


# The dust front: blowing towards the south-east, entering the domain's north-west corner a few hours in.
DUST_TOWARD_DEG = 135.0
DUST_FRONT_LEAD_H = 3.0
DUST_FRONT_SPEED_KMH = 30.0
DUST_PEAK_UG_M3 = 9000.0
DUST_DECAY_KM = 10.0  # e-folding distance from the desert edge (across the wind)
DUST_PLUME_SQUEEZE = 2.5  # along the wind the plume reaches this many times farther
DUST_HOLD_H, DUST_CLEAR_H = 3.0, 5.0  # hours at full strength after arrival, then e-folding decay
GUST_FRONT_M_S = (13.0, 5.0)  # gust added at the front: everywhere, plus near the desert edge
FRONT_COOLING_K = 6.0


def _sandstorm(geo: _Geography, clock: _Clock, p: _Perturbation) -> dict[str, np.ndarray]:
    w = _background("sandstorm", geo, clock, p)
    ux, uy = math.sin(math.radians(DUST_TOWARD_DEG)), math.cos(math.radians(DUST_TOWARD_DEG))
    along = geo.x * ux + geo.y * uy
    along = along - along.min()  # km from the domain's upwind corner
    edge = geo.features.union("desert_edge")
    if edge is not None:
        d = geo.stretched_distance(edge, DUST_TOWARD_DEG, DUST_PLUME_SQUEEZE)
    else:  # dust from beyond the domain's upwind edge
        d = along / DUST_PLUME_SQUEEZE
    source = np.exp(-d / DUST_DECAY_KM)
    delay = 1.2 * p.delay if p.member else 0.0
    scale = math.exp(0.3 * p.scale) if p.member else 1.0
    arrival = DUST_FRONT_LEAD_H + delay + along / DUST_FRONT_SPEED_KMH  # (ny, nx), hours
    tau = clock.lead[:, None, None] - arrival[None]
    after = tau >= 0
    onset = np.where(after, 1 - np.exp(-np.maximum(tau, 0) / 0.7), 0.0)
    hold = np.exp(-np.maximum(tau - DUST_HOLD_H, 0) / DUST_CLEAR_H)
    profile = onset * hold
    w.dust = w.dust + DUST_PEAK_UG_M3 * scale * (1 + 0.1 * geo.noise(6)) * source * profile
    wind_profile = np.where(
        after, (1 - np.exp(-np.maximum(tau, 0) / 0.3)) * np.exp(-np.maximum(tau, 0) / 10), 0
    )
    front_gust = GUST_FRONT_M_S[0] + GUST_FRONT_M_S[1] * source + 1.0 * geo.noise(7)
    gust = np.maximum(w.gust, 8.0 + front_gust * wind_profile)
    w.gust = gust
    speed = 0.62 * gust
    w.u = np.where(after, speed * ux, w.u)  # north-westerly behind the front
    w.v = np.where(after, speed * uy, w.v)
    cooling = FRONT_COOLING_K * np.where(after, 1 - np.exp(-np.maximum(tau, 0) / 2.0), 0.0)
    w.air -= cooling
    w.ground -= cooling
    return w.as_quantities()


_BUILDERS: dict[str, Callable[[_Geography, _Clock, _Perturbation], dict[str, np.ndarray]]] = {
    "heat": _heat,
    "rainstorm": _rainstorm,
    "frost": _frost,
    "sandstorm": _sandstorm,
    "quiet": _quiet,
}


# ---------------------------------------------------------------------------------------------- layouts

Encoded = dict[str, tuple[xr.Dataset, dict[str, dict[str, Any]]]]  # file suffix -> (dataset, encoding)
_COMPRESS = {"zlib": True, "complevel": 1, "dtype": "float32"}


def _global_attrs(sf: ScenarioFields, region: Region, style: str) -> dict[str, str | int]:
    return {
        "title": f"Synthetic {sf.name} scenario over {region.config.region.name_en} ({style} layout)",
        "source": f"synthetic scenario {sf.name} — not a real forecast",
        "institution": "wuhai-warnings scenario generator (synthetic data; no forecasting centre)",
        "history": (
            f"written by warnings_svc.demo.scenarios.write_scenario(name={sf.name!r}, style={style!r}, "
            f"members={sf.members}, seed={sf.seed}, hours={int(sf.lead_hours[-1])})"
        ),
        "forecast_reference_time": sf.reference_time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "comment": (
            "Synthetic data for demonstrations and tests: shaped by the region's feature file (river, "
            "mountains, desert edge, urban cores); no model produced it and no warning may be based on it."
        ),
        "scenario": sf.name,
        "scenario_seed": sf.seed,
        "region": region.key,
        "Conventions": "CF-1.8",
    }


def _member_dims(sf: ScenarioFields) -> tuple[list[str], dict[str, Any]]:
    if not sf.members:
        return [], {}
    coord = (
        "number",
        np.arange(sf.members, dtype=np.int32),
        {"standard_name": "realization", "long_name": "ensemble member (0 = control)"},
    )
    return ["number"], {"number": coord}


def _data(sf: ScenarioFields, q: str, leads: slice, descending: bool = False) -> np.ndarray:
    a = sf.fields[q][leads]
    if not sf.members:
        a = a[:, 0]
    return a[..., ::-1, :] if descending else a


def _time_encoding(ref: datetime) -> dict[str, Any]:
    return {
        "units": f"hours since {ref:%Y-%m-%d %H:%M:%S}",
        "dtype": "float64",
        "calendar": "proleptic_gregorian",
    }


def _encode_cf(sf: ScenarioFields, attrs: dict[str, Any]) -> Encoded:
    leads = slice(1, None)
    valid = sf.valid_times[leads]
    mdims, mcoords = _member_dims(sf)
    dims = ["time", *mdims, "lat", "lon"]
    ref = np.datetime64(sf.reference_time.replace(tzinfo=None), "ns")
    coords: dict[str, Any] = {
        "time": (
            "time",
            valid,
            {"standard_name": "time", "long_name": "valid time", "axis": "T", "bounds": "time_bnds"},
        ),
        "forecast_reference_time": ((), ref, {"standard_name": "forecast_reference_time"}),
        "forecast_period": (
            "time",
            sf.lead_hours[leads].astype(np.float64),
            {"standard_name": "forecast_period", "units": "hours"},
        ),
        "lat": ("lat", sf.lat, {"standard_name": "latitude", "units": "degrees_north", "axis": "Y"}),
        "lon": ("lon", sf.lon, {"standard_name": "longitude", "units": "degrees_east", "axis": "X"}),
        **mcoords,
    }
    variables = {
        "tas": (
            "air_temperature",
            {
                "standard_name": "air_temperature",
                "long_name": "2 m air temperature",
                "units": "degC",
                "cell_methods": "time: point",
            },
        ),
        "ts": (
            "ground_temperature",
            {
                "standard_name": "surface_temperature",
                "long_name": "ground surface (0 cm) temperature",
                "units": "degC",
                "cell_methods": "time: point",
            },
        ),
        "pr": (
            "precipitation",
            {
                "standard_name": "precipitation_amount",
                "long_name": "precipitation in the hour ending at the valid time",
                "units": "mm",
                "cell_methods": "time: sum (interval: 1 hour)",
            },
        ),
        "vis": (
            "visibility",
            {"standard_name": "visibility_in_air", "long_name": "horizontal visibility", "units": "m"},
        ),
        "wsgsmax": (
            "wind_gust",
            {
                "standard_name": "wind_speed_of_gust",
                "long_name": "10 m wind gust, maximum in the hour",
                "units": "m s-1",
                "cell_methods": "time: maximum (interval: 1 hour)",
            },
        ),
        "uas": (
            "eastward_wind",
            {"standard_name": "eastward_wind", "long_name": "10 m eastward wind", "units": "m s-1"},
        ),
        "vas": (
            "northward_wind",
            {"standard_name": "northward_wind", "long_name": "10 m northward wind", "units": "m s-1"},
        ),
        "concdust": (
            "dust_concentration",
            {
                "standard_name": "mass_concentration_of_dust_dry_aerosol_particles_in_air",
                "long_name": "near-surface dust (PM10) concentration",
                "units": "ug m-3",
            },
        ),
    }
    data_vars: dict[str, Any] = {v: (dims, _data(sf, q, leads), a) for v, (q, a) in variables.items()}
    data_vars["time_bnds"] = (("time", "bnds"), np.stack([valid - np.timedelta64(1, "h"), valid], axis=1))
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    enc = {v: dict(_COMPRESS) for v in variables}
    te = _time_encoding(sf.reference_time)
    enc |= {"time": te, "time_bnds": te, "forecast_reference_time": te}
    return {"": (ds, enc)}


_GRIB_COMMON = {"GRIB_gridType": "regular_ll", "GRIB_NV": 0, "standard_name": "unknown"}


def _encode_ecmwf(sf: ScenarioFields, attrs: dict[str, Any]) -> Encoded:
    mdims, _ = _member_dims(sf)
    dims = [*mdims, "step", "latitude", "longitude"]  # cfgrib puts the member first
    ref = np.datetime64(sf.reference_time.replace(tzinfo=None), "ns")

    def member_first(a: np.ndarray) -> np.ndarray:
        return np.swapaxes(a, 0, 1) if sf.members else a

    def coords(leads: slice) -> dict[str, Any]:
        steps = sf.lead_hours[leads].astype("timedelta64[h]").astype("timedelta64[ns]")
        c: dict[str, Any] = {
            "time": (
                (),
                ref,
                {"standard_name": "forecast_reference_time", "long_name": "initial time of forecast"},
            ),
            "step": (
                "step",
                steps,
                {"standard_name": "forecast_period", "long_name": "time since forecast_reference_time"},
            ),
            "valid_time": ("step", ref + steps, {"standard_name": "time", "long_name": "time"}),
            "surface": (
                (),
                0.0,
                {"long_name": "original GRIB coordinate for key: level(surface)", "units": "1"},
            ),
            "latitude": (
                "latitude",
                sf.lat[::-1],
                {
                    "units": "degrees_north",
                    "standard_name": "latitude",
                    "long_name": "latitude",
                    "stored_direction": "decreasing",
                },
            ),
            "longitude": (
                "longitude",
                sf.lon,
                {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"},
            ),
        }
        if sf.members:
            c["number"] = (
                "number",
                np.arange(sf.members, dtype=np.int64),
                {"standard_name": "realization", "long_name": "ensemble member numerical id", "units": "1"},
            )
        else:
            c["number"] = (
                (),
                np.int64(0),
                {"standard_name": "realization", "long_name": "ensemble member numerical id", "units": "1"},
            )
        return c

    def var(
        q: str, leads: slice, convert: Callable[[np.ndarray], np.ndarray], **a: Any
    ) -> tuple[list[str], np.ndarray, dict[str, Any]]:
        return dims, member_first(convert(_data(sf, q, leads, descending=True))), {**_GRIB_COMMON, **a}

    def kelvin(x: np.ndarray) -> np.ndarray:
        return x + 273.15

    def same(x: np.ndarray) -> np.ndarray:
        return x

    all_leads, after_start = slice(0, None), slice(1, None)
    instant = {
        "t2m": var(
            "air_temperature",
            all_leads,
            kelvin,
            GRIB_paramId=167,
            GRIB_shortName="2t",
            GRIB_name="2 metre temperature",
            GRIB_stepType="instant",
            GRIB_typeOfLevel="surface",
            units="K",
            long_name="2 metre temperature",
        ),
        "skt": var(
            "ground_temperature",
            all_leads,
            kelvin,
            GRIB_paramId=235,
            GRIB_shortName="skt",
            GRIB_name="Skin temperature",
            GRIB_stepType="instant",
            GRIB_typeOfLevel="surface",
            units="K",
            long_name="Skin temperature",
        ),
        "u10": var(
            "eastward_wind",
            all_leads,
            same,
            GRIB_paramId=165,
            GRIB_shortName="10u",
            GRIB_name="10 metre U wind component",
            GRIB_stepType="instant",
            GRIB_typeOfLevel="surface",
            units="m s**-1",
            long_name="10 metre U wind component",
        ),
        "v10": var(
            "northward_wind",
            all_leads,
            same,
            GRIB_paramId=166,
            GRIB_shortName="10v",
            GRIB_name="10 metre V wind component",
            GRIB_stepType="instant",
            GRIB_typeOfLevel="surface",
            units="m s**-1",
            long_name="10 metre V wind component",
        ),
        "i10fg": var(
            "wind_gust",
            all_leads,
            same,
            GRIB_paramId=228029,
            GRIB_shortName="i10fg",
            GRIB_name="Instantaneous 10 metre wind gust",
            GRIB_stepType="instant",
            GRIB_typeOfLevel="surface",
            units="m s**-1",
            long_name="Instantaneous 10 metre wind gust",
        ),
        "vis": var(
            "visibility",
            all_leads,
            same,
            GRIB_paramId=3020,
            GRIB_shortName="vis",
            GRIB_name="Visibility",
            GRIB_stepType="instant",
            GRIB_typeOfLevel="surface",
            units="m",
            long_name="Visibility",
        ),
        "duaod550": var(
            "dust_concentration",
            all_leads,
            _dust_aod,
            GRIB_paramId=210209,
            GRIB_shortName="duaod550",
            GRIB_name="Dust Aerosol Optical Depth at 550nm",
            GRIB_stepType="instant",
            GRIB_typeOfLevel="surface",
            units="~",
            long_name="Dust Aerosol Optical Depth at 550nm",
        ),
    }
    rain_m = (
        np.cumsum(_data(sf, "precipitation", all_leads, descending=True).astype(np.float64), axis=0) / 1000.0
    )
    accum = {
        "tp": (
            dims,
            member_first(rain_m),
            {
                **_GRIB_COMMON,
                "GRIB_paramId": 228,
                "GRIB_shortName": "tp",
                "GRIB_name": "Total precipitation",
                "GRIB_stepType": "accum",
                "GRIB_typeOfLevel": "surface",
                "units": "m",
                "long_name": "Total precipitation",
            },
        ),
    }
    t_hourly = _data(sf, "air_temperature", all_leads, descending=True)
    hour_max = np.maximum(t_hourly[1:], t_hourly[:-1]) + 0.2  # the maximum in the hour ending at the step
    maxima = {
        "mx2t": (
            dims,
            member_first(hour_max + 273.15),
            {
                **_GRIB_COMMON,
                "GRIB_paramId": 201,
                "GRIB_shortName": "mx2t",
                "GRIB_name": "Maximum temperature at 2 metres since previous post-processing",
                "GRIB_stepType": "max",
                "GRIB_typeOfLevel": "surface",
                "units": "K",
                "long_name": "Maximum temperature at 2 metres since previous post-processing",
            },
        ),
    }
    grib_attrs = {**attrs, "GRIB_edition": 1, "GRIB_centreDescription": "synthetic (ECMWF-like layout)"}
    out: Encoded = {}
    for suffix, variables, leads in (
        ("_instant", instant, all_leads),
        ("_accum", accum, all_leads),
        ("_max", maxima, after_start),
    ):
        ds = xr.Dataset(variables, coords=coords(leads), attrs=grib_attrs)
        enc: dict[str, dict[str, Any]] = {v: dict(_COMPRESS) for v in variables}
        enc["time"] = {
            "units": "seconds since 1970-01-01T00:00:00",
            "dtype": "int64",
            "calendar": "proleptic_gregorian",
        }
        enc["valid_time"] = dict(enc["time"])
        enc["step"] = {"units": "hours", "dtype": "float64"}
        out[suffix] = (ds, enc)
    return out


def _dust_aod(conc_ug_m3: np.ndarray) -> np.ndarray:
    """Dust optical depth at 550 nm from near-surface PM10, for a 1.5 km deep layer at 0.6 m² g-1."""
    return conc_ug_m3 * 1e-6 * 1500.0 * 0.6


def _encode_grapes(sf: ScenarioFields, attrs: dict[str, Any]) -> Encoded:
    mdims, mcoords = _member_dims(sf)
    dims = ["time", *mdims, "lat", "lon"]
    ref = np.datetime64(sf.reference_time.replace(tzinfo=None), "ns")
    te = _time_encoding(sf.reference_time)

    def dataset(
        v: str, q: str, leads: slice, convert: Callable[[np.ndarray], np.ndarray], a: dict[str, Any]
    ) -> tuple[xr.Dataset, dict[str, dict[str, Any]]]:
        valid = sf.valid_times[leads]
        coords: dict[str, Any] = {
            "time": ("time", valid, {"standard_name": "time", "long_name": "valid time"}),
            "forecast_reference_time": ((), ref, {"standard_name": "forecast_reference_time"}),
            "lat": ("lat", sf.lat[::-1], {"standard_name": "latitude", "units": "degrees_north"}),
            "lon": ("lon", sf.lon, {"standard_name": "longitude", "units": "degrees_east"}),
            **mcoords,
        }
        data_vars: dict[str, Any] = {v: (dims, convert(_data(sf, q, leads, descending=True)), a)}
        enc: dict[str, dict[str, Any]] = {v: dict(_COMPRESS), "time": te, "forecast_reference_time": te}
        if q == "precipitation":
            coords["time"][2]["bounds"] = "time_bnds"
            data_vars["time_bnds"] = (
                ("time", "bnds"),
                np.stack([valid - np.timedelta64(1, "h"), valid], axis=1),
            )
            enc["time_bnds"] = te
        model = {**attrs, "model": "GRAPES-like layout (synthetic)"}
        return xr.Dataset(data_vars, coords=coords, attrs=model), enc

    def same(x: np.ndarray) -> np.ndarray:
        return x

    def km(x: np.ndarray) -> np.ndarray:
        return x / 1000.0

    all_leads, after_start = slice(0, None), slice(1, None)
    table = (
        (
            "TMP_2m",
            "air_temperature",
            all_leads,
            same,
            {"standard_name": "air_temperature", "long_name": "2 m temperature", "units": "degC"},
        ),
        (
            "TMP_sfc",
            "ground_temperature",
            all_leads,
            same,
            {
                "standard_name": "surface_temperature",
                "long_name": "ground surface temperature",
                "units": "degC",
            },
        ),
        (
            "APCP",
            "precipitation",
            after_start,
            same,
            {
                "standard_name": "precipitation_amount",
                "long_name": "precipitation in the hour ending at the valid time",
                "units": "kg m-2",
                "cell_methods": "time: sum (interval: 1 hour)",
            },
        ),
        (
            "VIS",
            "visibility",
            all_leads,
            km,
            {"standard_name": "visibility_in_air", "long_name": "visibility", "units": "km"},
        ),
        (
            "GUST_10m",
            "wind_gust",
            all_leads,
            same,
            {"standard_name": "wind_speed_of_gust", "long_name": "10 m wind gust", "units": "m s-1"},
        ),
        (
            "UGRD_10m",
            "eastward_wind",
            all_leads,
            same,
            {"standard_name": "eastward_wind", "long_name": "10 m u-component of wind", "units": "m s-1"},
        ),
        (
            "VGRD_10m",
            "northward_wind",
            all_leads,
            same,
            {"standard_name": "northward_wind", "long_name": "10 m v-component of wind", "units": "m s-1"},
        ),
        (
            "DUST_CONC",
            "dust_concentration",
            all_leads,
            same,
            {
                "standard_name": "mass_concentration_of_dust_dry_aerosol_particles_in_air",
                "long_name": "near-surface dust concentration (CUACE-like)",
                "units": "ug m-3",
            },
        ),
    )
    return {f"_{v}": dataset(v, q, leads, convert, a) for v, q, leads, convert, a in table}


_ENCODERS: dict[str, Callable[[ScenarioFields, dict[str, Any]], Encoded]] = {
    "cf": _encode_cf,
    "ecmwf": _encode_ecmwf,
    "grapes": _encode_grapes,
}


def _write_atomically(ds: xr.Dataset, path: Path, encoding: dict[str, dict[str, Any]]) -> None:
    # coordinates and bounds carry no fill value (CF); xarray would add NaN to every float variable
    unfilled = [*map(str, ds.coords), *(str(v) for v in ds.data_vars if str(v).endswith("_bnds"))]
    encoding = {**encoding, **{v: {**encoding.get(v, {}), "_FillValue": None} for v in unfilled}}
    part = path.with_name(path.name + ".part")
    try:
        ds.to_netcdf(part, engine="netcdf4", format="NETCDF4", encoding=encoding)
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)
