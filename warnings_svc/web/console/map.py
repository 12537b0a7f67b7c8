"""The console's map, pure: the projection of the region onto SVG pixels, GeoJSON as SVG path data, the
region's units as drawn (`RegionView`) and what the map template draws (`map_context`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import shapely
import shapely.geometry

from risk_zoning.store import UnitRecord
from risk_zoning.unit_tree import ancestors, tree_order
from warnings_svc.vocabulary import LEVEL_COLOURS, LEVELS
from warnings_svc.web.console.labels import area_separator, level_name

MAP_WIDTH = 640.0
MAP_MARGIN = 0.03  # of the region's extent, on each side


@dataclass(frozen=True)
class Projection:
    """Longitude and latitude to SVG pixels: equirectangular with longitude scaled by cos(mid latitude)."""

    lon0: float
    lat1: float
    kx: float
    ky: float
    width: float
    height: float

    @classmethod
    def fit(cls, bounds: tuple[float, float, float, float], width: float = MAP_WIDTH) -> Projection:
        """The projection that fits `bounds` (min lon, min lat, max lon, max lat) into `width` pixels."""
        lon0, lat0, lon1, lat1 = bounds
        dx, dy = (lon1 - lon0) * MAP_MARGIN, (lat1 - lat0) * MAP_MARGIN
        lon0, lon1, lat0, lat1 = lon0 - dx, lon1 + dx, lat0 - dy, lat1 + dy
        c = math.cos(math.radians((lat0 + lat1) / 2))
        k = width / ((lon1 - lon0) * c)
        return cls(lon0, lat1, k * c, k, width, round((lat1 - lat0) * k, 1))

    def __call__(self, lon: float, lat: float) -> tuple[float, float]:
        return round((lon - self.lon0) * self.kx, 1), round((self.lat1 - lat) * self.ky, 1)


def geometry_path(geometry: Mapping[str, Any], project: Projection) -> str:
    """SVG path data of a GeoJSON Polygon or MultiPolygon (every ring closed; holes by the even-odd rule).

    >>> p = Projection(0.0, 1.0, 100.0, 100.0, 100.0, 100.0)
    >>> geometry_path({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}, p)
    'M0.0 100.0L100.0 100.0L100.0 0.0Z'
    """
    kind = geometry.get("type")
    if kind == "Polygon":
        polygons = [geometry["coordinates"]]
    elif kind == "MultiPolygon":
        polygons = geometry["coordinates"]
    elif kind == "GeometryCollection":
        return "".join(geometry_path(g, project) for g in geometry.get("geometries", []))
    else:
        return ""
    parts = []
    for rings in polygons:
        for ring in rings:
            points = [project(lon, lat) for lon, lat, *_ in ring]
            if len(points) > 1 and points[0] == points[-1]:
                points.pop()
            if len(points) >= 3:
                parts.append("M" + "L".join(f"{x} {y}" for x, y in points) + "Z")
    return "".join(parts)


@dataclass(frozen=True)
class RegionView:
    """The region's units as the console draws and lists them (one per risk database version)."""

    version_id: int
    units: dict[str, UnitRecord]
    ordered: tuple[UnitRecord, ...]  # city, then each district followed by its towns
    projection: Projection
    paths: dict[str, str]
    label_points: dict[str, tuple[float, float]]

    @classmethod
    def build(cls, version_id: int, units: Sequence[UnitRecord]) -> RegionView:
        by_code = {u.code: u for u in units}
        shapes = {u.code: shapely.geometry.shape(u.geometry) for u in units}
        drawn = [u for u in units if u.level != "city"] or list(units)
        minx, miny, maxx, maxy = shapely.union_all([shapes[u.code] for u in drawn]).bounds
        projection = Projection.fit((minx, miny, maxx, maxy))
        paths = {u.code: geometry_path(u.geometry, projection) for u in units}
        labels = {}
        for u in units:
            p = shapely.point_on_surface(shapes[u.code])
            labels[u.code] = projection(p.x, p.y)
        return cls(version_id, by_code, tuple(tree_order(units)), projection, paths, labels)

    def name(self, code: str, lang: str) -> str:
        u = self.units.get(code)
        if u is None:
            return code
        return u.name if lang == "zh" else u.name_en

    def effective_levels(self, named: Mapping[str, str]) -> dict[str, str]:
        """Each unit's highest level among those named for it or for a unit around it."""
        out: dict[str, str] = {}
        for code in self.units:
            levels = [named[c] for c in [code, *ancestors(code, self.units)] if c in named]
            if levels:
                out[code] = max(levels, key=LEVELS.index)
        return out


def area_names(view: RegionView, codes: Iterable[str], *, lang: str) -> str:
    """Units' names in one line."""
    return area_separator(lang).join(view.name(c, lang) for c in codes)


# stroke-dasharray by kind, drawn in this order (proposals on top); drafts are round dots (round caps)
OUTLINE_DASHES = {"draft": "0.1 7", "proposal": "8 5"}


@dataclass(frozen=True)
class Outline:
    """An area drawn as an outline on the map: an SVG path, its level's colour, a title, and its kind."""

    d: str
    colour: str
    title: str
    kind: Literal["proposal", "draft"]


def map_context(
    view: RegionView,
    lang: str,
    *,
    named_levels: Mapping[str, str],
    outlines: Sequence[Outline] = (),
    selectable: bool = False,
    captions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What the map template draws: units filled by level, outlines on top (dashed for proposals, dotted for
    warnings still being prepared), and a legend line for each kind of outline drawn (`captions` by kind)."""
    effective = view.effective_levels(named_levels)

    def shape(u: UnitRecord) -> dict[str, Any]:
        level = effective.get(u.code)
        return {
            "code": u.code,
            "d": view.paths[u.code],
            "fill": LEVEL_COLOURS[level] if level else None,
            "title": view.name(u.code, lang) + (f" · {level_name(level, lang)}" if level else ""),
        }

    districts = [u for u in view.ordered if u.level == "district"]
    towns = [u for u in view.ordered if u.level == "town"]
    if not districts:
        districts = [u for u in view.ordered if u.level != "town"]
    return {
        "width": view.projection.width,
        "height": view.projection.height,
        "districts": [shape(u) for u in districts],
        "towns": [shape(u) for u in towns],
        "labels": [
            {
                "x": view.label_points[u.code][0],
                "y": view.label_points[u.code][1],
                "text": view.name(u.code, lang),
            }
            for u in districts
        ],
        "outlines": [
            {"d": o.d, "colour": o.colour, "title": o.title, "kind": o.kind, "dash": OUTLINE_DASHES[o.kind]}
            for o in outlines
            if o.d
        ],
        "selectable": selectable,
        "outline_legend": [
            {"kind": kind, "dash": OUTLINE_DASHES[kind], "name": (captions or {}).get(kind, "")}
            for kind in OUTLINE_DASHES
            if any(o.kind == kind and o.d for o in outlines)
        ],
        "legend": [{"colour": LEVEL_COLOURS[lv], "name": level_name(lv, lang)} for lv in LEVELS],
    }
