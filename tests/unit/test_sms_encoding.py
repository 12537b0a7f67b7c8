"""SMS encoding and segmentation: GSM-7 vs UCS2, 70/67 and 160/153 limits, UDH, SAR and message_payload."""

from __future__ import annotations

import doctest

import pytest

import channels.sms.encoding as encoding_module
from channels.sms.encoding import (
    ESM_CLASS_UDHI,
    TAG_MESSAGE_PAYLOAD,
    TAG_SAR_MSG_REF_NUM,
    TAG_SAR_SEGMENT_SEQNUM,
    TAG_SAR_TOTAL_SEGMENTS,
    SegmentMethod,
    SmsEncodingError,
    encode_text,
    segment_count,
    sms_coding,
    split_text,
)
from warnings_svc.documents.texts import GSM7_BASIC, GSM7_EXTENSION, sms_segments

WARNING_ZH = (
    "乌海市气象台发布高温橙色预警信号：预计未来24小时海勃湾区、乌达区最高气温将升至40℃以上，请注意防暑降温。"
)


def chinese_text(n: int) -> str:
    """A Chinese warning text of exactly n characters."""
    return (WARNING_ZH * (n // len(WARNING_ZH) + 1))[:n]


def decode_parts(parts: list) -> str:
    """The text the handset reassembles from UCS2 parts."""
    body = b""
    for part in parts:
        octets = part.short_message
        if part.esm_class & ESM_CLASS_UDHI:
            octets = octets[octets[0] + 1 :]
        body += octets or part.tlvs.get(TAG_MESSAGE_PAYLOAD, b"")
    return body.decode("utf-16-be")


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(encoding_module).failed == 0


@pytest.mark.parametrize(
    ("n", "parts", "sizes"),
    [(70, 1, [140]), (71, 2, [140, 14]), (134, 2, [140, 140]), (135, 3, [140, 140, 8])],
)
def test_chinese_warnings_of_70_71_134_135_characters_split_at_70_then_67(
    n: int, parts: int, sizes: list
) -> None:
    text = chinese_text(n)
    split = split_text(text, SegmentMethod.UDH, reference=0x2A)
    assert len(split) == parts
    assert [len(p.short_message) for p in split] == sizes
    assert all(p.data_coding == 0x08 for p in split)
    assert decode_parts(split) == text
    if parts == 1:
        assert split[0].esm_class == 0 and split[0].tlvs == {}
    else:
        for seq, part in enumerate(split, start=1):
            assert part.esm_class == ESM_CLASS_UDHI
            assert part.short_message[:6] == bytes([5, 0, 3, 0x2A, parts, seq])


def test_sar_parts_carry_no_header_and_are_numbered_by_tlvs() -> None:
    text = chinese_text(135)
    split = split_text(text, SegmentMethod.SAR, reference=0x1234)
    assert [len(p.short_message) for p in split] == [134, 134, 2]
    for seq, part in enumerate(split, start=1):
        assert part.esm_class == 0
        assert part.tlvs == {
            TAG_SAR_MSG_REF_NUM: b"\x12\x34",
            TAG_SAR_TOTAL_SEGMENTS: bytes([3]),
            TAG_SAR_SEGMENT_SEQNUM: bytes([seq]),
        }
    assert decode_parts(split) == text


def test_message_payload_sends_a_long_text_whole_in_one_submit() -> None:
    text = chinese_text(135)
    (part,) = split_text(text, SegmentMethod.PAYLOAD)
    assert part.short_message == b""
    assert part.tlvs[TAG_MESSAGE_PAYLOAD] == text.encode("utf-16-be")


def test_a_short_text_is_one_plain_sms_whatever_the_method() -> None:
    for method in SegmentMethod:
        (part,) = split_text("预警", method)
        assert part.tlvs == {} and part.esm_class == 0


def test_an_emoji_on_a_part_boundary_moves_whole_to_the_next_part() -> None:
    text = "预" * 66 + "🌡" + "预" * 10  # the surrogate pair would straddle units 67 and 68
    split = split_text(text, SegmentMethod.UDH, reference=1)
    first_body = split[0].short_message[6:]
    assert len(first_body) == 132  # 66 units: the part holds one unit fewer than 67
    assert decode_parts(split) == text
    for part in split:
        body = part.short_message[6:]
        body.decode("utf-16-be")  # each part decodes on its own: no half pair


def test_emoji_count_as_two_units() -> None:
    assert len(split_text("🌡" * 35)) == 1
    assert len(split_text("🌡" * 36)) == 2


@pytest.mark.parametrize(("n", "parts"), [(160, 1), (161, 2), (306, 2), (307, 3)])
def test_gsm7_texts_split_at_160_then_153(n: int, parts: int) -> None:
    text = ("Heat warning for Wuhai. " * 20)[:n]
    split = split_text(text, SegmentMethod.UDH, reference=9)
    assert len(split) == parts
    assert all(p.data_coding == 0x00 for p in split)


def test_a_gsm7_extension_character_is_never_split_from_its_escape() -> None:
    text = "a" * 152 + "€" + "b" * 10
    split = split_text(text, SegmentMethod.UDH)
    assert split[0].short_message[6:] == b"a" * 152
    assert split[1].short_message[6:8] == b"\x1be"


def test_gsm7_is_chosen_only_when_every_character_fits() -> None:
    assert sms_coding("Rainstorm [red] 50 mm") == "GSM-7"
    assert sms_coding("40 ℃") == "UCS2"
    assert encode_text("@£") == (b"\x00\x01", 0x00)


def test_empty_text_is_refused() -> None:
    with pytest.raises(SmsEncodingError):
        split_text("")
    assert segment_count("") == 0


def test_the_gsm7_alphabet_is_the_one_warnings_svc_counts_with() -> None:
    assert set(encoding_module._GSM7_BASIC_INDEX) == set(GSM7_BASIC)
    assert set(encoding_module.GSM7_EXTENSION_TABLE) == set(GSM7_EXTENSION)


@pytest.mark.parametrize(
    "text",
    [chinese_text(n) for n in (1, 69, 70, 71, 133, 134, 135, 201, 202, 400)]
    + ["a" * n for n in (1, 160, 161, 306, 307, 459, 460)]
    + ["[" * 80, "[" * 81, "预警🌡" * 20, WARNING_ZH],
)
def test_segment_count_agrees_with_warnings_svc_texts(text: str) -> None:
    assert segment_count(text) == sms_segments(text)


def test_the_texts_budget_counts_a_part_more_when_an_emoji_would_straddle_two_parts() -> None:
    text = "预" * 66 + "🌡" + "预" * 66  # 134 UTF-16 units, but the emoji cannot be cut in half
    assert sms_segments(text) == len(split_text(text, SegmentMethod.UDH)) == 3
