"""The webhook channel's pure parts: which addresses the SSRF guard refuses, and how Retry-After is read."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import pytest

from channels.webhooks.client import address_refusal, retry_after_s

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("address", "refusal"),
    [
        ("8.8.8.8", None),
        ("2001:4860:4860::8888", None),
        ("::ffff:8.8.8.8", None),  # a public address, IPv4-mapped
        ("64:ff9b::808:808", None),  # and through NAT64
        ("127.0.0.1", "a loopback address"),
        ("127.255.0.9", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd12:3456::1", "a private address"),
        ("169.254.169.254", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("224.0.0.251", "a multicast address"),
        ("ff02::1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("::", "an unspecified address"),
        ("240.0.0.1", "a private address"),  # reserved for future use, which Python counts as private too
        ("100.64.0.1", "not a public address"),  # carrier-grade NAT
        ("::ffff:127.0.0.1", "an IPv4-mapped loopback address"),
        ("::ffff:169.254.169.254", "an IPv4-mapped link-local address"),
        ("64:ff9b::7f00:1", "a NAT64 loopback address"),
        ("::127.0.0.1", "a reserved address"),  # the deprecated IPv4-compatible form
    ],
)
def test_the_guard_refuses_every_address_that_is_not_public(address: str, refusal: str | None) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == refusal


def test_only_the_networks_allow_listed_pass_and_an_ipv4_network_does_not_admit_the_mapped_form() -> None:
    allow = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.20.0.0/16"))
    assert address_refusal(ipaddress.ip_address("127.0.0.1"), allow) is None
    assert address_refusal(ipaddress.ip_address("10.20.9.9"), allow) is None
    assert address_refusal(ipaddress.ip_address("127.0.0.2"), allow) == "a loopback address"
    assert address_refusal(ipaddress.ip_address("10.21.0.1"), allow) == "a private address"
    assert address_refusal(ipaddress.ip_address("::1"), allow) == "a loopback address"
    assert (
        address_refusal(ipaddress.ip_address("::ffff:10.20.9.9"), allow) == "an IPv4-mapped private address"
    )
    mapped = (ipaddress.ip_network("::ffff:10.20.0.0/112"),)
    assert address_refusal(ipaddress.ip_address("::ffff:10.20.9.9"), mapped) is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("0", 0.0),
        ("120", 120.0),
        (" 30 ", 30.0),
        ("86401", 86400.0),
        ("1" * 40, 86400.0),
        ("-5", None),
        ("1.5", None),
        ("", None),
        ("soon", None),
        ("Sat, 05 Dec 2026 12:02:00 GMT", 120.0),
        ("Sat, 05 Dec 2026 11:00:00 GMT", 0.0),  # already past: at once (the schedule still applies)
        ("Sun, 06 Dec 2026 12:00:01 GMT", 86400.0),
        ("Sat, 05 Dec 2026 12:02:00", None),  # no zone: not an HTTP-date
        ("Sat, 45 Dec 2026 12:02:00 GMT", None),
        ("٣٠", None),  # digits, but not ASCII ones
    ],
)
def test_retry_after_is_seconds_or_an_http_date_capped_at_a_day(
    value: str | None, seconds: float | None
) -> None:
    assert retry_after_s(value, now=NOW) == seconds
