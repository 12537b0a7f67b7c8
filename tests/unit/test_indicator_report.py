"""The yearly indicators' pure parts: districts from a figure's areas, the weighted mean, the year's bounds."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from warnings_svc.coverage.model import Area, Region
from warnings_svc.coverage.report import (
    AreaFigures,
    ReportError,
    SatisfactionRow,
    WarningCoverage,
    check_year,
    per_district,
    summarise,
    year_bounds,
)

REGION = Region(
    [
        Area("150300", "city", 600),
        Area("D1", "district", 400, "150300"),
        Area("T1", "town", 100, "D1"),
        Area("T2", "town", 300, "D1"),
        Area("D2", "district", 200, "150300"),
        Area("T3", "town", 200, "D2"),
    ]
)


def _figure(population: int, reached: int, level: str = "town") -> dict[str, object]:
    return {"level": level, "population": population, "reached": reached}


def test_a_district_listed_counts_as_it_is_and_otherwise_its_towns_add_up() -> None:
    # a warning for the whole city lists the city and its towns: the towns make the districts
    city = per_district({"150300": _figure(600, 480, "city"), "T1": _figure(100, 90), "T2": _figure(300, 210),
                         "T3": _figure(200, 180)}, REGION)  # fmt: skip
    assert (city.population, city.reached) == ({"D1": 400, "D2": 200}, {"D1": 300, "D2": 180})
    # a warning for a district lists it and its towns: the district's own figure, not twice
    district = per_district({"D1": _figure(400, 350, "district"), "T1": _figure(100, 50), "T2": _figure(300, 300)},
                            REGION)  # fmt: skip
    assert (district.population, district.reached) == ({"D1": 400}, {"D1": 350})


def _warning(final: dict[str, tuple[int, int]], early: dict[str, int]) -> WarningCoverage:
    return WarningCoverage(
        1,
        datetime(2025, 7, 1, tzinfo=UTC),
        0.95,
        AreaFigures({d: p for d, (p, _) in final.items()}, {d: r for d, (_, r) in final.items()}),
        AreaFigures({d: p for d, (p, _) in final.items()}, early),
        "snapshot",
    )


def test_each_warning_weighs_as_much_as_the_people_it_warned() -> None:
    # a small warning fully reached and a large one at 90 %: the mean of the ratios would be 95 %,
    # the population-weighted mean is (100 + 900) / 1100
    report = summarise(
        2025, 0.95, [_warning({"D1": (100, 100)}, {"D1": 50}), _warning({"D1": (1000, 900)}, {"D1": 100})], {}
    )
    d1, city = report.rows
    assert d1.coverage == pytest.approx(1000 / 1100) and d1.coverage_early == pytest.approx(150 / 1100)
    assert (d1.warnings, d1.met, d1.met_share) == (2, 1, 0.5)
    assert (city.code, city.population, city.reached) == ("city", 1100, 1000)


def test_points_on_100_are_the_mean_scaled_from_1_to_5() -> None:
    assert SatisfactionRow("x", "x", 3, 5.0).points == 100.0
    assert SatisfactionRow("x", "x", 3, 1.0).points == 0.0
    assert SatisfactionRow("x", "x", 4, 4.6).points == pytest.approx(90.0)
    assert SatisfactionRow("x", "x", 4, 4.6).meets_plan is True
    assert SatisfactionRow("x", "x", 0, None).points is None


def test_a_year_is_beijing_time_and_only_from_2000_to_now() -> None:
    start, end = year_bounds(2025)
    assert start.isoformat() == "2025-01-01T00:00:00+08:00" and end.isoformat() == "2026-01-01T00:00:00+08:00"
    now = datetime(2026, 12, 31, 17, tzinfo=UTC)  # already 2027 in Beijing
    check_year(2027, now=now)
    for year in (1999, 2028):
        with pytest.raises(ReportError, match=f"--year {year}: give a year from 2000 to 2027"):
            check_year(year, now=now)
