"""The loopback SMSC (node-smpp in server mode, tests/peers/smsc/server.js) as a pytest fixture.

A test module uses it with ``pytest_plugins = ["tests.peers.smsc_fixture"]`` at module level of a conftest, or
by importing the fixture: ``from tests.peers.smsc_fixture import smsc  # noqa: F401``. ``scripts/install-smsc-peer``
(run by ``scripts/test``) installs the node package first.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PEER_DIR = Path(__file__).parent / "smsc"
START_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 5.0


class SmscPeerError(RuntimeError):
    """The loopback SMSC could not be started or did not answer; one line."""


@dataclass
class SmscPeer:
    """A running loopback SMSC: where to bind, how to script faults, and what it received."""

    host: str
    port: int
    control_url: str
    system_id: str
    password: str
    process: subprocess.Popen[bytes] = field(repr=False)

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.control_url + path, data=data, method=method)
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_S) as response:
            return json.loads(response.read())

    def received(self, command: str | None = "submit_sm") -> list[dict[str, Any]]:
        """PDUs the SMSC received, oldest first (submit_sm by default; None for every command)."""
        return self._call("GET", "/received" + (f"?command={command}" if command else ""))

    def accepted(self) -> list[dict[str, Any]]:
        """submit_sm the SMSC accepted (answered with a message_id)."""
        return [r for r in self.received() if r.get("outcome") == "accepted"]

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Merge scripted faults (see server.js: throttle_count, response_delay_ms, drop_now, ...)."""
        return self._call("POST", "/faults", faults)

    def state(self) -> dict[str, Any]:
        """Bound sessions, faults in force and counters."""
        return self._call("GET", "/state")

    def counters(self) -> dict[str, int]:
        """The counters of /state: submits, distinct_destinations, receipts_sent/_acked/_requeued, binds, drops."""
        return self.state()["counters"]

    def send_mo(self, source: str, text: str, destination: str = "12121", data_coding: int = 8) -> None:
        """Have a phone at `source` send `text` to `destination` (a mobile-originated deliver_sm, UCS2 unless
        `data_coding` is 0); the SMSC sends it again until the ESME answers ESME_ROK."""
        self._call(
            "POST",
            "/mo",
            {"source": source, "text": text, "destination": destination, "data_coding": data_coding},
        )

    def reset(self) -> None:
        """Clear faults, records and counters."""
        self._call("POST", "/reset", {})

    def stop(self) -> None:
        """Stop the peer (SIGTERM, then SIGKILL after 5 s)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_smsc(
    system_id: str = "wuhai",
    password: str = "secret",
    receipt_delay_ms: int = 50,
    record: Path | None = None,
    record_mode: str = "full",
    *,
    port: int = 0,
    first_message_id: int = 1,
) -> SmscPeer:
    """Start the loopback SMSC on free ports of 127.0.0.1 and wait (at most 10 s) until it listens.

    ``port`` fixes the SMPP port (0: a free one), e.g. to start a peer again where its predecessor listened;
    ``first_message_id`` lets such a successor hand out message_ids its predecessor never did.

    ``record_mode="counts"`` keeps no per-PDU records (received() is empty), only the counters: for benchmarks,
    where a record of every PDU would grow without bound.
    """
    node = shutil.which("node")
    if node is None:
        raise SmscPeerError("no node on PATH: install Node.js 18 or newer")
    if not (PEER_DIR / "node_modules" / "smpp").is_dir():
        raise SmscPeerError("node-smpp is not installed: run scripts/install-smsc-peer")
    args = [
        node,
        str(PEER_DIR / "server.js"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--control-port",
        "0",
    ]
    args += ["--system-id", system_id, "--password", password, "--receipt-delay-ms", str(receipt_delay_ms)]
    args += ["--record-mode", record_mode, "--first-message-id", str(first_message_id)]
    if record is not None:
        args += ["--record", str(record)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=PEER_DIR)
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    line = b""
    while not line.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(remaining, 0))
        chunk = os.read(process.stdout.fileno(), 4096) if ready else b""
        if not chunk:
            process.kill()
            stderr = process.communicate(timeout=5)[1].decode(errors="replace").strip().splitlines()
            # Node ends an uncaught error's report with its own version: the line naming the error says more
            errors = [s.strip() for s in stderr if "Error" in s.split(":")[0]]
            said = errors[0] if errors else stderr[-1] if stderr else "timed out"
            raise SmscPeerError(f"loopback SMSC did not start: {said}")
        line += chunk
    ports = json.loads(line)
    return SmscPeer(
        host="127.0.0.1",
        port=ports["smpp_port"],
        control_url=f"http://127.0.0.1:{ports['control_port']}",
        system_id=system_id,
        password=password,
        process=process,
    )


@pytest.fixture
def smsc() -> Iterator[SmscPeer]:
    """A fresh loopback SMSC for one test, stopped afterwards."""
    peer = start_smsc()
    try:
        yield peer
    finally:
        peer.stop()
