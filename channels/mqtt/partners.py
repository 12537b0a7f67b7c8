"""Partners over MQTT: a partner subscribes to its own topic on the broker the terminals use and gets every
warning it subscribed to as the JSON document a webhook gets.

A delivery publishes ``message.body`` (exactly those bytes) to ``{topic_prefix}/{address}``, QoS 1, not
retained: a partner keeps a persistent session (a fixed client id, clean session off) to get what was
published while it was away. The address is one to eight topic levels of ``A-Z a-z 0-9 _ -``, so a partner's
topic never holds a wildcard and never reaches into another partner's or the terminals' topics.

The adapter keeps one connection (`BrokerLink`, the terminals adapter's too), reconnecting by itself. Nothing
is subscribed and nothing needs resuming, so it connects with a clean session and, unless given one, a random
client id (two services never throw each other off). A delivery waits at most ``publish_timeout_s`` for the
link (then a temporary LINK_DOWN) and as long again for the broker's PUBACK (then a temporary TIMEOUT: the
broker may have it, and a partner may get the document twice; the body's ``identifier`` and ``version`` tell).
"""

from __future__ import annotations

import asyncio
import math
import re
import time

import aiomqtt

from channels.base import FailureKind, Health, HealthState, SendOutcome
from channels.mqtt.link import BrokerLink, MqttUrlError
from channels.partner import PartnerMessage, PartnerResult

TOPIC_LEVEL = r"[A-Za-z0-9_-]+"
PARTNER_TOPIC = re.compile(rf"^{TOPIC_LEVEL}(/{TOPIC_LEVEL}){{0,7}}$")
MAX_ADDRESS_CHARS = 200
MAX_ERROR_CHARS = 300


def check_topic_address(address: str) -> str:
    """The address itself when it is a partner topic (1-8 levels of ``A-Z a-z 0-9 _ -``); ValueError with a
    one-line reason otherwise (for the subscriptions API too).

    >>> check_topic_address("emergency/haibowan")
    'emergency/haibowan'
    >>> check_topic_address("emergency/#")
    Traceback (most recent call last):
    ...
    ValueError: an MQTT partner address is 1-8 topic levels of A-Z a-z 0-9 _ - (no wildcards): 'emergency/#'
    """
    if len(address) > MAX_ADDRESS_CHARS or not PARTNER_TOPIC.fullmatch(address):
        raise ValueError(
            "an MQTT partner address is 1-8 topic levels of A-Z a-z 0-9 _ - (no wildcards): "
            f"{address[:100]!r}"
        )
    return address


class MqttPartnerChannel:
    """Partner topics on one broker as a `PartnerChannel` (see the module docstring)."""

    name = "mqtt"

    def __init__(
        self,
        url: str,
        topic_prefix: str,
        *,
        client_id: str = "",
        username: str = "",
        password: str = "",
        publish_timeout_s: float = 5.0,
        reconnect_max_s: float = 10.0,
    ) -> None:
        if not re.fullmatch(rf"{TOPIC_LEVEL}(/{TOPIC_LEVEL})*", topic_prefix):
            raise MqttUrlError(f"bad topic prefix {topic_prefix!r}")
        self.prefix = topic_prefix
        self._link = BrokerLink(
            "partners", url, client_id=client_id, clean_session=True, username=username, password=password,
            reconnect_max_s=reconnect_max_s,
        )  # fmt: skip
        self.publish_timeout_s = publish_timeout_s
        self.counters = {"published": 0, "invalid": 0, "link_down": 0, "timeouts": 0}

    def start(self) -> None:
        """Connect (and stay connected) in the background; `deliver` starts it too."""
        self._link.start()

    def topic(self, address: str) -> str:
        """The topic a partner address is published on."""
        return f"{self.prefix}/{address}"

    async def deliver(self, message: PartnerMessage) -> PartnerResult:
        """Publish the message's body on the partner's topic, QoS 1, and wait for the broker's PUBACK."""
        started = time.monotonic()
        try:
            topic = self.topic(check_topic_address(message.address))
        except ValueError as e:
            self.counters["invalid"] += 1
            return _failed(started, FailureKind.INVALID, str(e))
        client = await self._link.wait_client(self.publish_timeout_s)
        if client is None:
            self.counters["link_down"] += 1
            return _failed(started, FailureKind.LINK_DOWN, self._link.detail or "not connected")
        try:
            # our own deadline rather than aiomqtt's, so a timeout is told apart from a lost connection
            async with asyncio.timeout(self.publish_timeout_s):
                await client.publish(topic, message.body, qos=1, retain=False, timeout=math.inf)
        except TimeoutError:
            self.counters["timeouts"] += 1
            return _failed(started, FailureKind.TIMEOUT, f"no PUBACK within {self.publish_timeout_s:g} s")
        except aiomqtt.MqttError as e:
            self.counters["link_down"] += 1
            return _failed(started, FailureKind.LINK_DOWN, f"publish failed: {e}")
        self.counters["published"] += 1
        return PartnerResult(SendOutcome.ACCEPTED, _elapsed_ms(started))

    def health(self) -> Health:
        """Up while connected to the broker."""
        up = self._link.is_up
        return Health(
            HealthState.UP if up else HealthState.DOWN,
            detail=self._link.detail,
            links_up=int(up),
            links_total=1,
            counters={**self.counters, "connects": self._link.connects},
        )

    async def close(self) -> None:
        """Disconnect; what was not published stays with the dispatcher."""
        await self._link.close()


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _failed(started: float, kind: FailureKind, error: str) -> PartnerResult:
    outcome = SendOutcome.TEMPORARY_FAILURE if kind.retryable else SendOutcome.PERMANENT_FAILURE
    line = " ".join(error.split())[:MAX_ERROR_CHARS]
    return PartnerResult(outcome, _elapsed_ms(started), error=line, failure=kind)
