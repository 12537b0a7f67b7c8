"""Reading forecast and historical grids from real NetCDF files into the canonical form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from risk_zoning.errors import GridDataError
from risk_zoning.grid import RegularGrid
from risk_zoning.io.netcdf import open_grid, read_quantity, to_region_grid
from tests.factories_grids import (
    cfgrib_runs_dataset,
    field_dataset,
    field_of,
    region_grid,
    series_field,
    source_lat,
    source_lon,
    times,
    write_dataset,
    write_field,
    write_series,
)

AMOUNTS_MM = [1.0, 2.0, 0.0, 3.0, 1.5, 0.0]


def one_cell(da: xr.DataArray) -> np.ndarray:
    return da.isel(lat=0, lon=0).values


# ---------------------------------------------------------------- units


@pytest.mark.parametrize(("units", "value"), [("K", 300.15), ("degC", 27.0), ("Celsius", 27.0)])
def test_temperature_in_kelvin_or_celsius_reads_as_celsius(tmp_path: Path, units: str, value: float) -> None:
    path = write_series(tmp_path / "t.nc", "t2m", [value] * 3, start="2024-07-01T00", units=units)
    da = read_quantity([path], "air_temperature")
    np.testing.assert_allclose(da.values, 27.0, atol=1e-4)
    assert da.attrs["units"] == "degC"
    assert da.attrs["original_units"] == units
    assert da.attrs["source_variable"] == "t2m"
    assert da.attrs["source_files"] == str(path)


def test_precipitation_in_metres_and_in_millimetres_gives_the_same_millimetres(tmp_path: Path) -> None:
    metres = write_series(
        tmp_path / "m.nc", "tp", np.array(AMOUNTS_MM) / 1000, start="2024-07-01T01", units="m"
    )
    mm = write_series(tmp_path / "mm.nc", "precip", AMOUNTS_MM, start="2024-07-01T01", units="mm")
    kg = write_series(tmp_path / "kg.nc", "rain", AMOUNTS_MM, start="2024-07-01T01", units="kg m-2")
    for path in (metres, mm, kg):
        np.testing.assert_allclose(one_cell(read_quantity([path], "precipitation")), AMOUNTS_MM, atol=1e-5)


def test_per_step_precipitation_amounts_are_kept_as_they_are(tmp_path: Path) -> None:
    path = write_series(tmp_path / "p.nc", "tp", AMOUNTS_MM, start="2024-07-01T01", units="mm")
    da = read_quantity([path], "precipitation")
    np.testing.assert_allclose(one_cell(da), AMOUNTS_MM)
    assert "accumulated" not in da.attrs["conversion"]


def test_accumulated_tp_of_an_ecmwf_run_becomes_per_step_amounts_without_the_zero_step(
    tmp_path: Path,
) -> None:
    accumulated_m = np.concatenate([[0.0], np.cumsum(AMOUNTS_MM)]) / 1000
    path = write_series(
        tmp_path / "ecmwf.nc",
        "tp",
        accumulated_m,
        start="2024-07-01T00",
        units="m",
        layout="time+step",
        reference="2024-07-01T00",
        attrs={"GRIB_stepType": "accum"},
    )
    da = read_quantity([path], "precipitation")
    np.testing.assert_allclose(one_cell(da), AMOUNTS_MM, atol=1e-4)
    assert da.time.values[0] == np.datetime64("2024-07-01T01", "ns")
    assert "accumulated since run start" in da.attrs["conversion"]
    assert (da.forecast_period.values / np.timedelta64(1, "h")).tolist() == [1, 2, 3, 4, 5, 6]


def test_grib_accum_without_a_lead_time_is_taken_as_per_step_like_era5(tmp_path: Path) -> None:
    path = write_series(
        tmp_path / "era5.nc",
        "tp",
        np.array(AMOUNTS_MM) / 1000,
        start="2024-07-01T01",
        units="m",
        layout="valid_time",
        attrs={"GRIB_stepType": "accum"},
    )
    np.testing.assert_allclose(one_cell(read_quantity([path], "precipitation")), AMOUNTS_MM, atol=1e-4)


def test_small_dips_of_a_packed_accumulation_are_set_to_zero_and_counted(tmp_path: Path) -> None:
    accumulated_mm = [0.0, 1.0, 0.96, 2.0]
    path = write_series(
        tmp_path / "acc.nc",
        "tp",
        accumulated_mm,
        start="2024-07-01T00",
        units="mm",
        layout="time+step",
        reference="2024-07-01T00",
        attrs={"GRIB_stepType": "accum"},
    )
    da = read_quantity([path], "precipitation")
    np.testing.assert_allclose(one_cell(da), [1.0, 0.0, 1.04], atol=1e-5)
    assert "dips" in da.attrs["conversion"]


def test_an_accumulation_that_falls_clearly_is_rejected_with_a_hint(tmp_path: Path) -> None:
    path = write_series(
        tmp_path / "bad.nc",
        "tp",
        [0.0, 5.0, 1.0],
        start="2024-07-01T00",
        units="mm",
        layout="time+step",
        reference="2024-07-01T00",
        attrs={"GRIB_stepType": "accum"},
    )
    with pytest.raises(GridDataError, match="accumulation='per_step'"):
        read_quantity([path], "precipitation")
    np.testing.assert_allclose(
        one_cell(read_quantity([path], "precipitation", accumulation="per_step")), [0.0, 5.0, 1.0]
    )


def test_an_accumulated_run_that_starts_mid_way_is_rejected(tmp_path: Path) -> None:
    path = write_series(
        tmp_path / "late.nc",
        "tp",
        [10.0, 11.0, 12.0],
        start="2024-07-01T06",
        units="mm",
        layout="time+step",
        reference="2024-07-01T00",
        attrs={"GRIB_stepType": "accum"},
    )
    with pytest.raises(GridDataError, match="mid-run"):
        read_quantity([path], "precipitation")


@pytest.mark.parametrize("units", ["kg m-2 s-1", "mm s-1"])
def test_a_precipitation_flux_is_multiplied_by_the_step_length(tmp_path: Path, units: str) -> None:
    rate = np.array(AMOUNTS_MM) / 10800.0  # 3-hourly steps
    path = write_series(
        tmp_path / "pr.nc",
        "pr",
        rate,
        start="2024-07-01T03",
        hours=3,
        units=units,
        attrs={"standard_name": "precipitation_flux"},
    )
    da = read_quantity([path], "precipitation")
    np.testing.assert_allclose(one_cell(da), AMOUNTS_MM, rtol=1e-5)
    assert "step length" in da.attrs["conversion"]


def test_a_daily_flux_with_time_bounds_uses_the_bounds_and_is_stamped_at_their_end(tmp_path: Path) -> None:
    days = times("2024-07-01T12", 3, hours=24)  # CMIP stamps daily means at noon
    bounds = np.stack([days - np.timedelta64(12, "h"), days + np.timedelta64(12, "h")], axis=1)
    values = series_field(np.array([10.0, 0.0, 2.5]) / 86400.0, source_lat().size, source_lon().size)
    path = write_field(
        tmp_path / "pr_day.nc",
        "pr",
        values,
        valid=days,
        units="kg m-2 s-1",
        time_bounds=bounds,
        attrs={"standard_name": "precipitation_flux", "cell_methods": "time: mean"},
    )
    da = read_quantity([path], "precipitation")
    np.testing.assert_allclose(one_cell(da), [10.0, 0.0, 2.5], rtol=1e-5)
    assert da.time.values[0] == np.datetime64("2024-07-02T00", "ns")


def test_visibility_in_kilometres_is_converted_to_metres(tmp_path: Path) -> None:
    path = write_series(tmp_path / "vis.nc", "vis", [0.8, 12.0], start="2024-04-01T00", units="km")
    np.testing.assert_allclose(one_cell(read_quantity([path], "visibility")), [800.0, 12000.0], rtol=1e-6)


def test_a_variable_without_units_is_rejected_naming_the_variable(tmp_path: Path) -> None:
    path = write_series(tmp_path / "nounits.nc", "t2m", [300.0], start="2024-07-01T00", units=None)
    with pytest.raises(GridDataError, match="'t2m' has no units") as info:
        read_quantity([path], "air_temperature")
    assert str(info.value).startswith(str(path))


def test_units_that_cannot_be_converted_are_rejected_naming_both(tmp_path: Path) -> None:
    path = write_series(tmp_path / "odd.nc", "t2m", [300.0], start="2024-07-01T00", units="m s-1")
    with pytest.raises(GridDataError, match="'m s-1' to 'degC'"):
        read_quantity([path], "air_temperature")


# ---------------------------------------------------------------- coordinates


def test_descending_latitude_is_flipped_to_ascending_with_its_values(tmp_path: Path) -> None:
    lat, lon = source_lat(), source_lon()
    values = field_of(lambda y, x: y * 10 + x / 1000, lat, lon, 2)
    path = write_field(
        tmp_path / "desc.nc",
        "t2m",
        values,
        valid=times("2024-07-01", 2),
        units="degC",
        lat_name="latitude",
        lon_name="longitude",
        descending_lat=True,
    )
    with open_grid(path) as ds:
        assert ds.latitude.values[0] > ds.latitude.values[-1]
    da = read_quantity([path], "air_temperature")
    assert np.all(np.diff(da.lat.values) > 0)
    np.testing.assert_allclose(da.isel(time=0).values, values[0], rtol=1e-6)
    assert da.dims == ("time", "lat", "lon")


def test_longitudes_from_0_to_360_become_minus_180_to_180_in_order(tmp_path: Path) -> None:
    lat, lon = np.arange(-90.0, 90.1, 10.0), np.arange(0.0, 360.0, 10.0)
    wrapped = (lon + 180) % 360 - 180
    values = np.repeat(np.repeat(wrapped[None, None, :], lat.size, axis=1), 1, axis=0)
    path = write_field(
        tmp_path / "global.nc", "t2m", values, valid=times("2024-07-01", 1), lat=lat, lon=lon, units="degC"
    )
    da = read_quantity([path], "air_temperature")
    assert da.lon.values[0] == -180.0 and da.lon.values[-1] == 170.0
    np.testing.assert_allclose(da.isel(time=0, lat=0).values, da.lon.values)


@pytest.mark.parametrize("layout", ["time", "valid_time", "time+step", "reference+period"])
def test_every_time_layout_gives_the_same_utc_valid_times(tmp_path: Path, layout: str) -> None:
    valid = times("2024-07-01T06", 4, hours=6)
    path = write_series(
        tmp_path / f"{layout}.nc",
        "t2m",
        [300.0] * 4,
        start="2024-07-01T06",
        hours=6,
        layout=layout,
        reference="2024-07-01T00",
    )
    da = read_quantity([path], "air_temperature")
    assert da.time.dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(da.time.values, valid)


def test_times_with_a_utc_offset_in_their_units_are_stored_as_naive_utc(tmp_path: Path) -> None:
    ds = field_dataset("t2m", series_field([300.0, 301.0], 9, 11), valid=times("2024-07-01", 2))
    ds["time"] = ("time", [0.0, 1.0], {"units": "hours since 2024-07-01 08:00:00+08:00"})
    path = tmp_path / "offset.nc"
    ds.to_netcdf(path, engine="netcdf4")
    da = read_quantity([path], "air_temperature")
    np.testing.assert_array_equal(da.time.values, times("2024-07-01T00", 2))


@pytest.mark.parametrize("member_dim", ["number", "realization", "member", "ensemble"])
def test_ensemble_members_are_named_member_whatever_the_file_calls_them(
    tmp_path: Path, member_dim: str
) -> None:
    lat, lon = source_lat(), source_lon()
    values = np.stack([series_field([290.0 + m] * 2, lat.size, lon.size) for m in range(3)], axis=1)
    path = write_field(
        tmp_path / "ens.nc", "t2m", values, valid=times("2024-07-01", 2), member_dim=member_dim
    )
    da = read_quantity([path], "air_temperature")
    assert da.dims == ("time", "member", "lat", "lon")
    np.testing.assert_allclose(da.isel(time=0, lat=0, lon=0).values, [16.85, 17.85, 18.85], atol=1e-4)


def test_ten_metre_wind_speed_comes_from_u10_and_v10_in_separate_files(tmp_path: Path) -> None:
    u = write_series(tmp_path / "u.nc", "u10", [3.0, 0.0], start="2024-04-01", units="m s-1")
    v = write_series(tmp_path / "v.nc", "v10", [4.0, -2.0], start="2024-04-01", units="m s-1")
    da = read_quantity([u, v], "wind_speed")
    np.testing.assert_allclose(one_cell(da), [5.0, 2.0])
    assert da.attrs["source_variable"] == "hypot(u10, v10)"


def test_a_singleton_height_dimension_is_dropped(tmp_path: Path) -> None:
    ds = field_dataset("t2m", series_field([300.0], 9, 11), valid=times("2024-07-01", 1))
    ds = ds.expand_dims(height=[2.0], axis=1)
    ds["height"].attrs.update(units="m", standard_name="height")
    da = read_quantity([write_dataset(ds, tmp_path / "h.nc")], "air_temperature")
    assert da.dims == ("time", "lat", "lon")


def test_the_standard_name_is_preferred_over_short_names(tmp_path: Path) -> None:
    lat, lon = source_lat(), source_lon()
    ds = field_dataset("t2m", series_field([300.0], lat.size, lon.size), valid=times("2024-07-01", 1))
    ds["temp_daymax"] = (
        ds.t2m.dims,
        series_field([310.0], lat.size, lon.size),
        {"units": "K", "standard_name": "air_temperature", "cell_methods": "time: maximum"},
    )
    path = write_dataset(ds, tmp_path / "both.nc")
    assert read_quantity([path], "air_temperature_max").attrs["source_variable"] == "temp_daymax"
    assert read_quantity([path], "air_temperature").attrs["source_variable"] == "t2m"


def test_a_quantity_missing_from_every_file_is_reported_with_what_was_looked_for(tmp_path: Path) -> None:
    path = write_series(tmp_path / "t.nc", "t2m", [300.0], start="2024-07-01")
    with pytest.raises(GridDataError, match=r"no visibility variable .*visibility_in_air"):
        read_quantity([path], "visibility")


def test_a_variable_without_latitude_and_longitude_is_rejected(tmp_path: Path) -> None:
    ds = xr.Dataset(
        {"t2m": (("time", "station"), np.zeros((2, 3)), {"units": "K"})},
        coords={"time": times("2024-07-01", 2)},
    )
    with pytest.raises(GridDataError, match="no latitude and longitude"):
        read_quantity([write_dataset(ds, tmp_path / "st.nc")], "air_temperature")


# ---------------------------------------------------------------- damaged files


def test_a_file_that_is_not_netcdf_is_rejected_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "forecast.nc"
    path.write_text("<html>502 Bad Gateway</html>\n")
    with pytest.raises(GridDataError, match="not a readable NetCDF file") as info:
        open_grid(path)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(path))


def test_a_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(GridDataError, match="no such file"):
        read_quantity([tmp_path / "absent.nc"], "air_temperature")


@pytest.mark.parametrize("fmt", ["NETCDF4", "NETCDF3_CLASSIC"])
def test_a_truncated_file_is_rejected(tmp_path: Path, fmt: str) -> None:
    full = write_series(tmp_path / "full.nc", "t2m", [300.0] * 24, start="2024-07-01", fmt=fmt)
    cut = tmp_path / "cut.nc"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(GridDataError) as info:
        read_quantity([cut], "air_temperature")
    assert str(info.value).startswith(str(cut)) and "\n" not in str(info.value)


def test_an_all_missing_variable_is_rejected(tmp_path: Path) -> None:
    path = write_series(tmp_path / "nan.nc", "t2m", [np.nan, np.nan], start="2024-07-01")
    with pytest.raises(GridDataError, match="no valid values"):
        read_quantity([path], "air_temperature")


def test_duplicate_times_are_rejected(tmp_path: Path) -> None:
    valid = np.array(["2024-07-01T00", "2024-07-01T01", "2024-07-01T01"], dtype="datetime64[ns]")
    path = write_field(tmp_path / "dup.nc", "t2m", series_field([300.0] * 3, 9, 11), valid=valid)
    with pytest.raises(GridDataError, match="duplicate times"):
        read_quantity([path], "air_temperature")


def test_files_that_overlap_in_time_are_rejected(tmp_path: Path) -> None:
    a = write_series(tmp_path / "a.nc", "t2m", [300.0] * 3, start="2024-07-01T00")
    b = write_series(tmp_path / "b.nc", "t2m", [300.0] * 3, start="2024-07-01T02")
    with pytest.raises(GridDataError, match="overlap"):
        read_quantity([a, b], "air_temperature")


# ---------------------------------------------------------------- several files


def test_a_three_hour_window_straddling_two_files_sums_correctly(tmp_path: Path) -> None:
    hourly = np.arange(1.0, 25.0)  # 1..24 mm, valid 01..24 UTC
    late = write_series(tmp_path / "b.nc", "tp", hourly[12:], start="2024-07-01T13", units="mm")
    early = write_series(tmp_path / "a.nc", "tp", hourly[:12], start="2024-07-01T01", units="mm")
    da = read_quantity([late, early], "precipitation")  # any order
    window = da.rolling(time=3).sum().sel(time="2024-07-01T13")
    np.testing.assert_allclose(one_cell(window), 11.0 + 12.0 + 13.0)
    assert da.attrs["source_files"] == f"{early}, {late}"


def test_an_accumulated_run_split_over_two_files_is_differenced_across_the_split(tmp_path: Path) -> None:
    amounts = np.arange(1.0, 13.0)
    accumulated_m = np.concatenate([[0.0], np.cumsum(amounts)]) / 1000  # steps 0..12 h
    kw = {
        "units": "m",
        "layout": "time+step",
        "reference": "2024-07-01T00",
        "attrs": {"GRIB_stepType": "accum"},
    }
    a = write_series(tmp_path / "a.nc", "tp", accumulated_m[:7], start="2024-07-01T00", **kw)
    b = write_series(tmp_path / "b.nc", "tp", accumulated_m[7:], start="2024-07-01T07", **kw)
    da = read_quantity([a, b], "precipitation")
    np.testing.assert_allclose(one_cell(da), amounts, atol=1e-3)
    np.testing.assert_allclose(
        one_cell(da.rolling(time=3).sum().sel(time="2024-07-01T08")), 6 + 7 + 8, atol=1e-3
    )


# ---------------------------------------------------------------- regridding


def test_reading_with_a_grid_crops_then_regrids_onto_the_region_grid(tmp_path: Path) -> None:
    grid = region_grid()
    path = write_series(tmp_path / "t.nc", "t2m", [300.15, 301.15], start="2024-07-01")
    cropped = read_quantity([path], "air_temperature", grid, regrid=False)
    assert (
        cropped.lon.values.min() >= grid.lon_min - 0.26 and cropped.lon.values.max() <= grid.bounds[2] + 0.26
    )
    da = read_quantity([path], "air_temperature", grid)
    assert da.shape == (2, *grid.shape)
    np.testing.assert_allclose(da.lon.values, grid.lon)
    np.testing.assert_allclose(da.lat.values, grid.lat)
    assert da.attrs["regridding"].startswith("bilinear")


@pytest.mark.parametrize(
    ("source_step", "method", "expected"),
    [
        (0.25, "auto", "bilinear"),
        (0.02, "auto", "block_mean"),
        (0.25, "nearest", "nearest"),
    ],
)
def test_regridding_keeps_a_constant_field_exactly(source_step: float, method: str, expected: str) -> None:
    grid = region_grid()
    lat, lon = np.arange(38.9, 40.0, source_step), np.arange(106.2, 107.4, source_step)
    src = xr.DataArray(
        np.full((2, lat.size, lon.size), 23.7),
        dims=("time", "lat", "lon"),
        coords={"time": times("2024-07-01", 2), "lat": lat, "lon": lon},
    )
    out = to_region_grid(src, grid, method)
    assert out.attrs["regridding"].startswith(expected)
    assert out.shape == (2, *grid.shape)
    assert np.all(out.values == 23.7)


def test_bilinear_regridding_reproduces_a_linear_field() -> None:
    grid = region_grid(step=0.05, nx=7, ny=5)
    lat, lon = source_lat(), source_lon()
    src = xr.DataArray(
        field_of(lambda y, x: 3.0 * y - 2.0 * x + 1.0, lat, lon, 1),
        dims=("time", "lat", "lon"),
        coords={"time": times("2024-07-01", 1), "lat": lat, "lon": lon},
    )
    out = to_region_grid(src, grid)
    yy, xx = np.meshgrid(grid.lat, grid.lon, indexing="ij")
    np.testing.assert_allclose(out.isel(time=0).values, 3.0 * yy - 2.0 * xx + 1.0, atol=1e-9)


def test_a_finer_source_is_averaged_over_each_region_cell() -> None:
    grid = RegularGrid(lon_min=106.6, lat_min=39.3, step=0.1, nx=2, ny=1)
    lat, lon = np.round(np.arange(39.225, 39.5, 0.05), 6), np.round(np.arange(106.525, 106.9, 0.05), 6)
    rng = np.random.default_rng(1)
    src = xr.DataArray(
        rng.gamma(0.5, 4.0, (lat.size, lon.size)), dims=("lat", "lon"), coords={"lat": lat, "lon": lon}
    )
    out = to_region_grid(src, grid)
    assert out.attrs["regridding"].startswith("block_mean")
    inside = src.sel(lat=slice(39.3, 39.4), lon=slice(106.6, 106.7))
    assert inside.size == 4
    np.testing.assert_allclose(out.values[0, 0], float(inside.mean()))


def test_a_region_outside_the_source_is_rejected_rather_than_extrapolated() -> None:
    grid = RegularGrid(lon_min=107.9, lat_min=39.0, step=0.1, nx=3, ny=2)
    lat, lon = source_lat(), source_lon()  # lon ends at 108.0
    src = xr.DataArray(np.ones((lat.size, lon.size)), dims=("lat", "lon"), coords={"lat": lat, "lon": lon})
    with pytest.raises(GridDataError, match="no extrapolation"):
        to_region_grid(src, grid)


# ---------------------------------------------------------------- forecast runs


def test_several_cfgrib_runs_are_laid_end_to_end_and_each_run_is_differenced_on_its_own(
    tmp_path: Path,
) -> None:
    hourly = np.arange(24.0).reshape(2, 12)  # runs 06 and 18 UTC, steps 1..12 h
    ds = cfgrib_runs_dataset(
        "tp",
        np.cumsum(hourly, axis=1) / 1000,
        references=["2024-07-01T06", "2024-07-01T18"],
        step_hours=range(1, 13),
        units="m",
        GRIB_stepType="accum",
    )
    da = read_quantity([write_dataset(ds, tmp_path / "runs.nc")], "precipitation")
    np.testing.assert_array_equal(da.time.values, times("2024-07-01T07", 24))
    np.testing.assert_allclose(one_cell(da), hourly.ravel(), atol=1e-3)
    assert np.unique(da.forecast_reference_time.values).size == 2


def test_consecutive_runs_with_an_analysis_step_each_join_without_overlap(tmp_path: Path) -> None:
    kw = {"units": "mm", "layout": "time+step", "attrs": {"GRIB_stepType": "accum"}}
    first = write_series(
        tmp_path / "r00.nc",
        "tp",
        [0.0, 1.0, 3.0],
        start="2024-07-01T00",
        hours=6,
        reference="2024-07-01T00",
        **kw,
    )
    second = write_series(
        tmp_path / "r12.nc",
        "tp",
        [0.0, 4.0, 4.5],
        start="2024-07-01T12",
        hours=6,
        reference="2024-07-01T12",
        **kw,
    )
    da = read_quantity([second, first], "precipitation")
    np.testing.assert_array_equal(da.time.values, times("2024-07-01T06", 4, hours=6))
    np.testing.assert_allclose(one_cell(da), [1.0, 2.0, 4.0, 0.5])


def test_a_forecast_rate_uses_the_lead_time_steps_even_when_they_widen(tmp_path: Path) -> None:
    valid = np.datetime64("2024-07-01T00", "ns") + np.array([1, 2, 3, 6, 9]) * np.timedelta64(1, "h")
    rate_mm_h = np.array([1.0, 2.0, 0.0, 1.0, 0.5])
    path = write_field(
        tmp_path / "rate.nc",
        "prate",
        series_field(rate_mm_h, 9, 11),
        valid=valid,
        units="mm h-1",
        layout="time+step",
        reference="2024-07-01T00",
        attrs={"standard_name": "lwe_precipitation_rate"},
    )
    np.testing.assert_allclose(
        one_cell(read_quantity([path], "precipitation")), [1.0, 2.0, 0.0, 3.0, 1.5], rtol=1e-6
    )


def test_a_cf_sum_whose_bounds_all_start_at_the_run_start_is_an_accumulation(tmp_path: Path) -> None:
    valid = times("2024-07-01T03", 3, hours=3)
    start = np.datetime64("2024-07-01T00", "ns")
    bounds = np.stack([np.full(3, start), valid], axis=1)
    path = write_field(
        tmp_path / "cfsum.nc",
        "precip",
        series_field([2.0, 2.0, 7.0], 9, 11),
        valid=valid,
        units="mm",
        time_bounds=bounds,
        attrs={"standard_name": "precipitation_amount", "cell_methods": "time: sum"},
    )
    np.testing.assert_allclose(one_cell(read_quantity([path], "precipitation")), [2.0, 0.0, 5.0])


def test_a_curvilinear_grid_is_rejected_with_advice(tmp_path: Path) -> None:
    yy, xx = np.meshgrid(np.arange(3.0) + 39, np.arange(4.0) + 106, indexing="ij")
    ds = xr.Dataset(
        {"t2m": (("time", "y", "x"), np.zeros((1, 3, 4)), {"units": "K", "coordinates": "lat lon"})},
        coords={
            "time": times("2024-07-01", 1),
            "lat": (("y", "x"), yy, {"units": "degrees_north"}),
            "lon": (("y", "x"), xx, {"units": "degrees_east"}),
        },
    )
    with pytest.raises(GridDataError, match="curvilinear"):
        read_quantity([write_dataset(ds, tmp_path / "curv.nc")], "air_temperature")


def test_a_file_that_does_not_reach_the_region_is_rejected_when_cropped(tmp_path: Path) -> None:
    far = RegularGrid(lon_min=120.0, lat_min=30.0, step=0.1, nx=3, ny=3)
    path = write_series(tmp_path / "t.nc", "t2m", [300.0], start="2024-07-01")
    with pytest.raises(GridDataError, match="does not reach the region"):
        read_quantity([path], "air_temperature", far)
