"""What every outbox worker of the service shares (the area dispatcher, the partner dispatcher): a listener
that wakes its senders on a NOTIFY channel and polls besides, database calls that wait out an outage, and
supervised loops that run again after an unexpected failure.

A worker names its `notify_channel`, its `log_prefix` and its `poll_s`, keeps an event per sender in `_wake`,
and counts loop failures in `loop_failures`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

log = logging.getLogger(__name__)

# The database is away (restarting, failing over, a connection lost): wait it out and try again.
DATABASE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
)
RESTART_DELAY_S = 1.0  # before a loop that failed unexpectedly runs again

_T = TypeVar("_T")


class OutboxWorker:
    """Listener, outage-proof database calls and supervised loops for an outbox worker."""

    notify_channel: str
    log_prefix: str
    schema_table: str  # the worker's outbox table: it starts once a starting service has made it

    def __init__(self, pool: asyncpg.Pool, database_url: str, poll_s: float) -> None:
        self.pool = pool
        self.database_url = database_url
        self.poll_s = poll_s
        self._wake: dict[Any, asyncio.Event] = {}
        self.loop_failures: dict[str, int] = {}

    def _wake_all(self, *_: object) -> None:
        for event in self._wake.values():
            event.set()

    async def _listen(self, stop: asyncio.Event) -> None:
        delay = 0.5
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(self.database_url)
            except (*DATABASE_ERRORS, TimeoutError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            try:
                with contextlib.suppress(*DATABASE_ERRORS):  # the connection was lost: connect again
                    await conn.add_listener(self.notify_channel, self._wake_all)
                    delay = 0.5
                    self._wake_all()  # whatever was written while not listening
                    while not stop.is_set() and not conn.is_closed():
                        await asyncio.sleep(self.poll_s)
                        self._wake_all()
            finally:
                with contextlib.suppress(*DATABASE_ERRORS, TimeoutError):
                    await asyncio.wait_for(conn.close(), 2)

    async def _db(
        self, what: str, stop: asyncio.Event | None, call: Callable[[asyncpg.Connection], Awaitable[_T]]
    ) -> _T | None:
        """Run `call(conn)` until it succeeds while the database is away (restarting, failing over); None when
        stopped first. Any other database error (a value PostgreSQL refuses) is raised at once: retrying would
        refuse it again, and the loop would never move on."""
        delay, failed = 0.2, False
        while stop is None or not stop.is_set():
            try:
                async with self.pool.acquire() as conn:
                    result = await call(conn)
                if failed:
                    log.info("%s: %s works again", self.log_prefix, what)
                return result
            except DATABASE_ERRORS as e:
                if not failed:  # one line per outage, not one per try
                    log.warning(
                        "%s: %s failed (%s); retrying until it works", self.log_prefix, what, type(e).__name__
                    )
                failed = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        return None

    async def _supervised(self, name: str, loop: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
        """Run a loop until `stop`; one that fails unexpectedly is logged in one line and run again, so that a
        peer's bad answer never stops a sender for good."""
        while not stop.is_set():
            try:
                await loop()
                if stop.is_set():
                    return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.loop_failures[name] = self.loop_failures.get(name, 0) + 1
                log.error("%s: %s failed (%s: %s); running it again", self.log_prefix, name, type(e).__name__,
                          " ".join(str(e).split())[:200])  # fmt: skip
            await asyncio.sleep(RESTART_DELAY_S)

    async def _schema_ready(self, stop: asyncio.Event) -> bool:
        """Wait until the outbox table exists (a service starting up applies migrations meanwhile), so that no
        loop fails on a missing table; False when stopped first."""
        waited = False
        while not stop.is_set():
            found = await self._db(
                "the schema",
                stop,
                lambda conn: conn.fetchval("SELECT to_regclass($1) IS NOT NULL", self.schema_table),
            )
            if found:
                return True
            if not waited:
                log.debug("%s: waiting for the database schema (warnings-svc db upgrade)", self.log_prefix)
                waited = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_s)
        return False

    async def _run_loops(self, loops: dict[str, Callable[[], Awaitable[None]]], stop: asyncio.Event) -> None:
        """Once the schema is there, run every loop supervised until `stop`, then cancel them."""
        if not await self._schema_ready(stop):
            return
        tasks = [
            asyncio.create_task(self._supervised(name, loop, stop), name=f"{self.log_prefix} {name}")
            for name, loop in loops.items()
        ]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
