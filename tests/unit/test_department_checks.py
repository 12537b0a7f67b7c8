"""The departments CSV's checks of one row and of the file's text, without a database."""

from __future__ import annotations

import doctest

import pytest

import warnings_svc.dissemination.partners.registry
from risk_zoning.store import UnitRecord
from warnings_svc.dissemination.partners.registry import (
    COLUMNS,
    DepartmentError,
    DepartmentRowError,
    check_row,
    parse_csv,
)

UNITS = {
    code: UnitRecord(code, 0, name, name, level, None, 0, 0.0, "official", "official", {})
    for code, name, level in (
        ("150300000000", "乌海市", "city"),
        ("150302000000", "海勃湾区", "district"),
        ("150302001000", "某街道", "town"),
    )
}
ROW = {
    "code": "a",
    "name": "甲局",
    "sector": "water",
    "area": "150302",
    "duty_name": "甲",
    "duty_phone": "15404730011",
}


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(warnings_svc.dissemination.partners.registry).failed == 0


@pytest.mark.parametrize(
    ("changes", "column", "says"),
    [
        ({"code": "Wuhai Water"}, "code", "a-z, 0-9"),
        ({"code": "new"}, "code", "add form"),
        ({"name": ""}, "name", "required"),
        ({"name": "长" * 81}, "name", "longer than 80"),
        ({"sector": "police"}, "sector", "unknown sector"),
        ({"area": "1503"}, "area", "6-, 9- or 12-digit"),
        ({"area": "150399"}, "area", "not a unit"),
        ({"hazards": "heat;hail"}, "hazards", "unknown hazard 'hail'"),
        ({"min_level": "purple"}, "min_level", "unknown level"),
        ({"duty_phone": "0473-2001234"}, "duty_phone", "landline"),
        ({"duty_phone": ""}, "duty_phone", "the duty contact's phone is required"),
        ({"duty_email": "nobody"}, "duty_email", "not an email address"),
        ({"leader_phone": "15404730013"}, "leader_name", "the leader's name is required"),
        ({"deputy_email": "d@example.org"}, "deputy_phone", "the deputy's phone is required"),
    ],
)
def test_each_fault_of_a_row_is_named_by_its_column(changes: dict[str, str], column: str, says: str) -> None:
    with pytest.raises(DepartmentRowError) as caught:
        check_row(ROW | changes, UNITS)
    assert [p[0] for p in caught.value.problems].count(column) == 1
    assert any(c == column and says in reason for c, _, reason in caught.value.problems), (
        caught.value.problems
    )


def test_every_fault_of_a_row_is_reported_at_once_in_column_order() -> None:
    with pytest.raises(DepartmentRowError) as caught:
        check_row(ROW | {"leader_email": "x", "sector": "?", "code": ""}, UNITS)
    columns = [p[0] for p in caught.value.problems]
    assert columns == sorted(columns, key=COLUMNS.index)
    assert set(columns) == {"code", "sector", "leader_name", "leader_phone", "leader_email"}


def test_a_good_row_is_normalised() -> None:
    row = check_row(ROW | {"hazards": "暴雨；heat", "min_level": "橙色预警", "area": "150302001"}, UNITS)
    assert row.hazards == ("heat", "rainstorm") and row.min_level == "orange"
    assert row.area == "150302001000" and list(row.people) == ["duty"]


def test_comment_and_blank_lines_are_skipped_and_line_numbers_kept() -> None:
    text = "# synthetic\n\ncode,name,sector,area,duty_name,duty_phone\n# a note\nb,乙,water,150302,乙,15404730021\n"
    header, rows = parse_csv(text)
    assert header[0] == "code" and [(line, r["code"]) for line, r in rows] == [(5, "b")]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("# only a comment\n", "empty"),
        ("code,name\n", "missing column(s) sector, area, duty_name, duty_phone"),
        ("code,name,sector,area,duty_name,duty_phone,code\n", "given twice"),
        ("code\0\n", "NUL"),
    ],
)
def test_an_unusable_file_is_refused_in_one_line(text: str, says: str) -> None:
    with pytest.raises(DepartmentError) as caught:
        parse_csv(text, "f.csv")
    assert says in str(caught.value) and "\n" not in str(caught.value)
