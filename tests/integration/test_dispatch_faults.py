"""Dissemination under faults: a dispatcher killed mid fan-out, the SMSC down for 30 s, PostgreSQL restarted, a
throttling storm, a batch outliving its lease. Each test asserts on what the SMSC actually accepted (its --record
file or /received) and on the outbox states.

Slow on purpose (marked `slow`, never skipped; about 90 s for the file on 2 cores): the kill test fans out to
20,000 people through real dispatcher processes (about 12 s); the outage test keeps the SMSC away for 30 s, as long
as a real restart takes; the PostgreSQL test restarts a server of its own. Where a production backoff would only
add waiting (the bind's 30 s reconnect backoff, its 5 s throttling pause), the test shortens it and says so. No
timing is asserted: waits are bounded and generous only so that a hang fails instead of blocking.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from risk_zoning.io.database import EmbeddedPostgres
from tests.factories_db import fresh_database
from tests.factories_dispatch import (
    accepted_per_destination,
    add_recipients,
    dispatch_settings,
    issue,
    outbox_report,
    phone,
    read_records,
    running_dispatcher,
    running_dispatcher_on,
    sms_endpoint_tuned,
    sms_segments_of,
    start_dispatcher_process,
    states,
    wait_until,
    write_dispatch_config,
)
from tests.peers.smsc_fixture import SmscPeer, start_smsc
from tests.ports import free_port

pytestmark = pytest.mark.slow

WAIT_S = 120.0


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh database with the Wuhai risk database built (the suite's `conn` connects to it)."""
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


@pytest.fixture
def record_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="dispatch-faults-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def _final(conn: asyncpg.Connection, warning_id: int, n: int) -> bool:
    return (await states(conn, warning_id)).get("delivered", 0) == n


# ------------------------------------------------------------------------------------ 1. kill -9 mid fan-out


async def test_a_dispatcher_killed_mid_fan_out_is_taken_over_with_bounded_duplicates(
    conn, db_url, record_dir
) -> None:
    n = 20_000
    record = record_dir / "smsc.jsonl"
    peer = start_smsc(record=record)
    # The killed dispatcher's leases run out soon (5 s: its batches take about a second here, and one outliving
    # its lease is sent twice, see test 5); its successor's leases are long, so all its batches keep theirs.
    settings = dispatch_settings(peer, lease_s=5, poll_s=0.2)
    config = write_dispatch_config(record_dir / "first.toml", db_url, settings)
    successor_config = write_dispatch_config(
        record_dir / "second.toml", db_url, dispatch_settings(peer, lease_s=60, poll_s=0.2)
    )
    first = second = None
    try:
        await add_recipients(conn, n)
        v = await issue(conn)
        segments = await sms_segments_of(conn, v.warning_id)
        assert segments >= 2
        first = start_dispatcher_process(config, "first")

        async def some_thousands() -> bool:
            return peer.counters()["submits"] >= 9_000

        await wait_until(some_thousands, WAIT_S, "the first dispatcher's first 9,000 segments", every_s=0.02)
        first.kill()
        accepted_at_kill = peer.counters()["submits"]
        assert accepted_at_kill < n * segments  # killed in the middle
        stuck = {
            r["address"]
            for r in await conn.fetch(
                "SELECT address FROM svc.delivery WHERE state = 'sending' AND lease_owner LIKE $1 || '#%'",
                first.owner,
            )
        }
        # batches being sent, and as many sent whose outcomes were being stored
        in_flight = 2 * settings.batch_size * settings.batches_in_flight
        assert 0 < len(stuck) <= in_flight

        second = start_dispatcher_process(successor_config, "second")
        try:
            await wait_until(lambda: _final(conn, v.warning_id, n), WAIT_S, "every delivery delivered")
        except AssertionError as e:
            log_tail = " | ".join(second.log.read_text(errors="replace").splitlines()[-5:])
            raise AssertionError(
                f"{e}: {await outbox_report(conn, v.warning_id)}; SMSC {peer.counters()}; second's log: {log_tail}"
            ) from None
        assert await states(conn, v.warning_id) == {"delivered": n}
        assert second.stop() == 0
        # a clean stop prints what the process did as a last JSON line; a killed one prints nothing more
        last = json.loads(second.printed()[-1])
        assert last["stopped"] == second.owner
        assert 0 < last["counters"]["sent"] <= n and last["counters"]["receipts"] > 0
        assert len(first.printed()) == 1
    finally:
        for d in (first, second):
            if d is not None:
                d.kill()
        peer.stop()
    per_phone = accepted_per_destination(read_records(record))
    assert set(per_phone) == {phone(i) for i in range(n)}  # every recipient, and no one else
    assert min(per_phone.values()) == segments  # every segment at least once
    duplicated = {p for p, c in per_phone.items() if c > segments}
    # only what the killed dispatcher held leased was sent again, and each at most once more
    assert duplicated <= stuck
    assert max(per_phone.values()) <= 2 * segments
    retried = await conn.fetchval(
        "SELECT count(*) FROM svc.delivery WHERE warning_id = $1 AND attempts > 1", v.warning_id
    )
    assert retried <= len(stuck)
    print(
        f"\nkill -9: {accepted_at_kill} segments at the kill, {len(stuck)} leased, {len(duplicated)} sent twice"
    )


# ------------------------------------------------------------------------------------ 2. the SMSC down for 30 s

OUTAGE_S = 30.0
SECOND_PEER_IDS = 0x10000000  # the restarted SMSC's message_ids, above any its predecessor handed out


async def test_an_smsc_down_for_30_s_is_waited_out_and_the_fan_out_finishes(conn, db_url, record_dir) -> None:
    n = 3_000
    records = (record_dir / "first.jsonl", record_dir / "second.jsonl")
    # Below the ephemeral range: no socket bound to port 0 (here or in another test worker) takes the port
    # while the SMSC is away.
    first = start_smsc(record=records[0], port=free_port())
    second: SmscPeer | None = None
    # The bind's reconnect backoff (30 s in production) and the circuit's longest cool-down are cut short, so
    # the test waits for the outage rather than for the backoff after it. A batch waits 5 s for a bind that is
    # down: the lease is longer, so that none runs out while its batch is in hand (see test 5).
    settings = dispatch_settings(first, breaker_max_cool_down_s=2.0, lease_s=30)
    endpoints = [sms_endpoint_tuned(settings.sms[0], settings, reconnect_max_s=2.0)]
    try:
        await add_recipients(conn, n)
        v = await issue(conn)
        segments = await sms_segments_of(conn, v.warning_id)
        async with running_dispatcher_on(db_url, settings, endpoints) as dispatcher:

            async def some_sent() -> bool:
                return first.counters()["submits"] >= 2_000

            await wait_until(some_sent, WAIT_S, "the first 2,000 segments", every_s=0.02)
            first.process.kill()  # SIGKILL: its pending receipts die with it
            first.process.wait(timeout=10)
            await asyncio.sleep(OUTAGE_S)
            assert await states(conn, v.warning_id) != {"delivered": n}
            second = start_smsc(record=records[1], port=first.port, first_message_id=SECOND_PEER_IDS)

            async def all_served() -> bool:
                # nothing left to send, and every delivery sent through the second SMSC delivered (one still
                # 'sent' after the outage went through the first one, whose receipts died with it)
                left = await conn.fetchval(
                    """SELECT count(*) FROM svc.delivery d WHERE warning_id = $1
                       AND (state IN ('pending', 'sending') OR (state = 'sent' AND EXISTS (
                            SELECT FROM svc.sent_part p WHERE p.delivery_id = d.id AND p.remote_id >= $2)))""",
                    v.warning_id,
                    f"{SECOND_PEER_IDS:08x}",
                )
                return left == 0

            await wait_until(
                all_served, WAIT_S, "every delivery sent, and delivered when sent after the outage"
            )
            opened = dispatcher.endpoints[0].breaker.opened_count
            counters = dict(dispatcher.counters)
    finally:
        first.stop()
        if second is not None:
            second.stop()

    by_state = await states(conn, v.warning_id)
    assert set(by_state) <= {"delivered", "sent"} and sum(by_state.values()) == n  # none dead, none pending
    assert opened >= 1  # the circuit opened while the SMSC was away
    assert counters["retried"] > 0 and counters["dead"] == 0
    assert await conn.fetchval(
        "SELECT count(*) FROM svc.delivery WHERE warning_id = $1 AND attempts > 1", v.warning_id
    )

    accepted = [accepted_per_destination(read_records(path)) for path in records]
    union = accepted[0] + accepted[1]
    assert set(union) == {phone(i) for i in range(n)}
    assert min(union.values()) >= segments  # every segment of every person at least once
    assert accepted[1]  # the second SMSC did get work
    # Only what was in flight when the link broke went out twice.
    twice = {p for p in accepted[0] if accepted[1][p]}
    in_flight = settings.batch_size * settings.batches_in_flight
    assert len(twice) <= in_flight

    # A delivery still 'sent' went out through the first SMSC, which died before sending its receipts: it
    # stays 'sent' (accepted by the network, no proof of delivery). Everything sent after the outage was
    # delivered.
    rows = await conn.fetch(
        """SELECT d.address, d.state, d.segments, array_agg(p.remote_id) AS ids,
                  count(*) FILTER (WHERE p.state <> 'en_route') AS final_receipts
           FROM svc.delivery d JOIN svc.sent_part p ON p.delivery_id = d.id
           WHERE d.warning_id = $1 GROUP BY d.id""",
        v.warning_id,
    )
    assert len(rows) == n
    for r in rows:
        assert len(r["ids"]) == r["segments"] == segments
        through_second = {int(i, 16) >= SECOND_PEER_IDS for i in r["ids"]}
        assert len(through_second) == 1, r  # every part of a delivery through one SMSC
        if r["state"] == "sent":
            assert through_second == {False} and r["final_receipts"] < segments, r
        else:
            assert r["final_receipts"] == segments, r
    print(
        f"\nSMSC outage: circuit opened {opened}x, {counters['claimed']} claimed, {counters['retried']} retries, {len(twice)} twice,"
        f" {by_state.get('sent', 0)} left 'sent' (receipts lost with the first SMSC)"
    )


# ------------------------------------------------------------------------------------ 3. PostgreSQL restarted


@pytest.fixture
def own_postgres() -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A PostgreSQL of this test's own, to restart (outside pytest's tmp tree: see tests/conftest.py)."""
    folder = Path(tempfile.mkdtemp(prefix="dispatch-faults-pg-"))
    embedded = EmbeddedPostgres(folder)
    url = embedded.start()
    try:
        yield embedded, url
    finally:
        embedded.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def _count(url: str, sql: str, *args: object) -> int | None:
    """One value from a connection of its own; None while the server is away."""
    try:
        c = await asyncpg.connect(url, timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return None
    try:
        return await c.fetchval(sql, *args)
    finally:
        await c.close()


async def test_a_postgresql_restart_mid_fan_out_is_waited_out(own_postgres, smsc) -> None:
    embedded, server_url = own_postgres
    n = 5_000
    settings = dispatch_settings(smsc, lease_s=30)  # longer than the outage: no lease runs out meanwhile
    async with fresh_database(server_url, built=True) as url:
        c = await asyncpg.connect(url)
        try:
            await add_recipients(c, n)
            v = await issue(c)
            segments = await sms_segments_of(c, v.warning_id)
        finally:
            await c.close()
        async with running_dispatcher(url, settings) as dispatcher:

            async def some_sent() -> bool:
                return smsc.counters()["submits"] >= 3_000

            await wait_until(some_sent, WAIT_S, "the first 3,000 segments", every_s=0.02)
            await asyncio.to_thread(embedded.stop)
            at_stop = smsc.counters()["submits"]
            await asyncio.sleep(2.0)
            restarted_url = await asyncio.to_thread(embedded.start)
            assert restarted_url == server_url  # same socket folder: the dispatcher's URL still leads there
            assert at_stop < n * segments  # restarted in the middle

            async def all_delivered() -> bool:
                done = await _count(
                    url,
                    "SELECT count(*) FROM svc.delivery WHERE warning_id = $1 AND state = 'delivered'",
                    v.warning_id,
                )
                return done == n

            try:
                await wait_until(all_delivered, WAIT_S, "every delivery delivered after the restart")
            except AssertionError as e:  # say where it stuck: 'sent' with receipts the SMSC holds unanswered
                c = await asyncpg.connect(url)
                try:
                    by_state = await states(c, v.warning_id)
                finally:
                    await c.close()
                raise AssertionError(
                    f"{e}: {by_state}, {dispatcher.counters}, SMSC {smsc.counters()}"
                ) from None
            counters = dict(dispatcher.counters)
            felt = dispatcher.metrics.registry.get_sample_value  # the dispatcher did meet the outage
            outage_errors = sum(
                felt("warnings_dispatch_database_errors_total", {"during": w}) or 0
                for w in ("expand", "claim", "release", "texts", "results", "receipts")
            )
        c = await asyncpg.connect(url)
        try:
            assert await states(c, v.warning_id) == {"delivered": n}
            retried = await c.fetchval(
                "SELECT count(*) FROM svc.delivery WHERE warning_id = $1 AND attempts > 1", v.warning_id
            )
        finally:
            await c.close()
    per_phone = accepted_per_destination(smsc.accepted())
    assert set(per_phone) == {phone(i) for i in range(n)}
    assert min(per_phone.values()) == segments
    twice = {p for p, k in per_phone.items() if k > segments}
    assert len(twice) <= settings.batch_size * settings.batches_in_flight
    assert counters["dead"] == 0
    assert outage_errors > 0
    print(
        f"\nPostgreSQL restart: {at_stop} segments at the stop, {outage_errors:.0f} database errors waited out,"
        f" {len(twice)} sent twice, {retried} retried"
    )


# ------------------------------------------------------------------------------------ 4. a throttling storm


@pytest.mark.parametrize(("status", "name"), [(0x58, "ESME_RTHROTTLED"), (0x14, "ESME_RMSGQFUL")])
async def test_a_throttling_storm_sends_every_segment_exactly_once(conn, db_url, smsc, status, name) -> None:
    n = 2_000
    throttled = 3_000
    await add_recipients(conn, n)
    # The bind's longest throttling pause (5 s in production) is cut to 0.25 s, else 3,000 throttled submits
    # take minutes; the lease is the production one, so that no batch outlives it here (see the lease test).
    settings = dispatch_settings(smsc, lease_s=60)
    endpoints = [sms_endpoint_tuned(settings.sms[0], settings, throttle_pause_max_s=0.25)]
    v = await issue(conn)
    segments = await sms_segments_of(conn, v.warning_id)
    async with running_dispatcher_on(db_url, settings, endpoints) as dispatcher:

        async def some_sent() -> bool:
            return smsc.counters()["submits"] >= 600

        # the storm breaks out mid-stream, as an SMSC's does: with messages half sent
        await wait_until(some_sent, WAIT_S, "the first 600 segments", every_s=0.01)
        smsc.set_faults(throttle_count=throttled, throttle_status=status)
        await wait_until(
            lambda: _final(conn, v.warning_id, n), WAIT_S, f"every delivery delivered through {name}"
        )
        bind_throttled = sum(b.counters["throttled"] for b in endpoints[0].adapter.binds)
        counters = dict(dispatcher.counters)
    assert await states(conn, v.warning_id) == {"delivered": n}
    received = smsc.received()
    assert sum(r["outcome"] == "throttled" for r in received) == throttled
    per_phone = accepted_per_destination(received)
    assert set(per_phone) == {phone(i) for i in range(n)}
    # every throttled answer slowed its bind; a throttled first part comes back as a retry, a later part is
    # resent in place, so how many deliveries were retried depends on where the storm hit
    assert counters["dead"] == 0 and bind_throttled == throttled
    # every segment exactly once: a throttled submit_sm is not an accepted one
    assert set(per_phone.values()) == {segments}, Counter(per_phone.values())


# ------------------------------------------------------------------------------------ 5. a send outlasting its lease


async def test_a_batch_sent_for_longer_than_its_lease_is_sent_once_and_settles(conn, db_url, smsc) -> None:
    """A live dispatcher whose batch takes longer than `lease_s` (a slow or throttling SMSC) must keep its
    leases: its own reaper must not hand the batch to another of its senders (each person would get the
    message twice), and a late result must not map more parts than the delivery has segments (were it stored
    before the first result's receipts, the delivery would stay 'sent' for ever)."""
    n = 50
    await add_recipients(conn, n)
    # segments in turn: at least 4 s a message, over a 2 s lease; receipts come after both results
    smsc.set_faults(response_delay_ms=2_000, receipt_delay_ms=5_000)
    settings = dispatch_settings(smsc, lease_s=2, batch_size=n)
    v = await issue(conn)
    segments = await sms_segments_of(conn, v.warning_id)
    async with running_dispatcher(db_url, settings) as dispatcher:

        async def settled() -> bool:
            s = await states(conn, v.warning_id)
            receipts = await conn.fetchval("SELECT count(state) FROM svc.sent_part")
            done = sum(s.values()) == n and not s.get("pending") and not s.get("sending")
            return done and receipts >= smsc.counters()["submits"]

        await wait_until(settled, WAIT_S, "every delivery sent and every receipt stored")
        counters = dict(dispatcher.counters)
    per_phone = accepted_per_destination(smsc.received())
    parts = await conn.fetch(
        """SELECT d.segments, count(p.remote_id) AS parts FROM svc.delivery d
           JOIN svc.sent_part p ON p.delivery_id = d.id WHERE d.warning_id = $1 GROUP BY d.id""",
        v.warning_id,
    )
    assert set(per_phone) == {phone(i) for i in range(n)}
    assert set(per_phone.values()) == {segments}, (Counter(per_phone.values()), counters)  # sent once
    assert counters["claimed"] == n
    assert Counter(r["parts"] - r["segments"] for r in parts) == {0: n}  # no part mapped twice
    assert await states(conn, v.warning_id) == {"delivered": n}
