"""Hazard criteria on forecast grids: boundaries of every level, ensembles, onset/end, both branches, tiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from risk_zoning.grid import RegularGrid
from tests.factories_forecast import (
    HOUR,
    REFERENCE,
    ensemble,
    grid_field,
    hourly_with,
    random_field,
    series,
    valid_times,
)
from tests.reference_kernels import reference_kernel
from warnings_svc.forecast import hazards as hz
from warnings_svc.forecast.criteria import Criteria, load_criteria
from warnings_svc.forecast.hazards import (
    HazardInputError,
    MissingInputError,
    evaluate,
    evaluate_all,
    evaluate_tile,
    tile_template,
)
from warnings_svc.forecast.ingest import read_station_csv


@pytest.fixture(scope="module")
def criteria() -> Criteria:
    return load_criteria()


def prob(result: hz.HazardResult, level: str, lat: int = 0, lon: int = 0) -> float:
    return float(result.probability.sel(level=level).values[lat, lon])


def at(hours: float, base: np.datetime64 = REFERENCE) -> np.datetime64:
    return np.datetime64(base, "ns") + np.timedelta64(round(hours * 3600), "s")


# ---------------------------------------------------------------- heat

BEIJING_MIDNIGHT = np.datetime64("2024-06-30T16:00", "ns")  # 2024-07-01 00:00 Beijing time


def hot_days(day_peaks: list[float], base: float = 25.0) -> xr.DataArray:
    """Hourly maxima from Beijing midnight, one peak per Beijing day at 14-15 local time."""
    v = np.full(24 * len(day_peaks), base, dtype=np.float32)
    for d, peak in enumerate(day_peaks):
        v[24 * d + 14] = peak
    return series("air_temperature_max", v, start=BEIJING_MIDNIGHT + HOUR)


@pytest.mark.parametrize(("peak", "expected"), [(34.9, 0.0), (35.0, 1.0)])
def test_a_yellow_heat_spell_needs_35_degc_not_34_9(criteria: Criteria, peak: float, expected: float) -> None:
    r = evaluate(
        "heat", {"air_temperature_max": hot_days([peak] * 3)}, criteria, reference_time=BEIJING_MIDNIGHT
    )
    assert prob(r, "yellow") == expected
    assert prob(r, "orange") == 0.0


@pytest.mark.parametrize(
    ("peaks", "expected"), [([36, 36, 25], 0.0), ([25, 36, 36], 0.0), ([36, 36, 36], 1.0)]
)
def test_two_hot_days_are_not_a_yellow_spell_and_three_are(
    criteria: Criteria, peaks: list[float], expected: float
) -> None:
    r = evaluate("heat", {"air_temperature_max": hot_days(peaks)}, criteria, reference_time=BEIJING_MIDNIGHT)
    assert prob(r, "yellow") == expected


@pytest.mark.parametrize(
    ("third_hot_step", "expected"), [("2024-07-02T17:00", 1.0), ("2024-07-02T16:00", 0.0)]
)
def test_a_hot_spell_crossing_the_beijing_midnight_at_16_utc_counts_beijing_days(
    criteria: Criteria, third_hot_step: str, expected: float
) -> None:
    # maxima over the hour ending at the stamp: 16:00 UTC is 23-24 Beijing time, 17:00 UTC is 00-01 next day
    times = valid_times(72, start=BEIJING_MIDNIGHT + HOUR)
    v = np.full(72, 25.0, np.float32)
    for stamp in ("2024-07-01T16:00", "2024-07-02T06:00", third_hot_step):
        v[np.flatnonzero(times == np.datetime64(stamp, "ns"))[0]] = 36.0
    data = {"air_temperature_max": series("air_temperature_max", v, start=BEIJING_MIDNIGHT + HOUR)}
    r = evaluate("heat", data, criteria, reference_time=BEIJING_MIDNIGHT)
    assert prob(r, "yellow") == expected  # in UTC days both cases would be two days only
    if expected:
        assert r.onset.sel(level="yellow").values[0, 0] == np.datetime64("2024-06-30T16:00", "ns")
        assert r.end.sel(level="yellow").values[0, 0] == np.datetime64("2024-07-03T16:00", "ns")
        assert r.evidence["levels"]["yellow"]["days"]["2024-07-03"] == {"covered_h": 24.0, "counted": True}


def test_an_instantaneous_temperature_at_16_utc_belongs_to_the_next_beijing_day(criteria: Criteria) -> None:
    times = valid_times(72, start=BEIJING_MIDNIGHT + HOUR)
    v = np.full(72, 25.0, np.float32)
    for stamp in (
        "2024-06-30T20:00",
        "2024-07-01T16:00",
        "2024-07-02T16:00",
    ):  # Jul 1, Jul 2 00:00, Jul 3 00:00
        v[np.flatnonzero(times == np.datetime64(stamp, "ns"))[0]] = 36.0
    r = evaluate(
        "heat",
        {"air_temperature": series("air_temperature", v, start=BEIJING_MIDNIGHT + HOUR)},
        criteria,
        reference_time=BEIJING_MIDNIGHT,
    )
    assert prob(r, "yellow") == 1.0
    assert "instantaneous" in " ".join(r.evidence["notes"])


@pytest.mark.parametrize(("hot_days_", "expected"), [((0, 1, 2), 0.0), ((1, 2, 3), 1.0)])
def test_a_day_the_forecast_covers_for_16_hours_does_not_count(
    criteria: Criteria, hot_days_: tuple[int, ...], expected: float
) -> None:
    # the run starts at 08:00 Beijing time: its first Beijing day has 16 hours, the next ones 24
    v = np.full(88, 25.0, np.float32)
    for d in hot_days_:
        v[max(0, 24 * d - 8 + 14)] = 36.0  # 14-15 Beijing time of day d (day 0 starts 8 h before the run)
    r = evaluate(
        "heat", {"air_temperature_max": series("air_temperature_max", v)}, criteria, reference_time=REFERENCE
    )
    assert prob(r, "yellow") == expected
    assert r.evidence["levels"]["yellow"]["days"]["2024-07-01"] == {"covered_h": 16.0, "counted": False}


def test_daily_maxima_count_as_covering_their_whole_day(criteria: Criteria) -> None:
    # daily maxima stamped at the end of each Beijing day (16:00 UTC)
    da = series("air_temperature_max", [36.0, 36.0, 36.0], start="2024-07-01T16:00", hours=24)
    r = evaluate("heat", {"air_temperature_max": da}, criteria, reference_time=BEIJING_MIDNIGHT)
    assert prob(r, "yellow") == 1.0


@pytest.mark.parametrize(("hour", "expected"), [(24, 1.0), (25, 0.0)])
def test_orange_heat_counts_37_degc_within_24_hours_but_not_at_hour_25(
    criteria: Criteria, hour: int, expected: float
) -> None:
    da = hourly_with("air_temperature_max", 30, 30.0, {hour - 1: 37.0})
    r = evaluate("heat", {"air_temperature_max": da}, criteria, reference_time=REFERENCE)
    assert prob(r, "orange") == expected
    assert prob(r, "red") == 0.0


def test_a_red_heat_cell_counts_for_orange_and_yellow_too(criteria: Criteria) -> None:
    da = hourly_with("air_temperature_max", 30, 30.0, {5: 40.0})
    r = evaluate("heat", {"air_temperature_max": da}, criteria, reference_time=REFERENCE)
    assert r.levels == ("yellow", "orange", "red")
    assert r.probability.values[:, 0, 0].tolist() == [1.0, 1.0, 1.0]


# ---------------------------------------------------------------- rainstorm


def rain(values: list[float], **kw: object) -> dict[str, xr.DataArray]:
    return {"precipitation": series("precipitation", values, **kw)}  # type: ignore[arg-type]


@pytest.mark.parametrize(("fifth_hour", "expected"), [(9.9, 0.0), (10.0, 1.0)])
def test_yellow_rain_needs_50_mm_in_6_hours_not_49_9(
    criteria: Criteria, fifth_hour: float, expected: float
) -> None:
    r = evaluate(
        "rainstorm", rain([10, 10, 10, 10, fifth_hour] + [0] * 19), criteria, reference_time=REFERENCE
    )
    assert prob(r, "yellow") == expected
    assert prob(r, "blue") == expected
    assert prob(r, "orange") == 0.0


def test_the_3_hour_window_straddling_two_files_is_seen_on_the_joined_series(criteria: Criteria) -> None:
    first = series("precipitation", [0] * 10 + [20, 20])  # valid ref+1 .. ref+12
    second = series("precipitation", [20] + [0] * 11, start=at(13))  # ref+13 .. ref+24
    for alone in (first, second):
        r = evaluate("rainstorm", {"precipitation": alone}, criteria, reference_time=REFERENCE)
        assert prob(r, "orange") == 0.0
    joined = xr.concat([first, second], dim="time")
    r = evaluate("rainstorm", {"precipitation": joined}, criteria, reference_time=REFERENCE)
    assert prob(r, "orange") == 1.0
    assert r.onset.sel(level="orange").values[0, 0] == at(10)
    assert r.end.sel(level="orange").values[0, 0] == at(13)


@pytest.mark.parametrize(
    ("amounts", "expected"),
    [([33.3, 33.3, 33.3], 0.0), ([40.0, 30.0, 30.0], 1.0), ([33.3, 33.3, 33.4], 1.0)],
    ids=["99.9 mm", "100 mm", "100 mm summed in float32 to 99.99999"],
)
def test_red_rain_needs_100_mm_in_3_hours_not_99_9(
    criteria: Criteria, amounts: list[float], expected: float
) -> None:
    r = evaluate("rainstorm", rain(amounts + [0] * 21), criteria, reference_time=REFERENCE)
    assert prob(r, "red") == expected
    assert prob(r, "orange") == 1.0


@pytest.mark.parametrize(
    ("hours", "amounts", "level", "expected", "used", "note"),
    [
        (3, [0, 30, 25, 0, 0, 0, 0, 0], "yellow", 1.0, [6.0], None),
        (3, [0, 30, 25, 0, 0, 0, 0, 0], "orange", 0.0, [3.0], None),
        (6, [0, 55, 0, 0], "orange", 1.0, [6.0], "longer than the 3 h window"),
        (2, [0, 30, 25, 0] + [0] * 8, "orange", 1.0, [4.0], "not a whole number"),
    ],
    ids=["6 h over 3 h steps", "3 h over 3 h steps", "3 h over 6 h steps", "3 h over 2 h steps"],
)
def test_rain_windows_use_whole_steps_and_say_so(
    criteria: Criteria,
    hours: int,
    amounts: list[float],
    level: str,
    expected: float,
    used: list[float],
    note: str | None,
) -> None:
    r = evaluate("rainstorm", rain(amounts, start=at(hours), hours=hours), criteria, reference_time=REFERENCE)
    assert prob(r, level) == expected
    ev = r.evidence["levels"][level]
    assert ev["window_used_h"] == used
    if note:
        assert note in ev["window_note"]
    else:
        assert "window_note" not in ev


def test_a_rain_window_with_a_missing_step_is_missing_not_dry(criteria: Criteria) -> None:
    r = evaluate("rainstorm", rain([np.nan] * 24), criteria, reference_time=REFERENCE)
    assert np.isnan(r.probability.values).all()
    r = evaluate("rainstorm", rain([30, np.nan, 30] + [0] * 21), criteria, reference_time=REFERENCE)
    assert prob(r, "orange") == 0.0  # every 3 h window holding 60 mm also holds the gap


def test_a_rain_period_reaching_the_horizon_is_followed_past_it(criteria: Criteria) -> None:
    amounts = [0.0] * 40
    for i in range(20, 31):  # 20 mm an hour, valid ref+21 .. ref+31
        amounts[i] = 20.0
    r = evaluate("rainstorm", rain(amounts), criteria, reference_time=REFERENCE)
    assert prob(r, "orange") == 1.0
    assert r.onset.sel(level="orange").values[0, 0] == at(20)  # start of the window (20, 23]
    assert r.end.sel(level="orange").values[0, 0] == at(31)  # beyond the 24 h horizon


# ---------------------------------------------------------------- frost

JULY = REFERENCE
JANUARY = np.datetime64("2024-01-15T00:00", "ns")


@pytest.mark.parametrize(
    ("minimum", "levels"), [(-2.9, [1.0, 0.0, 0.0]), (-3.0, [1.0, 1.0, 0.0]), (-5.0, [1.0, 1.0, 1.0])]
)
def test_frost_levels_are_ground_minima_at_or_below_0_minus_3_and_minus_5(
    criteria: Criteria, minimum: float, levels: list[float]
) -> None:
    da = hourly_with("ground_temperature_min", 30, 5.0, {10: minimum})
    r = evaluate("frost", {"ground_temperature_min": da}, criteria, reference_time=JULY)
    assert r.levels == ("blue", "yellow", "orange")
    assert r.probability.values[:, 0, 0].tolist() == levels


@pytest.mark.parametrize(
    ("reference", "suppressed"),
    [(JULY, False), (JANUARY, True), (np.datetime64("2024-03-31T20:00", "ns"), False)],
    ids=["July", "January", "20:00 UTC on 31 March is April in Beijing"],
)
def test_frost_is_suppressed_outside_the_growing_season(
    criteria: Criteria, reference: np.datetime64, suppressed: bool
) -> None:
    da = hourly_with("ground_temperature_min", 30, -10.0, {}, start=reference + HOUR)
    r = evaluate("frost", {"ground_temperature_min": da}, criteria, reference_time=reference)
    if suppressed:
        assert r.suppressed is not None and "months 4, 5, 6, 7, 8, 9, 10" in r.suppressed
        assert (r.probability.values == 0).all() and np.isnat(r.onset.values).all()
        assert r.evidence["suppressed"] == r.suppressed
    else:
        assert r.suppressed is None
        assert (r.probability.values == 1).all()


def test_frost_from_2_m_minimum_uses_the_labelled_offset_model(criteria: Criteria) -> None:
    da = hourly_with("air_temperature_min", 30, 5.0, {10: -1.0})  # ground -3.0
    r = evaluate("frost", {"air_temperature_min": da}, criteria, reference_time=JULY)
    assert r.probability.values[:, 0, 0].tolist() == [1.0, 1.0, 0.0]
    assert r.evidence["offset_model"].startswith("ground_temperature_min = air_temperature_min - 2 degC")
    assert r.evidence["variable"]["quantity"] == "air_temperature_min"


def test_frost_prefers_a_ground_surface_minimum_over_the_offset_model(criteria: Criteria) -> None:
    data = {
        "air_temperature_min": hourly_with("air_temperature_min", 30, -5.0, {}),
        "ground_temperature_min": hourly_with("ground_temperature_min", 30, 1.0, {}),
    }
    r = evaluate("frost", data, criteria, reference_time=JULY)
    assert prob(r, "blue") == 0.0
    assert r.evidence["variable"]["source_variable"] == "ground_temperature_min"
    assert "offset_model" not in r.evidence


@pytest.mark.parametrize(("hour", "blue", "yellow"), [(40, 1.0, 0.0), (20, 1.0, 1.0), (49, 0.0, 0.0)])
def test_blue_frost_looks_48_hours_ahead_and_yellow_24(
    criteria: Criteria, hour: int, blue: float, yellow: float
) -> None:
    da = hourly_with("ground_temperature_min", 60, 5.0, {hour - 1: -4.0})
    r = evaluate("frost", {"ground_temperature_min": da}, criteria, reference_time=JULY)
    assert (prob(r, "blue"), prob(r, "yellow")) == (blue, yellow)


# ---------------------------------------------------------------- sandstorm


def sand(
    visibility: dict[int, float], gust: float | dict[int, float] | None, wind: float | None = None
) -> dict[str, xr.DataArray]:
    data = {"visibility": hourly_with("visibility", 12, 20000.0, visibility)}
    if gust is not None:
        data["wind_gust"] = (
            hourly_with("wind_gust", 12, 3.0, gust)
            if isinstance(gust, dict)
            else series("wind_gust", [gust] * 12)
        )
    if wind is not None:
        data["wind_speed"] = series("wind_speed", [wind] * 12)
    return data


@pytest.mark.parametrize(("visibility", "expected"), [(999.0, 1.0), (1000.0, 0.0)])
def test_a_sandstorm_is_visibility_below_1000_m_not_at_it(
    criteria: Criteria, visibility: float, expected: float
) -> None:
    r = evaluate("sandstorm", sand({3: visibility}, 12.0), criteria, reference_time=REFERENCE)
    assert prob(r, "yellow") == expected
    assert prob(r, "orange") == 0.0


@pytest.mark.parametrize(("visibility", "levels"), [(499.0, [1.0, 1.0, 0.0]), (49.0, [1.0, 1.0, 1.0])])
def test_severe_and_extreme_sandstorms_are_below_500_and_50_m(
    criteria: Criteria, visibility: float, levels: list[float]
) -> None:
    r = evaluate("sandstorm", sand({3: visibility}, 12.0), criteria, reference_time=REFERENCE)
    assert r.probability.values[:, 0, 0].tolist() == levels


def test_low_visibility_in_calm_air_is_fog_not_a_sandstorm(criteria: Criteria) -> None:
    r = evaluate("sandstorm", sand({3: 300.0}, 3.0, wind=2.0), criteria, reference_time=REFERENCE)
    assert (r.probability.values == 0).all()
    assert "fog" in r.evidence["dust_raised_by"]["rule"]


@pytest.mark.parametrize(("gust", "wind", "expected"), [(10.0, None, 1.0), (None, 6.0, 1.0), (9.9, 5.9, 0.0)])
def test_a_gust_of_10_or_a_mean_wind_of_6_m_s_raises_dust(
    criteria: Criteria, gust: float | None, wind: float | None, expected: float
) -> None:
    data = sand({3: 800.0}, gust, wind=wind) if gust is not None else sand({3: 800.0}, None, wind=wind)
    r = evaluate("sandstorm", data, criteria, reference_time=REFERENCE)
    assert prob(r, "yellow") == expected


def test_wind_must_blow_at_the_valid_time_of_the_low_visibility(criteria: Criteria) -> None:
    r = evaluate("sandstorm", sand({3: 800.0}, {6: 15.0}), criteria, reference_time=REFERENCE)
    assert prob(r, "yellow") == 0.0


def test_visibility_without_wind_or_dust_cannot_be_assessed(criteria: Criteria) -> None:
    with pytest.raises(MissingInputError, match="fog, not a sandstorm"):
        evaluate("sandstorm", sand({3: 800.0}, None), criteria, reference_time=REFERENCE)


@pytest.mark.parametrize(
    ("value", "units", "expected"), [(3000.0, "ug m-3", 1.0), (3.0, "mg m-3", 1.0), (1500.0, "ug m-3", 0.0)]
)
def test_dust_concentration_raises_dust_in_its_own_units(
    criteria: Criteria, value: float, units: str, expected: float
) -> None:
    data = sand({3: 800.0}, 2.0)
    data["dust_concentration"] = series("dust_concentration", [value] * 12, units=units)
    r = evaluate("sandstorm", data, criteria, reference_time=REFERENCE)
    assert prob(r, "yellow") == expected
    assert r.evidence["dust_raised_by"]["dust_concentration"]["ge"] == (
        "2000 ug m-3" if units == "ug m-3" else "2 mg m-3"
    )


def test_dust_optical_depth_is_not_compared_with_a_concentration(criteria: Criteria) -> None:
    data = sand({3: 800.0}, None)
    data["dust_concentration"] = series("dust_concentration", [3.0] * 12, units="1")
    with pytest.raises(MissingInputError, match="cannot be compared"):
        evaluate("sandstorm", data, criteria, reference_time=REFERENCE)


# ---------------------------------------------------------------- ensembles, onset and end


def orange_rain_members(n: int, wet: set[int], at_step: int = 5) -> dict[str, xr.DataArray]:
    rows = []
    for m in range(n):
        v = [0.0] * 24
        if m in wet:
            v[at_step : at_step + 3] = [20.0, 20.0, 20.0]
        rows.append(v)
    return {"precipitation": ensemble("precipitation", rows)}


def test_three_of_ten_members_give_a_probability_of_0_3(criteria: Criteria) -> None:
    r = evaluate("rainstorm", orange_rain_members(10, {1, 4, 7}), criteria, reference_time=REFERENCE)
    assert r.probability.dtype == np.float32
    assert prob(r, "orange") == pytest.approx(0.3)
    assert prob(r, "red") == 0.0
    assert r.evidence["members"] == 10


def test_a_member_missing_at_a_cell_leaves_the_denominator(criteria: Criteria) -> None:
    data = orange_rain_members(10, {1, 4, 7})
    data["precipitation"].values[:, 9, 0, 0] = np.nan
    r = evaluate("rainstorm", data, criteria, reference_time=REFERENCE)
    assert prob(r, "orange", 0, 0) == np.float32(3 / 9)
    assert prob(r, "orange", 1, 1) == np.float32(3 / 10)


def test_a_cell_missing_in_every_member_has_no_probability(criteria: Criteria) -> None:
    data = orange_rain_members(4, {1})
    data["precipitation"].values[:, :, 1, 2] = np.nan
    r = evaluate("rainstorm", data, criteria, reference_time=REFERENCE)
    assert np.isnan(r.probability.values[:, 1, 2]).all()
    assert np.isnat(r.onset.values[:, 1, 2]).all()
    assert prob(r, "orange", 0, 0) == 0.25


def test_onset_is_the_earliest_and_end_the_latest_over_members(criteria: Criteria) -> None:
    rows = [[0.0] * 24 for _ in range(3)]
    rows[0][2:5] = [20.0, 20.0, 20.0]  # (ref+2, ref+5]
    rows[2][10:13] = [20.0, 20.0, 20.0]  # (ref+10, ref+13]
    r = evaluate(
        "rainstorm", {"precipitation": ensemble("precipitation", rows)}, criteria, reference_time=REFERENCE
    )
    assert prob(r, "orange") == np.float32(2 / 3)
    assert r.onset.sel(level="orange").values[0, 0] == at(2)
    assert r.end.sel(level="orange").values[0, 0] == at(13)
    assert np.isnat(r.onset.sel(level="red").values).all()


def test_onset_of_a_step_is_the_start_of_its_interval_for_maxima_and_the_valid_time_otherwise(
    criteria: Criteria,
) -> None:
    r = evaluate(
        "heat",
        {"air_temperature_max": hourly_with("air_temperature_max", 30, 30.0, {9: 38.0})},
        criteria,
        reference_time=REFERENCE,
    )
    assert (r.onset.sel(level="orange").values[0, 0], r.end.sel(level="orange").values[0, 0]) == (
        at(9),
        at(10),
    )
    r = evaluate(
        "heat",
        {"air_temperature": hourly_with("air_temperature", 30, 30.0, {9: 38.0})},
        criteria,
        reference_time=REFERENCE,
    )
    assert (r.onset.sel(level="orange").values[0, 0], r.end.sel(level="orange").values[0, 0]) == (
        at(10),
        at(10),
    )


# ---------------------------------------------------------------- observed branch


def observed_rain(last_three_hours: list[float]) -> dict[str, xr.DataArray]:
    return {"precipitation": series("precipitation", [0.0, 0.0, 0.0, *last_three_hours], start=at(-5))}


@pytest.mark.parametrize(("forecast", "expected"), [([1.0, 1.5] + [0.0] * 22, 1.0), ([0.0] * 24, 0.0)])
def test_observed_rain_that_is_likely_to_continue_is_the_observed_branch(
    criteria: Criteria, forecast: list[float], expected: float
) -> None:
    r = evaluate(
        "rainstorm",
        rain(forecast),
        criteria,
        reference_time=REFERENCE,
        observations=observed_rain([20, 20, 20]),
    )
    assert r.branch == "observed"
    assert r.probability.values[:, 0, 0].tolist() == [expected, expected, expected, 0.0]
    if expected:
        assert r.onset.sel(level="orange").values[0, 0] == at(-3)
        assert r.end.sel(level="orange").values[0, 0] == at(3)
    assert r.evidence["observed"]["continue_ge"] == "2 mm"


def test_the_observed_branch_is_missing_where_there_are_no_observations(criteria: Criteria) -> None:
    obs = observed_rain([20, 20, 20])
    obs["precipitation"].values[:, 1, 2] = np.nan
    r = evaluate("rainstorm", rain([3.0] * 24), criteria, reference_time=REFERENCE, observations=obs)
    assert np.isnan(r.probability.values[:, 1, 2]).all()
    assert prob(r, "orange") == 1.0


def test_observed_frost_continuing_below_zero_is_the_observed_branch(criteria: Criteria) -> None:
    obs = {"ground_temperature_min": series("ground_temperature_min", [2.0, -3.5, 1.0], start=at(-10))}
    fc = {"air_temperature_min": hourly_with("air_temperature_min", 30, 8.0, {15: 1.0})}  # ground -1.0
    r = evaluate("frost", fc, criteria, reference_time=JULY, observations=obs)
    assert r.probability.values[:, 0, 0].tolist() == [1.0, 1.0, 0.0]
    assert (
        "offset_model" in r.evidence
        and r.evidence["observed"]["observations"]["variable"]["quantity"] == "ground_temperature_min"
    )


def test_evaluate_all_skips_hazards_without_data_and_adds_observed_branches(criteria: Criteria) -> None:
    out = evaluate_all(
        rain([3.0] * 24), criteria, reference_time=REFERENCE, observations=observed_rain([20, 20, 20])
    )
    assert set(out) == {"rainstorm", "rainstorm/observed"}
    assert out["rainstorm"].branch == "forecast" and out["rainstorm/observed"].branch == "observed"


# ---------------------------------------------------------------- inputs


def test_an_unknown_hazard_is_a_value_error(criteria: Criteria) -> None:
    with pytest.raises(ValueError, match="unknown hazard 'typhoon'"):
        evaluate("typhoon", rain([1.0]), criteria, reference_time=REFERENCE)


def test_a_hazard_without_its_variable_says_what_it_needs(criteria: Criteria) -> None:
    with pytest.raises(MissingInputError, match="heat needs one of air_temperature_max, air_temperature"):
        evaluate("heat", rain([1.0]), criteria, reference_time=REFERENCE)


def test_variables_on_different_grids_are_refused(criteria: Criteria) -> None:
    data = sand({3: 800.0}, 12.0)
    data["wind_gust"] = data["wind_gust"].assign_coords(lon=data["wind_gust"].lon + 0.5)
    with pytest.raises(HazardInputError, match="not on the same lat/lon grid"):
        evaluate("sandstorm", data, criteria, reference_time=REFERENCE)


def test_evidence_names_the_reference_time_thresholds_and_source(criteria: Criteria) -> None:
    r = evaluate("rainstorm", rain([0.0] * 24), criteria, reference_time=REFERENCE)
    ev = r.evidence
    assert ev["reference_time"] == "2024-07-01T00:00:00Z"
    assert ev["levels"]["yellow"]["ge"] == "50 mm" and ev["levels"]["yellow"]["window"] == "6 h"
    assert ev["variable"]["source_files"] == "test_precipitation.nc"
    assert ev["criteria"]["files"] == list(criteria.files)


@pytest.mark.parametrize("hazard", hz.HAZARDS)
def test_evidence_of_both_branches_is_plain_json(criteria: Criteria, hazard: str) -> None:
    data = random_inputs(members=0)
    observations = {
        k: v.isel(time=slice(0, 3)).assign_coords(time=valid_times(3, start=at(-2))) for k, v in data.items()
    }
    for obs in (None, observations):
        r = evaluate(hazard, data, criteria, reference_time=REFERENCE, observations=obs)
        assert json.loads(json.dumps(r.evidence))["branch"] == r.branch


# ---------------------------------------------------------------- kernels against the reference

_VALUES = st.one_of(
    st.sampled_from([-5.0, 0.0, 5.0, 10.0, 20.0, 35.0, 50.0, np.nan]), st.floats(-10, 60, width=32)
)
_THRESHOLDS = st.sampled_from([-5.0, 0.0, 5.0, 10.0, 20.0, 35.0, 50.0, 70.0])


@st.composite
def kernel_cases(draw: st.DrawFn) -> tuple[np.ndarray, tuple[np.ndarray, ...], hz._Plan]:
    n_members, n_times, n_cells = draw(st.integers(1, 3)), draw(st.integers(1, 30)), draw(st.integers(1, 7))
    steps = np.array(draw(st.lists(st.sampled_from([1, 2, 3, 6]), min_size=n_times, max_size=n_times)))
    origin = np.datetime64("2024-06-30T00:00", "ns") + np.timedelta64(draw(st.integers(0, 23)), "h")
    times = origin + np.cumsum(steps).astype("timedelta64[h]")
    reference = int((origin + np.timedelta64(draw(st.integers(-6, 30)), "h")).astype(np.int64))
    axis = hz._time_axis(times, reference, draw(st.booleans()), "test")
    x = draw(arrays(np.float32, (n_members, n_times, n_cells), elements=_VALUES))
    specs = []
    for i in range(draw(st.integers(1, 4))):
        h0 = reference + draw(st.integers(-12, 12)) * 3_600_000_000_000
        specs.append(
            hz._Spec(
                name=f"level{i}",
                kind=draw(st.sampled_from([hz._STEP, hz._WINDOW, hz._DAYS])),
                comparison=draw(st.sampled_from(["ge", "gt", "le", "lt"])),
                threshold=draw(_THRESHOLDS),
                h0=h0,
                h1=h0 + draw(st.integers(0, 72)) * 3_600_000_000_000,
                window_ns=draw(st.integers(1, 12)) * 3_600_000_000_000,
                n_days=draw(st.integers(1, 3)),
                gated=draw(st.booleans()),
            )
        )
    gates, gate_thr = [], []
    for _ in range(3):
        if draw(st.booleans()):
            shape = (draw(st.sampled_from([1, n_members])), n_times, n_cells)
            gates.append(draw(arrays(np.float32, shape, elements=st.sampled_from([0.0, 5.0, 12.0, np.nan]))))
            gate_thr.append(draw(st.sampled_from([5.0, 10.0])))
        else:
            gates.append(hz._NO_GATE)
            gate_thr.append(np.nan)
    plan, _, _ = hz._build_plan(
        specs,
        axis,
        utc_offset_ns=draw(st.sampled_from([0, 8, -5])) * 3_600_000_000_000,
        min_day_coverage_h=draw(st.sampled_from([1.0, 6.0, 18.0])),
        gate_thr=np.array(gate_thr),
        shift=draw(st.sampled_from([0.0, 2.0])),
        at_least=draw(st.booleans()),
    )
    return x, tuple(gates), plan


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernel_cases())
def test_the_numba_kernels_equal_the_numpy_reference_on_random_data(case: tuple) -> None:
    x, gates, plan = case
    expected = reference_kernel(x, gates, plan)
    for parallel in (False, True):
        got = hz._run_kernel(x, gates, plan, parallel=parallel)
        for g, e in zip(got, expected, strict=True):
            np.testing.assert_array_equal(g, e)


def time_major(a: np.ndarray) -> np.ndarray:
    """The same (M, T, C) values as a transposed view of a C-contiguous (T, M, C) buffer (as `_unpack` gives
    ``(time, member, lat, lon)`` data)."""
    return np.ascontiguousarray(a.transpose(1, 0, 2)).transpose(1, 0, 2)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kernel_cases())
def test_the_numba_kernels_give_the_same_on_time_major_inputs(case: tuple) -> None:
    x, gates, plan = case
    expected = hz._run_kernel(x, gates, plan, parallel=False)
    got = hz._run_kernel(time_major(x), tuple(time_major(g) for g in gates), plan, parallel=False)
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_time_major_ensembles_and_one_member_gates_are_read_in_place() -> None:
    rng = np.random.default_rng(11)
    n_members, n_times, n_cells = 4, 40, 2 * hz.CHUNK_CELLS + 37  # several chunks, the last one partial
    origin = np.datetime64("2024-06-30T16:00", "ns")
    axis = hz._time_axis(
        origin + np.arange(1, n_times + 1) * np.timedelta64(1, "h"),
        int(origin.astype(np.int64)),
        True,
        "test",
    )
    h0 = int(origin.astype(np.int64))
    specs = [
        hz._Spec("gated step", hz._STEP, "le", 20.0, h0, h0 + 24 * hz._HOUR_NS, gated=True),
        hz._Spec("window", hz._WINDOW, "ge", 60.0, h0, h0 + 30 * hz._HOUR_NS, window_ns=3 * hz._HOUR_NS),
        hz._Spec("days", hz._DAYS, "ge", 38.0, h0, h0 + 48 * hz._HOUR_NS, n_days=1),
    ]
    plan, _, _ = hz._build_plan(
        specs,
        axis,
        utc_offset_ns=8 * hz._HOUR_NS,
        min_day_coverage_h=6.0,
        gate_thr=np.array([12.0, 10.0, 5.0]),
        shift=0.0,
        at_least=False,
    )
    level = rng.uniform(0, 40, (n_members, 1, n_cells))  # each member and cell near its own level
    x = (level + rng.normal(0, 2, (n_members, n_times, n_cells))).astype(np.float32)
    x[rng.random(x.shape) < 0.02] = np.nan
    g0 = rng.uniform(0, 20, (n_members, n_times, n_cells)).astype(np.float32)  # ensemble gust
    g1 = rng.uniform(0, 15, (1, n_times, n_cells)).astype(np.float32)  # deterministic wind: one member
    g2 = rng.uniform(0, 6, (n_members, n_times, n_cells)).astype(np.float32)
    expected = reference_kernel(x, (g0, g1, g2), plan)
    assert all(0 < np.nanmean(p) < 1 for p in expected[0])  # every level reached in some members only

    tx, t0, t2 = time_major(x), time_major(g0), time_major(g2)
    assert not tx.flags.c_contiguous and np.shares_memory(hz._flat(tx)[0], tx)  # no layout copy
    assert hz._flat(tx)[1:] == (n_cells, n_members * n_cells) and hz._flat(g1)[1:] == (0, n_cells)
    read_only = time_major(x)
    read_only.flags.writeable = False
    layouts = {
        "member-major": (x, (g0, g1, g2)),
        "time-major": (tx, (t0, g1, t2)),
        "mixed": (tx, (g0, g1, t2)),
        "read-only time-major": (read_only, (t0, g1, t2)),
        "float64 time-major": (time_major(x.astype(np.float64)), (t0, g1, t2)),
        "strided": (x[:, :, ::-1], (g0[:, :, ::-1], g1[:, :, ::-1], g2[:, :, ::-1])),
    }
    for name, (data, gates) in layouts.items():
        for parallel in (False, True):
            got = hz._run_kernel(data, gates, plan, parallel=parallel)
            want = expected if name != "strided" else tuple(a[:, ::-1] for a in expected)
            for g, e in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, e, err_msg=f"{name}, parallel={parallel}")


def test_a_gate_of_the_wrong_shape_is_refused_before_the_kernel_reads_it() -> None:
    axis = hz._time_axis(valid_times(3), int(REFERENCE.astype(np.int64)), True, "test")
    h0 = int(REFERENCE.astype(np.int64))
    spec = hz._Spec("s", hz._STEP, "le", 1.0, h0, h0 + 3 * hz._HOUR_NS, gated=True)
    plan, _, _ = hz._build_plan(
        [spec],
        axis,
        utc_offset_ns=0,
        min_day_coverage_h=1.0,
        gate_thr=np.array([1.0, np.nan, np.nan]),
        shift=0.0,
        at_least=False,
    )
    x = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="does not match"):
        hz._run_kernel(x, (np.zeros((2, 3, 5), np.float32), hz._NO_GATE, hz._NO_GATE), plan)


# ---------------------------------------------------------------- tiles


def random_inputs(members: int = 3) -> dict[str, xr.DataArray]:
    rng = np.random.default_rng(7)
    return {
        "precipitation": random_field(rng, "precipitation", 36, members=members),
        "air_temperature_max": random_field(
            rng, "air_temperature_max", 36, members=members, scale=3, offset=35
        ),
        "ground_temperature_min": random_field(rng, "ground_temperature_min", 36, members=members, scale=3),
        "visibility": random_field(rng, "visibility", 36, members=members, scale=600, offset=900),
        "wind_gust": random_field(rng, "wind_gust", 36, members=members, scale=4, offset=9),
    }


@pytest.mark.parametrize("hazard", hz.HAZARDS)
def test_a_tile_gives_exactly_the_slice_of_the_whole_grid(criteria: Criteria, hazard: str) -> None:
    data = random_inputs()
    whole = evaluate(hazard, data, criteria, reference_time=REFERENCE)
    assert 0 < float(np.nanmean(whole.probability.values)) < 1  # the random grid exercises the criterion
    tile = {k: v.isel(lat=slice(1, 4), lon=slice(2, 7)) for k, v in data.items()}
    part = evaluate(hazard, tile, criteria, reference_time=REFERENCE)
    for name in ("probability", "onset", "end"):
        xr.testing.assert_identical(
            getattr(part, name), getattr(whole, name).isel(lat=slice(1, 4), lon=slice(2, 7))
        )


@pytest.mark.parametrize("hazard", ["rainstorm", "sandstorm"])
def test_dask_map_blocks_over_tiles_equals_the_whole_grid(criteria: Criteria, hazard: str) -> None:
    ds = xr.Dataset(random_inputs()).chunk({"lat": 4, "lon": 3})
    out = xr.map_blocks(
        evaluate_tile,
        ds,
        kwargs={"hazard": hazard, "criteria": criteria, "reference_time": REFERENCE},
        template=tile_template(ds, hazard, criteria),
    ).compute(scheduler="threads")
    whole = evaluate(hazard, random_inputs(), criteria, reference_time=REFERENCE)
    for name in ("probability", "onset", "end"):
        np.testing.assert_array_equal(out[name].values, getattr(whole, name).values)


# ---------------------------------------------------------------- station observations

STATION_GRID = RegularGrid(lon_min=106.6, lat_min=39.3, step=0.1, nx=3, ny=2)


def test_station_rows_land_in_their_cells_in_canonical_units(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    path.write_text(
        "station_id,lon,lat,time,tmax[degC],vis[km],pre[mm]\n"
        "53512,106.65,39.35,2024-07-01T08:00+08:00,36.5,0.8,12\n"
        "53513,106.66,39.36,2024-07-01T00:00Z,37.5,1.2,\n"
        "53514,106.85,39.45,2024-07-01T00:00Z,30,20,0\n"
        "99999,120.0,30.0,2024-07-01T00:00Z,30,20,0\n",
        encoding="utf-8",
    )
    obs = read_station_csv(path, STATION_GRID)
    tmax = obs["air_temperature_max"]
    assert tmax.dims == ("time", "lat", "lon") and tmax.time.values.tolist() == [REFERENCE.astype(int)]
    assert float(tmax.values[0, 0, 0]) == 37.5  # two stations in one cell: the hotter
    assert float(tmax.values[0, 1, 2]) == 30.0
    assert np.isnan(tmax.values[0, 0, 1])
    assert float(obs["visibility"].values[0, 0, 0]) == 800.0  # the lower, in metres
    assert float(obs["precipitation"].values[0, 0, 0]) == 12.0  # the empty value is missing
    assert tmax.attrs["stations_outside_grid"] == 1 and tmax.attrs["original_units"] == "degC"


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ("53512,106.65,39.35,2024-07-01T08:00,36.5", "line 2: column 'time'"),
        ("53512,east,39.35,2024-07-01T00:00Z,36.5", "line 2: column 'lon'"),
        ("53512,106.65,39.35,2024-07-01T00:00Z,hot", "line 2: column 'tmax[degC]'"),
        ("53512,106.65,39.35,2024-07-01T00:00Z", "line 2: 4 fields"),
        (",106.65,39.35,2024-07-01T00:00Z,36", "line 2: column 'station_id'"),
    ],
)
def test_a_bad_station_row_is_one_line_naming_the_file_and_the_row(
    tmp_path: Path, row: str, problem: str
) -> None:
    path = tmp_path / "obs.csv"
    path.write_text(f"station_id,lon,lat,time,tmax[degC]\n{row}\n", encoding="utf-8")
    with pytest.raises(HazardInputError) as info:
        read_station_csv(path, STATION_GRID)
    assert "\n" not in str(info.value) and str(info.value).startswith(f"{path}: {problem}")


def test_station_columns_need_units_and_a_known_quantity(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    for header, problem in (
        ("tmax", "needs units"),
        ("humidity[1]", "not a known quantity"),
        ("tmax[mm]", "cannot be converted"),
    ):
        path.write_text(f"station_id,lon,lat,time,{header}\n", encoding="utf-8")
        with pytest.raises(HazardInputError, match=problem):
            read_station_csv(path, STATION_GRID)


def test_station_observations_drive_the_observed_branch(criteria: Criteria) -> None:
    text = "station_id,lon,lat,time,pre[mm]\n" + "".join(
        f"53512,106.65,39.35,{np.datetime_as_string(at(h), unit='m')}Z,20\n" for h in (-2, -1, 0)
    )
    obs = hz.stations_to_grid(text, STATION_GRID)
    r = evaluate("rainstorm", rain([3.0] * 24), criteria, reference_time=REFERENCE, observations=obs)
    assert prob(r, "orange", 0, 0) == 1.0
    assert np.isnan(prob(r, "orange", 1, 1))


def test_grid_field_factory_builds_canonical_ensembles() -> None:
    da = grid_field("precipitation", np.zeros((2, 3, 2, 3)), valid_times(2), members=True)
    assert da.dims == ("time", "member", "lat", "lon") and da.attrs["units"] == "mm"
