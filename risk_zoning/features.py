"""The region's geography for the demo layers (river, roads, mines, gullies, ...), read from a GeoJSON file.

A feature file is data: a FeatureCollection in WGS84 longitude/latitude whose features carry the properties
`role` (one of `ROLES`), `name`, `name_en` (optional, defaults to `name`), `source` and `approximate`
(true unless surveyed). The roles decide what each layer is built from; see `risk_zoning.layers`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from risk_zoning.errors import RegionDataError
from risk_zoning.grid import EARTH_RADIUS_KM, RegularGrid

# Each role and the geometry types it may have.
_LINES = frozenset({"LineString", "MultiLineString"})
_POLYGONS = frozenset({"Polygon", "MultiPolygon"})
_POINTS = frozenset({"Point", "MultiPoint"})
ROLE_GEOMETRIES: dict[str, frozenset[str]] = {
    "river": _LINES | _POLYGONS,
    "road": _LINES,
    "mining": _POLYGONS,
    "gully": _LINES,
    "cropland": _POLYGONS,
    "urban_core": _POINTS,
    "desert_edge": _LINES | _POLYGONS,
    "mountain": _LINES | _POLYGONS,
}
ROLES: tuple[str, ...] = tuple(ROLE_GEOMETRIES)
_CRS_WGS84_TAGS = ("CRS84", "EPSG::4326", "EPSG:4326")
KM_PER_DEGREE = math.radians(1.0) * EARTH_RADIUS_KM


@dataclass(frozen=True)
class Feature:
    """One named piece of geography; `properties` holds all its properties from the file."""

    role: str
    name: str
    name_en: str
    geometry: BaseGeometry
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def approximate(self) -> bool:
        return bool(self.properties.get("approximate", True))


@dataclass(frozen=True)
class FeatureSet:
    """The features of one file, in file order."""

    features: tuple[Feature, ...]
    source: str = ""

    def by_role(self, role: str) -> list[Feature]:
        """Features of one role, in file order (empty if the file has none); an unknown role is an error."""
        if role not in ROLE_GEOMETRIES:
            raise RegionDataError(
                self.source or "features", f"unknown feature role {role!r}; known: {', '.join(ROLES)}"
            )
        return [f for f in self.features if f.role == role]

    def union(self, role: str) -> BaseGeometry | None:
        """All geometries of a role merged into one, or None if there are none."""
        geoms = [f.geometry for f in self.by_role(role)]
        return shapely.union_all(geoms) if geoms else None


def load_features(path: str | Path) -> FeatureSet:
    """Read and validate a feature file; any problem is a one-line `RegionDataError` naming the file."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text("utf-8"))
    except FileNotFoundError as e:
        raise RegionDataError(path, "file not found") from e
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RegionDataError(path, f"not valid GeoJSON: {_one_line(e)}") from e
    if (
        not isinstance(doc, dict)
        or doc.get("type") != "FeatureCollection"
        or not isinstance(doc.get("features"), list)
    ):
        raise RegionDataError(path, "expected a GeoJSON FeatureCollection with a list of features")
    crs = ((doc.get("crs") or {}).get("properties") or {}).get("name", "")
    if crs and not any(tag in crs for tag in _CRS_WGS84_TAGS):
        raise RegionDataError(path, f"features must be in WGS84 longitude/latitude, found CRS {crs}")
    features = tuple(_parse_feature(path, i, raw) for i, raw in enumerate(doc["features"]))
    return FeatureSet(features=features, source=str(path))


def _parse_feature(path: Path, i: int, raw: Any) -> Feature:
    if not isinstance(raw, dict) or raw.get("type") != "Feature":
        raise RegionDataError(path, f"feature {i}: not a GeoJSON Feature")
    props = raw.get("properties")
    if not isinstance(props, dict):
        raise RegionDataError(path, f"feature {i}: no properties")
    label = f"feature {i} ({props.get('name', 'unnamed')})"
    for key in ("role", "name", "source"):
        if not isinstance(props.get(key), str) or not props[key].strip():
            raise RegionDataError(path, f"{label}: property {key!r} missing or not a non-empty string")
    role = props["role"]
    if role not in ROLE_GEOMETRIES:
        raise RegionDataError(path, f"{label}: unknown role {role!r}; known: {', '.join(ROLES)}")
    if not isinstance(props.get("approximate"), bool):
        raise RegionDataError(path, f"{label}: property 'approximate' must be true or false")
    if role == "urban_core":
        weight = props.get("population_weight")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise RegionDataError(path, f"{label}: an urban_core needs a positive number 'population_weight'")
    try:
        geom = shape(raw.get("geometry") or {})
    except Exception as e:  # shapely raises several types for malformed geometry
        raise RegionDataError(path, f"{label}: bad geometry: {_one_line(e)}") from e
    if geom.is_empty:
        raise RegionDataError(path, f"{label}: empty geometry")
    if geom.geom_type not in ROLE_GEOMETRIES[role]:
        allowed = ", ".join(sorted(ROLE_GEOMETRIES[role]))
        raise RegionDataError(path, f"{label}: a {role} must be {allowed}, got {geom.geom_type}")
    coords = shapely.get_coordinates(geom)
    if not np.isfinite(coords).all():
        raise RegionDataError(path, f"{label}: coordinates are not finite numbers")
    lon, lat = coords[:, 0], coords[:, 1]
    if not ((lon >= -180) & (lon <= 180) & (lat >= -90) & (lat <= 90)).all():
        raise RegionDataError(
            path, f"{label}: coordinates are not longitude/latitude degrees (projected CRS?)"
        )
    if not geom.is_valid:
        raise RegionDataError(path, f"{label}: invalid geometry ({shapely.is_valid_reason(geom)})")
    name = props["name"]
    return Feature(
        role=role, name=name, name_en=str(props.get("name_en") or name), geometry=geom, properties=props
    )


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def local_km(grid: RegularGrid) -> tuple[float, float]:
    """Kilometres per degree of longitude and of latitude at the grid's central latitude.

    Within a city-sized grid this equirectangular scale is exact to well under 1 %:

    >>> kx, ky = local_km(RegularGrid(lon_min=106.6, lat_min=39.0, step=0.01, nx=10, ny=90))
    >>> round(kx, 1), round(ky, 1)
    (85.9, 111.2)
    """
    lat0 = grid.lat_min + grid.ny * grid.step / 2
    return KM_PER_DEGREE * math.cos(math.radians(lat0)), KM_PER_DEGREE


def distance_km(grid: RegularGrid, geometry: BaseGeometry | None) -> np.ndarray:
    """Distance (km) from every cell centre to a geometry, shape (ny, nx); 0 inside polygons, inf if None.

    Computed in a local equirectangular frame (see `local_km`), so distances are isotropic in kilometres.
    """
    if geometry is None or geometry.is_empty:
        return np.full(grid.shape, np.inf)
    kx, ky = local_km(grid)
    lon0, lat0 = grid.lon_min, grid.lat_min
    frame = shapely.transform(geometry, lambda xy: (xy - (lon0, lat0)) * (kx, ky))
    xx, yy = np.meshgrid((grid.lon - lon0) * kx, (grid.lat - lat0) * ky)
    points = shapely.points(xx.ravel(), yy.ravel())
    shapely.prepare(frame)
    return cast(np.ndarray, shapely.distance(frame, points).reshape(grid.shape))
