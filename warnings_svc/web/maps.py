"""PNG maps: one hazard's risk grades, and the open proposals' polygons."""

from __future__ import annotations

import asyncio
import json
from functools import partial
from typing import Literal

from aiohttp import web
from pydantic import Field

from risk_zoning import HAZARD_NAMES, HAZARDS
from risk_zoning.plot import render_shapes_map
from warnings_svc.forecast.proposals import open_proposal_documents
from warnings_svc.vocabulary import LEVEL_COLOURS
from warnings_svc.vocabulary import LEVEL_NAMES as WARNING_LEVEL_NAMES
from warnings_svc.web.appkeys import POOL, RISK_DATABASE, RISK_MAPS
from warnings_svc.web.auth import (
    LANGUAGES,
    require_user,
)
from warnings_svc.web.operations import (
    LenientQuery,
    RequestModel,
    media_reply,
    operation,
    parse_path,
    parse_query,
)
from warnings_svc.web.problems import ApiProblem

_PNG = media_reply("PNG image", "image/png", schema={"type": "string", "format": "binary"})


class MapQuery(LenientQuery):
    lang: Literal[LANGUAGES] = Field("zh", description="Language of labels")  # type: ignore[valid-type]


class RiskMapPath(RequestModel):
    hazard: str = Field(
        description="A hazard the risk database assesses", json_schema_extra={"enum": list(HAZARDS)}
    )


@operation(
    "Risk grade map of one hazard for the current risk database version",
    path=RiskMapPath,
    query=MapQuery,
    responses={200: _PNG, 304: media_reply("Not modified (ETag)")},
    problems=(400, 404, 503),
)
async def risk_map(request: web.Request) -> web.Response:
    """PNG map of one hazard's risk grades for the current version."""
    hazard = parse_path(request, RiskMapPath).hazard
    if hazard not in HAZARDS:
        raise ApiProblem(
            404, "unknown_hazard", f"unknown hazard {hazard!r}; known hazards: {', '.join(HAZARDS)}", "hazard"
        )
    lang = parse_query(request, MapQuery).lang
    db = await request.app[RISK_DATABASE].get()
    etag = f'"risk-{db.version_id}-{hazard}-{lang}"'
    headers = {"ETag": etag, "Cache-Control": "public, max-age=300"}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    png = await request.app[RISK_MAPS].get(db, hazard, lang)
    return web.Response(body=png, content_type="image/png", headers=headers)


@operation(
    "Map of the open warning proposals' polygons, coloured by level (proposals are internal: log in)",
    query=MapQuery,
    responses={200: _PNG},
    problems=(400, 401, 403, 503),
    security=("bearer", "session"),
)
async def proposals_map(request: web.Request) -> web.Response:
    """PNG of the open proposals' polygons, coloured by warning level, over the region's outlines; any
    logged-in user with the read scope (the risk maps stay public)."""
    require_user(request, scope="read")
    lang = parse_query(request, MapQuery).lang
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
    return web.Response(body=png, content_type="image/png", headers={"Cache-Control": "private, no-cache"})
