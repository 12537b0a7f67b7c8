"""Exposure, vulnerability, sensitivity and hazard layers on the region grid: demo builders and a file loader.

The demo builders make every layer the region's risk model names from the population grid and the region's
feature file (`risk_zoning.features`). Layers that are invented rather than measured say so in their
provenance (`synthetic: true`); an operator replaces them with real data through `layer_from_raster`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import rasterio.warp
from rasterio.enums import Resampling
from scipy.ndimage import gaussian_filter

from risk_zoning import HAZARDS
from risk_zoning.errors import GridDataError
from risk_zoning.features import FeatureSet, distance_km, local_km
from risk_zoning.grid import RegularGrid, cell_cover
from risk_zoning.population import WGS84, grid_transform, read_grid_source, regrid_counts

LAYER_KINDS: tuple[str, ...] = ("exposure", "vulnerability", "sensitivity", "hazard")
DEMO_LAYER_NAMES: tuple[str, ...] = (
    "population_density",
    "elderly_share",
    "outdoor_workers",
    "cropland_fraction",
    "road_exposure",
    "gully_density",
    "low_lying_urban",
    "mining_fraction",
    "desert_proximity",
)
DEMO_CLIMATOLOGY_NAMES: tuple[str, ...] = (
    "heat_days_ge35",
    "heat_processes",
    "heat_intensity",
    "rain_max_6h",
    "rain_max_24h",
    "rain_days_ge50",
    "frost_days_growing",
    "sand_days_vis_lt1000",
)
RESAMPLINGS = {
    "average": Resampling.average,
    "bilinear": Resampling.bilinear,
    "nearest": Resampling.nearest,
    "sum": Resampling.sum,
}

# Relative exposure of a road class to closure in low visibility; a feature may override it with
# a numeric `exposure_weight` property.
ROAD_CLASS_WEIGHT = {"expressway": 1.0, "national": 0.8, "provincial": 0.7, "arterial": 0.5}
ROAD_DEFAULT_WEIGHT = 0.5

# Distance-decay lengths (km) of the proximity indices: exp(-d / L).
ROAD_DECAY_KM = 1.0
GULLY_DECAY_KM = 0.5
MOUNTAIN_FOOT_DECAY_KM = 1.5
DESERT_DECAY_KM = 5.0
LOW_LYING_DECAY_KM = 3.0
# Density (people km-2) at which a cell counts as about two-thirds urban: urban = 1 - exp(-density / this).
URBAN_DENSITY_SCALE = 1500.0

# Synthetic outdoor workforce (persons): shares of residents and densities per km² of each activity.
OUTDOOR_RESIDENT_SHARE = 0.03  # sanitation, delivery, street trades
OUTDOOR_EDGE_SHARE = 0.04  # construction on the growing urban edge
OUTDOOR_MINING_PER_KM2 = 120.0
OUTDOOR_CROPLAND_PER_KM2 = 40.0
OUTDOOR_PER_ROADSIDE_CELL = 8.0  # maintenance, toll, logistics next to an expressway or national road
OUTDOOR_METHOD = (
    f"{OUTDOOR_RESIDENT_SHARE:.0%} of residents + {OUTDOOR_EDGE_SHARE:.0%} on the urban edge "
    f"(x 4u(1-u), u = urban share) + {OUTDOOR_MINING_PER_KM2:g}/km² of mining + "
    f"{OUTDOOR_CROPLAND_PER_KM2:g}/km² of cropland + "
    f"{OUTDOOR_PER_ROADSIDE_CELL:g} x exp(-d / 1 km) beside expressways and national roads"
)

# Riverside irrigated strip of the cropland layer: peak fraction and half-width scale (km).
RIVERSIDE_CROP_PEAK = 0.25
RIVERSIDE_CROP_KM = 1.0


@dataclass(frozen=True)
class Layer:
    """One indicator on the grid.

    `data` has shape (ny, nx) (rows south to north, like the grid) and dtype float32; NaN marks cells without
    a value (outside the region or the source file). `provenance` holds at least `source`, `method` and
    `synthetic` (True when the values are invented for a demonstration rather than measured).
    """

    name: str
    kind: str  # 'exposure' | 'vulnerability' | 'sensitivity' | 'hazard'
    hazards: tuple[str, ...]
    units: str
    data: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in LAYER_KINDS:
            raise ValueError(
                f"layer {self.name}: kind must be one of {', '.join(LAYER_KINDS)}, got {self.kind!r}"
            )
        unknown = [h for h in self.hazards if h not in HAZARDS]
        if not self.hazards or unknown:
            raise ValueError(f"layer {self.name}: hazards must be a non-empty subset of {', '.join(HAZARDS)}")
        data = np.asarray(self.data)
        if data.ndim != 2:
            raise ValueError(f"layer {self.name}: data must be 2-D (ny, nx), got shape {data.shape}")
        object.__setattr__(self, "hazards", tuple(self.hazards))
        object.__setattr__(self, "data", data.astype(np.float32, copy=False))


class _Geography:
    """Distances (km) from every cell to each kind of feature, computed once for all the layers."""

    def __init__(self, grid: RegularGrid, features: FeatureSet) -> None:
        self.grid = grid
        self.features = features
        self.river = distance_km(grid, features.union("river"))
        self.gully = distance_km(grid, features.union("gully"))
        self.desert = distance_km(grid, features.union("desert_edge"))
        mountains = features.union("mountain")
        self.mountain = distance_km(grid, mountains)  # 0 inside a mountain polygon
        # Distance to the mountains' outline (their fronts; a ridge line stands for itself), depth inside.
        outline = mountains.boundary if mountains is not None and mountains.area > 0 else mountains
        self.mountain_front = distance_km(grid, outline)
        self.mountain_depth = np.where(self.mountain == 0, self.mountain_front, 0.0)
        if mountains is not None and mountains.area == 0:
            self.mountain_depth = np.zeros(grid.shape)
        self.cores = [
            (f.geometry.centroid.x, f.geometry.centroid.y, float(f.properties["population_weight"]))
            for f in features.by_role("urban_core")
        ]

    def core_distance(self) -> np.ndarray:
        """Distance (km) to the nearest urban core, (ny, nx); inf without cores."""
        if not self.cores:
            return np.full(self.grid.shape, np.inf)
        kx, ky = local_km(self.grid)
        lon, lat = np.meshgrid(self.grid.lon, self.grid.lat)
        return cast(
            np.ndarray, np.min([np.hypot((lon - x) * kx, (lat - y) * ky) for x, y, _ in self.cores], axis=0)
        )

    def cover_fraction(self, role: str) -> np.ndarray:
        """Share of each cell inside the union of a role's polygons, (ny, nx) in [0, 1]."""
        union = self.features.union(role)
        out = np.zeros(self.grid.size)
        if union is not None and union.area > 0:
            cover = cell_cover(self.grid, [union])
            np.add.at(out, cover.cell, cover.fraction)
        return np.clip(out, 0.0, 1.0).reshape(self.grid.shape)

    def smooth_noise(self, seed: int, stream: int, sigma_cells: float = 3.0) -> np.ndarray:
        """Spatially smooth noise of mean 0 and standard deviation 1, deterministic for (seed, stream)."""
        rng = np.random.default_rng([seed, stream])
        z = gaussian_filter(rng.standard_normal(self.grid.shape), sigma_cells, mode="nearest")
        return cast(np.ndarray, (z - z.mean()) / (z.std() or 1.0))

    def sources(self, *roles: str) -> dict[str, Any]:
        """Provenance of the features a layer is built from."""
        used = [f for r in roles for f in self.features.by_role(r)]
        return {
            "features": self.features.source,
            "feature_roles": list(roles),
            "approximate_inputs": any(f.approximate for f in used),
        }


def _urban(density: np.ndarray) -> np.ndarray:
    return 1.0 - np.exp(-density / URBAN_DENSITY_SCALE)


def demo_layers(
    grid: RegularGrid,
    population: np.ndarray,
    features: FeatureSet,
    *,
    elderly_share_mean: float,
    seed: int = 0,
) -> dict[str, Layer]:
    """The exposure, vulnerability and sensitivity layers of the demo risk model, by name.

    `population` is people per cell, shape (ny, nx). Built from it and from the features:

    - `population_density` (people km-2): population / cell area.
    - `elderly_share` (1, synthetic): share aged 65+, higher in old urban cores (within ~1.5 km of a core) and
      in thinly settled rural cells, lower in new suburbs, with smooth noise; scaled so that its
      population-weighted mean equals `elderly_share_mean` (e.g. 0.121 = 12.1 %).
    - `outdoor_workers` (count per cell, synthetic): 3 % of residents, 4 % more on the urban edge
      (construction), 120 per km² of mining area, 40 per km² of cropland, 8 beside major roads.
    - `cropland_fraction` (1): share of the cell in cropland polygons, or a synthetic irrigated riverside
      strip (25 % at the river, Gaussian 1 km) outside towns and mountains, whichever is larger.
    - `road_exposure` (1): max over roads of class weight x exp(-d / 1 km) (expressway 1, national road 0.8).
    - `gully_density` (1): union of exp(-d / 0.5 km) to the nearest gully and 0.6 exp(-d / 1.5 km) to the
      mountains (alluvial fans at the mountain foot; 0.6 inside the ranges).
    - `low_lying_urban` (1): urban share x exp(-d_river / 3 km) x (1 - 0.8 foothill), the low streets near the
      river in towns.
    - `mining_fraction` (1): share of the cell in mining polygons.
    - `desert_proximity` (1): exp(-d / 5 km) from the desert edge (1 inside desert polygons).

    Example: a cell 1 km from the G6 expressway has road_exposure exp(-1) ≈ 0.37.
    """
    population = np.asarray(population, dtype=np.float64)
    if population.shape != grid.shape:
        raise ValueError(f"population has shape {population.shape}, the grid {grid.shape}")
    if not 0 < elderly_share_mean < 1:
        raise ValueError(f"elderly_share_mean must lie in (0, 1), got {elderly_share_mean}")
    population = np.where(np.isfinite(population), np.maximum(population, 0.0), 0.0)
    geo = _Geography(grid, features)
    area = grid.cell_area_km2()
    density = population / area
    urban = _urban(density)
    foothill = np.exp(-geo.mountain / MOUNTAIN_FOOT_DECAY_KM)
    in_mountains = (geo.mountain == 0).astype(np.float64)

    road_exp, major_road = _road_exposure(grid, features)
    mining = geo.cover_fraction("mining")
    crop_polygons = geo.cover_fraction("cropland")
    strip = (
        RIVERSIDE_CROP_PEAK
        * np.exp(-0.5 * (geo.river / RIVERSIDE_CROP_KM) ** 2)
        * (1 - urban)
        * (1 - in_mountains)
    )
    cropland = np.clip(np.maximum(crop_polygons, strip), 0.0, 1.0)

    old_core = np.exp(-0.5 * (geo.core_distance() / 1.5) ** 2)
    rural = np.exp(-density / 200.0) * (population > 0)
    relative = (1 + 0.35 * old_core + 0.25 * rural - 0.10 * urban * (1 - old_core)) * (
        1 + 0.05 * geo.smooth_noise(seed, 1)
    )
    weights = population.sum()
    mean_relative = (population * relative).sum() / weights if weights > 0 else relative.mean()
    elderly = np.clip(elderly_share_mean * relative / mean_relative, 0.0, 1.0)

    edge = 4 * urban * (1 - urban)
    outdoor = (
        population * (OUTDOOR_RESIDENT_SHARE + OUTDOOR_EDGE_SHARE * edge)
        + OUTDOOR_MINING_PER_KM2 * mining * area
        + OUTDOOR_CROPLAND_PER_KM2 * cropland * area
        + OUTDOOR_PER_ROADSIDE_CELL * major_road
    )
    gully = 1 - (1 - np.exp(-geo.gully / GULLY_DECAY_KM)) * (1 - 0.6 * foothill)
    low_lying = urban * np.exp(-geo.river / LOW_LYING_DECAY_KM) * (1 - 0.8 * foothill)
    desert = np.exp(-geo.desert / DESERT_DECAY_KM)

    all_hazards = tuple(HAZARDS)
    return {
        "population_density": Layer(
            "population_density",
            "exposure",
            all_hazards,
            "km-2",
            density,
            {
                "source": "population grid (see the population provenance)",
                "method": "people per cell / cell area",
                "synthetic": False,
            },
        ),
        "elderly_share": Layer(
            "elderly_share",
            "vulnerability",
            ("heat",),
            "1",
            elderly,
            {
                "source": "synthetic",
                "synthetic": True,
                "city_mean": elderly_share_mean,
                "seed": seed,
                "method": "share aged 65+: city mean x (1 + 0.35 old-core + 0.25 rural - 0.10 new-suburb) "
                "x smooth noise, scaled to the population-weighted city mean",
                **geo.sources("urban_core"),
            },
        ),
        "outdoor_workers": Layer(
            "outdoor_workers",
            "exposure",
            ("heat", "sandstorm"),
            "count",
            outdoor,
            {
                "source": "synthetic",
                "synthetic": True,
                "per": "grid cell",
                "method": OUTDOOR_METHOD,
                **geo.sources("mining", "cropland", "road"),
            },
        ),
        "cropland_fraction": Layer(
            "cropland_fraction",
            "exposure",
            ("frost",),
            "1",
            cropland,
            {
                "source": "features + synthetic riverside strip",
                "synthetic": True,
                "method": f"max(share in cropland polygons, {RIVERSIDE_CROP_PEAK:g} x "
                f"Gaussian({RIVERSIDE_CROP_KM:g} km) of the river outside towns and mountains)",
                **geo.sources("cropland", "river"),
            },
        ),
        "road_exposure": Layer(
            "road_exposure",
            "exposure",
            ("sandstorm",),
            "1",
            road_exp,
            {
                "source": "features",
                "synthetic": False,
                "class_weights": dict(ROAD_CLASS_WEIGHT),
                "method": f"max over roads of class weight x exp(-d / {ROAD_DECAY_KM:g} km)",
                **geo.sources("road"),
            },
        ),
        "gully_density": Layer(
            "gully_density",
            "sensitivity",
            ("rainstorm",),
            "1",
            gully,
            {
                "source": "features",
                "synthetic": False,
                "method": f"1 - (1 - exp(-d_gully / {GULLY_DECAY_KM:g} km)) x (1 - 0.6 exp(-d_mountain / "
                f"{MOUNTAIN_FOOT_DECAY_KM:g} km))",
                **geo.sources("gully", "mountain"),
            },
        ),
        "low_lying_urban": Layer(
            "low_lying_urban",
            "sensitivity",
            ("rainstorm",),
            "1",
            low_lying,
            {
                "source": "features + population grid",
                "synthetic": False,
                "method": f"urban share (1 - exp(-density / {URBAN_DENSITY_SCALE:g})) x exp(-d_river / "
                f"{LOW_LYING_DECAY_KM:g} km) x (1 - 0.8 foothill): distance to the river as lowness proxy",
                **geo.sources("river", "mountain"),
            },
        ),
        "mining_fraction": Layer(
            "mining_fraction",
            "exposure",
            ("rainstorm",),
            "1",
            mining,
            {
                "source": "features",
                "synthetic": False,
                "method": "share of each cell inside mining polygons",
                **geo.sources("mining"),
            },
        ),
        "desert_proximity": Layer(
            "desert_proximity",
            "sensitivity",
            ("sandstorm",),
            "1",
            desert,
            {
                "source": "features",
                "synthetic": False,
                "method": f"exp(-d / {DESERT_DECAY_KM:g} km) from the desert edge",
                **geo.sources("desert_edge"),
            },
        ),
    }


def _road_exposure(grid: RegularGrid, features: FeatureSet) -> tuple[np.ndarray, np.ndarray]:
    """(road exposure index, proximity to expressways and national roads), both (ny, nx) in [0, 1]."""
    exposure = np.zeros(grid.shape)
    major = np.zeros(grid.shape)
    for road in features.by_role("road"):
        weight = road.properties.get("exposure_weight")
        road_class = str(road.properties.get("road_class", ""))
        if not isinstance(weight, int | float) or isinstance(weight, bool):
            weight = ROAD_CLASS_WEIGHT.get(road_class, ROAD_DEFAULT_WEIGHT)
        near = np.exp(-distance_km(grid, road.geometry) / ROAD_DECAY_KM)
        exposure = np.maximum(exposure, float(weight) * near)
        if road_class in ("expressway", "national"):
            major = np.maximum(major, near)
    return np.clip(exposure, 0.0, 1.0), major


@dataclass(frozen=True)
class DemoClimate:
    """Magnitudes of the synthetic climatology; the defaults suit an arid Yellow River valley town such as
    Wuhai (about 164 mm of rain a year, record 41.1 °C, 41-52 days of blowing sand, ~160 frost-free days).

    Heights are metres above the river: the proxy elevation rises with distance from the river and inside
    the mountain polygons (see `demo_climatology`).
    """

    plain_rise_m: float = 150.0  # rise of the plain far from the river
    plain_rise_km: float = 8.0  # e-folding distance of that rise
    mountain_rise_m: float = 700.0  # extra height deep inside a range
    mountain_rise_km: float = 2.0
    heat_days_valley: float = 12.0  # days a year with Tmax >= 35 °C at river level
    heat_days_scale_m: float = 150.0  # e-folding height of those days
    heat_days_urban: float = 3.0  # extra days at an urban core (heat island)
    days_per_heat_process: float = 7.0
    heat_excess_valley: float = 3.0  # mean annual maximum Tmax minus 35 °C at river level
    lapse_k_per_m: float = 0.0065
    rain_6h_base: float = 16.0  # mean annual maximum 6-h rain (mm) on the plain
    rain_6h_front: float = 8.0  # extra at a mountain front
    rain_front_km: float = 3.0
    rain_24h_ratio: float = 1.4
    rain_ge50_base: float = 0.03  # days a year with >= 50 mm
    rain_ge50_front: float = 0.07
    frost_days_river: float = 32.0  # days in April-October with a ground minimum below 0 °C, by the river
    frost_days_far: float = 10.0  # extra far from the river
    frost_river_km: float = 5.0
    frost_days_per_100m: float = 4.0
    sand_days_far: float = 4.0  # days a year with visibility < 1000 m in dust, far from the desert
    sand_days_edge: float = 14.0  # extra at the desert edge
    sand_edge_km: float = 10.0
    noise: float = 0.04  # relative amplitude of smooth spatial noise


def demo_climatology(
    grid: RegularGrid, features: FeatureSet, *, seed: int = 0, climate: DemoClimate | None = None
) -> dict[str, Layer]:
    """Synthetic hazard climatology (kind 'hazard', labelled synthetic), by name, for a demonstration.

    Without a DEM, height above the river is the elevation proxy: h = plain_rise_m (1 - exp(-d_river /
    plain_rise_km)) + mountain_rise_m (1 - exp(-depth / mountain_rise_km)) for cells `depth` km inside a
    mountain polygon. Each field is then a smooth function of h, distances and urban cores, times smooth noise
    (± 4 %):

    - `heat_days_ge35` (days/year): valley days x exp(-h / 150 m) + 3 x urban-core Gaussian (3 km).
    - `heat_processes` (count/year): heat days / 7 (spells of >= 3 days at >= 35 °C).
    - `heat_intensity` (degC above 35): 3 - 0.0065 h + 0.5 urban, at least 0.
    - `rain_max_6h` (mm): 16 + 8 exp(-d / 3 km) from the mountains' outline (fronts trigger storms).
    - `rain_max_24h` (mm): 1.4 x the 6-h maximum.
    - `rain_days_ge50` (days/year): 0.03 + 0.07 front.
    - `frost_days_growing` (days/year in April-October with ground minimum < 0 °C):
      32 + 10 (1 - exp(-d_river / 5 km)) + 4 per 100 m of h.
    - `sand_days_vis_lt1000` (days/year): 4 + 14 exp(-d / 10 km) from the desert edge.

    Example: a town cell 2 km from the river (h ≈ 33 m) gets about 12 x 0.80 + 3 ≈ 12.6 heat days a year.
    """
    c = climate or DemoClimate()
    geo = _Geography(grid, features)
    h_plain = c.plain_rise_m * (1 - np.exp(-geo.river / c.plain_rise_km))
    h = h_plain + c.mountain_rise_m * (1 - np.exp(-geo.mountain_depth / c.mountain_rise_km))
    cores = np.zeros(grid.shape)
    if geo.cores:
        kx, ky = local_km(grid)
        lon, lat = np.meshgrid(grid.lon, grid.lat)
        for x, y, _ in geo.cores:
            cores = np.maximum(cores, np.exp(-0.5 * (np.hypot((lon - x) * kx, (lat - y) * ky) / 3.0) ** 2))
    front = np.exp(-geo.mountain_front / c.rain_front_km)

    def noisy(field: np.ndarray, stream: int) -> np.ndarray:
        return np.maximum(field * (1 + c.noise * geo.smooth_noise(seed, 100 + stream)), 0.0)

    heat_days = noisy(c.heat_days_valley * np.exp(-h / c.heat_days_scale_m) + c.heat_days_urban * cores, 1)
    heat_processes = heat_days / c.days_per_heat_process
    heat_intensity = noisy(np.maximum(c.heat_excess_valley - c.lapse_k_per_m * h + 0.5 * cores, 0.0), 2)
    rain_6h = noisy(c.rain_6h_base + c.rain_6h_front * front, 3)
    rain_24h = noisy(c.rain_24h_ratio * rain_6h, 4)
    rain_50 = noisy(c.rain_ge50_base + c.rain_ge50_front * front, 5)
    frost = noisy(
        c.frost_days_river
        + c.frost_days_far * (1 - np.exp(-geo.river / c.frost_river_km))
        + c.frost_days_per_100m * h / 100.0,
        6,
    )
    frost = np.minimum(frost, 214.0)  # days from 1 April to 31 October
    sand = noisy(c.sand_days_far + c.sand_days_edge * np.exp(-geo.desert / c.sand_edge_km), 7)

    base = {
        "source": "synthetic",
        "synthetic": True,
        "seed": seed,
        "elevation_proxy": "height above the river: distance to the river, depth inside mountain polygons",
        "parameters": asdict(c),
        **geo.sources("river", "mountain", "urban_core", "desert_edge"),
    }

    def layer(name: str, hazard: str, units: str, data: np.ndarray, method: str, **extra: Any) -> Layer:
        return Layer(name, "hazard", (hazard,), units, data, {**base, "method": method, **extra})

    return {
        "heat_days_ge35": layer(
            "heat_days_ge35",
            "heat",
            "days/year",
            heat_days,
            "days a year with Tmax >= 35 °C: valley days x exp(-h / scale) + urban heat island",
        ),
        "heat_processes": layer(
            "heat_processes",
            "heat",
            "count/year",
            heat_processes,
            "heat processes (>= 3 consecutive days >= 35 °C) a year: heat days / days per process",
        ),
        "heat_intensity": layer(
            "heat_intensity",
            "heat",
            "degC",
            heat_intensity,
            "mean annual maximum Tmax minus 35 °C: valley excess - lapse rate x h + 0.5 urban",
            units_metadata="temperature: difference",
        ),
        "rain_max_6h": layer(
            "rain_max_6h",
            "rainstorm",
            "mm",
            rain_6h,
            "mean annual maximum 6-h precipitation: plain value + mountain-front term",
        ),
        "rain_max_24h": layer(
            "rain_max_24h",
            "rainstorm",
            "mm",
            rain_24h,
            "mean annual maximum 24-h precipitation: ratio x the 6-h maximum",
        ),
        "rain_days_ge50": layer(
            "rain_days_ge50",
            "rainstorm",
            "days/year",
            rain_50,
            "days a year with >= 50 mm: plain value + mountain-front term",
        ),
        "frost_days_growing": layer(
            "frost_days_growing",
            "frost",
            "days/year",
            frost,
            "days in April-October with ground minimum < 0 °C: river value + distance "
            "from the river + height term",
        ),
        "sand_days_vis_lt1000": layer(
            "sand_days_vis_lt1000",
            "sandstorm",
            "days/year",
            sand,
            "days a year with visibility < 1000 m in dust: far value + desert-edge decay",
        ),
    }


def layer_from_raster(
    path: str | Path,
    grid: RegularGrid,
    *,
    name: str,
    kind: str,
    hazards: tuple[str, ...] | list[str],
    units: str,
    variable: str | None = None,
    resampling: str = "average",
    band: int = 1,
) -> Layer:
    """A real layer from a GeoTIFF (any CRS GDAL can reproject) or a lon/lat NetCDF, put on the grid.

    `resampling` is 'average' (area-weighted mean, for rates, shares and climatologies), 'bilinear',
    'nearest' (classes), or 'sum' (counts per pixel, conserving the total as in `regrid_counts`). The first
    three go through GDAL (`rasterio.warp.reproject`); cells the file does not cover, or covers only with no
    data, are NaN. Errors are one-line `GridDataError`s naming the file.
    """
    if resampling not in RESAMPLINGS:
        raise ValueError(f"resampling must be one of {', '.join(RESAMPLINGS)}, got {resampling!r}")
    path = Path(path)
    pad = 2 * grid.step
    x0, y0, x1, y1 = grid.bounds
    source = read_grid_source(
        path, variable=variable, band=band, bounds=(x0 - pad, y0 - pad, x1 + pad, y1 + pad)
    )
    if resampling == "sum":
        data, covered = regrid_counts(source, grid)
        data = np.where(covered > 0, data, np.nan)
        method = "sum of per-pixel counts into grid cells (conserving)"
    else:
        dst = np.full(grid.shape, np.nan)
        try:
            rasterio.warp.reproject(
                source.data,
                dst,
                src_transform=source.transform,
                src_crs=source.crs,
                src_nodata=np.nan,
                dst_transform=grid_transform(grid),
                dst_crs=WGS84,
                dst_nodata=np.nan,
                resampling=RESAMPLINGS[resampling],
            )
        except Exception as e:  # GDAL/PROJ raise several types
            raise GridDataError(path, f"cannot put the layer on the grid: {' '.join(str(e).split())}") from e
        data = dst[::-1]
        method = f"{resampling} resampling onto the grid (GDAL warp)"
    if not np.isfinite(data).any():
        raise GridDataError(path, "no valid values over the region grid")
    label = variable or f"band {band}"
    return Layer(
        name,
        kind,
        tuple(hazards),
        units,
        data,
        {"source": str(path), "method": f"{label}: {method}", "synthetic": False, "crs": str(source.crs)},
    )
