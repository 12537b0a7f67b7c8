"""The write lane runs a write on its own event loop and pool, in a thread, and hands back its result or error."""

from __future__ import annotations

import threading

import asyncpg
import pytest

from warnings_svc.web.write_lane import WriteLane


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
