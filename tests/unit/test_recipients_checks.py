"""Recipients without a database: phones, one CSV row, the file's header and encoding, reach, alert fatigue."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

import warnings_svc.dissemination.recipients
from risk_zoning import HAZARDS
from risk_zoning.store import UnitRecord
from warnings_svc.dissemination.recipients import (
    CONSENT_RULE,
    RecipientCsvRow,
    RecipientError,
    RowError,
    check_phone,
    check_row,
    check_rows,
    decode_csv,
    needs_message,
    parse_csv,
    reach,
    read_csv_text,
    relevant_areas,
)

CITY = "150300000000"
HAIBOWAN = "150302000000"
HAIBOWAN_TOWN = "150302001000"
HAIBOWAN_TOWN_2 = "150302002000"
HAINAN = "150303000000"
HAINAN_TOWN = "150303001000"
NOW = datetime(2026, 7, 9, 8, tzinfo=UTC)
SAMPLE = Path(__file__).parents[1] / "data" / "recipients" / "sample.csv"


def _unit(code: str, level: str, parent: str | None) -> UnitRecord:
    return UnitRecord(code, 0, code, code, level, parent, 100, 1.0, "official", "official", {})


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


def _row(**fields: str) -> dict[str, str]:
    return {"name": "王芳", "phone": "13912345678", "areas": "150302", "roles": "relayer"} | fields


# ---------------------------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    "raw",
    [
        "13912345678",
        "139 1234 5678",
        "139-1234-5678",
        "+8613912345678",
        "+86 139 1234 5678",
        "0086 13912345678",
        "8613912345678",
        "(+86) 139.1234.5678",
        "１３９１２３４５６７８",  # full-width digits, as typed with a Chinese input method
    ],
)
def test_every_accepted_form_of_a_mobile_number_becomes_e164(raw: str) -> None:
    assert check_phone(raw) == "+8613912345678"


@pytest.mark.parametrize("raw", ["0473-2001234", "047320012345", "+86 473 200 1234", "2001234"])
def test_a_landline_is_rejected_because_it_cannot_receive_sms(raw: str) -> None:
    with pytest.raises(RecipientError, match="landline"):
        check_phone(raw)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "required"),
        ("1391234567", "not a Chinese mobile"),  # 10 digits
        ("12912345678", "not a Chinese mobile"),  # 12x is no mobile prefix
        ("+4479460000000", "only Chinese"),
        ("139x2345678", "other than digits"),
    ],
)
def test_other_phones_are_rejected_with_the_reason(raw: str, reason: str) -> None:
    with pytest.raises(RecipientError, match=reason):
        check_phone(raw)


# ---------------------------------------------------------------------------------------------- rows


def test_a_duty_row_is_normalised_and_registered_on_the_basis_of_the_duty() -> None:
    row = check_row(
        _row(areas="150302;150302001", roles="气象信息员|village_head", hazards="高温, frost"), UNITS, now=NOW
    )
    assert row.phone == "+8613912345678" and row.language == "zh-CN"
    assert row.areas == (HAIBOWAN, HAIBOWAN_TOWN)
    assert row.roles == ("relayer", "village_head") and row.hazards == ("frost", "heat")
    assert (row.consent, row.consent_basis, row.consent_at) == (True, "duty", None)
    assert row.test_recipient is False and row.groups == ()


def test_a_public_subscriber_needs_consent_and_a_naive_consent_time_is_beijing_time() -> None:
    with pytest.raises(RowError) as e:
        check_row(_row(roles="public_subscriber"), UNITS, now=NOW)
    assert e.value.problems == [("consent", "", "a public subscriber needs consent = yes")]
    row = check_row(
        _row(roles="public_subscriber", consent="是", consent_at="2026-03-01T09:30"), UNITS, now=NOW
    )
    assert (row.consent, row.consent_basis) == (True, "explicit")
    assert row.consent_at == datetime(2026, 3, 1, 9, 30, tzinfo=timezone(timedelta(hours=8)))


def test_consent_no_keeps_a_duty_row_registered_without_consent() -> None:
    row = check_row(_row(consent="no"), UNITS, now=NOW)
    assert (row.consent, row.consent_basis, row.consent_at) == (False, None, None)


def test_every_faulty_column_of_a_row_is_named() -> None:
    with pytest.raises(RowError) as e:
        check_row(
            _row(
                name="",
                phone="0473-2001234",
                language="fr",
                areas="150399",
                roles="mayor",
                hazards="hail",
                consent="maybe",
                test_recipient="2",
            ),
            UNITS,
            now=NOW,
        )
    assert [p[0] for p in e.value.problems] == [
        "name",
        "phone",
        "language",
        "areas",
        "roles",
        "hazards",
        "consent",
        "test_recipient",
    ]
    reasons = dict((column, reason) for column, _, reason in e.value.problems)
    assert "not a unit of this region" in reasons["areas"]
    assert "unknown role 'mayor'" in reasons["roles"] and "relayer" in reasons["roles"]
    assert "unknown hazard 'hail'" in reasons["hazards"]
    assert "unknown language 'fr'" in reasons["language"]


def test_a_future_consent_time_and_a_consent_time_without_consent_are_refused() -> None:
    with pytest.raises(RowError, match="future"):
        check_row(_row(consent="yes", consent_at="2027-01-01"), UNITS, now=NOW)
    with pytest.raises(RowError, match="consent is no"):
        check_row(_row(consent="no", consent_at="2026-01-01"), UNITS, now=NOW)


LANDLINE = "a landline cannot receive SMS; give a mobile number (11 digits, 1[3-9]…)"
NO_CONSENT = "a public subscriber needs consent = yes"


def test_a_bad_phone_does_not_hide_the_missing_consent_of_a_public_subscriber() -> None:
    with pytest.raises(RowError) as e:
        check_row(_row(phone="0473-2001234", roles="public_subscriber"), UNITS, now=NOW)
    assert e.value.problems == [("phone", "0473-2001234", LANDLINE), ("consent", "", NO_CONSENT)]


def test_the_faulty_columns_come_first_in_column_order_then_the_broken_consent_rules() -> None:
    with pytest.raises(RowError) as e:
        check_row(
            _row(
                phone="0473-2001234", roles="公众", consent="no", consent_at="2026-01-01", test_recipient="2"
            ),
            UNITS,
            now=NOW,
        )
    assert e.value.problems == [
        ("phone", "0473-2001234", LANDLINE),
        ("test_recipient", "2", "is yes or no (also true/false, 1/0, 是/否)"),
        ("consent", "no", NO_CONSENT),
        ("consent_at", "2026-01-01", "a consent time is given but consent is no"),
    ]


def test_no_consent_rule_is_checked_on_a_consent_or_a_consent_time_that_cannot_be_read() -> None:
    with pytest.raises(RowError) as e:
        check_row(_row(roles="public_subscriber", consent="maybe"), UNITS, now=NOW)
    assert [p[0] for p in e.value.problems] == ["consent"]
    with pytest.raises(RowError) as e:
        check_row(_row(consent="no", consent_at="2027-01-01"), UNITS, now=NOW)
    assert [p[2] for p in e.value.problems] == ["lies in the future"]


def test_a_row_is_a_pydantic_model_validated_with_the_units_and_the_time_as_context() -> None:
    cells = _row(phone="139 1234 5678", consent="no", test_recipient="是")
    row = RecipientCsvRow.model_validate(cells, context={"units": UNITS, "now": NOW})
    assert (row.phone, row.areas, row.consent, row.test_recipient) == (
        "+8613912345678",
        (HAIBOWAN,),
        False,
        True,
    )
    with pytest.raises(ValidationError) as e:
        RecipientCsvRow.model_validate(_row(roles="公众"), context={"units": UNITS, "now": NOW})
    assert [(error["loc"], error["type"]) for error in e.value.errors()] == [(("consent",), CONSENT_RULE)]
    with pytest.raises(TypeError, match="context"):
        RecipientCsvRow.model_validate(cells)


def test_the_worked_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(warnings_svc.dissemination.recipients).failed == 0


def test_a_later_row_with_a_phone_seen_before_is_rejected_naming_the_first_line() -> None:
    rows = [(2, _row()), (3, _row(phone="+86 139 1234 5678")), (4, _row(phone="13900000000"))]
    accepted, rejected = check_rows(rows, UNITS, now=NOW)
    assert [r.phone for r in accepted] == ["+8613912345678", "+8613900000000"]
    assert [(r.line, r.column, r.reason) for r in rejected] == [(3, "phone", "same phone as line 2")]


# ---------------------------------------------------------------------------------------------- the file


def test_the_sample_file_parses_with_line_numbers_from_the_header() -> None:
    header, rows = parse_csv(read_csv_text(SAMPLE))
    assert header[:4] == ["name", "phone", "language", "areas"]
    assert rows[0][0] == 2 and rows[0][1]["name"] == "王芳" and len(rows) == 13


def test_a_quoted_field_over_two_lines_keeps_later_line_numbers_right() -> None:
    _, rows = parse_csv('name,phone,areas,roles\n"王\n芳",139,150302,relayer\n\nb,138,150302,relayer\n')
    assert [line for line, _ in rows] == [2, 5]


def test_utf8_with_a_bom_is_read_and_gbk_is_named_in_one_line(tmp_path: Path) -> None:
    text = SAMPLE.read_text(encoding="utf-8")
    assert decode_csv(b"\xef\xbb\xbf" + text.encode()) == text
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(text.encode("gbk"))
    with pytest.raises(RecipientError, match=r"GBK .* save it as UTF-8") as e:
        read_csv_text(gbk)
    assert "\n" not in str(e.value) and str(gbk) in str(e.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("\n\n", "empty"),
        ("name,phone,areas\nx,1,2\n", "missing column.s. roles"),
        ("name,phone,areas,roles,phnoe\n", "unknown column.s. 'phnoe'"),
        ("name,phone,areas,roles,name\n", "given twice"),
        ("name,phone,areas,roles\n\0,1,2,3\n", "not CSV"),
    ],
)
def test_a_file_without_the_recipients_header_is_refused(text: str, reason: str) -> None:
    with pytest.raises(RecipientError, match=reason):
        parse_csv(text)


def test_a_missing_or_unreadable_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(RecipientError, match="No such file"):
        read_csv_text(tmp_path / "absent.csv")


def test_a_row_with_more_fields_than_columns_is_rejected() -> None:
    _, rows = parse_csv("name,phone,areas,roles\n王芳,13912345678,150302,relayer,extra\n")
    accepted, rejected = check_rows(rows, UNITS, now=NOW)
    assert accepted == [] and rejected[0].column == "" and "more fields" in rejected[0].reason


# ---------------------------------------------------------------------------------------------- reach


def test_a_district_warning_reaches_its_towns_and_the_city_but_not_the_next_district() -> None:
    assert reach(["150302"], UNITS) == [CITY, HAIBOWAN, HAIBOWAN_TOWN, HAIBOWAN_TOWN_2]


def test_a_town_warning_reaches_its_district_and_city_but_not_the_towns_beside_it() -> None:
    assert reach([HAIBOWAN_TOWN], UNITS) == [CITY, HAIBOWAN, HAIBOWAN_TOWN]


def test_the_areas_relevant_to_a_person_are_those_sharing_ground_with_theirs() -> None:
    warning = [HAIBOWAN_TOWN, HAIBOWAN_TOWN_2, HAINAN_TOWN]
    assert relevant_areas(warning, [HAIBOWAN], UNITS) == (HAIBOWAN_TOWN, HAIBOWAN_TOWN_2)
    assert relevant_areas(warning, [HAIBOWAN_TOWN_2], UNITS) == (HAIBOWAN_TOWN_2,)
    assert relevant_areas([HAIBOWAN], [HAINAN_TOWN], UNITS) == ()


# ---------------------------------------------------------------------------------------------- fatigue

SENT = {
    "msg_type": "Alert",
    "level": "orange",
    "areas": [HAIBOWAN_TOWN],
    "onset": "2026-07-09T11:00:00+08:00",
    "expires": "2026-07-10T14:00:00+08:00",
}


def test_an_update_that_changes_nothing_for_the_person_does_not_text_them_again() -> None:
    assert needs_message(SENT, SENT | {"msg_type": "Update"}) is False
    # the same instants written another way are the same times
    same = SENT | {"msg_type": "Update", "onset": datetime(2026, 7, 9, 3, tzinfo=UTC)}
    assert needs_message(SENT, same) is False


@pytest.mark.parametrize(
    "change",
    [
        {"level": "red"},
        {"level": "yellow"},
        {"areas": [HAIBOWAN_TOWN, HAIBOWAN_TOWN_2]},
        {"areas": []},  # the Update drops their area: they are told
        {"onset": "2026-07-09T12:00:00+08:00"},
        {"expires": "2026-07-10T20:00:00+08:00"},
    ],
)
def test_an_update_changing_level_relevant_areas_or_times_texts_them(change: dict) -> None:
    assert needs_message(SENT, SENT | {"msg_type": "Update"} | change) is True


def test_a_cancel_reaches_exactly_those_who_got_the_warning_once() -> None:
    cancel = SENT | {"msg_type": "Cancel"}
    assert needs_message(SENT, cancel) is True
    assert needs_message(None, cancel) is False
    assert needs_message(cancel, cancel) is False


def test_someone_never_sent_the_warning_gets_it_when_it_covers_them() -> None:
    assert needs_message(None, SENT) is True
    assert needs_message(None, SENT | {"msg_type": "Update"}) is True
    assert needs_message(None, SENT | {"msg_type": "Update", "areas": []}) is False
    told_dropped = SENT | {"msg_type": "Update", "areas": []}
    assert needs_message(told_dropped, told_dropped) is False
    assert needs_message(told_dropped, SENT | {"msg_type": "Update"}) is True


@pytest.mark.parametrize("hazard", HAZARDS)
def test_every_hazard_is_a_known_interest(hazard: str) -> None:
    assert check_row(_row(hazards=hazard), UNITS, now=NOW).hazards == (hazard,)


def test_someone_told_the_warning_left_them_hears_no_more_of_it() -> None:
    # a bug found by the dispatch tests: a later level change texted people outside the warning again
    told_dropped = SENT | {"msg_type": "Update", "areas": []}
    assert needs_message(told_dropped, told_dropped | {"level": "red"}) is False
    assert needs_message(told_dropped, told_dropped | {"expires": "2026-07-10T20:00:00+08:00"}) is False
    # ... and no Cancel either: they were told it no longer concerns them
    assert needs_message(told_dropped, SENT | {"msg_type": "Cancel", "areas": []}) is False
