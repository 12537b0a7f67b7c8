"""Senders expanding fan-outs for themselves: a chunk's deliveries written already leased (no claim for a
first attempt), takers sharing one fan-out a chunk at a time, and the queue's urgent deliveries first."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from risk_zoning.store import region_units
from tests.factories_db import fresh_database
from tests.factories_dispatch import add_recipients, expand_all, issue
from warnings_svc.dissemination import outbox
from warnings_svc.dissemination.expansion import TAKER_LOCK_WAIT_MS, Taker, expand_next


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh database with the Wuhai risk database built (the suite's `conn` connects to it)."""
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


async def test_takers_share_a_fan_out_a_chunk_each_and_get_their_deliveries_leased(conn, db_url) -> None:
    """Four takers on four connections at once: every person is expanded once, each chunk leased to the taker
    that wrote it, under a lease row naming exactly its deliveries, with the key a claim would give."""
    n = 2000
    await add_recipients(conn, n)
    v = await issue(conn)
    units = await region_units(conn, "wuhai")
    connections = [await asyncpg.connect(db_url) for _ in range(4)]
    taken: dict[str, list[outbox.Claimed]] = {}

    async def take(c: asyncpg.Connection, name: str) -> None:
        for i in range(100):
            taker = Taker("sms", f"{name}#{i}", 60, 150)
            expanded = await expand_next(c, units, chunk=10_000, first_chunk=100, taker=taker)
            if expanded is None:
                return
            taken[taker.lease] = list(expanded.claimed)
            if expanded.done:
                return

    try:
        await asyncio.wait_for(asyncio.gather(*(take(c, f"t{k}") for k, c in enumerate(connections))), 60)
    finally:
        for c in connections:
            await c.close()
    claimed = [c for batch in taken.values() for c in batch]
    assert len(claimed) == len({c.id for c in claimed}) == n
    assert {len(b) for b in taken.values()} <= {100, 150, n - 100 - 150 * ((n - 100) // 150)}
    assert len({lease.split("#")[0] for lease, b in taken.items() if b}) > 1  # more than one took a turn
    rows = await conn.fetch(
        """SELECT id, state, queued, lease_owner, attempts,
                  warning_id || '-' || version || '/' || channel || '/' || recipient_id AS key
           FROM svc.delivery"""
    )
    by_id = {r["id"]: r for r in rows}
    for lease, batch in taken.items():
        for c in batch:
            r = by_id[c.id]
            assert (r["state"], r["queued"], r["lease_owner"], r["attempts"]) == ("sending", False, lease, 1)
            assert c.key == r["key"] and (c.warning_id, c.version, c.attempts) == (v.warning_id, 1, 1)
    leases = dict(await conn.fetch("SELECT lease, ids FROM svc.delivery_lease"))
    assert leases == {lease: [c.id for c in b] for lease, b in taken.items() if b}
    assert await conn.fetchval("SELECT state FROM svc.fanout") == "done"
    assert await conn.fetchval("SELECT count(*) FROM svc.delivery WHERE queued") == 0


async def test_a_taker_leaves_a_fan_out_alone_while_the_queue_holds_deliveries_as_urgent(conn) -> None:
    """Retries and the deliveries of a dispatcher that died wait in the queue: a taker lets them be claimed
    before expanding a fan-out no more urgent, but not before a more urgent one."""
    await add_recipients(conn, 30)
    await issue(conn, level="orange")
    assert await expand_all(conn) == 30  # orange deliveries ready in the queue
    units = await region_units(conn, "wuhai")
    await issue(conn, level="orange")
    taker = Taker("sms", "t#1", 60, 100)
    assert await expand_next(conn, units, chunk=100, first_chunk=100, taker=taker) is None
    # once they are not yet due (a retry's backoff), the taker may expand
    await conn.execute("UPDATE svc.delivery SET next_attempt_at = now() + interval '1 hour'")
    expanded = await expand_next(conn, units, chunk=100, first_chunk=100, taker=taker)
    assert expanded is not None and len(expanded.claimed) == 30
    # a red fan-out goes before orange deliveries waiting in the queue
    await conn.execute("UPDATE svc.delivery SET next_attempt_at = now() WHERE queued")
    red = await issue(conn, level="red")
    expanded = await expand_next(conn, units, chunk=100, first_chunk=100, taker=Taker("sms", "t#2", 60, 100))
    assert expanded is not None and expanded.warning_id == red.warning_id and len(expanded.claimed) == 30


async def test_deliveries_written_leased_return_to_the_queue_when_their_lease_runs_out(conn) -> None:
    """A taker that dies before sending: its chunk comes back to the queue like any claim's batch."""
    await add_recipients(conn, 10)
    await issue(conn)
    units = await region_units(conn, "wuhai")
    expanded = await expand_next(
        conn, units, chunk=100, first_chunk=100, taker=Taker("sms", "dead#1", 60, 100)
    )
    assert expanded is not None and len(expanded.claimed) == 10
    await conn.execute("UPDATE svc.delivery_lease SET until = now() - interval '1 s'")
    assert await outbox.reclaim_expired_leases(conn) == 10
    again = await outbox.claim(conn, "sms", "alive#1", 100, 60)
    assert sorted(c.id for c in again) == sorted(c.id for c in expanded.claimed)
    assert {c.attempts for c in again} == {2}


async def test_a_taker_gives_up_a_fan_out_held_longer_than_a_chunk_takes(conn, db_url) -> None:
    """Someone's open transaction holding the fan-out: the taker does not hang (its senders would stop serving
    the queue too); it gives up after `TAKER_LOCK_WAIT_MS` and finds the fan-out again once it is free."""
    await add_recipients(conn, 10)
    await issue(conn)
    units = await region_units(conn, "wuhai")
    holder = await asyncpg.connect(db_url)
    try:
        async with holder.transaction():
            await holder.execute("SELECT * FROM svc.fanout FOR UPDATE")
            started = time.monotonic()
            taker = Taker("sms", "t#1", 60, 100)
            taking = expand_next(conn, units, chunk=100, first_chunk=100, taker=taker)
            assert await asyncio.wait_for(taking, TAKER_LOCK_WAIT_MS / 1000 + 5) is None
            waited = time.monotonic() - started
    finally:
        await holder.close()
    assert TAKER_LOCK_WAIT_MS / 1000 <= waited < TAKER_LOCK_WAIT_MS / 1000 + 2
    assert await conn.fetchval("SELECT count(*) FROM svc.delivery") == 0  # nothing half-written
    expanded = await expand_next(conn, units, chunk=100, first_chunk=100, taker=Taker("sms", "t#2", 60, 100))
    assert expanded is not None and len(expanded.claimed) == 10
