"""Messages from phones (mobile-originated deliver_sm) through the ESME, from the real loopback SMSC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from channels.smpp.esme import SmsChannel
from channels.smpp.mobile import InboundSms
from tests.integration.test_smpp_esme import settings_for, wait_until
from tests.peers.smsc_fixture import SmscPeer


@pytest.fixture
async def channel_for(smsc: SmscPeer) -> AsyncIterator[Callable[..., SmsChannel]]:
    """Builds channels bound to the peer; closes them after the test."""
    opened: list[SmsChannel] = []

    def build(**overrides: object) -> SmsChannel:
        opened.append(SmsChannel(settings_for(smsc, **overrides)))
        return opened[-1]

    yield build
    for channel in opened:
        await channel.close()


async def take_inbound(
    channel: SmsChannel, n: int, *, ack: bool = True, timeout_s: float = 5.0
) -> list[InboundSms]:
    """The first n messages from phones (batches acknowledged when `ack`), at most timeout_s."""
    found: list[InboundSms] = []

    async def take() -> None:
        async for batch in channel.inbound(max_batch=10):
            found.extend(batch)
            if ack:
                batch.ack()
            if len(found) >= n:
                return

    await asyncio.wait_for(take(), timeout_s)
    return found


async def test_a_chinese_reply_arrives_decoded_and_is_answered_only_once_stored(
    smsc: SmscPeer, channel_for: Callable[..., SmsChannel]
) -> None:
    channel = channel_for()
    assert await channel.start()
    smsc.send_mo("+8613900000001", "收到 1234", destination="12121")
    batches = channel.inbound()
    batch = await asyncio.wait_for(anext(batches), 5)
    assert [(m.source, m.destination, m.text) for m in batch] == [("+8613900000001", "12121", "收到 1234")]
    await asyncio.sleep(0.3)
    assert smsc.counters()["mo_acked"] == 0  # not answered until stored
    batch.ack()
    await wait_until(lambda: smsc.counters()["mo_acked"] == 1)
    await batches.aclose()


async def test_a_message_never_acknowledged_comes_again_after_the_link_drops(
    smsc: SmscPeer, channel_for: Callable[..., SmsChannel]
) -> None:
    channel = channel_for()
    assert await channel.start()
    smsc.send_mo("+8613900000001", "确认 4321")
    batches = channel.inbound()
    first = await asyncio.wait_for(anext(batches), 5)
    smsc.set_faults(drop_now=True)  # before the consumer stored it
    again = await asyncio.wait_for(anext(batches), 5)
    assert [m.text for m in first] == [m.text for m in again] == ["确认 4321"]
    first.ack()  # its link has gone: nothing is written
    again.ack()
    await wait_until(lambda: smsc.counters()["mo_acked"] == 1)
    await batches.aclose()
    assert channel.health().counters["inbound"] == 2


async def test_gsm_default_text_and_receipts_stay_apart(
    smsc: SmscPeer, channel_for: Callable[..., SmsChannel]
) -> None:
    channel = channel_for()
    assert await channel.start()
    smsc.send_mo("13900000002", "OK 5678", data_coding=0)
    (message,) = await take_inbound(channel, 1)
    assert message.text == "OK 5678"
    assert channel._receipts.empty()  # a message from a phone is no receipt


async def test_a_full_queue_answers_rx_t_appn_and_the_smsc_sends_again(
    smsc: SmscPeer, channel_for: Callable[..., SmsChannel]
) -> None:
    channel = channel_for(inbound_queue=1)
    assert await channel.start()
    smsc.send_mo("13900000003", "1111")
    smsc.send_mo("13900000004", "2222")
    await wait_until(lambda: smsc.counters()["mo_refused"] >= 1)
    assert channel.health().counters["inbound_refused"] >= 1
    texts = {m.text for m in await take_inbound(channel, 2)}
    assert texts == {"1111", "2222"}
    await wait_until(lambda: smsc.counters()["mo_acked"] == 2)


async def test_a_part_of_a_concatenated_message_is_taken_alone(
    smsc: SmscPeer, channel_for: Callable[..., SmsChannel]
) -> None:
    channel = channel_for()
    assert await channel.start()
    smsc._call("POST", "/mo", {"source": "13900000005", "text": "已传达120", "udh_hex": "0500030a0201"})
    (message,) = await take_inbound(channel, 1)
    assert message.text == "已传达120"
