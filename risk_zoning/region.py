"""A region's data folder: `region.toml`, boundaries and features, validated into one `Region`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import shapely
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from shapely.geometry import MultiPolygon, Point, Polygon, shape
from shapely.geometry.base import BaseGeometry

from risk_zoning import HAZARDS
from risk_zoning.errors import RegionDataError
from risk_zoning.geodesy import geometry_gcj02_to_wgs84
from risk_zoning.grid import RegularGrid
from risk_zoning.io.tomlfile import read_toml

Code6 = Annotated[str, StringConstraints(pattern=r"^\d{6}$")]
Code12 = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]
COMPONENTS: tuple[str, ...] = ("hazard", "sensitivity", "exposure", "vulnerability")
# Units may share a border; anything larger than this (km² at Wuhai's latitude, ~1e-7 deg²) is an overlap.
OVERLAP_TOLERANCE_DEG2 = 1e-7
# A province at 1 km is about 1e6 cells; beyond this a build would not fit in memory, so say so up front.
MAX_GRID_CELLS = 20_000_000


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegionSection(_Strict):
    key: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]*$")]
    code: Code6
    name: str
    name_en: str
    timezone: str = "Asia/Shanghai"


class GridSection(_Strict):
    resolution_arcsec: float = Field(gt=0, le=600)


class BoundariesSection(_Strict):
    file: str
    datum: Literal["WGS84", "GCJ-02"]
    code_property: str = "adcode"
    name_property: str = "name"
    source: str


class FeaturesSection(_Strict):
    file: str


class CoreSection(_Strict):
    name: str
    lon: float = Field(ge=-180, le=180)
    lat: float = Field(ge=-90, le=90)
    weight: float = Field(gt=0)
    sigma_km: float = Field(gt=0)


class PopulationSection(_Strict):
    source: Literal["synthetic", "raster"]
    file: str | None = None
    variable: str | None = None
    band: int = 1
    year: int
    scale_to_official: bool = True
    corridor_role: str | None = "river"
    rural_share: float = Field(default=0.05, ge=0, lt=1)
    seed: int = 0
    elderly_share: float = Field(gt=0, lt=1)
    cores: list[CoreSection] = []

    @model_validator(mode="after")
    def _source_needs_its_inputs(self) -> PopulationSection:
        if self.source == "raster" and not self.file:
            raise ValueError("population.source = 'raster' needs population.file")
        if self.source == "synthetic" and not self.cores:
            raise ValueError("population.source = 'synthetic' needs at least one [[population.cores]]")
        return self


class ClimatologySection(_Strict):
    source: Literal["synthetic", "file"]
    file: str | None = None

    @model_validator(mode="after")
    def _file_given(self) -> ClimatologySection:
        if self.source == "file" and not self.file:
            raise ValueError("climatology.source = 'file' needs climatology.file")
        return self


class DistrictSection(_Strict):
    code: Code6
    name: str
    name_en: str
    population: int = Field(ge=0)


class TownSection(_Strict):
    code: Code12
    name: str
    name_en: str
    district: Code6
    seed: tuple[float, float]
    code_status: Literal["official", "provisional"] = "provisional"


class HazardModel(_Strict):
    """How one hazard's risk is assessed: indicators per component, weighting, combination, grading."""

    hazard: list[str] = Field(min_length=1)
    exposure: list[str] = Field(min_length=1)
    vulnerability: list[str] = []
    sensitivity: list[str] = []
    transforms: dict[str, Literal["log1p", "invert"]] = {}
    indicator_weighting: Literal["entropy", "equal"] = "entropy"
    component_weighting: Literal["configured", "ahp", "entropy"] = "configured"
    component_weights: dict[str, float] = {}
    component_pairwise: list[list[float]] = []
    combination: Literal["weighted_product", "weighted_sum"] = "weighted_product"
    grading: Literal["percentiles", "natural_breaks"] = "percentiles"
    percentiles: list[float] = [60, 80, 90, 95]

    def components(self) -> dict[str, list[str]]:
        """Component name -> indicator layer names, in the fixed order hazard, sensitivity, exposure, vulnerability."""
        return {c: list(getattr(self, c)) for c in COMPONENTS if getattr(self, c)}

    @model_validator(mode="after")
    def _weights_match_components(self) -> HazardModel:
        names = list(self.components())
        if self.component_weighting == "configured" and set(self.component_weights) != set(names):
            raise ValueError(
                f"component_weights must give exactly {names}, got {sorted(self.component_weights)}"
            )
        if self.component_weighting == "ahp":
            n = len(names)
            if len(self.component_pairwise) != n or any(len(r) != n for r in self.component_pairwise):
                raise ValueError(f"component_pairwise must be a {n}x{n} matrix over {names}")
        unknown = set(self.transforms) - {i for v in self.components().values() for i in v}
        if unknown:
            raise ValueError(f"transforms name indicators not in the model: {sorted(unknown)}")
        return self


class RegionFile(_Strict):
    """The schema of `region.toml`."""

    region: RegionSection
    grid: GridSection
    boundaries: BoundariesSection
    features: FeaturesSection
    population: PopulationSection
    climatology: ClimatologySection
    district: list[DistrictSection] = Field(min_length=1)
    town: list[TownSection] = []
    hazards: dict[str, HazardModel]

    @model_validator(mode="after")
    def _consistent(self) -> RegionFile:
        unknown = set(self.hazards) - set(HAZARDS)
        if unknown:
            raise ValueError(f"unknown hazard {sorted(unknown)[0]!r}; known: {', '.join(HAZARDS)}")
        codes = [d.code for d in self.district] + [t.code for t in self.town]
        dup = {c for c in codes if codes.count(c) > 1}
        if dup:
            raise ValueError(f"duplicate unit code {sorted(dup)[0]}")
        district_codes = {d.code for d in self.district}
        for d in self.district:
            if d.code[:4] != self.region.code[:4]:
                raise ValueError(f"district {d.code} does not belong to region {self.region.code}")
        for t in self.town:
            if t.district not in district_codes:
                raise ValueError(f"town {t.code} names unknown district {t.district}")
            if not t.code.startswith(t.district):
                raise ValueError(f"town code {t.code} does not start with its district code {t.district}")
        return self


@dataclass(frozen=True)
class Unit:
    """An assessment unit (city, district or town) with its WGS84 geometry."""

    code: str  # 12 digits
    name: str
    name_en: str
    level: str  # city | district | town
    parent: str | None
    geometry: BaseGeometry
    boundary: str  # official | approximate
    code_status: str  # official | provisional
    official_population: int | None = None


@dataclass(frozen=True)
class Region:
    """Everything a build needs about a region, validated."""

    key: str
    folder: Path
    config: RegionFile
    grid: RegularGrid
    city: Unit
    districts: tuple[Unit, ...]
    towns: tuple[Unit, ...]
    town_district: np.ndarray  # town index -> district index
    boundary_datum: str

    @property
    def code(self) -> str:
        return self.config.region.code

    def path(self, name: str) -> Path:
        """A file named in region.toml, relative to the region folder unless absolute."""
        p = Path(name).expanduser()
        return p if p.is_absolute() else self.folder / p


def builtin_regions() -> Path:
    """The folder of regions shipped with the package."""
    return Path(str(resources.files("risk_zoning") / "regions"))


def resolve_region(region: str | Path) -> Path:
    """A region key (a folder under the built-in regions) or a path to a region folder or its region.toml."""
    p = Path(region).expanduser()
    if p.name == "region.toml":
        p = p.parent
    if not p.exists() and "/" not in str(region):
        p = builtin_regions() / str(region)
    if not (p / "region.toml").is_file():
        known = sorted(d.name for d in builtin_regions().iterdir() if (d / "region.toml").is_file())
        raise RegionDataError(p / "region.toml", f"no such region (built-in regions: {', '.join(known)})")
    return p


def load_region_file(path: Path) -> RegionFile:
    """Parse and validate region.toml; every problem is one line naming the file and the field."""
    raw = read_toml(path, RegionDataError)
    try:
        return RegionFile.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        raise RegionDataError(path, f"{where}: {msg}") from e


def load_region(region: str | Path) -> Region:
    """Load and validate a region folder: config, boundaries (converted to WGS84), approximate towns, grid."""
    folder = resolve_region(region)
    cfg = load_region_file(folder / "region.toml")
    bpath = (
        folder / cfg.boundaries.file
        if not Path(cfg.boundaries.file).is_absolute()
        else Path(cfg.boundaries.file)
    )
    geoms = _read_boundaries(bpath, cfg)
    districts = []
    for d in cfg.district:
        districts.append(
            Unit(
                code=d.code + "000000",
                name=d.name,
                name_en=d.name_en,
                level="district",
                parent=cfg.region.code + "000000",
                geometry=geoms[d.code],
                boundary="official",
                code_status="official",
                official_population=d.population,
            )
        )
    _check_no_overlap(bpath, districts)
    city_geom = shapely.union_all([u.geometry for u in districts])
    city = Unit(
        code=cfg.region.code + "000000",
        name=cfg.region.name,
        name_en=cfg.region.name_en,
        level="city",
        parent=None,
        geometry=city_geom,
        boundary="official",
        code_status="official",
        official_population=sum(d.population for d in cfg.district),
    )
    towns, town_district = _approximate_towns(folder / "region.toml", cfg, districts)
    step = cfg.grid.resolution_arcsec / 3600.0
    grid = RegularGrid.covering(city_geom.bounds, step)
    if grid.size > MAX_GRID_CELLS:
        raise RegionDataError(
            folder / "region.toml",
            f"grid.resolution_arcsec: {cfg.grid.resolution_arcsec} gives {grid.ny} x {grid.nx} = {grid.size:,} cells,"
            f" more than {MAX_GRID_CELLS:,}",
        )
    return Region(
        key=cfg.region.key,
        folder=folder,
        config=cfg,
        grid=grid,
        city=city,
        districts=tuple(districts),
        towns=tuple(towns),
        town_district=town_district,
        boundary_datum=cfg.boundaries.datum,
    )


def _read_boundaries(path: Path, cfg: RegionFile) -> dict[str, BaseGeometry]:
    """District polygons by 6-digit code, in WGS84."""
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as e:
        raise RegionDataError(path, "file not found") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RegionDataError(path, f"not valid GeoJSON: {e}") from e
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise RegionDataError(path, "expected a GeoJSON FeatureCollection")
    crs = (doc.get("crs") or {}).get("properties", {}).get("name", "")
    if crs and not any(tag in crs for tag in ("CRS84", "EPSG::4326", "EPSG:4326")):
        raise RegionDataError(
            path, f"boundaries must be in geographic lon/lat (WGS84 or GCJ-02), found CRS {crs}"
        )
    out: dict[str, BaseGeometry] = {}
    for i, feat in enumerate(doc.get("features", [])):
        props = feat.get("properties") or {}
        code = str(props.get(cfg.boundaries.code_property, ""))
        try:
            geom = shape(feat["geometry"])
        except Exception as e:  # shapely raises several types for malformed geometry
            raise RegionDataError(path, f"feature {i} ({code or 'no code'}): bad geometry: {e}") from e
        if not isinstance(geom, Polygon | MultiPolygon):
            raise RegionDataError(
                path, f"feature {i} ({code}): expected a (Multi)Polygon, got {geom.geom_type}"
            )
        minx, miny, maxx, maxy = geom.bounds
        if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
            raise RegionDataError(
                path, f"feature {i} ({code}): coordinates are not longitude/latitude degrees (projected CRS?)"
            )
        if cfg.boundaries.datum == "GCJ-02":
            geom = geometry_gcj02_to_wgs84(geom)
        if not geom.is_valid:
            raise RegionDataError(
                path, f"feature {i} ({code}): invalid polygon ({shapely.is_valid_reason(geom)})"
            )
        out[code] = geom
    missing = [d.code for d in cfg.district if d.code not in out]
    if missing:
        raise RegionDataError(
            path, f"no boundary for district {missing[0]} (property {cfg.boundaries.code_property!r})"
        )
    return out


def _check_no_overlap(path: Path, units: list[Unit]) -> None:
    tree = shapely.STRtree([u.geometry for u in units])
    left, right = tree.query([u.geometry for u in units], predicate="intersects")
    for a, b in zip(left, right, strict=True):
        if a < b:
            area = units[a].geometry.intersection(units[b].geometry).area
            if area > OVERLAP_TOLERANCE_DEG2:
                raise RegionDataError(
                    path,
                    f"units {units[a].code[:6]} and {units[b].code[:6]} overlap ({area * 1e4:.2f} km² approx)",
                )


def _approximate_towns(path: Path, cfg: RegionFile, districts: list[Unit]) -> tuple[list[Unit], np.ndarray]:
    """Voronoi partition of each district around its towns' seed points, clipped to the district."""
    by_code = {d.code[:6]: (i, d) for i, d in enumerate(districts)}
    towns: list[Unit] = []
    parent_idx: list[int] = []
    for dcode, (di, district) in by_code.items():
        members = [t for t in cfg.town if t.district == dcode]
        if not members:
            continue
        for t in members:
            if not district.geometry.contains(Point(t.seed)):
                raise RegionDataError(
                    path, f"town {t.code} ({t.name}): seed {list(t.seed)} lies outside district {dcode}"
                )
        if len(members) == 1:
            cells = [district.geometry]
        else:
            seeds = shapely.MultiPoint([t.seed for t in members])
            regions = shapely.voronoi_polygons(seeds, extend_to=district.geometry.envelope.buffer(0.1))
            cells = []
            for t in members:
                owner = next(g for g in regions.geoms if g.contains(Point(t.seed)))
                cells.append(owner.intersection(district.geometry))
        for t, geom in zip(members, cells, strict=True):
            geom = shapely.make_valid(geom)
            polys = [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, Polygon | MultiPolygon)]
            geom = shapely.union_all(polys)
            if isinstance(geom, Polygon):
                geom = MultiPolygon([geom])
            towns.append(
                Unit(
                    code=t.code,
                    name=t.name,
                    name_en=t.name_en,
                    level="town",
                    parent=district.code,
                    geometry=geom,
                    boundary="approximate",
                    code_status=t.code_status,
                )
            )
            parent_idx.append(di)
    return towns, np.asarray(parent_idx, dtype=np.int32)
