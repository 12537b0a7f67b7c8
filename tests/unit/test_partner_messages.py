"""The partner email and MQTT adapters' pure parts: address checks, the Message-ID, the email as built."""

from __future__ import annotations

import doctest
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest

import channels.email.client as email_client
import channels.mqtt.link as mqtt_link
import channels.mqtt.partners as mqtt_partners
from channels.email.client import InvalidEmail, build_email, check_address, message_id_header
from channels.mqtt.partners import check_topic_address
from channels.partner import PartnerMessage

MESSAGE = PartnerMessage(
    message_id="pd-7-2",
    address="duty@wuda-water.example.cn",
    body=b"{}",
    cap_xml='<?xml version="1.0" encoding="UTF-8"?>\n<alert><headline>乌海市气象台发布大风蓝色预警</headline></alert>\n',
    subject="乌海市气象台发布大风蓝色预警\r\nBcc: spy@example.com",
    text="乌达区：预计今天夜间有6级以上大风。",
    timestamp=0,
)


@pytest.mark.parametrize("module", [email_client, mqtt_link, mqtt_partners])
def test_doctests(module: object) -> None:
    assert doctest.testmod(module).failed == 0  # type: ignore[arg-type]


def test_the_email_as_built_has_one_line_headers_and_the_document_untouched() -> None:
    email = build_email(MESSAGE, "warnings@wuhai.example.cn", now=datetime(2026, 7, 1, 4, tzinfo=UTC))
    raw = email.as_bytes()
    head = raw.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert raw.isascii() and not any(line.startswith(b"Bcc") for line in head)  # folded, never a header
    parsed = message_from_bytes(raw, policy=policy.default)
    assert parsed["Subject"] == "乌海市气象台发布大风蓝色预警 Bcc: spy@example.com"
    assert parsed["Date"] == "Wed, 01 Jul 2026 04:00:00 +0000"
    assert parsed["Message-ID"] == "<pd-7-2@wuhai.example.cn>"
    attachment = next(parsed.iter_attachments())
    assert attachment.get_payload(decode=True) == MESSAGE.cap_xml.encode()
    assert attachment["Content-Transfer-Encoding"] == "base64"


@pytest.mark.parametrize("name", ["../etc/passwd", "a\r\nb.xml", "", "警报.xml", ".hidden"])
def test_an_attachment_name_that_is_not_a_plain_file_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidEmail, match="bad attachment name"):
        build_email(PartnerMessage("x", "a@b.cn", b"", "<alert/>", "s", "t", 0, cap_filename=name), "w@b.cn")


def test_a_long_message_id_is_hashed_and_stays_stable() -> None:
    long_id = "x" * 500
    assert message_id_header(long_id, "w@b.cn") == message_id_header(long_id, "w@b.cn")
    assert len(message_id_header(long_id, "w@b.cn")) == len("<@b.cn>") + 64


@pytest.mark.parametrize(
    "address", ["a@b", "first.last@sub.example.cn", "o'brien+alerts@example.cn", "x" * 64 + "@example.cn"]
)
def test_plain_addresses_pass(address: str) -> None:
    assert check_address(address) == address


@pytest.mark.parametrize("address", ["a@b.cn\n", "a@b.cn.", "a@b..cn", "a b@c.cn", "a@[127.0.0.1]"])
def test_odd_addresses_are_refused(address: str) -> None:
    with pytest.raises(InvalidEmail):
        check_address(address)


@pytest.mark.parametrize("address", ["a", "a-b_c/D9", "1/2/3/4/5/6/7/8"])
def test_partner_topics_pass(address: str) -> None:
    assert check_topic_address(address) == address


@pytest.mark.parametrize("address", ["a/#", "a/+", "a\n", "x" * 201, "1/2/3/4/5/6/7/8/9", "a.b"])
def test_partner_topics_with_wildcards_or_odd_levels_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match="no wildcards"):
        check_topic_address(address)
