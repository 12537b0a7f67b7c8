"""The database watch: notices a lost PostgreSQL, restarts the embedded one, and says when it is back.

With the embedded server (`risk_zoning.io.database.EmbeddedPostgres`, no ``database_url``), the serving
process owns PostgreSQL, so it also looks after it: every `CHECK_SECONDS` it checks that the postmaster
named in ``postmaster.pid`` still runs. When it is gone (killed, crashed) the watch

1. logs one line (``lost``), sets ``warnings_database_up`` to 0 and has the pool discard every connection
   to the dead server (asyncpg opens new ones lazily, on the next acquire);
2. starts the server again on the same folder and socket, retrying with backoff (`RESTART_DELAYS`, about
   30 s in all: right after a kill the old backends may hold the shared memory for a moment);
3. once it runs, logs one line (``back``), counts ``warnings_database_recoveries_total{how="restarted"}``
   and wakes whoever waits for the database (the live events' listener reconnects at once). Nothing is lost:
   PostgreSQL recovers every committed transaction from its write-ahead log.

When no attempt succeeds, or one fails for a reason no later attempt can change (a data folder of another
PostgreSQL major version, not a data folder, the wrong owner or permissions: `DataFolderUnusable`), the
watch gives up: `gave_up` is set with one line saying why, ``/healthz`` answers 503 with that line, and
`warnings-svc serve`/`demo` stop (the embedded server stopped on the way out) and exit with status 1 and
that one line on stderr, so that a supervisor (systemd, Kubernetes) starts the service again.

With an external database (``database_url``) the service does not own the server: the watch only pings it
through the pool every `PING_SECONDS`, logs one line when it is lost and one when it is back, counts
``how="reconnected"`` and keeps ``warnings_database_up`` current. The pool reconnects by itself when the
database returns; the service never gives up on it (it answers 503 meanwhile, and ``/readyz`` says why).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Protocol

import asyncpg

from risk_zoning.errors import DatabaseError, DataFolderUnusable
from warnings_svc.web.metrics import ServiceMetrics

log = logging.getLogger(__name__)

CHECK_SECONDS = 1.0  # how often the embedded postmaster is looked for
PING_SECONDS = 2.0  # how often an external database is pinged
PING_TIMEOUT_SECONDS = 5.0
# Waits after each failed restart attempt: 8 attempts over about 30 s, then the watch gives up.
RESTART_DELAYS: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)


class EmbeddedServer(Protocol):
    """What the watch needs of the embedded server (`EmbeddedPostgres`)."""

    @property
    def pgdata(self) -> Path: ...

    def postmaster_alive(self) -> bool: ...

    def restart(self) -> str: ...


class _Expiring(Protocol):
    async def expire_connections(self) -> None: ...


class ExpiringPool(Protocol):
    """What the watch needs of the pool: to discard its connections, and one to ping with."""

    async def expire_connections(self) -> None: ...

    def acquire(self) -> asyncpg.pool.PoolAcquireContext: ...


class _NotPoolFloorRetries(logging.Filter):
    """Drops asyncpg's warning (with a traceback, on every retry) that it cannot refill the pool while the
    database is away: the watch logs the loss and the return once each."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to restore the pool connection floor")


def _quiet_pool_floor_retries() -> None:
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, _NotPoolFloorRetries) for f in pool_log.filters):
        pool_log.addFilter(_NotPoolFloorRetries())


class DatabaseState(StrEnum):
    UP = "up"
    LOST = "lost"  # external: unreachable, waited for
    RESTARTING = "restarting"  # embedded: being started again
    GAVE_UP = "gave up"  # embedded: could not be started again; the process is ending


class DatabaseWatch:
    """Watches the database behind `pool`: the embedded `server` when given, else by pinging through the pool."""

    def __init__(
        self,
        pool: ExpiringPool,
        metrics: ServiceMetrics,
        *,
        server: EmbeddedServer | None = None,
        restart_delays: Sequence[float] = RESTART_DELAYS,
        check_seconds: float | None = None,
    ) -> None:
        self._pool = pool
        self._metrics = metrics
        self._server = server
        self._restart_delays = tuple(restart_delays)
        self._check_seconds = check_seconds or (CHECK_SECONDS if server is not None else PING_SECONDS)
        self.state = DatabaseState.UP
        self.detail = "the embedded server runs" if server is not None else "answers"
        self.gave_up = asyncio.Event()
        self.reason = ""  # the one line saying why the watch gave up
        self._on_back: list[Callable[[], None]] = []
        self._also_expired: list[ExpiringPool | _Expiring] = []
        self._lost_at = time.monotonic()
        # set when the watch ends (the service stopping): a restart waiting between attempts gives up at once,
        # rather than keep the stopping process (its executor's threads) for the rest of its delays
        self._stopping = threading.Event()
        metrics.database_up.set(1)
        _quiet_pool_floor_retries()

    @property
    def embedded(self) -> bool:
        return self._server is not None

    def also_expire(self, pool: _Expiring) -> None:
        """Discard `pool`'s connections too when the database is lost and when it is back (the write lane's)."""
        self._also_expired.append(pool)

    async def _expire_connections(self) -> None:
        await self._pool.expire_connections()
        for other in self._also_expired:
            await other.expire_connections()

    def on_back(self, callback: Callable[[], None]) -> None:
        """Call `callback` each time the database is back after a loss (to reconnect at once)."""
        self._on_back.append(callback)

    async def run(self) -> None:
        """Watch until cancelled, or until the embedded server cannot be started again (then `gave_up`)."""
        try:
            while True:
                await asyncio.sleep(self._check_seconds)
                if self._server is None:
                    await self._ping()
                    continue
                if await asyncio.to_thread(self._server.postmaster_alive):
                    continue
                if not await self._restart(self._server):
                    await asyncio.Event().wait()  # gave up: nothing more to watch, the process is ending
        finally:
            self._stopping.set()

    async def _restart(self, server: EmbeddedServer) -> bool:
        log.warning("database lost: the embedded PostgreSQL in %s stopped; restarting it", server.pgdata)
        await self._lost(DatabaseState.RESTARTING, "the embedded server stopped; restarting it")

        def attempt_failed(attempt: int, reason: str) -> None:  # called from the restarting thread
            self.detail = f"restarting it (attempt {attempt} failed: {reason})"

        failure = await asyncio.to_thread(
            restart_embedded, server, self._restart_delays, attempt_failed, self._stopping
        )
        if failure is None:
            await self._back("restarted", "the embedded PostgreSQL was restarted")
            return True
        self.state = DatabaseState.GAVE_UP
        self.reason = self.detail = failure
        self.gave_up.set()
        return False

    async def _ping(self) -> None:
        try:
            async with asyncio.timeout(PING_TIMEOUT_SECONDS), self._pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            if self.state is DatabaseState.UP:
                reason = " ".join(str(e).split()) or type(e).__name__
                log.warning("database lost: %s; waiting for it to return", reason)
                await self._lost(DatabaseState.LOST, f"unreachable: {reason}")
            return
        if self.state is not DatabaseState.UP:
            await self._back("reconnected", "it answers again")

    async def _lost(self, state: DatabaseState, detail: str) -> None:
        self.state = state
        self.detail = detail
        self._lost_at = time.monotonic()
        self._metrics.database_up.set(0)
        await self._expire_connections()  # connections to the dead server are never handed out again

    async def _back(self, how: str, what: str) -> None:
        await self._expire_connections()
        self.state = DatabaseState.UP
        self.detail = f"{what} after {time.monotonic() - self._lost_at:.1f} s"
        self._metrics.database_up.set(1)
        self._metrics.database_recoveries.labels(how=how).inc()
        log.info("database back: %s", self.detail)
        for callback in self._on_back:
            callback()


def restart_embedded(
    server: EmbeddedServer,
    delays: Sequence[float] = RESTART_DELAYS,
    attempt_failed: Callable[[int, str], None] | None = None,
    stopping: threading.Event | None = None,
) -> str | None:
    """Start the stopped embedded server again, trying once per delay in `delays` (waiting that long after
    each failure: right after a kill the old backends may hold the shared memory for a moment). Blocks; None
    once it runs, else the one line saying why it could not be restarted. Once `stopping` is set, no attempt
    is made or waited for; after a failure no later attempt can mend (`DataFolderUnusable`), none is made.
    Used by the database watch and, with several web workers, by the parent process that owns the server
    (`web.workers`)."""
    started = time.monotonic()
    last, attempt = "", 0
    stopping = stopping or threading.Event()
    for attempt, delay in enumerate(delays, start=1):
        if stopping.is_set():
            return "stopped before the embedded PostgreSQL could be restarted"
        try:
            server.restart()
        except DatabaseError as e:
            last = str(e)
            log.debug("restart attempt failed", extra={"attempt": attempt, "reason": last})
            if attempt_failed is not None:
                attempt_failed(attempt, last)
            if isinstance(e, DataFolderUnusable):  # no later attempt can start it: say so now
                break
            stopping.wait(delay)
            continue
        return None
    attempts = f"{attempt} attempt" + ("s" if attempt > 1 else "")
    return (
        f"the embedded PostgreSQL stopped and could not be restarted "
        f"({attempts} over {time.monotonic() - started:.0f} s): {last}"
    )
