"""The HTTP application: one factory used by production, the demo and the tests."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import asyncpg
from aiohttp import web

from warnings_svc.database import MIGRATIONS
from warnings_svc.settings import Settings
from warnings_svc.web.acknowledgements import setup_acknowledgements
from warnings_svc.web.api.airings import setup_airings
from warnings_svc.web.api.alert_stream import setup_alert_stream
from warnings_svc.web.api.alerts import setup_alerts
from warnings_svc.web.api.coverage import setup_coverage_api
from warnings_svc.web.api.partner_log import setup_partner_log
from warnings_svc.web.api.risk import risk_summary
from warnings_svc.web.api.runs import get_run, list_proposals, upload_run
from warnings_svc.web.api.subscriptions import setup_subscriptions_api
from warnings_svc.web.api.warnings import setup_warnings_api
from warnings_svc.web.appkeys import COVERAGE_METRICS, METRICS, POOL, RISK_DATABASE, SETTINGS, TEMPLATES
from warnings_svc.web.auth import (
    authenticate,
    setup_auth,
)
from warnings_svc.web.background import add_background_tasks
from warnings_svc.web.console import setup_console
from warnings_svc.web.database_watch import DatabaseWatch, EmbeddedServer
from warnings_svc.web.health import (
    BACKGROUND_LOOPS,
    DATABASE_WATCH,
    READINESS,
    BackgroundLoops,
    ReadinessProbe,
    healthz,
    metrics_exposition,
    readyz,
)
from warnings_svc.web.idempotency import idempotent_writes, release_keys_later
from warnings_svc.web.maps import proposals_map, risk_map
from warnings_svc.web.metrics import ServiceMetrics
from warnings_svc.web.middleware import answer_problems, observe_requests
from warnings_svc.web.openapi import openapi
from warnings_svc.web.pages import index
from warnings_svc.web.public_cache import setup_public_cache
from warnings_svc.web.risk_database import CurrentRiskDatabase
from warnings_svc.web.satisfaction import setup_satisfaction
from warnings_svc.web.templates import template_environment

STATIC_DIR = Path(str(resources.files("warnings_svc") / "static"))


# Request bodies aiohttp reads whole: url-encoded forms (login, console actions). Forecast uploads are
# streamed to disk ([scoring] max_upload_mib) and JSON bodies capped on their own (web.api.warnings).
FORM_MAX_BYTES = 2**20


def create_app(
    settings: Settings,
    pool: asyncpg.Pool,
    database_url: str | None = None,
    embedded: EmbeddedServer | None = None,
    *,
    singletons: bool = True,
) -> web.Application:
    """The service's web application on an open pool (which the caller owns and closes).

    With `database_url` (what the pool connects to) forecast runs are scored in worker processes: uploads to
    `/api/v1/runs` and files dropped into `data_dir/inbox`. With `embedded` (the embedded PostgreSQL the pool
    connects to) the database watch restarts it when it stops (`web.database_watch`). `singletons=False` for
    every web worker process but the primary: it leaves out the loops that run once per service (see
    `add_background_tasks`).
    """
    metrics = ServiceMetrics()
    app = web.Application(
        # idempotent_writes inside authenticate: a key belongs to the user it names
        middlewares=[observe_requests, answer_problems, authenticate, idempotent_writes],
        client_max_size=FORM_MAX_BYTES,
    )
    app[SETTINGS] = settings
    app[POOL] = pool
    app[METRICS] = metrics
    app[TEMPLATES] = template_environment()
    app[RISK_DATABASE] = CurrentRiskDatabase(pool, settings.region, metrics)
    app[READINESS] = ReadinessProbe(pool, settings.region, MIGRATIONS)
    app[BACKGROUND_LOOPS] = BackgroundLoops()
    app[DATABASE_WATCH] = DatabaseWatch(pool, metrics, server=embedded)
    app[READINESS].watch_database(app[DATABASE_WATCH])
    add_background_tasks(app, database_url, singletons=singletons)
    app.cleanup_ctx.append(release_keys_later)
    setup_public_cache(app)  # follows the event hub that add_background_tasks starts
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
    setup_coverage_api(app)
    setup_alerts(app)
    setup_satisfaction(app)
    setup_alert_stream(app)
    setup_partner_log(app)
    setup_airings(app)
    setup_subscriptions_api(app)
    setup_acknowledgements(app)
    setup_auth(app)
    setup_console(app)
    app.router.add_static("/static", STATIC_DIR, name="static")
    if not singletons:
        # the coverage watch and the acknowledgement loop run in the primary alone: a worker's own gauges would
        # read 0 beside the primary's figures, and each scrape lands on any worker
        coverage = app[COVERAGE_METRICS]
        for gauge in (metrics.acknowledgements_overdue, coverage.ratio, coverage.below_target):
            metrics.registry.unregister(gauge)
    return app
