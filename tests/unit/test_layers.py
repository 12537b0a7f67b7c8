"""The region's features and the exposure, vulnerability, sensitivity and hazard layers built from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import shape

from risk_zoning import HAZARDS
from risk_zoning.errors import GridDataError, RegionDataError
from risk_zoning.features import ROLES, distance_km, load_features
from risk_zoning.grid import RegularGrid, cell_cover
from risk_zoning.layers import (
    DEMO_CLIMATOLOGY_NAMES,
    DEMO_LAYER_NAMES,
    Layer,
    demo_climatology,
    demo_layers,
    layer_from_raster,
)
from risk_zoning.population import PopulationCore, synthesize_population

WUHAI = Path(__file__).resolve().parents[2] / "risk_zoning" / "regions" / "wuhai"
FEATURES = WUHAI / "features.geojson"
DISTRICTS = WUHAI / "districts.geojson"

EXPECTED_LAYERS = {
    "population_density": ("exposure", "km-2", HAZARDS),
    "elderly_share": ("vulnerability", "1", ("heat",)),
    "outdoor_workers": ("exposure", "count", ("heat", "sandstorm")),
    "cropland_fraction": ("exposure", "1", ("frost",)),
    "road_exposure": ("exposure", "1", ("sandstorm",)),
    "gully_density": ("sensitivity", "1", ("rainstorm",)),
    "low_lying_urban": ("sensitivity", "1", ("rainstorm",)),
    "mining_fraction": ("exposure", "1", ("rainstorm",)),
    "desert_proximity": ("sensitivity", "1", ("sandstorm",)),
}
EXPECTED_CLIMATOLOGY = {
    "heat_days_ge35": ("heat", "days/year"),
    "heat_processes": ("heat", "count/year"),
    "heat_intensity": ("heat", "degC"),
    "rain_max_6h": ("rainstorm", "mm"),
    "rain_max_24h": ("rainstorm", "mm"),
    "rain_days_ge50": ("rainstorm", "days/year"),
    "frost_days_growing": ("frost", "days/year"),
    "sand_days_vis_lt1000": ("sandstorm", "days/year"),
}


class Wuhai:
    """The grid, district geometries, region mask and a synthetic population for Wuhai."""

    def __init__(self) -> None:
        doc = json.loads(DISTRICTS.read_text("utf-8"))
        self.districts = {str(f["properties"]["adcode"]): shape(f["geometry"]) for f in doc["features"]}
        geoms = list(self.districts.values())
        self.grid = RegularGrid.covering(shapely.union_all(geoms).bounds, 1 / 120)
        cover = cell_cover(self.grid, geoms)
        inside = np.zeros(self.grid.size, dtype=bool)
        inside[cover.cell] = True
        self.inside = inside.reshape(self.grid.shape)
        self.features = load_features(FEATURES)
        cores = [
            PopulationCore(f.geometry.x, f.geometry.y, f.properties["population_weight"], 3.0)
            for f in self.features.by_role("urban_core")
        ]
        totals = {"150302": 341_000, "150303": 94_700, "150304": 122_400}
        split = synthesize_population(
            self.grid,
            cover,
            [totals[c] for c in self.districts],
            cores,
            corridor=self.features.union("river"),
            seed=20211231,
        )
        self.population = split.to_grid(self.grid)


@pytest.fixture(scope="module")
def wuhai() -> Wuhai:
    return Wuhai()


@pytest.fixture(scope="module")
def layers(wuhai: Wuhai) -> dict[str, Layer]:
    return demo_layers(wuhai.grid, wuhai.population, wuhai.features, elderly_share_mean=0.121, seed=5)


@pytest.fixture(scope="module")
def climatology(wuhai: Wuhai) -> dict[str, Layer]:
    return demo_climatology(wuhai.grid, wuhai.features, seed=5)


# --- features ---------------------------------------------------------------------------------------------


def test_the_wuhai_feature_file_has_every_role_and_marks_everything_approximate(wuhai: Wuhai) -> None:
    fs = wuhai.features
    assert {f.role for f in fs.features} == set(ROLES)
    assert all(f.approximate and f.properties["source"] and f.name and f.name_en for f in fs.features)
    assert [f.name_en for f in fs.by_role("urban_core")] == [
        "Haibowan urban core",
        "Wuda urban core",
        "Hainan urban core",
    ]
    assert {f.properties["ref"] for f in fs.by_role("road") if "ref" in f.properties} == {"G6", "G18", "G110"}


def test_every_feature_lies_in_the_wuhai_bounding_box() -> None:
    minx, miny, maxx, maxy = shapely.union_all([f.geometry for f in load_features(FEATURES).features]).bounds
    assert minx >= 106.55 and maxx <= 107.2 and miny >= 39.0 and maxy <= 39.95


def test_the_river_flows_south_to_north_along_the_wuda_haibowan_boundary(wuhai: Wuhai) -> None:
    (river,) = wuhai.features.by_role("river")
    coords = np.asarray(river.geometry.coords)
    assert coords[0, 1] < coords[-1, 1]
    shared = wuhai.districts["150304"].boundary.intersection(wuhai.districts["150302"].boundary.buffer(1e-4))
    # the district file is GCJ-02 and the river WGS84: allow their few hundred metres plus 1 km of drawing
    gap_km = (
        shapely.hausdorff_distance(shared, river.geometry.intersection(shared.envelope.buffer(0.005))) * 100
    )
    assert gap_km < 1.5


def test_urban_cores_lie_in_their_districts(wuhai: Wuhai) -> None:
    cores = {f.name_en: f.geometry for f in wuhai.features.by_role("urban_core")}
    assert wuhai.districts["150302"].contains(cores["Haibowan urban core"])
    assert wuhai.districts["150304"].contains(cores["Wuda urban core"])
    assert wuhai.districts["150303"].contains(cores["Hainan urban core"])


def feature(role: str = "road", geometry: dict | None = None, **props) -> dict:
    base = {"role": role, "name": "x", "name_en": "x", "source": "test", "approximate": True}
    return {
        "type": "Feature",
        "properties": {**base, **props},
        "geometry": geometry or {"type": "LineString", "coordinates": [[106.7, 39.5], [106.8, 39.6]]},
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid GeoJSON"),
        (json.dumps({"type": "Feature"}), "expected a GeoJSON FeatureCollection"),
        (
            json.dumps({"type": "FeatureCollection", "features": [feature(role="volcano")]}),
            "unknown role 'volcano'",
        ),
        (
            json.dumps({"type": "FeatureCollection", "features": [feature(approximate="yes")]}),
            "'approximate' must be true or false",
        ),
        (
            json.dumps(
                {
                    "type": "FeatureCollection",
                    "features": [
                        feature(geometry={"type": "LineString", "coordinates": [[500000, 4370000], [1, 2]]})
                    ],
                }
            ),
            "not longitude/latitude degrees",
        ),
        (
            json.dumps(
                {
                    "type": "FeatureCollection",
                    "features": [
                        feature(
                            role="mining",
                            geometry={
                                "type": "Polygon",
                                "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]],
                            },
                        )
                    ],
                }
            ),
            "invalid geometry (Self-intersection",
        ),
        (json.dumps({"type": "FeatureCollection", "features": [feature(role="mining")]}), "a mining must be"),
        (
            json.dumps(
                {
                    "type": "FeatureCollection",
                    "features": [
                        feature(role="urban_core", geometry={"type": "Point", "coordinates": [106.8, 39.6]})
                    ],
                }
            ),
            "needs a positive number 'population_weight'",
        ),
        (
            json.dumps({"type": "FeatureCollection", "features": [feature(geometry={"type": "Blob"})]}),
            "bad geometry",
        ),
    ],
)
def test_a_bad_feature_file_is_a_one_line_region_data_error(
    tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "features.geojson"
    path.write_text(content, "utf-8")
    with pytest.raises(RegionDataError) as err:
        load_features(path)
    assert str(err.value).startswith(f"{path}: ")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_missing_feature_file_is_a_region_data_error(tmp_path: Path) -> None:
    with pytest.raises(RegionDataError, match="file not found"):
        load_features(tmp_path / "nowhere.geojson")


def test_asking_for_an_unknown_role_is_an_error(wuhai: Wuhai) -> None:
    with pytest.raises(RegionDataError, match="unknown feature role 'lake'"):
        wuhai.features.by_role("lake")


def test_distance_is_in_kilometres_in_both_directions() -> None:
    grid = RegularGrid(lon_min=106.0, lat_min=39.5, step=0.01, nx=3, ny=3)
    d = distance_km(grid, shapely.Point(grid.lon[1], grid.lat[1]))
    assert d[1, 1] == 0
    assert d[1, 2] == pytest.approx(0.01 * 111.195 * np.cos(np.radians(39.515)), rel=1e-3)  # east
    assert d[2, 1] == pytest.approx(0.01 * 111.195, rel=1e-3)  # north


# --- demo layers ------------------------------------------------------------------------------------------


def test_demo_layers_are_exactly_the_names_the_region_config_uses(layers: dict[str, Layer]) -> None:
    assert set(layers) == set(EXPECTED_LAYERS) == set(DEMO_LAYER_NAMES)


@pytest.mark.parametrize("name", list(EXPECTED_LAYERS))
def test_each_demo_layer_has_its_kind_units_and_hazards_and_finite_values_in_the_region(
    name: str, layers: dict[str, Layer], wuhai: Wuhai
) -> None:
    layer = layers[name]
    kind, units, hazards = EXPECTED_LAYERS[name]
    assert (layer.name, layer.kind, layer.units, layer.hazards) == (name, kind, units, tuple(hazards))
    assert layer.data.shape == wuhai.grid.shape and layer.data.dtype == np.float32
    values = layer.data[wuhai.inside]
    assert np.isfinite(values).all() and (values >= 0).all() and values.max() > 0
    if units == "1":
        assert values.max() <= 1
    assert {"source", "method", "synthetic"} <= set(layer.provenance)


@pytest.mark.parametrize("name", list(EXPECTED_LAYERS))
def test_each_demo_layer_is_deterministic_for_a_seed(
    name: str, layers: dict[str, Layer], wuhai: Wuhai
) -> None:
    again = demo_layers(wuhai.grid, wuhai.population, wuhai.features, elderly_share_mean=0.121, seed=5)
    np.testing.assert_array_equal(again[name].data, layers[name].data)


def test_synthetic_layers_say_so_and_change_with_the_seed(layers: dict[str, Layer], wuhai: Wuhai) -> None:
    other = demo_layers(wuhai.grid, wuhai.population, wuhai.features, elderly_share_mean=0.121, seed=6)
    assert layers["elderly_share"].provenance["synthetic"] is True
    assert layers["outdoor_workers"].provenance["synthetic"] is True
    assert not np.array_equal(other["elderly_share"].data, layers["elderly_share"].data)


def test_population_density_times_cell_area_gives_back_the_population(layers, wuhai: Wuhai) -> None:
    people = layers["population_density"].data.astype(np.float64) * wuhai.grid.cell_area_km2()
    assert people.sum() == pytest.approx(558_100, rel=1e-5)


def test_elderly_share_averages_to_the_city_mean_and_is_higher_in_the_old_cores(layers, wuhai: Wuhai) -> None:
    share = layers["elderly_share"].data.astype(np.float64)
    pop = wuhai.population
    assert (share * pop).sum() / pop.sum() == pytest.approx(0.121, abs=1e-4)
    core = int(wuhai.grid.flat_index(106.82, 39.67))
    assert share.ravel()[core] > 0.121


def test_road_exposure_is_highest_on_the_expressway(layers, wuhai: Wuhai) -> None:
    g6 = next(f for f in wuhai.features.by_role("road") if f.properties.get("ref") == "G6")
    on_road = int(wuhai.grid.flat_index(*g6.geometry.interpolate(0.5, normalized=True).coords[0]))
    assert layers["road_exposure"].data.ravel()[on_road] > 0.8


def test_mining_fraction_is_the_share_of_cells_in_mining_polygons(layers, wuhai: Wuhai) -> None:
    area = layers["mining_fraction"].data.astype(np.float64) * wuhai.grid.cell_area_km2()
    mines = wuhai.features.union("mining")
    km2_per_deg2 = 111.195**2 * np.cos(np.radians(mines.centroid.y))
    assert area.sum() == pytest.approx(mines.area * km2_per_deg2, rel=0.02)


# --- demo climatology -------------------------------------------------------------------------------------


def test_demo_climatology_is_exactly_the_hazard_indicators_the_region_config_uses(climatology) -> None:
    assert set(climatology) == set(EXPECTED_CLIMATOLOGY) == set(DEMO_CLIMATOLOGY_NAMES)


@pytest.mark.parametrize("name", list(EXPECTED_CLIMATOLOGY))
def test_each_hazard_layer_is_synthetic_with_its_units_finite_in_the_region_and_deterministic(
    name: str, climatology: dict[str, Layer], wuhai: Wuhai
) -> None:
    layer = climatology[name]
    hazard, units = EXPECTED_CLIMATOLOGY[name]
    assert (layer.kind, layer.hazards, layer.units) == ("hazard", (hazard,), units)
    assert layer.provenance["synthetic"] is True
    assert np.isfinite(layer.data[wuhai.inside]).all()
    again = demo_climatology(wuhai.grid, wuhai.features, seed=5)[name]
    np.testing.assert_array_equal(again.data, layer.data)


def test_hazard_magnitudes_are_plausible_for_an_arid_river_valley(climatology, wuhai: Wuhai) -> None:
    def inside(name: str) -> np.ndarray:
        return climatology[name].data[wuhai.inside].astype(np.float64)

    assert 5 < inside("heat_days_ge35").max() < 25
    assert inside("heat_intensity").max() < 6.2  # the record is 41.1 °C
    assert 10 < inside("rain_max_6h").mean() < 30 and (inside("rain_max_24h") > inside("rain_max_6h")).all()
    assert inside("rain_days_ge50").max() < 0.5
    assert 20 < inside("frost_days_growing").mean() < 80
    assert inside("sand_days_vis_lt1000").max() < 52  # blowing sand or worse on 41-52 days


def test_heat_is_highest_in_the_valley_and_frost_on_the_ranges(climatology, wuhai: Wuhai) -> None:
    mountains = distance_km(wuhai.grid, wuhai.features.union("mountain")) == 0
    river = distance_km(wuhai.grid, wuhai.features.union("river")) < 2
    heat, frost = climatology["heat_days_ge35"].data, climatology["frost_days_growing"].data
    assert heat[river & wuhai.inside].mean() > 3 * heat[mountains & wuhai.inside].mean()
    assert frost[mountains & wuhai.inside].mean() > frost[river & wuhai.inside].mean() + 10


def test_sand_days_are_highest_towards_the_desert_in_the_north_west(climatology, wuhai: Wuhai) -> None:
    sand = climatology["sand_days_vis_lt1000"].data
    lon, lat = np.meshgrid(wuhai.grid.lon, wuhai.grid.lat)
    north_west = wuhai.inside & (lon < 106.78) & (lat > 39.5)
    south_east = wuhai.inside & (lon > 106.9) & (lat < 39.4)
    assert sand[north_west].mean() > 1.5 * sand[south_east].mean()


# --- real layers from files -------------------------------------------------------------------------------

SMALL = RegularGrid(lon_min=106.6, lat_min=39.4, step=1 / 120, nx=12, ny=12)


def test_a_geotiff_layer_is_averaged_onto_the_grid(tmp_path: Path) -> None:
    data = np.tile(np.repeat([10.0, 30.0], 12), (24, 1)).astype(np.float32)  # west half 10, east half 30
    meta = {
        "driver": "GTiff",
        "height": 24,
        "width": 24,
        "count": 1,
        "dtype": "float32",
        "crs": CRS.from_epsg(4326),
        "transform": Affine(1 / 240, 0, 106.6, 0, -1 / 240, 39.5),
    }
    with rasterio.open(tmp_path / "l.tif", "w", **meta) as ds:
        ds.write(data, 1)
    layer = layer_from_raster(
        tmp_path / "l.tif", SMALL, name="heat_days_ge35", kind="hazard", hazards=("heat",), units="days/year"
    )
    np.testing.assert_allclose(layer.data[:, :6], 10.0)
    np.testing.assert_allclose(layer.data[:, 6:], 30.0)
    assert layer.provenance["source"] == str(tmp_path / "l.tif") and layer.provenance["synthetic"] is False


def test_a_netcdf_layer_with_descending_latitudes_lands_north_up_on_the_grid(tmp_path: Path) -> None:
    lat = 39.5 - (np.arange(12) + 0.5) / 120  # north to south
    lon = 106.6 + (np.arange(12) + 0.5) / 120
    values = np.repeat(lat[:, None], 12, axis=1)  # each cell holds its own latitude
    xr.Dataset(
        {"frost_days_growing": (("lat", "lon"), values, {"units": "days/year"})},
        coords={"lat": lat, "lon": lon},
    ).to_netcdf(tmp_path / "f.nc", engine="netcdf4")
    layer = layer_from_raster(
        tmp_path / "f.nc",
        SMALL,
        name="frost_days_growing",
        kind="hazard",
        hazards=("frost",),
        units="days/year",
        variable="frost_days_growing",
    )
    np.testing.assert_allclose(layer.data[:, 0], SMALL.lat, rtol=1e-6)


def test_a_count_layer_can_be_summed_conserving_its_total(tmp_path: Path) -> None:
    lat = 39.4 + (np.arange(24) + 0.5) / 240
    lon = 106.6 + (np.arange(24) + 0.5) / 240
    xr.Dataset(
        {"workers": (("lat", "lon"), np.full((24, 24), 3.0))}, coords={"lat": lat, "lon": lon}
    ).to_netcdf(tmp_path / "w.nc", engine="netcdf4")
    layer = layer_from_raster(
        tmp_path / "w.nc",
        SMALL,
        name="outdoor_workers",
        kind="exposure",
        hazards=("heat",),
        units="count",
        resampling="sum",
    )
    assert float(layer.data.sum()) == pytest.approx(3.0 * 24 * 24)


def test_a_missing_layer_file_is_a_one_line_grid_data_error(tmp_path: Path) -> None:
    with pytest.raises(GridDataError) as err:
        layer_from_raster(tmp_path / "no.tif", SMALL, name="x", kind="hazard", hazards=("heat",), units="1")
    assert str(err.value) == f"{tmp_path / 'no.tif'}: file not found"


def test_an_unknown_layer_kind_or_resampling_is_refused() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        Layer("x", "danger", ("heat",), "1", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="hazards must be"):
        Layer("x", "hazard", ("hail",), "1", np.zeros((2, 2)))
    with pytest.raises(ValueError, match="resampling must be one of"):
        layer_from_raster(
            "x.tif", SMALL, name="x", kind="hazard", hazards=("heat",), units="1", resampling="cubic"
        )
