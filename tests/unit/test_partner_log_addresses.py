"""The delivery log's pure parts: addresses shown without their secrets, and the alert stream's event ids."""

from __future__ import annotations

import doctest

import pytest

from warnings_svc.dissemination.partners import log
from warnings_svc.web.api import alert_stream


def test_doctests() -> None:
    assert doctest.testmod(log).failed == 0
    assert doctest.testmod(alert_stream).failed == 0


@pytest.mark.parametrize(
    ("channel", "address", "shown"),
    [
        ("webhook", "https://partner.example.cn/hooks/warnings", "https://partner.example.cn/hooks/warnings"),
        ("webhook", "https://partner.example.cn:8443/h?key=abc", "https://partner.example.cn:8443/h?key=***"),
        ("webhook", "https://user@partner.example.cn/h", "https://user@partner.example.cn/h"),
        ("webhook", "https://user:pass@partner.example.cn/h#frag", "https://user:***@partner.example.cn/h"),
        ("webhook", "http://[2001:db8::1]:8080/h?a=1&b=", "http://[2001:db8::1]:8080/h?a=***&b=***"),
        ("webhook", "https://partner.example.cn:99999/h", "***"),  # no URL a dispatcher could use
        ("email", "duty@example.cn", "duty@example.cn"),
        ("sms", "+8613800000000", "+8613800000000"),
        ("mqtt", "water/ops", "water/ops"),
    ],
)
def test_an_address_is_shown_without_its_secrets(channel: str, address: str, shown: str) -> None:
    assert log.shown_address(channel, address) == shown


def test_an_event_id_that_is_not_one_is_refused() -> None:
    for raw in ("", "12-1", "20261205T204751Z-12", "20261205T204751-12-1", "20261205T246051Z-1-1", "x" * 80):
        assert alert_stream.parse_event_id(raw) is None
