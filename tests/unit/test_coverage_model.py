"""The coverage engine on a small region whose figures can be worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from warnings_svc.coverage.model import Area, Evidence, Reach, Region

T0 = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)

# a city of two districts: D1 with towns of 100 and 300 people, D2 with one town of 600
REGION = Region(
    [
        Area("150300000000", "city", 1000),
        Area("150302000000", "district", 400, "150300000000"),
        Area("150302001000", "town", 100, "150302000000"),
        Area("150302002000", "town", 300, "150302000000"),
        Area("150303000000", "district", 600, "150300000000"),
        Area("150303001000", "town", 600, "150303000000"),
    ]
)
D1, T1, T2, D2 = "150302000000", "150302001000", "150302002000", "150303000000"


def d1_evidence(area_sms_basis: str = "measured") -> Evidence:
    return Evidence(
        REGION,
        [D1],
        [
            Reach("area_sms", D1, 200, area_sms_basis, T0),  # half of the district, spread over its towns
            Reach("mqtt", T1, 50, "measured", LATER),  # half of the small town, later
            Reach("area_sms", D2, 600, "measured", T0),  # outside the warned district
        ],
    )


@pytest.mark.parametrize(
    ("overlap", "public", "small_town"),
    [("independent", 225 / 400, 0.75), ("maximum", 200 / 400, 0.5), ("sum", 250 / 400, 1.0)],
)
def test_channels_combine_per_town_under_the_stated_overlap_model(overlap, public, small_town) -> None:
    figure = d1_evidence().at(LATER, overlap)
    assert figure.public == pytest.approx(public)
    assert figure.population == 400 and figure.outside == 1
    towns = {a.code: a for a in figure.by_area}
    assert towns[T1].coverage == pytest.approx(small_town)
    assert towns[T2].coverage == pytest.approx(0.5)  # the district-wide figure alone
    assert towns[D1].coverage == pytest.approx(public)  # the district aggregates its towns by population
    assert figure.as_json()["method"]["overlap"] == overlap


def test_evidence_counts_from_the_time_it_arrived() -> None:
    evidence = d1_evidence()
    assert evidence.at(T0).public == pytest.approx(0.5)
    assert evidence.at(T0 - timedelta(seconds=1)).public == 0
    assert evidence.first_reaching(0.55) == LATER.timestamp()
    assert evidence.first_reaching(0.5) == T0.timestamp()
    assert evidence.first_reaching(0.9) is None


def test_measured_evidence_is_shown_apart_from_estimates() -> None:
    figure = d1_evidence(area_sms_basis="estimated").at(LATER)
    assert figure.measured == pytest.approx(50 / 400)  # the terminals alone
    assert figure.public == pytest.approx(225 / 400)
    channels = {c.channel: c for c in figure.by_channel}
    assert channels["area_sms"].basis == ("estimated",) and channels["area_sms"].people == 200


def test_a_share_above_the_population_is_capped_and_a_city_wide_figure_is_spread() -> None:
    evidence = Evidence(
        REGION,
        [D1],
        [Reach("sms", T1, 500, "measured", T0), Reach("radio_tv", "150300000000", 100, "estimated", T0)],
    )
    figure = evidence.at(T0)
    towns = {a.code: a for a in figure.by_area}
    assert towns[T1].coverage == 1.0  # 500 people counted in a town of 100
    assert towns[T2].coverage == pytest.approx(0.1)  # the city's 10 % stands for every warned town
    assert figure.public == pytest.approx((100 + 30) / 400)


def test_a_warning_without_evidence_reaches_nobody_and_unknown_areas_are_left_out() -> None:
    figure = Evidence(REGION, [D1, "159999000000"], [Reach("sms", "", 3, "measured", T0)]).at(T0)
    assert figure.public == 0 and figure.reached == 0 and figure.by_channel == ()
    assert [a.code for a in figure.by_area] == [D1, T1, T2] and figure.outside == 1
