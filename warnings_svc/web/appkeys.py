"""Keys of what the web application holds, in one place that every route module can import without cycles."""

from __future__ import annotations

import asyncpg
import jinja2
from aiohttp import web

from warnings_svc.coverage.metrics import CoverageMetrics
from warnings_svc.forecast.ingest import Disk
from warnings_svc.forecast.runs import RunScorer
from warnings_svc.lifecycle.store import Issuing
from warnings_svc.settings import Settings
from warnings_svc.web.metrics import ServiceMetrics
from warnings_svc.web.risk_database import CurrentRiskDatabase, RiskMapCache

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
METRICS = web.AppKey("metrics", ServiceMetrics)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
REQUEST_ID = web.RequestKey("request_id", str)
RISK_DATABASE = web.AppKey("risk_database", CurrentRiskDatabase)
RISK_MAPS = web.AppKey("risk_maps", RiskMapCache)
RUN_SCORER = web.AppKey("run_scorer", RunScorer)
ISSUING = web.AppKey("issuing", Issuing)  # how warnings are issued here: issuer, signing, policy
# the inbox's file-system operations when not the real ones: where a test puts a disk fault
INBOX_DISK = web.AppKey("inbox_disk", Disk)
# the coverage watch's metrics (`coverage.metrics`), on the service's registry: the watch and the API count there
COVERAGE_METRICS = web.AppKey("coverage_metrics", CoverageMetrics)
