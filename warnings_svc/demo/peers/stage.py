"""The demo's peers for the area channels: an MQTT broker embedded in the demo (amqtt, a real broker, so the
demo needs nothing but Python) and simulated terminals on it.

`DemoStage` is an async context manager for code that runs in one event loop (`demo --smoke`);
`DemoStageThread` runs the same in a thread of its own beside the service (`demo`), so the service's processes
and the stage never share a loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Sequence
from typing import Any

from warnings_svc.demo.peers.terminals import SimulatedTerminal, SimulatedTerminals
from warnings_svc.dissemination.terminals import TerminalRow
from warnings_svc.settings import MqttTargetSettings

log = logging.getLogger(__name__)
# the broker logs every connection and state change at INFO: a few hundred terminals would drown the demo's log
for _name in ("amqtt", "transitions"):
    logging.getLogger(_name).setLevel(logging.WARNING)

TOPIC_PREFIX = "wuhai"
TARGET = "terminals"
START_TIMEOUT_S = 15.0


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoStage:
    """The embedded broker on a free loopback port and, once registered, the simulated terminals."""

    def __init__(self, *, port: int | None = None, terminal_delay_s: float = 0.5, broken_share: float = 0.05):
        self.port = port or free_loopback_port()
        self.url = f"mqtt://127.0.0.1:{self.port}"
        self.terminal_delay_s = terminal_delay_s
        self.broken_share = broken_share
        self.fleet: SimulatedTerminals | None = None
        self._broker: Any = None

    def mqtt_target(self) -> MqttTargetSettings:
        """The `[[dispatch.mqtt]]` target the demo's service puts warnings out on."""
        return MqttTargetSettings(name=TARGET, url=self.url, topic_prefix=TOPIC_PREFIX)

    async def __aenter__(self) -> DemoStage:
        from amqtt.broker import Broker  # imported here: only the demo runs a broker

        self._broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
        )
        await self._broker.start()
        log.info("demo MQTT broker (amqtt, embedded) listening", extra={"url": self.url})
        return self

    async def start_terminals(self, rows: Sequence[TerminalRow]) -> int:
        """Connect a simulated terminal for every registered row (labelled simulated); how many."""
        terminals = [SimulatedTerminal(r.terminal_id, r.area) for r in rows if r.target == TARGET]
        self.fleet = SimulatedTerminals(
            self.url, TOPIC_PREFIX, terminals, delay_s=self.terminal_delay_s, broken_share=self.broken_share
        )
        await self.fleet.__aenter__()
        return len(terminals)

    async def __aexit__(self, *exc: object) -> None:
        if self.fleet is not None:
            await self.fleet.__aexit__(None, None, None)
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.shutdown()


class DemoStageThread:
    """A `DemoStage` running in a daemon thread with its own event loop."""

    def __init__(self) -> None:
        self.stage = DemoStage()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="demo-stage", daemon=True)

    def start(self) -> DemoStage:
        """Start the broker; returns once it listens."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.stage.__aenter__(), self._loop).result(START_TIMEOUT_S)
        return self.stage

    def start_terminals(self, rows: Sequence[TerminalRow]) -> int:
        """Connect the simulated terminals (from any thread)."""
        future = asyncio.run_coroutine_threadsafe(self.stage.start_terminals(rows), self._loop)
        return future.result(START_TIMEOUT_S * 4)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.stage.__aexit__(None, None, None), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
