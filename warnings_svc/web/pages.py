"""The first page: the region's risk maps and assessment units, provenance, and, for a logged-in user, the open
warning proposals (internal until a warning is issued)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg
from aiohttp import web
from pydantic import Field, field_validator

from risk_zoning import BEIJING, GRADE_NAMES_EN, GRADE_NAMES_ZH, HAZARD_NAMES, HAZARDS
from risk_zoning.store import LEVELS, RiskDatabase
from risk_zoning.unit_tree import tree_order
from warnings_svc.forecast.proposals import open_proposal_documents
from warnings_svc.forecast.scoring import ACTION_NAMES
from warnings_svc.vocabulary import LEVEL_NAMES as WARNING_LEVEL_NAMES
from warnings_svc.web.appkeys import POOL, RISK_DATABASE, TEMPLATES
from warnings_svc.web.auth import LANGUAGES, SCOPES, USER, login_location
from warnings_svc.web.i18n import N_, Message, other_language, translate
from warnings_svc.web.operations import LenientQuery, media_reply, operation, parse_query
from warnings_svc.web.public_cache import PUBLIC_CACHE, RISK_ONLY, Rendered


class PageQuery(LenientQuery):
    """The first page's query: a person typed it, so an unknown language shows the default page."""

    lang: Literal[LANGUAGES] = Field("zh", description="Language of the page")  # type: ignore[valid-type]

    @field_validator("lang", mode="before")
    @classmethod
    def _known_or_default(cls, value: object) -> object:
        return value if value in LANGUAGES else "zh"


def proposal_rows(rows: Sequence[asyncpg.Record], db: RiskDatabase, lang: str) -> list[dict[str, Any]]:
    """Open proposals as the first page lists them."""
    names = {u.code.strip(): (u.name, u.name_en) for u in db.units}
    out = []
    for row in rows:
        doc = json.loads(row["document"])
        out.append(
            {
                "id": row["id"],
                "hazard": _hazard(doc["hazard"], lang),
                "level": doc["level"],
                "level_name": _text(WARNING_LEVEL_NAMES[doc["level"]], lang),
                "action": _text(ACTION_NAMES[doc["action"]], lang),
                "areas": [_text(names.get(a, (a, a)), lang).main for a in doc["areas"]],
                "onset": datetime.fromisoformat(doc["onset"]).astimezone(BEIJING).strftime("%m-%d %H:%M"),
                "expires": datetime.fromisoformat(doc["expires"]).astimezone(BEIJING).strftime("%m-%d %H:%M"),
                "probability": round(100 * doc["probability"]),
                "exposed": doc["exposed_population"],
                "run": datetime.fromisoformat(row["reference_time"])
                .astimezone(BEIJING)
                .strftime("%Y-%m-%d %H:%M"),
            }
        )
    return out


@operation(
    "First page: risk maps, assessment units, totals and provenance (HTML); the open proposals too when "
    "logged in",
    query=PageQuery,
    responses={200: media_reply("HTML page", "text/html")},
    problems=(401, 503),
    security=("bearer", "session"),
    login_optional=True,
    description="Anyone may read it; proposals are internal until a warning is issued, so only a logged-in "
    "user (any role, the read scope) sees them, the others a link to log in.",
)
async def index(request: web.Request) -> web.Response:
    """The first page: the region's risk maps, assessment units, totals, provenance; the open warning
    proposals only for a logged-in user (any role, the read scope)."""
    if request[USER] is None:
        # Everybody not logged in who asks for the same URL gets the same page: rendered once per risk
        # database version (`web.public_cache`). The target names the language and the login link's `next`.
        cache = request.app[PUBLIC_CACHE]
        key = ("index", request.raw_path)
        rendered = await cache.answer(key, lambda: _anonymous_page(request), route="index")
        return rendered.response(request)
    lang = parse_query(request, PageQuery).lang
    db = await request.app[RISK_DATABASE].get()
    may_see_proposals = "read" in request[SCOPES]
    proposals = None  # not shown: the page says to log in
    if may_see_proposals:
        async with request.app[POOL].acquire() as conn:
            rows = await open_proposal_documents(conn)
        proposals = proposal_rows(rows, db, lang)
    html = _page(request, db, lang, proposals)
    # a page with proposals is one user's: no shared cache may keep it and show it to the next person
    headers = {"Cache-Control": "private, no-store"} if may_see_proposals else {"Vary": "Cookie"}
    return web.Response(text=html, content_type="text/html", headers=headers)


async def _anonymous_page(request: web.Request) -> Rendered:
    lang = parse_query(request, PageQuery).lang
    db = await request.app[RISK_DATABASE].get()
    html = _page(request, db, lang, None)
    return Rendered(html.encode(), "text/html; charset=utf-8", {"Vary": "Cookie"}, depends_on=RISK_ONLY)


def _page(request: web.Request, db: RiskDatabase, lang: str, proposals: list[dict[str, Any]] | None) -> str:
    page = risk_page(db, lang)
    page["proposals"] = proposals
    page["login_url"] = login_location(request) + (f"&lang={lang}" if lang != "zh" else "")
    return str(
        request.app[TEMPLATES].get_template("index.html").render(page=page, L=page["labels"], lang=lang)
    )


# ---------------------------------------------------------------------------------------------- first page

# The first page's texts by key; the page shows each in its language with the other language as a subtitle.
LABELS: dict[str, Message] = {
    "title": N_("first page", "Meteorological disaster risk zoning"),
    "maps": N_("first page", "Risk maps"),
    "proposals": N_("first page", "Warning proposals (open)"),
    "no_proposals": N_("first page", "No open proposals"),
    "log_in_for_proposals": N_("first page", "Log in to see open proposals"),
    "action": N_("first page", "Action"),
    "warning_level": N_("first page: warning level", "Level"),
    "areas": N_("first page", "Areas"),
    "valid": N_("first page", "Onset - expires"),
    "probability": N_("first page", "Probability"),
    "exposed": N_("first page", "Exposed people"),
    "run": N_("first page", "Forecast run"),
    "units": N_("first page", "Assessment units"),
    "totals": N_("first page", "Totals"),
    "population_by_grade": N_("first page", "Population by risk grade"),
    "provenance": N_("first page", "Provenance"),
    "code": N_("first page", "Code"),
    "name": N_("first page", "Name"),
    "level": N_("first page", "Level"),
    "population": N_("first page", "Population"),
    "area": N_("first page", "Area (km²)"),
    "boundary": N_("first page", "Boundary"),
    "count": N_("first page", "Units"),
    "hazard": N_("first page", "Hazard"),
    "version": N_("first page", "Version"),
    "built": N_("first page", "Built"),
    "risk_index": N_("first page", "Risk index"),
    "api": N_("first page", "API"),
    "synthetic": N_("first page", "Demo data: these inputs are synthetic, not for operational use"),
}
LEVEL_NAMES: dict[str, Message] = {
    "city": N_("unit level", "City"),
    "district": N_("unit level", "District"),
    "town": N_("unit level", "Town"),
}
BOUNDARY_NAMES: dict[str, Message] = {
    "official": N_("boundary", "official"),
    "approximate": N_("boundary", "approximate"),
}


@dataclass(frozen=True)
class Text:
    """A label in the page's language with its subtitle in the other one."""

    main: str
    sub: str


def _text(pair: tuple[str, str], lang: str) -> Text:
    zh, en = pair
    return Text(zh, en) if lang == "zh" else Text(en, zh)


def _label(message: Message, lang: str) -> Text:
    return Text(translate(message, lang), translate(message, other_language(lang)))


def _named(table: dict[str, Message], key: str, lang: str) -> Text:
    message = table.get(key)
    return Text(key, key) if message is None else _label(message, lang)


def _hazard(hazard: str, lang: str) -> Text:
    return _text((HAZARD_NAMES["zh"][hazard], HAZARD_NAMES["en"][hazard]), lang)


def _grade(grade: int, lang: str) -> Text:
    return _text((GRADE_NAMES_ZH[grade], GRADE_NAMES_EN[grade]), lang)


def risk_page(db: RiskDatabase, lang: str) -> dict[str, Any]:
    """Everything the first page shows, as plain values (the template only lays them out)."""
    region_en = str(db.config.get("region", {}).get("name_en") or db.region.title())
    hazards = [{"key": h, "name": _hazard(h, lang)} for h in HAZARDS]
    rows = []
    for u in tree_order(db.units):
        grades = []
        for h in HAZARDS:
            risk = db.unit_risk.get(h, {}).get(u.code)
            grades.append(
                None if risk is None else {"grade": risk[1], "name": _grade(risk[1], lang), "index": risk[0]}
            )
        rows.append(
            {
                "code": u.code.strip(),
                "name": _text((u.name, u.name_en), lang),
                "level": _named(LEVEL_NAMES, u.level, lang),
                "level_key": u.level,
                "population": u.population,
                "area_km2": u.area_km2,
                "boundary": u.boundary,
                "boundary_name": _named(BOUNDARY_NAMES, u.boundary, lang),
                "code_status": u.code_status,
                "grades": grades,
            }
        )
    totals = [
        {
            "level": _named(LEVEL_NAMES, level, lang),
            "count": len(at_level),
            "population": sum(u.population for u in at_level),
            "area_km2": sum(u.area_km2 for u in at_level),
        }
        for level in LEVELS
        if (at_level := [u for u in db.units if u.level == level])
    ]
    return {
        "lang": lang,
        "other_lang": other_language(lang),
        "labels": {key: _label(message, lang) for key, message in LABELS.items()},
        "region": _text((db.region_name, region_en), lang),
        "region_code": db.region_code,
        "version_id": db.version_id,
        "built": db.created_at.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M (UTC+08:00)"),
        "hazards": hazards,
        "grades": [{"grade": g, "name": _grade(g, lang)} for g in range(1, len(GRADE_NAMES_ZH))],
        "rows": rows,
        "totals": totals,
        "population_by_grade": _population_by_grade(db, lang),
        "provenance": provenance_items(db.provenance),
        "synthetic": synthetic_inputs(db.provenance),
    }


def synthetic_inputs(provenance: dict[str, Any]) -> list[str]:
    """Names of the inputs the provenance marks as synthetic (demo data, not for operational use)."""
    return sorted(
        key
        for key, value in provenance.items()
        if value == "synthetic"
        or (isinstance(value, dict) and (value.get("synthetic") or value.get("source") == "synthetic"))
    )


def _population_by_grade(db: RiskDatabase, lang: str) -> list[dict[str, Any]]:
    """Residents per risk grade and hazard, summed over the coarsest level (whose units cover the region)."""
    top = next((level for level in LEVELS if any(u.level == level for u in db.units)), None)
    codes = [u.code for u in db.units if u.level == top]
    table = []
    for h in HAZARDS:
        by_unit = db.unit_population_by_grade.get(h, {})
        sums = [sum(by_unit.get(code, [0] * 5)[g] for code in codes) for g in range(5)]
        table.append({"name": _hazard(h, lang), "population": sums})
    return table


PROVENANCE_VALUE_CHARS = 1200


def provenance_items(provenance: Any, prefix: str = "", depth: int = 2) -> list[tuple[str, str]]:
    """(key path, short text) pairs for a provenance document of any shape, `depth` levels of keys at most.

    >>> provenance_items({"population": {"source": "synthetic", "year": 2021}, "towns": "approximate"})
    [('population › source', 'synthetic'), ('population › year', '2021'), ('towns', 'approximate')]
    """
    if isinstance(provenance, dict) and depth > 0:
        items: list[tuple[str, str]] = []
        for key, value in sorted(provenance.items()):
            items.extend(provenance_items(value, f"{prefix} › {key}" if prefix else str(key), depth - 1))
        return items
    return [(prefix, _short_text(provenance))]


def _short_text(value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        text = ", ".join(str(v) for v in value)
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= PROVENANCE_VALUE_CHARS else text[: PROVENANCE_VALUE_CHARS - 1] + "…"
