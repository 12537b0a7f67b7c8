"""GB/T 35965.1 documents: known-good files, identifiers, times, headlines and file names for every hazard and level."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime

import pytest
from lxml import etree

from tests.factories_messages import (
    DATA,
    HAZARD_LEVEL_PAIRS,
    HEAT_ORANGE_ALERT,
    HEAT_RED_UPDATE,
    ISSUER,
    POLYGON,
    beijing,
)
from warnings_svc.documents.gbt import (
    METHOD_NAMES,
    GbtError,
    GbtTexts,
    gbt_file_name,
    gbt_headline,
    gbt_identifier,
    gbt_time,
    render_gbt,
    validate_gbt,
)
from warnings_svc.documents.message import Reference, WarningMessage
from warnings_svc.vocabulary import HAZARD_EVENT_CODES

HEAT_CANCEL = dataclasses.replace(
    HEAT_RED_UPDATE,
    identifier="15030041600000_20170710190000",
    msg_type="Cancel",
    sent=beijing(10, 19),
    note="最高气温已降至37℃以下",
    references=(
        Reference(ISSUER.sender, HEAT_RED_UPDATE.identifier, HEAT_RED_UPDATE.sent),  # newest first on purpose
        *HEAT_RED_UPDATE.references,
    ),
)
HEAT_TEXTS = {
    "Alert": GbtTexts(
        description="乌海市气象台2017年07月09日16时发布高温橙色预警信号：预计未来24小时内，海勃湾区、乌达区最高气温将升至37℃以上，请注意防范。",
        channels={
            "WEB": "乌海市气象台2017年07月09日16时发布高温橙色预警[Ⅱ级/严重]：预计未来24小时内，海勃湾区、乌达区最高气温将升至37℃以上，请注意防范。",
            "SMS": "【乌海气象】高温橙色预警：未来24小时海勃湾区、乌达区最高气温将升至37℃以上，请防暑降温。",
            "SPEAKER": "乌海市气象台发布高温橙色预警：未来二十四小时，海勃湾区、乌达区最高气温将升至三十七摄氏度以上，请注意防暑降温。",
        },
        instruction="尽量避免在高温时段进行户外活动；对老、弱、病、幼人群采取防护措施；注意防范电力负载过大引发的火灾。",
    ),
    "Update": GbtTexts(
        description="乌海市气象台2017年07月10日10时将高温橙色预警信号升级为红色：预计今天中午起，海勃湾区、乌达区最高气温将升至40℃以上，请注意防范。",
        channels={
            "SMS": "【乌海气象】高温红色预警：今天中午起海勃湾区、乌达区最高气温将升至40℃以上，请停止户外露天作业。",
            "LED": "高温红色预警：最高气温40℃以上，停止户外露天作业",
        },
        instruction="停止户外露天作业（除特殊行业外）；特别注意防火。",
    ),
    "Cancel": GbtTexts(
        description="乌海市气象台2017年07月10日19时解除高温红色预警信号。",
        channels={"SMS": "【乌海气象】乌海市气象台19时解除高温红色预警信号。"},
    ),
}
KNOWN_GOOD = {
    "gbt_heat_orange_alert.xml": HEAT_ORANGE_ALERT,
    "gbt_heat_red_update.xml": HEAT_RED_UPDATE,
    "gbt_heat_cancel.xml": HEAT_CANCEL,
}
PLAIN_TEXTS = GbtTexts(description="预警内容。", channels={"SMS": "短信内容。"})


def fields(xml: bytes) -> dict[str, str]:
    """Leaf texts by path below the root, e.g. ``info/headline``."""
    root = etree.fromstring(xml)
    tree = root.getroottree()
    return {
        tree.getpath(e).removeprefix("/alert/"): e.text or ""
        for e in root.iter()
        if len(e) == 0 and e is not root
    }


# ---------------------------------------------------------------------------------------------- known good


@pytest.mark.parametrize("file_name", sorted(KNOWN_GOOD))
def test_the_heat_warning_lifecycle_renders_exactly_the_known_good_documents(file_name: str) -> None:
    msg = KNOWN_GOOD[file_name]
    xml = render_gbt(msg, HEAT_TEXTS[msg.msg_type])
    assert xml == (DATA / file_name).read_bytes()
    validate_gbt(xml)


def test_the_known_good_alert_carries_the_reference_examples_values() -> None:
    values = fields((DATA / "gbt_heat_orange_alert.xml").read_bytes())
    assert values["identifier"] == "15030041600000_20170709160000"
    assert values["sendTime"] == "2017-07-09 16:00:00+08:00"
    assert values["info/headline"] == "乌海市气象台发布高温橙色预警[Ⅱ级/严重]"
    assert values["info/eventType"] == "11B09"
    assert values["info/severity"] == "Orange"
    assert (values["info/urgency"], values["info/certainty"]) == ("Unknown", "Unknown")
    assert values["info/area/geocode"] == "150302000000,150304000000"
    assert values["info/area/areaDesc"] == "海勃湾区,乌达区"
    assert gbt_file_name(HEAT_ORANGE_ALERT) == "15030041600000_20170709160000_11B09_ORANGE_ALERT.XML"


@pytest.mark.parametrize("msg", [HEAT_RED_UPDATE, HEAT_CANCEL], ids=["update", "cancel"])
def test_updates_and_cancels_reference_the_first_issue(msg: WarningMessage) -> None:
    assert fields(render_gbt(msg, PLAIN_TEXTS))["references"] == "15030041600000_20170709160000"


# ---------------------------------------------------------------------------------------------- every hazard


@pytest.mark.parametrize(("hazard", "level"), HAZARD_LEVEL_PAIRS)
def test_every_hazard_and_level_has_the_profiles_identifier_time_headline_and_file_name(
    hazard: str, level: str
) -> None:
    colour = {"blue": "蓝色", "yellow": "黄色", "orange": "橙色", "red": "红色"}[level]
    label = {"blue": "[Ⅳ级/一般]", "yellow": "[Ⅲ级/较重]", "orange": "[Ⅱ级/严重]", "red": "[Ⅰ级/特别严重]"}[
        level
    ]
    event = {"heat": "高温", "rainstorm": "暴雨", "frost": "霜冻", "sandstorm": "沙尘暴"}[hazard]
    code = HAZARD_EVENT_CODES[hazard]
    for msg_type, verb, type_part in (
        ("Alert", "发布", "ALERT"),
        ("Update", "发布", "UPDATE"),
        ("Cancel", "解除", "CANCEL"),
    ):
        base = {"Alert": HEAT_ORANGE_ALERT, "Update": HEAT_RED_UPDATE, "Cancel": HEAT_CANCEL}[msg_type]
        msg = dataclasses.replace(base, hazard=hazard, level=level)
        stamp = {"Alert": "20170709160000", "Update": "20170710100000", "Cancel": "20170710190000"}[msg_type]
        assert gbt_identifier(msg) == f"15030041600000_{stamp}"
        assert gbt_headline(msg) == f"乌海市气象台{verb}{event}{colour}预警{label}"
        assert gbt_file_name(msg) == f"15030041600000_{stamp}_{code}_{level.upper()}_{type_part}.XML"
        xml = render_gbt(msg, PLAIN_TEXTS)
        validate_gbt(xml)
        values = fields(xml)
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\+08:00", values["sendTime"])
        assert values["info/severity"] == level.capitalize()
        assert values["info/eventType"] == code
        assert values["info/headline"] == gbt_headline(msg)


def test_the_cancel_headline_replaces_the_verb_and_keeps_the_level() -> None:
    assert (
        gbt_headline(dataclasses.replace(HEAT_CANCEL, level="orange"))
        == "乌海市气象台解除高温橙色预警[Ⅱ级/严重]"
    )


def test_send_time_and_identifier_are_in_beijing_time_across_midnight() -> None:
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, sent=datetime(2017, 7, 9, 20, 30, 5, 999, tzinfo=UTC))
    assert gbt_time(msg.sent) == "2017-07-10 04:30:05+08:00"
    assert gbt_identifier(msg) == "15030041600000_20170710043005"
    assert fields(render_gbt(msg, PLAIN_TEXTS))["info/effective"] == "2017-07-10 04:30:05+08:00"


# ---------------------------------------------------------------------------------------------- content


@pytest.mark.parametrize(
    ("status", "written"), [("Actual", "Actual"), ("Test", "Test"), ("Exercise", "Test")]
)
def test_status_is_actual_or_test_and_an_exercise_is_never_actual(status: str, written: str) -> None:
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, status=status)  # type: ignore[arg-type]
    assert fields(render_gbt(msg, PLAIN_TEXTS))["status"] == written


def test_channels_come_in_the_profiles_order_each_with_its_own_text() -> None:
    channels = {name: f"{name} 文本" for name in reversed(METHOD_NAMES)}
    root = etree.fromstring(render_gbt(HEAT_ORANGE_ALERT, GbtTexts("描述。", channels)))
    assert root.xpath("code/method/methodName/text()") == list(METHOD_NAMES)
    assert root.xpath("code/method/message/text()") == [f"{name} 文本" for name in METHOD_NAMES]


@pytest.mark.parametrize(
    ("channels", "element"),
    [({"EMAIL": "x"}, "methodName"), ({"SMS": " "}, "message"), ({}, "code")],
    ids=["unknown", "empty-text", "none"],
)
def test_unknown_empty_or_missing_channels_are_refused(channels: dict[str, str], element: str) -> None:
    with pytest.raises(GbtError) as info:
        render_gbt(HEAT_ORANGE_ALERT, GbtTexts("描述。", channels))
    assert info.value.element == element


def test_the_signer_is_the_sender_name_or_the_organisation_when_nobody_is_named() -> None:
    assert fields(render_gbt(HEAT_ORANGE_ALERT, PLAIN_TEXTS))["info/senderName"] == "李华"
    anonymous = dataclasses.replace(HEAT_ORANGE_ALERT, issuer=dataclasses.replace(ISSUER, signed_by=""))
    assert fields(render_gbt(anonymous, PLAIN_TEXTS))["info/senderName"] == "乌海市气象台"


def test_markup_characters_in_texts_are_escaped_and_round_trip() -> None:
    nasty = "<script>alert('x')</script> & \"quoted\""
    xml = render_gbt(HEAT_ORANGE_ALERT, GbtTexts(nasty, {"SMS": nasty}))
    validate_gbt(xml)
    assert b"<script>" not in xml
    values = fields(xml)
    assert values["info/description"] == values["code/method/message"] == nasty


def test_polygons_are_written_in_cap_form_and_an_empty_element_when_there_is_none() -> None:
    root = etree.fromstring(render_gbt(HEAT_ORANGE_ALERT, PLAIN_TEXTS))
    assert root.xpath("info/area/polygon/text()") == [POLYGON]
    bare = etree.fromstring(render_gbt(dataclasses.replace(HEAT_ORANGE_ALERT, polygons=()), PLAIN_TEXTS))
    assert [p.text for p in bare.xpath("info/area/polygon")] == [None]


# ---------------------------------------------------------------------------------------------- guards


def test_an_update_without_references_is_refused() -> None:
    with pytest.raises(GbtError, match=r"^references: an Update must reference"):
        render_gbt(dataclasses.replace(HEAT_RED_UPDATE, references=()), PLAIN_TEXTS)


def test_an_alert_with_references_is_refused() -> None:
    with pytest.raises(GbtError, match=r"^references:"):
        render_gbt(dataclasses.replace(HEAT_ORANGE_ALERT, references=HEAT_RED_UPDATE.references), PLAIN_TEXTS)


@pytest.mark.parametrize("sender_code", ["1503004160000", "15030041600000X", ""])
def test_a_sender_code_that_is_not_fourteen_digits_is_refused(sender_code: str) -> None:
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, issuer=dataclasses.replace(ISSUER, sender_code=sender_code))
    with pytest.raises(GbtError, match=r"^senderCode:"):
        render_gbt(msg, PLAIN_TEXTS)


def test_a_level_the_hazard_does_not_have_is_refused() -> None:
    with pytest.raises(GbtError, match=r"^severity: frost has no 'red' level"):
        gbt_headline(dataclasses.replace(HEAT_ORANGE_ALERT, hazard="frost", level="red"))


def test_expiry_not_after_sending_is_refused() -> None:
    with pytest.raises(GbtError, match=r"^expires:"):
        render_gbt(dataclasses.replace(HEAT_ORANGE_ALERT, expires=HEAT_ORANGE_ALERT.sent), PLAIN_TEXTS)


# ---------------------------------------------------------------------------------------------- validate


KNOWN_GOOD_ALERT = "gbt_heat_orange_alert.xml"


@pytest.mark.parametrize(
    ("old", "new", "element"),
    [
        (b"<sendTime>2017-07-09 16:00:00", b"<sendTime>2017-07-09T16:00:00", "sendTime"),
        (b"  <secClassification>None</secClassification>\n", b"", "alert"),
        (b"<severity>Orange</severity>", b"<severity>Red</severity>", "headline"),
        (b"150302000000,150304000000", b"150302000000", "geocode"),
        (b"<alert>", b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">', "alert"),
        (b"<methodName>SMS</methodName>", b"<methodName>EMAIL</methodName>", "methodName"),
        (b"<identifier>15030041600000_", b"<identifier>15030041600001_", "identifier"),
        (b"<msgType>Alert</msgType>", b"<msgType>Update</msgType>", "references"),
        (b"<eventType>11B09</eventType>", b"<eventType>heat</eventType>", "eventType"),
        (b"</alert>", b"", "alert"),
    ],
    ids=[
        "T-separator",
        "missing-element",
        "colour-mismatch",
        "geocode-count",
        "namespace",
        "unknown-channel",
        "identifier-sender",
        "update-without-references",
        "event-type",
        "not-xml",
    ],
)
def test_validation_names_what_does_not_fit_the_profile(old: bytes, new: bytes, element: str) -> None:
    xml = (DATA / KNOWN_GOOD_ALERT).read_bytes()
    assert old in xml
    with pytest.raises(GbtError) as info:
        validate_gbt(xml.replace(old, new, 1))
    assert info.value.element == element
    assert "\n" not in str(info.value)
