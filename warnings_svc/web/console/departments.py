"""The registry of departments in the console, for admins: the list, the add and edit forms with the duty
chain, retire and restore.

Plain HTML forms (no script needed), posted with the session's CSRF token (`web.auth` checks it before the
handler runs). A form goes through the same check as an imported CSV row (`registry.check_row`); a refused
form is shown again with each faulty field named and nothing written. Every change is one transaction with
its audit entry (subject ``department:<code>``, the department before and after). Anyone but an admin gets
the 403 page.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import Field

from warnings_svc.dissemination.partners import registry
from warnings_svc.dissemination.partners.registry import (
    COLUMNS,
    RANKS,
    SECTORS,
    DepartmentChain,
    DepartmentError,
    DepartmentRowError,
)
from warnings_svc.lifecycle import audit_log
from warnings_svc.lifecycle.transitions import Role
from warnings_svc.vocabulary import LEVELS
from warnings_svc.web.appkeys import ISSUING, POOL
from warnings_svc.web.auth import Forbidden, require_user
from warnings_svc.web.console.labels import (
    RANK_NAMES,
    SECTOR_NAMES,
    beijing,
    hazard_name,
    level_name,
    name_in,
)
from warnings_svc.web.console.map import RegionView
from warnings_svc.web.console.page import REGION_VIEWS, Page, page_for
from warnings_svc.web.operations import (
    LenientQuery,
    RequestModel,
    media_reply,
    operation,
    parse_path,
    read_form,
)
from warnings_svc.web.problems import ApiProblem
from warnings_svc.web.write_lane import in_write_lane

LIST_PATH = "/console/departments"
NEW_PATH = "/console/departments/new"  # before /{code}: "new" is no department's code (`registry._code`)
HAZARDS: tuple[str, ...] = ("heat", "rainstorm", "frost", "sandstorm")


class DepartmentPath(RequestModel):
    """A department's address: its code."""

    code: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="The department's code")]


class DepartmentForm(LenientQuery):
    """The add and edit form's fields: the departments CSV's columns (docs/departments.md), ``hazards``
    once per ticked hazard, and the session's ``csrf_token``."""

    csrf_token: str = ""
    code: str = ""
    name: str = ""
    name_en: str = ""
    sector: str = ""
    area: str = ""
    hazards: tuple[str, ...] = ()
    min_level: str = ""
    duty_name: str = ""
    duty_phone: str = ""
    duty_email: str = ""
    deputy_name: str = ""
    deputy_phone: str = ""
    deputy_email: str = ""
    leader_name: str = ""
    leader_phone: str = ""
    leader_email: str = ""


class TokenForm(LenientQuery):
    """A button's form: the session's CSRF token."""

    csrf_token: str = ""


_HTML = ("text/html",)
_PAGE_REPLIES = {
    200: media_reply("The page", *_HTML),
    303: media_reply("Not logged in: on to /console/login?next=..."),
    403: media_reply("Not an admin: the error page", *_HTML),
}
_WRITE_REPLIES = {
    303: media_reply("Saved (and written to the audit log): on to the list"),
    403: media_reply("Not an admin, or without the session's CSRF token: the error page", *_HTML),
}


def admin_page(request: web.Request, *, write: bool = False) -> Page:
    """The page of an admin; anyone else is refused (403), a visitor sent to the login form."""
    page = page_for(request)
    if not page.admin:
        raise Forbidden(f"role {page.user.role.value!r} may not manage departments; it needs admin")
    if write:
        require_user(request, Role.admin)  # a bearer token needs the write scope
    return page


@operation(
    "The registry of departments with their duty chains, retired ones too (HTML; admins)",
    responses=_PAGE_REPLIES,
    security=("session",),
)
async def console_departments(request: web.Request) -> web.Response:
    """GET /console/departments: every department, its sector, area and duty chain, and its actions."""
    page = admin_page(request)
    async with request.app[POOL].acquire() as conn:
        view = await request.app[REGION_VIEWS].get(conn)
        departments = await registry.all_departments(conn, retired=True)
    return page.render(
        "console/departments.html",
        departments=[_listed(page, view, d) for d in departments],
        new_url=page.url(NEW_PATH),
    )


@operation(
    "The form that adds a department with its duty chain (HTML; admins)",
    responses=_PAGE_REPLIES,
    security=("session",),
)
async def console_department_new(request: web.Request) -> web.Response:
    """GET /console/departments/new: an empty form."""
    page = admin_page(request)
    return await _form_page(request, page, None, {"min_level": "blue"}, {})


@operation(
    "Add a department with its duty chain (a url-encoded form, with the session's csrf_token)",
    body=DepartmentForm,
    body_type="application/x-www-form-urlencoded",
    responses={**_WRITE_REPLIES, 422: media_reply("A field is not valid: the form again, naming it", *_HTML)},
    problems=(400,),
    security=("session",),
)
async def console_department_add(request: web.Request) -> web.Response:
    """POST /console/departments: check the form, add the department, audit, back to the list."""
    page = admin_page(request, write=True)
    return await _save(request, page, await _form_fields(request), new=True)


@operation(
    "The form that edits a department and its duty chain (HTML; admins)",
    path=DepartmentPath,
    responses={**_PAGE_REPLIES, 404: media_reply("No such department", *_HTML)},
    security=("session",),
)
async def console_department_edit(request: web.Request) -> web.Response:
    """GET /console/departments/{code}: the form, filled in."""
    page = admin_page(request)
    code = _code(request)
    async with request.app[POOL].acquire() as conn:
        found = await registry.get_department(conn, code) if code else None
    if found is None:
        return _not_found(page, request.match_info["code"])
    return await _form_page(request, page, found, registry.form_fields(found), {})


@operation(
    "Change a department and its duty chain (a url-encoded form, with the session's csrf_token)",
    path=DepartmentPath,
    body=DepartmentForm,
    body_type="application/x-www-form-urlencoded",
    responses={
        **_WRITE_REPLIES,
        404: media_reply("No such department", *_HTML),
        422: media_reply("A field is not valid: the form again, naming it", *_HTML),
    },
    problems=(400,),
    security=("session",),
)
async def console_department_save(request: web.Request) -> web.Response:
    """POST /console/departments/{code}: check the form, change the department, audit, back to the list."""
    page = admin_page(request, write=True)
    code = _code(request)
    fields = await _form_fields(request)
    if not code:
        return _not_found(page, request.match_info["code"])
    return await _save(request, page, fields | {"code": code}, new=False)


@operation(
    "Retire a department: no warning calls it any more; its row and history stay (form with csrf_token)",
    path=DepartmentPath,
    body=TokenForm,
    body_type="application/x-www-form-urlencoded",
    responses={**_WRITE_REPLIES, 404: media_reply("No such department", *_HTML)},
    problems=(400,),
    security=("session",),
)
async def console_department_retire(request: web.Request) -> web.Response:
    """POST /console/departments/{code}/retire."""
    return await _set_retired(request, True)


@operation(
    "Restore a retired department (form with csrf_token)",
    path=DepartmentPath,
    body=TokenForm,
    body_type="application/x-www-form-urlencoded",
    responses={**_WRITE_REPLIES, 404: media_reply("No such department", *_HTML)},
    problems=(400,),
    security=("session",),
)
async def console_department_restore(request: web.Request) -> web.Response:
    """POST /console/departments/{code}/restore."""
    return await _set_retired(request, False)


def setup_departments(app: web.Application) -> None:
    """The registry's pages and forms."""
    app.router.add_get(LIST_PATH, console_departments, name="console_departments")
    app.router.add_post(LIST_PATH, console_department_add, name="console_department_add")
    app.router.add_get(NEW_PATH, console_department_new, name="console_department_new")
    app.router.add_get(LIST_PATH + "/{code}", console_department_edit, name="console_department_edit")
    app.router.add_post(LIST_PATH + "/{code}", console_department_save, name="console_department_save")
    app.router.add_post(
        LIST_PATH + "/{code}/retire", console_department_retire, name="console_department_retire"
    )
    app.router.add_post(
        LIST_PATH + "/{code}/restore", console_department_restore, name="console_department_restore"
    )


# ---------------------------------------------------------------------------------------------- writes


async def _save(request: web.Request, page: Page, fields: Mapping[str, str], *, new: bool) -> web.Response:
    async with request.app[POOL].acquire() as conn:
        view = await request.app[REGION_VIEWS].get(conn)
    try:
        row = registry.check_row(fields, view.units)  # before any write
    except DepartmentRowError as e:
        return await _form_page(request, page, None if new else fields, fields, _errors(e), status=422)
    user = page.user.name
    key = request.app[ISSUING].audit_key

    async def work(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            before, after = await registry.save_department(conn, row, new=new, source="console")
            await _audit(conn, user, "department_add" if new else "department_edit", before, after, key)

    try:
        await in_write_lane(request, work)
    except DepartmentRowError as e:  # the code exists already
        return await _form_page(request, page, None, fields, _errors(e), status=422)
    except DepartmentError:  # changed a department that is gone
        return _not_found(page, row.code)
    raise web.HTTPSeeOther(page.url(LIST_PATH))


async def _set_retired(request: web.Request, retired: bool) -> web.Response:
    page = admin_page(request, write=True)
    code = _code(request)
    user = page.user.name
    key = request.app[ISSUING].audit_key

    async def work(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            before, after = await registry.set_retired(conn, code, retired)
            if before.retired_at != after.retired_at:  # a second click changes nothing, records nothing
                action = "department_retire" if retired else "department_restore"
                await _audit(conn, user, action, before, after, key)

    try:
        if not code:
            raise DepartmentError("not a code")
        await in_write_lane(request, work)
    except DepartmentError:
        return _not_found(page, request.match_info["code"])
    raise web.HTTPSeeOther(page.url(LIST_PATH))


async def _audit(
    conn: asyncpg.Connection,
    actor: str,
    action: str,
    before: DepartmentChain | None,
    after: DepartmentChain,
    key: bytes | None,
) -> None:
    await audit_log.append(
        conn,
        at=datetime.now(UTC),
        actor=actor,
        action=action,
        subject=f"department:{after.code}",
        before=None if before is None else registry.department_json(before),
        after=registry.department_json(after),
        key=key,
    )


# ---------------------------------------------------------------------------------------------- pages


def _code(request: web.Request) -> str:
    """The path's code, or "" when it is none (the page then says there is no such department)."""
    try:
        return parse_path(request, DepartmentPath).code
    except ApiProblem:
        return ""


async def _form_fields(request: web.Request) -> dict[str, str]:
    """The posted form as the CSV's columns (text); ticked hazards joined with ";"."""
    form = await read_form(request)
    fields = {c: v for c in COLUMNS if c != "hazards" and isinstance(v := form.get(c, ""), str)}
    fields["hazards"] = ";".join(h for h in form.getall("hazards", []) if isinstance(h, str))
    return fields


def _errors(e: DepartmentRowError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for column, _, reason in e.problems:
        errors.setdefault(column, reason)
    return errors


async def _form_page(
    request: web.Request,
    page: Page,
    existing: DepartmentChain | Mapping[str, str] | None,
    fields: Mapping[str, str],
    errors: Mapping[str, str],
    *,
    status: int = 200,
) -> web.Response:
    """The add form (`existing` None) or the edit form, with `fields` filled in and `errors` by field."""
    async with request.app[POOL].acquire() as conn:
        view = await request.app[REGION_VIEWS].get(conn)
    lang, t = page.lang, page.t
    code = (
        None
        if existing is None
        else existing.code
        if isinstance(existing, DepartmentChain)
        else existing.get("code", "")
    )
    ticked = {h for h in fields.get("hazards", "").split(";") if h}
    labels = {
        "code": t["code"],
        "name": t["name_zh"],
        "name_en": t["name_en"],
        "sector": t["sector"],
        "area": t["area"],
        "hazards": t["hazards"],
        "min_level": t["min_level"],
    }
    for rank in RANKS:
        rank_name = name_in(RANK_NAMES, rank, lang)
        labels |= {
            f"{rank}_name": f"{rank_name} · {t['person_name']}",
            f"{rank}_phone": f"{rank_name} · {t['phone']}",
            f"{rank}_email": f"{rank_name} · {t['email']}",
        }
    return page.render(
        "console/department_form.html",
        status=status,
        new=code is None,
        action=page.url(LIST_PATH if code is None else f"{LIST_PATH}/{code}"),
        list_url=page.url(LIST_PATH),
        f={c: fields.get(c, "") for c in COLUMNS},
        errors=[{"field": c, "label": labels.get(c, c), "reason": r} for c, r in errors.items()],
        error_of=dict(errors),
        labels=labels,
        sectors=[{"value": s, "name": name_in(SECTOR_NAMES, s, lang)} for s in SECTORS],
        units=_unit_options(view, lang),
        hazards=[{"value": h, "name": hazard_name(h, lang), "checked": h in ticked} for h in HAZARDS],
        levels=[{"value": lv, "name": level_name(lv, lang)} for lv in LEVELS],
        ranks=[{"key": r, "name": name_in(RANK_NAMES, r, lang), "required": r == "duty"} for r in RANKS],
    )


def _unit_options(view: RegionView, lang: str) -> list[dict[str, str]]:
    """The units a department can serve, city first, each district followed by its towns (indented)."""
    indent = {"city": "", "district": "\u3000", "town": "\u3000\u3000"}
    return [
        {"value": u.code, "name": indent.get(u.level, "") + view.name(u.code, lang)} for u in view.ordered
    ]


def _listed(page: Page, view: RegionView, d: DepartmentChain) -> dict[str, Any]:
    lang = page.lang
    return {
        "code": d.code,
        "name": d.name_en if lang == "en" and d.name_en else d.name,
        "sector": name_in(SECTOR_NAMES, d.sector, lang),
        "area": view.name(d.area, lang),
        "hazards": ", ".join(hazard_name(h, lang) for h in d.hazards),
        "min_level": level_name(d.min_level, lang),
        "people": [
            {"rank": name_in(RANK_NAMES, rank, lang), "name": p.name, "phone": p.phone, "email": p.email}
            for rank in RANKS
            if (p := d.people.get(rank)) is not None
        ],
        "retired": beijing(d.retired_at, "%Y-%m-%d") if d.retired_at else "",
        "edit_url": page.url(f"{LIST_PATH}/{d.code}"),
        "retire_url": page.url(f"{LIST_PATH}/{d.code}/{'restore' if d.retired_at else 'retire'}"),
    }


def _not_found(page: Page, code: str) -> web.Response:
    return page.render(
        "console/department_missing.html", status=404, code=code[:64], list_url=page.url(LIST_PATH)
    )
