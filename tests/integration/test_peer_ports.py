"""The peers the tests stop and start again on the same port (an MQTT broker, a mail server, an SMSC) listen
below the kernel's ephemeral range. A port there is never given to a socket bound to port 0 nor to an
outgoing connection, so nothing, not even another test worker, takes it while the peer is down: in CI, with
two workers, an SMSC restarted after a 30 s outage found its port taken (EADDRINUSE)."""

from __future__ import annotations

import pytest

from tests.peers.mosquitto_fixture import MosquittoBroker
from tests.peers.smsc_fixture import SmscPeerError, start_smsc
from tests.peers.smtp_fixture import SmtpServer
from tests.ports import first_ephemeral_port, free_port


def ephemeral_from() -> int:
    first = first_ephemeral_port()
    if first is None:
        pytest.skip("this system does not say where its ephemeral ports begin")
    return first


def test_a_free_port_lies_below_the_ephemeral_range() -> None:
    first = ephemeral_from()
    ports = [free_port() for _ in range(20)]
    assert all(port < first for port in ports), ports


def test_the_broker_and_the_mail_server_listen_below_the_ephemeral_range(
    mosquitto: MosquittoBroker, smtp_server: SmtpServer
) -> None:
    first = ephemeral_from()
    assert mosquitto.port < first and smtp_server.port < first


def test_an_smsc_that_cannot_listen_says_why() -> None:
    holder = start_smsc(port=free_port())
    try:
        with pytest.raises(SmscPeerError, match="did not start: Error: listen EADDRINUSE"):
            start_smsc(port=holder.port)
    finally:
        holder.stop()
