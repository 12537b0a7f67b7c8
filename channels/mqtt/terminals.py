"""Terminals over MQTT: village loudspeakers and LED displays that subscribe to their area's topic.

The warning in force for an area is retained on ``{topic_prefix}/alerts/{area_code}`` (12-digit code), QoS 1,
so a terminal that comes online later still gets it. It goes to the topic of every unit inside the warned
areas (a city's warning to the city, its districts and their towns), so a terminal subscribes to one topic:
that of the unit it stands in. The message is JSON (`alert_message`)::

    {"identifier": "...", "hazard": "sandstorm", "level": "orange", "status": "Actual", "msgType": "Alert",
     "areas": ["150302000000"], "headline": "...", "broadcast_text": "...", "led_text": "...",
     "audio_url": "...", "cap_url": "...", "onset": "...", "expires": "..."}

A terminal acknowledges playback or display on ``{topic_prefix}/ack/{terminal_id}`` with
``{"identifier": ..., "played_at": ...}`` (ISO 8601 with offset); each becomes `Evidence` of kind PLAYBACK,
measured. A Cancel (or an expiry) sends the Cancel message to the terminals online and clears the retained
message of every topic the warning was put out on (an empty retained payload: terminals ignore empty
messages). An Update clears the topics of areas it no longer covers.

The adapter keeps one connection with a persistent session (a fixed client id, clean session off), so
acknowledgements published while it was away are delivered when it reconnects; it reconnects by itself with
capped backoff. `put_out` never waits longer than ``publish_timeout_s`` for a broker that is down: that is a
temporary failure and the dispatcher retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiomqtt

from channels.area import AreaAlert, AreaSendResult, Evidence, EvidenceKind
from channels.base import FailureKind, Health, HealthState, SendOutcome
from channels.mqtt.link import BrokerLink
from channels.mqtt.link import MqttUrlError as MqttUrlError  # (re-exported: older imports name it here)
from channels.mqtt.link import broker_address as broker_address

log = logging.getLogger(__name__)

TERMINAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
AREA_CODE = re.compile(r"^[0-9]{12}$")
MAX_ACK_BYTES = 1024
MAX_IDENTIFIER_CHARS = 200
MAX_QUEUED_ACKS = 200_000  # beyond this a flood is dropped (and counted), not held in memory
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def alert_topic(prefix: str, area: str) -> str:
    """The retained topic of an area."""
    return f"{prefix}/alerts/{area}"


def alert_message(alert: AreaAlert) -> dict[str, Any]:
    """The JSON a terminal receives for a version (the interface terminals are built against)."""
    return {
        "identifier": alert.identifier,
        "hazard": alert.hazard,
        "level": alert.level,
        "severity": alert.severity,
        "status": alert.status,
        "msgType": alert.msg_type,
        "areas": [a.code for a in alert.areas],
        "headline": alert.texts.headline,
        "broadcast_text": alert.texts.broadcast,
        "led_text": alert.texts.led,
        "audio_url": alert.audio_url,
        "cap_url": alert.cap_url,
        "onset": alert.onset.isoformat(),
        "expires": alert.expires.isoformat(),
    }


def parse_ack(topic: str, payload: bytes, prefix: str) -> Evidence:
    """A terminal's acknowledgement as evidence; ValueError with a one-line reason when it is not one.

    >>> e = parse_ack("wuhai/ack/ls-001", b'{"identifier": "x", "played_at": "2026-07-01T12:00:00+08:00"}',
    ...               "wuhai")
    >>> (e.terminal_id, e.identifier, e.at.isoformat())
    ('ls-001', 'x', '2026-07-01T12:00:00+08:00')
    """
    head = f"{prefix}/ack/"
    if not topic.startswith(head):
        raise ValueError(f"not an acknowledgement topic: {topic[:100]!r}")
    terminal_id = topic[len(head) :]
    if not TERMINAL_ID.match(terminal_id):
        raise ValueError(f"bad terminal id in topic: {terminal_id[:100]!r}")
    if len(payload) > MAX_ACK_BYTES:
        raise ValueError(f"acknowledgement of {len(payload)} bytes (at most {MAX_ACK_BYTES})")
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"acknowledgement is not JSON: {e}") from None
    if not isinstance(body, dict):
        raise ValueError("acknowledgement is not a JSON object")
    identifier, played_at = body.get("identifier"), body.get("played_at")
    if not isinstance(identifier, str) or not 0 < len(identifier) <= MAX_IDENTIFIER_CHARS:
        raise ValueError("acknowledgement needs an identifier (a string of 1-200 characters)")
    if not identifier.isprintable():
        raise ValueError("identifier has control characters")
    if not isinstance(played_at, str):
        raise ValueError("acknowledgement needs played_at (ISO 8601 with an offset)")
    try:
        at = datetime.fromisoformat(played_at)
    except ValueError:
        raise ValueError(f"played_at is not ISO 8601: {played_at[:40]!r}") from None
    if at.utcoffset() is None:
        raise ValueError("played_at needs an offset")
    if not EARLIEST <= at <= LATEST:
        raise ValueError(f"played_at {played_at[:40]!r} is not a time a warning can be played")
    return Evidence(
        key="",
        remote_id="",
        kind=EvidenceKind.PLAYBACK,
        area="",
        measured=True,
        delivered=1,
        identifier=identifier,
        terminal_id=terminal_id,
        at=at,
        final=True,
    )


class MqttTerminalsChannel:
    """One MQTT broker's terminals as an `AreaChannel` (see the module docstring)."""

    def __init__(
        self,
        name: str,
        url: str,
        topic_prefix: str,
        *,
        client_id: str = "",
        username: str = "",
        password: str = "",
        publish_timeout_s: float = 5.0,
        reconnect_max_s: float = 10.0,
        max_batch: int = 1000,
        linger_s: float = 0.05,
    ) -> None:
        self.name = name
        if not topic_prefix or any(c in topic_prefix for c in "#+") or topic_prefix.endswith("/"):
            raise MqttUrlError(f"bad topic prefix {topic_prefix!r}")
        self.prefix = topic_prefix
        # fixed, with a persistent session: acknowledgements sent while away are kept by the broker. It must be
        # unique per service: two clients with one id throw each other off the broker
        self._link = BrokerLink(
            name, url, client_id=client_id or f"warnings-svc-{name}", clean_session=False,
            username=username, password=password, reconnect_max_s=reconnect_max_s,
            subscriptions=(f"{topic_prefix}/ack/+",), on_message=self._take_ack,
        )  # fmt: skip
        self.host, self.port = self._link.host, self._link.port
        self.client_id = self._link.client_id
        self.publish_timeout_s = publish_timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._acks: asyncio.Queue[Evidence] = asyncio.Queue(MAX_QUEUED_ACKS)
        self._closed = False
        self.counters = {"published": 0, "cleared": 0, "acks": 0, "acks_refused": 0, "acks_dropped": 0}

    def start(self) -> None:
        """Start the connection (and keep it up) in the background; `put_out` starts it too."""
        self._link.start()

    def _take_ack(self, message: aiomqtt.Message) -> None:
        payload = message.payload if isinstance(message.payload, bytes | bytearray) else b""
        try:
            evidence = parse_ack(str(message.topic), bytes(payload), self.prefix)
        except ValueError as e:
            self.counters["acks_refused"] += 1
            if self.counters["acks_refused"] <= 10 or self.counters["acks_refused"] % 1000 == 0:
                log.warning("mqtt %s: acknowledgement refused (%d so far): %s", self.name,
                            self.counters["acks_refused"], e)  # fmt: skip
            return
        try:
            self._acks.put_nowait(evidence)
        except asyncio.QueueFull:  # a flood faster than the database takes it: dropped, counted
            self.counters["acks_dropped"] += 1
            return
        self.counters["acks"] += 1

    async def put_out(self, alert: AreaAlert) -> AreaSendResult:
        """Retain the version on its areas' topics (Alert, Update) or take it back (Cancel)."""
        client = await self._link.wait_client(self.publish_timeout_s)
        if client is None:
            return self._failed(alert, FailureKind.LINK_DOWN, self._link.detail or "not connected")
        # every unit inside the warned areas has its topic: a terminal listens on the one unit it stands in
        codes = list(alert.area_units) or [a.code for a in alert.areas]
        bad = [code for code in codes if not AREA_CODE.match(code)]
        if bad:
            return self._failed(alert, FailureKind.INVALID, f"not 12-digit area codes: {', '.join(bad[:5])}")
        previous = alert.previous_remote_id.split()
        topics = [alert_topic(self.prefix, code) for code in codes]
        body = json.dumps(alert_message(alert), ensure_ascii=False).encode()
        try:
            if alert.msg_type == "Cancel":  # an expiry only clears: the warning ended, nothing to play
                for topic in dict.fromkeys(previous + topics):
                    if not alert.expired:
                        await client.publish(topic, body, qos=1, retain=False, timeout=self.publish_timeout_s)
                    await client.publish(topic, b"", qos=1, retain=True, timeout=self.publish_timeout_s)
                    self.counters["cleared"] += 1
                return AreaSendResult(alert.key, SendOutcome.ACCEPTED, " ".join(topics), route=self._route)
            for topic in topics:
                await client.publish(topic, body, qos=1, retain=True, timeout=self.publish_timeout_s)
                self.counters["published"] += 1
            for topic in previous:
                if topic not in topics:  # an area the Update no longer covers
                    await client.publish(topic, b"", qos=1, retain=True, timeout=self.publish_timeout_s)
                    self.counters["cleared"] += 1
        except aiomqtt.MqttError as e:
            return self._failed(alert, FailureKind.LINK_DOWN, f"publish failed: {e}")
        return AreaSendResult(alert.key, SendOutcome.ACCEPTED, " ".join(topics), route=self._route)

    @property
    def _route(self) -> str:
        return self._link.route

    def _failed(self, alert: AreaAlert, kind: FailureKind, reason: str) -> AreaSendResult:
        outcome = SendOutcome.TEMPORARY_FAILURE if kind.retryable else SendOutcome.PERMANENT_FAILURE
        return AreaSendResult(alert.key, outcome, route=self._route, reason=reason, failure=kind)

    async def evidence(self) -> AsyncIterator[list[Evidence]]:
        """Terminals' acknowledgements in batches, as they arrive: a batch waits up to ``linger_s`` after its
        first acknowledgement for more (thousands of terminals answer within a second or two, and one write
        of a few hundred costs about what one write of one does)."""
        self.start()
        loop = asyncio.get_running_loop()
        while not self._closed:
            batch = [await self._acks.get()]
            until = loop.time() + self.linger_s
            while len(batch) < self.max_batch:
                if not self._acks.empty():  # what is queued is taken whatever the time
                    batch.append(self._acks.get_nowait())
                    continue
                left = until - loop.time()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    batch.append(await asyncio.wait_for(self._acks.get(), left))
            yield batch

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
        """Disconnect; what was not put out stays in the outbox."""
        self._closed = True
        await self._link.close()
