"""Keys of what the web application holds, in one place that every route module can import without cycles."""

from __future__ import annotations

import asyncpg
import jinja2
from aiohttp import web

from warnings_svc.settings import Settings
from warnings_svc.web.metrics import ServiceMetrics

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
METRICS = web.AppKey("metrics", ServiceMetrics)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
REQUEST_ID = web.RequestKey("request_id", str)
