"""The warnings write API (`/api/v1/warnings...`): drafts, edits and every lifecycle action, as JSON.

Thin on purpose: each handler checks who is asking (`web_auth.require_user`), parses and validates the body,
and calls one `warning_store` function; the lifecycle rules (roles, the two-person rule, immutability) are
enforced there, once, for this API and the console alike. Refusals become problem documents that name the
field at fault and carry the lifecycle's machine-readable ``code``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web

from risk_zoning.store import region_units
from warnings_svc.dissemination import outbox
from warnings_svc.forecast.proposals import proposal_document
from warnings_svc.lifecycle import store
from warnings_svc.lifecycle.transitions import Action, LifecycleError, WarningStatus
from warnings_svc.vocabulary import HAZARD_LEVELS
from warnings_svc.web.appkeys import POOL, SETTINGS
from warnings_svc.web.auth import require_user
from warnings_svc.web.problems import ApiProblem

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
EXPIRY_CHECK_SECONDS = 30.0
ISSUING = web.AppKey("issuing", store.Issuing)

# lifecycle and store codes -> HTTP status
_STATUS_OF_CODE: Mapping[str, int] = {
    "not_found": 404,
    "role": 403,
    "self_approval": 403,
    "invalid": 422,
    "reason_required": 422,
    "budget": 422,
}


@contextlib.contextmanager
def _answers() -> Iterator[None]:
    """Store and lifecycle refusals as problem documents."""
    try:
        yield
    except LifecycleError as e:
        raise ApiProblem(_STATUS_OF_CODE.get(e.code, 409), e.code, str(e), _field_of(e)) from e
    except store.StoreError as e:
        raise ApiProblem(_STATUS_OF_CODE.get(e.code, 409), e.code, str(e), e.field) from e


def _field_of(e: LifecycleError) -> str | None:
    return {"reason_required": "reason", "self_approval": "approver", "expired": "expires"}.get(e.code)


def setup_warnings_api(app: web.Application) -> None:
    """Register the routes, the issuing configuration and the clock that expires warnings."""
    app[ISSUING] = store.Issuing.from_settings(app[SETTINGS])
    app.router.add_get("/api/v1/warnings", list_warnings, name="warnings")
    app.router.add_post("/api/v1/warnings", create_warning, name="create_warning")
    app.router.add_post("/api/v1/proposals/{id}/draft", draft_from_proposal, name="draft_from_proposal")
    app.router.add_get("/api/v1/warnings/{id}", get_warning, name="warning")
    app.router.add_patch("/api/v1/warnings/{id}", edit_warning, name="edit_warning")
    app.router.add_get("/api/v1/warnings/{id}/preview", preview_warning, name="preview_warning")
    app.router.add_get("/api/v1/warnings/{id}/deliveries", warning_deliveries, name="warning_deliveries")
    for action in ("submit", "approve", "return", "discard"):
        app.router.add_post(f"/api/v1/warnings/{{id}}/{action}", act_on_warning, name=f"{action}_warning")
    app.router.add_post("/api/v1/warnings/{id}/update", update_warning, name="update_warning")
    app.router.add_post("/api/v1/warnings/{id}/cancel", cancel_warning, name="cancel_warning")
    app.cleanup_ctx.append(_expiry_clock)


# ---------------------------------------------------------------------------------------------- handlers


async def list_warnings(request: web.Request) -> web.Response:
    require_user(request, scope="read")
    statuses = None
    if raw := request.query.get("status"):
        statuses = [s.strip() for s in raw.split(",") if s.strip()]
        known = {str(s) for s in WarningStatus}
        if bad := [s for s in statuses if s not in known]:
            raise ApiProblem(
                400, "invalid", f"unknown status {bad[0]!r}; known: {', '.join(sorted(known))}", "status"
            )
    _no_other_parameters(request, {"status"})
    async with request.app[POOL].acquire() as conn:
        found = await store.latest_versions(conn, statuses=statuses)
    return web.json_response({"warnings": [v.to_json() for v in found]})


async def create_warning(request: web.Request) -> web.Response:
    user = require_user(request, scope="write")
    body = await _json_body(request)
    _only(body, {"hazard", "level", "areas", "onset", "expires", "exercise", "polygons", "texts", "note"})
    hazard = _required(body, "hazard", str)
    if hazard not in HAZARD_LEVELS:
        raise ApiProblem(
            422, "invalid", f"unknown hazard {hazard!r}; known: {', '.join(HAZARD_LEVELS)}", "hazard"
        )
    level = _required(body, "level", str)
    areas = _required(body, "areas", list)
    content = store.Content(
        areas=tuple(_strings(areas, "areas")),
        polygons=tuple(_strings(body.get("polygons", []), "polygons")),
        texts=body.get("texts") or {},
        note=_optional(body, "note", str, ""),
    )
    with _answers():
        async with request.app[POOL].acquire() as conn:
            version = await store.create(
                conn,
                request.app[ISSUING],
                user.actor,
                hazard=hazard,
                level=level,
                onset=_time(body, "onset"),
                expires=_time(body, "expires"),
                content=content,
                exercise=_optional(body, "exercise", bool, False),
                now=_now(),
            )
    return _created(request, version)


async def draft_from_proposal(request: web.Request) -> web.Response:
    user = require_user(request, scope="write")
    proposal_id = _path_id(request)
    body = await _json_body(request, optional=True)
    _only(body, {"exercise"})
    with _answers():
        async with request.app[POOL].acquire() as conn:
            version = await store.draft_from_proposal(
                conn,
                request.app[ISSUING],
                user.actor,
                proposal_id,
                now=_now(),
                exercise=_optional(body, "exercise", bool, False),
            )
    return _created(request, version)


async def get_warning(request: web.Request) -> web.Response:
    require_user(request, scope="read")
    warning_id = _path_id(request)
    with _answers():
        async with request.app[POOL].acquire() as conn:
            found = await store.versions(conn, warning_id)
    return web.json_response(
        {"id": warning_id, "latest": found[-1].to_json(), "versions": [v.to_json() for v in found]}
    )


async def warning_deliveries(request: web.Request) -> web.Response:
    """How far dissemination got: deliveries by state and segments sent, overall and per version, with each
    fan-out's progress (people written, people an Update left unchanged)."""
    require_user(request, scope="read")
    warning_id = _path_id(request)
    with _answers():
        async with request.app[POOL].acquire() as conn:
            await store.versions(conn, warning_id)  # a 404 for a warning that does not exist
            progress = await outbox.summary(conn, warning_id)
    return web.json_response({"id": warning_id} | progress)


async def preview_warning(request: web.Request) -> web.Response:
    require_user(request, scope="read")
    warning_id = _path_id(request)
    ctx = request.app[ISSUING]
    with _answers():
        async with request.app[POOL].acquire() as conn:
            latest = (await store.versions(conn, warning_id))[-1]
            units = await region_units(conn, ctx.region)
            document = None
            if latest.content.proposal_id is not None:
                document = await proposal_document(conn, latest.content.proposal_id)
    texts = await asyncio.get_running_loop().run_in_executor(
        None, lambda: store.preview(ctx, latest, units, now=_now())
    )
    return web.json_response({"texts": texts, "impact": store.impact(latest, units, document)})


async def edit_warning(request: web.Request) -> web.Response:
    user = require_user(request, scope="write")
    warning_id = _path_id(request)
    changes = _changes(await _json_body(request))
    with _answers():
        async with request.app[POOL].acquire() as conn:
            version = await store.edit(
                conn, request.app[ISSUING], user.actor, warning_id, changes, now=_now()
            )
    return web.json_response(version.to_json())


_ACTIONS: Mapping[str, tuple[Action, str | None]] = {
    "submit": (Action.submit, None),
    "approve": (Action.approve, "comment"),
    "return": (Action.return_for_edit, "reason"),
    "discard": (Action.discard, "reason"),
}


async def act_on_warning(request: web.Request) -> web.Response:
    user = require_user(request, scope="write")
    warning_id = _path_id(request)
    action, text_field = _ACTIONS[request.path.rsplit("/", 1)[1]]
    body = await _json_body(request, optional=True)
    _only(body, {text_field} if text_field else set())
    reason = _optional(body, text_field, str, "") if text_field else ""
    with _answers():
        async with request.app[POOL].acquire() as conn:
            version = await store.act(
                conn, request.app[ISSUING], user.actor, warning_id, action, now=_now(), reason=reason
            )
    return web.json_response(version.to_json())


async def update_warning(request: web.Request) -> web.Response:
    user = require_user(request, scope="write")
    warning_id = _path_id(request)
    changes = _changes(await _json_body(request, optional=True), allow_empty=True)
    with _answers():
        async with request.app[POOL].acquire() as conn:
            version = await store.start_update(
                conn, request.app[ISSUING], user.actor, warning_id, changes, now=_now()
            )
    return _created(request, version)


async def cancel_warning(request: web.Request) -> web.Response:
    user = require_user(request, scope="write")
    warning_id = _path_id(request)
    body = await _json_body(request, optional=True)
    _only(body, {"note"})
    with _answers():
        async with request.app[POOL].acquire() as conn:
            version = await store.start_cancel(
                conn,
                request.app[ISSUING],
                user.actor,
                warning_id,
                note=_optional(body, "note", str, ""),
                now=_now(),
            )
    return _created(request, version)


# ---------------------------------------------------------------------------------------------- the clock


async def _expiry_clock(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_expire_forever(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _expire_forever(app: web.Application) -> None:
    while True:
        await asyncio.sleep(EXPIRY_CHECK_SECONDS)
        try:
            async with app[POOL].acquire() as conn:
                done = await store.expire_due(conn, app[ISSUING], now=_now())
            if done:
                log.info("warnings expired", extra={"warnings": done})
        except asyncio.CancelledError:
            raise
        except asyncpg.UndefinedTableError:
            log.debug("expiry check skipped: the schema is not up to date yet")
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as e:
            # the clock must survive a database restart; the next tick tries again
            log.warning("expiry check failed: %s", " ".join(str(e).split()))


# ---------------------------------------------------------------------------------------------- parsing


async def _json_body(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    raw = await request.content.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise ApiProblem(413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes", "body")
    if not raw.strip():
        if optional:
            return {}
        raise ApiProblem(400, "invalid", "a JSON object is required", "body")
    if request.content_type != "application/json":
        raise ApiProblem(415, "invalid", f"send application/json, not {request.content_type}", "body")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiProblem(400, "invalid", f"the body is not JSON: {e}", "body") from e
    if not isinstance(body, dict):
        raise ApiProblem(400, "invalid", "the body must be a JSON object", "body")
    return body


def _only(body: Mapping[str, Any], allowed: set[str]) -> None:
    if unknown := sorted(set(body) - allowed):
        known = ", ".join(sorted(allowed)) or "nothing"
        raise ApiProblem(
            422, "invalid", f"unknown field {unknown[0]!r}; this request takes {known}", unknown[0]
        )


def _no_other_parameters(request: web.Request, allowed: set[str]) -> None:
    if unknown := sorted(set(request.query) - allowed):
        raise ApiProblem(400, "invalid", f"unknown parameter {unknown[0]!r}", unknown[0])


def _required(body: Mapping[str, Any], name: str, kind: type) -> Any:
    if name not in body or body[name] is None:
        raise ApiProblem(422, "invalid", f"{name} is required", name)
    return _typed(body[name], name, kind)


def _optional(body: Mapping[str, Any], name: str, kind: type, default: Any) -> Any:
    return default if body.get(name) is None else _typed(body[name], name, kind)


def _typed(value: Any, name: str, kind: type) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ApiProblem(422, "invalid", f"{name} must be {_KIND_NAMES[kind]}", name)
    return value


_KIND_NAMES = {str: "text", list: "a list", bool: "true or false", dict: "an object"}


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiProblem(422, "invalid", f"{name} must be a list of text", name)
    return value


def _time(body: Mapping[str, Any], name: str) -> datetime:
    raw = _required(body, name, str)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as e:
        raise ApiProblem(422, "invalid", f"{name} is not an ISO 8601 time ({raw!r})", name) from e
    if value.utcoffset() is None:
        raise ApiProblem(422, "invalid", f"{name} needs a UTC offset, e.g. +08:00 ({raw!r})", name)
    return value


def _changes(body: Mapping[str, Any], *, allow_empty: bool = False) -> dict[str, Any]:
    _only(body, set(store.LIFECYCLE_FIELDS | store.CONTENT_FIELDS))
    if not body and not allow_empty:
        raise ApiProblem(422, "invalid", "nothing to change", "body")
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name in ("onset", "expires"):
            changes[name] = _time(body, name)
        elif name in ("areas", "polygons"):
            changes[name] = _strings(value, name)
        elif name == "texts":
            changes[name] = _typed(value, name, dict)
        else:
            changes[name] = _typed(value, name, str)
    return changes


def _path_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 18:
        raise ApiProblem(404, "not_found", f"no such id {raw!r}", "id")
    return int(raw)


def _created(request: web.Request, version: store.Version) -> web.Response:
    location = request.app.router["warning"].url_for(id=str(version.warning_id))
    return web.json_response(version.to_json(), status=201, headers={"Location": str(location)})


def _now() -> datetime:
    return datetime.now(UTC)


OPENAPI_PATHS: dict[str, Any] = {
    "/api/v1/warnings": {
        "get": {
            "summary": "The latest version of each warning (staff only); ?status=draft,pending_approval,..."
        },
        "post": {
            "summary": "Create a draft: hazard, level, areas, onset, expires; texts, polygons, note optional"
        },
    },
    "/api/v1/proposals/{id}/draft": {
        "post": {"summary": "Draft the warning, Update or Cancel a proposal asks for"}
    },
    "/api/v1/warnings/{id}": {
        "get": {"summary": "Every version of a warning"},
        "patch": {
            "summary": "Edit the latest (unissued) version: level, onset, expires, areas, polygons, texts, note"
        },
    },
    "/api/v1/warnings/{id}/preview": {
        "get": {"summary": "Texts, SMS segments, budgets and impact if issued now"}
    },
    "/api/v1/warnings/{id}/deliveries": {
        "get": {
            "summary": "Dissemination progress: deliveries by state and segments, per version and fan-out"
        }
    },
    "/api/v1/warnings/{id}/submit": {"post": {"summary": "Submit for approval"}},
    "/api/v1/warnings/{id}/approve": {
        "post": {"summary": "Approve and issue (a second person for orange and red)"}
    },
    "/api/v1/warnings/{id}/return": {"post": {"summary": "Return for edit with a reason"}},
    "/api/v1/warnings/{id}/discard": {"post": {"summary": "Discard a never-issued version"}},
    "/api/v1/warnings/{id}/update": {"post": {"summary": "Draft an Update of the issued warning"}},
    "/api/v1/warnings/{id}/cancel": {"post": {"summary": "Draft a Cancel of the issued warning"}},
}
