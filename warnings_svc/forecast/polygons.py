"""Warning polygons from a level grid, valid CAP 1.2 `<polygon>`s by construction (pure computation).

`level_polygon` turns the cells where a warning level is reached into the polygons of CAP alerts, under the
rules of the strictest public consumer (Google's CAP ingest, see the warning-criteria reference, section 4):
closed rings of at least 4 points, at most 6 decimals, no holes, no self-intersections, no overlaps, and
non-contiguous areas as separate polygons (one alert each).

The algorithm, in order:

1. **Raster clean-up.** Holes are filled in the mask (background cells not 4-connected to the grid's edge
   become part of the area: a CAP polygon has no holes) and the mask is split into 4-connected pieces
   (`scipy.ndimage.label`). Pieces whose cell area (on the sphere) is below `min_area_km2` are dropped and
   counted. Working on the raster first keeps noise from ever being polygonised.
2. **Polygonise** the kept cells with `rasterio.features.shapes` (4-connectivity) under the grid's affine
   transform. Rows run south to north, so the transform has a positive y step and no flip is needed. After
   step 1 each piece is one polygon without holes, and pieces meet at most at single corners.
3. **Buffer** (optional, `buffer_km`): every piece grows by that distance in a local kilometre frame; grown
   pieces that meet are merged (union) and any enclosed gap is filled.
4. **Clip** (optional): pieces are intersected with the clip geometry (e.g. the region); the parts are
   filled, merged if they nest or overlap, and parts below `min_area_km2` (now measured on the polygon, in
   an equal-area sinusoidal frame) are dropped and counted.
5. **Simplify** each piece (shapely, topology preserving) with the smallest tolerance (found by doubling,
   then bisection) that brings its ring within `max_vertices` points; collinear corners of the cell
   staircase are always removed (tolerance 0), which does not change the shape.
6. **Round** coordinates to `decimals` decimal places and re-validate. If rounding breaks validity, the
   piece is snapped to the `10**-decimals` grid by GEOS (`set_precision`, valid output) or repaired with
   `make_valid`; the resulting parts go round steps 5-6 again.
7. **Separate**: where simplified pieces came to overlap, the pieces of each overlapping group are
   simplified again together (one topology-preserving simplification of their MultiPolygon, which keeps
   the parts from crossing) at the group's largest tolerance or more; a group that still overlaps is
   merged (the union covers all of it) and goes round steps 5-6 again. The final polygons have disjoint
   interiors (they may touch). Rings are oriented counter-clockwise; polygons are sorted largest first.

Guarantees of every polygon in a `PolygonResult` (checked before returning, also under ``python -O``; a
violation is a bug and raises `AssertionError`):

- a `Polygon` with no interior rings, `shapely.is_valid`, non-zero area;
- a closed exterior ring of at least 4 and at most `max_vertices` points (the closing point counted, so a
  single cell is a 5-point ring), oriented counter-clockwise;
- every coordinate equal to itself rounded to `decimals` places, and the CAP string gives them back exactly;
- interiors of different polygons do not intersect.

What is *not* guaranteed: a simplified polygon may leave out or take in a sliver of land up to the
tolerance used, and may stray that far outside `clip`; the areas reported are those of the final polygons.

>>> from risk_zoning.grid import RegularGrid
>>> grid = RegularGrid(lon_min=106.6, lat_min=39.0, step=0.05, nx=4, ny=3)
>>> mask = np.zeros(grid.shape, dtype=bool)
>>> mask[0, 0] = True  # the south-west cell
>>> result = level_polygon(mask, grid, min_area_km2=0.0)
>>> result.cap_strings
['39,106.6 39,106.65 39.05,106.65 39.05,106.6 39,106.6']
>>> result.vertex_counts, round(result.area_km2[0], 1)
([5], 24.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import numpy as np
import rasterio.features
import shapely
from affine import Affine
from scipy import ndimage
from shapely.geometry import GeometryCollection, MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from risk_zoning.grid import EARTH_RADIUS_KM, RegularGrid

KM_PER_DEGREE = math.radians(1.0) * EARTH_RADIUS_KM
# A CAP ring needs 4 points; a budget must allow a quadrilateral (5 points) so any piece can be represented.
MIN_VERTEX_BUDGET = 5
# Rounds of simplify/round/repair and of overlap merging before falling back to an enclosing rectangle.
_MAX_ROUNDS = 8
_BISECTION_STEPS = 6


@dataclass(frozen=True)
class PolygonResult:
    """The polygons of one level, largest first, and what was done to get them.

    The lists are parallel: polygon ``i`` has CAP string ``cap_strings[i]`` (``"lat,lon lat,lon ..."``,
    latitude first, the first point repeated at the end), ``vertex_counts[i]`` points in its ring (the
    closing point counted, i.e. the number of pairs in the CAP string) and ``area_km2[i]`` km² (on the
    sphere). `simplified` is True when any polygon was simplified beyond removing collinear corners;
    `dropped_small_parts` counts pieces left out for being smaller than the minimum area.
    """

    polygons: list[Polygon] = field(default_factory=list)
    cap_strings: list[str] = field(default_factory=list)
    vertex_counts: list[int] = field(default_factory=list)
    area_km2: list[float] = field(default_factory=list)
    simplified: bool = False
    dropped_small_parts: int = 0

    @property
    def is_empty(self) -> bool:
        return not self.polygons

    @property
    def total_area_km2(self) -> float:
        return float(sum(self.area_km2))


def level_polygon(
    mask: np.ndarray,
    grid: RegularGrid,
    *,
    clip: BaseGeometry | None = None,
    max_vertices: int = 100,
    min_area_km2: float = 1.0,
    decimals: int = 6,
    buffer_km: float = 0.0,
) -> PolygonResult:
    """CAP-ready polygons of the cells where `mask` is True (see the module docstring for the algorithm).

    `mask` has the grid's shape ``(ny, nx)``, rows south to north. `clip` (WGS84 lon/lat, e.g. the region's
    outline) limits the polygons to it; `buffer_km` grows the area before clipping; `max_vertices` bounds
    each ring's points (closing point included; at least 5); pieces under `min_area_km2` are dropped;
    coordinates are rounded to `decimals` places (CAP consumers accept at most 6).

    An empty mask, or one whose pieces are all too small or outside `clip`, gives an empty result.

    >>> grid = RegularGrid(lon_min=106.0, lat_min=39.0, step=0.1, nx=5, ny=3)
    >>> mask = np.zeros(grid.shape, dtype=bool)
    >>> mask[:, 0] = mask[:, 4] = True  # two separate columns: two polygons
    >>> r = level_polygon(mask, grid)
    >>> len(r.polygons), r.vertex_counts, r.cap_strings[0]
    (2, [5, 5], '39,106 39,106.1 39.3,106.1 39.3,106 39,106')
    """
    cells = _check_arguments(mask, grid, max_vertices, min_area_km2, decimals, buffer_km)
    if not cells.any():
        return PolygonResult()
    kept, dropped = _drop_small_pieces(ndimage.binary_fill_holes(cells), grid, min_area_km2)
    if not kept.any():
        return PolygonResult(dropped_small_parts=dropped)
    pieces = _polygonise(kept, grid)
    lon0 = grid.lon_min + grid.nx * grid.step / 2
    if buffer_km > 0:
        pieces = _buffer(pieces, buffer_km)
    if clip is not None:
        pieces = _clip(pieces, clip)
        pieces, n_small = _drop_small_polygons(pieces, min_area_km2, lon0)
        dropped += n_small
    if not pieces:
        return PolygonResult(dropped_small_parts=dropped)
    limits = _Limits(max_vertices, decimals, min_area_km2, lon0, grid.step / 4)
    finished, simplified, n_small = _finish(pieces, limits)
    dropped += n_small
    return _result(finished, simplified, dropped, max_vertices, decimals, lon0)


# ---------------------------------------------------------------------------------------------- steps


def _check_arguments(
    mask: np.ndarray,
    grid: RegularGrid,
    max_vertices: int,
    min_area_km2: float,
    decimals: int,
    buffer_km: float,
) -> np.ndarray:
    cells = np.asarray(mask, dtype=bool)
    if cells.shape != grid.shape:
        raise ValueError(f"mask has shape {cells.shape} but the grid is {grid.shape} (ny, nx)")
    if max_vertices < MIN_VERTEX_BUDGET:
        raise ValueError(f"max_vertices must be at least {MIN_VERTEX_BUDGET}, got {max_vertices}")
    if not (math.isfinite(min_area_km2) and min_area_km2 >= 0):
        raise ValueError(f"min_area_km2 must be a finite number >= 0, got {min_area_km2}")
    if not 0 <= decimals <= 15:
        raise ValueError(f"decimals must be between 0 and 15, got {decimals}")
    if not (math.isfinite(buffer_km) and buffer_km >= 0):
        raise ValueError(f"buffer_km must be a finite number >= 0, got {buffer_km}")
    return cells


def _drop_small_pieces(filled: np.ndarray, grid: RegularGrid, min_area_km2: float) -> tuple[np.ndarray, int]:
    """The 4-connected pieces of `filled` of at least `min_area_km2`, and how many were dropped."""
    labels, n = ndimage.label(filled)
    row_area = grid.cell_area_km2()[:, 0]
    rows = np.nonzero(labels)[0]
    areas = np.bincount(labels[labels > 0], weights=row_area[rows], minlength=n + 1)
    keep = areas >= min_area_km2
    keep[0] = False
    return keep[labels], int(n - keep[1:].sum())


def _polygonise(cells: np.ndarray, grid: RegularGrid) -> list[Polygon]:
    """One hole-free polygon per 4-connected piece, via GDAL's polygonize on the bounding box of the cells."""
    rows = np.flatnonzero(cells.any(axis=1))
    cols = np.flatnonzero(cells.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    window = np.ascontiguousarray(cells[r0:r1, c0:c1], dtype=np.uint8)
    # rows run south to north: row r spans lat_min + r*step .. + step, so y grows with the row index
    transform = Affine(
        grid.step, 0.0, grid.lon_min + c0 * grid.step, 0.0, grid.step, grid.lat_min + r0 * grid.step
    )
    shapes = rasterio.features.shapes(window, mask=window.astype(bool), transform=transform, connectivity=4)
    return [Polygon(geom["coordinates"][0]) for geom, _ in shapes]


def _buffer(pieces: list[Polygon], buffer_km: float) -> list[Polygon]:
    """Grow every piece by `buffer_km` in a local kilometre frame, merge those that meet, fill gaps."""
    minx, miny, maxx, maxy = shapely.total_bounds(pieces)
    lon0, lat0 = (minx + maxx) / 2, (miny + maxy) / 2
    kx, ky = KM_PER_DEGREE * math.cos(math.radians(lat0)), KM_PER_DEGREE

    def to_km(c: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, (c - (lon0, lat0)) * (kx, ky))

    def to_deg(c: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, c / (kx, ky) + (lon0, lat0))

    grown = shapely.buffer(shapely.transform(np.asarray(pieces, dtype=object), to_km), buffer_km, quad_segs=4)
    return _merge_filled([shapely.transform(g, to_deg) for g in grown])


def _clip(pieces: list[Polygon], clip: BaseGeometry) -> list[Polygon]:
    """The parts of the pieces inside `clip`, hole-free and with disjoint interiors."""
    if clip.is_empty:
        return []
    if not clip.is_valid:
        clip = shapely.make_valid(clip)
    shapely.prepare(clip)
    inside = shapely.contains(clip, np.asarray(pieces, dtype=object))
    out = [p for p, ok in zip(pieces, inside, strict=True) if ok]
    cut = [p for p, ok in zip(pieces, inside, strict=True) if not ok]
    if not cut:
        return out
    parts = list(_polygon_parts(shapely.intersection(np.asarray(cut, dtype=object), clip)))
    return _merge_filled(out + parts) if parts else out


def _drop_small_polygons(
    pieces: list[Polygon], min_area_km2: float, lon0: float
) -> tuple[list[Polygon], int]:
    if not pieces:
        return [], 0
    area = _area_km2(pieces, lon0)
    keep = (area >= min_area_km2) & (area > 0)
    return [p for p, k in zip(pieces, keep, strict=True) if k], int((~keep).sum())


@dataclass(frozen=True)
class _Limits:
    max_vertices: int
    decimals: int
    min_area_km2: float
    lon0: float  # central meridian of the equal-area frame
    scale: float  # first simplification tolerance tried (degrees): a quarter of a grid cell


@dataclass
class _Owner:
    """Pieces of the area and the finished polygons that stand for them."""

    exact: list[Polygon]  # the pieces before simplification (collinear points removed)
    polys: list[Polygon]  # simplified, rounded, valid, within the budget
    tolerance: float  # simplification tolerance used (degrees; 0 = shape unchanged)


def _finish(pieces: list[Polygon], lim: _Limits) -> tuple[list[Polygon], bool, int]:
    """Steps 5-7: simplify within the budget, round, repair, and resolve pieces that came to overlap.

    Pieces are first simplified one by one. Where simplified pieces overlap, the pieces of each overlapping
    group are simplified again together, topology preserving (GEOS keeps the parts of a valid MultiPolygon
    from crossing), at the largest tolerance of the group or more. A group still overlapping after that is
    merged (the union covers all of its pieces) and simplified again as one.
    """
    owners, dropped = _simplify_each(pieces, lim)
    for attempt in range(_MAX_ROUNDS):
        groups = _conflicting_owners(owners)
        if not groups:
            break
        in_group = {k for g in groups for k in g}
        next_owners = [o for k, o in enumerate(owners) if k not in in_group]
        for g in groups:
            exact = _merge_filled([p for k in g for p in owners[k].exact])
            tolerance = max(max(owners[k].tolerance for k in g), lim.scale)
            joint = _simplify_jointly(exact, tolerance, lim) if attempt < 2 else None
            if joint is not None:
                next_owners.append(joint[0])
                dropped += joint[1]
                continue
            merged = _merge_filled(exact + [p for k in g for p in owners[k].polys])
            more, n_small = _simplify_each(merged, lim)
            next_owners += more
            dropped += n_small
        owners = next_owners
    else:  # pragma: no cover - still overlapping after every round: one rectangle around everything
        everything = [p for o in owners for p in o.polys]
        owners = [_Owner(everything, _enclosing_rectangles(everything, lim.decimals), math.inf)]
    done = [p for o in owners for p in o.polys]
    simplified = any(o.tolerance > 0 for o in owners)
    return [orient(p, 1.0) for p in done], simplified, dropped


def _conflicting_owners(owners: list[_Owner]) -> list[list[int]]:
    """Groups of owners whose polygons overlap (an owner alone when its own polygons overlap)."""
    polys = [p for o in owners for p in o.polys]
    owner_of = [k for k, o in enumerate(owners) for _ in o.polys]
    groups: dict[int, set[int]] = {}
    for g in _overlapping_groups(polys):
        ks = {owner_of[i] for i in g}
        if len(g) > 1:  # an owner's own polygons may overlap too, after rounding
            merged = set(ks)
            for k in ks:
                merged |= groups.get(k, set())
            for k in merged:
                groups[k] = merged
    unique = {id(g): sorted(g) for g in groups.values()}
    return sorted(unique.values())


def _simplify_each(pieces: list[Polygon], lim: _Limits) -> tuple[list[_Owner], int]:
    """Pieces simplified one by one: vectorised for those that fit once collinear points are gone and
    survive rounding, the others through the budget search."""
    arr = np.asarray(pieces, dtype=object)
    exact = shapely.simplify(arr, 0.0, preserve_topology=True)
    rounded = shapely.transform(exact, lambda c: np.round(c, lim.decimals))
    n = shapely.get_num_coordinates(rounded)
    ok = (
        (shapely.get_type_id(rounded) == 3)
        & (shapely.get_num_interior_rings(rounded) == 0)
        & (n >= 4)
        & (n <= lim.max_vertices)
        & shapely.is_valid(rounded)
        & (shapely.area(rounded) > 0)
    )
    area = np.zeros(arr.size)
    area[ok] = _area_km2(rounded[ok], lim.lon0)
    small = ok & (area < lim.min_area_km2)
    dropped = int(small.sum())
    owners = [_Owner([e], [r], 0.0) for e, r in zip(exact[ok & ~small], rounded[ok & ~small], strict=True)]
    for piece in arr[~ok]:
        owner, n_small = _simplify_one(piece, lim)
        owners.append(owner)
        dropped += n_small
    return owners, dropped


def _simplify_one(piece: Polygon, lim: _Limits) -> tuple[_Owner, int]:
    out: list[Polygon] = []
    tolerance = 0.0
    dropped = 0
    pending = [piece]
    for _ in range(_MAX_ROUNDS):
        retry: list[Polygon] = []
        for g in pending:
            s, tol = _simplify_to_budget(g, lim)
            tolerance = max(tolerance, tol)
            for r in _round_valid(s, lim.decimals):
                if _area_km2([r], lim.lon0)[0] < lim.min_area_km2:
                    dropped += 1
                elif _points(r) <= lim.max_vertices:
                    out.append(r)
                else:  # repair added points: simplify this part again
                    retry.append(r)
        pending = retry
        if not pending:
            break
    else:  # pragma: no cover - GEOS kept adding points: fall back to an enclosing rectangle
        out += _enclosing_rectangles(pending, lim.decimals)
        tolerance = math.inf
    return _Owner([piece], out, tolerance), dropped


def _simplify_jointly(exact: list[Polygon], tolerance: float, lim: _Limits) -> tuple[_Owner, int] | None:
    """Disjoint pieces simplified together so that none crosses another, or None if the budget cannot be
    met that way (or rounding spoils it)."""
    joint = MultiPolygon(exact)
    minx, miny, maxx, maxy = joint.bounds
    diagonal = math.hypot(maxx - minx, maxy - miny)
    while tolerance <= 2 * diagonal:
        parts = list(_polygon_parts(shapely.simplify(joint, tolerance, preserve_topology=True)))
        if all(_points(p) <= lim.max_vertices for p in parts):
            break
        tolerance *= 2
    else:
        return None
    out: list[Polygon] = []
    dropped = 0
    for r in (r for p in parts for r in _round_valid(p, lim.decimals)):
        if _points(r) > lim.max_vertices:
            return None
        if _area_km2([r], lim.lon0)[0] < lim.min_area_km2:
            dropped += 1
        else:
            out.append(r)
    if any(len(g) > 1 for g in _overlapping_groups(out)):
        return None
    return _Owner(exact, out, tolerance), dropped


def _simplify_to_budget(p: Polygon, lim: _Limits) -> tuple[Polygon, float]:
    """A version of `p` within the budget, simplified as little as practical, and the tolerance used.

    Collinear points always go (tolerance 0, no change of shape). Beyond that the tolerance doubles from a
    quarter of a grid cell, each round simplifying the previous round's result (cheap on polygons of 10^5
    points; the accumulated deviation stays below twice the last tolerance), then bisects on the last
    result that was still over the budget.
    """
    exact = _simplify(p, 0.0)
    if exact is None:
        return _rectangle(p), math.inf
    if _points(exact) <= lim.max_vertices:
        return exact, 0.0
    minx, miny, maxx, maxy = p.bounds
    diagonal = math.hypot(maxx - minx, maxy - miny)
    over, lo, hi = exact, 0.0, lim.scale
    best = None
    while hi <= 2 * diagonal:
        candidate = _simplify(over, hi)
        if candidate is not None and _points(candidate) <= lim.max_vertices:
            best = candidate
            break
        if candidate is not None:
            over = candidate
        lo, hi = hi, hi * 2
    if best is None:
        return _rectangle(p), math.inf
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        candidate = _simplify(over, mid)
        if candidate is not None and _points(candidate) <= lim.max_vertices:
            hi, best = mid, candidate
        else:
            lo = mid
    return best, 2 * hi


def _simplify(p: Polygon, tolerance: float) -> Polygon | None:
    s = shapely.simplify(p, tolerance, preserve_topology=True)
    if isinstance(s, Polygon) and not s.is_empty and s.area > 0:
        return Polygon(s.exterior)
    return None


def _round_valid(p: Polygon, decimals: int) -> list[Polygon]:
    """`p` with coordinates rounded to `decimals` places, repaired (possibly into parts) if that broke it."""
    r = _rounded(p, decimals)
    if _valid_ring(r):
        return [r]
    grid_size = 10.0**-decimals
    pending = list(_polygon_parts(shapely.set_precision(p, grid_size)))
    out: list[Polygon] = []
    for _ in range(_MAX_ROUNDS):
        retry: list[Polygon] = []
        for g in pending:
            r = _rounded(Polygon(g.exterior), decimals)
            if _valid_ring(r):
                out.append(r)
            elif r.area > 0:
                retry += list(_polygon_parts(shapely.make_valid(r)))
        pending = retry
        if not pending:
            break
    return out


def _rounded(p: Polygon, decimals: int) -> Polygon:
    return Polygon(np.round(np.asarray(p.exterior.coords), decimals))


def _valid_ring(p: Polygon) -> bool:
    return not p.is_empty and p.is_valid and p.area > 0 and len(p.exterior.coords) >= 4


# ---------------------------------------------------------------------------------------------- helpers


def _points(p: Polygon) -> int:
    return len(p.exterior.coords)


def _polygon_parts(geoms: BaseGeometry | Iterable[BaseGeometry]) -> Iterable[Polygon]:
    """Every non-empty polygon inside a geometry (or an array of them), hole-free; lines and points skipped."""
    stack = [geoms] if isinstance(geoms, BaseGeometry) else list(geoms)
    while stack:
        g = stack.pop()
        if g is None or g.is_empty:
            continue
        if isinstance(g, Polygon):
            if g.area > 0:
                yield Polygon(g.exterior)
        elif isinstance(g, MultiPolygon | GeometryCollection):
            stack.extend(g.geoms)


def _merge_filled(polys: list[Polygon]) -> list[Polygon]:
    """Union of the polygons split into hole-free parts; repeated because filling can swallow a neighbour."""
    current = polys
    for _ in range(_MAX_ROUNDS):
        union = shapely.union_all(np.asarray(current, dtype=object))
        holes = any(len(p.interiors) for p in _raw_polygons(union))
        current = list(_polygon_parts(union))
        if not holes:
            break
    return current


def _raw_polygons(g: BaseGeometry) -> list[Polygon]:
    if isinstance(g, Polygon):
        return [g]
    if isinstance(g, MultiPolygon | GeometryCollection):
        return [p for part in g.geoms for p in _raw_polygons(part)]
    return []


def _overlapping_groups(polys: list[Polygon]) -> list[list[int]]:
    """Indices of polygons grouped by overlapping interiors (connected components of the overlap graph)."""
    parent = list(range(len(polys)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if len(polys) > 1:
        arr = np.asarray(polys, dtype=object)
        left, right = shapely.STRtree(arr).query(arr, predicate="intersects")
        pairs = left < right
        left, right = left[pairs], right[pairs]
        overlap = shapely.relate_pattern(arr[left], arr[right], "T********")
        for a, b in zip(left[overlap], right[overlap], strict=True):
            parent[find(a)] = find(b)
    groups: dict[int, list[int]] = {}
    for i in range(len(polys)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _rectangle(p: Polygon) -> Polygon:
    r = shapely.oriented_envelope(p)
    return r if isinstance(r, Polygon) and r.area > 0 else shapely.box(*p.bounds)


def _enclosing_rectangles(polys: list[Polygon], decimals: int) -> list[Polygon]:  # pragma: no cover
    union = shapely.union_all(np.asarray(polys, dtype=object))
    step = 10.0**-decimals
    minx, miny, maxx, maxy = union.bounds
    box = shapely.box(
        math.floor(minx / step) * step,
        math.floor(miny / step) * step,
        math.ceil(maxx / step) * step,
        math.ceil(maxy / step) * step,
    )
    return [_rounded(box, decimals)]


def _area_km2(polys: Iterable[Polygon], lon0: float) -> np.ndarray:
    """Areas on the sphere (km²) in a sinusoidal (equal-area) frame centred on `lon0`."""

    def sinusoidal(c: np.ndarray) -> np.ndarray:
        lat = np.radians(c[:, 1])
        return np.column_stack(
            (EARTH_RADIUS_KM * np.radians(c[:, 0] - lon0) * np.cos(lat), EARTH_RADIUS_KM * lat)
        )

    return cast(
        np.ndarray, shapely.area(shapely.transform(np.asarray(list(polys), dtype=object), sinusoidal))
    )


def format_cap_polygon(p: Polygon, decimals: int = 6) -> str:
    """A CAP 1.2 `<polygon>` value: ``"lat,lon lat,lon ..."``, the first pair repeated at the end.

    >>> format_cap_polygon(Polygon([(106.5, 39.25), (106.75, 39.25), (106.75, 39.5)]))
    '39.25,106.5 39.25,106.75 39.5,106.75 39.25,106.5'
    """
    return " ".join(f"{_number(y, decimals)},{_number(x, decimals)}" for x, y in p.exterior.coords)


def parse_cap_polygon(text: str) -> Polygon:
    """The polygon of a CAP `<polygon>` value (inverse of `format_cap_polygon`)."""
    pairs = [pair.split(",") for pair in text.split()]
    if any(len(pair) != 2 for pair in pairs):
        raise ValueError(f"not a CAP polygon (pairs 'lat,lon' separated by spaces): {text[:60]!r}")
    return Polygon([(float(lon), float(lat)) for lat, lon in pairs])


def _number(v: float, decimals: int) -> str:
    text = f"{round(v, decimals):.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _result(
    polys: list[Polygon], simplified: bool, dropped: int, max_vertices: int, decimals: int, lon0: float
) -> PolygonResult:
    if not polys:
        return PolygonResult(simplified=simplified, dropped_small_parts=dropped)
    areas = _area_km2(polys, lon0)
    order = sorted(
        range(len(polys)), key=lambda i: (-round(float(areas[i]), 6), -polys[i].bounds[3], polys[i].bounds[0])
    )
    polys = [polys[i] for i in order]
    for p in polys:
        _assert_cap_ready(p, max_vertices, decimals)
    if len(polys) > 1 and any(len(g) > 1 for g in _overlapping_groups(polys)):
        raise AssertionError("level_polygon broke its guarantee: warning polygons overlap")
    return PolygonResult(
        polygons=polys,
        cap_strings=[format_cap_polygon(p, decimals) for p in polys],
        vertex_counts=[_points(p) for p in polys],
        area_km2=[float(areas[i]) for i in order],
        simplified=simplified,
        dropped_small_parts=dropped,
    )


def _assert_cap_ready(p: Polygon, max_vertices: int, decimals: int) -> None:
    coords = np.asarray(p.exterior.coords)
    problems = [
        (not isinstance(p, Polygon) or bool(p.interiors), "a CAP polygon has no holes"),
        (not p.is_valid or p.area <= 0, f"invalid polygon: {shapely.is_valid_reason(p)}"),
        (not 4 <= len(coords) <= max_vertices, f"{len(coords)} points, budget {max_vertices}"),
        (not (coords[0] == coords[-1]).all(), "ring not closed"),
        (not p.exterior.is_ccw, "exterior ring not counter-clockwise"),
        (not (np.round(coords, decimals) == coords).all(), f"coordinates with more than {decimals} decimals"),
    ]
    for failed, problem in problems:
        if failed:
            raise AssertionError(f"level_polygon broke its guarantee: {problem}")
