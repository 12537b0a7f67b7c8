"""Liveness, readiness (database, migrations, the region's risk database) and the metrics exposition."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import asyncpg
from aiohttp import web
from pydantic import BaseModel

from risk_zoning.io.database import MigrationSource, read_migrations
from risk_zoning.store import current_version
from warnings_svc.forecast.runs import Inbox
from warnings_svc.web.appkeys import METRICS
from warnings_svc.web.errors import one_line
from warnings_svc.web.operations import Reply, media_reply, operation

READY_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


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

    def watch_inbox(self, inbox: Inbox) -> None:
        """Add the `inbox` check: failed while an entry cannot be moved to archive/ or quarantine/."""
        self._inbox = inbox

    async def check(self) -> dict[str, Check]:
        checks: dict[str, Check] = {}
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS), self._pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
                checks["database"] = Check(True, "answers")
                checks["migrations"] = await self._check_migrations(conn)
                checks["risk_database"] = await self._check_risk_database(conn, checks["migrations"].ok)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
            checks.setdefault("database", Check(False, one_line(e) or type(e).__name__))
        for name in ("database", "migrations", "risk_database"):
            checks.setdefault(name, Check(False, "not checked: an earlier check failed"))
        if self._inbox is not None:
            checks["inbox"] = self._check_inbox(self._inbox)
        return checks

    @staticmethod
    def _check_inbox(inbox: Inbox) -> Check:
        stuck = inbox.stuck()
        if stuck:
            return Check(False, "; ".join(s.detail for s in stuck))
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


READINESS = web.AppKey("readiness", ReadinessProbe)


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class CheckAnswer(BaseModel):
    ok: bool
    detail: str


class Readiness(BaseModel):
    """The answer of /readyz: `failed` names the checks that did not pass."""

    status: Literal["ok", "unavailable"]
    failed: list[str]
    checks: dict[str, CheckAnswer]


@operation("Liveness: the process answers", responses={200: Reply("Alive", Liveness)})
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers. Touches nothing else."""
    return web.json_response(Liveness().model_dump())


@operation(
    "Readiness: database, migrations and the region's risk database",
    responses={200: Reply("Ready", Readiness), 503: Reply("Not ready; `failed` names the checks", Readiness)},
)
async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 when every check passes, else 503 naming the failed checks."""
    checks = await request.app[READINESS].check()
    failed = [name for name, c in checks.items() if not c.ok]
    body = Readiness(
        status="unavailable" if failed else "ok",
        failed=failed,
        checks={name: CheckAnswer(ok=c.ok, detail=c.detail) for name, c in checks.items()},
    )
    return web.json_response(body.model_dump(), status=503 if failed else 200)


@operation("Prometheus metrics", responses={200: media_reply("Text exposition format", "text/plain")})
async def metrics_exposition(request: web.Request) -> web.Response:
    """The Prometheus text exposition of this process's metrics."""
    metrics = request.app[METRICS]
    return web.Response(body=metrics.exposition(), headers={"Content-Type": metrics.content_type})
