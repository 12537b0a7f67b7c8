"""The write lane: a warning's writes run on an event loop of their own, in a thread, with a pool of their own.

Why: when the public reads at full speed (a red warning just went out), a web process's event loop has a
hundred connections ready at every turn, and each `await` of a request waits one whole turn: an approval of
17 database statements waited 17 turns, 145 ms at the median and 445 ms at the 99th percentile in
bench/public_read.py, against 11 ms when idle. On the lane the write's statements wait only for the database
and for the interpreter's lock, which the reading thread hands over every `SWITCH_INTERVAL_SECONDS` while
the lane wants it; the reads lose nothing measurable. The answer is still written by the main loop.

What runs here must touch nothing bound to the main loop: it gets a connection of the lane's pool and plain
data (the issuing context, the held risk database), and returns plain data.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from aiohttp import web

from risk_zoning.io.database import create_pool
from warnings_svc.web.appkeys import POOL, SETTINGS

log = logging.getLogger(__name__)

T = TypeVar("T")
LANE_POOL_SIZE = 4  # writes are few; each holds its connection for one transaction
SWITCH_INTERVAL_SECONDS = 0.0005  # how long the reading thread keeps the interpreter while the lane waits
STOP_SECONDS = 10.0
READING_NICENESS_STEP = 10  # the reading thread's weight is then about a tenth of the lane's, or PostgreSQL's


class WriteLane:
    """An event loop in a thread with its own pool on `database_url`; `run` gives a function a connection there."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="write-lane", daemon=True)
        self._pool: asyncpg.Pool | None = None

    async def start(self) -> None:
        """Start the thread and open the lane's pool with one connection, so that the first write does not wait
        for it (`DatabaseError` with one line when the database cannot be reached)."""
        self._thread.start()
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        self._pool = await self._call(create_pool(self._url, min_size=1, max_size=LANE_POOL_SIZE))

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """`work(conn)` on the lane, with a connection of its pool; its result or its exception, here."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("the write lane is not started")

        async def on_lane() -> T:
            async with pool.acquire() as conn:
                return await work(conn)

        return await self._call(on_lane())

    async def expire_connections(self) -> None:
        """Drop the pool's connections (the database was lost): new ones are opened on the next write."""
        if self._pool is not None:
            await self._call(self._pool.expire_connections())

    async def stop(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(self._call(pool.close()), STOP_SECONDS)
            except TimeoutError:
                pool.terminate()
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join, STOP_SECONDS)
        self._loop.close()

    async def _call(self, coroutine: Awaitable[T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coroutine, self._loop))  # type: ignore[arg-type]


WRITE_LANE = web.AppKey("write_lane", WriteLane)


async def in_write_lane(request: web.Request, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """`work(conn)` on the app's write lane; on the main pool where there is none (an app without a
    database URL, as some tests make)."""
    lane = request.app.get(WRITE_LANE)
    if lane is not None:
        return await lane.run(work)
    async with request.app[POOL].acquire() as conn:
        return await work(conn)


def yield_to_writes(app: web.Application) -> int | None:
    """Once a serving process is up: lower the scheduling priority of the calling thread, the one that reads
    requests, by `READING_NICENESS_STEP` (Linux, this thread only); the lane's thread keeps its own. When
    both want a CPU, as under a flood of reads, the lane and PostgreSQL go first: in bench/public_read.py the
    approvals' p99 fell from 125-284 ms to 108-216 ms (five runs each) and the readers' rate by about 7 %
    (bench/LOG.md). The new niceness, or None where there is no lane, the `writes_first` setting is off, or the
    system does not allow it."""
    settings = app.get(SETTINGS)
    if app.get(WRITE_LANE) is None or sys.platform != "linux" or (settings and not settings.writes_first):
        return None
    thread = threading.get_native_id()
    try:
        niceness = min(os.getpriority(os.PRIO_PROCESS, thread) + READING_NICENESS_STEP, 19)
        os.setpriority(os.PRIO_PROCESS, thread, niceness)
    except OSError as e:  # a container that forbids it: the service still runs, at one priority
        log.warning("the reading thread's priority was not lowered: %s", e)
        return None
    return niceness
