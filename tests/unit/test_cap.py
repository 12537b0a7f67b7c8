"""CAP 1.2 documents: known-good files, every hazard and level schema-valid, derivations, guards, signatures."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from lxml import etree

from tests.factories_keys import key_and_certificate
from tests.factories_messages import (
    DATA,
    HAZARD_LEVEL_PAIRS,
    HEAT_ORANGE_ALERT,
    HEAT_RED_UPDATE,
    ISSUER,
    POLYGON,
    beijing,
)
from warnings_svc.documents import cap
from warnings_svc.documents.cap import (
    CapError,
    CapTexts,
    derive_certainty,
    derive_urgency,
    render_cap,
    sign_cap,
    validate_cap,
    verify_cap,
)
from warnings_svc.documents.message import Area, Reference, WarningMessage
from warnings_svc.vocabulary import HAZARD_EVENT_CODES

NS = {"cap": cap.CAP_NAMESPACE, "ds": cap.DSIG_NAMESPACE}
WEB = "https://weather.example.cn/warnings/15030041600000_20170709160000"
CONTACT = "wuhai@weather.example.cn"

HEAT_CANCEL = dataclasses.replace(
    HEAT_RED_UPDATE,
    identifier="15030041600000_20170710190000",
    msg_type="Cancel",
    sent=beijing(10, 19),
    note="Maximum temperatures have fallen below 37 °C; the warning is lifted.",
    references=(
        *HEAT_RED_UPDATE.references,
        Reference(ISSUER.sender, HEAT_RED_UPDATE.identifier, HEAT_RED_UPDATE.sent),
    ),
)

HEAT_TEXTS: dict[str, dict[str, CapTexts]] = {
    "alert": {
        "zh-CN": CapTexts(
            headline="乌海市气象台发布高温橙色预警[Ⅱ级/严重]",
            description="乌海市气象台2017年07月09日16时发布高温橙色预警信号：预计未来24小时内，海勃湾区、乌达区最高气温将升至37℃以上，请注意防范。",
            instruction="1. 有关部门和单位落实防暑降温保障措施；2. 尽量避免在高温时段进行户外活动，高温条件下作业的人员应当缩短连续工作时间；3. 对老、弱、病、幼人群提供防暑降温指导，并采取必要的防护措施；4. 注意防范因用电量过高，电线、变压器等电力负载过大而引发的火灾。",
            area_desc="乌海市海勃湾区、乌达区",
            event="高温橙色预警",
        ),
        "en-US": CapTexts(
            headline="Heat orange warning for Haibowan and Wuda districts, Wuhai",
            description="Wuhai Meteorological Observatory issued a heat orange warning at 16:00 on 9 July 2017: within the next 24 hours the maximum temperature in Haibowan and Wuda districts will reach 37 °C or more.",
            instruction="Take cooling measures; avoid outdoor activity in the hottest hours and shorten continuous outdoor work; look after the elderly, the sick and the young; beware of fires from overloaded power lines and transformers.",
            area_desc="Haibowan and Wuda districts, Wuhai",
            event="Heat orange warning",
        ),
    },
    "update": {
        "zh-CN": CapTexts(
            headline="乌海市气象台发布高温红色预警[Ⅰ级/特别严重]",
            description="乌海市气象台2017年07月10日10时将高温橙色预警信号升级为红色：预计今天中午起，海勃湾区、乌达区最高气温将升至40℃以上，请注意防范。",
            instruction="1. 采取防暑降温应急措施；2. 停止户外露天作业（除特殊行业外）；3. 对老、弱、病、幼人群采取保护措施；4. 有关部门和单位要特别注意防火。",
            area_desc="乌海市海勃湾区、乌达区",
            event="高温红色预警",
        ),
        "en-US": CapTexts(
            headline="Heat warning raised to red for Haibowan and Wuda districts, Wuhai",
            description="Wuhai Meteorological Observatory raised the heat warning to red at 10:00 on 10 July 2017: from midday the maximum temperature in Haibowan and Wuda districts will reach 40 °C or more.",
            instruction="Take emergency heat measures; stop open-air outdoor work except in special trades; protect the elderly, the sick and the young; take particular care to prevent fires.",
            area_desc="Haibowan and Wuda districts, Wuhai",
            event="Heat red warning",
        ),
    },
    "cancel": {
        "zh-CN": CapTexts(
            headline="乌海市气象台解除高温红色预警[Ⅰ级/特别严重]",
            description="乌海市气象台2017年07月10日19时解除高温红色预警信号：海勃湾区、乌达区最高气温已降至37℃以下。",
            instruction="",
            area_desc="乌海市海勃湾区、乌达区",
            event="高温红色预警",
        ),
        "en-US": CapTexts(
            headline="Heat red warning lifted for Haibowan and Wuda districts, Wuhai",
            description="Wuhai Meteorological Observatory lifted the heat red warning at 19:00 on 10 July 2017: maximum temperatures in Haibowan and Wuda districts have fallen below 37 °C.",
            instruction="",
            area_desc="Haibowan and Wuda districts, Wuhai",
            event="Heat red warning",
        ),
    },
}
KNOWN_GOOD = {
    "heat_orange_alert.xml": (HEAT_ORANGE_ALERT, "alert"),
    "heat_red_update.xml": (HEAT_RED_UPDATE, "update"),
    "heat_cancel.xml": (HEAT_CANCEL, "cancel"),
}


def texts_for(msg: WarningMessage) -> dict[str, CapTexts]:
    """Plain texts for any hazard and level, in both languages."""
    word = {"Alert": "issued", "Update": "updated", "Cancel": "lifted"}[msg.msg_type]
    return {
        "en-US": CapTexts(
            headline=f"{msg.hazard.capitalize()} {msg.level} warning {word} for Wuhai",
            description=f"The {msg.hazard} {msg.level} warning for Haibowan and Wuda districts is {word}.",
            instruction="Follow the guidance of the local authorities.",
            area_desc="Haibowan and Wuda districts, Wuhai",
            event=f"{msg.hazard.capitalize()} {msg.level} warning",
        ),
        "zh-CN": CapTexts(
            headline=f"乌海市气象台{word}预警",
            description="海勃湾区、乌达区预警。",
            instruction="请注意防范。",
            area_desc="乌海市海勃湾区、乌达区",
            event="气象灾害预警",
        ),
    }


def render(msg: WarningMessage, **changes: object) -> bytes:
    """`msg` (with `changes` applied) rendered with plain texts."""
    msg = dataclasses.replace(msg, **changes)  # type: ignore[arg-type]
    return render_cap(msg, texts_for(msg))


def info_values(xml: bytes, element: str) -> list[str]:
    return etree.fromstring(xml).xpath(f"cap:info/cap:{element}/text()", namespaces=NS)


# ---------------------------------------------------------------------------------------------- known good


@pytest.mark.parametrize("file_name", sorted(KNOWN_GOOD))
def test_the_heat_warning_lifecycle_renders_exactly_the_known_good_documents(file_name: str) -> None:
    msg, texts = KNOWN_GOOD[file_name]
    xml = render_cap(msg, HEAT_TEXTS[texts], web=WEB, contact=CONTACT)
    assert xml == (DATA / file_name).read_bytes()
    validate_cap(xml)


def test_the_known_good_update_references_the_alert_and_the_cancel_references_both() -> None:
    update = etree.fromstring((DATA / "heat_red_update.xml").read_bytes())
    cancel = etree.fromstring((DATA / "heat_cancel.xml").read_bytes())
    alert_triple = "wuhai@weather.example.cn,15030041600000_20170709160000,2017-07-09T16:00:00+08:00"
    update_triple = "wuhai@weather.example.cn,15030041600000_20170710100000,2017-07-10T10:00:00+08:00"
    assert update.findtext("cap:references", namespaces=NS) == alert_triple
    assert cancel.findtext("cap:references", namespaces=NS) == f"{alert_triple} {update_triple}"


# ---------------------------------------------------------------------------------------------- every hazard


@pytest.mark.parametrize(("hazard", "level"), HAZARD_LEVEL_PAIRS)
@pytest.mark.parametrize(
    "lifecycle", [HEAT_ORANGE_ALERT, HEAT_RED_UPDATE, HEAT_CANCEL], ids=lambda m: m.msg_type
)
def test_every_hazard_and_level_renders_a_schema_valid_alert(
    hazard: str, level: str, lifecycle: WarningMessage
) -> None:
    xml = render(lifecycle, hazard=hazard, level=level)
    validate_cap(xml)
    root = etree.fromstring(xml)
    assert (
        root.xpath("cap:info/cap:eventCode/cap:value/text()", namespaces=NS)
        == [HAZARD_EVENT_CODES[hazard]] * 2
    )
    assert info_values(xml, "severity") == [cap.SEVERITY[level]] * 2
    assert info_values(xml, "parameter/cap:value") == [level] * 2
    assert info_values(xml, "language") == ["zh-CN", "en-US"]


@pytest.mark.parametrize(
    ("level", "severity"),
    [("blue", "Minor"), ("yellow", "Moderate"), ("orange", "Severe"), ("red", "Extreme")],
)
def test_severity_follows_the_cma_colour(level: str, severity: str) -> None:
    assert (
        info_values(render(HEAT_ORANGE_ALERT, hazard="rainstorm", level=level), "severity") == [severity] * 2
    )


@pytest.mark.parametrize(
    ("hazard", "level", "response"),
    [
        ("rainstorm", "blue", "Prepare"),
        ("sandstorm", "yellow", "Prepare"),
        ("heat", "orange", "Avoid"),
        ("rainstorm", "red", "Shelter"),
        ("frost", "blue", "Prepare"),
        ("frost", "yellow", "Execute"),
        ("frost", "orange", "Execute"),
    ],
)
def test_response_type_follows_the_level_and_frost_asks_for_action_on_the_fields(
    hazard: str, level: str, response: str
) -> None:
    assert (
        info_values(render(HEAT_ORANGE_ALERT, hazard=hazard, level=level), "responseType") == [response] * 2
    )


def test_a_cancel_is_all_clear_past_and_unlikely_keeping_the_cancelled_severity() -> None:
    xml = render(HEAT_CANCEL)
    assert info_values(xml, "responseType") == ["AllClear"] * 2
    assert info_values(xml, "urgency") == ["Past"] * 2
    assert info_values(xml, "certainty") == ["Unlikely"] * 2
    assert info_values(xml, "severity") == ["Extreme"] * 2


# ---------------------------------------------------------------------------------------------- derivations


@pytest.mark.parametrize(
    ("lead", "urgency"),
    [
        (timedelta(hours=-2), "Immediate"),
        (timedelta(minutes=30), "Immediate"),
        (timedelta(hours=1), "Immediate"),
        (timedelta(hours=1, seconds=1), "Expected"),
        (timedelta(hours=19), "Expected"),
        (timedelta(hours=24), "Expected"),
        (timedelta(hours=24, seconds=1), "Future"),
        (timedelta(hours=40), "Future"),
    ],
)
def test_forecast_urgency_follows_the_lead_time_from_sending_to_onset(lead: timedelta, urgency: str) -> None:
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, onset=HEAT_ORANGE_ALERT.sent + lead, expires=beijing(12, 0))
    assert derive_urgency(msg) == urgency
    assert info_values(render_cap(msg, texts_for(msg)), "urgency") == [urgency] * 2


@pytest.mark.parametrize("branch", ["observed", "forecast+observed"])
def test_an_observed_hazard_is_immediate_and_observed_whatever_the_lead_time(branch: str) -> None:
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, branch=branch, probability=0.3)  # type: ignore[arg-type]
    assert (derive_urgency(msg), derive_certainty(msg)) == ("Immediate", "Observed")


@pytest.mark.parametrize(
    ("probability", "certainty"),
    [(0.4, "Possible"), (0.5, "Possible"), (0.51, "Likely"), (0.8, "Likely"), (None, "Likely")],
)
def test_forecast_certainty_is_likely_only_above_even_odds_and_deterministic_forecasts_are_likely(
    probability: float | None, certainty: str
) -> None:
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, probability=probability)
    assert derive_certainty(msg) == certainty
    assert info_values(render_cap(msg, texts_for(msg)), "certainty") == [certainty] * 2


def test_a_probability_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(CapError, match=r"^certainty: probability 1.2"):
        render(HEAT_ORANGE_ALERT, probability=1.2)


# ---------------------------------------------------------------------------------------------- guards


def one_line_error(msg: WarningMessage, texts: dict[str, CapTexts] | None = None, **kwargs: str) -> CapError:
    with pytest.raises(CapError) as info:
        render_cap(msg, texts if texts is not None else texts_for(msg), **kwargs)
    assert "\n" not in str(info.value)
    return info.value


def with_english(**changes: str) -> dict[str, CapTexts]:
    texts = texts_for(HEAT_ORANGE_ALERT)
    return {**texts, "en-US": dataclasses.replace(texts["en-US"], **changes)}


def test_an_area_description_of_fifty_characters_is_refused_naming_its_length() -> None:
    error = one_line_error(HEAT_ORANGE_ALERT, with_english(area_desc="x" * 50))
    assert error.element == "areaDesc"
    assert "50 characters" in str(error)
    validate_cap(render_cap(HEAT_ORANGE_ALERT, with_english(area_desc="x" * 49)))


def test_a_headline_over_140_characters_is_refused() -> None:
    error = one_line_error(HEAT_ORANGE_ALERT, with_english(headline="h" * 141))
    assert (error.element, "141 characters" in str(error)) == ("headline", True)
    validate_cap(render_cap(HEAT_ORANGE_ALERT, with_english(headline="h" * 140)))


def test_a_headline_equal_to_the_description_is_refused() -> None:
    error = one_line_error(
        HEAT_ORANGE_ALERT, with_english(headline="Heat warning", description="Heat warning")
    )
    assert error.element == "headline"


def test_an_event_name_of_35_characters_or_more_is_refused() -> None:
    assert one_line_error(HEAT_ORANGE_ALERT, with_english(event="e" * 35)).element == "event"


@pytest.mark.parametrize("element", ["headline", "description", "area_desc", "event"])
def test_an_empty_required_text_is_refused(element: str) -> None:
    one_line_error(HEAT_ORANGE_ALERT, with_english(**{element: "  "}))


@pytest.mark.parametrize("msg_type", ["Update", "Cancel"])
def test_an_update_or_cancel_without_references_is_refused(msg_type: str) -> None:
    msg = dataclasses.replace(HEAT_RED_UPDATE, msg_type=msg_type, references=())  # type: ignore[arg-type]
    error = one_line_error(msg)
    assert error.element == "references"
    assert msg_type in str(error)


def test_an_alert_with_references_is_refused() -> None:
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, references=HEAT_RED_UPDATE.references)
    assert one_line_error(msg).element == "references"


def test_a_reference_sent_after_the_message_is_refused() -> None:
    later = Reference(ISSUER.sender, "15030041600000_20170711000000", beijing(11, 0))
    msg = dataclasses.replace(HEAT_RED_UPDATE, references=(later,))
    assert one_line_error(msg).element == "references"


@pytest.mark.parametrize(("expires_hours_after_sending"), [0, -1])
def test_expiry_not_after_sending_is_refused(expires_hours_after_sending: int) -> None:
    expires = HEAT_ORANGE_ALERT.sent + timedelta(hours=expires_hours_after_sending)
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, onset=expires - timedelta(hours=1), expires=expires)
    assert one_line_error(msg).element == "expires"


def test_expiry_not_after_onset_is_refused() -> None:
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, expires=HEAT_ORANGE_ALERT.onset)
    assert one_line_error(msg).element == "expires"


def test_a_time_without_a_zone_is_refused() -> None:
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, sent=datetime(2017, 7, 9, 16))
    assert one_line_error(msg).element == "sent"


@pytest.mark.parametrize("identifier", ["a b", "a,b", "a<b", "a&b", ""])
def test_an_identifier_with_a_forbidden_character_is_refused(identifier: str) -> None:
    assert (
        one_line_error(dataclasses.replace(HEAT_ORANGE_ALERT, identifier=identifier)).element == "identifier"
    )


@pytest.mark.parametrize("code", ["150302", "15030200000X", "1503020000001"])
def test_a_geocode_that_is_not_twelve_digits_is_refused(code: str) -> None:
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, areas=(Area(code, "海勃湾区", "Haibowan"),))
    assert one_line_error(msg).element == "geocode"


def test_a_message_without_areas_is_refused() -> None:
    assert one_line_error(dataclasses.replace(HEAT_ORANGE_ALERT, areas=())).element == "area"


def test_a_level_the_hazard_does_not_have_is_refused() -> None:
    assert one_line_error(dataclasses.replace(HEAT_ORANGE_ALERT, level="blue")).element == "severity"


@pytest.mark.parametrize(
    ("polygon", "problem"),
    [
        ("39.4,106.6 39.4,106.9 39.8,106.9 39.8,106.6", "not closed"),
        ("39.4,106.6 39.4,106.9 39.4,106.6", "at least 4"),
        ("39.4,106.6 39.4,106.9 39.8,106.9 39.4,106.6000001", "more than 6 decimals"),
        ("39.4,106.6 39.8,106.9 39.4,106.9 39.8,106.6 39.4,106.6", "not a valid simple polygon"),
        ("39.4;106.6 39.4,106.9 39.8,106.9 39.4,106.6", "not a 'lat,lon' pair"),
        ("99,106.6 39.4,106.9 39.8,106.9 99,106.6", "not a WGS84"),
        ("39.4,106.6 39.4,106.6 39.4,106.6 39.4,106.6", "not a valid simple polygon"),
    ],
    ids=["open", "three-points", "seven-decimals", "bow-tie", "bad-pair", "latitude", "no-area"],
)
def test_an_invalid_polygon_is_refused_saying_why(polygon: str, problem: str) -> None:
    error = one_line_error(dataclasses.replace(HEAT_ORANGE_ALERT, polygons=(polygon,)))
    assert error.element == "polygon"
    assert problem in str(error)


def test_overlapping_polygons_are_refused() -> None:
    other = "39.5,106.7 39.5,107.1 39.95,107.1 39.95,106.7 39.5,106.7"
    error = one_line_error(dataclasses.replace(HEAT_ORANGE_ALERT, polygons=(POLYGON, other)))
    assert "overlap" in str(error)


def test_non_contiguous_polygons_are_refused_and_touching_ones_accepted() -> None:
    west = "39.4,106.6 39.4,106.7 39.5,106.7 39.5,106.6 39.4,106.6"
    east = "39.4,106.7 39.4,106.8 39.5,106.8 39.5,106.7 39.4,106.7"
    far = "39.4,106.9 39.4,107 39.5,107 39.5,106.9 39.4,106.9"
    assert "separate alerts" in str(
        one_line_error(dataclasses.replace(HEAT_ORANGE_ALERT, polygons=(west, far)))
    )
    xml = render(HEAT_ORANGE_ALERT, polygons=(west, east))
    validate_cap(xml)
    assert len(info_values(xml, "area/cap:polygon")) == 4  # two polygons in each of two languages


def test_the_web_link_must_be_an_absolute_http_url() -> None:
    error = one_line_error(HEAT_ORANGE_ALERT, web="weather.example.cn/warnings")
    assert error.element == "web"


def test_no_texts_means_no_alert() -> None:
    assert one_line_error(HEAT_ORANGE_ALERT, {}).element == "info"


def test_a_control_character_in_a_text_is_refused_naming_the_element() -> None:
    error = one_line_error(HEAT_ORANGE_ALERT, with_english(description="bad \x07 bell"))
    assert error.element == "description"


# ---------------------------------------------------------------------------------------------- content


@pytest.mark.parametrize("status", ["Actual", "Test", "Exercise"])
def test_the_status_is_kept_as_given(status: str) -> None:
    xml = render(HEAT_ORANGE_ALERT, status=status)
    assert etree.fromstring(xml).findtext("cap:status", namespaces=NS) == status


def test_chinese_comes_first_then_english_whatever_order_the_texts_come_in() -> None:
    texts = texts_for(HEAT_ORANGE_ALERT)
    reordered = {"fr-FR": texts["en-US"], "en-US": texts["en-US"], "zh-CN": texts["zh-CN"]}
    xml = render_cap(HEAT_ORANGE_ALERT, reordered)
    assert info_values(xml, "language") == ["zh-CN", "en-US", "fr-FR"]
    assert info_values(xml, "senderName") == [ISSUER.name, ISSUER.name_en, ISSUER.name_en]


def test_times_are_shown_in_beijing_time_to_the_second() -> None:
    msg = dataclasses.replace(HEAT_ORANGE_ALERT, sent=datetime(2017, 7, 9, 20, 0, 0, 999, tzinfo=UTC))
    root = etree.fromstring(render_cap(msg, texts_for(msg)))
    assert root.findtext("cap:sent", namespaces=NS) == "2017-07-10T04:00:00+08:00"
    assert info_values(etree.tostring(root), "expires") == ["2017-07-10T20:00:00+08:00"] * 2


def test_markup_characters_in_texts_are_escaped_and_round_trip() -> None:
    nasty = "<script>alert('x')</script> & \"quoted\" 'single'"
    texts = with_english(headline=nasty, description=f"{nasty}!", area_desc="<b>&")
    xml = render_cap(HEAT_ORANGE_ALERT, texts)
    validate_cap(xml)
    assert b"<script>" not in xml
    assert b"&lt;script&gt;" in xml
    assert info_values(xml, "headline")[1] == nasty
    assert info_values(xml, "description")[1] == f"{nasty}!"
    assert info_values(xml, "area/cap:areaDesc")[1] == "<b>&"


def test_the_note_is_written_only_when_there_is_one() -> None:
    assert etree.fromstring(render(HEAT_ORANGE_ALERT)).find("cap:note", namespaces=NS) is None
    assert etree.fromstring(render(HEAT_CANCEL)).findtext("cap:note", namespaces=NS) == HEAT_CANCEL.note


def test_no_profile_code_is_claimed() -> None:
    assert etree.fromstring(render(HEAT_ORANGE_ALERT)).find("cap:code", namespaces=NS) is None


# ---------------------------------------------------------------------------------------------- schema


def test_the_schema_rejects_a_broken_document_with_one_line_naming_the_element() -> None:
    broken = render(HEAT_ORANGE_ALERT).replace(b"<urgency>Expected</urgency>", b"<urgency>Soon</urgency>")
    with pytest.raises(CapError) as info:
        validate_cap(broken)
    message = str(info.value)
    assert "\n" not in message
    assert "cap:urgency" in message and "Soon" in message


def test_a_document_that_is_not_xml_is_refused() -> None:
    with pytest.raises(CapError, match="not well-formed XML"):
        validate_cap(b"<alert><identifier>")


def test_the_schema_is_compiled_once_per_process() -> None:
    assert cap._cap_schema() is cap._cap_schema()


# ---------------------------------------------------------------------------------------------- signature


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[bytes, bytes]:
    return key_and_certificate(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_pair() -> tuple[bytes, bytes]:
    return key_and_certificate(ec.generate_private_key(ec.SECP256R1()))


@pytest.mark.parametrize(
    ("pair", "algorithm"),
    [
        ("rsa_pair", "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"),
        ("ec_pair", "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"),
    ],
)
def test_a_signed_alert_verifies_and_still_passes_the_schema(
    pair: str, algorithm: str, request: pytest.FixtureRequest
) -> None:
    key_pem, cert_pem = request.getfixturevalue(pair)
    signed = sign_cap(render(HEAT_ORANGE_ALERT), key_pem, cert_pem)
    validate_cap(signed)
    verify_cap(signed, cert_pem)
    root = etree.fromstring(signed)
    assert etree.QName(root[-1]).text == f"{{{cap.DSIG_NAMESPACE}}}Signature"  # enveloped, last child
    exclusive = "http://www.w3.org/2001/10/xml-exc-c14n#"
    assert root.xpath("ds:Signature/ds:SignedInfo/ds:CanonicalizationMethod/@Algorithm", namespaces=NS) == [
        exclusive
    ]
    assert root.xpath("ds:Signature/ds:SignedInfo/ds:SignatureMethod/@Algorithm", namespaces=NS) == [
        algorithm
    ]
    assert root.xpath("ds:Signature/ds:SignedInfo/ds:Reference/@URI", namespaces=NS) == [""]
    assert root.find("ds:Signature/ds:KeyInfo/ds:X509Data/ds:X509Certificate", namespaces=NS) is not None


def test_a_tampered_signed_alert_fails_verification(rsa_pair: tuple[bytes, bytes]) -> None:
    key_pem, cert_pem = rsa_pair
    signed = sign_cap(render(HEAT_ORANGE_ALERT), key_pem, cert_pem)
    tampered = signed.replace(b"<severity>Severe</severity>", b"<severity>Minor</severity>", 1)
    assert tampered != signed
    with pytest.raises(CapError, match=r"^Signature: verification failed"):
        verify_cap(tampered, cert_pem)


def test_a_signature_by_another_key_fails_verification(
    rsa_pair: tuple[bytes, bytes], ec_pair: tuple[bytes, bytes]
) -> None:
    signed = sign_cap(render(HEAT_ORANGE_ALERT), *rsa_pair)
    with pytest.raises(CapError, match=r"^Signature: verification failed"):
        verify_cap(signed, ec_pair[1])


def test_an_unsigned_alert_fails_verification(rsa_pair: tuple[bytes, bytes]) -> None:
    with pytest.raises(CapError, match="found 0"):
        verify_cap(render(HEAT_ORANGE_ALERT), rsa_pair[1])


def test_signing_refuses_a_certificate_of_another_key_and_a_second_signature(
    rsa_pair: tuple[bytes, bytes], ec_pair: tuple[bytes, bytes]
) -> None:
    with pytest.raises(CapError, match="does not belong"):
        sign_cap(render(HEAT_ORANGE_ALERT), rsa_pair[0], ec_pair[1])
    signed = sign_cap(render(HEAT_ORANGE_ALERT), *ec_pair)
    with pytest.raises(CapError, match="already signed"):
        sign_cap(signed, *ec_pair)


def test_signing_refuses_a_document_that_is_not_valid_cap(ec_pair: tuple[bytes, bytes]) -> None:
    with pytest.raises(CapError, match=r"CAP 1\.2 schema"):
        sign_cap(b'<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>', *ec_pair)
