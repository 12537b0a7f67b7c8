"""Synthetic forecast scenarios: files real ingest reads back, labelled synthetic, shaped to reach (or not) levels."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import shapely
import xarray as xr

from risk_zoning.io.netcdf import open_grid, read_quantity
from risk_zoning.region import Region, load_region
from warnings_svc.demo.scenarios import (
    DEFAULT_REFERENCE_TIMES,
    QUANTITY_UNITS,
    SCENARIOS,
    STYLES,
    ScenarioFields,
    scenario_fields,
    scenario_names,
    write_scenario,
)

BEIJING = timezone(timedelta(hours=8))
# Quantities read back and compared with the scenario's own fields; ECMWF-style dust is an optical depth.
COMPARED = ("air_temperature", "ground_temperature", "precipitation", "visibility", "wind_gust")


@pytest.fixture(scope="module")
def region() -> Region:
    return load_region("wuhai")


@pytest.fixture(scope="module")
def written(
    tmp_path_factory: pytest.TempPathFactory, region: Region
) -> Callable[..., tuple[list[Path], ScenarioFields]]:
    """Write a scenario once per module and options; returns (paths, the fields it was made from)."""
    cache: dict[tuple, tuple[list[Path], ScenarioFields]] = {}

    def get(
        name: str, style: str = "cf", members: int = 0, seed: int = 0
    ) -> tuple[list[Path], ScenarioFields]:
        key = (name, style, members, seed)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{name}-{style}-{members}-{seed}")
            paths = write_scenario(name, out, region, members=members, style=style, seed=seed)
            cache[key] = (paths, scenario_fields(name, region, members=members, seed=seed))
        return cache[key]

    return get


def inside_region(region: Region) -> np.ndarray:
    """Cells of the region grid whose centre lies in the city, (ny, nx)."""
    lon, lat = np.meshgrid(region.grid.lon, region.grid.lat)
    return shapely.contains_xy(region.city.geometry, lon, lat)


def running_sum(values: np.ndarray, hours: int) -> np.ndarray:
    c = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
    return c[hours:] - c[:-hours]


def beijing_daily_max(da: xr.DataArray, min_hours: int = 18) -> np.ndarray:
    """Daily maxima of hourly values over Beijing days the run covers for at least `min_hours` hours."""
    days = (da.time.values + np.timedelta64(8, "h")).astype("datetime64[D]")
    covered = [d for d in np.unique(days) if (days == d).sum() >= min_hours]
    return np.stack([da.values[days == d].max(axis=0) for d in covered])


def longest_run(flags: np.ndarray) -> np.ndarray:
    run = best = np.zeros(flags.shape[1:], dtype=int)
    for f in flags:
        run = np.where(f, run + 1, 0)
        best = np.maximum(best, run)
    return best


# ---------------------------------------------------------------- files and ingest


def assert_reads_back(paths: list[Path], sf: ScenarioFields, quantities: tuple[str, ...]) -> None:
    """Each quantity read by the ingest equals the scenario's own field, in canonical units, on its grid."""
    valid = sf.valid_times
    for q in quantities:
        da = read_quantity(paths, q)
        assert da.attrs["units"] == QUANTITY_UNITS[q]
        np.testing.assert_allclose(da.lat, sf.lat)
        np.testing.assert_allclose(da.lon, sf.lon)
        lead = np.searchsorted(valid, da.time.values)
        assert (valid[lead] == da.time.values).all()
        expected = sf.fields[q][lead, 0]
        atol = 2e-3 if q.endswith("temperature") else 1e-3
        np.testing.assert_allclose(da.values, expected, atol=atol, rtol=1e-5)


MAIN_QUANTITY = {
    "heat": "air_temperature",
    "rainstorm": "precipitation",
    "frost": "ground_temperature",
    "sandstorm": "visibility",
    "quiet": "visibility",
}


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("name", SCENARIOS)
def test_every_scenario_in_every_style_reads_back_to_its_values_in_canonical_units(
    written: Callable, name: str, style: str
) -> None:
    paths, sf = written(name, style)
    assert_reads_back(
        paths, sf, tuple(dict.fromkeys(("air_temperature", "precipitation", MAIN_QUANTITY[name])))
    )


@pytest.mark.parametrize("style", STYLES)
def test_every_quantity_of_a_run_reads_back_in_each_style(written: Callable, style: str) -> None:
    paths, sf = written("sandstorm", style)
    assert_reads_back(paths, sf, COMPARED)
    speed = read_quantity(paths, "wind_speed")
    expected = np.hypot(sf.fields["eastward_wind"], sf.fields["northward_wind"])[-speed.sizes["time"] :, 0]
    np.testing.assert_allclose(speed.values, expected, atol=1e-3)
    dust = read_quantity(paths, "dust_concentration")
    assert dust.notnull().all() and dust.attrs["units"] == ("~" if style == "ecmwf" else "ug m-3")


def test_ecmwf_style_is_in_kelvin_and_metres_accumulated_since_the_run_start(written: Callable) -> None:
    paths, sf = written("rainstorm", "ecmwf")
    assert [p.name.rsplit("_", 1)[1] for p in paths] == ["instant.nc", "accum.nc", "max.nc"]
    with open_grid(paths[1]) as ds:
        tp = ds["tp"]
        assert tp.attrs["units"] == "m" and tp.attrs["GRIB_stepType"] == "accum"
        assert tp.dims == ("step", "latitude", "longitude")
        assert (np.diff(ds["latitude"].values) < 0).all()
        assert (np.diff(tp.values, axis=0) >= 0).all()
        assert float(tp.isel(step=0).max()) == 0.0
        assert ds["step"].attrs["units"] == "hours" and "valid_time" in ds.coords
    with open_grid(paths[0]) as ds:
        assert ds["t2m"].attrs["units"] == "K" and float(ds["t2m"].min()) > 250
    rain = read_quantity(paths, "precipitation")
    assert "accumulated since run start" in rain.attrs["conversion"]
    assert rain.sizes["time"] == 72  # the lead-0 step of the accumulation is dropped
    np.testing.assert_allclose(rain.sum("time"), sf.fields["precipitation"][:, 0].sum(axis=0), atol=1e-2)
    tmax = read_quantity(paths, "air_temperature_max")
    assert tmax.attrs["original_units"] == "K" and tmax.attrs["source_variable"] == "mx2t"


def test_grapes_style_writes_one_file_per_variable_with_descending_latitude(written: Callable) -> None:
    paths, _ = written("sandstorm", "grapes")
    assert {p.stem.rsplit("_", 1)[-1] for p in paths} >= {"2m", "sfc", "APCP", "VIS", "CONC"}
    assert len(paths) == 8
    vis_file = next(p for p in paths if p.stem.endswith("_VIS"))
    with open_grid(vis_file) as ds:
        assert list(ds.data_vars) == ["VIS"] and ds["VIS"].attrs["units"] == "km"
        assert (np.diff(ds["lat"].values) < 0).all()
    assert read_quantity(paths, "visibility").attrs["original_units"] == "km"
    assert read_quantity(paths, "precipitation").attrs["original_units"] == "kg m-2"


@pytest.mark.parametrize("style", STYLES)
def test_every_file_says_it_is_synthetic_and_names_its_run(written: Callable, style: str) -> None:
    paths, _ = written("frost", style)
    for path in paths:
        with open_grid(path) as ds:
            assert ds.attrs["source"] == "synthetic scenario frost — not a real forecast"
            assert "synthetic" in ds.attrs["title"].lower() and "synthetic" in ds.attrs["institution"]
            assert "write_scenario" in ds.attrs["history"]
            assert ds.attrs["forecast_reference_time"] == "2024-04-24T00:00:00Z"
    assert all(p.name.startswith("synthetic_frost_") for p in paths)
    assert not list(paths[0].parent.glob("*.part"))


def test_the_forecast_domain_is_a_coarser_grid_a_little_larger_than_the_region(
    written: Callable, region: Region
) -> None:
    _, sf = written("quiet")
    minx, miny, maxx, maxy = region.grid.bounds
    assert sf.lon[0] < minx and sf.lon[-1] > maxx and sf.lat[0] < miny and sf.lat[-1] > maxy
    assert np.diff(sf.lon).mean() == pytest.approx(0.025) and region.grid.step < 0.025
    assert sf.lon.size < 60 and sf.lat.size < 60
    regridded = read_quantity(written("quiet")[0], "air_temperature", region.grid)
    assert regridded.shape == (72, *region.grid.shape)
    assert "bilinear" in regridded.attrs["regridding"]


def test_the_same_seed_gives_the_same_fields_and_another_seed_different_ones(region: Region) -> None:
    a = scenario_fields("rainstorm", region, seed=5)
    b = scenario_fields("rainstorm", region, seed=5)
    c = scenario_fields("rainstorm", region, seed=6)
    for q in QUANTITY_UNITS:
        np.testing.assert_array_equal(a.fields[q], b.fields[q])
    assert not np.array_equal(a.fields["precipitation"], c.fields["precipitation"])


def test_the_same_seed_writes_identical_files(written: Callable, tmp_path: Path, region: Region) -> None:
    first, _ = written("sandstorm", "ecmwf")
    again = write_scenario("sandstorm", tmp_path, region, style="ecmwf")
    for p, q in zip(first, again, strict=True):
        with open_grid(p) as a, open_grid(q) as b:
            xr.testing.assert_identical(a, b)


def test_ensemble_members_differ_and_member_zero_is_the_control(written: Callable) -> None:
    paths, _ = written("heat", "cf", members=4)
    with open_grid(paths[0]) as ds:
        assert ds.sizes["number"] == 4
    ens = read_quantity(paths, "air_temperature")
    det = read_quantity(written("heat")[0], "air_temperature")
    assert ens.sizes["member"] == 4
    np.testing.assert_allclose(ens.isel(member=0), det, atol=1e-4)
    members = [ens.isel(member=m).values for m in range(4)]
    assert all(not np.allclose(members[i], members[j]) for i in range(4) for j in range(i + 1, 4))


@pytest.mark.parametrize(
    ("name", "quantity", "reached"),
    [
        ("heat", "air_temperature", lambda a: a[:24].max(axis=0) >= 37),
        ("rainstorm", "precipitation", lambda a: running_sum(a, 3).max(axis=0) >= 50),
        ("frost", "ground_temperature", lambda a: a[:24].min(axis=0) < -3),
        ("sandstorm", "visibility", lambda a: a[:12].min(axis=0) < 1000),
    ],
)
def test_ensemble_probabilities_are_fractional_at_the_edges_of_the_area(
    written: Callable, region: Region, name: str, quantity: str, reached: Callable
) -> None:
    paths, _ = written(name, "ecmwf", members=6)
    values = read_quantity(paths, quantity, region.grid).values
    probability = np.mean([reached(values[:, m]) for m in range(values.shape[1])], axis=0)
    edge = (probability >= 0.25) & (probability <= 0.75)
    assert edge.sum() >= 20


# ---------------------------------------------------------------- the weather of each scenario


def test_the_heat_scenario_has_three_consecutive_beijing_days_of_35_degrees_in_the_region(
    written: Callable, region: Region
) -> None:
    temp = read_quantity(written("heat")[0], "air_temperature", region.grid)
    daily = beijing_daily_max(temp)
    assert len(daily) == 3  # the default run starts at 20:00 Beijing time: three days of 20-24 hours
    inside = inside_region(region)
    assert (longest_run(daily >= 35)[inside] >= 3).any()
    assert (temp.values[:24].max(axis=0)[inside] >= 37).any()  # orange somewhere within 24 h
    assert (temp.values.max(axis=0)[inside] < 35).any()  # the ranges stay cooler
    assert daily[:, inside].max() <= 38.5


def test_the_rainstorm_is_a_small_intense_core_in_a_dry_region(written: Callable, region: Region) -> None:
    rain = read_quantity(written("rainstorm")[0], "precipitation", region.grid).values
    inside = inside_region(region)
    three_hours = running_sum(rain, 3).max(axis=0)[inside]
    assert 60 <= three_hours.max() <= 115
    core_km2 = (three_hours >= 50).sum() * 0.66  # 30 arc-second cells are about 0.66 km² here
    assert 5 <= core_km2 <= 300
    assert (rain.sum(axis=0)[inside] < 1.0).mean() > 0.7  # dry elsewhere


def test_the_frost_scenario_freezes_the_ground_away_from_the_river_only(
    written: Callable, region: Region
) -> None:
    ground = read_quantity(written("frost")[0], "ground_temperature", region.grid).values
    minimum = ground[:48].min(axis=0)[inside_region(region)]
    assert -6.5 <= minimum.min() <= -5.0
    assert (minimum < 0).mean() > 0.5 and (minimum > 0).any()  # the river strip stays above freezing


def test_the_sandstorm_brings_gusts_and_dust_that_drop_visibility_within_12_hours(
    written: Callable, region: Region
) -> None:
    paths = written("sandstorm")[0]
    inside = inside_region(region)
    vis = read_quantity(paths, "visibility", region.grid).values[:12].min(axis=0)[inside]
    gust = read_quantity(paths, "wind_gust", region.grid).values.max(axis=0)[inside]
    dust = read_quantity(paths, "dust_concentration", region.grid)
    assert (vis < 1000).mean() > 0.2 and (vis < 500).any() and (vis > 1000).any()
    assert gust.min() >= 15 and gust.max() <= 25
    assert dust.attrs["units"] == "ug m-3" and float(dust.max()) > 5000


@pytest.mark.parametrize("members", [0, 6])
def test_the_quiet_scenario_reaches_no_level_of_any_hazard(
    written: Callable, region: Region, members: int
) -> None:
    paths = written("quiet", "cf", members=members)[0]
    inside = inside_region(region)

    def values(q: str) -> np.ndarray:
        a = read_quantity(paths, q, region.grid).values
        return a[:, None] if members == 0 else a  # (time, member, lat, lon)

    temp, ground = values("air_temperature"), values("ground_temperature")
    rain, vis = values("precipitation"), values("visibility")
    assert temp[..., inside].max() < 35
    assert ground[..., inside].min() > 0
    assert running_sum(rain, 12).max() < 50
    assert vis[..., inside].min() >= 1000


# ---------------------------------------------------------------- options


def test_scenario_names_are_the_five_scenarios() -> None:
    assert scenario_names() == ("heat", "rainstorm", "frost", "sandstorm", "quiet")


def test_a_reference_time_moves_the_run_and_is_kept_in_utc(tmp_path: Path, region: Region) -> None:
    start = datetime(2025, 7, 1, 20, 30, tzinfo=BEIJING)  # 12:30 UTC: truncated to 12 UTC
    paths = write_scenario("heat", tmp_path, region, reference_time=start, style="grapes")
    temp = read_quantity(paths, "air_temperature")
    assert temp.time.values[0] == np.datetime64("2025-07-01T12:00")
    assert "2025070112" in paths[0].name
    with open_grid(paths[0]) as ds:
        assert ds.attrs["forecast_reference_time"] == "2025-07-01T12:00:00Z"
    assert DEFAULT_REFERENCE_TIMES["heat"].month == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "typhoon"}, "unknown scenario"),
        ({"style": "ncep"}, "unknown style"),
        ({"members": -1}, "members"),
        ({"reference_time": datetime(2024, 7, 1)}, "timezone-aware"),
        ({"hours": 0}, "hours"),
    ],
)
def test_unknown_or_impossible_options_are_rejected_naming_them(
    tmp_path: Path, region: Region, kwargs: dict, message: str
) -> None:
    args = {"name": "heat", **kwargs}
    with pytest.raises(ValueError, match=message):
        write_scenario(args.pop("name"), tmp_path, region, **args)
    assert not list(tmp_path.iterdir())


def test_a_shorter_run_has_fewer_steps(tmp_path: Path, region: Region) -> None:
    paths = write_scenario(
        "quiet", tmp_path, region, hours=24, reference_time=datetime(2024, 9, 1, tzinfo=UTC)
    )
    assert read_quantity(paths, "precipitation").sizes["time"] == 24


@pytest.mark.parametrize("hour", range(24))
def test_the_rainstorm_falls_within_the_criteria_horizon_whatever_the_hour_the_run_starts(
    region: Region, hour: int
) -> None:
    """Its largest 3-hour total (>= 100 mm: red) ends within 24 h of the run's start, the horizon of the
    rainstorm criteria. Runs starting 13-17 Beijing time used to put the cell on the next afternoon, beyond
    it, so the browser tests that ingest a rainstorm "now" failed every day from 05 to 09 UTC."""
    start = datetime(2026, 8, 2, hour, 20, tzinfo=UTC)
    rain = scenario_fields("rainstorm", region, reference_time=start).fields["precipitation"][:, 0]
    three_hours = running_sum(rain, 3).max(axis=(1, 2))
    assert three_hours.max() >= 100
    assert int(three_hours.argmax()) + 2 <= 24  # the lead at which the largest window ends
