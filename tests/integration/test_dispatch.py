"""Dissemination end to end: the outbox written at approval, dispatchers, SMPP to a real SMSC, receipts."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.factories_db import fresh_database
from tests.factories_dispatch import (
    add_recipients,
    dispatch_settings,
    issue,
    phone,
    running_dispatcher,
    sms_segments_of,
    states,
    wait_until,
)


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


async def test_an_issued_warning_reaches_everyone_once_with_receipts(conn, db_url, smsc) -> None:
    await add_recipients(conn, 300)
    v = await issue(conn)
    # the outbox row was written by the approval itself
    assert await conn.fetchval("SELECT count(*) FROM svc.fanout WHERE warning_id = $1", v.warning_id) == 1
    async with running_dispatcher(db_url, dispatch_settings(smsc)):
        await wait_until(lambda: _all_final(conn, v.warning_id, 300), 30, "every delivery delivered")
    assert await states(conn, v.warning_id) == {"delivered": 300}
    accepted = smsc.accepted()
    per_phone = Counter(r["destination_addr"] for r in accepted)
    assert set(per_phone) == {phone(i) for i in range(300)}
    segments = await sms_segments_of(conn, v.warning_id)
    assert segments >= 2 and set(per_phone.values()) == {segments}  # every segment sent exactly once
    parts = await conn.fetchval("SELECT count(*) FROM svc.delivery_part")
    assert parts == 300 * segments == await conn.fetchval("SELECT count(*) FROM svc.receipt")


async def _all_final(conn: asyncpg.Connection, warning_id: int, n: int) -> bool:
    return (await states(conn, warning_id)).get("delivered", 0) == n
