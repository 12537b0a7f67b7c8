"""The demo's peers for the area channels: an MQTT broker embedded in the demo (amqtt, a real broker, so the
demo needs nothing but Python) with simulated terminals on it, and loopback simulators of what cannot run
here: the three operators' area SMS gateways, a cell broadcast centre, the county emergency broadcast
platform and a TV newsroom. Every simulator says so in its logs and answers.

`DemoStage` is an async context manager for code that runs in one event loop (`demo --smoke`);
`DemoStageThread` runs the same in a thread of its own beside the service (`demo`), so the service's processes
and the stage never share a loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import threading
from collections.abc import Awaitable, Sequence
from typing import Any

import asyncpg

from risk_zoning.store import UnitRecord
from warnings_svc.demo.peers.broadcast_platform import BroadcastPlatformSimulator
from warnings_svc.demo.peers.broadcaster import NewsroomSimulator
from warnings_svc.demo.peers.cbc import CbcSimulator
from warnings_svc.demo.peers.operator_gateway import OPERATOR_SUBSCRIBERS, OperatorGatewaySimulator
from warnings_svc.demo.peers.partners import DemoPartners
from warnings_svc.demo.peers.terminals import SimulatedTerminal, SimulatedTerminals
from warnings_svc.dissemination.terminals import TerminalRow
from warnings_svc.settings import (
    ALL_LEVELS,
    AreaSmsTargetSettings,
    BroadcastPlatformTargetSettings,
    CellBroadcastTargetSettings,
    DispatchSettings,
    MqttTargetSettings,
    PartnerSettings,
    RadioTvTargetSettings,
)

log = logging.getLogger(__name__)
# the broker and the mail server log every connection at INFO: a few hundred terminals would drown the demo's log
for _name in ("amqtt", "transitions", "mail.log"):
    logging.getLogger(_name).setLevel(logging.WARNING)

TOPIC_PREFIX = "wuhai"
TARGET = "terminals"
START_TIMEOUT_S = 15.0
SIMULATOR_TOKEN = "simulator-token"  # the simulators' bearer token (loopback only, made-up peers)
PLATFORM_TERMINALS_PER_TOWN = 10  # the platform's own loudspeakers per town (a demo assumption)
CALL_ANSWER_DELAY_S = 20.0  # how long the simulated duty contacts take to open a call's link
AUDIENCE_SHARE = 0.3  # the demo TV station's share of the people who see a crawl (a demo assumption)


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
        self.operators = [
            OperatorGatewaySimulator(name, {}, token=SIMULATOR_TOKEN, rate_per_s=100_000.0)
            for name in sorted(OPERATOR_SUBSCRIBERS)
        ]
        self.cbc = CbcSimulator()
        self.platform = BroadcastPlatformSimulator(
            {}, token=SIMULATOR_TOKEN, terminals_per_tick=5, fetch_audio=False
        )
        self.newsroom = NewsroomSimulator(token=SIMULATOR_TOKEN, airing_delay_s=2.0)
        self.partners = DemoPartners(mqtt_broker=TARGET)

    def mqtt_target(self) -> MqttTargetSettings:
        """The `[[dispatch.mqtt]]` target the demo's service puts warnings out on."""
        return MqttTargetSettings(name=TARGET, url=self.url, topic_prefix=TOPIC_PREFIX)

    def dispatch(self, settings: DispatchSettings, *, radio_tv: bool = False) -> DispatchSettings:
        """`settings` with the stage's targets added: the broker, the three operators' gateways (all levels in
        the demo), the CBC and the platform; with `radio_tv` a TV newsroom too (it confirms airing by a link to
        the service, so only where the service serves HTTP)."""
        every_level = ALL_LEVELS
        return settings.model_copy(
            update={
                "mqtt": (*settings.mqtt, self.mqtt_target()),
                "area_sms": (
                    *settings.area_sms,
                    *(
                        AreaSmsTargetSettings(
                            name=o.name.replace("_", "-"),
                            routes=tuple(o.urls),
                            token=SIMULATOR_TOKEN,
                            levels=every_level,
                            poll_interval_s=0.5,
                            handsets_per_person=round(o.handsets_per_person * o.operator_share, 4),
                        )
                        for o in self.operators
                    ),
                ),
                "cell_broadcast": (
                    *settings.cell_broadcast,
                    CellBroadcastTargetSettings(name="cbc", routes=(self.cbc.url,), levels=every_level),
                ),
                "broadcast_platform": (
                    *settings.broadcast_platform,
                    BroadcastPlatformTargetSettings(
                        name="county-platform",
                        routes=(self.platform.url,),
                        token=SIMULATOR_TOKEN,
                        poll_interval_s=0.5,
                    ),
                ),
                "radio_tv": (*settings.radio_tv, *([self.newsroom_target()] if radio_tv else [])),
            }
        )

    def partner_settings(self, settings: PartnerSettings) -> PartnerSettings:
        """`settings` reaching the demo's partners: their webhook endpoint and mail server on loopback, and
        partner topics on the demo's broker."""
        return self.partners.settings(settings)

    def newsroom_target(self) -> RadioTvTargetSettings:
        """The simulated TV newsroom as a `[[dispatch.radio_tv]]` target (every level, in the demo)."""
        return RadioTvTargetSettings(
            name="wuhai-tv",
            url=self.newsroom.url,
            token=SIMULATOR_TOKEN,
            levels=ALL_LEVELS,
            audience_share=AUDIENCE_SHARE,
        )

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
        for o in self.operators:
            await o.__aenter__()
        await self.cbc.__aenter__()
        await self.platform.__aenter__()
        await self.newsroom.__aenter__()
        await self.partners.__aenter__()
        return self

    def populate(self, units: dict[str, UnitRecord]) -> None:
        """Tell the simulators the region: people per unit (operators derive handsets from them), the
        platform's terminals per town."""
        for o in self.operators:
            o.populations.update({code: u.population for code, u in units.items()})
        parents = {u.parent for u in units.values()}
        towns = [code for code in units if code not in parents]
        per_unit = dict.fromkeys(units, 0)
        for town in towns:  # a town's terminals count for its district and city too
            code: str | None = town
            while code is not None and code in per_unit:
                per_unit[code] += PLATFORM_TERMINALS_PER_TOWN
                code = units[code].parent
        self.platform.terminals_per_area.update(per_unit)

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
        for simulator in (*self.operators, self.cbc, self.platform, self.newsroom, self.partners):
            with contextlib.suppress(Exception):
                await simulator.__aexit__(None, None, None)  # type: ignore[attr-defined]
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.shutdown()


class DemoStageThread:
    """A `DemoStage` running in a daemon thread with its own event loop."""

    def __init__(self) -> None:
        self.stage = DemoStage()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="demo-stage", daemon=True)
        self._answering: concurrent.futures.Future[None] | None = None

    def start(self) -> DemoStage:
        """Start the broker; returns once it listens. The simulated duty contacts then answer the calls that
        reach their mailboxes by opening the link in them."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.stage.__aenter__(), self._loop).result(START_TIMEOUT_S)
        self._answering = asyncio.run_coroutine_threadsafe(self._answer_calls(), self._loop)
        return self.stage

    async def _answer_calls(self) -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session:
            while True:
                await asyncio.sleep(CALL_ANSWER_DELAY_S)
                opened = await self.stage.partners.open_call_links(session)
                if opened:
                    log.info(
                        "simulated duty contacts acknowledged calls by their links", extra={"opened": opened}
                    )

    def populate(self, units: dict[str, UnitRecord]) -> None:
        """`DemoStage.populate` in the stage's thread."""
        self._loop.call_soon_threadsafe(self.stage.populate, units)

    def start_terminals(self, rows: Sequence[TerminalRow]) -> int:
        """Connect the simulated terminals (from any thread)."""
        future = asyncio.run_coroutine_threadsafe(self.stage.start_terminals(rows), self._loop)
        return future.result(START_TIMEOUT_S * 4)

    def subscribe_partners(self, conn: asyncpg.Connection, region: str) -> Awaitable[list[dict[str, Any]]]:
        """`DemoPartners.subscribe`, to be awaited in the caller's loop (it only writes to the database and
        remembers the secrets)."""
        return self.stage.partners.subscribe(conn, region)

    def stop(self) -> None:
        """Stop the stage quietly: it stops after the service, whose last line (a reason to exit, say) must stay
        the last."""
        logging.getLogger("warnings_svc.demo.peers").setLevel(logging.WARNING)
        if self._answering is not None:
            self._answering.cancel()
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self.stage.__aexit__(None, None, None), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
