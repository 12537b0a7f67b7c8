"""Simulated terminals (village loudspeakers, LED displays) for the demo, the tests and the benchmarks: each a
real MQTT client with a persistent session, subscribed to its area's topic.

A simulated terminal that receives a warning (a non-empty message that is not a Cancel) "plays" it after a
configured delay and acknowledges on ``{prefix}/ack/{terminal_id}`` with ``{"identifier", "played_at"}``,
once per identifier. A configured share of terminals is broken: they receive but never acknowledge. An
acknowledgement that cannot be published (the broker is down) is kept and published after reconnecting.
Everything it logs says "simulated".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiomqtt

from channels.mqtt.terminals import alert_topic, broker_address
from risk_zoning.store import UnitRecord
from warnings_svc.dissemination.terminals import TerminalRow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SimulatedTerminal:
    """One simulated terminal: its id and the 12-digit code of its area."""

    terminal_id: str
    area: str


@dataclass
class TerminalLog:
    """What one simulated terminal saw and did."""

    received: list[str] = field(default_factory=list)  # identifiers, in order (repeats included)
    acknowledged: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    cleared: int = 0  # empty retained messages seen
    connects: int = 0


class SimulatedTerminals:
    """A fleet of simulated terminals on one broker; `async with` connects them all."""

    def __init__(
        self,
        url: str,
        prefix: str,
        terminals: list[SimulatedTerminal],
        *,
        delay_s: float = 0.0,
        broken_share: float = 0.0,
        seed: int = 7,
    ) -> None:
        self.host, self.port = broker_address(url)
        self.prefix = prefix
        self.terminals = terminals
        self.delay_s = delay_s
        rng = random.Random(seed)
        self.broken = {t.terminal_id for t in terminals if rng.random() < broken_share}
        self.logs = {t.terminal_id: TerminalLog() for t in terminals}
        self._connected = {t.terminal_id: asyncio.Event() for t in terminals}
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> SimulatedTerminals:
        self._tasks = [
            asyncio.create_task(self._run(t), name=f"simulated-{t.terminal_id}") for t in self.terminals
        ]
        await self.wait_connected()
        log.info("simulated terminals: %d connected to %s:%d", len(self.terminals), self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task

    async def wait_connected(self, timeout_s: float = 30.0) -> None:
        """Wait until every simulated terminal is connected and subscribed."""
        async with asyncio.timeout(timeout_s):
            for event in self._connected.values():
                await event.wait()

    def acknowledged(self, identifier: str) -> set[str]:
        """The terminals that acknowledged `identifier`."""
        return {tid for tid, entry in self.logs.items() if identifier in entry.acknowledged}

    async def _run(self, terminal: SimulatedTerminal) -> None:
        entry = self.logs[terminal.terminal_id]
        unsent: list[str] = []  # acknowledgements to publish (kept across reconnections)
        delay = 0.1
        while True:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, identifier=f"sim-{terminal.terminal_id}", clean_session=False
                ) as client:
                    await client.subscribe(alert_topic(self.prefix, terminal.area), qos=1)
                    entry.connects += 1
                    self._connected[terminal.terminal_id].set()
                    delay = 0.1
                    await self._flush(client, terminal, unsent)
                    async for message in client.messages:
                        payload = message.payload if isinstance(message.payload, bytes) else b""
                        ack = self._take(entry, terminal, payload)
                        if ack is not None:
                            if self.delay_s:
                                await asyncio.sleep(self.delay_s)
                            unsent.append(ack)
                            await self._flush(client, terminal, unsent)
            except aiomqtt.MqttError:
                self._connected[terminal.terminal_id].clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _take(self, entry: TerminalLog, terminal: SimulatedTerminal, payload: bytes) -> str | None:
        """What the terminal makes of a message: the identifier to acknowledge, if any."""
        if not payload:
            entry.cleared += 1
            return None
        try:
            body = json.loads(payload)
            identifier = str(body["identifier"])
        except (ValueError, KeyError, TypeError):
            log.warning("simulated terminal %s: unreadable message ignored", terminal.terminal_id)
            return None
        if body.get("msgType") == "Cancel":
            entry.cancelled.append(identifier)
            return None
        entry.received.append(identifier)
        if terminal.terminal_id in self.broken or identifier in entry.acknowledged:
            return None
        entry.acknowledged.append(identifier)
        return identifier

    async def _flush(self, client: aiomqtt.Client, terminal: SimulatedTerminal, unsent: list[str]) -> None:
        while unsent:
            body = {"identifier": unsent[0], "played_at": datetime.now(UTC).isoformat()}
            await client.publish(f"{self.prefix}/ack/{terminal.terminal_id}", json.dumps(body), qos=1)
            unsent.pop(0)


# The demo's terminals per town: assumptions of the demo, not facts about Wuhai. Loudspeakers together are
# within earshot of half a town's people, displays are seen by a twentieth.
LOUDSPEAKER_SHARE = 0.5
DISPLAY_SHARE = 0.05
PEOPLE_PER_LOUDSPEAKER = 2_500


def demo_terminal_rows(units: Mapping[str, UnitRecord], target: str = "terminals") -> list[TerminalRow]:
    """Simulated loudspeakers and displays for every town of the region (every unit without sub-units when
    there are no towns): one loudspeaker per 2,500 people (at least 3, at most 40) and two displays."""
    parents = {u.parent for u in units.values()}
    towns = [u for u in units.values() if u.level == "town" or u.code not in parents]
    rows = []
    for town in sorted(towns, key=lambda u: u.code):
        speakers = min(40, max(3, town.population // PEOPLE_PER_LOUDSPEAKER))
        for i in range(speakers):
            rows.append(TerminalRow(terminal_id=f"ls-{town.code}-{i:02d}", kind="loudspeaker", area=town.code,
                                    population_served=round(town.population * LOUDSPEAKER_SHARE / speakers),
                                    target=target, name=f"{town.name} loudspeaker {i + 1} (simulated)"))  # fmt: skip
        for i in range(2):
            rows.append(TerminalRow(terminal_id=f"led-{town.code}-{i}", kind="display", area=town.code,
                                    population_served=round(town.population * DISPLAY_SHARE / 2),
                                    target=target, name=f"{town.name} display {i + 1} (simulated)"))  # fmt: skip
    return rows
