"""Liveness, readiness and the metrics exposition.

``/readyz`` (can this process serve now?) reports each dependency as its own check: ``database`` (answers),
``migrations`` (all applied, none edited), ``risk_database`` (the region is built); ``embedded_database``
(the database watch's state, with the embedded PostgreSQL: up, or being restarted); ``inbox`` (every entry
can be moved, when the inbox is watched); ``smsc`` (every SMS endpoint of the embedded dispatcher has a bound
bind). 503 while database, migrations, risk_database or embedded_database fails, naming them in ``failed``: a
load balancer sends nothing meanwhile. The inbox and SMSC checks do not stop this process from answering the
public and the forecasters, so while they fail it stays 200 with ``"status": "degraded"`` and names them in
``degraded`` (and in the metrics ``warnings_inbox_faults``, ``warnings_circuit_state``).

``/healthz`` (should this process be restarted?) answers 200 ``{"status": "ok"}`` while the process can
still do its job, including while a lost database is being waited for or restarted: that heals by itself.
It answers 503 ``{"status": "failing", "reason": "..."}`` when it cannot: the database watch gave up
restarting the embedded PostgreSQL, or a background loop that must run (the inbox watcher, the dispatcher,
the expiry clock, the live events' listener, the risk database and database watches) ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel

from risk_zoning.io.database import MigrationSource, read_migrations
from risk_zoning.store import current_version
from warnings_svc.forecast.runs import Inbox
from warnings_svc.web.appkeys import METRICS
from warnings_svc.web.database_watch import DatabaseState, DatabaseWatch
from warnings_svc.web.errors import one_line
from warnings_svc.web.operations import Reply, media_reply, operation

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str
    # False: a fault that does not stop this process from answering (a stuck inbox entry, an SMSC without a
    # bind): reported under `degraded`, while /readyz stays 200 so that a load balancer keeps sending the
    # public and the forecasters here.
    required: bool = True


class ReadinessProbe:
    """Can this process serve: the database answers, every migration is applied, the region is built; and,
    once `watch_inbox` is called, every inbox entry can be moved where it belongs."""

    def __init__(self, pool: asyncpg.Pool, region: str, sources: Sequence[MigrationSource]) -> None:
        self._pool = pool
        self._region = region
        self._expected = {
            (m.component, m.version): (f"{m.component}/{m.version:04d}_{m.name}", m.checksum)
            for source in sources
            for m in read_migrations(source)
        }
        self._inbox: Inbox | None = None
        self._database_watch: DatabaseWatch | None = None
        self._sms_binds: dict[str, Sequence[object]] = {}
        self._area_targets: Callable[[], dict[tuple[str, str], tuple[bool, str]]] | None = None
        self._partner_channels: Callable[[], dict[str, tuple[bool, str]]] | None = None

    def watch_inbox(self, inbox: Inbox) -> None:
        """Add the `inbox` check: failed while an entry cannot be moved to archive/ or quarantine/."""
        self._inbox = inbox

    def watch_database(self, watch: DatabaseWatch) -> None:
        """Add the `embedded_database` check (with an embedded server only): failed while it is restarted."""
        if watch.embedded:
            self._database_watch = watch

    def watch_sms_binds(self, binds: dict[str, Sequence[object]]) -> None:
        """Add the `smsc` check: failed while an endpoint (name -> its binds, each with `is_bound`) has none
        bound, so that issued warnings would wait in the outbox."""
        self._sms_binds = binds

    def watch_area_targets(self, health: Callable[[], dict[tuple[str, str], tuple[bool, str]]]) -> None:
        """Add the `area_targets` check: degraded while a target of an area channel (an MQTT broker, an
        operator, a CBC, a platform) cannot be reached, so that what goes to it waits in the outbox."""
        self._area_targets = health

    def watch_partner_channels(self, health: Callable[[], dict[str, tuple[bool, str]]]) -> None:
        """Add the `partner_channels` check: degraded while a partner channel (the mail server, the MQTT
        broker, the SMSC bind) cannot be reached; a single webhook endpoint's failures show in its log."""
        self._partner_channels = health

    async def check(self) -> dict[str, Check]:
        checks: dict[str, Check] = {}
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS), self._pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
                checks["database"] = Check(True, "answers")
                checks["migrations"] = await self._check_migrations(conn)
                checks["risk_database"] = await self._check_risk_database(conn, checks["migrations"].ok)
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            asyncpg.InternalClientError,  # the server died in the middle of the check
        ) as e:
            checks.setdefault("database", Check(False, one_line(e) or type(e).__name__))
        for name in ("database", "migrations", "risk_database"):
            checks.setdefault(name, Check(False, "not checked: an earlier check failed"))
        if self._database_watch is not None:
            watch = self._database_watch
            checks["embedded_database"] = Check(watch.state is DatabaseState.UP, watch.detail)
        if self._inbox is not None:
            checks["inbox"] = self._check_inbox(self._inbox)
        if self._sms_binds:
            checks["smsc"] = check_sms_binds(self._sms_binds)
        if self._area_targets is not None:
            targets = self._area_targets()
            detail = "; ".join(
                f"{channel} {name}: {'up' if up else why}" for (channel, name), (up, why) in targets.items()
            )
            checks["area_targets"] = Check(all(up for up, _ in targets.values()), detail, required=False)
        if self._partner_channels is not None:
            channels = self._partner_channels()
            detail = "; ".join(f"{name}: {'up' if up else why}" for name, (up, why) in channels.items())
            checks["partner_channels"] = Check(all(up for up, _ in channels.values()), detail, required=False)
        return checks

    @staticmethod
    def _check_inbox(inbox: Inbox) -> Check:
        stuck = inbox.stuck()
        if stuck:
            return Check(False, "; ".join(s.detail for s in stuck), required=False)
        return Check(True, "every entry can be moved")

    async def _check_migrations(self, conn: asyncpg.Connection) -> Check:
        applied: dict[tuple[str, int], str] = {}
        if await conn.fetchval("SELECT to_regclass('public.schema_migrations') IS NOT NULL"):
            rows = await conn.fetch("SELECT component, version, checksum FROM public.schema_migrations")
            applied = {(r["component"], r["version"]): r["checksum"] for r in rows}
        pending = [label for key, (label, _) in sorted(self._expected.items()) if key not in applied]
        edited = [
            label
            for key, (label, checksum) in sorted(self._expected.items())
            if key in applied and applied[key] != checksum
        ]
        if pending:
            return Check(False, f"pending: {', '.join(pending)}; run `warnings-svc db upgrade`")
        if edited:
            return Check(False, f"edited after they were applied: {', '.join(edited)}")
        return Check(True, f"{len(self._expected)} applied")

    async def _check_risk_database(self, conn: asyncpg.Connection, schema_ready: bool) -> Check:
        if not schema_ready:
            return Check(False, "not checked: the schema is not up to date")
        version = await current_version(conn, self._region)
        if version is None:
            return Check(False, f"no risk database for region {self._region!r}; run `risk-zoning build`")
        return Check(True, f"version {version}")


def check_sms_binds(binds: dict[str, Sequence[object]]) -> Check:
    """Every endpoint has a bound bind (`smsc` check); the detail counts them per endpoint."""
    counts = {
        name: (sum(bool(getattr(b, "is_bound", False)) for b in bs), len(bs)) for name, bs in binds.items()
    }
    detail = "; ".join(f"{name}: {up} of {total} binds bound" for name, (up, total) in counts.items())
    return Check(all(up > 0 for up, _ in counts.values()), detail, required=False)


READINESS = web.AppKey("readiness", ReadinessProbe)


class BackgroundLoops:
    """The background loops the process must keep running to do its job; one that ends while the app runs
    (an exception, or a return) makes `/healthz` fail."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    def watch(self, name: str, task: asyncio.Task[None]) -> None:
        """Watch `task` as loop `name`; its death is logged once, with the traceback (it is a bug)."""
        self._tasks[name] = task
        task.add_done_callback(lambda done: self._ended(name, done))

    def stopping(self) -> None:
        """The application is shutting down: loops ending from now on are expected."""
        self._stopping = True

    def _ended(self, name: str, task: asyncio.Task[None]) -> None:
        if self._stopping or task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("background loop %s died", name, exc_info=error)
        else:
            log.error("background loop %s ended", name)

    def dead(self) -> list[str]:
        """One phrase per loop that ended while it should run."""
        if self._stopping:
            return []
        found = []
        for name, task in self._tasks.items():
            if not task.done():
                continue
            if task.cancelled():
                found.append(f"background loop {name} was cancelled")
            elif (error := task.exception()) is not None:
                found.append(f"background loop {name} died: {type(error).__name__}: {one_line(error)}")
            else:
                found.append(f"background loop {name} ended")
        return found


BACKGROUND_LOOPS = web.AppKey("background_loops", BackgroundLoops)
DATABASE_WATCH = web.AppKey("database_watch", DatabaseWatch)


def liveness_failure(loops: BackgroundLoops, watch: DatabaseWatch | None) -> str | None:
    """Why this process can no longer do its job (one line), or None while it can. A database that is lost
    but being restarted or waited for is not such a reason: that heals without restarting the process."""
    if watch is not None and watch.state is DatabaseState.GAVE_UP:
        return watch.reason
    dead = loops.dead()
    return "; ".join(dead) if dead else None


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class LivenessFailure(BaseModel):
    """The process cannot do its job any more: restart it."""

    status: Literal["failing"] = "failing"
    reason: str


class CheckAnswer(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    """The answer of /readyz: `failed` names the checks that did not pass and make it 503; `degraded` those that
    did not pass but leave it serving (an inbox entry that cannot be moved, an SMSC without a bound bind)."""

    status: Literal["ok", "degraded", "unavailable"]
    failed: list[str]
    degraded: list[str]
    checks: dict[str, CheckAnswer]


@operation(
    "Liveness: whether the process can still do its job (a database being restarted or waited for still "
    "counts as alive)",
    responses={
        200: Reply("Alive", Liveness),
        503: Reply(
            "Cannot do its job: the embedded database could not be restarted, or a background loop ended; "
            "`reason` says which (restart the process)",
            LivenessFailure,
        ),
    },
)
async def healthz(request: web.Request) -> web.Response:
    """Liveness from what the process knows in memory; touches neither the database nor the disk."""
    reason = liveness_failure(request.app[BACKGROUND_LOOPS], request.app.get(DATABASE_WATCH))
    if reason is not None:
        return web.json_response(LivenessFailure(reason=reason).model_dump(), status=503)
    return web.json_response(Liveness().model_dump())


@operation(
    "Readiness: each dependency as a check (database, migrations, risk_database; embedded_database, inbox "
    "and smsc where they apply)",
    responses={200: Reply("Ready", Readiness), 503: Reply("Not ready; `failed` names the checks", Readiness)},
)
async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 unless a required check fails (then 503 naming them in `failed`); failing checks that
    leave the process serving are named in `degraded`."""
    checks = await request.app[READINESS].check()
    failed = [name for name, c in checks.items() if not c.ok and c.required]
    degraded = [name for name, c in checks.items() if not c.ok and not c.required]
    body = Readiness(
        status="unavailable" if failed else "degraded" if degraded else "ok",
        failed=failed,
        degraded=degraded,
        checks={name: CheckAnswer(ok=c.ok, detail=c.detail) for name, c in checks.items()},
    )
    return web.json_response(body.model_dump(), status=503 if failed else 200)


@operation("Prometheus metrics", responses={200: media_reply("Text exposition format", "text/plain")})
async def metrics_exposition(request: web.Request) -> web.Response:
    """The Prometheus text exposition of this process's metrics."""
    metrics = request.app[METRICS]
    return web.Response(body=metrics.exposition(), headers={"Content-Type": metrics.content_type})
