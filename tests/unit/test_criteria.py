"""Warning criteria: the national defaults, units converted at load, region overrides, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from risk_zoning import HAZARDS
from warnings_svc.forecast.criteria import CriteriaError, default_criteria_path, load_criteria


def write_override(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wuhai-criteria.toml"
    path.write_text(text, encoding="utf-8")
    return path


NATIONAL = [
    ("heat", "yellow", "ge", 35.0, "degC", 72.0, None, 3),
    ("heat", "orange", "ge", 37.0, "degC", 24.0, None, None),
    ("heat", "red", "ge", 40.0, "degC", 24.0, None, None),
    ("rainstorm", "blue", "ge", 50.0, "mm", 24.0, 12.0, None),
    ("rainstorm", "yellow", "ge", 50.0, "mm", 24.0, 6.0, None),
    ("rainstorm", "orange", "ge", 50.0, "mm", 24.0, 3.0, None),
    ("rainstorm", "red", "ge", 100.0, "mm", 24.0, 3.0, None),
    ("frost", "blue", "le", 0.0, "degC", 48.0, None, None),
    ("frost", "yellow", "le", -3.0, "degC", 24.0, None, None),
    ("frost", "orange", "le", -5.0, "degC", 24.0, None, None),
    ("sandstorm", "yellow", "lt", 1000.0, "m", 12.0, None, None),
    ("sandstorm", "orange", "lt", 500.0, "m", 6.0, None, None),
    ("sandstorm", "red", "lt", 50.0, "m", 6.0, None, None),
]


@pytest.mark.parametrize(
    ("hazard", "level", "comparison", "threshold", "units", "within", "window", "days"), NATIONAL
)
def test_the_packaged_defaults_are_the_national_cma_2007_criteria(
    hazard: str,
    level: str,
    comparison: str,
    threshold: float,
    units: str,
    within: float,
    window: float | None,
    days: int | None,
) -> None:
    levels = {lv.name: lv for lv in load_criteria().hazard(hazard).levels()}
    lv = levels[level]
    assert (lv.comparison, lv.threshold, lv.units, lv.within_h, lv.window_h, lv.consecutive_days) == (
        comparison,
        threshold,
        units,
        within,
        window,
        days,
    )


@pytest.mark.parametrize("hazard", HAZARDS)
def test_every_hazard_has_a_source_an_observed_branch_and_levels_weakest_first(hazard: str) -> None:
    hc = load_criteria().hazard(hazard)
    assert "CMA Order No. 16" in hc.source
    names = [lv.name for lv in hc.levels()]
    order = ["blue", "yellow", "orange", "red"]
    assert names == sorted(names, key=order.index)
    observed = hc.observed_criterion()
    assert observed.lookback_h > 0 and observed.continue_within_h > 0


def test_frost_is_assessed_in_the_growing_season_and_has_a_labelled_offset() -> None:
    c = load_criteria()
    assert c.frost.months == (4, 5, 6, 7, 8, 9, 10)
    assert c.frost.air_to_ground_offset == 2.0
    assert c.calendar.utc_offset == 8.0
    assert c.heat.min_day_coverage == 18.0


def test_sandstorm_needs_wind_or_dust_by_default() -> None:
    c = load_criteria()
    assert (c.sandstorm.gust_ge, c.sandstorm.wind_ge, c.sandstorm.dust_ge) == (10.0, 6.0, "2000 ug m-3")


def test_without_an_override_only_the_default_file_is_named() -> None:
    assert load_criteria().files == (str(default_criteria_path()),)


def test_an_override_changes_only_the_keys_it_names(tmp_path: Path) -> None:
    path = write_override(tmp_path, '[rainstorm.blue]\nge = "40 mm"\n\n[frost]\nmonths = [5, 6, 7, 8, 9]\n')
    c, d = load_criteria(path), load_criteria()
    assert c.rainstorm.levels()[0].threshold == 40.0
    assert c.rainstorm.levels()[0].window_h == 12.0  # merged, not replaced
    assert c.frost.months == (5, 6, 7, 8, 9)
    assert c.rainstorm.levels()[1:] == d.rainstorm.levels()[1:]
    assert c.heat == d.heat and c.sandstorm == d.sandstorm
    assert c.files == (str(default_criteria_path()), str(path))


def test_an_override_may_add_a_level_the_nation_does_not_have(tmp_path: Path) -> None:
    path = write_override(tmp_path, '[heat.blue]\nge = "33 degC"\nwithin = "24 h"\n')
    names = [lv.name for lv in load_criteria(path).heat.levels()]
    assert names == ["blue", "yellow", "orange", "red"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[frost]\nair_to_ground_offset = "3.6 degF"\n', ("frost", "air_to_ground_offset", 2.0)),
        ('[sandstorm.yellow]\nlt = "1.5 km"\n', ("sandstorm", "yellow", 1500.0)),
        ('[rainstorm]\nwithin = "0.5 day"\n', ("rainstorm", "blue", 12.0)),
        ('[sandstorm]\ngust_ge = "36 km h-1"\n', ("sandstorm", "gust_ge", 10.0)),
        ('[rainstorm.red]\nge = "0.1 m"\n', ("rainstorm", "red", 100.0)),
    ],
)
def test_thresholds_in_other_units_are_converted_to_canonical_units_at_load(
    tmp_path: Path, text: str, expected: tuple[str, str, float]
) -> None:
    c = load_criteria(write_override(tmp_path, text))
    hazard, key, value = expected
    hc = c.hazard(hazard)
    if key in ("blue", "yellow", "orange", "red"):
        lv = {lv.name: lv for lv in hc.levels()}[key]
        got = lv.within_h if "within" in text else lv.threshold
    else:
        got = getattr(hc, key)
    assert got == pytest.approx(value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[rainstorm.blue\nge = 1", "malformed TOML"),
        ('[typhoon.red]\nge = "50 m s-1"\n', "typhoon"),
        ('[rainstorm.purple]\nge = "50 mm"\nwindow = "1 h"\n', "rainstorm.purple"),
        ('[rainstorm.blue]\nmaximum = "50 mm"\n', "rainstorm.blue.maximum"),
        ('[rainstorm.orange]\nge = "40 mm"\n', "rainstorm.orange.ge"),
        ('[rainstorm.yellow]\nge = "60 mm"\n', "rainstorm.orange.ge"),
        ('[frost.orange]\nle = "-2 degC"\n', "frost.orange.le"),
        ('[sandstorm.red]\nlt = "600 m"\n', "sandstorm.red.lt"),
        ('[rainstorm.orange]\nwindow = "8 h"\n', "rainstorm.orange.window"),
        ("[heat.orange]\nge = 37\n", "heat.orange.ge"),
        ('[heat.orange]\nge = "37 mm"\n', "heat.orange.ge"),
        ('[heat.orange]\nge = "hot degC"\n', "heat.orange.ge"),
        ('[rainstorm.blue]\nwindow = "12 hours since 2000-01-01"\n', "rainstorm.blue.window"),
        ('[frost.yellow]\nlt = "-3 degC"\n', "frost.yellow"),
        ('[heat.blue]\nge = "33 degC"\n', "heat.blue.within"),
        ("[frost]\nmonths = [0, 4]\n", "frost.months"),
        ('[sandstorm.observed]\nlookback = "-3 h"\n', "sandstorm.observed.lookback"),
        ('[calendar]\nutc_offset = "20 h"\n', "calendar.utc_offset"),
        ('files = ["x"]\n', "files"),
    ],
)
def test_a_bad_override_is_one_line_naming_the_file_and_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = write_override(tmp_path, text)
    with pytest.raises(CriteriaError) as info:
        load_criteria(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    assert key in message


def test_a_weaker_stronger_level_names_both_thresholds(tmp_path: Path) -> None:
    path = write_override(tmp_path, '[rainstorm.orange]\nge = "40 mm"\n')
    with pytest.raises(CriteriaError, match=r"orange threshold 40 mm is weaker than yellow's 50 mm"):
        load_criteria(path)


def test_a_missing_override_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CriteriaError, match=r"nope\.toml: no such file"):
        load_criteria(tmp_path / "nope.toml")
