"""Cell broadcast pages: alphabet, 93/41 characters a page, padding, DCS, serial number and message ids."""

from __future__ import annotations

import doctest

import pytest

import channels.cbs.ecbe as ecbe_module
import channels.cbs.pages as pages_module
from channels.cbs.pages import (
    Alphabet,
    CbsEncodingError,
    GeoScope,
    SerialNumber,
    choose_alphabet,
    data_coding_scheme,
    gsm7_text,
    gsm7_units,
    increment_update_number,
    message_identifier,
    pack_septets,
    split_pages,
    unpack_septets,
)

WARNING_ZH = (
    "乌海市气象台发布高温橙色预警信号：预计未来24小时海勃湾区、乌达区最高气温将升至40℃以上，请注意防暑降温。"
)


def chinese_text(n: int) -> str:
    """A Chinese warning text of exactly n characters."""
    return (WARNING_ZH * (n // len(WARNING_ZH) + 1))[:n]


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(pages_module).failed == 0
    assert doctest.testmod(ecbe_module).failed == 0


def test_hellohello_packs_to_the_ts_23_038_vector() -> None:
    septets = b"".join(gsm7_units("hellohello"))
    assert pack_septets(septets) == bytes.fromhex("E8329BFD4697D9EC37")
    assert unpack_septets(bytes.fromhex("E8329BFD4697D9EC37"), 10) == septets


def test_eight_septets_fill_seven_octets_least_significant_bit_first() -> None:
    # "1" is septet 0x31 = 0110001; worked by hand: octet 1 = septet 1 + bit 0 of septet 2 (1) = 0xB1,
    # octet 2 = bits 1-6 of septet 2 (011000) + bits 0-1 of septet 3 (01) at bits 6-7 = 0x58, and so on
    assert pack_septets(b"\x31" * 8) == bytes.fromhex("B1582C168BC562")
    assert len(pack_septets(b"\x31" * 7)) == 7 and pack_septets(b"\x31" * 7)[-1] >> 1 == 0


@pytest.mark.parametrize(
    ("text", "alphabet"),
    [
        ("Heat warning", Alphabet.GSM7),
        ("Price {5} €", Alphabet.GSM7),
        ("高温", Alphabet.UCS2),
        ("40°C", Alphabet.UCS2),
    ],
)
def test_gsm7_is_chosen_only_when_every_character_is_in_its_tables(text: str, alphabet: Alphabet) -> None:
    assert choose_alphabet(text) is alphabet


def test_93_gsm7_characters_fill_one_page_and_94_need_two() -> None:
    one = split_pages("a" * 93)
    two = split_pages("a" * 94)
    assert len(one.pages) == 1 and len(two.pages) == 2
    assert [len(p.text) for p in two.pages] == [93, 1]
    assert all(len(p.content) == 82 for p in one.pages + two.pages)
    assert one.pages[0].used_octets == 82 and two.pages[1].used_octets == 1
    # the second page is "a" then 92 CR septets, and the 5 bits after the 93rd septet are zero
    assert unpack_septets(two.pages[1].content, 93) == b"a" + b"\r" * 92
    assert two.pages[1].content[-1] >> 3 == 0
    assert two.text == "a" * 94


def test_an_escape_sequence_is_never_split_across_pages() -> None:
    text = "a" * 92 + "€" + "b"  # the euro sign needs septets 93 and 94: it moves to page 2 whole
    split = split_pages(text)
    assert [p.text for p in split.pages] == ["a" * 92, "€b"]
    assert unpack_septets(split.pages[0].content, 93)[-1] == 0x0D  # the freed septet is padding
    assert gsm7_text(unpack_septets(split.pages[1].content, 3)) == "€b"


def test_a_150_character_chinese_text_takes_4_pages_of_41_41_41_27() -> None:
    text = chinese_text(150)
    split = split_pages(text)
    assert split.alphabet is Alphabet.UCS2 and split.dcs == 0x48
    assert [len(p.text) for p in split.pages] == [41, 41, 41, 27]
    assert [p.used_octets for p in split.pages] == [82, 82, 82, 54]
    last = split.pages[3].content
    assert len(last) == 82 and last[:54] == text[123:].encode("utf-16-be")
    assert last[54:] == b"\x00\x0d" * 14  # UCS2 padding: CR as a 16-bit character
    assert split.text == text


def test_a_surrogate_pair_is_never_split_across_pages() -> None:
    text = chinese_text(40) + "🌡" + "热"  # the thermometer is two UTF-16 units: units 41 and 42
    split = split_pages(text)
    assert [p.text for p in split.pages] == [chinese_text(40), "🌡热"]
    assert split.pages[0].content[80:] == b"\x00\x0d"


def test_a_language_prefix_starts_every_ucs2_page_and_costs_one_character() -> None:
    split = split_pages(chinese_text(81), language="zh")
    assert split.dcs == 0x11
    assert [len(p.text) for p in split.pages] == [40, 40, 1]
    # "z" = 0x7A, "h" = 0x68 packed: 0x7A | (0x68 & 1) << 7 = 0x7A, 0x68 >> 1 = 0x34
    assert all(p.content[:2] == b"\x7a\x34" for p in split.pages)


def test_a_gsm7_language_without_its_own_code_is_prefixed_with_the_language_and_cr() -> None:
    split = split_pages("x" * 91, language="mn")
    assert split.dcs == 0x10
    assert [len(p.text) for p in split.pages] == [90, 1]
    assert gsm7_text(unpack_septets(split.pages[1].content, 4)) == "mn\rx"


@pytest.mark.parametrize(
    ("alphabet", "language", "dcs"),
    [
        (Alphabet.GSM7, "", 0x0F),
        (Alphabet.GSM7, "de", 0x00),
        (Alphabet.GSM7, "en", 0x01),
        (Alphabet.GSM7, "pl", 0x0E),
        (Alphabet.GSM7, "cs", 0x20),
        (Alphabet.GSM7, "is", 0x24),
        (Alphabet.GSM7, "zh", 0x10),
        (Alphabet.UCS2, "", 0x48),
        (Alphabet.UCS2, "zh", 0x11),
    ],
)
def test_the_data_coding_scheme_follows_ts_23_038_section_5(
    alphabet: Alphabet, language: str, dcs: int
) -> None:
    assert data_coding_scheme(alphabet, language) == dcs


def test_a_language_that_is_not_two_letters_is_refused() -> None:
    with pytest.raises(CbsEncodingError, match="ISO 639-1"):
        data_coding_scheme(Alphabet.GSM7, "eng")


def test_the_serial_number_is_scope_then_code_then_update_number() -> None:
    # worked by hand: scope 3 (cell, normal) = 11, code 1023 = 1111111111, update 5 = 0101 -> 0xFFF5
    assert SerialNumber(GeoScope.CELL_NORMAL, 1023, 5).encode() == 0b11_1111111111_0101 == 0xFFF5
    # PLMN (01), code 300 (0100101100), update 2 (0010) -> 0101 0010 1100 0010 = 0x52C2
    assert SerialNumber(GeoScope.PLMN, 300, 2).encode() == 0x52C2
    assert SerialNumber(GeoScope.CELL_IMMEDIATE, 1, 0).encode() == 0x0010
    assert SerialNumber.decode(0xFFF5) == SerialNumber(GeoScope.CELL_NORMAL, 1023, 5)
    assert GeoScope.LOCATION_AREA.ecbe_name == "lac_sac_tac_wide"


def test_the_update_number_wraps_from_15_to_0_and_keeps_scope_and_code() -> None:
    assert increment_update_number(0x52C2) == 0x52C3
    assert increment_update_number(0x52CF) == 0x52C0
    serial = SerialNumber(GeoScope.PLMN, 7, 14)
    assert [serial.next_update().update_number, serial.next_update().next_update().update_number] == [15, 0]


@pytest.mark.parametrize(("code", "update"), [(1024, 0), (-1, 0), (0, 16)])
def test_a_serial_number_field_out_of_range_is_refused(code: int, update: int) -> None:
    with pytest.raises(CbsEncodingError):
        SerialNumber(GeoScope.PLMN, code, update)


def test_16_pages_are_refused_with_the_length_named() -> None:
    assert len(split_pages("a" * 1395).pages) == 15
    assert len(split_pages(chinese_text(615)).pages) == 15
    with pytest.raises(ValueError, match="text of 1396 characters needs 16 CBS pages"):
        split_pages("a" * 1396)
    with pytest.raises(ValueError, match="616 characters"):
        split_pages(chinese_text(616))


def test_an_empty_text_is_refused() -> None:
    with pytest.raises(CbsEncodingError, match="empty"):
        split_pages("")


@pytest.mark.parametrize(
    ("level", "expected"), [("red", 4372), ("orange", 4374), ("yellow", 4376), ("blue", 4378)]
)
def test_every_level_maps_into_the_cmas_family_by_default(level: str, expected: int) -> None:
    assert message_identifier(level=level) == expected


@pytest.mark.parametrize(("status", "expected"), [("Exercise", 4381), ("Test", 4380)])
def test_an_exercise_or_a_test_never_looks_like_a_real_warning(status: str, expected: int) -> None:
    assert message_identifier(status=status, level="red") == expected


def test_the_cap_triple_maps_when_the_level_is_not_in_the_table() -> None:
    assert message_identifier(severity="Extreme", urgency="Immediate", certainty="Observed") == 4371
    assert message_identifier(severity="Severe", urgency="Expected", certainty="Observed") == 4377
    assert message_identifier(severity="Moderate", urgency="Future", certainty="Possible") == 4378
    assert message_identifier(level="red", level_ids={}, severity="Extreme", urgency="Expected") == 4374


def test_the_level_table_can_be_overridden() -> None:
    assert message_identifier(level="red", level_ids={"red": 4370}) == 4370
    with pytest.raises(CbsEncodingError, match="no message identifier"):
        message_identifier(level="purple", level_ids={})
