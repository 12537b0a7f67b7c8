"""Partner topics through a real Mosquitto: a partner's own subscriber gets the exact document, QoS 1, not
retained; the broker stopped and restarted; an address that would reach beyond the partner's topic refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiomqtt
import pytest

from channels.base import FailureKind, HealthState, SendOutcome
from channels.mqtt.partners import MqttPartnerChannel
from channels.partner import PartnerChannel, PartnerMessage
from tests.factories_messages import DATA
from tests.peers.mosquitto_fixture import MosquittoBroker

PREFIX = "wuhai/partners"
CAP = (DATA / "heat_orange_alert.xml").read_text(encoding="utf-8")
BODY = json.dumps(
    {
        "identifier": "15030041600000_20170709160000", "warning_id": 41, "version": 1, "msgType": "Alert",
        "status": "Actual", "hazard": "heat", "level": "orange", "headline": "乌海市气象台发布高温橙色预警",
        "areas": [{"code": "150302000000", "name": "海勃湾区"}], "cap": CAP,
    },
    ensure_ascii=False,
).encode()  # fmt: skip
MESSAGE = PartnerMessage(
    message_id="pd-41-1",
    address="power/haibowan-grid",
    body=BODY,
    cap_xml=CAP,
    subject="乌海市气象台发布高温橙色预警",
    text="……",
    timestamp=1_499_587_200,
)


class Subscriber:
    """A partner's own client, on the broker with a persistent session, keeping what it receives."""

    def __init__(self) -> None:
        self.messages: list[aiomqtt.Message] = []

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[aiomqtt.Message]:
        async with asyncio.timeout(timeout_s):
            while len(self.messages) < count:
                await asyncio.sleep(0.02)
        return self.messages


@asynccontextmanager
async def subscribed(broker: MosquittoBroker, topic: str) -> AsyncIterator[Subscriber]:
    subscriber = Subscriber()
    async with aiomqtt.Client(
        "127.0.0.1", broker.port, identifier="partner-grid", clean_session=False
    ) as client:
        await client.subscribe(topic, qos=1)

        async def take() -> None:
            async for message in client.messages:
                subscriber.messages.append(message)

        task = asyncio.create_task(take())
        try:
            yield subscriber
        finally:
            task.cancel()


@pytest.fixture
async def channel(mosquitto: MosquittoBroker) -> AsyncIterator[MqttPartnerChannel]:
    channel = MqttPartnerChannel(mosquitto.url, PREFIX, publish_timeout_s=1.0, reconnect_max_s=0.5)
    yield channel
    await channel.close()


async def test_the_partner_gets_the_exact_document_on_its_topic_with_qos_1(
    channel: MqttPartnerChannel, mosquitto: MosquittoBroker
) -> None:
    assert isinstance(channel, PartnerChannel) and channel.name == "mqtt"
    async with subscribed(mosquitto, f"{PREFIX}/#") as partner:
        result = await channel.deliver(MESSAGE)
        assert (result.outcome, result.failure, result.error) == (SendOutcome.ACCEPTED, None, "")
        assert result.latency_ms >= 0
        (message,) = await partner.wait_for(1)
    assert str(message.topic) == "wuhai/partners/power/haibowan-grid"
    assert message.payload == BODY and json.loads(BODY)["cap"] == CAP
    assert message.qos == 1 and message.retain is False
    health = channel.health()
    assert health.state is HealthState.UP and health.counters["published"] == 1
    assert health.counters["connects"] == 1


async def test_nothing_is_retained_for_a_partner_that_comes_later(
    channel: MqttPartnerChannel, mosquitto: MosquittoBroker
) -> None:
    assert (await channel.deliver(MESSAGE)).outcome is SendOutcome.ACCEPTED
    async with subscribed(mosquitto, f"{PREFIX}/#") as late:
        await asyncio.sleep(0.5)
        assert late.messages == []


async def test_a_stopped_broker_is_a_temporary_failure_and_a_restarted_one_takes_the_retry(
    channel: MqttPartnerChannel, mosquitto: MosquittoBroker
) -> None:
    async with subscribed(mosquitto, f"{PREFIX}/#"):  # the partner's persistent session, made once
        pass
    assert (await channel.deliver(MESSAGE)).outcome is SendOutcome.ACCEPTED
    mosquitto.stop()
    result = await channel.deliver(MESSAGE)
    assert result.outcome is SendOutcome.TEMPORARY_FAILURE
    assert result.failure in (FailureKind.LINK_DOWN, FailureKind.TIMEOUT) and 0 < len(result.error) <= 300
    assert result.latency_ms <= 2500  # bounded by the publish timeout, not by the broker
    async with asyncio.timeout(2):  # the link notices the loss itself, a moment after the publish did
        while channel.health().state is not HealthState.DOWN:
            await asyncio.sleep(0.02)
    assert str(mosquitto.port) in channel.health().detail
    mosquitto.start()
    retry = await channel.deliver(
        MESSAGE
    )  # waits for the link's own reconnection (0.5 s at most between tries)
    assert retry.outcome is SendOutcome.ACCEPTED
    # the partner's session, kept by the broker through its restart, holds the first message and the retry
    async with subscribed(mosquitto, f"{PREFIX}/#") as partner:
        first, second = await partner.wait_for(2)
    assert first.payload == second.payload == BODY
    assert channel.health().state is HealthState.UP and channel.health().counters["connects"] == 2


@pytest.mark.parametrize(
    "address",
    ["#", "power/#", "power/+/grid", "+", "", "/power", "power/", "power//grid", "power grid", "电力/乌海",
     "a/b/c/d/e/f/g/h/i", "$SYS/broker", "power/grid\u0000"],
)  # fmt: skip
async def test_an_address_with_wildcards_or_odd_levels_is_invalid_and_nothing_is_published(
    channel: MqttPartnerChannel, mosquitto: MosquittoBroker, address: str
) -> None:
    async with subscribed(mosquitto, "#") as everything:
        result = await channel.deliver(
            PartnerMessage("pd-9", address, BODY, CAP, "headline", "text", 1_499_587_200)
        )
        assert (result.outcome, result.failure) == (SendOutcome.PERMANENT_FAILURE, FailureKind.INVALID)
        assert "no wildcards" in result.error
        assert (await channel.deliver(MESSAGE)).outcome is SendOutcome.ACCEPTED  # a good one, after
        (message,) = await everything.wait_for(1)
        assert str(message.topic) == f"{PREFIX}/{MESSAGE.address}"


async def test_eight_levels_are_a_partner_topic() -> None:
    from channels.mqtt.partners import check_topic_address

    assert check_topic_address("a/b/c/d/e/f/g/h") == "a/b/c/d/e/f/g/h"
