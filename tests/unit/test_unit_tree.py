"""The assessment units' containment tree: order, ancestors, nesting."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from risk_zoning.store import UnitRecord
from risk_zoning.unit_tree import (
    ancestors,
    geocode,
    geocode_ancestors,
    inside_any,
    same_or_nested,
    tree_order,
)

CITY = "150300000000"
HAIBOWAN = "150302000000"
HAIBOWAN_TOWN = "150302001000"
HAIBOWAN_TOWN_2 = "150302002000"
HAINAN = "150303000000"
HAINAN_TOWN = "150303001000"
UNKNOWN = "150399000000"


def _unit(code: str, level: str, parent: str | None) -> UnitRecord:
    return UnitRecord(code, 0, code, code, level, parent, 100, 1.0, "official", "official", {})


def _city(towns_per_district: list[int]) -> list[UnitRecord]:
    """A city with districts 01, 02, ... each holding its given number of towns, codes as real geocodes."""
    units = [_unit(CITY, "city", None)]
    for d, towns in enumerate(towns_per_district, start=1):
        district = f"1503{d:02d}000000"
        units.append(_unit(district, "district", CITY))
        units += [_unit(f"1503{d:02d}{t:03d}000", "town", district) for t in range(1, towns + 1)]
    return units


UNITS = {
    u.code: u
    for u in [
        _unit(CITY, "city", None),
        _unit(HAIBOWAN, "district", CITY),
        _unit(HAIBOWAN_TOWN, "town", HAIBOWAN),
        _unit(HAIBOWAN_TOWN_2, "town", HAIBOWAN),
        _unit(HAINAN, "district", CITY),
        _unit(HAINAN_TOWN, "town", HAINAN),
    ]
}


def test_tree_order_lists_the_city_then_each_district_followed_by_its_towns() -> None:
    shuffled = list(reversed(UNITS.values()))
    assert [u.code for u in tree_order(shuffled)] == [
        CITY,
        HAIBOWAN,
        HAIBOWAN_TOWN,
        HAIBOWAN_TOWN_2,
        HAINAN,
        HAINAN_TOWN,
    ]


def test_a_unit_whose_parent_is_missing_is_a_root() -> None:
    units = [UNITS[HAINAN_TOWN], UNITS[HAIBOWAN_TOWN], UNITS[HAIBOWAN]]
    assert [u.code for u in tree_order(units)] == [HAIBOWAN, HAIBOWAN_TOWN, HAINAN_TOWN]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (HAIBOWAN_TOWN, [HAIBOWAN, CITY]),
        (HAIBOWAN, [CITY]),
        (CITY, []),
        (UNKNOWN, []),
    ],
)
def test_ancestors_are_the_units_around_a_code_nearest_first(code: str, expected: list[str]) -> None:
    assert ancestors(code, UNITS) == expected


def test_a_parent_outside_the_units_is_listed_and_ends_the_chain() -> None:
    units = {HAIBOWAN_TOWN: UNITS[HAIBOWAN_TOWN]}
    assert ancestors(HAIBOWAN_TOWN, units) == [HAIBOWAN]


def test_a_parent_chain_that_comes_back_on_itself_ends() -> None:
    units = {"a": _unit("a", "district", "b"), "b": _unit("b", "district", "a")}
    assert ancestors("a", units) == ["b"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (HAIBOWAN_TOWN, [HAIBOWAN, CITY]),
        (HAIBOWAN, [CITY]),
        (CITY, []),
    ],
)
def test_geocode_ancestors_come_from_the_digits_alone(code: str, expected: list[str]) -> None:
    assert geocode_ancestors(code) == expected


@pytest.mark.parametrize(
    ("a", "b", "nested"),
    [
        (HAIBOWAN_TOWN, HAIBOWAN_TOWN, True),
        (HAIBOWAN_TOWN, HAIBOWAN, True),
        (HAIBOWAN, HAIBOWAN_TOWN, True),
        (HAIBOWAN_TOWN, CITY, True),
        (CITY, HAINAN_TOWN, True),
        (HAIBOWAN_TOWN, HAIBOWAN_TOWN_2, False),
        (HAIBOWAN_TOWN, HAINAN, False),
        (HAIBOWAN, HAINAN, False),
        (UNKNOWN, CITY, False),
        (CITY, UNKNOWN, False),
        (UNKNOWN, UNKNOWN, True),
    ],
)
def test_two_units_are_nested_when_the_same_or_one_inside_the_other(a: str, b: str, nested: bool) -> None:
    assert same_or_nested(a, b, UNITS) is nested


@pytest.mark.parametrize(
    ("code", "codes", "inside"),
    [
        (HAIBOWAN_TOWN, {HAIBOWAN_TOWN, HAIBOWAN}, True),
        (HAIBOWAN_TOWN, {HAIBOWAN_TOWN, CITY}, True),
        (HAIBOWAN_TOWN, {HAIBOWAN_TOWN, HAINAN}, False),
        (HAIBOWAN, {HAIBOWAN, HAIBOWAN_TOWN}, False),
        (UNKNOWN, {CITY}, False),
    ],
)
def test_inside_any_means_strictly_inside_a_listed_unit(code: str, codes: set[str], inside: bool) -> None:
    assert inside_any(code, codes, UNITS) is inside


@given(
    towns_per_district=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=5),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_towns_inside_districts_inside_the_city_agree_with_their_geocodes(
    towns_per_district: list[int], seed: int
) -> None:
    units = _city(towns_per_district)
    by_code = {u.code: u for u in units}
    shuffled = random.Random(seed).sample(units, len(units))

    ordered = [u.code for u in tree_order(shuffled)]
    assert sorted(ordered) == sorted(by_code)
    assert ordered == sorted(ordered)  # geocodes sort parent first, then children by code
    for code in by_code:
        assert ancestors(code, by_code) == geocode_ancestors(code)
        for other in by_code:
            by_digits = code == other or code in geocode_ancestors(other) or other in geocode_ancestors(code)
            assert same_or_nested(code, other, by_code) is by_digits


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("150302", "150302000000"),
        ("150304011", "150304011000"),
        ("150302000000", "150302000000"),
        ("15030", None),
        ("1503020000000", None),
        ("15030a", None),
        ("１５０３０２", None),  # full-width digits: callers normalise first if they accept them
        ("", None),
    ],
)
def test_admin_codes_become_twelve_digit_geocodes(code: str, expected: str | None) -> None:
    assert geocode(code) == expected
