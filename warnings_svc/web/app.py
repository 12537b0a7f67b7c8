"""The HTTP application: one factory used by production, the demo and the tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import jinja2
from aiohttp import BodyPartReader, web

from risk_zoning import BEIJING, GRADE_NAMES_EN, GRADE_NAMES_ZH, HAZARD_NAMES, HAZARDS
from risk_zoning.errors import DatabaseError, RiskZoningError
from risk_zoning.io.database import MigrationSource, read_migrations
from risk_zoning.plot import render_risk_map, render_shapes_map
from risk_zoning.store import LEVELS, RiskDatabase, current_version, load_current
from risk_zoning.summary import summarise
from risk_zoning.unit_tree import tree_order
from warnings_svc.database import MIGRATIONS
from warnings_svc.dissemination.dispatcher import Dispatcher, endpoints_from_settings
from warnings_svc.dissemination.metrics import DispatchMetrics
from warnings_svc.forecast.runs import (
    Inbox,
    RejectedRun,
    RunScorer,
    ScoringUnavailable,
    new_upload_folder,
    upload_path,
    watch_inbox,
)
from warnings_svc.forecast.scoring import ACTION_NAMES
from warnings_svc.lifecycle.transitions import Role
from warnings_svc.settings import Settings
from warnings_svc.vocabulary import LEVEL_COLOURS
from warnings_svc.vocabulary import LEVEL_NAMES as WARNING_LEVEL_NAMES
from warnings_svc.web.accounts import AccountError, LoginFailed, RateLimited
from warnings_svc.web.api.alerts import OPENAPI_PATHS as ALERTS_OPENAPI_PATHS
from warnings_svc.web.api.alerts import setup_alerts
from warnings_svc.web.api.warnings import OPENAPI_PATHS as WARNINGS_OPENAPI_PATHS
from warnings_svc.web.api.warnings import setup_warnings_api
from warnings_svc.web.appkeys import METRICS, POOL, REQUEST_ID, SETTINGS, TEMPLATES
from warnings_svc.web.auth import (
    LANGUAGES,
    OPENAPI_SECURITY_SCHEMES,
    CsrfRejected,
    Forbidden,
    Unauthenticated,
    authenticate,
    require_user,
    setup_auth,
)
from warnings_svc.web.auth import OPENAPI_PATHS as AUTH_OPENAPI_PATHS
from warnings_svc.web.console import OPENAPI_PATHS as CONSOLE_OPENAPI_PATHS
from warnings_svc.web.console import setup_console
from warnings_svc.web.metrics import ServiceMetrics
from warnings_svc.web.problems import ApiProblem, Problem

log = logging.getLogger(__name__)


RISK_WATCH_SECONDS = 30.0  # how often the current risk database version is checked in the background
READY_TIMEOUT_SECONDS = 5.0
MAP_CACHE_VERSIONS = 2  # rendered maps are kept for this many risk database versions
PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

STATIC_DIR = Path(str(resources.files("warnings_svc") / "static"))


# ---------------------------------------------------------------------------------------------- errors


class RequestError(Exception):
    """The request cannot be answered as asked; names the parameter at fault."""

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {problem}")


class UnknownHazardError(RequestError):
    """The path names a hazard the risk database does not assess."""

    def __init__(self, hazard: str) -> None:
        super().__init__("hazard", f"unknown hazard {hazard!r}; known hazards: {', '.join(HAZARDS)}")


class NotFoundError(RequestError):
    """The path names something that does not exist."""


# Domain errors -> HTTP answers, in one place. The first class in an exception's MRO found here wins.
PROBLEMS: dict[type[BaseException], Problem] = {
    UnknownHazardError: Problem(404, "unknown-hazard", "Unknown hazard"),
    Unauthenticated: Problem(401, "unauthenticated", "Not logged in"),
    CsrfRejected: Problem(403, "csrf-rejected", "Cross-site or unverified request refused"),
    Forbidden: Problem(403, "forbidden", "Not allowed"),
    RateLimited: Problem(429, "too-many-logins", "Too many failed logins"),
    LoginFailed: Problem(401, "login-failed", "Wrong user name or password"),
    AccountError: Problem(400, "invalid-account", "Invalid account"),
    NotFoundError: Problem(404, "not-found", "Not found"),
    RejectedRun: Problem(422, "unusable-forecast", "Unusable forecast run"),
    ScoringUnavailable: Problem(503, "scoring-unavailable", "Scoring unavailable"),
    RequestError: Problem(400, "invalid-parameter", "Invalid parameter"),
    DatabaseError: Problem(503, "risk-database-unavailable", "Risk database unavailable"),
    RiskZoningError: Problem(500, "risk-database-error", "Risk database error"),
    asyncpg.PostgresError: Problem(503, "database-unavailable", "Database unavailable"),
    asyncpg.InterfaceError: Problem(503, "database-unavailable", "Database unavailable"),
    ConnectionError: Problem(503, "database-unavailable", "Database unavailable"),
}
INTERNAL_ERROR = Problem(500, "internal-error", "Internal server error")


def problem_for(error: BaseException) -> Problem | None:
    own = getattr(error, "problem", None)  # errors that know their answer (`problems.ApiProblem`)
    if isinstance(own, Problem):
        return own
    for cls in type(error).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return None


# ---------------------------------------------------------------------------------------------- services


class CurrentRiskDatabase:
    """The region's current risk database in memory, reloaded only when the current version changes."""

    def __init__(self, pool: asyncpg.Pool, region: str, metrics: ServiceMetrics) -> None:
        self._pool = pool
        self._region = region
        self._metrics = metrics
        self._db: RiskDatabase | None = None
        self._reload = asyncio.Lock()

    async def get(self) -> RiskDatabase:
        """The current version; `DatabaseError` when the region has none."""
        async with self._pool.acquire() as conn:
            version = await current_version(conn, self._region)
        if self._db is not None and self._db.version_id == version:
            return self._db
        async with self._reload:  # one load at a time, however many requests arrive together
            if self._db is None or self._db.version_id != version:
                async with self._pool.acquire() as conn:
                    db = await load_current(conn, self._region)
                self._metrics.observe_risk_database(self._region, db.version_id, db.created_at.timestamp())
                log.info("risk database loaded", extra={"region": self._region, "version_id": db.version_id})
                self._db = db
            return self._db


class RiskMapCache:
    """PNG risk maps per (version, hazard, language), rendered once each, off the event loop."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._renders: dict[tuple[int, str, str], asyncio.Future[bytes]] = {}

    async def get(self, db: RiskDatabase, hazard: str, lang: str) -> bytes:
        key = (db.version_id, hazard, lang)
        render = self._renders.get(key)
        if render is None:
            self._forget_old_versions(db.version_id)
            loop = asyncio.get_running_loop()
            render = loop.run_in_executor(self.executor, partial(render_risk_map, db, hazard, lang=lang))
            self._renders[key] = render
        try:
            # Shielded: a client that goes away must not cancel a render that others are waiting for.
            return await asyncio.shield(render)
        except Exception:
            if self._renders.get(key) is render:
                del self._renders[key]  # failures are not cached; the next request tries again
            raise

    def _forget_old_versions(self, newest: int) -> None:
        keep = sorted({k[0] for k in self._renders} | {newest})[-MAP_CACHE_VERSIONS:]
        for key in [k for k in self._renders if k[0] not in keep]:
            del self._renders[key]


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


class ReadinessProbe:
    """Can this process serve: the database answers, every migration is applied, the region is built."""

    def __init__(self, pool: asyncpg.Pool, region: str, sources: Sequence[MigrationSource]) -> None:
        self._pool = pool
        self._region = region
        self._expected = {
            (m.component, m.version): (f"{m.component}/{m.version:04d}_{m.name}", m.checksum)
            for source in sources
            for m in read_migrations(source)
        }

    async def check(self) -> dict[str, Check]:
        checks: dict[str, Check] = {}
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS), self._pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
                checks["database"] = Check(True, "answers")
                checks["migrations"] = await self._check_migrations(conn)
                checks["risk_database"] = await self._check_risk_database(conn, checks["migrations"].ok)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            checks.setdefault("database", Check(False, _one_line(e) or type(e).__name__))
        for name in ("database", "migrations", "risk_database"):
            checks.setdefault(name, Check(False, "not checked: an earlier check failed"))
        return checks

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


# ---------------------------------------------------------------------------------------------- app keys

RISK_DATABASE = web.AppKey("risk_database", CurrentRiskDatabase)
RISK_MAPS = web.AppKey("risk_maps", RiskMapCache)
READINESS = web.AppKey("readiness", ReadinessProbe)
RUN_SCORER = web.AppKey("run_scorer", RunScorer)


# Request bodies aiohttp reads whole: url-encoded forms (login, console actions). Forecast uploads are
# streamed to disk ([scoring] max_upload_mib) and JSON bodies capped on their own (api_warnings).
FORM_MAX_BYTES = 2**20


def create_app(settings: Settings, pool: asyncpg.Pool, database_url: str | None = None) -> web.Application:
    """The service's web application on an open pool (which the caller owns and closes).

    With `database_url` (what the pool connects to) forecast runs are scored in worker processes: uploads to
    `/api/v1/runs` and files dropped into `data_dir/inbox`.
    """
    metrics = ServiceMetrics()
    app = web.Application(
        middlewares=[observe_requests, answer_problems, authenticate], client_max_size=FORM_MAX_BYTES
    )
    app[SETTINGS] = settings
    app[POOL] = pool
    app[METRICS] = metrics
    app[TEMPLATES] = _template_environment()
    app[RISK_DATABASE] = CurrentRiskDatabase(pool, settings.region, metrics)
    app[READINESS] = ReadinessProbe(pool, settings.region, MIGRATIONS)
    app.cleanup_ctx.append(_risk_map_renderer)
    app.cleanup_ctx.append(_risk_database_watcher)
    if database_url is not None:
        app.cleanup_ctx.append(partial(_run_scoring, database_url=database_url))
    if database_url is not None and settings.dispatch.embedded and settings.dispatch.sms:
        app.cleanup_ctx.append(partial(_run_dispatcher, database_url=database_url))
    app.router.add_get("/", index, name="index")
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics_exposition, name="metrics")
    app.router.add_get("/openapi.json", openapi, name="openapi")
    app.router.add_get("/maps/risk/{hazard}.png", risk_map, name="risk_map")
    app.router.add_get("/maps/proposals.png", proposals_map, name="proposals_map")
    app.router.add_get("/api/v1/risk/summary", risk_summary, name="risk_summary")
    app.router.add_post("/api/v1/runs", upload_run, name="upload_run")
    app.router.add_get("/api/v1/runs/{id}", get_run, name="run")
    app.router.add_get("/api/v1/proposals", list_proposals, name="proposals")
    setup_warnings_api(app)
    setup_alerts(app)
    setup_auth(app)
    setup_console(app, database_url)
    app.router.add_static("/static", STATIC_DIR, name="static")
    return app


async def _risk_map_renderer(app: web.Application) -> AsyncIterator[None]:
    # One thread: matplotlib's rcParams (each render's font context) are process-wide, and the cache makes
    # each map a one-off anyway.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="risk-map")
    app[RISK_MAPS] = RiskMapCache(executor)
    yield
    executor.shutdown(wait=False, cancel_futures=True)


async def _run_scoring(app: web.Application, *, database_url: str) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    scorer = RunScorer(app[POOL], database_url, settings.scoring)
    app[RUN_SCORER] = scorer
    inbox = Inbox(settings.data_dir, settle_seconds=2 * settings.scoring.inbox_poll_seconds)
    task = asyncio.create_task(
        watch_inbox(inbox, scorer, settings.region, settings.scoring.inbox_poll_seconds), name="watch-inbox"
    )
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    scorer.close()


async def _run_dispatcher(app: web.Application, *, database_url: str) -> AsyncIterator[None]:
    """The embedded dispatcher: its metrics on the service's /metrics; stopped (batches in hand finished,
    binds closed) with the app."""
    settings = app[SETTINGS]
    dispatcher = Dispatcher(
        app[POOL],
        database_url,
        settings.dispatch,
        endpoints_from_settings(settings.dispatch),
        region=settings.region,
        metrics=DispatchMetrics(app[METRICS].registry),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop), name="dispatcher")
    yield
    stop.set()
    await task


async def _risk_database_watcher(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_watch_risk_database(app[RISK_DATABASE]), name="watch-risk-database")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _watch_risk_database(current: CurrentRiskDatabase) -> None:
    """Keep the loaded version (and its gauges) current, so a rebuild shows without a restart."""
    while True:
        try:
            await current.get()
        except DatabaseError as e:
            log.debug("no risk database yet", extra={"reason": str(e)})
        except Exception:  # the loop's boundary: record and carry on
            log.exception("checking the risk database failed")
        await asyncio.sleep(RISK_WATCH_SECONDS)


# ---------------------------------------------------------------------------------------------- middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def observe_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Correlation id, request counter and latency by route pattern (never the raw path)."""
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = offered if _CLIENT_REQUEST_ID.match(offered) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as e:
        status = e.status
        e.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        request.app[METRICS].observe_request(
            _route_pattern(request), request.method, status, time.perf_counter() - started
        )


def _route_pattern(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def answer_problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn errors into answers: problem documents for machines, an error page for the HTML console."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400 or not _wants_problem_json(request):
            raise
        return _problem_response(request, Problem(e.status, "about:blank", e.reason), e.reason)
    except Exception as e:
        problem = problem_for(e)
        if problem is None:
            log.exception("unhandled error", extra={"request_id": request[REQUEST_ID], "path": request.path})
            problem, detail = INTERNAL_ERROR, "the error was logged with this request's id"
        else:
            if problem.status >= 500:
                log.warning("request failed: %s", e, extra={"request_id": request[REQUEST_ID]})
            detail = _one_line(e)
        if _wants_problem_json(request):
            response = _problem_response(request, problem, detail, getattr(e, "problem_fields", None))
        else:
            response = _error_page(request, problem, detail)
        response.headers.update(getattr(e, "problem_headers", {}))  # WWW-Authenticate, Retry-After
        return response


def _wants_problem_json(request: web.Request) -> bool:
    # people's pages (the first page, the console, its login and logout forms) get an HTML error page
    route = request.match_info.route
    if route.resource is not None:
        return route.name != "index" and not request.path.startswith("/console/")
    return request.path.startswith(("/api/", "/maps/"))


def _problem_response(
    request: web.Request, problem: Problem, detail: str, extra: dict[str, Any] | None = None
) -> web.Response:
    kind = problem.slug if ":" in problem.slug else f"urn:warnings-svc:problem:{problem.slug}"
    body = {
        "type": kind,
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
        "instance": request.path,
        "request_id": request[REQUEST_ID],
        **(extra or {}),  # e.g. the field at fault and a machine-readable code
    }
    return web.Response(
        status=problem.status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type=PROBLEM_JSON,
        charset="utf-8",
    )


def _error_page(request: web.Request, problem: Problem, detail: str) -> web.Response:
    html = (
        request.app[TEMPLATES]
        .get_template("error.html")
        .render(problem=problem, detail=detail, request_id=request[REQUEST_ID])
    )
    return web.Response(status=problem.status, text=html, content_type="text/html")


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


# ---------------------------------------------------------------------------------------------- handlers


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. Touches nothing else."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 when every check passes, else 503 naming the failed checks."""
    checks = await request.app[READINESS].check()
    failed = [name for name, c in checks.items() if not c.ok]
    body = {
        "status": "unavailable" if failed else "ok",
        "failed": failed,
        "checks": {name: {"ok": c.ok, "detail": c.detail} for name, c in checks.items()},
    }
    return web.json_response(body, status=503 if failed else 200)


async def metrics_exposition(request: web.Request) -> web.Response:
    metrics = request.app[METRICS]
    return web.Response(body=metrics.exposition(), headers={"Content-Type": metrics.content_type})


async def risk_map(request: web.Request) -> web.Response:
    """PNG map of one hazard's risk grades for the current version."""
    hazard = request.match_info["hazard"]
    if hazard not in HAZARDS:
        raise UnknownHazardError(hazard)
    lang = request.query.get("lang", "zh")
    if lang not in LANGUAGES:
        raise RequestError("lang", f"unknown language {lang!r}; use one of {', '.join(LANGUAGES)}")
    db = await request.app[RISK_DATABASE].get()
    etag = f'"risk-{db.version_id}-{hazard}-{lang}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=300"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    png = await request.app[RISK_MAPS].get(db, hazard, lang)
    return web.Response(body=png, content_type="image/png", headers=headers)


async def risk_summary(request: web.Request) -> web.Response:
    """The risk database summary, as `risk-zoning summary --json` prints it."""
    db = await request.app[RISK_DATABASE].get()
    summary = await asyncio.get_running_loop().run_in_executor(None, summarise, db)
    return web.json_response(summary, dumps=partial(json.dumps, ensure_ascii=False))


async def upload_run(request: web.Request) -> web.Response:
    """Score an uploaded forecast run (multipart files, or one NetCDF body with ?filename=) and store it."""
    require_user(request, Role.forecaster, Role.approver, Role.operations, scope="write")
    if RUN_SCORER not in request.app:
        raise RequestError("run", "this server does not score forecast runs")
    settings = request.app[SETTINGS]
    loop = asyncio.get_running_loop()
    folder = await loop.run_in_executor(None, new_upload_folder, settings.data_dir)
    try:
        # streamed to disk as it comes: a run's files can be large, and memory is not where they belong
        received = _UploadStream(folder, settings.scoring.max_upload_mib * 2**20)
        if request.content_type.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                if isinstance(part, BodyPartReader) and part.filename:
                    await received.save(part.filename, _part_chunks(part))
        else:
            await received.save(
                request.query.get("filename", "forecast.nc"), request.content.iter_chunked(2**20)
            )
        files = sorted(p for p in folder.iterdir() if p.stat().st_size)
        if not files:
            raise RequestError("file", "no forecast file in the request")
        outcome = await request.app[RUN_SCORER].ingest(files, settings.region)
    finally:
        await loop.run_in_executor(None, partial(shutil.rmtree, folder, ignore_errors=True))
    body = {
        "run_id": outcome.run_id,
        "new": outcome.new,
        "proposal_ids": outcome.proposal_ids,
        **outcome.result,
    }
    return web.json_response(
        body,
        status=201 if outcome.new else 200,
        headers={"Location": f"/api/v1/runs/{outcome.run_id}"},
        dumps=partial(json.dumps, ensure_ascii=False),
    )


class _UploadStream:
    """Writes an upload's files into its folder chunk by chunk (off the event loop), refusing the request
    with 413 once it holds more than `limit` bytes in all."""

    def __init__(self, folder: Path, limit: int) -> None:
        self.folder = folder
        self.limit = limit
        self.files = 0
        self.size = 0

    async def save(self, name: str, chunks: AsyncIterator[bytes]) -> None:
        self.files += 1
        loop = asyncio.get_running_loop()
        out = await loop.run_in_executor(None, upload_path(self.folder, self.files, name).open, "wb")
        try:
            async for chunk in chunks:
                self.size += len(chunk)
                if self.size > self.limit:
                    raise ApiProblem(
                        413,
                        "too_large",
                        f"the upload is larger than {self.limit // 2**20} MiB ([scoring] max_upload_mib)",
                        "file",
                    )
                await loop.run_in_executor(None, out.write, chunk)
        finally:
            await loop.run_in_executor(None, out.close)


async def _part_chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(2**20):
        yield chunk


async def get_run(request: web.Request) -> web.Response:
    """A stored run: its summary and the proposals scored from it."""
    try:
        run_id = int(request.match_info["id"])
    except ValueError as e:
        raise RequestError("id", "run id must be an integer") from e
    async with request.app[POOL].acquire() as conn:
        row = await conn.fetchrow(
            "SELECT id, summary, received_at FROM svc.forecast_run WHERE id = $1", run_id
        )
        if row is None:
            raise NotFoundError("id", f"no forecast run {run_id}")
        proposals = await conn.fetch(
            "SELECT id, status, document FROM svc.proposal WHERE run_id = $1 ORDER BY id", run_id
        )
    body = {
        "id": row["id"],
        "received_at": row["received_at"].isoformat(),
        "run": json.loads(row["summary"]),
        "proposals": [{"id": p["id"], "status": p["status"], **json.loads(p["document"])} for p in proposals],
    }
    return web.json_response(body, dumps=partial(json.dumps, ensure_ascii=False))


PROPOSAL_STATUSES = ("open", "superseded", "accepted", "dismissed")


async def list_proposals(request: web.Request) -> web.Response:
    """Proposals, newest first: `status` (default open), optional `hazard`, `limit` (default 50, at most 500)."""
    status = request.query.get("status", "open")
    if status not in PROPOSAL_STATUSES:
        raise RequestError("status", f"unknown status {status!r}; use one of {', '.join(PROPOSAL_STATUSES)}")
    hazard = request.query.get("hazard")
    if hazard is not None and hazard not in HAZARDS:
        raise RequestError("hazard", f"unknown hazard {hazard!r}; known hazards: {', '.join(HAZARDS)}")
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError as e:
        raise RequestError("limit", "limit must be an integer") from e
    if not 1 <= limit <= 500:
        raise RequestError("limit", "limit must be between 1 and 500")
    async with request.app[POOL].acquire() as conn:
        rows = await conn.fetch(
            """SELECT id, run_id, status, document FROM svc.proposal
               WHERE status = $1 AND ($2::text IS NULL OR hazard = $2) ORDER BY id DESC LIMIT $3""",
            status,
            hazard,
            limit,
        )
    body = [
        {"id": r["id"], "run_id": r["run_id"], "status": r["status"], **json.loads(r["document"])}
        for r in rows
    ]
    return web.json_response({"proposals": body}, dumps=partial(json.dumps, ensure_ascii=False))


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(), dumps=partial(json.dumps, ensure_ascii=False))


async def _open_proposals(pool: asyncpg.Pool, limit: int = 30) -> list[asyncpg.Record]:
    async with pool.acquire() as conn:
        return await conn.fetch(
            """SELECT p.id, p.document, r.summary->>'reference_time' AS reference_time FROM svc.proposal p
               JOIN svc.forecast_run r ON r.id = p.run_id WHERE p.status = 'open' ORDER BY p.id DESC LIMIT $1""",
            limit,
        )


async def proposals_map(request: web.Request) -> web.Response:
    """PNG of the open proposals' polygons, coloured by warning level, over the region's outlines."""
    lang = request.query.get("lang", "zh")
    if lang not in LANGUAGES:
        raise RequestError("lang", f"unknown language {lang!r}; use one of {', '.join(LANGUAGES)}")
    db = await request.app[RISK_DATABASE].get()
    shapes = []
    for row in reversed(await _open_proposals(request.app[POOL])):
        doc = json.loads(row["document"])
        if doc.get("geometry"):
            name = f"{HAZARD_NAMES[lang][doc['hazard']]} {WARNING_LEVEL_NAMES[doc['level']][0 if lang == 'zh' else 1]}"
            shapes.append((doc["geometry"], LEVEL_COLOURS[doc["level"]], name))
    title = "待审预警建议" if lang == "zh" else "Open warning proposals"
    png = await asyncio.get_running_loop().run_in_executor(
        request.app[RISK_MAPS].executor, partial(render_shapes_map, db, shapes, title=title, lang=lang)
    )
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "no-cache"})


def proposal_rows(rows: Sequence[asyncpg.Record], db: RiskDatabase, lang: str) -> list[dict[str, Any]]:
    """Open proposals as the first page lists them."""
    names = {u.code.strip(): (u.name, u.name_en) for u in db.units}
    out = []
    for row in rows:
        doc = json.loads(row["document"])
        out.append(
            {
                "id": row["id"],
                "hazard": _hazard(doc["hazard"], lang),
                "level": doc["level"],
                "level_name": _text(WARNING_LEVEL_NAMES[doc["level"]], lang),
                "action": _text(ACTION_NAMES[doc["action"]], lang),
                "areas": [_text(names.get(a, (a, a)), lang).main for a in doc["areas"]],
                "onset": datetime.fromisoformat(doc["onset"]).astimezone(BEIJING).strftime("%m-%d %H:%M"),
                "expires": datetime.fromisoformat(doc["expires"]).astimezone(BEIJING).strftime("%m-%d %H:%M"),
                "probability": round(100 * doc["probability"]),
                "exposed": doc["exposed_population"],
                "run": datetime.fromisoformat(row["reference_time"])
                .astimezone(BEIJING)
                .strftime("%Y-%m-%d %H:%M"),
            }
        )
    return out


async def index(request: web.Request) -> web.Response:
    """The first page: open warning proposals, the region's risk maps, assessment units, totals, provenance."""
    lang = request.query.get("lang", "zh")
    if lang not in LANGUAGES:
        lang = "zh"  # a person typed it; show the default page rather than an error
    db = await request.app[RISK_DATABASE].get()
    page = risk_page(db, lang)
    page["proposals"] = proposal_rows(await _open_proposals(request.app[POOL]), db, lang)
    html = request.app[TEMPLATES].get_template("index.html").render(page=page, L=page["labels"], lang=lang)
    return web.Response(text=html, content_type="text/html")


# ---------------------------------------------------------------------------------------------- first page

# key -> (Chinese, English). The page shows one as the label and the other as its subtitle.
LABELS: dict[str, tuple[str, str]] = {
    "title": ("气象灾害风险区划", "Meteorological disaster risk zoning"),
    "maps": ("风险区划图", "Risk maps"),
    "proposals": ("预警建议（待审）", "Warning proposals (open)"),
    "no_proposals": ("暂无待审预警建议", "No open proposals"),
    "action": ("操作", "Action"),
    "warning_level": ("预警级别", "Level"),
    "areas": ("区域", "Areas"),
    "valid": ("起止时间", "Onset - expires"),
    "probability": ("概率", "Probability"),
    "exposed": ("暴露人口", "Exposed people"),
    "run": ("预报起报时间", "Forecast run"),
    "units": ("评估单元", "Assessment units"),
    "totals": ("合计", "Totals"),
    "population_by_grade": ("各风险等级人口", "Population by risk grade"),
    "provenance": ("数据来源与方法", "Provenance"),
    "code": ("代码", "Code"),
    "name": ("名称", "Name"),
    "level": ("级别", "Level"),
    "population": ("人口", "Population"),
    "area": ("面积 (km²)", "Area (km²)"),
    "boundary": ("边界", "Boundary"),
    "count": ("单元数", "Units"),
    "hazard": ("灾种", "Hazard"),
    "version": ("版本", "Version"),
    "built": ("生成时间", "Built"),
    "risk_index": ("风险指数", "Risk index"),
    "api": ("接口", "API"),
    "synthetic": (
        "演示数据：下列输入为合成数据，不可用于业务决策",
        "Demo data: these inputs are synthetic, not for operational use",
    ),
}
LEVEL_NAMES: dict[str, tuple[str, str]] = {
    "city": ("市", "City"),
    "district": ("区", "District"),
    "town": ("乡镇街道", "Town"),
}
BOUNDARY_NAMES: dict[str, tuple[str, str]] = {
    "official": ("官方", "official"),
    "approximate": ("近似", "approximate"),
}


@dataclass(frozen=True)
class Text:
    """A label in the page's language with its subtitle in the other one."""

    main: str
    sub: str


def _text(pair: tuple[str, str], lang: str) -> Text:
    zh, en = pair
    return Text(zh, en) if lang == "zh" else Text(en, zh)


def _hazard(hazard: str, lang: str) -> Text:
    return _text((HAZARD_NAMES["zh"][hazard], HAZARD_NAMES["en"][hazard]), lang)


def _grade(grade: int, lang: str) -> Text:
    return _text((GRADE_NAMES_ZH[grade], GRADE_NAMES_EN[grade]), lang)


def risk_page(db: RiskDatabase, lang: str) -> dict[str, Any]:
    """Everything the first page shows, as plain values (the template only lays them out)."""
    region_en = str(db.config.get("region", {}).get("name_en") or db.region.title())
    hazards = [{"key": h, "name": _hazard(h, lang)} for h in HAZARDS]
    rows = []
    for u in tree_order(db.units):
        grades = []
        for h in HAZARDS:
            risk = db.unit_risk.get(h, {}).get(u.code)
            grades.append(
                None if risk is None else {"grade": risk[1], "name": _grade(risk[1], lang), "index": risk[0]}
            )
        rows.append(
            {
                "code": u.code.strip(),
                "name": _text((u.name, u.name_en), lang),
                "level": _text(LEVEL_NAMES.get(u.level, (u.level, u.level)), lang),
                "level_key": u.level,
                "population": u.population,
                "area_km2": u.area_km2,
                "boundary": u.boundary,
                "boundary_name": _text(BOUNDARY_NAMES.get(u.boundary, (u.boundary, u.boundary)), lang),
                "code_status": u.code_status,
                "grades": grades,
            }
        )
    totals = [
        {
            "level": _text(LEVEL_NAMES.get(level, (level, level)), lang),
            "count": len(at_level),
            "population": sum(u.population for u in at_level),
            "area_km2": sum(u.area_km2 for u in at_level),
        }
        for level in LEVELS
        if (at_level := [u for u in db.units if u.level == level])
    ]
    return {
        "lang": lang,
        "other_lang": "en" if lang == "zh" else "zh",
        "labels": {key: _text(pair, lang) for key, pair in LABELS.items()},
        "region": _text((db.region_name, region_en), lang),
        "region_code": db.region_code,
        "version_id": db.version_id,
        "built": db.created_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M (UTC+08:00)"),
        "hazards": hazards,
        "grades": [{"grade": g, "name": _grade(g, lang)} for g in range(1, len(GRADE_NAMES_ZH))],
        "rows": rows,
        "totals": totals,
        "population_by_grade": _population_by_grade(db, lang),
        "provenance": provenance_items(db.provenance),
        "synthetic": synthetic_inputs(db.provenance),
    }


def synthetic_inputs(provenance: dict[str, Any]) -> list[str]:
    """Names of the inputs the provenance marks as synthetic (demo data, not for operational use)."""
    return sorted(
        key
        for key, value in provenance.items()
        if value == "synthetic"
        or (isinstance(value, dict) and (value.get("synthetic") or value.get("source") == "synthetic"))
    )


def _population_by_grade(db: RiskDatabase, lang: str) -> list[dict[str, Any]]:
    """Residents per risk grade and hazard, summed over the coarsest level (whose units cover the region)."""
    top = next((level for level in LEVELS if any(u.level == level for u in db.units)), None)
    codes = [u.code for u in db.units if u.level == top]
    table = []
    for h in HAZARDS:
        by_unit = db.unit_population_by_grade.get(h, {})
        sums = [sum(by_unit.get(code, [0] * 5)[g] for code in codes) for g in range(5)]
        table.append({"name": _hazard(h, lang), "population": sums})
    return table


PROVENANCE_VALUE_CHARS = 1200


def provenance_items(provenance: Any, prefix: str = "", depth: int = 2) -> list[tuple[str, str]]:
    """(key path, short text) pairs for a provenance document of any shape, `depth` levels of keys at most.

    >>> provenance_items({"population": {"source": "synthetic", "year": 2021}, "towns": "approximate"})
    [('population › source', 'synthetic'), ('population › year', '2021'), ('towns', 'approximate')]
    """
    if isinstance(provenance, dict) and depth > 0:
        items: list[tuple[str, str]] = []
        for key, value in sorted(provenance.items()):
            items.extend(provenance_items(value, f"{prefix} › {key}" if prefix else str(key), depth - 1))
        return items
    return [(prefix, _short_text(provenance))]


def _short_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        text = ", ".join(str(v) for v in value)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= PROVENANCE_VALUE_CHARS else text[: PROVENANCE_VALUE_CHARS - 1] + "…"


def _template_environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("warnings_svc", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["thousands"] = lambda n: f"{n:,.0f}"
    return env


# ---------------------------------------------------------------------------------------------- OpenAPI


def openapi_document() -> dict[str, Any]:
    """A hand-written OpenAPI 3.1 description of the routes above."""
    problem = {"$ref": "#/components/responses/Problem"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "warnings-svc",
            "version": "0.1.0",
            "description": "Meteorological disaster early warning: risk database, forecast runs and proposals, health, metrics.",
        },
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness: the process answers",
                    "responses": {
                        "200": {
                            "description": "Alive",
                            "content": {
                                "application/json": {
                                    "schema": {"type": "object", "properties": {"status": {"const": "ok"}}}
                                }
                            },
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: database, migrations and the region's risk database",
                    "responses": {
                        "200": {
                            "description": "Ready",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}
                            },
                        },
                        "503": {
                            "description": "Not ready; `failed` names the checks",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}
                            },
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "First page: risk maps, assessment units, totals and provenance (HTML)",
                    "parameters": [{"$ref": "#/components/parameters/lang"}],
                    "responses": {
                        "200": {
                            "description": "HTML page",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/maps/risk/{hazard}.png": {
                "get": {
                    "summary": "Risk grade map of one hazard for the current risk database version",
                    "parameters": [
                        {
                            "name": "hazard",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": list(HAZARDS)},
                        },
                        {"$ref": "#/components/parameters/lang"},
                    ],
                    "responses": {
                        "200": {
                            "description": "PNG image",
                            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        "304": {"description": "Not modified (ETag)"},
                        "400": problem,
                        "404": problem,
                        "503": problem,
                    },
                }
            },
            "/api/v1/risk/summary": {
                "get": {
                    "summary": "Summary of the current risk database (as `risk-zoning summary --json`)",
                    "responses": {
                        "200": {
                            "description": "Summary",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "503": problem,
                    },
                }
            },
            "/maps/proposals.png": {
                "get": {
                    "summary": "Map of the open warning proposals' polygons, coloured by level",
                    "parameters": [{"$ref": "#/components/parameters/lang"}],
                    "responses": {
                        "200": {
                            "description": "PNG image",
                            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        "400": problem,
                        "503": problem,
                    },
                }
            },
            "/api/v1/runs": {
                "post": {
                    "summary": "Upload a forecast run (NetCDF files, multipart; or one file as the body with "
                    "?filename=); it is scored off the event loop and stored with its proposals",
                    "parameters": [{"name": "filename", "in": "query", "schema": {"type": "string"}}],
                    "requestBody": {
                        "content": {
                            "multipart/form-data": {"schema": {"type": "object"}},
                            "application/x-netcdf": {"schema": {"type": "string", "format": "binary"}},
                        }
                    },
                    "responses": {
                        "201": {
                            "description": "Scored and stored: run summary and proposals",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "200": {
                            "description": "The same run was stored before (same file contents)",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": problem,
                        "422": problem,
                        "503": problem,
                    },
                }
            },
            "/api/v1/runs/{id}": {
                "get": {
                    "summary": "A stored forecast run and the proposals scored from it",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "Run",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": problem,
                        "404": problem,
                    },
                }
            },
            "/api/v1/proposals": {
                "get": {
                    "summary": "Warning proposals, newest first",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(PROPOSAL_STATUSES), "default": "open"},
                        },
                        {
                            "name": "hazard",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(HAZARDS)},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "Proposals",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": problem,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            **WARNINGS_OPENAPI_PATHS,
            **ALERTS_OPENAPI_PATHS,
            **AUTH_OPENAPI_PATHS,
            **CONSOLE_OPENAPI_PATHS,
        },
        "components": {
            "securitySchemes": OPENAPI_SECURITY_SCHEMES,
            "parameters": {
                "lang": {
                    "name": "lang",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": list(LANGUAGES), "default": "zh"},
                    "description": "Language of labels: Chinese (with English subtitles) or English",
                }
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string", "format": "uri-reference"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                    },
                },
                "Readiness": {
                    "type": "object",
                    "required": ["status", "failed", "checks"],
                    "properties": {
                        "status": {"enum": ["ok", "unavailable"]},
                        "failed": {"type": "array", "items": {"type": "string"}},
                        "checks": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
                            },
                        },
                    },
                },
            },
            "responses": {
                "Problem": {
                    "description": "Problem details (RFC 9457)",
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
            },
        },
    }
