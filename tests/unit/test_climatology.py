"""Hazard climatology indicators on tiny synthetic series with known answers, and the driver over files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from risk_zoning.climatology import (
    ClimatologyOptions,
    climatology_steps,
    compute_climatology,
    daily_values,
    frost_days_growing,
    ground_minimum_from_air,
    heat_days_ge35,
    heat_intensity,
    heat_processes,
    rain_days_ge50,
    rain_max_6h,
    rain_max_24h,
    sand_days_vis_lt1000,
)
from risk_zoning.errors import GridDataError
from risk_zoning.io.netcdf import QuantityNotFoundError
from tests.factories_grids import at, beijing_year, canonical, region_grid, write_series


def one(da) -> float:
    """The value of a one-cell indicator."""
    return float(da.values.item())


def daily_maxima(hot: dict[int, float], year: int = 2023, ndays: int = 365, cells: int = 1):
    values = np.full(ndays, 20.0)
    for day, v in hot.items():
        values[day] = v
    return canonical(values, start=f"{year}-01-01", hours=24, quantity="air_temperature_max", cells=cells)


def hourly_year(year: int = 2024, base: float = 20.0, quantity: str = "air_temperature", **kw):
    start, n = beijing_year(year)
    return start, canonical(np.full(n, base), start=start, quantity=quantity, **kw)


# ---------------------------------------------------------------- heat


def test_two_hot_days_count_as_days_but_make_no_heat_process() -> None:
    tx = daily_maxima({180: 35.0, 181: 36.5})
    assert one(heat_days_ge35(tx)) == 2.0
    assert one(heat_processes(tx)) == 0.0


def test_three_consecutive_hot_days_make_one_heat_process_and_five_still_one() -> None:
    assert one(heat_processes(daily_maxima({180: 35.0, 181: 36.0, 182: 35.2}))) == 1.0
    five = daily_maxima({d: 36.0 for d in range(200, 205)} | {210: 36.0, 211: 36.0, 212: 36.0})
    assert one(heat_processes(five)) == 2.0
    assert one(heat_days_ge35(five)) == 8.0


def test_a_day_just_below_the_threshold_breaks_a_heat_process() -> None:
    tx = daily_maxima({180: 36.0, 181: 34.99, 182: 36.0, 183: 36.0})
    assert one(heat_processes(tx)) == 0.0
    assert one(heat_days_ge35(tx)) == 3.0


def test_the_beijing_day_starts_at_16_utc() -> None:
    start, t2m = hourly_year()
    t2m[at(start, "2024-07-10T15:00"), 0, 0] = 36.0  # 23:00 Beijing, 10 July
    t2m[at(start, "2024-07-10T16:00"), 0, 0] = 36.0  # 00:00 Beijing, 11 July
    assert one(heat_days_ge35(t2m)) == 2.0
    start, t2m = hourly_year()
    t2m[at(start, "2024-07-10T16:00") : at(start, "2024-07-11T16:00"), 0, 0] = 36.0  # all of 11 July, Beijing
    assert one(heat_days_ge35(t2m)) == 1.0


def test_hourly_temperature_and_daily_maxima_give_the_same_heat_indicators() -> None:
    start, t2m = hourly_year()
    for day in (190, 191, 192, 250):
        t2m[at(start, "2024-01-01T06:00") + 24 * day, 0, 0] = 37.0  # 14:00 Beijing
    tx = daily_values(t2m, "max")
    assert tx.sizes["time"] == 366 and one(tx.isel(time=190)) == 37.0
    for indicator in (heat_days_ge35, heat_processes, heat_intensity):
        assert one(indicator(t2m)) == one(indicator(tx))
    assert one(heat_days_ge35(t2m)) == 4.0 and one(heat_processes(t2m)) == 1.0


def test_heat_intensity_is_the_mean_excess_on_hot_days_and_zero_without_any() -> None:
    values = np.full((365, 2), 20.0)
    values[[100, 101, 150], 0] = [36.0, 38.0, 37.0]
    tx = canonical(values, start="2023-01-01", hours=24, quantity="air_temperature_max", cells=2)
    np.testing.assert_allclose(heat_intensity(tx).values.ravel(), [2.0, 0.0])


def test_six_hourly_instantaneous_temperature_is_refused_for_daily_maxima() -> None:
    t2m = canonical(np.full(4 * 30, 20.0), start="2024-06-30T16", hours=6)
    with pytest.raises(GridDataError, match="miss the daily maximum"):
        heat_days_ge35(t2m)


def test_six_hourly_maxima_over_each_step_are_accepted() -> None:
    start, n = beijing_year(2024, hours=6)
    values = np.full(n, 20.0)
    values[at(start, "2024-07-10T12:00", hours=6)] = 36.0  # max over 06-12 UTC = 14-20 Beijing
    mx2t6 = canonical(values, start=start, hours=6, quantity="air_temperature_max")
    assert one(heat_days_ge35(mx2t6, min_year_coverage=0.5)) == 1.0


def test_thresholds_given_with_units_are_put_in_the_data_units() -> None:
    tx = daily_maxima({180: 35.0, 181: 36.0, 182: 37.5})
    assert one(heat_days_ge35(tx, "308.15 K")) == 3.0
    assert one(heat_days_ge35(tx, "37 degC")) == 1.0
    assert one(heat_days_ge35(tx, 36.0)) == 2.0


def test_years_with_too_few_complete_days_are_left_out_of_the_mean() -> None:
    full = np.full(365 + 31, 20.0)
    full[[180, 181]] = 36.0  # 2023: two hot days
    full[365:375] = 40.0  # January 2024 only: not a year of data
    tx = canonical(full, start="2023-01-01", hours=24, quantity="air_temperature_max")
    result = heat_days_ge35(tx)
    assert one(result) == 2.0
    assert result.attrs["years"] == "2023" and result.attrs["n_years"] == 1
    assert one(heat_days_ge35(tx, min_year_coverage=0.0)) == 6.0  # (2 + 10) / 2


def test_ensemble_members_are_averaged() -> None:
    tx = daily_maxima({180: 36.0})
    both = tx.expand_dims(member=[0, 1], axis=1).copy()
    both[:, 1, 0, 0] = np.where(np.arange(365) < 3, 36.0, 20.0)
    result = heat_days_ge35(both)
    assert result.dims == ("lat", "lon") and one(result) == 2.0
    assert result.attrs["ensemble"] == "mean over 2 members"


# ---------------------------------------------------------------- rain


def rain_years(events: dict[str, float], years: tuple[int, ...] = (2023, 2024)):
    start, _ = beijing_year(years[0])
    n = sum(beijing_year(y)[1] for y in years)
    values = np.zeros(n)
    for when, mm in events.items():
        values[at(start, when)] += mm
    return start, canonical(values, start=start, quantity="precipitation", units="mm")


def test_rain_max_6h_is_the_mean_of_the_annual_maxima_of_running_sums() -> None:
    _, pr = rain_years(
        {
            "2023-07-01T01": 10.0,
            "2023-07-01T04": 10.0,
            "2023-07-01T07": 10.0,  # 20 in any 6 h
            "2024-08-01T01": 40.0,
            "2024-08-01T12": 5.0,
        }
    )
    result = rain_max_6h(pr)
    assert one(result) == pytest.approx((20.0 + 40.0) / 2)
    assert result.attrs["years"] == "2023-2024" and result.attrs["window_hours"] == 6.0
    assert one(rain_max_24h(pr)) == pytest.approx((30.0 + 45.0) / 2)


def test_rain_steps_coarser_than_the_window_use_the_step() -> None:
    start, n = beijing_year(2024, hours=12)
    values = np.zeros(n)
    values[[100, 101]] = [30.0, 8.0]
    pr = canonical(values, start=start, hours=12, quantity="precipitation", units="mm")
    result = rain_max_6h(pr)
    assert one(result) == 30.0 and result.attrs["window_hours"] == 12.0


def test_an_hourly_amount_stamped_16_utc_belongs_to_the_earlier_beijing_day() -> None:
    _, pr = rain_years({"2024-07-10T15": 30.0, "2024-07-10T16": 30.0}, years=(2024,))
    assert one(rain_days_ge50(pr)) == 1.0  # 22-23 and 23-24 Beijing time, 10 July
    _, pr = rain_years({"2024-07-10T16": 30.0, "2024-07-10T17": 30.0}, years=(2024,))
    assert one(rain_days_ge50(pr)) == 0.0  # 23-24 on 10 July, 00-01 on 11 July
    assert one(rain_days_ge50(pr, "30 mm")) == 2.0


def test_a_gap_in_the_rain_series_makes_its_windows_and_day_incomplete() -> None:
    start, pr = rain_years({"2024-07-10T05": 60.0}, years=(2024,))
    pr[at(start, "2024-07-10T06"), 0, 0] = np.nan
    assert one(rain_days_ge50(pr)) == 0.0
    assert one(rain_max_6h(pr)) == 0.0  # the only windows holding 60 mm touch the gap


# ---------------------------------------------------------------- frost and sand


def test_frost_days_are_counted_only_in_the_growing_season_and_below_zero() -> None:
    values = np.full(365, 5.0)
    values[[60, 61]] = -4.0  # 2 and 3 March: before the season
    values[[95, 96]] = -0.5  # 6 and 7 April
    values[300] = 0.0  # 28 October: not below 0
    ground = canonical(values, start="2023-01-01", hours=24, quantity="ground_temperature_min")
    result = frost_days_growing(ground)
    assert one(result) == 2.0
    assert result.attrs["growing_months"] == "4,5,6,7,8,9,10"
    assert "ground_temperature_min" in result.attrs["ground_source"]
    assert one(frost_days_growing(ground, months=(3, 4))) == 4.0
    assert one(frost_days_growing(ground, "-3 degC", months=range(1, 13))) == 2.0


def test_frost_from_the_2m_minimum_subtracts_the_offset_and_says_so() -> None:
    values = np.full(365, 8.0)
    values[[120, 121, 122]] = [1.5, 2.5, 1.9]
    tmin = canonical(
        values, start="2023-01-01", hours=24, quantity="air_temperature_min", source_variable="tn"
    )
    ground = ground_minimum_from_air(tmin, offset=2.0)
    result = frost_days_growing(ground)
    assert one(result) == 2.0
    assert result.attrs["ground_source"] == "2 m air minimum (tn) minus 2 degC"


def test_sand_days_count_days_whose_minimum_visibility_is_below_1000_m() -> None:
    start, n = beijing_year(2023, hours=3)
    vis = np.full(n, 20000.0)
    vis[at(start, "2023-04-02T03", hours=3)] = 999.0
    vis[at(start, "2023-04-05T03", hours=3)] = 1000.0
    vis[at(start, "2023-04-08T00", hours=3) : at(start, "2023-04-08T09", hours=3)] = 300.0
    da = canonical(vis, start=start, hours=3, quantity="visibility", units="m")
    assert one(sand_days_vis_lt1000(da)) == 2.0


# ---------------------------------------------------------------- driver


def test_compute_climatology_puts_every_indicator_on_the_region_grid_with_provenance(tmp_path: Path) -> None:
    days = dict(start="2023-01-01", hours=24)
    tx = np.full(365, 300.15)
    tx[[190, 191, 192, 193]] = 309.15  # 36 degC
    pr = np.zeros(365)
    pr[200] = 55.0
    tn = np.full(365, 10.0)
    tn[100] = 1.0  # ground estimate -1 degC on 11 April
    vis = np.full(365, 15.0)
    vis[[80, 81, 82]] = 0.6
    files = [
        write_series(
            tmp_path / "tasmax.nc",
            "tasmax",
            tx,
            units="K",
            **days,
            attrs={"standard_name": "air_temperature", "cell_methods": "time: maximum"},
        ),
        write_series(tmp_path / "pr.nc", "pr", pr, units="mm", **days),
        write_series(tmp_path / "tasmin.nc", "tasmin", tn, units="degC", **days),
        write_series(
            tmp_path / "vis.nc", "vis", vis, units="km", **days, attrs={"cell_methods": "time: minimum"}
        ),
    ]
    grid = region_grid()
    seen: list[str] = []
    result = compute_climatology(files, grid, progress=seen.append)
    assert seen == list(climatology_steps())
    expected = {
        "heat_days_ge35": 4.0,
        "heat_processes": 1.0,
        "heat_intensity": 1.0,
        "rain_max_6h": 55.0,
        "rain_max_24h": 55.0,
        "rain_days_ge50": 1.0,
        "frost_days_growing": 1.0,
        "sand_days_vis_lt1000": 3.0,
    }
    assert set(result) == set(expected)
    for name, value in expected.items():
        da = result[name]
        assert da.shape == grid.shape, name
        np.testing.assert_allclose(da.values, value, rtol=1e-5, err_msg=name)
        assert (
            da.attrs["years"] == "2023" and da.attrs["units"] and da.attrs["long_name"] and da.attrs["method"]
        )
        assert str(tmp_path) in da.attrs["source_files"]
    assert result["heat_days_ge35"].attrs["source_quantity"] == "air_temperature_max"
    assert result["frost_days_growing"].attrs["ground_source"] == "2 m air minimum (tasmin) minus 2 degC"
    assert result["rain_max_6h"].attrs["window_hours"] == 24.0


def test_compute_climatology_uses_the_options_thresholds(tmp_path: Path) -> None:
    tx = np.full(365, 30.0)
    tx[[190, 191]] = [33.0, 34.0]
    path = write_series(tmp_path / "tx.nc", "tmax", tx, units="degC", start="2023-01-01", hours=24)
    opts = ClimatologyOptions(heat_threshold="33.5 degC")
    result = compute_climatology([path], region_grid(), hazards=["heat"], options=opts)
    np.testing.assert_allclose(result["heat_days_ge35"].values, 1.0)


def test_a_hazard_without_any_data_is_reported(tmp_path: Path) -> None:
    path = write_series(
        tmp_path / "tx.nc", "tmax", np.full(365, 30.0), units="degC", start="2023-01-01", hours=24
    )
    with pytest.raises(QuantityNotFoundError, match="no data for sandstorm"):
        compute_climatology([path], region_grid(), hazards=["sandstorm"])
