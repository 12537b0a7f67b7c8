"""Answering HTTP: the application listening on host:port, in this process or in several worker processes
that share the port (`web_workers` above 1).

With several workers the parent process (the command line's `serve`) starts any embedded PostgreSQL and
prepares the database once, then `run_workers` starts the workers and watches them. Decisions:

- Each worker listens on host:port itself with SO_REUSEPORT and the kernel spreads new connections over
  them. Before any starts, the parent checks with a plain bind that nothing listens there yet: with
  SO_REUSEPORT alone a second service started on the same port would share it silently instead of failing.
- Worker 0, the primary, also runs the loops that must run once per service (inbox watcher, embedded
  dispatcher, expiry clock; `web.background`). Every worker runs what it needs to answer: the risk map
  renderer, the risk database watcher and the live events' hub for its own console streams.
- An upload to `/api/v1/runs` is scored by the worker that received it: its answer carries the stored run
  and its proposals, so handing the files to the primary through the inbox would turn that answer into
  "look again later". A worker's scoring processes start at its first upload and end after a quiet spell
  (`web.background.UPLOAD_SCORER_IDLE_SECONDS`), so an idle worker holds no scoring memory.
- Sessions, CSRF tokens, idempotency keys and failed logins are rows in the database: any worker answers any
  request. `/metrics` counts the worker that answers it.
- Each worker has its own connection pool, sized by `pool_size` so that all of them fit PostgreSQL's
  `max_connections`.
- Workers are spawned (never forked from a process holding an event loop) and die with the parent
  (`die_with_parent`, as the scoring workers do). SIGINT or SIGTERM to the parent: SIGTERM to every worker,
  which finishes its requests and closes its pool, SIGKILL after `STOP_SECONDS`; then the caller stops
  the embedded PostgreSQL. A worker that ends unexpectedly is started again, at most `MAX_RESTARTS` times in
  `RESTART_WINDOW_SECONDS`; past that the parent stops the others and gives up with one line, so that its
  own supervisor (systemd) restarts the whole service.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

import asyncpg
from aiohttp import web

from risk_zoning.errors import RiskZoningError
from risk_zoning.io.database import create_pool
from warnings_svc.dissemination.dispatcher import tune_collector
from warnings_svc.documents.warm import warm_up
from warnings_svc.forecast.runs import die_with_parent
from warnings_svc.settings import Settings
from warnings_svc.web.app import create_app
from warnings_svc.web.appkeys import RISK_DATABASE
from warnings_svc.web.database_watch import CHECK_SECONDS, EmbeddedServer, restart_embedded
from warnings_svc.web.write_lane import yield_to_writes

log = logging.getLogger(__name__)
T = TypeVar("T")

ACCESS_LOG_FORMAT = '%a "%r" %s %b %Tfs request_id=%{X-Request-Id}o'
POOL_CLOSE_SECONDS = 10.0
MAX_POOL_SIZE = 10  # connections per web process (a single process has this many too)
MIN_POOL_SIZE = 2
# Connections left to everything but the workers' pools: each worker's LISTEN connection is counted apart;
# this covers the scoring processes, `dispatch` processes, the command line and an administrator's psql.
RESERVED_CONNECTIONS = 20
START_SECONDS = 120.0  # from spawning a worker to its listening (imports, pool, app)
STOP_SECONDS = 45.0  # for a worker to finish its requests after SIGTERM
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0


class ServeError(Exception):
    """The service cannot answer as configured (the port is taken, too many workers for the database);
    `str()` is the one line to show."""


def authority(host: str, port: int) -> str:
    """`host:port` as a URL writes it (`[::1]:8080`)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.asynccontextmanager
async def listening(
    settings: Settings,
    url: str,
    *,
    singletons: bool = True,
    reuse_port: bool = False,
    pool_size: int = MAX_POOL_SIZE,
    embedded: EmbeddedServer | None = None,
) -> AsyncIterator[tuple[asyncpg.Pool, web.Application]]:
    """The service's application answering on the settings' host:port, on a pool of its own, until exit;
    `ServeError` when it cannot listen there. `singletons` and `reuse_port` as a worker of several needs;
    `embedded`: the embedded PostgreSQL this process owns, for its database watch to restart."""
    pool = await create_pool(url, min_size=1, max_size=pool_size)
    try:
        app = create_app(settings, pool, database_url=url, embedded=embedded, singletons=singletons)
        runner = web.AppRunner(
            app,
            handle_signals=False,
            **access_logging(settings),
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, settings.host, settings.port, reuse_port=reuse_port)
            try:
                await site.start()
            except OSError as e:
                raise ServeError(_cannot_listen(settings.host, settings.port, e)) from e
            yield pool, app
        finally:
            await runner.cleanup()
    finally:
        try:
            await asyncio.wait_for(pool.close(), POOL_CLOSE_SECONDS)
        except TimeoutError:
            pool.terminate()


async def settle_heap(app: web.Application) -> None:
    """Once the service is up: load the region's risk database, then hide everything alive from the garbage
    collector and collect young objects less often (`tune_collector`); before that, render once what an
    approval renders (`documents.warm`). A serving process holds a large heap
    that lives as long as it does (modules, the risk database's units and outlines); without this, each full
    collection walks all of it, a pause of every request in flight (measured in bench/public_read.py)."""
    with contextlib.suppress(RiskZoningError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        await app[RISK_DATABASE].get()  # when the database is away, the freeze goes without it
    try:
        warm_up()  # the first approval must not compile templates (`documents.warm`)
    except Exception as e:  # a process that cannot warm up still serves: it renders cold, once
        log.warning("rendering was not warmed up: %s: %s", type(e).__name__, e)
    tune_collector()


def access_logging(settings: Settings) -> dict[str, Any]:
    """The `web.AppRunner` options for the access log: one line per request, or none (`access_log = false`)."""
    return {"access_log_format": ACCESS_LOG_FORMAT} if settings.access_log else {"access_log": None}


def run_event_loop(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on uvloop where it is installed (Linux and macOS): under load it answers about 14 % more
    requests a second and shortens every wait for the loop (bench/README.md)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _cannot_listen(host: str, port: int, error: OSError) -> str:
    reason = os.strerror(error.errno) if error.errno and error.errno > 0 else (error.strerror or str(error))
    return f"cannot listen on {authority(host, port)}: {reason.lower()}"


def check_port_free(host: str, port: int) -> None:
    """`ServeError` when something listens on host:port already (workers bind with SO_REUSEPORT, which
    would otherwise share the port with another service started there)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ServeError(f"cannot listen on {authority(host, port)}: {e.strerror}") from e
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as e:
                raise ServeError(_cannot_listen(host, port, e)) from e


def pool_size(workers: int, max_connections: int) -> int:
    """Connections each of `workers` pools may hold so that they, each worker's LISTEN connection and
    `RESERVED_CONNECTIONS` fit in PostgreSQL's `max_connections`; `ServeError` when fewer than
    `MIN_POOL_SIZE` would."""
    share = min((max_connections - RESERVED_CONNECTIONS) // workers - 1, MAX_POOL_SIZE)
    if share < MIN_POOL_SIZE:
        fitting = (max_connections - RESERVED_CONNECTIONS) // (MIN_POOL_SIZE + 1)
        raise ServeError(
            f"web_workers {workers}: PostgreSQL's max_connections ({max_connections}) fits at most "
            f"{max(fitting, 0)} workers"
        )
    return share


@dataclass(frozen=True)
class WorkerPlan:
    """What every worker needs; pickled to the spawned processes."""

    settings: Settings
    database_url: str
    pool_size: int
    configure_logging: Callable[[str], None]  # the command line's; a worker's logs look like the parent's


@dataclass
class _Running:
    index: int
    process: BaseProcess
    ready: Connection  # the worker sends None once it listens, or the one line why it cannot


def run_workers(
    plan: WorkerPlan, count: int, on_ready: Callable[[], None], *, embedded: EmbeddedServer | None = None
) -> str | None:
    """Start `count` workers on the plan, call `on_ready` once all listen, and watch them until SIGINT or
    SIGTERM (raised here as `KeyboardInterrupt`, see the command line's `serve`): then stop them all and
    return None. Returns the one line why it gave up when workers kept ending (see the module's docstring),
    or when `embedded`, the embedded PostgreSQL this process owns, stopped and could not be restarted
    (`web.database_watch.restart_embedded`; meanwhile the workers answer 503 and reconnect when it is back);
    raises `ServeError` when one cannot start."""
    context = multiprocessing.get_context("spawn")
    workers: dict[int, _Running] = {}

    def start(index: int) -> _Running:
        ready, report = context.Pipe(duplex=False)
        process = context.Process(
            target=_worker_main, args=(plan, index, os.getpid(), report), name=f"web-worker-{index}"
        )
        process.start()
        report.close()
        return _Running(index, process, ready)

    ended_at: deque[float] = deque()
    try:
        for index in range(count):
            workers[index] = start(index)
        _await_listening(workers.values())
        log.info(
            "web workers listening",
            extra={"workers": count, "pids": [w.process.pid for w in workers.values()]},
        )
        on_ready()
        while True:
            multiprocessing.connection.wait([w.process.sentinel for w in workers.values()], CHECK_SECONDS)
            if embedded is not None and not embedded.postmaster_alive():
                log.warning(
                    "database lost: the embedded PostgreSQL in %s stopped; restarting it", embedded.pgdata
                )
                failure = restart_embedded(embedded)
                if failure is not None:
                    return failure
                log.info("database back: the embedded PostgreSQL was restarted")
            for worker in [w for w in workers.values() if not w.process.is_alive()]:
                now = time.monotonic()
                ended_at.append(now)
                while ended_at[0] < now - RESTART_WINDOW_SECONDS:
                    ended_at.popleft()
                how = _how_it_ended(worker.process.exitcode)
                if len(ended_at) > MAX_RESTARTS:
                    return (
                        f"web workers ended {len(ended_at)} times within {RESTART_WINDOW_SECONDS:.0f} s, "
                        f"the last worker {worker.index} (pid {worker.process.pid}) {how}: giving up"
                    )
                log.warning(
                    "web worker ended unexpectedly; starting it again",
                    extra={"worker": worker.index, "pid": worker.process.pid, "ended": how},
                )
                worker.ready.close()
                workers[worker.index] = start(worker.index)
    except KeyboardInterrupt:
        log.info("stopping web workers")
        return None
    finally:
        _stop(workers.values())


def _await_listening(workers: Iterable[_Running]) -> None:
    waiting = {w.ready: w for w in workers}
    deadline = time.monotonic() + START_SECONDS
    while waiting:
        left = deadline - time.monotonic()
        if left <= 0:
            first = next(iter(waiting.values()))
            raise ServeError(f"web worker {first.index} did not listen within {START_SECONDS:.0f} s")
        multiprocessing.connection.wait([*waiting, *(w.process.sentinel for w in waiting.values())], left)
        for ready, worker in list(waiting.items()):
            with contextlib.suppress(EOFError):  # ended without a word: see below
                if ready.poll():
                    problem = ready.recv()
                    if problem is not None:
                        raise ServeError(problem)
                    del waiting[ready]
                    continue
            if not worker.process.is_alive():
                raise ServeError(
                    f"web worker {worker.index} {_how_it_ended(worker.process.exitcode)} while starting "
                    "(see the log above)"
                )


def _stop(workers: Iterable[_Running]) -> None:
    # A second Ctrl-C must not leave workers running: the caller restores the signals once PostgreSQL stopped.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    workers = list(workers)
    for worker in workers:
        if worker.process.is_alive():
            worker.process.terminate()
    deadline = time.monotonic() + STOP_SECONDS
    for worker in workers:
        worker.process.join(max(deadline - time.monotonic(), 0.0))
        if worker.process.is_alive():
            log.warning("web worker did not stop in time: killed", extra={"worker": worker.index})
            worker.process.kill()
            worker.process.join()
        worker.ready.close()


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-exitcode).name}"
    return f"ended with exit status {exitcode}"


# --- worker process side -------------------------------------------------------------------------------


def _worker_main(plan: WorkerPlan, index: int, parent_pid: int, report: Connection) -> None:
    """A worker process: serve until SIGTERM (the parent relays Ctrl-C, so SIGINT is ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent_pid)
    plan.configure_logging(plan.settings.log_level)
    try:
        run_event_loop(_worker(plan, index, report))
    except (ServeError, RiskZoningError) as e:  # cannot listen, no database: one line for the parent
        with contextlib.suppress(OSError):
            report.send(" ".join(str(e).split()))
        sys.exit(2)


async def _worker(plan: WorkerPlan, index: int, report: Connection) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with listening(
        plan.settings, plan.database_url, singletons=index == 0, reuse_port=True, pool_size=plan.pool_size
    ) as (_, app):
        with contextlib.suppress(OSError):  # a parent that stopped meanwhile
            report.send(None)
        log.info("web worker listening", extra={"worker": index, "primary": index == 0})
        await settle_heap(app)
        yield_to_writes(app)
        await stop.wait()
