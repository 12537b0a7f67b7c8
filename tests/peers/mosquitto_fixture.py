"""A real MQTT broker for the tests: Debian's Mosquitto on 127.0.0.1, with persistence, so that a restart keeps
retained messages and the service's session (`scripts/install-debian-peers` installs it).

Use the fixture ``mosquitto`` (one broker per test, on a free port): ``mosquitto.url``, ``mosquitto.restart()``,
``mosquitto.stop()`` and ``mosquitto.start()``.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

START_TIMEOUT_S = 10.0


class MosquittoBroker:
    """One Mosquitto process on 127.0.0.1:port, its persistence in `folder`."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.port = port
        self.url = f"mqtt://127.0.0.1:{port}"
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {port} 127.0.0.1\n"
            "allow_anonymous true\n"
            # started as root, Mosquitto would switch to the user mosquitto, who cannot write the test's folder
            f"user {getpass.getuser()}\n"
            "persistence true\n"
            f"persistence_location {folder}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 100000\n"
            f"log_dest file {folder}/mosquitto.log\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait until it takes connections."""
        program = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([program, "-c", str(self.config)], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited at start: {err.strip()[:300]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(
            f"mosquitto did not take connections on port {self.port} within {START_TIMEOUT_S} s"
        )

    def stop(self) -> None:
        """Stop it (SIGTERM: it saves its persistence file first)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[MosquittoBroker]:
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail("mosquitto is not installed: run scripts/install-debian-peers")
    broker = MosquittoBroker(tmp_path, free_port())
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
