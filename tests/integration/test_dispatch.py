"""Dissemination end to end: the outbox written at approval, dispatchers, SMPP to a real SMSC, receipts."""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from channels.base import SendOutcome, SendResult
from tests.factories_db import fresh_database
from tests.factories_dispatch import (
    add_recipients,
    dispatch_settings,
    expand_all,
    issue,
    phone,
    running_dispatcher,
    sms_segments_of,
    states,
    successor,
    wait_until,
)
from warnings_svc.dissemination import outbox
from warnings_svc.dissemination.dispatcher import GC_YOUNG_THRESHOLD, tune_collector
from warnings_svc.dissemination.metrics import DispatchMetrics


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh database with the Wuhai risk database built (the suite's `conn` connects to it)."""
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


async def test_an_issued_warning_reaches_everyone_once_with_receipts(conn, db_url, smsc) -> None:
    await add_recipients(conn, 300)
    started = await conn.fetchval("SELECT now()")
    v = await issue(conn)
    # the outbox row was written by the approval itself
    assert await conn.fetchval("SELECT count(*) FROM svc.fanout WHERE warning_id = $1", v.warning_id) == 1
    # each answer takes 50 ms and its receipt follows 10 ms later, so the batch's 600-odd segments (100 in flight)
    # take at least six answer times: the first receipts come while their batch is still being sent, however
    # fast the machine (with prompt answers a fast one stored the whole batch before any receipt came)
    smsc.set_faults(response_delay_ms=50, receipt_delay_ms=60)
    async with running_dispatcher(db_url, dispatch_settings(smsc)) as dispatcher:
        await wait_until(lambda: _all_final(conn, v.warning_id, 300), 30, "every delivery delivered")
    assert await states(conn, v.warning_id) == {"delivered": 300}
    # the early receipts beat their batch's results and were stored with them; each was acknowledged once
    # stored, none before (the kill -9 test shows none is lost)
    counters = dispatcher.counters
    assert 0 < counters["receipts_with_results"] <= counters["receipts"]
    # the senders expanded the fan-out themselves, already leased: no first attempt went through the queue
    assert counters["expanded"] == counters["claimed"] == 300 and counters["claimed_from_queue"] == 0
    smsc_counters = smsc.counters()
    assert smsc_counters["receipts_acked"] == smsc_counters["receipts_sent"] == counters["receipts"]
    accepted = smsc.accepted()
    per_phone = Counter(r["destination_addr"] for r in accepted)
    assert set(per_phone) == {phone(i) for i in range(300)}
    segments = await sms_segments_of(conn, v.warning_id)
    assert segments >= 2 and set(per_phone.values()) == {segments}  # every segment sent exactly once
    parts = await conn.fetchrow(
        """SELECT count(delivery_id) AS mapped, count(state) AS receipts,
                  count(*) FILTER (WHERE received_at BETWEEN $1 AND now()
                                   AND done_at BETWEEN date_trunc('minute', $1) AND now()) AS timed
           FROM svc.sent_part""",
        started,
    )
    assert parts["mapped"] == parts["receipts"] == parts["timed"] == 300 * segments
    progress = await outbox.summary(conn, v.warning_id)  # what GET /api/v1/warnings/{id}/deliveries shows
    assert progress["deliveries"]["delivered"] == 300 and progress["segments"] == 300 * segments
    assert progress["versions"] == [
        {"version": 1, "deliveries": progress["deliveries"], "segments": 300 * segments}
    ]


async def _all_final(conn: asyncpg.Connection, warning_id: int, n: int) -> bool:
    return (await states(conn, warning_id)).get("delivered", 0) == n


async def _told(conn: asyncpg.Connection, warning_id: int, version: int) -> set[str]:
    rows = await conn.fetch(
        "SELECT address FROM svc.delivery WHERE warning_id = $1 AND version = $2", warning_id, version
    )
    return {r["address"] for r in rows}


async def _settled(conn: asyncpg.Connection, warning_id: int) -> bool:
    s = await states(conn, warning_id)
    return bool(s) and not {"pending", "sending", "sent"} & set(s) and not await _fanouts_pending(conn)


async def _fanouts_pending(conn: asyncpg.Connection) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM svc.fanout WHERE state = 'pending'"))


async def test_updates_text_only_people_whose_warning_changed_and_cancels_reach_only_those_told(
    conn, db_url, smsc
) -> None:
    # people in Haibowan (150302), Hainan (150303) and Wuda (150304), in turn
    await add_recipients(conn, 30)
    haibowan = {phone(i) for i in range(0, 30, 3)}
    hainan = {phone(i) for i in range(1, 30, 3)}
    async with running_dispatcher(db_url, dispatch_settings(smsc)):
        v1 = await issue(conn, areas=("150302", "150303"))
        await wait_until(lambda: _settled(conn, v1.warning_id), 30, "the Alert delivered")
        assert await _told(conn, v1.warning_id, 1) == haibowan | hainan
        # an Update that only drops Hainan: Haibowan's warning is unchanged, Hainan is told it is off
        await successor(conn, v1.warning_id, {"areas": ["150302"]})
        await wait_until(lambda: _settled(conn, v1.warning_id), 30, "the Update delivered")
        assert await _told(conn, v1.warning_id, 2) == hainan
        fanout = await conn.fetchrow("SELECT deliveries, unchanged FROM svc.fanout WHERE version = 2")
        assert (fanout["deliveries"], fanout["unchanged"]) == (10, 10)
        # raising the level changes it for everyone still concerned (Haibowan), not for Hainan any more
        await successor(conn, v1.warning_id, {"level": "red"})
        await wait_until(lambda: _settled(conn, v1.warning_id), 30, "the second Update delivered")
        assert await _told(conn, v1.warning_id, 3) == haibowan
        await successor(conn, v1.warning_id, None)
        await wait_until(lambda: _settled(conn, v1.warning_id), 30, "the Cancel delivered")
        # the Cancel goes to those the warning still concerned (Haibowan): Hainan was told it is off for them
        assert await _told(conn, v1.warning_id, 4) == haibowan
    per_phone = Counter(r["destination_addr"] for r in smsc.accepted())
    assert not {phone(i) for i in range(2, 30, 3)} & set(per_phone)  # Wuda never texted


async def test_an_exercise_reaches_only_test_recipients(conn, db_url, smsc) -> None:
    await add_recipients(conn, 40, test_every=10)
    async with running_dispatcher(db_url, dispatch_settings(smsc)):
        v = await issue(conn, exercise=True)
        await wait_until(lambda: _settled(conn, v.warning_id), 30, "the exercise delivered")
    destinations = {r["destination_addr"] for r in smsc.accepted()}
    assert destinations == {phone(i) for i in (0, 10, 20, 30)}


async def test_a_warning_cancelled_before_it_was_sent_is_never_sent_late(conn, db_url, smsc) -> None:
    await add_recipients(conn, 50)
    v = await issue(conn)
    await successor(conn, v.warning_id, None)  # cancelled while no dispatcher was running
    async with running_dispatcher(db_url, dispatch_settings(smsc)):
        await wait_until(lambda: _fanouts_done(conn, 2), 30, "both fan-outs handled")
        await wait_until(lambda: _no_pending(conn), 30, "the queue empty")
    assert smsc.accepted() == []
    assert await conn.fetchval("SELECT state FROM svc.fanout WHERE version = 1") == "dropped"
    # nobody was told the Alert, so the Cancel has nobody to reach
    assert await conn.fetchval("SELECT deliveries FROM svc.fanout WHERE version = 2") == 0


async def test_deliveries_of_an_updated_version_still_queued_are_dropped_not_sent(conn, db_url, smsc) -> None:
    await add_recipients(conn, 20)
    v = await issue(conn)
    # expand the Alert without sending (a dispatcher with no endpoint), then supersede it
    async with running_dispatcher(db_url, dispatch_settings(smsc, sms=())):
        await wait_until(lambda: _fanouts_done(conn, 1), 30, "the Alert expanded")
    await successor(conn, v.warning_id, {"level": "red"})
    async with running_dispatcher(db_url, dispatch_settings(smsc)) as dispatcher:
        await wait_until(lambda: _settled(conn, v.warning_id), 30, "everything final")
    # the Alert's deliveries waited in the queue (claimed, and dropped there); the Update's were expanded leased
    assert dispatcher.counters["claimed_from_queue"] == 0 and dispatcher.counters["claimed"] == 20
    rows = await conn.fetch("SELECT version, state, reason FROM svc.delivery ORDER BY version")
    assert {(r["version"], r["state"]) for r in rows} == {(1, "dropped"), (2, "delivered")}
    assert {r["reason"] for r in rows if r["version"] == 1} == {"warning no longer in force"}
    assert len(smsc.accepted()) == 20 * await sms_segments_of(conn, v.warning_id, 2)


async def test_red_goes_out_before_orange(conn, db_url, smsc) -> None:
    await add_recipients(conn, 600)
    orange = await issue(conn, level="orange", areas=("150303",))
    red = await issue(conn, level="red", areas=("150302",))
    settings = dispatch_settings(smsc, batch_size=50, batches_in_flight=1, first_chunk=1000)
    async with running_dispatcher(db_url, settings):
        await wait_until(lambda: _settled(conn, orange.warning_id), 60, "orange delivered")
    red_phones = {phone(i) for i in range(0, 600, 3)}
    segments = await sms_segments_of(conn, red.warning_id)
    first = [r["destination_addr"] for r in smsc.accepted()][: segments * len(red_phones)]
    assert set(first) == red_phones
    assert (await states(conn, red.warning_id)) == {"delivered": 200}


async def test_refused_messages_go_to_dead_letters_with_the_reason(conn, db_url, smsc) -> None:
    await add_recipients(conn, 5)
    smsc.set_faults(throttle_count=5, throttle_status=0x0B)  # ESME_RINVDSTADR: a bad number, for good
    async with running_dispatcher(db_url, dispatch_settings(smsc, batches_in_flight=1)):
        v = await issue(conn)
        await wait_until(lambda: _settled(conn, v.warning_id), 30, "every delivery final")
    rows = await conn.fetch("SELECT state, reason, attempts FROM svc.delivery")
    assert {(r["state"], r["reason"], r["attempts"]) for r in rows} == {
        ("dead", "refused: ESME_RINVDSTADR", 1)
    }


async def test_receipts_tell_delivered_from_only_accepted_and_failed(conn, db_url, smsc) -> None:
    await add_recipients(conn, 6)
    async with running_dispatcher(db_url, dispatch_settings(smsc)):
        smsc.set_faults(receipt_state="UNDELIV")
        v = await issue(conn, areas=("150302",))
        await wait_until(lambda: _settled(conn, v.warning_id), 30, "the first warning final")
        smsc.set_faults(receipt_state="ACCEPTD", receipt_tlvs=False)  # the receipt text alone
        w = await issue(conn, areas=("150303",))
        await wait_until(lambda: _settled(conn, w.warning_id), 30, "the second warning final")
    assert await states(conn, v.warning_id) == {"failed": 2}
    assert await states(conn, w.warning_id) == {"accepted": 2}


async def test_two_dispatchers_share_the_queue_without_sending_twice(conn, db_url, smsc) -> None:
    await add_recipients(conn, 2000)
    settings = dispatch_settings(smsc, batch_size=100, first_chunk=200, expand_chunk=300)
    async with running_dispatcher(db_url, settings) as a, running_dispatcher(db_url, settings) as b:
        v = await issue(conn)
        await wait_until(lambda: _settled(conn, v.warning_id), 60, "every delivery final")
    segments = await sms_segments_of(conn, v.warning_id)
    per_phone = Counter(r["destination_addr"] for r in smsc.accepted())
    assert len(per_phone) == 2000 and set(per_phone.values()) == {segments}
    assert a.counters["sent"] > 0 and b.counters["sent"] > 0  # both did part of the work
    assert a.counters["sent"] + b.counters["sent"] == 2000
    # each expanded the chunks it sent, taking turns on the one fan-out
    assert a.counters["expanded"] == a.counters["claimed"] and b.counters["expanded"] == b.counters["claimed"]
    assert a.counters["claimed_from_queue"] == b.counters["claimed_from_queue"] == 0


async def _fanouts_done(conn: asyncpg.Connection, n: int) -> bool:
    return await conn.fetchval("SELECT count(*) FROM svc.fanout WHERE state <> 'pending'") == n


async def _no_pending(conn: asyncpg.Connection) -> bool:
    return not await conn.fetchval("SELECT count(*) FROM svc.delivery WHERE state IN ('pending', 'sending')")


async def test_a_version_without_an_sms_text_is_dead_lettered_and_the_rest_still_goes(
    conn, db_url, smsc
) -> None:
    await add_recipients(conn, 30)
    damaged = await issue(conn, areas=("150302",))
    sound = await issue(conn, areas=("150303",))
    # a damaged row (restored from a bad backup, say): nothing to send, and no batch may fail for ever on it
    await conn.execute(
        "UPDATE svc.warning_version SET rendered = '{}' WHERE warning_id = $1", damaged.warning_id
    )
    async with running_dispatcher(db_url, dispatch_settings(smsc)):
        await wait_until(lambda: _settled(conn, sound.warning_id), 30, "the sound warning delivered")
        await wait_until(lambda: _settled(conn, damaged.warning_id), 30, "the damaged one dead-lettered")
    assert await states(conn, sound.warning_id) == {"delivered": 10}
    reasons = await conn.fetch(
        "SELECT DISTINCT state, reason FROM svc.delivery WHERE warning_id = $1", damaged.warning_id
    )
    assert [(r["state"], r["reason"]) for r in reasons] == [("dead", "refused: no SMS text issued for zh-CN")]


async def test_a_running_dispatcher_has_tuned_the_garbage_collector(conn, db_url, smsc) -> None:
    """Its start-up heap frozen and young objects collected in large generations (bench/LOG.md: the
    collector took a third of the dispatcher's CPU at Python's defaults)."""
    async with running_dispatcher(db_url, dispatch_settings(smsc)):

        async def tuned() -> bool:
            return gc.get_threshold()[0] == GC_YOUNG_THRESHOLD

        await wait_until(tuned, 10, "the collector tuned")
        assert gc.get_freeze_count() > 10_000  # the modules and settings loaded before it started
        tune_collector()  # once per process: a second call changes nothing
        assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD


async def test_queue_figures_count_open_deliveries_and_those_of_versions_in_force(conn) -> None:
    """What the `warnings_deliveries` gauge shows: everything pending or sending, the rest only while its
    version is in force (the outbox keeps every delivery ever made: the gauge must not count its history)."""
    await add_recipients(conn, 50)
    v = await issue(conn)
    assert await expand_all(conn) == 50
    stats = await outbox.queue_stats(conn)
    assert [(r["channel"], r["state"], r["n"]) for r in stats] == [("sms", "pending", 50)]
    assert stats[0]["oldest_s"] >= 0
    claimed = await outbox.claim(conn, "sms", "test#1", 20, 60)
    results = [SendResult(c.key, SendOutcome.ACCEPTED, (f"id-{c.id}",)) for c in claimed]
    await outbox.record_results(conn, "smsc", [outbox.SentBatch("test#1", claimed, results, [0.0] * 20)], 12)
    await outbox.claim(conn, "sms", "test#2", 5, 60)
    metrics = DispatchMetrics()

    def gauge(state: str) -> float | None:
        return metrics.registry.get_sample_value("warnings_deliveries", {"channel": "sms", "state": state})

    metrics.observe_queue(await outbox.queue_stats(conn))
    assert (gauge("pending"), gauge("sending"), gauge("sent"), gauge("delivered")) == (25, 5, 20, 0)
    await conn.execute(
        "UPDATE svc.warning_version SET status = 'expired' WHERE warning_id = $1", v.warning_id
    )
    metrics.observe_queue(await outbox.queue_stats(conn))
    assert (gauge("pending"), gauge("sending"), gauge("sent")) == (25, 5, 0)  # the expired version's sent
    await conn.execute(
        "UPDATE svc.delivery SET state = 'dropped', queued = false, lease_owner = NULL, final_at = now()"
    )
    metrics.observe_queue(await outbox.queue_stats(conn))  # nothing left to count: zeros, not stale figures
    assert (gauge("pending"), gauge("sending"), gauge("sent")) == (0, 0, 0)
