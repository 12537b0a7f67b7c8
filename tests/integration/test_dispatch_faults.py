"""Dissemination under faults: a dispatcher killed mid fan-out, the SMSC down for 30 s, PostgreSQL restarted, a
throttling storm. Each test asserts on what the SMSC actually accepted (its --record file or /received) and on the
outbox states.

Slow on purpose (marked `slow`, never skipped): the kill test fans out to 20,000 people through a real dispatcher
process; the outage test keeps the SMSC away for 30 s, as long as a real restart takes; the PostgreSQL test starts
a server of its own. No timing is asserted: waits are bounded and generous only so that a hang fails instead of
blocking.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from tests.factories_db import fresh_database
from tests.factories_dispatch import (
    accepted_per_destination,
    add_recipients,
    dispatch_settings,
    issue,
    phone,
    read_records,
    sms_segments_of,
    start_dispatcher_process,
    states,
    wait_until,
    write_dispatch_config,
)
from tests.peers.smsc_fixture import start_smsc

pytestmark = pytest.mark.slow

WAIT_S = 120.0


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(db_url)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
def record_dir() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="dispatch-faults-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def _final(
    conn: asyncpg.Connection, warning_id: int, n: int, final: tuple[str, ...] = ("delivered",)
) -> bool:
    s = await states(conn, warning_id)
    return sum(s.get(k, 0) for k in final) == n


# ------------------------------------------------------------------------------------ 1. kill -9 mid fan-out


async def test_a_dispatcher_killed_mid_fan_out_is_taken_over_with_bounded_duplicates(
    conn, db_url, record_dir
) -> None:
    n = 20_000
    record = record_dir / "smsc.jsonl"
    peer = start_smsc(record=record)
    settings = dispatch_settings(peer, lease_s=3, poll_s=0.2)
    config = write_dispatch_config(record_dir / "dispatch.toml", db_url, settings)
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
                "SELECT address FROM svc.delivery WHERE state = 'sending' AND lease_owner = $1", first.owner
            )
        }
        in_flight = settings.batch_size * settings.batches_in_flight
        assert 0 < len(stuck) <= in_flight

        second = start_dispatcher_process(config, "second")
        await wait_until(lambda: _final(conn, v.warning_id, n), WAIT_S, "every delivery delivered")
        assert await states(conn, v.warning_id) == {"delivered": n}
        assert second.stop() == 0
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
