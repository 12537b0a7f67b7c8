"""Properties of the coverage model (`warnings_svc.coverage.model`) over random regions and evidence: coverage is
a share, never falls as time passes, the measured part never exceeds the whole, and the overlap models order
as they promise (complete overlap <= independence <= no overlap)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from warnings_svc.coverage.model import Area, Evidence, Reach, Region

START = datetime(2026, 7, 9, 8, tzinfo=UTC)
TOWNS = tuple(f"1503020{i:02d}000" for i in range(1, 5))
REGION_CODES = ("150300000000", "150302000000", *TOWNS)


def _region(populations: list[int]) -> Region:
    towns = [Area(code, "town", p, "150302000000") for code, p in zip(TOWNS, populations, strict=True)]
    return Region(
        [
            Area("150300000000", "city", sum(populations)),
            Area("150302000000", "district", sum(populations), "150300000000"),
            *towns,
        ]
    )


reaches = st.lists(
    st.builds(
        Reach,
        channel=st.sampled_from(["sms", "area_sms", "mqtt", "cell_broadcast", "relayers"]),
        area=st.sampled_from(REGION_CODES),
        people=st.floats(0, 50_000, allow_nan=False),
        basis=st.sampled_from(["measured", "estimated", "reported"]),
        at=st.integers(0, 3600).map(lambda s: START + timedelta(seconds=s)),
    ),
    max_size=25,
)
populations = st.lists(st.integers(0, 20_000), min_size=len(TOWNS), max_size=len(TOWNS))
warned = st.sampled_from([("150302000000",), (TOWNS[0],), (TOWNS[1], TOWNS[2]), ("150300000000",)])


@settings(max_examples=200, deadline=None)
@given(
    pops=populations,
    reach=reaches,
    areas=warned,
    times=st.lists(st.integers(0, 4000), min_size=2, max_size=5),
)
def test_coverage_is_a_share_grows_with_time_and_its_measured_part_is_within_it(
    pops, reach, areas, times
) -> None:
    evidence = Evidence(_region(pops), areas, reach)
    before = None
    for seconds in sorted(times):
        for overlap in ("independent", "maximum", "sum"):
            c = evidence.at(START + timedelta(seconds=seconds), overlap)  # type: ignore[arg-type]
            assert 0.0 <= c.measured <= c.public + 1e-9 <= 1.0 + 1e-9
            assert 0 <= c.reached <= c.population
            for a in c.by_area:
                assert 0.0 <= a.measured <= a.coverage + 1e-9 <= 1.0 + 1e-9
        now = evidence.at(START + timedelta(seconds=seconds))
        if before is not None:
            assert now.public >= before.public - 1e-9 and now.measured >= before.measured - 1e-9
        before = now


@settings(max_examples=200, deadline=None)
@given(pops=populations, reach=reaches, areas=warned)
def test_independence_lies_between_complete_overlap_and_none(pops, reach, areas) -> None:
    evidence = Evidence(_region(pops), areas, reach)
    when = START + timedelta(hours=2)
    lowest = evidence.at(when, "maximum").public
    middle = evidence.at(when, "independent").public
    highest = evidence.at(when, "sum").public
    assert lowest - 1e-9 <= middle <= highest + 1e-9


@settings(max_examples=100, deadline=None)
@given(pops=populations, reach=reaches, areas=warned, target=st.floats(0.01, 1.0))
def test_the_first_time_reaching_a_target_is_when_it_is_first_reached(pops, reach, areas, target) -> None:
    evidence = Evidence(_region(pops), areas, reach)
    first = evidence.first_reaching(target)
    final = evidence.at(START + timedelta(hours=2)).public
    if first is None:
        assert final < target
    else:
        at = datetime.fromtimestamp(first, UTC)
        assert evidence.at(at).public >= target
        assert evidence.at(at - timedelta(microseconds=1)).public < target
