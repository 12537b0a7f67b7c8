"""One warning in the console: latest version, impact preview with the departments it calls, edit form, actions
and history."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import partial
from typing import Any

from aiohttp import web

from risk_zoning.unit_tree import inside_any
from warnings_svc.dissemination import area_outbox
from warnings_svc.dissemination.area_outbox import AreaTarget
from warnings_svc.dissemination.partners import acknowledgements as acks
from warnings_svc.dissemination.partners import registry
from warnings_svc.dissemination.partners.registry import DepartmentChain
from warnings_svc.documents.texts import DEFAULT_BUDGETS, TextsError, cbs_pages, sms_length, sms_segments
from warnings_svc.forecast.proposals import proposal_document
from warnings_svc.lifecycle import audit_log, store
from warnings_svc.lifecycle.audit import AuditEntry
from warnings_svc.lifecycle.transitions import Action, ApprovalPolicy, WarningStatus, second_person_levels
from warnings_svc.vocabulary import HAZARD_LEVELS, LEVELS
from warnings_svc.web.appkeys import ISSUING, POOL, SETTINGS
from warnings_svc.web.console.acknowledgements import acknowledgement_rows
from warnings_svc.web.console.labels import (
    AUDIT_ACTIONS,
    CHANNEL_NAMES,
    MSG_TYPE_NAMES,
    RANK_NAMES,
    SECTOR_NAMES,
    STATUS_NAMES,
    VULNERABLE_NAMES,
    beijing,
    level_name,
    name_in,
    warning_title,
)
from warnings_svc.web.console.map import RegionView, area_names, map_context
from warnings_svc.web.console.operations import PANEL_ROLES, panel_context, read_panel
from warnings_svc.web.console.page import EDITABLE, ISSUED_FAMILY, REGION_VIEWS, Page, page_for
from warnings_svc.web.console.progress import issued_warnings

TEXT_LANGUAGES: tuple[str, ...] = store.LANGUAGES  # zh-CN, en
TEXT_FIELDS: tuple[str, ...] = ("headline", "description", "instruction")


async def console_warning(request: web.Request) -> web.Response:
    """GET /console/warnings/{id}: the latest version, impact preview, edit form, actions and history."""
    page = page_for(request)
    raw_id = request.match_info["id"]
    if not (raw_id.isascii() and raw_id.isdigit()) or len(raw_id) > 18:  # int() takes ASCII digits only
        return page.render("console/not_found.html", status=404, warning_id=raw_id)
    warning_id = int(raw_id)
    ctx = request.app[ISSUING]
    async with request.app[POOL].acquire() as conn:
        try:
            versions = await store.versions(conn, warning_id)
        except store.StoreError:
            return page.render("console/not_found.html", status=404, warning_id=raw_id)
        view = await request.app[REGION_VIEWS].get(conn)
        latest = versions[-1]
        audit = [e async for e in audit_log.entries(conn, subject=f"warning:{warning_id}")]
        rendered = await store.rendered_texts(conn, warning_id, latest.state.version)
        proposal = None
        if latest.content.proposal_id is not None:
            proposal = await proposal_document(conn, latest.content.proposal_id)
        inside = [
            c
            for c in view.units
            if c in latest.content.areas or inside_any(c, latest.content.areas, view.units)
        ]
        terminals = await area_outbox.terminals_in(conn, inside)
        progress = await area_outbox.area_summary(conn, warning_id)
        s = latest.state
        called = await registry.departments_in(
            conn, hazard=s.hazard, level=s.level, areas=latest.content.areas, units=view.units
        )
        registry_empty = not called and not await registry.has_departments(conn)
        acknowledged = await acks.requests_of(
            conn, now=datetime.now(UTC), steps=ctx.acknowledgements.steps, warning_id=warning_id
        )
        # an issued warning's delivery, coverage and escalation: the operations panel, kept live by polling
        issued = await issued_warnings(conn, warning_id=warning_id)
        panel = None
        if issued and page.user.role in PANEL_ROLES:
            panel = await read_panel(conn, request.app[SETTINGS], ctx.acknowledgements.steps, view, issued[0])
    texts = await warning_texts(ctx, latest, view, rendered)
    context = warning_context(
        page, view, versions, audit, proposal, texts, called, ctx.policy, registry_empty=registry_empty
    )
    context["acknowledgements"] = acknowledgement_rows(page, acknowledged)
    context["ops"] = (
        None if panel is None else panel_context(page, view, panel, now=datetime.now(UTC), full=False)
    )
    context["call_list_url"] = page.url("/console/acknowledgements")
    goes = {f"{t.channel}/{t.name}" for t in store.area_targets_of(ctx, latest)}
    context["public_channels"] = public_channels(
        page, ctx.area_targets, goes, latest, progress, terminals, context["impact"]["population"]
    )
    if context["form"] is not None and not context["form"]["cancel"]:
        context["form"]["targets"] = [
            {
                "value": f"{t.channel}/{t.name}",
                "name": f"{name_in(CHANNEL_NAMES, t.channel, page.lang)} · {t.name}",
                "checked": f"{t.channel}/{t.name}" in goes,
            }
            for t in ctx.area_targets
        ]
    return page.render("console/warning.html", **context)


def public_channels(
    page: Page,
    targets: Sequence[AreaTarget],
    goes: set[str],
    latest: store.Version,
    progress: Sequence[Mapping[str, Any]],
    terminals: Mapping[str, tuple[int, int]],
    population: int,
) -> list[dict[str, Any]]:
    """A row per target of the area channels: before issue, whether the version goes there (`goes`: chosen,
    or the level's defaults) and what it can reach (people in the areas, the operator's handsets expected,
    terminals and the people they serve); after, where the delivery of the latest version stands and the
    evidence that came back (measured or estimated)."""
    t, lang = page.t, page.lang
    # what the latest version became at each target (its Alert, Update or Cancel; an expiry only takes it back)
    mine = {
        (p["channel"], p["target"]): p
        for p in progress
        if p["version"] == latest.state.version and p["msg_type"] != "Expire"
    }
    rows = []
    for target in targets:
        row: dict[str, Any] = {
            "channel": name_in(CHANNEL_NAMES, target.channel, lang), "target": target.name, "kind": "",
        }  # fmt: skip
        done = mine.get((target.channel, target.name))
        if done is not None:
            row["state"] = done["state"]
            evidence = done["evidence"]
            if evidence is None:
                row["reach"] = done["reason"] or "–"
            else:
                row["reach"] = t["reach_of"].format(
                    delivered=evidence["delivered"], targeted=evidence["targeted"]
                )
                if evidence["people"] is not None:
                    row["reach"] += f" · {t['people_served']} {evidence['people']:,}"
                row["kind"] = t["measured"] if evidence["measured"] else t["estimated"]
        elif f"{target.channel}/{target.name}" not in goes:
            row["state"] = ""
            row["reach"] = t["not_chosen"] if latest.content.area_targets is not None else t["not_at_level"]
        else:
            row["state"] = t["to_go"] if latest.identifier is None else "–"
            if target.channel == "mqtt":
                n, served = terminals.get(target.name, (0, 0))
                row["reach"] = t["terminals_serving"].format(terminals=n, people=f"{served:,}")
            else:
                row["reach"] = t["people_in_areas"].format(people=f"{population:,}")
                if target.handsets_per_person is not None:
                    handsets = round(population * target.handsets_per_person)
                    row["reach"] += " · " + t["handsets_expected"].format(handsets=f"{handsets:,}")
        rows.append(row)
    return rows


async def warning_texts(
    ctx: store.Issuing, latest: store.Version, view: RegionView, rendered: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The channel texts the page shows: those that went out for an issued version, otherwise what the
    version would say if approved now (rendered in a worker thread), or why there is no preview."""
    if latest.state.status in ISSUED_FAMILY and rendered:
        return {"texts": _issued_texts(rendered), "texts_error": "", "texts_kind": "issued_texts"}
    try:
        preview = await asyncio.get_running_loop().run_in_executor(
            None, partial(store.preview, ctx, latest, view.units, now=datetime.now(UTC))
        )
    except (TextsError, store.StoreError) as e:
        return {"texts": {}, "texts_error": str(e), "texts_kind": "preview_now"}
    return {"texts": _preview_texts(preview), "texts_error": "", "texts_kind": "preview_now"}


def warning_context(
    page: Page,
    view: RegionView,
    versions: Sequence[store.Version],
    audit: Sequence[AuditEntry],
    proposal: Mapping[str, Any] | None,
    texts: Mapping[str, Any],
    called: Sequence[DepartmentChain],
    policy: ApprovalPolicy,
    *,
    registry_empty: bool = False,
) -> dict[str, Any]:
    """What the warning page shows, from what was read for it; `called`: the departments the warning calls
    (`registry.departments_in`), `registry_empty` when the registry holds none at all."""
    lang = page.lang
    latest = versions[-1]
    warning_id = latest.warning_id
    s = latest.state
    units = view.units

    impact = store.impact(latest, units, proposal)
    per_area_proposal = {i["code"]: i for i in (proposal or {}).get("impacts", [])}
    impact_areas = [
        {
            "name": view.name(a["code"], lang),
            "population": a["population"],
            "exposed": per_area_proposal.get(a["code"], {}).get("exposed_population"),
            "vulnerable": [
                {"name": name_in(VULNERABLE_NAMES, k, lang), "value": v}
                for k, v in (per_area_proposal.get(a["code"], {}).get("vulnerable") or {}).items()
            ],
        }
        for a in impact["areas"]
    ]
    calls = [department_call(d, view, lang) for d in called]

    in_force = next((v for v in reversed(versions) if v.state.status == WarningStatus.issued), None)
    replaced = in_force if s.msg_type != "Alert" and in_force is not latest else None
    blocking = second_person_levels(s, page.user.name, policy, replaced.state if replaced else None)
    actions = _actions(page, latest, in_force, warning_id, bool(blocking))
    if blocking and actions["approve"]:
        strongest = max(blocking, key=LEVELS.index)
        actions["approve_blocked"] = page.t["two_person"].format(level=level_name(strongest, lang))

    editable = s.status in EDITABLE and page.can(Action.edit)
    form = _edit_form(view, latest, lang, texts["texts"]) if editable else None

    region_map = map_context(
        view,
        lang,
        named_levels={c: s.level for c in latest.content.areas},
        selectable=editable and s.msg_type != "Cancel",
    )
    return {
        "w": {
            "id": warning_id,
            "title": warning_title(s.hazard, s.level, lang),
            "hazard": s.hazard,
            "level": s.level,
            "version": s.version,
            "status": str(s.status),
            "status_name": name_in(STATUS_NAMES, str(s.status), lang),
            "msg_type": name_in(MSG_TYPE_NAMES, s.msg_type, lang),
            "exercise": s.exercise,
            "areas": area_names(view, latest.content.areas, lang=lang),
            "valid": f"{beijing(s.onset, '%Y-%m-%d %H:%M')} – {beijing(s.expires, '%Y-%m-%d %H:%M')}",
            "probability": None
            if latest.content.probability is None
            else round(100 * latest.content.probability),
            "exposed": latest.content.exposed_population,
            "identifier": latest.identifier,
            "sent": beijing(latest.sent, "%Y-%m-%d %H:%M:%S"),
            "created_by": s.created_by,
            "editors": ", ".join(s.editors),
            "approved_by": s.approved_by,
            "approved_at": beijing(s.approved_at, "%Y-%m-%d %H:%M"),
            "approval_comment": s.approval_comment,
            "return_reason": s.return_reason,
            "note": latest.content.note,
            "proposal_id": latest.content.proposal_id,
            "in_force": None
            if in_force is None or in_force is latest
            else {
                "version": in_force.state.version,
                "level": in_force.state.level,
                "title": warning_title(in_force.state.hazard, in_force.state.level, lang),
            },
        },
        "actions": actions,
        "form": form,
        "region_map": region_map,
        "impact": {
            "population": impact["population"],
            "exposed": impact.get("exposed_population"),
            "areas": impact_areas,
            "vulnerable": [
                {"name": name_in(VULNERABLE_NAMES, k, lang), "value": v}
                for k, v in impact["vulnerable"].items()
            ],
            "calls": calls,
            "synthetic": any(d.source == registry.DEMO_SOURCE for d in called),
            "registry_empty": registry_empty,
        },
        **texts,
        "budgets": DEFAULT_BUDGETS,
        "versions": [_version_row(v, lang) for v in versions],
        "timeline": [_timeline_row(e, lang) for e in audit],
    }


def department_call(d: DepartmentChain, view: RegionView, lang: str) -> dict[str, Any]:
    """One department of the impact preview: its area, name and sector, the duty contact first and the
    deputy and leader after (a vacant rank left out)."""
    people = [
        {"rank": name_in(RANK_NAMES, rank, lang), "name": p.name, "phone": p.phone}
        for rank in registry.RANKS
        if (p := d.people.get(rank)) is not None
    ]
    return {
        "unit": view.name(d.area, lang),
        "department": d.name_en if lang == "en" and d.name_en else d.name,
        "sector": name_in(SECTOR_NAMES, d.sector, lang),
        "duty": people[0] if people and d.people.get("duty") else None,
        "others": people[1:] if people and d.people.get("duty") else people,
    }


def _actions(
    page: Page, latest: store.Version, in_force: store.Version | None, warning_id: int, self_approval: bool
) -> dict[str, Any]:
    """Which action forms the page shows (role and status), and their API URLs."""
    s = latest.state
    base = f"/api/v1/warnings/{warning_id}"
    # an Update or Cancel can be started while a version is in force and no successor draft is open
    # (a discarded one does not count)
    live = (
        in_force is not None
        and in_force.state.msg_type != "Cancel"
        and in_force.state.expires > datetime.now(UTC)
        and (latest is in_force or s.status == WarningStatus.discarded)
    )
    shown = {
        "submit": s.status in (WarningStatus.draft, WarningStatus.returned) and page.can(Action.submit),
        "approve": s.status == WarningStatus.pending_approval and page.can(Action.approve),
        "return_for_edit": s.status == WarningStatus.pending_approval and page.can(Action.return_for_edit),
        "discard": s.status in EDITABLE and page.can(Action.discard),
        "start_update": live and page.can(Action.edit),
        "start_cancel": live and page.can(Action.edit),
    }
    paths = {"return_for_edit": "return", "start_update": "update", "start_cancel": "cancel"}
    return {
        **shown,
        "any": any(shown.values()),
        "approve_blocked": "",
        "self_approval": self_approval,
        "urls": {name: f"{base}/{paths.get(name, name)}" for name in shown},
    }


def _edit_form(
    view: RegionView, latest: store.Version, lang: str, texts: Mapping[str, Any]
) -> dict[str, Any]:
    s = latest.state
    chosen = set(latest.content.areas)
    groups = []
    city = [u for u in view.ordered if u.level == "city"]
    for u in view.ordered:
        if u.level == "district":
            groups.append(
                {
                    "district": {
                        "code": u.code,
                        "name": view.name(u.code, lang),
                        "checked": u.code in chosen,
                    },
                    "towns": [
                        {"code": t.code, "name": view.name(t.code, lang), "checked": t.code in chosen}
                        for t in view.ordered
                        if t.parent == u.code
                    ],
                }
            )
    own = latest.content.texts
    return {
        "url": f"/api/v1/warnings/{latest.warning_id}",
        "cancel": s.msg_type == "Cancel",
        "withdraws": s.status == WarningStatus.pending_approval,
        "levels": [
            {"value": lv, "name": level_name(lv, lang), "selected": lv == s.level}
            for lv in HAZARD_LEVELS.get(s.hazard, LEVELS)
        ],
        "onset": beijing(s.onset, "%Y-%m-%dT%H:%M"),
        "expires": beijing(s.expires, "%Y-%m-%dT%H:%M"),
        "city": [
            {"code": u.code, "name": view.name(u.code, lang), "checked": u.code in chosen} for u in city
        ],
        "groups": groups,
        "texts": [
            {
                "lang": tl,
                "fields": [
                    {
                        "name": f"texts.{tl}.{f}",
                        "field": f,
                        "value": own.get(tl, {}).get(f, ""),
                        "placeholder": (texts.get(tl) or {}).get(f, ""),
                    }
                    for f in TEXT_FIELDS
                ],
            }
            for tl in TEXT_LANGUAGES
        ],
        "note": latest.content.note,
        "texts_open": any(own.get(tl, {}).get(f) for tl in TEXT_LANGUAGES for f in TEXT_FIELDS),
    }


def _preview_texts(preview: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for tl, t in preview.items():
        out[tl] = dict(t) | {
            "sms_short_chars": sms_length(t["sms_short"]),
            "sms_short_segments": sms_segments(t["sms_short"]),
            "sms_full_chars": sms_length(t["sms_full"]),
            "broadcast_chars": len(t["broadcast"]),
            "headline_chars": len(t["headline"]),
            "area_desc_chars": len(t["area_desc"]),
            "over": {str(p).split(":", 1)[0] for p in t["budget_problems"]},
        }
    return out


def _issued_texts(rendered: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for tl, t in rendered.items():
        out[tl] = {
            **{
                k: t.get(k, "")
                for k in (
                    "headline",
                    "description",
                    "instruction",
                    "area_desc",
                    "sms_short",
                    "sms_full",
                    "broadcast",
                    "cell_broadcast",
                )
            },
            "sms_full_segments": sms_segments(t.get("sms_full", "")),
            "cell_broadcast_pages": cbs_pages(t.get("cell_broadcast", "")),
            "budget_problems": [],
        }
    return _preview_texts(out)


def _version_row(v: store.Version, lang: str) -> dict[str, Any]:
    s = v.state
    return {
        "version": s.version,
        "msg_type": name_in(MSG_TYPE_NAMES, s.msg_type, lang),
        "status": str(s.status),
        "status_name": name_in(STATUS_NAMES, str(s.status), lang),
        "level": s.level,
        "level_name": level_name(s.level, lang),
        "valid": f"{beijing(s.onset)} – {beijing(s.expires)}",
        "created_by": s.created_by,
        "approved_by": s.approved_by,
        "identifier": v.identifier or "",
        "sent": beijing(v.sent, "%m-%d %H:%M:%S"),
    }


_COMPARED = ("level", "onset", "expires", "areas", "polygons", "texts", "note")


def _timeline_row(entry: AuditEntry, lang: str) -> dict[str, Any]:
    after = entry.after or {}
    before = entry.before or {}
    transition = after.get("transition") or {}
    action = entry.action
    detail = transition.get("reason", "")
    changed = []
    if action == "edit" and before:
        changed = [k for k in _COMPARED if before.get(k) != after.get(k)]
    if action in ("create", "draft_update", "draft_cancel") and after.get("note"):
        detail = after["note"]
    return {
        "at": beijing(entry.at, "%m-%d %H:%M:%S"),
        "actor": entry.actor,
        "action": name_in(AUDIT_ACTIONS, action, lang),
        "version": transition.get("version", after.get("version")),
        "from": name_in(STATUS_NAMES, transition.get("from", ""), lang),
        "to": name_in(STATUS_NAMES, transition.get("to", ""), lang),
        "detail": detail,
        "changed": changed,
    }
