"""Warning polygons from level masks: valid CAP 1.2 polygons by construction, whatever the mask."""

from __future__ import annotations

import re

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from scipy.ndimage import gaussian_filter
from shapely.geometry import Polygon

from risk_zoning.grid import RegularGrid
from risk_zoning.region import load_region
from warnings_svc.forecast.polygons import PolygonResult, format_cap_polygon, level_polygon, parse_cap_polygon

STEPS = (0.01, 0.05, 1 / 120)  # 1/120 degree = 30 arc-seconds: coordinates that need rounding
_DECIMALS = re.compile(r"^-?\d+(\.\d+)?$")

masks = hnp.arrays(
    dtype=bool,
    shape=st.tuples(st.integers(1, 14), st.integers(1, 14)),
    elements=st.booleans(),
)


def grid_for(mask: np.ndarray, step: float = 0.01) -> RegularGrid:
    return RegularGrid(lon_min=106.6, lat_min=39.0, step=step, nx=mask.shape[1], ny=mask.shape[0])


def cells_union(mask: np.ndarray, grid: RegularGrid) -> shapely.Geometry:
    boxes = grid.cell_boxes()[np.asarray(mask, dtype=bool).ravel()]
    return shapely.union_all(boxes)


def assert_cap_ready(result: PolygonResult, max_vertices: int, decimals: int = 6) -> None:
    assert (
        len(result.polygons) == len(result.cap_strings) == len(result.vertex_counts) == len(result.area_km2)
    )
    for poly, cap, n in zip(result.polygons, result.cap_strings, result.vertex_counts, strict=True):
        coords = np.asarray(poly.exterior.coords)
        assert isinstance(poly, Polygon) and not poly.interiors
        assert shapely.is_valid(poly), shapely.is_valid_reason(poly)
        assert poly.area > 0
        assert (coords[0] == coords[-1]).all()
        assert 4 <= len(coords) == n <= max_vertices
        assert poly.exterior.is_ccw
        assert (np.round(coords, decimals) == coords).all()
        pairs = cap.split(" ")
        assert len(pairs) == n and pairs[0] == pairs[-1]
        for pair in pairs:
            lat, lon = pair.split(",")
            for number in (lat, lon):
                assert _DECIMALS.match(number) and len(number.partition(".")[2]) <= decimals
        assert parse_cap_polygon(cap).equals_exact(poly, tolerance=0)
    arr = np.asarray(result.polygons, dtype=object)
    if arr.size > 1:
        left, right = shapely.STRtree(arr).query(arr, predicate="intersects")
        pairs = left < right
        assert not shapely.relate_pattern(arr[left[pairs]], arr[right[pairs]], "T********").any()
    assert all(a >= b - 1e-9 for a, b in zip(result.area_km2, result.area_km2[1:], strict=False))


@settings(max_examples=150, deadline=None)
@given(
    mask=masks,
    step=st.sampled_from(STEPS),
    max_vertices=st.integers(5, 40),
    decimals=st.integers(3, 6),
)
def test_every_polygon_of_any_mask_is_a_valid_closed_hole_free_ccw_ring_within_the_budget(
    mask: np.ndarray, step: float, max_vertices: int, decimals: int
) -> None:
    grid = grid_for(mask, step)
    result = level_polygon(mask, grid, max_vertices=max_vertices, min_area_km2=0.0, decimals=decimals)
    assert_cap_ready(result, max_vertices, decimals)
    assert result.is_empty == (not mask.any())


@settings(max_examples=100, deadline=None)
@given(mask=masks)
def test_without_simplification_the_polygons_are_exactly_the_mask_with_holes_filled(mask: np.ndarray) -> None:
    grid = grid_for(mask)
    result = level_polygon(mask, grid, max_vertices=10_000, min_area_km2=0.0)
    filled = ndimage.binary_fill_holes(mask)
    _, pieces = ndimage.label(filled)
    assert not result.simplified
    assert len(result.polygons) == pieces
    if pieces:
        expected = cells_union(filled, grid)
        got = shapely.union_all(result.polygons)
        assert shapely.symmetric_difference(expected, got).area < 1e-12


@settings(max_examples=60, deadline=None)
@given(mask=masks, max_vertices=st.integers(5, 12))
def test_the_cap_string_parses_back_to_the_same_polygon(mask: np.ndarray, max_vertices: int) -> None:
    result = level_polygon(mask, grid_for(mask, 1 / 120), max_vertices=max_vertices, min_area_km2=0.0)
    for poly, cap in zip(result.polygons, result.cap_strings, strict=True):
        assert parse_cap_polygon(cap).equals_exact(poly, tolerance=0)
        assert format_cap_polygon(parse_cap_polygon(cap)) == cap


def test_an_empty_mask_gives_an_empty_result() -> None:
    mask = np.zeros((5, 7), dtype=bool)
    result = level_polygon(mask, grid_for(mask))
    assert result == PolygonResult()
    assert result.is_empty and result.total_area_km2 == 0


def test_a_single_cell_is_a_five_point_ring_on_the_cell_corners_latitude_first() -> None:
    mask = np.zeros((3, 4), dtype=bool)
    mask[1, 2] = True  # second row from the south, third column
    result = level_polygon(mask, grid_for(mask, 0.05), min_area_km2=0.0)
    assert result.vertex_counts == [5]
    assert shapely.equals(result.polygons[0], shapely.box(106.7, 39.05, 106.75, 39.1))
    assert result.cap_strings == ["39.05,106.7 39.05,106.75 39.1,106.75 39.1,106.7 39.05,106.7"]
    assert not result.simplified
    assert result.area_km2[0] == pytest.approx(
        0.05 * 0.05 * 111.195**2 * np.cos(np.radians(39.075)), rel=1e-3
    )


def test_separate_blobs_become_separate_polygons_largest_first() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[1:3, 1:3] = True  # 4 cells
    mask[5:9, 6:11] = True  # 20 cells
    mask[0, 11] = True  # 1 cell in a corner
    result = level_polygon(mask, grid_for(mask, 0.05), min_area_km2=0.0)
    assert len(result.polygons) == 3
    assert [round(a / result.area_km2[-1]) for a in result.area_km2] == [20, 4, 1]
    assert_cap_ready(result, 100)


def test_cells_touching_only_at_a_corner_are_separate_polygons() -> None:
    mask = np.array([[True, False], [False, True]])
    result = level_polygon(mask, grid_for(mask), min_area_km2=0.0)
    assert result.vertex_counts == [5, 5]
    assert shapely.touches(*result.polygons)


def test_a_ring_of_cells_gives_one_polygon_without_its_hole() -> None:
    mask = np.ones((5, 5), dtype=bool)
    mask[2, 2] = False
    result = level_polygon(mask, grid_for(mask), min_area_km2=0.0)
    assert result.vertex_counts == [5]
    assert shapely.equals(result.polygons[0], shapely.box(106.6, 39.0, 106.65, 39.05))


def test_a_mask_covering_the_whole_grid_gives_the_grid_outline() -> None:
    mask = np.ones((6, 9), dtype=bool)
    grid = grid_for(mask, 1 / 120)
    result = level_polygon(mask, grid, min_area_km2=0.0)
    minx, miny, maxx, maxy = grid.bounds
    assert len(result.polygons) == 1
    assert shapely.hausdorff_distance(result.polygons[0], shapely.box(minx, miny, maxx, maxy)) < 1e-6
    assert_cap_ready(result, 100)


def test_a_mask_touching_each_grid_edge_works() -> None:
    mask = np.zeros((8, 8), dtype=bool)
    mask[0, 2:5] = mask[7, 3:6] = mask[3:5, 0] = mask[1:7, 7] = True
    result = level_polygon(mask, grid_for(mask), min_area_km2=0.0)
    assert len(result.polygons) == 4
    assert_cap_ready(result, 100)


def test_pieces_smaller_than_the_minimum_area_are_dropped_and_counted() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[0, 0] = True  # about 0.86 km² at 0.01 degrees
    mask[4:8, 4:8] = True  # about 13.8 km²
    result = level_polygon(mask, grid_for(mask), min_area_km2=1.0)
    assert len(result.polygons) == 1 and result.dropped_small_parts == 1
    assert result.area_km2[0] == pytest.approx(
        16 * 0.01**2 * 111.195**2 * np.cos(np.radians(39.06)), rel=1e-3
    )


def test_a_complex_area_is_simplified_within_a_tight_budget() -> None:
    rng = np.random.default_rng(3)
    field = gaussian_filter(rng.standard_normal((120, 120)), 4)
    mask = field > 0
    result = level_polygon(mask, grid_for(mask), max_vertices=12, min_area_km2=2.0)
    assert result.simplified and result.polygons
    assert_cap_ready(result, 12)


def test_a_buffer_grows_the_area_and_merges_nearby_pieces() -> None:
    mask = np.zeros((5, 9), dtype=bool)
    mask[2, 2] = mask[2, 4] = True  # two cells one cell apart (about 0.86 km)
    plain = level_polygon(mask, grid_for(mask), min_area_km2=0.0)
    grown = level_polygon(mask, grid_for(mask), min_area_km2=0.0, buffer_km=0.6)
    assert len(plain.polygons) == 2 and len(grown.polygons) == 1
    assert grown.total_area_km2 > plain.total_area_km2
    assert_cap_ready(grown, 100)


@pytest.fixture(scope="module")
def wuhai() -> tuple[RegularGrid, shapely.Geometry]:
    region = load_region("wuhai")
    return region.grid, region.city.geometry


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), threshold=st.floats(-1.0, 1.5), max_vertices=st.integers(5, 60))
def test_clipping_to_the_region_keeps_every_polygon_valid_and_inside_the_budget(
    wuhai: tuple[RegularGrid, shapely.Geometry], seed: int, threshold: float, max_vertices: int
) -> None:
    grid, city = wuhai
    field = gaussian_filter(np.random.default_rng(seed).standard_normal(grid.shape), 5)
    mask = field > threshold * field.std()
    result = level_polygon(mask, grid, clip=city, max_vertices=max_vertices, min_area_km2=0.5)
    assert_cap_ready(result, max_vertices)
    if result.polygons and not result.simplified:  # outside the city only by rounding (1e-6 degree)
        union = shapely.union_all(result.polygons)
        assert union.difference(city).area <= union.length * 1e-6


def test_clipping_to_a_region_the_area_misses_gives_nothing(
    wuhai: tuple[RegularGrid, shapely.Geometry],
) -> None:
    grid, city = wuhai
    mask = np.zeros(grid.shape, dtype=bool)
    mask[:3, :3] = True  # the south-west corner of the grid, outside the city
    assert level_polygon(mask, grid, clip=city, min_area_km2=0.0).is_empty


def test_a_large_smooth_mask_is_cut_into_valid_polygons() -> None:
    rng = np.random.default_rng(0)
    field = gaussian_filter(rng.standard_normal((1000, 1000)), 20)
    mask = field > field.std()
    grid = RegularGrid(lon_min=100.0, lat_min=30.0, step=0.01, nx=1000, ny=1000)
    result = level_polygon(mask, grid)
    assert len(result.polygons) > 10
    assert_cap_ready(result, 100)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_vertices": 4}, "max_vertices"),
        ({"min_area_km2": -1.0}, "min_area_km2"),
        ({"decimals": 16}, "decimals"),
        ({"buffer_km": float("nan")}, "buffer_km"),
    ],
)
def test_impossible_options_are_rejected_naming_the_option(kwargs: dict, message: str) -> None:
    mask = np.ones((2, 2), dtype=bool)
    with pytest.raises(ValueError, match=message):
        level_polygon(mask, grid_for(mask), **kwargs)


def test_a_mask_of_the_wrong_shape_is_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        level_polygon(np.ones((3, 2), dtype=bool), grid_for(np.ones((2, 3))))
