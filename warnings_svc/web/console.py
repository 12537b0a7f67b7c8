"""The forecaster console: proposals and warnings on a map of the region, one page per warning with its impact
preview, history and the lifecycle actions (server-rendered; `static/console.js` calls the write API).

Pages are rendered here from the same store functions the API uses; every change goes through the write API
(`api_warnings`), so roles, the two-person rule and budgets are enforced in one place. The page only hides
what the user's role cannot do and explains a disabled approval.

Decisions where the issue is silent:

- The map is inline SVG drawn from the risk database's unit outlines (longitude scaled by cos(latitude)),
  cached per risk database version: no tiles, no fonts, no network. A unit is filled with the colour of the
  highest warning in force (issued, not an exercise) that names it or a unit around it; open proposals are
  dashed outlines of their polygons (of their areas when they have none).
- Chinese by default; ``?lang=en`` switches and is remembered in a cookie (links carry it too).
- Responders come from ``config/responders.toml``, synthetic demo data labelled as such on the page; a unit's
  posts are called when a warning names the unit, a town inside it or the city around it.
- An issued version shows the texts that went out (stored at issue); any other shows what it would say if
  approved now (`warning_store.preview`), with budget problems in red.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
import shapely
import shapely.geometry
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from risk_zoning import BEIJING, HAZARD_NAMES
from risk_zoning.errors import DatabaseError
from risk_zoning.io.tomlfile import read_toml
from risk_zoning.store import UnitRecord, current_version, load_version
from risk_zoning.unit_tree import ancestors, geocode_ancestors, tree_order
from warnings_svc.documents.texts import DEFAULT_BUDGETS, TextsError, cbs_pages, sms_length, sms_segments
from warnings_svc.forecast.proposals import proposal_document
from warnings_svc.forecast.scoring import ACTION_NAMES
from warnings_svc.lifecycle import store
from warnings_svc.lifecycle.transitions import PERMISSIONS, Action, WarningStatus, second_person_levels
from warnings_svc.vocabulary import HAZARD_LEVELS, LEVEL_COLOURS, LEVEL_NAMES, LEVELS
from warnings_svc.web.accounts import User
from warnings_svc.web.api.warnings import ISSUING
from warnings_svc.web.appkeys import POOL, SETTINGS, TEMPLATES
from warnings_svc.web.auth import CSRF, LANGUAGES, USER, login_location
from warnings_svc.web.events import OPENAPI_PATHS as EVENTS_OPENAPI_PATHS
from warnings_svc.web.events import setup_events

log = logging.getLogger(__name__)

LANG_COOKIE = "console_lang"
MAP_WIDTH = 640.0
MAP_MARGIN = 0.03  # of the region's extent, on each side
MAX_PROPOSALS = 50
MAX_WARNINGS = 300
TEXT_LANGUAGES: tuple[str, ...] = store.LANGUAGES  # zh-CN, en
TEXT_FIELDS: tuple[str, ...] = ("headline", "description", "instruction")
EDITABLE: frozenset[WarningStatus] = frozenset(
    {WarningStatus.draft, WarningStatus.pending_approval, WarningStatus.returned}
)
ISSUED_FAMILY: frozenset[WarningStatus] = frozenset(
    {WarningStatus.issued, WarningStatus.updated, WarningStatus.cancelled, WarningStatus.expired}
)
# Console pages are ours alone: no framing (clickjacking of the approve button), scripts and styles only
# from this site, no inline script.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# ---------------------------------------------------------------------------------------------- labels

# key -> (Chinese, English)
LABELS: dict[str, tuple[str, str]] = {
    "console": ("预警业务控制台", "Warning console"),
    "region": ("乌海市", "Wuhai"),
    "map": ("预警地图", "Warning map"),
    "map_legend_live": ("生效中的预警", "Warnings in force"),
    "map_legend_proposal": ("预警建议（虚线）", "Proposals (dashed)"),
    "map_legend_draft": ("草稿、待批和退回的预警（点线）", "Drafts, awaiting approval or returned (dotted)"),
    "map_none": ("无", "none"),
    "proposals": ("待处理的预警建议", "Open proposals"),
    "no_proposals": ("暂无待处理的预警建议", "No open proposals"),
    "warnings": ("预警", "Warnings"),
    "drafts": ("草稿", "Drafts"),
    "pending": ("待审批", "Pending approval"),
    "returned": ("已退回", "Returned"),
    "issued": ("已发布（生效中）", "Issued (in force)"),
    "none": ("无", "none"),
    "hazard": ("灾种", "Hazard"),
    "level": ("级别", "Level"),
    "action": ("建议操作", "Action"),
    "areas": ("区域", "Areas"),
    "valid": ("起止时间（北京时间）", "Onset – expires (Beijing time)"),
    "onset": ("开始时间（北京时间）", "Onset (Beijing time)"),
    "expires": ("结束时间（北京时间）", "Expires (Beijing time)"),
    "probability": ("概率", "Probability"),
    "exposed": ("暴露人口", "Exposed people"),
    "run": ("预报起报", "Forecast run"),
    "create_draft": ("创建草稿", "Create draft"),
    "replaces": ("变更预警", "Changes warning"),
    "status": ("状态", "Status"),
    "version": ("版本", "Version"),
    "updated": ("更新于", "Updated"),
    "by": ("经办", "By"),
    "exercise": ("演练", "exercise"),
    "live": ("实时更新", "Live"),
    "live_connecting": ("连接中…", "Connecting…"),
    "live_off": ("已断开，正在重连", "Disconnected, retrying"),
    "lang_other": ("English", "中文"),
    "logout": ("退出", "Sign out"),
    "back": ("返回控制台", "Back to the console"),
    "colleague_changed": (
        "同事已更新此预警。您的编辑尚未保存：",
        "A colleague has changed this warning. Your edits are not saved yet:",
    ),
    "reload": ("重新载入", "Reload"),
    "facts": ("当前版本", "Latest version"),
    "msg_type": ("消息类型", "Message type"),
    "identifier": ("标识符", "Identifier"),
    "sent": ("发布时间", "Sent"),
    "created_by": ("创建人", "Created by"),
    "editors": ("编辑人", "Edited by"),
    "approved_by": ("批准人", "Approved by"),
    "approval_comment": ("批准意见", "Approval comment"),
    "return_reason": ("退回原因", "Reason for return"),
    "note": ("备注", "Note"),
    "in_force": ("生效中的版本", "Version in force"),
    "edit": ("编辑", "Edit"),
    "edit_withdraws": (
        "保存修改会撤回审批申请，需重新提交。",
        "Saving withdraws the submission; submit it again afterwards.",
    ),
    "cancel_edit_note": ("解除消息只能修改备注（解除原因）。", "A Cancel message only takes a note (why)."),
    "whole_city": ("全市", "whole city"),
    "texts": ("自定义文本（留空则使用模板）", "Own texts (empty: the template's)"),
    "headline": ("标题", "Headline"),
    "description": ("描述", "Description"),
    "instruction": ("防御指南", "Instruction"),
    "save": ("保存修改", "Save changes"),
    "actions": ("操作", "Actions"),
    "submit": ("提交审批", "Submit for approval"),
    "approve": ("批准并发布", "Approve and issue"),
    "comment": ("批准意见（可选）", "Comment (optional)"),
    "return": ("退回修改", "Return for edit"),
    "reason": ("退回原因（必填）", "Reason (required)"),
    "discard": ("作废草稿", "Discard"),
    "discard_confirm": ("确定作废此版本？", "Discard this version?"),
    "start_update": ("起草更新", "Start an Update"),
    "start_cancel": ("起草解除", "Start a Cancel"),
    "cancel_note": ("解除原因", "Why it is cancelled"),
    "no_actions": ("您的角色在此状态下无可用操作。", "Your role has nothing to do at this status."),
    "two_person": (
        "双人规则：您创建或编辑过此{level}预警，须由另一位审批人批准。",
        "Two-person rule: you created or edited this {level} warning, so another approver must approve it.",
    ),
    "impact": ("影响预评估", "Impact preview"),
    "population": ("覆盖人口", "Population covered"),
    "area_population": ("人口", "Population"),
    "vulnerable": ("脆弱人群与承灾体", "Vulnerable groups and assets"),
    "vulnerable_none": ("无（非由建议生成）", "none (not from a proposal)"),
    "responders": ("将通知的责任部门与责任人", "Departments and duty posts to be called"),
    "responders_none": ("无匹配的责任部门", "No department responds to this warning"),
    "department": ("部门", "Department"),
    "post": ("责任人", "Duty post"),
    "phone": ("电话", "Phone"),
    "unit": ("区域", "Area"),
    "demo_data": ("示例数据/demo data", "demo data/示例数据"),
    "channels": ("渠道文本与短信条数", "Channel texts and SMS segments"),
    "preview_now": ("若此刻批准将发布的文本", "What it would say if approved now"),
    "issued_texts": ("已发布的文本", "The texts issued"),
    "preview_unavailable": ("无法生成预览：", "No preview: "),
    "sms_short": ("短信（单条）", "SMS (one segment)"),
    "sms_full": ("短信（完整）", "SMS (full)"),
    "segments": ("条", "segments"),
    "chars": ("字", "characters"),
    "pages": ("页", "pages"),
    "broadcast": ("广播稿", "Broadcast script"),
    "cell_broadcast": ("小区广播", "Cell broadcast"),
    "area_desc": ("区域描述", "Area description"),
    "budget_problems": ("超出预算", "Over budget"),
    "history": ("历史", "History"),
    "versions": ("版本", "Versions"),
    "timeline": ("操作记录", "Timeline"),
    "time": ("时间", "Time"),
    "who": ("人员", "Who"),
    "what": ("操作", "What"),
    "detail": ("说明", "Detail"),
    "changed": ("修改了", "changed"),
    "open": ("打开", "Open"),
    "not_found": ("没有这条预警", "No such warning"),
    "noscript": ("控制台的操作需要启用 JavaScript。", "The console's actions need JavaScript."),
    "field": ("字段", "field"),
    "no_changes": ("没有修改。", "Nothing changed."),
    "error": ("出错了", "Something went wrong"),
    "network_error": ("网络错误，请重试。", "Network error; try again."),
}

STATUS_NAMES: dict[str, tuple[str, str]] = {
    "draft": ("草稿", "draft"),
    "pending_approval": ("待审批", "pending approval"),
    "returned": ("已退回", "returned"),
    "issued": ("已发布", "issued"),
    "updated": ("已被更新", "updated"),
    "cancelled": ("已解除", "cancelled"),
    "expired": ("已过期", "expired"),
    "discarded": ("已作废", "discarded"),
}
ROLE_NAMES: dict[str, tuple[str, str]] = {
    "forecaster": ("预报员", "forecaster"),
    "approver": ("审批人（首席）", "approver (chief)"),
    "operations": ("运维", "operations"),
    "department": ("部门用户", "department"),
    "admin": ("管理员", "admin"),
}
MSG_TYPE_NAMES: dict[str, tuple[str, str]] = {
    "Alert": ("首次发布", "Alert"),
    "Update": ("更新", "Update"),
    "Cancel": ("解除", "Cancel"),
}
AUDIT_ACTIONS: dict[str, tuple[str, str]] = {
    "create": ("创建草稿", "created the draft"),
    "edit": ("编辑", "edited"),
    "submit": ("提交审批", "submitted"),
    "approve": ("批准并发布", "approved and issued"),
    "return_for_edit": ("退回修改", "returned for edit"),
    "discard": ("作废", "discarded"),
    "draft_update": ("起草更新", "started an Update"),
    "draft_cancel": ("起草解除", "started a Cancel"),
    "update": ("被更新取代", "superseded by an Update"),
    "cancel": ("被解除", "cancelled"),
    "expire": ("到期", "expired"),
}
VULNERABLE_NAMES: dict[str, tuple[str, str]] = {
    "elderly_65plus": ("65岁以上老人（人）", "people aged 65+"),
    "outdoor_workers": ("户外作业人员（人）", "outdoor workers"),
    "mining_area_km2": ("矿区面积（km²）", "mining area (km²)"),
    "people_in_gully_zones": ("山洪沟道区人口（人）", "people in gully zones"),
    "cropland_km2": ("耕地面积（km²）", "cropland (km²)"),
    "road_exposure_km2": ("暴露道路面积（km²）", "road exposure (km²)"),
}
# Strings the page's JavaScript shows (handed over as JSON, never as inline script).
SCRIPT_LABELS: tuple[str, ...] = (
    "live",
    "live_connecting",
    "live_off",
    "discard_confirm",
    "field",
    "no_changes",
    "error",
    "network_error",
    "reason",
)


def _pick(pair: tuple[str, str], lang: str) -> str:
    return pair[0] if lang == "zh" else pair[1]


def labels(lang: str) -> dict[str, str]:
    """Every console label in one language."""
    return {key: _pick(pair, lang) for key, pair in LABELS.items()}


def hazard_name(hazard: str, lang: str) -> str:
    return HAZARD_NAMES[lang].get(hazard, hazard)


def level_name(level: str, lang: str) -> str:
    return _pick(LEVEL_NAMES.get(level, (level, level)), lang)


def warning_title(hazard: str, level: str, lang: str) -> str:
    """``高温橙色预警`` / ``Heat orange warning``."""
    if lang == "zh":
        return f"{hazard_name(hazard, lang)}{level_name(level, lang)}预警"
    return f"{hazard_name(hazard, lang)} {level_name(level, lang)} warning"


def beijing(t: datetime | None, fmt: str = "%m-%d %H:%M") -> str:
    """A time as Beijing wall-clock text (empty for None)."""
    return "" if t is None else t.astimezone(BEIJING).strftime(fmt)


# ---------------------------------------------------------------------------------------------- responders

Hazard = Literal["heat", "rainstorm", "frost", "sandstorm"]
Level = Literal["blue", "yellow", "orange", "red"]
Geocode = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Department(_Model):
    """A department, the hazards it responds to and the lowest level that calls it."""

    name: Text
    name_en: Text
    hazards: Annotated[tuple[Hazard, ...], Field(min_length=1)]
    min_level: Level = "blue"

    def responds_to(self, hazard: str, level: str) -> bool:
        return hazard in self.hazards and LEVELS.index(level) >= LEVELS.index(self.min_level)


class Contact(_Model):
    """A duty post of a department for one unit (never a named person in the demo data)."""

    department: Text
    post: Text
    post_en: Text
    phone: Text


class UnitContacts(_Model):
    name: Text
    name_en: Text
    contacts: tuple[Contact, ...]


class Responders(_Model):
    """The responder registry: departments, and the posts of each city or district."""

    synthetic: bool
    note: str = ""
    departments: dict[str, Department]
    units: dict[Geocode, UnitContacts]

    @model_validator(mode="after")
    def _known_departments(self) -> Responders:
        for code, unit in self.units.items():
            for i, contact in enumerate(unit.contacts):
                if contact.department not in self.departments:
                    known = ", ".join(sorted(self.departments))
                    raise ValueError(
                        f"units.{code}.contacts.{i}.department: unknown department {contact.department!r}; "
                        f"known: {known}"
                    )
        return self


class ResponderError(Exception):
    """An unusable responder registry; `str()` is one line naming the file and the key at fault."""

    def __init__(self, source: str | Path, problem: str) -> None:
        super().__init__(f"{source}: {problem}")


def default_responders_path() -> Path:
    """The packaged demo registry."""
    return Path(str(resources.files("warnings_svc") / "config" / "responders.toml"))


def load_responders(path: Path | None = None) -> Responders:
    """The registry in `path` (default: the packaged demo data), validated; `ResponderError` in one line."""
    path = path or default_responders_path()
    raw = read_toml(path, ResponderError)
    try:
        return Responders.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        problem = "missing" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        raise ResponderError(path, f"{where}: {problem}" if where else problem) from e


@dataclass(frozen=True)
class Call:
    """One post to be called for a warning."""

    unit: str
    department: str
    post: str
    phone: str


def responders_for(
    registry: Responders,
    hazard: str,
    level: str,
    areas: Iterable[str],
    units: Mapping[str, UnitRecord],
    lang: str,
) -> list[Call]:
    """The posts a warning calls: of every registry unit that is one of the areas, inside one, or around one,
    whose department responds to the hazard at this level; in registry order, each post once.

    >>> reg = Responders.model_validate({"synthetic": True, "departments": {"e": {"name": "应急管理局",
    ...     "name_en": "EMB", "hazards": ["heat"]}}, "units": {"150302000000": {"name": "海勃湾区",
    ...     "name_en": "Haibowan", "contacts": [{"department": "e", "post": "值班员", "post_en": "duty officer",
    ...     "phone": "0"}]}}})
    >>> [c.department for c in responders_for(reg, "heat", "yellow", ["150302001000"], {}, "zh")]
    ['应急管理局']
    """
    named = set(areas)
    around = {a for code in named for a in _ancestors(code, units)}  # units an area lies in
    calls: list[Call] = []
    for code, unit in registry.units.items():
        if code not in named and code not in around and not named & set(_ancestors(code, units)):
            continue
        for c in unit.contacts:
            dept = registry.departments[c.department]
            if dept.responds_to(hazard, level):
                calls.append(
                    Call(
                        unit=unit.name if lang == "zh" else unit.name_en,
                        department=dept.name if lang == "zh" else dept.name_en,
                        post=c.post if lang == "zh" else c.post_en,
                        phone=c.phone,
                    )
                )
    return list(dict.fromkeys(calls))


def _ancestors(code: str, units: Mapping[str, UnitRecord]) -> list[str]:
    """The units around `code`, nearest first: from the unit tree, or from the geocode's digits when the risk
    database does not know the code (the responders file may name one it does not have)."""
    return ancestors(code, units) if code in units else geocode_ancestors(code)


# ---------------------------------------------------------------------------------------------- the map


@dataclass(frozen=True)
class Projection:
    """Longitude and latitude to SVG pixels: equirectangular with longitude scaled by cos(mid latitude)."""

    lon0: float
    lat1: float
    kx: float
    ky: float
    width: float
    height: float

    @classmethod
    def fit(cls, bounds: tuple[float, float, float, float], width: float = MAP_WIDTH) -> Projection:
        """The projection that fits `bounds` (min lon, min lat, max lon, max lat) into `width` pixels."""
        lon0, lat0, lon1, lat1 = bounds
        dx, dy = (lon1 - lon0) * MAP_MARGIN, (lat1 - lat0) * MAP_MARGIN
        lon0, lon1, lat0, lat1 = lon0 - dx, lon1 + dx, lat0 - dy, lat1 + dy
        c = math.cos(math.radians((lat0 + lat1) / 2))
        k = width / ((lon1 - lon0) * c)
        return cls(lon0, lat1, k * c, k, width, round((lat1 - lat0) * k, 1))

    def __call__(self, lon: float, lat: float) -> tuple[float, float]:
        return round((lon - self.lon0) * self.kx, 1), round((self.lat1 - lat) * self.ky, 1)


def geometry_path(geometry: Mapping[str, Any], project: Projection) -> str:
    """SVG path data of a GeoJSON Polygon or MultiPolygon (every ring closed; holes by the even-odd rule).

    >>> p = Projection(0.0, 1.0, 100.0, 100.0, 100.0, 100.0)
    >>> geometry_path({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}, p)
    'M0.0 100.0L100.0 100.0L100.0 0.0Z'
    """
    kind = geometry.get("type")
    if kind == "Polygon":
        polygons = [geometry["coordinates"]]
    elif kind == "MultiPolygon":
        polygons = geometry["coordinates"]
    elif kind == "GeometryCollection":
        return "".join(geometry_path(g, project) for g in geometry.get("geometries", []))
    else:
        return ""
    parts = []
    for rings in polygons:
        for ring in rings:
            points = [project(lon, lat) for lon, lat, *_ in ring]
            if len(points) > 1 and points[0] == points[-1]:
                points.pop()
            if len(points) >= 3:
                parts.append("M" + "L".join(f"{x} {y}" for x, y in points) + "Z")
    return "".join(parts)


@dataclass(frozen=True)
class RegionView:
    """The region's units as the console draws and lists them (one per risk database version)."""

    version_id: int
    units: dict[str, UnitRecord]
    ordered: tuple[UnitRecord, ...]  # city, then each district followed by its towns
    projection: Projection
    paths: dict[str, str]
    label_points: dict[str, tuple[float, float]]

    @classmethod
    def build(cls, version_id: int, units: Sequence[UnitRecord]) -> RegionView:
        by_code = {u.code: u for u in units}
        shapes = {u.code: shapely.geometry.shape(u.geometry) for u in units}
        drawn = [u for u in units if u.level != "city"] or list(units)
        minx, miny, maxx, maxy = shapely.union_all([shapes[u.code] for u in drawn]).bounds
        projection = Projection.fit((minx, miny, maxx, maxy))
        paths = {u.code: geometry_path(u.geometry, projection) for u in units}
        labels = {}
        for u in units:
            p = shapely.point_on_surface(shapes[u.code])
            labels[u.code] = projection(p.x, p.y)
        return cls(version_id, by_code, tuple(tree_order(units)), projection, paths, labels)

    def name(self, code: str, lang: str) -> str:
        u = self.units.get(code)
        if u is None:
            return code
        return u.name if lang == "zh" else u.name_en

    def effective_levels(self, named: Mapping[str, str]) -> dict[str, str]:
        """Each unit's highest level among those named for it or for a unit around it."""
        out: dict[str, str] = {}
        for code in self.units:
            levels = [named[c] for c in [code, *ancestors(code, self.units)] if c in named]
            if levels:
                out[code] = max(levels, key=LEVELS.index)
        return out


class RegionViews:
    """The current `RegionView`, rebuilt only when the region's risk database version changes."""

    def __init__(self, region: str) -> None:
        self._region = region
        self._view: RegionView | None = None
        self._lock = asyncio.Lock()

    async def get(self, conn: asyncpg.Connection) -> RegionView:
        version = await current_version(conn, self._region)
        if version is None:
            raise DatabaseError(f"no risk database for region {self._region!r}: run `risk-zoning build`")
        if self._view is not None and self._view.version_id == version:
            return self._view
        async with self._lock:
            if self._view is None or self._view.version_id != version:
                db = await load_version(conn, version, arrays=False)
                self._view = await asyncio.get_running_loop().run_in_executor(
                    None, RegionView.build, version, db.units
                )
            return self._view


# stroke-dasharray by kind, drawn in this order (proposals on top); drafts are round dots (round caps)
OUTLINE_DASHES = {"draft": "0.1 7", "proposal": "8 5"}


@dataclass(frozen=True)
class Outline:
    """An area drawn as an outline on the map: an SVG path, its level's colour, a title, and its kind."""

    d: str
    colour: str
    title: str
    kind: Literal["proposal", "draft"]


def map_context(
    view: RegionView,
    lang: str,
    *,
    named_levels: Mapping[str, str],
    outlines: Sequence[Outline] = (),
    selectable: bool = False,
    captions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """What the map template draws: units filled by level, outlines on top (dashed for proposals, dotted for
    warnings still being prepared), and a legend line for each kind of outline drawn (`captions` by kind)."""
    effective = view.effective_levels(named_levels)

    def shape(u: UnitRecord) -> dict[str, Any]:
        level = effective.get(u.code)
        return {
            "code": u.code,
            "d": view.paths[u.code],
            "fill": LEVEL_COLOURS[level] if level else None,
            "title": view.name(u.code, lang) + (f" · {level_name(level, lang)}" if level else ""),
        }

    districts = [u for u in view.ordered if u.level == "district"]
    towns = [u for u in view.ordered if u.level == "town"]
    if not districts:
        districts = [u for u in view.ordered if u.level != "town"]
    return {
        "width": view.projection.width,
        "height": view.projection.height,
        "districts": [shape(u) for u in districts],
        "towns": [shape(u) for u in towns],
        "labels": [
            {
                "x": view.label_points[u.code][0],
                "y": view.label_points[u.code][1],
                "text": view.name(u.code, lang),
            }
            for u in districts
        ],
        "outlines": [
            {"d": o.d, "colour": o.colour, "title": o.title, "kind": o.kind, "dash": OUTLINE_DASHES[o.kind]}
            for o in outlines
            if o.d
        ],
        "selectable": selectable,
        "outline_legend": [
            {"kind": kind, "dash": OUTLINE_DASHES[kind], "name": (captions or {}).get(kind, "")}
            for kind in OUTLINE_DASHES
            if any(o.kind == kind and o.d for o in outlines)
        ],
        "legend": [{"colour": LEVEL_COLOURS[lv], "name": level_name(lv, lang)} for lv in LEVELS],
    }


# ---------------------------------------------------------------------------------------------- app wiring

REGION_VIEWS = web.AppKey("console_region_views", RegionViews)
RESPONDERS = web.AppKey("console_responders", Responders)
ASSETS = web.AppKey("console_assets", dict)
ASSET_FILES: Mapping[str, str] = {"style": "style.css", "css": "console.css", "js": "console.js"}


def asset_urls() -> dict[str, str]:
    """The console's static files by URL with a content hash, so a browser never runs a stale script."""
    folder = resources.files("warnings_svc") / "static"
    return {
        key: f"/static/{name}?v={hashlib.sha256((folder / name).read_bytes()).hexdigest()[:12]}"
        for key, name in ASSET_FILES.items()
    }


def setup_console(app: web.Application, database_url: str | None = None) -> None:
    """The console pages and the live event stream they subscribe to (`events.setup_events`).

    Reads the responder registry (and hashes the static files) now, so a broken file stops the start with
    one line.
    """
    app[REGION_VIEWS] = RegionViews(app[SETTINGS].region)
    app[RESPONDERS] = load_responders()
    app[ASSETS] = asset_urls()
    app.router.add_get("/console/", console_home, name="console")
    app.router.add_get("/console/warnings/{id}", console_warning, name="console_warning")
    setup_events(app, database_url)


@dataclass
class Page:
    """What every console page needs: who, in which language, the CSRF token and the asset URLs."""

    request: web.Request
    user: User
    lang: str
    set_cookie: bool
    t: dict[str, str] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return path + ("?lang=en" if self.lang == "en" else "")

    def switch_url(self) -> str:
        return self.request.path + ("?lang=zh" if self.lang == "en" else "?lang=en")

    def can(self, action: Action) -> bool:
        return self.user.role in PERMISSIONS[action]

    def render(self, template: str, status: int = 200, **context: Any) -> web.Response:
        html = (
            self.request.app[TEMPLATES]
            .get_template(template)
            .render(
                lang=self.lang,
                t=self.t,
                user={
                    "name": self.user.name,
                    "display": self.user.display_name or self.user.name,
                    "role": _pick(ROLE_NAMES.get(str(self.user.role), (str(self.user.role),) * 2), self.lang),
                },
                csrf=self.request.get(CSRF) or "",
                home_url=self.url("/console/"),
                switch_url=self.switch_url(),
                script_labels={k: self.t[k] for k in SCRIPT_LABELS},
                assets=self.request.app[ASSETS],
                **context,
            )
        )
        response = web.Response(text=html, content_type="text/html", status=status, headers=SECURITY_HEADERS)
        if self.set_cookie:
            response.set_cookie(LANG_COOKIE, self.lang, path="/console/", samesite="Strict", httponly=True)
        return response


def _page(request: web.Request) -> Page:
    """The page's user (or a redirect to the login form) and language (query, then cookie, then Chinese)."""
    asked = request.query.get("lang")
    lang = asked if asked in LANGUAGES else request.cookies.get(LANG_COOKIE, "zh")
    lang = lang if lang in LANGUAGES else "zh"
    user = request.get(USER)
    if user is None:
        location = login_location(request) + ("&lang=en" if lang == "en" else "")
        raise web.HTTPSeeOther(location)
    return Page(
        request, user, lang, asked in LANGUAGES and asked != request.cookies.get(LANG_COOKIE), labels(lang)
    )


# ---------------------------------------------------------------------------------------------- home page

_OPEN_PROPOSALS = """
    SELECT p.id, p.hazard, p.level, p.action, p.replaces, p.areas, p.onset, p.expires, p.probability,
           p.exposed_population, p.document->'geometry' AS geometry, r.reference_time
    FROM svc.proposal p JOIN svc.forecast_run r ON r.id = p.run_id
    WHERE p.status = 'open' ORDER BY p.id DESC LIMIT $1"""

_CONSOLE_WARNINGS = """
    SELECT v.*, w.status AS face_status, w.level AS face_level, w.areas AS face_areas,
           w.onset AS face_onset, w.expires AS face_expires
    FROM svc.warning w JOIN svc.warning_version v ON v.warning_id = w.id AND v.version = w.current_version
    WHERE v.status IN ('draft', 'pending_approval', 'returned') OR (w.status = 'issued' AND w.expires > now())
    ORDER BY v.updated_at DESC LIMIT $1"""


async def console_home(request: web.Request) -> web.Response:
    """GET /console/: the map, open proposals, warnings by status."""
    page = _page(request)
    async with request.app[POOL].acquire() as conn:
        view = await request.app[REGION_VIEWS].get(conn)
        proposals = await conn.fetch(_OPEN_PROPOSALS, MAX_PROPOSALS)
        rows = await conn.fetch(_CONSOLE_WARNINGS, MAX_WARNINGS)
    lang = page.lang
    names = partial(_area_names, view, lang=lang)

    live_levels: dict[str, str] = {}
    draft_outlines: list[Outline] = []
    groups: dict[str, list[dict[str, Any]]] = {"drafts": [], "pending": [], "returned": [], "issued": []}
    for row in rows:
        v = store.version_from_row(row)
        s = v.state
        item = {
            "id": v.warning_id,
            "url": page.url(f"/console/warnings/{v.warning_id}"),
            "title": warning_title(s.hazard, s.level, lang),
            "level": s.level,
            "version": s.version,
            "msg_type": _pick(MSG_TYPE_NAMES[s.msg_type], lang),
            "status": _pick(STATUS_NAMES[str(s.status)], lang),
            "areas": names(v.content.areas),
            "valid": f"{beijing(s.onset)} – {beijing(s.expires)}",
            "by": s.last_edited_by,
            "updated": beijing(v.updated_at),
            "exercise": s.exercise,
            "return_reason": s.return_reason if s.status == WarningStatus.returned else "",
            "successor": None,
        }
        bucket = {"draft": "drafts", "pending_approval": "pending", "returned": "returned"}.get(str(s.status))
        if bucket:
            groups[bucket].append(item)
            d = "".join(view.paths.get(a, "") for a in v.content.areas)
            title = f"#{v.warning_id} {item['title']} · {item['status']}"
            draft_outlines.append(Outline(d, LEVEL_COLOURS[s.level], title, "draft"))
        if row["face_status"] == "issued":
            groups["issued"].append(
                item
                | {
                    "title": warning_title(s.hazard, row["face_level"], lang),
                    "level": row["face_level"],
                    "areas": names(row["face_areas"]),
                    "valid": f"{beijing(row['face_onset'])} – {beijing(row['face_expires'])}",
                    "successor": None if s.status in ISSUED_FAMILY else item["status"],
                }
            )
            if not s.exercise:
                for code in row["face_areas"]:
                    if code not in live_levels or LEVELS.index(row["face_level"]) > LEVELS.index(
                        live_levels[code]
                    ):
                        live_levels[code] = row["face_level"]

    proposal_items = []
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
    for p in proposals:
        proposal_items.append(
            {
                "id": p["id"],
                "hazard": hazard_name(p["hazard"], lang),
                "level": p["level"],
                "level_name": level_name(p["level"], lang),
                "action": _pick(ACTION_NAMES.get(p["action"], (p["action"], p["action"])), lang),
                "can_draft": p["action"] != "unchanged" and page.can(Action.edit),
                "replaces": p["replaces"],
                "replaces_url": page.url(f"/console/warnings/{p['replaces']}") if p["replaces"] else "",
                "areas": names(p["areas"]),
                "valid": f"{beijing(p['onset'])} – {beijing(p['expires'])}",
                "probability": round(100 * p["probability"]),
                "exposed": p["exposed_population"],
                "run": beijing(p["reference_time"], "%m-%d %H:%M"),
            }
        )
    region_map = map_context(
        view,
        lang,
        named_levels=live_levels,
        outlines=[*reversed(draft_outlines), *outlines],  # oldest first, proposals on top
        captions={"proposal": page.t["map_legend_proposal"], "draft": page.t["map_legend_draft"]},
    )
    return page.render(
        "console/home.html",
        proposals=proposal_items,
        groups=groups,
        region_map=region_map,
    )


def _area_names(view: RegionView, codes: Iterable[str], *, lang: str) -> str:
    return ("、" if lang == "zh" else ", ").join(view.name(c, lang) for c in codes)


# ---------------------------------------------------------------------------------------------- warning page


async def console_warning(request: web.Request) -> web.Response:
    """GET /console/warnings/{id}: the latest version, impact preview, edit form, actions and history."""
    page = _page(request)
    lang = page.lang
    raw_id = request.match_info["id"]
    if not raw_id.isdigit() or len(raw_id) > 18:
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
        audit = await conn.fetch(
            "SELECT seq, at, actor, action, before, after FROM svc.audit_log WHERE subject = $1 ORDER BY seq",
            f"warning:{warning_id}",
        )
        rendered = await conn.fetchval(
            "SELECT rendered FROM svc.warning_version WHERE warning_id = $1 AND version = $2",
            warning_id,
            latest.state.version,
        )
        proposal = None
        if latest.content.proposal_id is not None:
            proposal = await proposal_document(conn, latest.content.proposal_id)
    s = latest.state
    units = view.units

    if s.status in ISSUED_FAMILY and rendered:
        texts, texts_error, texts_kind = _issued_texts(json.loads(rendered)), "", "issued_texts"
    else:
        texts_kind = "preview_now"
        try:
            preview = await asyncio.get_running_loop().run_in_executor(
                None, partial(store.preview, ctx, latest, units, now=datetime.now(UTC))
            )
            texts, texts_error = _preview_texts(preview), ""
        except (TextsError, store.StoreError) as e:
            texts, texts_error = {}, str(e)

    impact = store.impact(latest, units, proposal)
    per_area_proposal = {i["code"]: i for i in (proposal or {}).get("impacts", [])}
    impact_areas = [
        {
            "name": view.name(a["code"], lang),
            "population": a["population"],
            "exposed": per_area_proposal.get(a["code"], {}).get("exposed_population"),
            "vulnerable": [
                {"name": _pick(VULNERABLE_NAMES.get(k, (k, k)), lang), "value": v}
                for k, v in (per_area_proposal.get(a["code"], {}).get("vulnerable") or {}).items()
            ],
        }
        for a in impact["areas"]
    ]
    registry = request.app[RESPONDERS]
    calls = responders_for(registry, s.hazard, s.level, latest.content.areas, units, lang)

    in_force = next((v for v in reversed(versions) if v.state.status == WarningStatus.issued), None)
    replaced = in_force if s.msg_type != "Alert" and in_force is not latest else None
    policy = ctx.policy
    blocking = second_person_levels(s, page.user.name, policy, replaced.state if replaced else None)
    actions = _actions(page, latest, in_force, warning_id, bool(blocking))
    if blocking and actions["approve"]:
        strongest = max(blocking, key=LEVELS.index)
        actions["approve_blocked"] = page.t["two_person"].format(level=level_name(strongest, lang))

    editable = s.status in EDITABLE and page.can(Action.edit)
    form = _edit_form(view, latest, lang, texts) if editable else None

    region_map = map_context(
        view,
        lang,
        named_levels={c: s.level for c in latest.content.areas},
        selectable=editable and s.msg_type != "Cancel",
    )
    return page.render(
        "console/warning.html",
        w={
            "id": warning_id,
            "title": warning_title(s.hazard, s.level, lang),
            "hazard": s.hazard,
            "level": s.level,
            "version": s.version,
            "status": str(s.status),
            "status_name": _pick(STATUS_NAMES[str(s.status)], lang),
            "msg_type": _pick(MSG_TYPE_NAMES[s.msg_type], lang),
            "exercise": s.exercise,
            "areas": _area_names(view, latest.content.areas, lang=lang),
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
        actions=actions,
        form=form,
        region_map=region_map,
        impact={
            "population": impact["population"],
            "exposed": impact.get("exposed_population"),
            "areas": impact_areas,
            "vulnerable": [
                {"name": _pick(VULNERABLE_NAMES.get(k, (k, k)), lang), "value": v}
                for k, v in impact["vulnerable"].items()
            ],
            "calls": calls,
            "synthetic": registry.synthetic,
        },
        texts=texts,
        budgets=DEFAULT_BUDGETS,
        texts_error=texts_error,
        texts_kind=texts_kind,
        versions=[_version_row(v, lang) for v in versions],
        timeline=[_timeline_row(r, lang) for r in audit],
    )


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
        "msg_type": _pick(MSG_TYPE_NAMES[s.msg_type], lang),
        "status": str(s.status),
        "status_name": _pick(STATUS_NAMES[str(s.status)], lang),
        "level": s.level,
        "level_name": level_name(s.level, lang),
        "valid": f"{beijing(s.onset)} – {beijing(s.expires)}",
        "created_by": s.created_by,
        "approved_by": s.approved_by,
        "identifier": v.identifier or "",
        "sent": beijing(v.sent, "%m-%d %H:%M:%S"),
    }


_COMPARED = ("level", "onset", "expires", "areas", "polygons", "texts", "note")


def _timeline_row(row: asyncpg.Record, lang: str) -> dict[str, Any]:
    after = json.loads(row["after"]) if row["after"] else {}
    before = json.loads(row["before"]) if row["before"] else {}
    transition = after.get("transition") or {}
    action = row["action"]
    detail = transition.get("reason", "")
    changed = []
    if action == "edit" and before:
        changed = [k for k in _COMPARED if before.get(k) != after.get(k)]
    if action in ("create", "draft_update", "draft_cancel") and after.get("note"):
        detail = after["note"]
    return {
        "at": beijing(row["at"], "%m-%d %H:%M:%S"),
        "actor": row["actor"],
        "action": _pick(AUDIT_ACTIONS.get(action, (action, action)), lang),
        "version": transition.get("version", after.get("version")),
        "from": _pick(STATUS_NAMES.get(transition.get("from", ""), ("", "")), lang),
        "to": _pick(STATUS_NAMES.get(transition.get("to", ""), ("", "")), lang),
        "detail": detail,
        "changed": changed,
    }


# ---------------------------------------------------------------------------------------------- OpenAPI

_HTML = {"text/html": {"schema": {"type": "string"}}}
_LANG = {
    "name": "lang",
    "in": "query",
    "schema": {"type": "string", "enum": list(LANGUAGES), "default": "zh"},
    "description": "Interface language (remembered in a cookie)",
}

OPENAPI_PATHS: dict[str, Any] = {
    "/console/": {
        "get": {
            "summary": "Forecaster console: map of warnings in force and open proposals, proposals, warnings by "
            "status (HTML; login required)",
            "parameters": [_LANG],
            "security": [{"session": []}],
            "responses": {
                "200": {"description": "The console", "content": _HTML},
                "303": {"description": "Not logged in: on to /console/login?next=..."},
            },
        }
    },
    "/console/warnings/{id}": {
        "get": {
            "summary": "One warning in the console: latest version, impact preview, edit form, actions, history "
            "(HTML; login required)",
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                _LANG,
            ],
            "security": [{"session": []}],
            "responses": {
                "200": {"description": "The warning page", "content": _HTML},
                "303": {"description": "Not logged in: on to /console/login?next=..."},
                "404": {"description": "No such warning", "content": _HTML},
            },
        }
    },
    **EVENTS_OPENAPI_PATHS,
}

__all__ = [
    "OPENAPI_PATHS",
    "RegionView",
    "ResponderError",
    "Responders",
    "geometry_path",
    "load_responders",
    "responders_for",
    "setup_console",
]
