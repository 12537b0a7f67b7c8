"""Which address a login is counted against, directly or behind trusted reverse proxies."""

from __future__ import annotations

import doctest
import ipaddress

import pytest

from warnings_svc.web import client_address as module
from warnings_svc.web.client_address import client_address

PROXIES = [
    ipaddress.ip_network("127.0.0.1/32"),
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("::1"),
]


def test_doctests() -> None:
    assert doctest.testmod(module).failed == 0


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "trusted", "expected"),
    [
        ("127.0.0.1", "198.51.100.9", PROXIES, "198.51.100.9"),
        ("127.0.0.1", "198.51.100.9, 10.0.0.5", PROXIES, "198.51.100.9"),  # through two proxies we trust
        ("127.0.0.1", "6.6.6.6, 198.51.100.9, 10.0.0.5", PROXIES, "198.51.100.9"),  # the client wrote 6.6.6.6
        ("::1", "2001:db8::7", PROXIES, "2001:db8::7"),
        ("127.0.0.1", "10.0.0.5, 10.0.0.6", PROXIES, "127.0.0.1"),  # only proxies: the peer
        ("127.0.0.1", "not-an-address", PROXIES, "127.0.0.1"),
        ("127.0.0.1", None, PROXIES, "127.0.0.1"),
        ("192.0.2.1", "198.51.100.9", PROXIES, "192.0.2.1"),  # not from a proxy: the header is anyone's
        ("127.0.0.1", "198.51.100.9", [], "127.0.0.1"),  # no proxies configured: the header is ignored
        (None, "198.51.100.9", PROXIES, ""),
        ("", None, [], ""),
    ],
)
def test_the_client_is_the_right_most_address_no_trusted_proxy_added(
    peer: str | None, forwarded_for: str | None, trusted: list, expected: str
) -> None:
    assert client_address(peer, forwarded_for, trusted) == expected
