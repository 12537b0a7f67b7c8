"""A free TCP port on 127.0.0.1 for a server a test starts: taken below the kernel's ephemeral range, so that
no socket bound to port 0 meanwhile (the demo's own simulated peers start before its web server; another
test worker's servers) and no outgoing connection can be given the same port between the choice and its use,
nor while a peer the test stopped is down before it starts again on that port."""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 10_000


def first_ephemeral_port() -> int | None:
    """Where the kernel's ephemeral ports begin, when the system says."""
    try:
        return int(EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on, outside the ephemeral range where the system says what it is."""
    first_ephemeral = first_ephemeral_port() or 0
    if first_ephemeral > LOWEST + 1000:
        for port in random.sample(range(LOWEST, first_ephemeral), 50):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:  # no range known, or nothing free below it
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
