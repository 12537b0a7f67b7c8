"""The write lane runs a write on its own event loop and pool, in a thread, and hands back its result or error."""

from __future__ import annotations

import asyncio
import os
import sys
import threading

import asyncpg
import pytest
from aiohttp import web

from warnings_svc.settings import Settings
from warnings_svc.web.appkeys import SETTINGS
from warnings_svc.web.write_lane import READING_NICENESS_STEP, WRITE_LANE, WriteLane, yield_to_writes


async def test_work_runs_on_the_lane_thread_with_a_connection_and_its_answer_comes_back(db_url: str) -> None:
    lane = WriteLane(db_url)
    await lane.start()
    try:

        async def work(conn: asyncpg.Connection) -> tuple[int, int]:
            return threading.get_ident(), await conn.fetchval("SELECT 41 + 1")

        thread, answer = await lane.run(work)
        assert answer == 42 and thread != threading.get_ident()
    finally:
        await lane.stop()


async def test_an_error_in_the_work_is_raised_to_the_caller_and_rolls_back(db_url: str) -> None:
    lane = WriteLane(db_url)
    await lane.start()
    try:
        await lane.run(lambda conn: conn.execute("CREATE TABLE lane_probe (n int)"))

        async def fails_half_way(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("INSERT INTO lane_probe VALUES (1)")
                raise LookupError("no such warning")

        with pytest.raises(LookupError, match="no such warning"):
            await lane.run(fails_half_way)
        assert await lane.run(lambda conn: conn.fetchval("SELECT count(*) FROM lane_probe")) == 0
        await lane.expire_connections()  # as after a lost database: the next work opens a new connection
        assert await lane.run(lambda conn: conn.fetchval("SELECT 1")) == 1
    finally:
        await lane.stop()
    with pytest.raises(RuntimeError, match="not started"):
        await lane.run(lambda conn: conn.fetchval("SELECT 1"))


def _niceness(thread: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, thread)


@pytest.mark.skipif(sys.platform != "linux", reason="per-thread priorities are Linux's")
def test_the_reading_thread_yields_to_the_lane_and_the_lane_keeps_its_priority(db_url: str) -> None:
    seen: dict[str, object] = {}

    async def serve() -> None:  # in a thread of its own: the test's thread keeps its priority
        app = web.Application()
        seen["without a lane"] = yield_to_writes(app)
        lane = WriteLane(db_url)
        await lane.start()
        app[WRITE_LANE] = lane
        try:
            reader = threading.get_native_id()
            before = _niceness(reader)
            app[SETTINGS] = Settings(database_url=db_url, writes_first=False)
            seen["turned off"] = (yield_to_writes(app), _niceness(reader))
            app[SETTINGS] = Settings(database_url=db_url)
            seen["returned"] = yield_to_writes(app)
            seen["reader"] = (before, _niceness(reader))
            lane_thread = await lane.run(lambda conn: asyncio.sleep(0, threading.get_native_id()))
            seen["lane"] = _niceness(lane_thread)
            seen["lane answers"] = await lane.run(lambda conn: conn.fetchval("SELECT 1"))
        finally:
            await lane.stop()

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    main_before = _niceness(threading.get_native_id())
    thread.start()
    thread.join(60)
    before, after = seen["reader"]  # type: ignore[misc]
    assert seen["without a lane"] is None
    assert seen["turned off"] == (None, before)
    assert after == min(before + READING_NICENESS_STEP, 19) == seen["returned"]
    assert seen["lane"] == before and seen["lane answers"] == 1
    assert _niceness(threading.get_native_id()) == main_before
