"""The console's acknowledgements (叫应): per warning who acknowledged, when and through what, who is overdue and
at which step, with a form to record an acknowledgement received by phone; and the duty officer's call list
(requests escalated to the end, with the numbers of the whole duty chain) with a form for each call's outcome.

The forms post to the API (`web.acknowledgements`) through the console's script, as the lifecycle actions do.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from warnings_svc.dissemination.partners import acknowledgements as acks
from warnings_svc.web.appkeys import ISSUING, POOL
from warnings_svc.web.console.labels import beijing, name_in
from warnings_svc.web.console.page import Page, page_for
from warnings_svc.web.i18n import N_, Message

ACK_ROLES = ("forecaster", "approver", "operations")
STATE_NAMES: dict[str, Message] = {
    "waiting": N_("acknowledgement state", "waiting"),
    "acknowledged": N_("acknowledgement state", "acknowledged"),
    "calling": N_("acknowledgement state", "on the call list"),
    "closed": N_("acknowledgement state", "closed (no longer in force)"),
}
STEP_NAMES: dict[str, Message] = {
    "call": N_("acknowledgement step", "duty contact called"),
    "again": N_("acknowledgement step", "duty contact called again"),
    "deputy": N_("acknowledgement step", "deputy called"),
    "leader": N_("acknowledgement step", "leader called"),
    "call_list": N_("acknowledgement step", "duty officer's call list"),
}
VIA_NAMES: dict[str, Message] = {
    "sms": N_("acknowledged via", "SMS reply"),
    "link": N_("acknowledged via", "link"),
    "callback": N_("acknowledged via", "partner system"),
    "console": N_("acknowledged via", "console (by phone)"),
    "call": N_("acknowledged via", "duty officer's call"),
}
RANK_NAMES: dict[str, Message] = {
    "duty": N_("duty rank", "duty contact"),
    "deputy": N_("duty rank", "deputy"),
    "leader": N_("duty rank", "leader"),
}


def acknowledgement_rows(page: Page, requests: Sequence[acks.RequestView]) -> dict[str, Any]:
    """What the warning page's acknowledgement panel shows."""
    lang = page.lang
    rows = []
    for r in requests:
        rows.append(
            {
                "id": r.id,
                "department": r.department,
                "code": r.code,
                "state": r.state,
                "state_name": name_in(STATE_NAMES, r.state, lang),
                "step_name": name_in(STEP_NAMES, r.step_name, lang),
                "deadline": beijing(r.deadline, "%m-%d %H:%M"),
                "overdue": r.overdue,
                "acknowledged_at": beijing(r.acknowledged_at, "%m-%d %H:%M:%S"),
                "acknowledged_by": r.acknowledged_by,
                "via": name_in(VIA_NAMES, r.via, lang) if r.via else "",
                "call_outcome": r.call_outcome,
                "people": [
                    {"rank": name_in(RANK_NAMES, p.rank, lang), "name": p.name, "phone": p.phone}
                    for p in r.people
                ],
                "open": r.state in ("waiting", "calling"),
                "urls": {
                    "acknowledge": f"/api/v1/acknowledgements/{r.id}/acknowledge",
                    "call": f"/api/v1/acknowledgements/{r.id}/call",
                },
            }
        )
    return {
        "rows": rows,
        "can_record": str(page.user.role) in ACK_ROLES,
        "acknowledged": sum(r.state == "acknowledged" for r in requests),
        "total": len(requests),
        "overdue": sum(r.overdue or r.state == "calling" for r in requests),
    }


async def console_call_list(request: web.Request) -> web.Response:
    """GET /console/acknowledgements: the duty officer's call list."""
    page = page_for(request)
    steps = request.app[ISSUING].acknowledgements.steps
    async with request.app[POOL].acquire() as conn:
        requests = await acks.requests_of(conn, now=datetime.now(UTC), steps=steps, calling_only=True)
        titles = {
            r["warning_id"]: r
            for r in await conn.fetch(
                """SELECT DISTINCT ON (warning_id) warning_id, hazard, level,
                          coalesce(rendered->'zh-CN'->>'headline', '') AS headline
                   FROM svc.warning_version WHERE warning_id = ANY ($1::bigint[])
                   ORDER BY warning_id, version DESC""",
                list({r.warning_id for r in requests}),
            )
        }
    panel = acknowledgement_rows(page, requests)
    for row, r in zip(panel["rows"], requests, strict=True):
        row["warning_id"] = r.warning_id
        row["warning_url"] = page.url(f"/console/warnings/{r.warning_id}")
        found = titles.get(r.warning_id)
        row["level"] = found["level"] if found else ""
        row["headline"] = found["headline"] if found else ""
    return page.render("console/call_list.html", acks=panel)
