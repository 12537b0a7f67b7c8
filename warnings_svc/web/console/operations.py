"""The operations view, ``/console/operations``: every warning in force with its delivery per channel, its
coverage over time against the target and by town, its escalation steps and acknowledgements outstanding, and
the queues and channels of the whole service. The same panel sits on an issued warning's page.

Decisions where the issue is silent:

- Live by polling, not by events: the panel of each warning is a fragment
  (``/console/operations/warnings/{id}``) that the console's script fetches every `POLL_SECONDS` and swaps in
  when it changed. Delivery receipts and evidence arrive by the thousand a minute and send no event (only
  lifecycle changes do, on ``svc_events``); announcing each would flood every console. A new or ended
  warning is an event, and the page reloads on it as the home page does.
- Circuits: when the dispatchers run inside this process, their gauges (`warnings_circuit_state`,
  `warnings_area_target_up`, `warnings_partner_channel_up`) are read from the service's registry; in any
  case each channel's last failure of the day, read from the outboxes, is shown beside its queue.
- The coverage figure is computed now by the coverage engine (`coverage.evidence.measure`); the plot joins it
  to the stored snapshots. A proposed escalation step is a banner with a button that posts to the coverage
  API (``POST /api/v1/warnings/{id}/escalations/{escalation_id}/apply``) through the console's script, with
  the session's CSRF token, as every console action does.
- Who: operations, approvers and admins see the page (and it is the operations user's home); forecasters
  see the panel on a warning's page; department users have their own pages (`console.partners`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import Field
from yarl import URL

from warnings_svc.coverage import escalation, snapshots
from warnings_svc.coverage.evidence import Measurement, measure, region_of
from warnings_svc.dissemination.partners import acknowledgements as acks
from warnings_svc.lifecycle.transitions import Role
from warnings_svc.settings import Settings
from warnings_svc.web.api.partner_log import MAX_ID
from warnings_svc.web.appkeys import ISSUING, METRICS, POOL, SETTINGS
from warnings_svc.web.auth import LANGUAGES, Forbidden
from warnings_svc.web.console import progress
from warnings_svc.web.console.acknowledgements import acknowledgement_rows
from warnings_svc.web.console.labels import CHANNEL_NAMES, area_separator, beijing, name_in, warning_title
from warnings_svc.web.console.map import RegionView
from warnings_svc.web.console.page import OPERATIONS_ROLES, REGION_VIEWS, Page, page_for
from warnings_svc.web.console.plot import Point, coverage_map, coverage_plot
from warnings_svc.web.i18n import N_, Message, translate
from warnings_svc.web.metrics import ServiceMetrics
from warnings_svc.web.operations import (
    LenientQuery,
    RequestModel,
    media_reply,
    operation,
    parse_path,
    parse_query,
)

# who sees a warning's panel: the operations view's users and the forecasters (on the warning's page)
PANEL_ROLES: frozenset[Role] = OPERATIONS_ROLES | {Role.forecaster}
# who may apply or decline an escalation step (the coverage API's rule; the button is hidden for others)
ESCALATION_ROLES: frozenset[Role] = frozenset({Role.operations, Role.approver, Role.admin})
MAX_LIVE = 50
EXPIRING_SOON = timedelta(hours=1)  # a warning in force this close to its expiry says so
POLL_SECONDS = 5
# `warnings_circuit_state`'s values, as the gauge's sample gives them
CIRCUIT_NAMES: dict[str, Message] = {
    "0.0": N_("circuit", "closed"),
    "1.0": N_("circuit", "half-open"),
    "2.0": N_("circuit", "open"),
}
PARTNER_CHANNEL_NAMES: dict[str, Message] = {
    "webhook": N_("partner channel", "Partner webhooks"),
    "email": N_("partner channel", "Partner email"),
    "mqtt": N_("partner channel", "Partner MQTT"),
    "sms": N_("partner channel", "SMS to partners and duty contacts"),
}
SMS_CHANNEL_NAMES: dict[str, Message] = {"sms": N_("sms channel", "SMS to registered people")}
ESCALATION_ACTIONS: dict[str, Message] = {
    "area_sms_again": N_("escalation action", "operator area SMS again"),
    "cell_broadcast": N_("escalation action", "cell broadcast"),
    "loudspeakers_again": N_("escalation action", "loudspeakers again"),
    "more_relayers": N_("escalation action", "more relayers"),
}
ESCALATION_STATES: dict[str, Message] = {
    "proposed": N_("escalation state", "proposed"),
    "applied": N_("escalation state", "applied"),
    "declined": N_("escalation state", "declined"),
    "skipped": N_("escalation state", "skipped"),
    "stopped": N_("escalation state", "stopped (target met)"),
}
COVERAGE_BAND_NAMES: tuple[Message, ...] = (
    N_("coverage band", "under 50 %"),
    N_("coverage band", "50-80 %"),
    N_("coverage band", "80-95 %"),
    N_("coverage band", "95 % and more"),
)


@dataclass(frozen=True)
class PanelData:
    """Everything read for one warning's panel."""

    warning: asyncpg.Record
    channels: list[dict[str, Any]]
    measurement: Measurement | None
    series: list[dict[str, Any]]
    escalations: list[dict[str, Any]]
    acknowledgements: list[acks.RequestView]


async def read_panel(
    conn: asyncpg.Connection,
    settings: Settings,
    steps: Sequence[str],
    view: RegionView,
    warning: asyncpg.Record,
) -> PanelData:
    """One warning's deliveries, coverage now and over time, escalations and acknowledgements."""
    warning_id = warning["id"]
    measurement = await measure(conn, warning_id, region_of(view.units), settings.coverage, settings.dispatch)
    return PanelData(
        warning,
        await progress.channel_progress(conn, warning_id),
        measurement,
        await snapshots.series(conn, warning_id),
        await escalation.escalations_of(conn, warning_id),
        await acks.requests_of(conn, now=datetime.now(UTC), steps=steps, warning_id=warning_id),
    )


def channel_name(kind: str, channel: str, lang: str) -> str:
    table = {"sms": SMS_CHANNEL_NAMES, "area": CHANNEL_NAMES, "partner": PARTNER_CHANNEL_NAMES}[kind]
    return name_in(table, channel, lang)


def panel_context(
    page: Page, view: RegionView, data: PanelData, *, now: datetime, full: bool = True
) -> dict[str, Any]:
    """What the panel template shows of one warning; `full` on the operations page (with the warning's title
    and areas), not on the warning's own page."""
    lang = page.lang
    w = data.warning
    warning_id = w["id"]
    m = data.measurement
    figures = m.as_json() if m is not None else None
    target = m.target if m is not None else 0.95
    points = [Point(r["minutes"], r["public"], r["measured"]) for r in data.series]
    if m is not None:
        minutes = max(0.0, (m.now.at - m.warning.issued_at).total_seconds() / 60)
        points.append(Point(minutes, m.now.public, m.now.measured))
    by_area: dict[str, float] = {}
    if figures is not None:
        by_area = {code: a["coverage"] for code, a in figures["by_area"].items()}  # type: ignore[attr-defined]
    left = w["expires"] - now
    escalation_rows = [
        {
            "id": e["id"],
            "checkpoint_min": e["checkpoint_min"],
            "step": e["step"],
            "action": name_in(ESCALATION_ACTIONS, e["action"], lang),
            "state": e["state"],
            "state_name": name_in(ESCALATION_STATES, e["state"], lang),
            "coverage": f"{e['coverage']:.1%}",
            "decided_by": e["decided_by"],
            "created": beijing(datetime.fromisoformat(e["created_at"]), "%m-%d %H:%M"),
            "apply_url": f"/api/v1/warnings/{warning_id}/escalations/{e['id']}/apply",
            "decline_url": f"/api/v1/warnings/{warning_id}/escalations/{e['id']}/decline",
        }
        for e in data.escalations
    ]
    version_key = f"{warning_id}-{w['version']}"
    return {
        "id": warning_id,
        "url": page.url(f"/console/warnings/{warning_id}"),
        "full": full,
        "fragment_url": str(
            URL(f"/console/operations/warnings/{warning_id}").with_query(
                {**({} if full else {"part": "warning"}), **({"lang": "en"} if lang == "en" else {})}
            )
        ),
        "title": warning_title(w["hazard"], w["level"], lang),
        "level": w["level"],
        "version": w["version"],
        "exercise": w["exercise"],
        "areas": area_separator(lang).join(view.name(a, lang) for a in w["areas"]),
        "sent": beijing(w["sent"], "%m-%d %H:%M"),
        "expires": beijing(w["expires"], "%m-%d %H:%M"),
        "expiring": timedelta(0) < left <= EXPIRING_SOON,
        "channels": [r | {"name": channel_name(r["kind"], r["channel"], lang)} for r in data.channels],
        "coverage": None
        if figures is None
        else {
            "public": f"{figures['public']:.1%}",
            "measured": f"{figures['measured']:.1%}",
            "estimated": f"{figures['estimated_or_reported']:.1%}",
            "target": f"{target:.0%}",
            "met": figures["met"],
            "reached": figures["reached"],
            "population": figures["population"],
            "at_10_min": f"{figures['at_10_min']:.1%}",
            "at_30_min": f"{figures['at_30_min']:.1%}",
            "minutes_to_target": figures["minutes_to_target"],
            "method": _method_lines(figures["method"]),
        },
        "plot": coverage_plot(points, target),
        "map": coverage_map(
            view, lang, by_area, band_names=[translate(b, lang) for b in COVERAGE_BAND_NAMES]
        ),
        "escalations": escalation_rows,
        "proposed": [e for e in escalation_rows if e["state"] == "proposed"],
        "can_escalate": page.user.role in ESCALATION_ROLES,
        "acks": acknowledgement_rows(page, data.acknowledgements),
        "links": {
            "cap": f"/api/v1/alerts/{version_key}.cap",
            "gbt": f"/api/v1/alerts/{version_key}.gbt.xml",
            "public": f"/alerts/{version_key}",
        },
        "poll_seconds": POLL_SECONDS,
    }


def circuits(metrics: ServiceMetrics) -> dict[tuple[str, str], str]:
    """The channels' state as the in-process dispatchers' gauges tell it, by (kind, name); empty when no
    dispatcher runs in this process."""
    out: dict[tuple[str, str], str] = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == "warnings_circuit_state":
                out[("sms", s.labels["endpoint"])] = str(s.value)
            elif s.name == "warnings_area_target_up":
                out[("area", f"{s.labels['channel']}/{s.labels['target']}")] = "up" if s.value else "down"
            elif s.name == "warnings_partner_channel_up":
                out[("partner", s.labels["channel"])] = "up" if s.value else "down"
    return out


def service_context(
    page: Page,
    queues: Sequence[Mapping[str, Any]],
    failures: Sequence[Mapping[str, Any]],
    gauges: Mapping[tuple[str, str], str],
) -> dict[str, Any]:
    """The queues, last failures and circuits of the whole service, one row per outbox and channel."""
    lang = page.lang
    keys = sorted({(q["kind"], q["channel"]) for q in queues} | {(f["kind"], f["channel"]) for f in failures})
    by_queue = {(q["kind"], q["channel"]): q for q in queues}
    by_failure = {(f["kind"], f["channel"]): f for f in failures}
    rows = []
    for kind, channel in keys:
        q = by_queue.get((kind, channel))
        f = by_failure.get((kind, channel))
        oldest = q["oldest_s"] if q else None
        rows.append(
            {
                "name": channel_name(kind, channel, lang),
                "waiting": q["waiting"] if q else 0,
                "oldest": "–" if oldest is None else _duration(float(oldest)),
                "failure_at": beijing(f["at"], "%m-%d %H:%M:%S") if f else "",
                "failure": (f["reason"] or "–") if f else "",
                "failure_where": f["endpoint"] if f else "",
            }
        )
    circuit_rows = []
    for (kind, name), value in sorted(gauges.items()):
        shown = name_in(CIRCUIT_NAMES, value, lang) if kind == "sms" else value
        circuit_rows.append(
            {"kind": kind, "name": name, "state": shown, "bad": value in ("2.0", "1.0", "down")}
        )
    return {"queues": rows, "circuits": circuit_rows}


def _method_lines(method: object) -> list[str]:
    """The coverage method (the engine's statement of its formula and assumptions) as lines to show."""
    if isinstance(method, Mapping):
        return [f"{k}: {v}" for k, v in method.items()]
    return [str(method)]


def _duration(seconds: float) -> str:
    """12 s, 4 min 05 s, 2 h 03 min."""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


def _viewer(page: Page, roles: frozenset[Role] = OPERATIONS_ROLES) -> None:
    if page.user.role not in roles:
        raise Forbidden(f"role {page.user.role.value!r} has no operations view")


_HTML = ("text/html",)


class OperationsQuery(LenientQuery):
    """The page's choices; a console page ignores what it does not know (as the other pages do)."""

    lang: Literal[LANGUAGES] | None = None  # type: ignore[valid-type]


class PanelQuery(OperationsQuery):
    part: Literal["warning"] | None = Field(
        None, description="warning: the panel as the warning's own page shows it (without title and areas)"
    )


class PanelPath(RequestModel):
    id: int = Field(ge=1, le=MAX_ID, description="The warning's id")


@operation(
    "The operations view: every warning in force with its delivery per channel, coverage over time and by "
    "town, escalation and acknowledgements; the queues and channels (HTML; operations, approver, admin)",
    query=OperationsQuery,
    responses={
        200: media_reply("The page", *_HTML),
        303: media_reply("Not logged in: on to /console/login?next=..."),
        400: media_reply("A parameter that is not of its form: an error page", *_HTML),
        403: media_reply("A role without the operations view: an error page", *_HTML),
    },
    security=("session",),
)
async def console_operations(request: web.Request) -> web.Response:
    """GET /console/operations: every warning in force with its panel, and the service's queues."""
    page = page_for(request)
    _viewer(page)
    parse_query(request, OperationsQuery)
    app = request.app
    now = datetime.now(UTC)
    steps = app[ISSUING].acknowledgements.steps
    async with app[POOL].acquire() as conn:
        view = await app[REGION_VIEWS].get(conn)
        live = await progress.issued_warnings(conn, live=True, limit=MAX_LIVE)
        panels = [await read_panel(conn, app[SETTINGS], steps, view, w) for w in live]
        queues = await progress.queue_ages(conn)
        failures = await progress.last_failures(conn)
    return page.render(
        "console/operations.html",
        panels=[panel_context(page, view, p, now=now) for p in panels],
        service=service_context(page, queues, failures, circuits(app[METRICS])),
        poll_seconds=POLL_SECONDS,
    )


@operation(
    "One issued warning's operations panel alone, as the operations view and the warning page poll it (HTML "
    "fragment; operations, approver, admin, forecaster)",
    path=PanelPath,
    query=PanelQuery,
    responses={
        200: media_reply("The panel", *_HTML),
        303: media_reply("Not logged in: on to /console/login?next=..."),
        400: media_reply("A parameter that is not of its form: an error page", *_HTML),
        403: media_reply("A role without the panel (department): an error page", *_HTML),
        404: media_reply("No such warning, or none of its versions was issued", *_HTML),
    },
    security=("session",),
)
async def console_panel(request: web.Request) -> web.Response:
    """GET /console/operations/warnings/{id}: one warning's panel alone (what the pages poll)."""
    page = page_for(request)
    _viewer(page, PANEL_ROLES)
    warning_id = parse_path(request, PanelPath).id
    full = parse_query(request, PanelQuery).part != "warning"
    app = request.app
    async with app[POOL].acquire() as conn:
        view = await app[REGION_VIEWS].get(conn)
        found = await progress.issued_warnings(conn, warning_id=warning_id)
        if not found:
            return page.render("console/not_found.html", status=404, warning_id=str(warning_id))
        data = await read_panel(conn, app[SETTINGS], app[ISSUING].acknowledgements.steps, view, found[0])
    return page.render(
        "console/panel.html", p=panel_context(page, view, data, now=datetime.now(UTC), full=full)
    )


def setup_operations(app: web.Application) -> None:
    """Register the operations page and its panel fragment."""
    app.router.add_get("/console/operations", console_operations, name="console_operations")
    app.router.add_get("/console/operations/warnings/{id}", console_panel, name="console_panel")
