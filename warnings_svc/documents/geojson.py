"""Outlines as GeoJSON geometry: MultiPolygons with coordinates rounded to `GEOMETRY_DECIMALS`, as a structure
or as the JSON text the public answers embed."""

from __future__ import annotations

import json
from typing import Any

import shapely
from shapely.geometry import mapping

GEOMETRY_DECIMALS = 6


def geojson_geometry(geometry: shapely.Geometry | None) -> dict[str, Any] | None:
    """A GeoJSON MultiPolygon (coordinates to 6 decimals), None when there is nothing to draw."""
    if geometry is None or geometry.is_empty:
        return None
    polygons = [g for g in shapely.get_parts(geometry) if g.geom_type in ("Polygon", "MultiPolygon")]
    parts = [p for g in polygons for p in shapely.get_parts(g)]
    if not parts:
        return None
    coordinates = mapping(shapely.MultiPolygon(parts))["coordinates"]
    return {"type": "MultiPolygon", "coordinates": _rounded(coordinates)}


def geometry_json(geometry: shapely.Geometry | None) -> str:
    """`geojson_geometry` as compact JSON text (``null`` when nothing to draw): the very characters
    ``json.dumps(..., separators=(",", ":"))`` writes for it inside a larger document."""
    return json.dumps(geojson_geometry(geometry), ensure_ascii=False, separators=(",", ":"))


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, GEOMETRY_DECIMALS)
    return [_rounded(v) for v in value]
