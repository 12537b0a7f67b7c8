"""What /healthz and /readyz decide from what the process knows: the database watch's state, the background
loops, the SMSC binds. No database: the embedded server is a stand-in that fails or succeeds to order."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from risk_zoning.errors import DatabaseError, DataFolderUnusable
from warnings_svc.web.database_watch import DatabaseState, DatabaseWatch, restart_embedded
from warnings_svc.web.health import BackgroundLoops, check_sms_binds, liveness_failure
from warnings_svc.web.metrics import ServiceMetrics


class StoppedServer:
    """An embedded server whose postmaster is gone; `restart` fails `failures` times, then works."""

    def __init__(self, failures: int) -> None:
        self.pgdata = Path("/nowhere/postgres")
        self.failures = failures
        self.attempts = 0
        self.running = False

    def postmaster_alive(self) -> bool:
        return self.running

    def restart(self) -> str:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise DatabaseError("embedded PostgreSQL did not start: FATAL: shared memory still in use")
        self.running = True
        return "postgresql://postgres@/warnings"


class CountingPool:
    def __init__(self) -> None:
        self.expired = 0

    async def expire_connections(self) -> None:
        self.expired += 1

    def acquire(self) -> object:
        raise AssertionError("the embedded watch never pings through the pool")


async def watch_until(watch: DatabaseWatch, done: asyncio.Event | None = None) -> None:
    task = asyncio.create_task(watch.run())
    try:
        async with asyncio.timeout(5):
            while watch.state is not DatabaseState.GAVE_UP and not (done and done.is_set()):
                await asyncio.sleep(0.01)
    finally:
        task.cancel()


def sample(metrics: ServiceMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


async def test_a_stopped_embedded_server_is_restarted_and_liveness_holds_throughout() -> None:
    metrics, pool, server = ServiceMetrics(), CountingPool(), StoppedServer(failures=2)
    watch = DatabaseWatch(pool, metrics, server=server, restart_delays=(0, 0, 0), check_seconds=0.01)
    back = asyncio.Event()
    watch.on_back(back.set)
    loops = BackgroundLoops()
    await watch_until(watch, back)
    assert server.attempts == 3
    assert watch.state is DatabaseState.UP and "restarted after" in watch.detail
    assert pool.expired == 2  # when lost, and again once back
    assert sample(metrics, "warnings_database_recoveries_total", how="restarted") == 1.0
    assert sample(metrics, "warnings_database_up") == 1.0
    assert liveness_failure(loops, watch) is None


async def test_while_the_embedded_server_is_being_restarted_the_process_is_alive_but_not_ready() -> None:
    metrics, server = ServiceMetrics(), StoppedServer(failures=100)
    watch = DatabaseWatch(CountingPool(), metrics, server=server, restart_delays=(60,), check_seconds=0.01)
    task = asyncio.create_task(watch.run())
    try:
        async with asyncio.timeout(5):
            while server.attempts == 0:
                await asyncio.sleep(0.01)
        assert watch.state is DatabaseState.RESTARTING
        assert "attempt 1 failed" in watch.detail and "shared memory" in watch.detail
        assert sample(metrics, "warnings_database_up") == 0.0
        assert liveness_failure(BackgroundLoops(), watch) is None
    finally:
        task.cancel()


def test_a_restart_waiting_between_attempts_ends_at_once_when_told_to_stop() -> None:
    # the database watch tells it when it ends (the service stopping). Before, the thread slept out its delays
    # and kept the stopping process: the test above, which cancels its watch mid-restart, held the test
    # session's event loop for 42 s at its close
    server, stopping, outcome = StoppedServer(failures=100), threading.Event(), []
    thread = threading.Thread(
        target=lambda: outcome.append(restart_embedded(server, (60, 60), stopping=stopping))
    )
    thread.start()
    deadline = time.monotonic() + 5
    while server.attempts == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    stopping.set()
    thread.join(5)
    assert not thread.is_alive() and server.attempts == 1
    assert outcome == ["stopped before the embedded PostgreSQL could be restarted"]


async def test_when_every_restart_fails_the_watch_gives_up_and_liveness_fails_with_its_one_line() -> None:
    server = StoppedServer(failures=100)
    watch = DatabaseWatch(
        CountingPool(), ServiceMetrics(), server=server, restart_delays=(0, 0, 0), check_seconds=0.01
    )
    await watch_until(watch)
    assert watch.gave_up.is_set() and server.attempts == 3
    reason = liveness_failure(BackgroundLoops(), watch)
    assert reason is not None and "\n" not in reason
    assert reason.startswith("the embedded PostgreSQL stopped and could not be restarted (3 attempts")
    assert reason.endswith("FATAL: shared memory still in use")


async def test_a_background_loop_that_died_fails_liveness_naming_it_unless_the_app_is_stopping() -> None:
    async def broken() -> None:
        raise ValueError("a bug\nover two lines")

    async def forever() -> None:
        await asyncio.Event().wait()

    loops = BackgroundLoops()
    running = asyncio.create_task(forever())
    loops.watch("expiry-clock", running)
    assert liveness_failure(loops, None) is None
    died = asyncio.create_task(broken())
    loops.watch("watch-inbox", died)
    await asyncio.wait({died})
    assert (
        liveness_failure(loops, None) == "background loop watch-inbox died: ValueError: a bug over two lines"
    )
    loops.stopping()
    running.cancel()
    assert liveness_failure(loops, None) is None


class Bind:
    def __init__(self, bound: bool) -> None:
        self.is_bound = bound


def test_the_smsc_check_fails_while_an_endpoint_has_no_bound_bind() -> None:
    ok = check_sms_binds({"a": [Bind(True), Bind(False)], "b": [Bind(True)]})
    assert ok.ok and ok.detail == "a: 1 of 2 binds bound; b: 1 of 1 binds bound"
    down = check_sms_binds({"a": [Bind(True)], "b": [Bind(False), Bind(False)]})
    assert not down.ok and "b: 0 of 2 binds bound" in down.detail
    assert not down.required  # reported as degraded: the process still answers the public


class UnusableFolderServer(StoppedServer):
    """A server whose data folder PostgreSQL will never start on (another major version's)."""

    def restart(self) -> str:
        self.attempts += 1
        raise DataFolderUnusable(
            "embedded PostgreSQL did not start: FATAL: database files are incompatible with server"
        )


def test_a_folder_no_restart_can_start_on_is_given_up_at_the_first_attempt() -> None:
    # before, the watch tried eight times over about 30 s before saying what the first attempt already said
    server = UnusableFolderServer(failures=100)
    started = time.monotonic()
    reason = restart_embedded(server, (60, 60, 60))
    assert server.attempts == 1 and time.monotonic() - started < 5
    assert reason is not None
    assert reason.startswith(
        "the embedded PostgreSQL stopped and could not be restarted (1 attempt over 0 s)"
    )
    assert reason.endswith("database files are incompatible with server")
