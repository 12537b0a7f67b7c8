"""PNG maps: one hazard's risk grades, and the open proposals' polygons."""

from __future__ import annotations

import asyncio
import json
import logging
from functools import partial

from aiohttp import web

from risk_zoning import HAZARD_NAMES, HAZARDS
from risk_zoning.plot import render_shapes_map
from warnings_svc.forecast.proposals import open_proposal_documents
from warnings_svc.vocabulary import LEVEL_COLOURS
from warnings_svc.vocabulary import LEVEL_NAMES as WARNING_LEVEL_NAMES
from warnings_svc.web.appkeys import POOL, RISK_DATABASE, RISK_MAPS
from warnings_svc.web.auth import (
    LANGUAGES,
)
from warnings_svc.web.errors import RequestError, UnknownHazardError

log = logging.getLogger(__name__)


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


async def proposals_map(request: web.Request) -> web.Response:
    """PNG of the open proposals' polygons, coloured by warning level, over the region's outlines."""
    lang = request.query.get("lang", "zh")
    if lang not in LANGUAGES:
        raise RequestError("lang", f"unknown language {lang!r}; use one of {', '.join(LANGUAGES)}")
    db = await request.app[RISK_DATABASE].get()
    shapes = []
    async with request.app[POOL].acquire() as conn:
        rows = await open_proposal_documents(conn)
    for row in reversed(rows):
        doc = json.loads(row["document"])
        if doc.get("geometry"):
            name = f"{HAZARD_NAMES[lang][doc['hazard']]} {WARNING_LEVEL_NAMES[doc['level']][0 if lang == 'zh' else 1]}"
            shapes.append((doc["geometry"], LEVEL_COLOURS[doc["level"]], name))
    title = "待审预警建议" if lang == "zh" else "Open warning proposals"
    png = await asyncio.get_running_loop().run_in_executor(
        request.app[RISK_MAPS].executor, partial(render_shapes_map, db, shapes, title=title, lang=lang)
    )
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "no-cache"})
