"""Loading and validating region data folders."""

import shutil
from pathlib import Path

import pytest
import shapely

from risk_zoning.errors import RegionDataError
from risk_zoning.region import builtin_regions, load_region


@pytest.fixture
def region_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "wuhai"
    shutil.copytree(builtin_regions() / "wuhai", dst)
    return dst


def edit(folder: Path, old: str, new: str, name: str = "region.toml") -> None:
    path = folder / name
    text = path.read_text("utf-8")
    assert old in text, f"test setup: {old!r} not in {name}"
    path.write_text(text.replace(old, new, 1), "utf-8")


def test_wuhai_has_the_city_three_districts_and_twenty_towns_with_12_digit_codes() -> None:
    r = load_region("wuhai")
    assert r.city.code == "150300000000"
    assert [d.code for d in r.districts] == ["150302000000", "150303000000", "150304000000"]
    assert len(r.towns) == 20
    assert all(len(u.code) == 12 and u.code.isdigit() for u in (r.city, *r.districts, *r.towns))
    assert all(t.boundary == "approximate" for t in r.towns)
    assert {t.code_status for t in r.towns} == {"official", "provisional"}


def test_approximate_towns_partition_their_district_exactly() -> None:
    r = load_region("wuhai")
    for di, district in enumerate(r.districts):
        towns = [t.geometry for t, p in zip(r.towns, r.town_district, strict=True) if p == di]
        union = shapely.union_all(towns)
        assert union.symmetric_difference(district.geometry).area < 1e-9
        assert sum(t.area for t in towns) == pytest.approx(district.geometry.area, rel=1e-9)


def test_gcj02_boundaries_are_moved_to_wgs84_by_a_few_hundred_metres() -> None:
    r = load_region("wuhai")
    raw = shapely.from_geojson((builtin_regions() / "wuhai" / "districts.geojson").read_text("utf-8"))
    shift_deg = shapely.centroid(raw).distance(
        shapely.centroid(shapely.union_all([d.geometry for d in r.districts]))
    )
    assert 0.001 < shift_deg < 0.01  # 100 m to 1 km


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("population = 341000", "population = -5", "district.0.population"),
        ("[hazards.frost]", "[hazards.hail]", "unknown hazard 'hail'"),
        ('key = "wuhai"', 'key = "wuhai', "malformed TOML"),
        ("seed = [106.860, 39.150]", "seed = [106.200, 39.150]", "lies outside district 150303"),
        (
            'district = "150303"\nseed = [106.860',
            'district = "150399"\nseed = [106.860',
            "unknown district 150399",
        ),
        ('file = "districts.geojson"', 'file = "missing.geojson"', "missing.geojson: file not found"),
        (
            "component_weights = { hazard = 0.5, exposure = 0.5 }",
            "component_weights = { hazard = 1 }",
            "component_weights must give exactly",
        ),
    ],
)
def test_bad_region_data_gives_one_line_naming_the_file_and_the_problem(
    region_copy: Path, old: str, new: str, message: str
) -> None:
    edit(region_copy, old, new)
    with pytest.raises(RegionDataError) as err:
        load_region(region_copy)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
    assert str(region_copy) in str(err.value)


def test_overlapping_districts_are_refused(region_copy: Path) -> None:
    import json

    path = region_copy / "districts.geojson"
    doc = json.loads(path.read_text("utf-8"))
    doc["features"][2]["geometry"] = doc["features"][0]["geometry"]  # Wuda drawn over Haibowan
    path.write_text(json.dumps(doc), "utf-8")
    with pytest.raises(RegionDataError, match="overlap"):
        load_region(region_copy)


def test_boundaries_in_a_projected_crs_are_refused(region_copy: Path) -> None:
    import json

    path = region_copy / "districts.geojson"
    doc = json.loads(path.read_text("utf-8"))
    doc["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32648"}}
    path.write_text(json.dumps(doc), "utf-8")
    with pytest.raises(RegionDataError, match="geographic lon/lat"):
        load_region(region_copy)


def test_an_unknown_region_key_lists_the_built_in_ones() -> None:
    with pytest.raises(RegionDataError, match="built-in regions: wuhai"):
        load_region("atlantis")


def test_a_resolution_that_would_not_fit_in_memory_is_refused(region_copy: Path) -> None:
    edit(region_copy, "resolution_arcsec = 30", "resolution_arcsec = 0.001")
    with pytest.raises(RegionDataError, match="more than 20,000,000"):
        load_region(region_copy)
