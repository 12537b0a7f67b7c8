"""The console's home page: the map of warnings in force and open proposals, the proposals, the warnings.

Each user lands where their work is: operations users on the operations view (`console.operations`), department
users on their subscriptions and deliveries (`console.partners`); the others here. On duty, a proposal whose
onset has passed or whose forecast run is older than `RUN_OLD_AFTER` is marked, and a warning in force that
expires within `operations.EXPIRING_SOON` says so."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import asyncpg
from aiohttp import web

from warnings_svc.forecast.proposals import open_proposal_summaries
from warnings_svc.forecast.scoring import ACTION_NAMES
from warnings_svc.lifecycle import store
from warnings_svc.lifecycle.transitions import Action, Role, WarningStatus
from warnings_svc.vocabulary import LEVEL_COLOURS, LEVELS
from warnings_svc.web.appkeys import POOL
from warnings_svc.web.console.labels import (
    MSG_TYPE_NAMES,
    STATUS_NAMES,
    beijing,
    hazard_name,
    level_name,
    name_in,
    pick,
    warning_title,
)
from warnings_svc.web.console.map import Outline, RegionView, area_names, geometry_path, map_context
from warnings_svc.web.console.operations import EXPIRING_SOON
from warnings_svc.web.console.page import ISSUED_FAMILY, REGION_VIEWS, Page, page_for

MAX_PROPOSALS = 50
MAX_WARNINGS = 300
# A run this old is behind the next model cycles (NWP runs every 6 or 12 h): its proposals deserve a second
# look against a newer run before they become a warning.
RUN_OLD_AFTER = timedelta(hours=12)
# Where a role's console starts, when not on this page
HOMES: dict[Role, str] = {Role.operations: "/console/operations", Role.department: "/console/partners"}


async def console_home(request: web.Request) -> web.Response:
    """GET /console/: the map, open proposals, warnings by status."""
    page = page_for(request)
    home = HOMES.get(page.user.role)
    if home is not None:
        raise web.HTTPSeeOther(page.url(home))
    async with request.app[POOL].acquire() as conn:
        view = await request.app[REGION_VIEWS].get(conn)
        proposals = await open_proposal_summaries(conn, MAX_PROPOSALS)
        at_work = await store.versions_at_work(conn, limit=MAX_WARNINGS)
    return page.render(
        "console/home.html", **home_context(page, view, proposals, at_work, now=datetime.now(UTC))
    )


def home_context(
    page: Page,
    view: RegionView,
    proposals: Sequence[asyncpg.Record],
    at_work: Sequence[tuple[store.Version, store.Face]],
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """What the home page shows: proposals, warnings grouped by status, and the map of both; `now` decides
    which proposals are late (onset passed, old run) and which warnings expire soon."""
    now = now or datetime.now(UTC)
    lang = page.lang
    names = partial(area_names, view, lang=lang)

    live_levels: dict[str, str] = {}
    draft_outlines: list[Outline] = []
    groups: dict[str, list[dict[str, Any]]] = {"drafts": [], "pending": [], "returned": [], "issued": []}
    for v, face in at_work:
        s = v.state
        item = {
            "id": v.warning_id,
            "url": page.url(f"/console/warnings/{v.warning_id}"),
            "title": warning_title(s.hazard, s.level, lang),
            "level": s.level,
            "version": s.version,
            "msg_type": name_in(MSG_TYPE_NAMES, s.msg_type, lang),
            "status": name_in(STATUS_NAMES, str(s.status), lang),
            "areas": names(v.content.areas),
            "valid": f"{beijing(s.onset)} – {beijing(s.expires)}",
            "by": s.last_edited_by,
            "updated": beijing(v.updated_at),
            "exercise": s.exercise,
            "return_reason": s.return_reason if s.status == WarningStatus.returned else "",
            "successor": None,
            "expiring": False,
        }
        bucket = {"draft": "drafts", "pending_approval": "pending", "returned": "returned"}.get(str(s.status))
        if bucket:
            groups[bucket].append(item)
            d = "".join(view.paths.get(a, "") for a in v.content.areas)
            title = f"#{v.warning_id} {item['title']} · {item['status']}"
            draft_outlines.append(Outline(d, LEVEL_COLOURS[s.level], title, "draft"))
        if face.status == "issued":
            groups["issued"].append(
                item
                | {
                    "title": warning_title(s.hazard, face.level, lang),
                    "level": face.level,
                    "areas": names(face.areas),
                    "valid": f"{beijing(face.onset)} – {beijing(face.expires)}",
                    "successor": None if s.status in ISSUED_FAMILY else item["status"],
                    "expiring": timedelta(0) < face.expires - now <= EXPIRING_SOON,
                }
            )
            if not s.exercise:
                for code in face.areas:
                    if code not in live_levels or LEVELS.index(face.level) > LEVELS.index(live_levels[code]):
                        live_levels[code] = face.level

    outlines = []
    for p in reversed(proposals):  # oldest first, so the newest outline is drawn on top
        title = f"#{p['id']} {warning_title(p['hazard'], p['level'], lang)}"
        geometry = json.loads(p["geometry"]) if p["geometry"] else None
        d = (
            geometry_path(geometry, view.projection)
            if geometry
            else "".join(view.paths.get(a, "") for a in p["areas"])
        )
        outlines.append(Outline(d, LEVEL_COLOURS[p["level"]], title, "proposal"))
    proposal_items = [
        {
            "id": p["id"],
            "hazard": hazard_name(p["hazard"], lang),
            "level": p["level"],
            "level_name": level_name(p["level"], lang),
            "action": pick(ACTION_NAMES.get(p["action"], (p["action"], p["action"])), lang),
            "can_draft": p["action"] != "unchanged" and page.can(Action.edit),
            "replaces": p["replaces"],
            "replaces_url": page.url(f"/console/warnings/{p['replaces']}") if p["replaces"] else "",
            "areas": names(p["areas"]),
            "valid": f"{beijing(p['onset'])} – {beijing(p['expires'])}",
            "probability": round(100 * p["probability"]),
            "exposed": p["exposed_population"],
            "run": beijing(p["reference_time"], "%m-%d %H:%M"),
            "onset_passed": p["onset"] <= now,
            "run_old": now - p["reference_time"] > RUN_OLD_AFTER,
        }
        for p in proposals
    ]
    region_map = map_context(
        view,
        lang,
        named_levels=live_levels,
        outlines=[*reversed(draft_outlines), *outlines],  # oldest first, proposals on top
        captions={"proposal": page.t["map_legend_proposal"], "draft": page.t["map_legend_draft"]},
    )
    return {"proposals": proposal_items, "groups": groups, "region_map": region_map}
