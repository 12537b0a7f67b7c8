"""The SMPP ESME against a real, independent SMSC on 127.0.0.1 (node-smpp in server mode, tests/peers/smsc)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from channels.base import (
    FailureKind,
    HealthState,
    OutboundMessage,
    Receipt,
    ReceiptBatch,
    ReceiptState,
    SendOutcome,
)
from channels.smpp.esme import SmppSettings, SmsChannel
from channels.sms.encoding import SegmentMethod
from tests.peers.smsc_fixture import SmscPeer, start_smsc

TEXT_ZH_100 = (
    "乌海市气象台2025年7月1日10时发布高温橙色预警信号：预计未来24小时海勃湾区、乌达区、海南区最高气温将升至40℃以上，"
    "请注意防暑降温，减少户外活动。"
)


def settings_for(peer: SmscPeer, **overrides: object) -> SmppSettings:
    """Settings that bind to the peer, with short timeouts so every wait in a test is bounded."""
    base: dict[str, object] = {
        "host": peer.host,
        "port": peer.port,
        "system_id": peer.system_id,
        "password": peer.password,
        "response_timeout_s": 2.0,
        "connect_wait_s": 3.0,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.5,
        "throttle_pause_min_s": 0.02,
        "throttle_pause_max_s": 0.2,
    }
    return SmppSettings(**(base | overrides))  # type: ignore[arg-type]


@pytest.fixture
async def channel_for(smsc: SmscPeer) -> AsyncIterator[Callable[..., SmsChannel]]:
    """Builds started channels bound to the peer; closes them after the test."""
    opened: list[SmsChannel] = []

    def build(**overrides: object) -> SmsChannel:
        channel = SmsChannel(settings_for(smsc, **overrides))
        opened.append(channel)
        return channel

    yield build
    for channel in opened:
        await channel.close()


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Poll a condition every 20 ms, at most timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def collect_receipts(channel: SmsChannel, n: int, timeout_s: float = 5.0) -> list[Receipt]:
    """The first n receipts (or more, the rest of the last batch), at most timeout_s; the last batch is left
    unacknowledged, as leaving the loop does."""
    found: list[Receipt] = []

    async def take() -> None:
        async for batch in channel.receipts():
            found.extend(batch)
            batch.ack()
            if len(found) >= n:
                return

    await asyncio.wait_for(take(), timeout_s)
    return found


async def ask_for_next(batches: AsyncIterator[ReceiptBatch], wait_s: float = 0.3) -> ReceiptBatch | None:
    """Ask for the next batch; None when none came within wait_s (the iterator is then finished, cancelled
    while it waited)."""
    try:
        return await asyncio.wait_for(anext(batches), wait_s)
    except TimeoutError:
        return None


def messages(n: int, text: str = "高温预警", prefix: str = "1390477") -> list[OutboundMessage]:
    return [OutboundMessage(key=f"d{i}", address=f"{prefix}{i:04d}", text=text) for i in range(n)]


async def test_the_esme_binds_as_a_transceiver_and_unbinds_cleanly(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
) -> None:
    channel = channel_for(binds=2)
    assert await channel.start()
    assert channel.health().state is HealthState.UP
    assert smsc.state()["bound_sessions"] == 2
    assert [r["command"] for r in smsc.received(None)] == ["bind_transceiver", "bind_transceiver"]
    await channel.close()
    await wait_until(lambda: smsc.state()["bound_sessions"] == 0)
    assert [r["command"] for r in smsc.received("unbind")] == ["unbind", "unbind"]
    assert channel.health().state is HealthState.DOWN


async def test_a_wrong_password_never_binds(smsc: SmscPeer, channel_for: Callable[..., SmsChannel]) -> None:
    channel = channel_for(password="wrong", connect_wait_s=0.3)
    assert not await channel.start(wait_s=0.5)
    (result,) = await channel.send_batch(messages(1))
    assert result.outcome is SendOutcome.TEMPORARY_FAILURE
    assert result.failure is FailureKind.LINK_DOWN  # the bind was refused: no link to send on
    assert smsc.received() == []


async def test_a_two_segment_chinese_warning_arrives_as_two_ucs2_submits_with_a_udh(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
) -> None:
    assert 70 < len(TEXT_ZH_100) <= 134
    channel = channel_for()
    await channel.start()
    (result,) = await channel.send_batch(messages(1, TEXT_ZH_100))
    assert result.outcome is SendOutcome.ACCEPTED and len(result.remote_ids) == 2
    first, second = smsc.received()
    for seq, submit in enumerate((first, second), start=1):
        assert submit["data_coding"] == 0x08
        assert submit["esm_class"] == 0x40
        assert submit["destination_addr"] == "13904770000"
        assert submit["registered_delivery"] == 1
        assert submit["udh_hex"][:6] == "050003" and submit["udh_hex"][8:] == f"02{seq:02x}"
    assert first["udh_hex"][6:8] == second["udh_hex"][6:8]  # one reference ties the parts together
    assert len(bytes.fromhex(first["short_message_hex"])) == 6 + 134
    assert first["text"] + second["text"] == TEXT_ZH_100
    assert [first["message_id"], second["message_id"]] == list(result.remote_ids)


async def test_sar_tlvs_and_message_payload_are_the_configurable_alternatives(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
) -> None:
    sar = channel_for(segment_method=SegmentMethod.SAR)
    payload = channel_for(segment_method=SegmentMethod.PAYLOAD)
    await sar.start()
    await payload.start()
    await sar.send_batch(messages(1, TEXT_ZH_100, prefix="1380000"))
    await payload.send_batch(messages(1, TEXT_ZH_100, prefix="1370000"))
    records = smsc.received()
    sar_parts = [r for r in records if r["destination_addr"].startswith("1380000")]
    assert [(r["sar_total_segments"], r["sar_segment_seqnum"], r["esm_class"]) for r in sar_parts] == [
        (2, 1, 0),
        (2, 2, 0),
    ]
    assert sar_parts[0]["sar_msg_ref_num"] == sar_parts[1]["sar_msg_ref_num"]
    assert "".join(r["text"] for r in sar_parts) == TEXT_ZH_100
    (whole,) = [r for r in records if r["destination_addr"].startswith("1370000")]
    assert whole["short_message_hex"] == "" and whole["text"] == TEXT_ZH_100
    assert bytes.fromhex(whole["message_payload_hex"]) == TEXT_ZH_100.encode("utf-16-be")


async def test_receipts_come_back_correlated_to_the_message_ids(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
) -> None:
    channel = channel_for(window=4)
    await channel.start()
    results = await channel.send_batch(messages(10))
    remote_ids = {r.remote_ids[0] for r in results}
    assert len(remote_ids) == 10
    batches = channel.receipts()
    receipts: list[Receipt] = []
    while len(receipts) < 10:
        batch = await asyncio.wait_for(anext(batches), 5)
        receipts.extend(batch)
        batch.ack()
    assert sorted(r.remote_id for r in receipts) == sorted(remote_ids)
    assert {(r.state, r.raw_state) for r in receipts} == {(ReceiptState.DELIVERED, "DELIVRD")}
    # the channel sent these messages: each receipt names its message's key, so a dispatcher can match it
    assert {r.remote_id: r.key for r in receipts} == {r.remote_ids[0]: r.key for r in results}
    await wait_until(lambda: smsc.counters()["receipts_acked"] == 10)
    assert channel.health().counters["receipts_acked"] == 10
    assert smsc.counters()["distinct_destinations"] == 10


@pytest.mark.parametrize(
    ("faults", "state", "raw"),
    [
        ({"receipt_state": "UNDELIV"}, ReceiptState.FAILED, "UNDELIV"),
        ({"receipt_state": "ACCEPTD"}, ReceiptState.ACCEPTED, "ACCEPTD"),
        ({"receipt_state": "EXPIRED", "receipt_tlvs": False}, ReceiptState.EXPIRED, "EXPIRED"),
        ({"receipt_tlvs": False}, ReceiptState.DELIVERED, "DELIVRD"),
    ],
)
async def test_final_states_map_from_the_tlvs_or_else_the_text(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
    faults: dict,
    state: ReceiptState,
    raw: str,
) -> None:
    smsc.set_faults(**faults)
    channel = channel_for()
    await channel.start()
    (result,) = await channel.send_batch(messages(1))
    (receipt,) = await collect_receipts(channel, 1)
    assert (receipt.remote_id, receipt.state, receipt.raw_state) == (result.remote_ids[0], state, raw)


async def test_a_late_receipt_still_arrives_after_a_reconnect(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
) -> None:
    smsc.set_faults(receipt_delay_ms=500)
    channel = channel_for()
    await channel.start()
    (result,) = await channel.send_batch(messages(1))
    smsc.set_faults(drop_now=True)
    (receipt,) = await collect_receipts(channel, 1, timeout_s=5)
    assert receipt.remote_id == result.remote_ids[0]
    assert channel.health().counters["disconnects"] >= 1


@pytest.mark.parametrize(("status", "name"), [(0x58, "ESME_RTHROTTLED"), (0x14, "ESME_RMSGQFUL")])
async def test_throttling_gives_temporary_failures_and_nothing_is_lost_when_resent(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
    status: int,
    name: str,
) -> None:
    smsc.set_faults(throttle_count=7, throttle_status=status)
    channel = channel_for(window=5)
    await channel.start()
    batch = messages(20)
    results = await channel.send_batch(batch)
    throttled = [r for r in results if r.outcome is SendOutcome.TEMPORARY_FAILURE]
    assert len(throttled) == 7
    assert {r.reason for r in throttled} == {name}
    assert {r.failure for r in throttled} == {FailureKind.THROTTLED}
    assert all(r.failure is None for r in results if r.outcome is SendOutcome.ACCEPTED)
    assert all(r.retry_after_s and r.retry_after_s > 0 for r in throttled)
    assert channel.health().counters["throttled"] == 7
    # the dispatcher's job, done by hand: resend what failed, a bounded number of rounds
    pending = [m for m, r in zip(batch, results, strict=True) if r.outcome is not SendOutcome.ACCEPTED]
    for _ in range(3):
        if not pending:
            break
        again = await channel.send_batch(pending)
        pending = [m for m, r in zip(pending, again, strict=True) if r.outcome is not SendOutcome.ACCEPTED]
    assert pending == []
    accepted = sorted(r["destination_addr"] for r in smsc.accepted())
    assert accepted == sorted(m.address for m in batch)  # every one exactly once


async def test_throttling_slows_the_bind_down(smsc: SmscPeer, channel_for: Callable[..., SmsChannel]) -> None:
    smsc.set_faults(throttle_count=4)
    channel = channel_for(window=1, throttle_pause_min_s=0.05, throttle_pause_max_s=1.0)
    await channel.start()
    started = time.monotonic()
    for _ in range(5):
        await channel.send_batch(messages(1))
    # pauses of 0.05, 0.1, 0.2, 0.4 s before the 2nd to 5th submit
    assert time.monotonic() - started >= 0.7
    assert channel.binds[0].throttle_pause_s == 0.0  # a success resets the pause


async def test_a_dropped_connection_reconnects_and_sending_goes_on(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
) -> None:
    channel = channel_for()
    await channel.start()
    smsc.set_faults(drop_now=True)
    await wait_until(lambda: channel.health().counters["disconnects"] == 1)
    await wait_until(lambda: channel.health().state is HealthState.UP)
    (result,) = await channel.send_batch(messages(1))
    assert result.outcome is SendOutcome.ACCEPTED
    assert smsc.state()["counters"]["binds"] == 2


async def test_a_submit_in_flight_when_the_link_drops_is_a_temporary_failure(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
) -> None:
    smsc.set_faults(drop_after_submits=1)
    channel = channel_for()
    await channel.start()
    (lost,) = await channel.send_batch(messages(1))
    assert (lost.outcome, lost.reason, lost.failure) == (
        SendOutcome.TEMPORARY_FAILURE,
        "link down",
        FailureKind.LINK_DOWN,
    )
    (resent,) = await channel.send_batch(messages(1))
    assert resent.outcome is SendOutcome.ACCEPTED
    assert [r["outcome"] for r in smsc.received()] == ["dropped", "accepted"]


async def test_an_unanswered_enquire_link_drops_the_link_and_it_comes_back(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
) -> None:
    channel = channel_for(enquire_link_interval_s=0.1, response_timeout_s=0.3)
    await channel.start()
    await wait_until(lambda: len(smsc.received("enquire_link")) >= 2)  # answered: the link stays
    assert channel.health().counters["disconnects"] == 0
    smsc.set_faults(ignore_enquire_link=True)
    await wait_until(lambda: channel.health().counters["disconnects"] >= 1)
    smsc.set_faults(ignore_enquire_link=False)
    await wait_until(lambda: channel.health().state is HealthState.UP)
    (result,) = await channel.send_batch(messages(1))
    assert result.outcome is SendOutcome.ACCEPTED


async def test_slow_responses_fill_the_window_without_losing_anything(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
) -> None:
    smsc.set_faults(response_delay_ms=100)
    channel = channel_for(window=10)
    await channel.start()
    started = time.monotonic()
    results = await channel.send_batch(messages(30))
    elapsed = time.monotonic() - started
    assert all(r.outcome is SendOutcome.ACCEPTED for r in results)
    assert 0.25 <= elapsed < 2.0  # three rounds of a full window, not thirty round trips
    assert len(smsc.accepted()) == 30


async def test_a_batch_is_acknowledged_only_when_the_consumer_says_so_in_any_order(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
) -> None:
    channel = channel_for()
    await channel.start()
    results = await channel.send_batch(messages(3))
    await wait_until(lambda: channel.health().counters["receipts"] == 3)  # all three queued: batches are full
    batches = channel.receipts(max_batch=2)
    first = await asyncio.wait_for(anext(batches), 5)
    assert len(first) == 2
    second = await ask_for_next(batches)  # going on to the next batch acknowledges nothing
    assert second is not None and len(second) == 1
    await asyncio.sleep(0.3)  # time enough for an early answer to reach the SMSC
    assert (smsc.counters()["receipts_sent"], smsc.counters()["receipts_acked"]) == (3, 0)
    second.ack()  # the later batch first
    await wait_until(lambda: smsc.counters()["receipts_acked"] == 1, timeout_s=2)
    first.ack()
    await wait_until(lambda: smsc.counters()["receipts_acked"] == 3, timeout_s=2)
    assert sorted(r.remote_id for r in first + second) == sorted(r.remote_ids[0] for r in results)
    assert channel.health().counters["receipts_acked"] == 3


async def test_an_unacknowledged_batch_is_sent_again_after_the_link_drops(
    smsc: SmscPeer,
    channel_for: Callable[..., SmsChannel],
) -> None:
    channel = channel_for()
    await channel.start()
    (result,) = await channel.send_batch(messages(1))
    batches = channel.receipts()
    first = await asyncio.wait_for(anext(batches), 5)  # received, not yet handled: the process "dies" here
    smsc.set_faults(drop_now=True)
    await wait_until(lambda: channel.health().counters["disconnects"] >= 1, timeout_s=2)
    await wait_until(lambda: smsc.counters()["receipts_requeued"] >= 1, timeout_s=2)
    # resent on the new link: the first receipt's sequence_number now belongs to a link that is gone
    await wait_until(lambda: channel.health().counters["receipts"] == 2, timeout_s=3)
    # acknowledging the first batch now is skipped: its link is gone
    first.ack()
    again = await asyncio.wait_for(anext(batches), 5)
    remote_id = result.remote_ids[0]
    assert [r.remote_id for r in first + again] == [remote_id, remote_id]
    assert smsc.counters()["receipts_acked"] == 0
    assert channel.health().counters["receipts_acked"] == 0
    again.ack()
    await wait_until(lambda: smsc.counters()["receipts_acked"] == 1, timeout_s=2)
    assert smsc.counters()["receipts_sent"] == 2


async def test_counts_mode_keeps_counters_and_no_records() -> None:
    peer = start_smsc(record_mode="counts")
    channel = SmsChannel(settings_for(peer))
    try:
        assert await channel.start()
        batch = messages(12)
        for _ in range(2):  # every destination twice: distinct_destinations counts each once
            assert all(r.outcome is SendOutcome.ACCEPTED for r in await channel.send_batch(batch))
        counters = peer.counters()
        assert (counters["submits"], counters["distinct_destinations"]) == (24, 12)
        assert peer.received(None) == [] and peer.received() == []
        await wait_until(lambda: peer.counters()["receipts_sent"] == 24, timeout_s=3)
    finally:
        await channel.close()
        peer.stop()
