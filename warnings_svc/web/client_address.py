"""The address of the client behind a request, for login rate limits and logs.

Behind a reverse proxy every request comes from the proxy's address, so a limit per address would lock
everyone out at once. When the direct peer is one of the configured `trusted_proxies`, the client is the
right-most address of ``X-Forwarded-For`` that is not itself a trusted proxy (the addresses to its right
were added by proxies we trust; anything to its left the client may have written itself). Otherwise the
header is ignored: anyone can send it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def client_address(peer: str | None, forwarded_for: str | None, trusted: Sequence[Network]) -> str:
    """The client's address ('' when unknown).

    >>> proxy = [ipaddress.ip_network("127.0.0.1/32")]
    >>> client_address("127.0.0.1", "203.0.113.7, 198.51.100.2", proxy)
    '198.51.100.2'
    >>> client_address("192.0.2.1", "203.0.113.7", proxy)  # not from the proxy: the header is ignored
    '192.0.2.1'
    """
    if not peer:
        return ""
    if not trusted or not forwarded_for or not _is_trusted(peer, trusted):
        return peer
    for hop in reversed(forwarded_for.split(",")):
        hop = hop.strip()
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain names no one reliably: fall back to the proxy
        if not _is_trusted(str(address), trusted):
            return str(address)
    return peer  # every hop is a trusted proxy


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)
