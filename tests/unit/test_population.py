"""Residents per cell and unit: the synthetic surface, real rasters, and the exact split down to towns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.crs import CRS
from shapely.geometry import box, shape

from risk_zoning.errors import GridDataError
from risk_zoning.grid import CellCover, RegularGrid, cell_cover
from risk_zoning.population import (
    PopulationCore,
    PopulationSplit,
    apportion,
    population_from_raster,
    split_among_children,
    synthesize_population,
)

DISTRICTS = Path(__file__).resolve().parents[2] / "risk_zoning" / "regions" / "wuhai" / "districts.geojson"
OFFICIAL = {"150302": 341_000, "150303": 94_700, "150304": 122_400}  # end-2021
CORES = [
    PopulationCore(106.82, 39.67, 1.0, 3.0),
    PopulationCore(106.72, 39.50, 0.6, 2.5),
    PopulationCore(106.89, 39.44, 0.5, 2.5),
]


@pytest.fixture(scope="module")
def wuhai() -> tuple[RegularGrid, list[shapely.Geometry], list[int], CellCover]:
    """The Wuhai districts (GCJ-02 as published: a few hundred metres off WGS84, irrelevant here)."""
    doc = json.loads(DISTRICTS.read_text("utf-8"))
    geoms = [shape(f["geometry"]) for f in doc["features"]]
    totals = [OFFICIAL[str(f["properties"]["adcode"])] for f in doc["features"]]
    grid = RegularGrid.covering(shapely.union_all(geoms).bounds, 1 / 120)
    return grid, geoms, totals, cell_cover(grid, geoms)


def halves(geoms: list[shapely.Geometry]) -> tuple[list[shapely.Geometry], np.ndarray]:
    """Two children per parent: the parts north and south of its centroid's latitude."""
    children, parent = [], []
    for i, g in enumerate(geoms):
        minx, miny, maxx, maxy = g.bounds
        mid = g.centroid.y
        children += [g.intersection(box(minx, miny, maxx, mid)), g.intersection(box(minx, mid, maxx, maxy))]
        parent += [i, i]
    return children, np.asarray(parent)


# --- synthetic surface -------------------------------------------------------------------------------------


def test_wuhai_grid_is_66_by_108_cells_of_30_arc_seconds(wuhai) -> None:
    grid, *_ = wuhai
    assert grid.shape == (108, 66)


def test_synthetic_split_gives_each_wuhai_district_exactly_its_official_total(wuhai) -> None:
    grid, _, totals, cover = wuhai
    river = shapely.LineString([(106.75, 39.2), (106.75, 39.5), (106.77, 39.6), (106.75, 39.86)])
    split = synthesize_population(grid, cover, totals, CORES, corridor=river, seed=20211231)
    assert split.per_unit(3).tolist() == totals
    assert split.to_grid(grid).sum() == 558_100
    assert split.people.dtype == np.int64 and split.unit.dtype == np.int32 and split.cell.dtype == np.int64


def test_town_split_adds_up_exactly_to_each_district_and_in_every_cell(wuhai) -> None:
    grid, geoms, totals, cover = wuhai
    districts = synthesize_population(grid, cover, totals, CORES, seed=1)
    children, child_parent = halves(geoms)
    towns = split_among_children(districts, cell_cover(grid, children), child_parent, grid=grid)
    per_town = towns.per_unit(len(children))
    assert [int(per_town[child_parent == d].sum()) for d in range(3)] == totals
    np.testing.assert_array_equal(towns.to_grid(grid), districts.to_grid(grid))


def test_synthetic_split_is_deterministic_for_a_seed_and_changes_with_it(wuhai) -> None:
    grid, _, totals, cover = wuhai
    a = synthesize_population(grid, cover, totals, CORES, seed=7)
    b = synthesize_population(grid, cover, totals, CORES, seed=7)
    c = synthesize_population(grid, cover, totals, CORES, seed=8)
    np.testing.assert_array_equal(a.people, b.people)
    assert not np.array_equal(a.people, c.people)


def test_synthetic_density_is_highest_near_the_urban_cores(wuhai) -> None:
    grid, _, totals, cover = wuhai
    people = synthesize_population(grid, cover, totals, CORES, seed=0).to_grid(grid)
    density = people / grid.cell_area_km2()
    for core in CORES:
        j, i = divmod(int(grid.flat_index(core.lon, core.lat)), grid.nx)
        near = density[j - 1 : j + 2, i - 1 : i + 2].mean()
        assert near > 20 * np.median(density[people > 0])


def test_rural_share_one_spreads_people_by_area_alone() -> None:
    grid = RegularGrid(lon_min=0.0, lat_min=0.0, step=1.0, nx=4, ny=1)
    cover = CellCover(np.arange(4), np.zeros(4, np.int32), np.array([1.0, 1.0, 0.5, 0.5]))
    split = synthesize_population(grid, cover, [600], [PopulationCore(0.5, 0.5, 1.0, 50.0)], rural_share=1.0)
    assert split.people.tolist() == [200, 200, 100, 100]


def test_a_unit_with_people_but_no_cells_is_an_error() -> None:
    grid = RegularGrid(lon_min=0.0, lat_min=0.0, step=1.0, nx=2, ny=1)
    cover = CellCover(np.arange(2), np.zeros(2, np.int32), np.ones(2))
    with pytest.raises(ValueError, match="unit 1 has 5 people but covers no grid cell"):
        synthesize_population(grid, cover, [10, 5], [PopulationCore(0.5, 0.5, 1.0, 1.0)])


# --- exact rounding, property-based -------------------------------------------------------------------------


@st.composite
def grouped_weights(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_groups = draw(st.integers(1, 5))
    sizes = draw(st.lists(st.integers(1, 12), min_size=n_groups, max_size=n_groups))
    weights = [draw(st.lists(st.floats(0.001, 1e4), min_size=s, max_size=s)) for s in sizes]
    targets = draw(st.lists(st.integers(0, 10**7), min_size=n_groups, max_size=n_groups))
    group = np.repeat(np.arange(n_groups), sizes)
    return np.concatenate(weights), group, np.asarray(targets)


@settings(max_examples=150, deadline=None)
@given(grouped_weights())
def test_apportion_hits_every_group_total_exactly_and_rounds_each_entry_by_less_than_one(case) -> None:
    weights, group, targets = case
    people = apportion(weights, group, targets)
    assert (
        np.bincount(group, weights=people, minlength=targets.size).astype(np.int64).tolist()
        == targets.tolist()
    )
    sums = np.bincount(group, weights=weights)
    ideal = weights * targets[group] / sums[group]
    assert (np.abs(people - ideal) < 1 + 1e-6).all()


@st.composite
def parent_and_children(draw: st.DrawFn) -> tuple[PopulationSplit, CellCover, np.ndarray]:
    n_cells, n_parents = draw(st.integers(1, 15)), draw(st.integers(1, 3))
    children_per_parent = draw(st.lists(st.integers(1, 4), min_size=n_parents, max_size=n_parents))
    child_parent = np.repeat(np.arange(n_parents), children_per_parent)
    p_cell, p_unit, p_people, c_cell, c_unit, c_frac = [], [], [], [], [], []
    for cell in range(n_cells):
        for p in range(n_parents):
            if not draw(st.booleans()):
                continue
            p_cell.append(cell)
            p_unit.append(p)
            p_people.append(draw(st.integers(0, 5000)))
            for child in np.flatnonzero(child_parent == p):
                if draw(st.booleans()):  # a cell may hold none of the parent's children: a sliver
                    c_cell.append(cell)
                    c_unit.append(int(child))
                    c_frac.append(draw(st.floats(1e-6, 1.0)))
    parent = PopulationSplit(
        np.array(p_cell, np.int64), np.array(p_unit, np.int32), np.array(p_people, np.int64)
    )
    cover = CellCover(np.array(c_cell, np.int64), np.array(c_unit, np.int32), np.array(c_frac))
    return parent, cover, child_parent


@settings(max_examples=150, deadline=None)
@given(parent_and_children(), st.booleans())
def test_children_add_up_exactly_to_their_parent_in_every_cell(case, with_grid: bool) -> None:
    parent, child_cover, child_parent = case
    grid = RegularGrid(lon_min=0.0, lat_min=0.0, step=0.1, nx=5, ny=3)
    children = split_among_children(parent, child_cover, child_parent, grid=grid if with_grid else None)
    n_parents = int(child_parent.max()) + 1
    by_parent_cell = np.zeros((n_parents, grid.size), np.int64)
    np.add.at(by_parent_cell, (parent.unit, parent.cell), parent.people)
    by_child_cell = np.zeros((n_parents, grid.size), np.int64)
    np.add.at(by_child_cell, (child_parent[children.unit], children.cell), children.people)
    np.testing.assert_array_equal(by_child_cell, by_parent_cell)


def test_a_sliver_goes_to_the_parents_child_nearest_to_the_cell() -> None:
    grid = RegularGrid(lon_min=0.0, lat_min=0.0, step=1.0, nx=5, ny=5)
    parent = PopulationSplit(
        np.array([12]), np.array([0]), np.array([9])
    )  # centre cell, nobody's child there
    cover = CellCover(np.array([0, 13, 24]), np.array([0, 1, 2]), np.ones(3))
    children = split_among_children(parent, cover, np.array([0, 0, 0]), grid=grid)
    parts = {
        (c, u): n
        for c, u, n in zip(
            children.cell.tolist(), children.unit.tolist(), children.people.tolist(), strict=True
        )
    }
    assert parts == {(0, 0): 0, (12, 1): 9, (13, 1): 0, (24, 2): 0}  # cell 13 is next door, 0 and 24 are not


def test_children_share_a_cell_in_proportion_to_their_area_fraction() -> None:
    parent = PopulationSplit(np.array([0]), np.array([0]), np.array([7]))
    cover = CellCover(np.array([0, 0]), np.array([0, 1]), np.array([0.5, 0.25]))
    children = split_among_children(parent, cover, np.array([0, 0]))
    assert children.people.tolist() == [5, 2]


# --- real rasters -------------------------------------------------------------------------------------------

SMALL = RegularGrid(lon_min=106.6, lat_min=39.4, step=1 / 120, nx=12, ny=12)
WEST_EAST = [box(106.6, 39.4, 106.65, 39.5), box(106.65, 39.4, 106.7, 39.5)]  # 6 and 6 columns


def write_geotiff(path: Path, data: np.ndarray, west: float, north: float, step: float, **profile) -> Path:
    meta = {
        "driver": "GTiff",
        "height": data.shape[0],
        "width": data.shape[1],
        "count": 1,
        "dtype": "float32",
        "crs": CRS.from_epsg(4326),
        "transform": Affine(step, 0, west, 0, -step, north),
        **profile,
    }
    with rasterio.open(path, "w", **meta) as ds:
        ds.write(data.astype(np.float32), 1)
    return path


def test_geotiff_finer_than_the_grid_is_summed_into_cells(tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "fine.tif", np.full((24, 24), 2.5), 106.6, 39.5, 1 / 240)
    split = population_from_raster(tif, SMALL, cell_cover(SMALL, WEST_EAST))
    np.testing.assert_allclose(split.to_grid(SMALL), 10.0)
    assert split.per_unit(2).tolist() == [720, 720]


def test_geotiff_coarser_than_the_grid_is_split_by_area(tmp_path: Path) -> None:
    data = np.arange(1, 37, dtype=float).reshape(6, 6) * 400
    tif = write_geotiff(tmp_path / "coarse.tif", data, 106.6, 39.5, 1 / 60)
    split = population_from_raster(tif, SMALL, cell_cover(SMALL, WEST_EAST))
    people = split.to_grid(SMALL)
    assert people.sum() == data.sum()
    # the north-west source pixel (row 0 of the file) lands in the 2 x 2 north-west cells, 100 each
    np.testing.assert_allclose(people[-2:, :2], 100.0)


def test_netcdf_with_descending_latitudes_and_unsorted_longitudes_reads_like_the_geotiff(
    tmp_path: Path,
) -> None:
    data = np.random.default_rng(3).uniform(0, 50, (24, 24))
    tif = write_geotiff(tmp_path / "p.tif", data, 106.6, 39.5, 1 / 240)
    lon = 106.6 + (np.arange(24) + 0.5) / 240
    lat = 39.5 - (np.arange(24) + 0.5) / 240  # north to south, as the GeoTIFF rows
    shuffled = np.r_[np.arange(12, 24), np.arange(12)]  # lon stored as if rolled
    ds = xr.Dataset(
        {
            "population": (("lat", "lon"), data[:, shuffled].astype(np.float32)),
            "mask": (("lat", "lon"), np.ones((24, 24), np.int8)),
        },
        coords={"lat": lat, "lon": lon[shuffled]},
    )
    ds.to_netcdf(tmp_path / "p.nc", engine="netcdf4")
    cover = cell_cover(SMALL, WEST_EAST)
    from_tif = population_from_raster(tif, SMALL, cover)
    from_nc = population_from_raster(tmp_path / "p.nc", SMALL, cover, variable="population")
    np.testing.assert_array_equal(from_nc.people, from_tif.people)


def test_a_netcdf_band_picks_one_slice_of_a_time_dimension(tmp_path: Path) -> None:
    lon = 106.6 + (np.arange(12) + 0.5) / 120
    lat = 39.4 + (np.arange(12) + 0.5) / 120
    values = np.stack([np.full((12, 12), 1.0), np.full((12, 12), 3.0)])
    xr.Dataset({"p": (("time", "lat", "lon"), values)}, coords={"lat": lat, "lon": lon}).to_netcdf(
        tmp_path / "t.nc", engine="netcdf4"
    )
    split = population_from_raster(tmp_path / "t.nc", SMALL, cell_cover(SMALL, WEST_EAST), band=2)
    assert split.total == 3 * 144


def test_netcdf_longitudes_beyond_180_are_folded_to_minus_180_180(tmp_path: Path) -> None:
    grid = RegularGrid(lon_min=-1.0, lat_min=0.0, step=0.5, nx=4, ny=2)
    lon = np.array([0.25, 0.75, 359.25, 359.75])  # 0-360 convention around the meridian
    ds = xr.Dataset(
        {"p": (("lat", "lon"), np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]))},
        coords={"lat": [0.25, 0.75], "lon": lon},
    )
    ds.to_netcdf(tmp_path / "m.nc", engine="netcdf4")
    cover = cell_cover(grid, [box(-1, 0, 1, 1)])
    people = population_from_raster(tmp_path / "m.nc", grid, cover).to_grid(grid)
    np.testing.assert_array_equal(people, [[3, 4, 1, 2], [7, 8, 5, 6]])


@pytest.mark.parametrize("pixel_m", [100, 2000], ids=["finer", "coarser"])
def test_projected_geotiff_is_reprojected_keeping_its_density(tmp_path: Path, pixel_m: int) -> None:
    # UTM 48N pixels holding 100 people per km², covering the small grid and more
    width, height = 12_000 // pixel_m, 14_000 // pixel_m
    data = np.full((height, width), 100 * (pixel_m / 1000) ** 2)
    meta = {
        "driver": "GTiff",
        "height": height,
        "width": width,
        "count": 1,
        "dtype": "float32",
        "crs": CRS.from_epsg(32648),
        "transform": Affine(pixel_m, 0, 636_000, 0, -pixel_m, 4_375_000),
    }
    with rasterio.open(tmp_path / "utm.tif", "w", **meta) as ds:
        ds.write(data.astype(np.float32), 1)
    split = population_from_raster(tmp_path / "utm.tif", SMALL, cell_cover(SMALL, [box(*SMALL.bounds)]))
    assert split.total == pytest.approx(SMALL.cell_area_km2().sum() * 100, rel=0.02)
    density = split.to_grid(SMALL) / SMALL.cell_area_km2()
    assert np.median(density) == pytest.approx(100, rel=0.1)


def test_nodata_pixels_count_as_no_people(tmp_path: Path) -> None:
    data = np.full((12, 12), 5.0)
    data[:, :6] = -99999.0  # WorldPop's nodata value
    tif = write_geotiff(tmp_path / "nd.tif", data, 106.6, 39.5, 1 / 120, nodata=-99999.0)
    split = population_from_raster(tif, SMALL, cell_cover(SMALL, WEST_EAST))
    assert split.per_unit(2).tolist() == [0, 360]


def test_scale_to_gives_the_official_totals_exactly_with_the_rasters_pattern(tmp_path: Path) -> None:
    data = np.tile(np.arange(1, 13, dtype=float), (12, 1))
    tif = write_geotiff(tmp_path / "s.tif", data, 106.6, 39.5, 1 / 120)
    split = population_from_raster(tif, SMALL, cell_cover(SMALL, WEST_EAST), scale_to=[1001, 2003])
    assert split.per_unit(2).tolist() == [1001, 2003]
    row = split.to_grid(SMALL)[5]
    assert (np.diff(row[:6]) >= 0).all()


def test_scaling_a_unit_the_raster_leaves_empty_is_an_error(tmp_path: Path) -> None:
    data = np.zeros((12, 12))
    data[:, 6:] = 1.0
    tif = write_geotiff(tmp_path / "z.tif", data, 106.6, 39.5, 1 / 120)
    with pytest.raises(GridDataError, match="no people in unit 0"):
        population_from_raster(tif, SMALL, cell_cover(SMALL, WEST_EAST), scale_to=[10, 10])


def test_a_negative_count_is_an_error_naming_the_file(tmp_path: Path) -> None:
    data = np.ones((12, 12))
    data[3, 4] = -2.0
    tif = write_geotiff(tmp_path / "neg.tif", data, 106.6, 39.5, 1 / 120)
    with pytest.raises(GridDataError) as err:
        population_from_raster(tif, SMALL, cell_cover(SMALL, WEST_EAST))
    assert str(err.value) == f"{tif}: negative population count (-2) in 1 pixel(s)"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.tif", None, "file not found"),
        ("garbage.tif", b"not a raster at all", "cannot read raster"),
        ("garbage.nc", b"not netcdf either", "cannot read NetCDF"),
    ],
)
def test_a_missing_or_unreadable_file_is_a_one_line_grid_data_error(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(GridDataError) as err:
        population_from_raster(path, SMALL, cell_cover(SMALL, WEST_EAST))
    assert str(err.value).startswith(f"{path}: {message}")
    assert "\n" not in str(err.value)


def test_a_raster_without_crs_is_an_error(tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "nocrs.tif", np.ones((12, 12)), 106.6, 39.5, 1 / 120, crs=None)
    with pytest.raises(GridDataError, match="no CRS"):
        population_from_raster(tif, SMALL, cell_cover(SMALL, WEST_EAST))


def test_a_raster_elsewhere_is_an_error(tmp_path: Path) -> None:
    tif = write_geotiff(tmp_path / "far.tif", np.ones((12, 12)), 10.0, 50.0, 1 / 120)
    with pytest.raises(GridDataError, match="does not cover"):
        population_from_raster(tif, SMALL, cell_cover(SMALL, WEST_EAST))


def test_a_netcdf_with_several_variables_needs_the_variable_named(tmp_path: Path) -> None:
    ds = xr.Dataset(
        {"a": (("lat", "lon"), np.ones((2, 2))), "b": (("lat", "lon"), np.ones((2, 2)))},
        coords={"lat": [39.45, 39.46], "lon": [106.61, 106.62]},
    )
    ds.to_netcdf(tmp_path / "two.nc", engine="netcdf4")
    with pytest.raises(GridDataError, match="name the variable to read"):
        population_from_raster(tmp_path / "two.nc", SMALL, cell_cover(SMALL, WEST_EAST))
