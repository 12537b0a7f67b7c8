"""The warnings write API (`/api/v1/warnings...`): drafts, edits and every lifecycle action, as JSON.

Thin on purpose: each handler checks who is asking (`web.auth.require_user`; a write `require_writer`, then
`write_as`, which looks a bearer token up on the write lane with the write), reads its path, query and
body through the request models below (`web.operations`), and calls one `lifecycle.store` function; the
lifecycle rules (roles, the two-person rule, immutability) are enforced there, once, for this API and the
console alike. Refusals become problem documents that name the
field at fault and carry the lifecycle's machine-readable ``code``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import AwareDatetime, Field, StrictBool, field_validator, model_validator

from risk_zoning.store import RiskDatabase, region_units
from warnings_svc.dissemination import area_outbox, outbox
from warnings_svc.forecast.proposals import proposal_document
from warnings_svc.lifecycle import store
from warnings_svc.lifecycle.transitions import Action, LifecycleError, WarningStatus
from warnings_svc.vocabulary import HAZARD_LEVELS
from warnings_svc.web.appkeys import ISSUING, METRICS, POOL, RISK_DATABASE, SETTINGS
from warnings_svc.web.auth import require_user, require_writer, write_as, writes_on_lane
from warnings_svc.web.operations import (
    RequestModel,
    json_reply,
    operation,
    parse_body,
    parse_path,
    parse_query,
)
from warnings_svc.web.problems import ApiProblem

log = logging.getLogger(__name__)


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
    """Register the routes and the issuing configuration (the clock that expires warnings is a background task)."""
    app[ISSUING] = store.Issuing.from_settings(app[SETTINGS])
    app.router.add_get("/api/v1/warnings", list_warnings, name="warnings")
    app.router.add_post("/api/v1/warnings", create_warning, name="create_warning")
    app.router.add_post("/api/v1/proposals/{id}/draft", draft_from_proposal, name="draft_from_proposal")
    app.router.add_get("/api/v1/warnings/{id}", get_warning, name="warning")
    app.router.add_patch("/api/v1/warnings/{id}", edit_warning, name="edit_warning")
    app.router.add_get("/api/v1/warnings/{id}/preview", preview_warning, name="preview_warning")
    app.router.add_get("/api/v1/warnings/{id}/deliveries", warning_deliveries, name="warning_deliveries")
    app.router.add_post("/api/v1/warnings/{id}/submit", submit_warning, name="submit_warning")
    app.router.add_post("/api/v1/warnings/{id}/approve", approve_warning, name="approve_warning")
    app.router.add_post("/api/v1/warnings/{id}/return", return_warning, name="return_warning")
    app.router.add_post("/api/v1/warnings/{id}/discard", discard_warning, name="discard_warning")
    app.router.add_post("/api/v1/warnings/{id}/update", update_warning, name="update_warning")
    app.router.add_post("/api/v1/warnings/{id}/cancel", cancel_warning, name="cancel_warning")


# ---------------------------------------------------------------------------------------------- requests


class WarningPath(RequestModel):
    id: int = Field(ge=0, lt=10**18, description="The warning's id")


class ProposalPath(RequestModel):
    id: int = Field(ge=0, lt=10**18, description="The proposal's id")


class WarningsQuery(RequestModel):
    """Which warnings: `status` is a comma-separated list of lifecycle states (default: all)."""

    status: list[WarningStatus] | None = Field(None, json_schema_extra={"style": "form", "explode": False})

    @field_validator("status", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        return [s.strip() for s in value.split(",") if s.strip()] or None


class Body(RequestModel):
    """A JSON body; ``null`` is an absent field."""

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, value: object) -> object:
        return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value


Texts = dict[str, dict[str, str]]  # language -> part (headline, description ...) -> text


class DraftBody(Body):
    """A new draft."""

    hazard: Literal[tuple(HAZARD_LEVELS)]  # type: ignore[valid-type]
    level: str
    areas: list[str] = Field(description="Admin codes of the region's units")
    onset: AwareDatetime
    expires: AwareDatetime
    exercise: StrictBool = False
    polygons: list[str] = Field(default_factory=list, description="CAP polygons (lat,lon pairs)")
    texts: Texts = Field(default_factory=dict)
    note: str = ""
    area_targets: list[str] | None = Field(
        None,
        description='Targets of the area channels to put it out to ("channel/target", e.g. "area_sms/china-mobile"); '
        "absent: those configured for its level",
    )


class ChangesBody(Body):
    """Fields to change; only those given change (a ``null`` is not a change)."""

    level: str | None = None
    onset: AwareDatetime | None = None
    expires: AwareDatetime | None = None
    areas: list[str] | None = None
    polygons: list[str] | None = None
    texts: Texts | None = None
    note: str | None = None
    area_targets: list[str] | None = Field(
        None, description='Targets of the area channels ("channel/target"); [] for none of them'
    )

    def changes(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class FromProposalBody(Body):
    exercise: StrictBool = False


class SubmitBody(Body):
    """Submitting takes no fields: an empty body or none at all (anything else is refused)."""


class ApproveBody(Body):
    comment: str = ""


class ReasonBody(Body):
    reason: str = Field("", description="Why (required by the lifecycle)")


class CancelBody(Body):
    note: str = ""


_VERSION = json_reply("The version as it now stands")
_CREATED = json_reply("The new version (Location: the warning)", headers=("Location",))
_AUTHENTICATED = ("bearer", "session")
_WRITE_PROBLEMS = (400, 401, 403, 404, 409, 413, 415, 422)


# ---------------------------------------------------------------------------------------------- handlers


@operation(
    "The latest version of each warning (staff only); ?status=draft,pending_approval,...",
    query=WarningsQuery,
    responses={200: json_reply("Warnings")},
    problems=(400, 401, 403),
    security=_AUTHENTICATED,
)
async def list_warnings(request: web.Request) -> web.Response:
    """The latest version of each warning, optionally of the given statuses."""
    require_user(request, scope="read")
    query = parse_query(request, WarningsQuery)
    statuses = [str(s) for s in query.status] if query.status else None
    async with request.app[POOL].acquire() as conn:
        found = await store.latest_versions(conn, statuses=statuses)
    return web.json_response({"warnings": [v.to_json() for v in found]})


@writes_on_lane
@operation(
    "Create a draft: hazard, level, areas, onset, expires; texts, polygons, note optional",
    body=DraftBody,
    responses={201: _CREATED},
    problems=_WRITE_PROBLEMS,
    security=_AUTHENTICATED,
)
async def create_warning(request: web.Request) -> web.Response:
    """A new draft."""
    require_writer(request)
    body = await parse_body(request, DraftBody)
    content = store.Content(
        areas=tuple(body.areas),
        polygons=tuple(body.polygons),
        texts=body.texts,
        note=body.note,
        area_targets=None if body.area_targets is None else tuple(body.area_targets),
    )
    issuing, risk, now = request.app[ISSUING], _held_risk_database(request), datetime.now(UTC)
    with _answers():
        version = await write_as(
            request,
            lambda conn, user: store.create(
                conn,
                issuing,
                user.actor,
                hazard=body.hazard,
                level=body.level,
                onset=body.onset,
                expires=body.expires,
                content=content,
                exercise=body.exercise,
                now=now,
                risk=risk,
            ),
        )
    return _created(request, version)


@writes_on_lane
@operation(
    "Draft the warning, Update or Cancel a proposal asks for",
    path=ProposalPath,
    body=FromProposalBody,
    body_required=False,
    responses={201: _CREATED},
    problems=_WRITE_PROBLEMS,
    security=_AUTHENTICATED,
)
async def draft_from_proposal(request: web.Request) -> web.Response:
    """The draft a proposal asks for."""
    require_writer(request)
    proposal_id = parse_path(request, ProposalPath).id
    body = await parse_body(request, FromProposalBody, optional=True)
    issuing, risk, now = request.app[ISSUING], _held_risk_database(request), datetime.now(UTC)
    with _answers():
        version = await write_as(
            request,
            lambda conn, user: store.draft_from_proposal(
                conn, issuing, user.actor, proposal_id, now=now, exercise=body.exercise, risk=risk
            ),
        )
    return _created(request, version)


@operation(
    "Every version of a warning",
    path=WarningPath,
    responses={200: json_reply("The warning's versions")},
    problems=(401, 403, 404),
    security=_AUTHENTICATED,
)
async def get_warning(request: web.Request) -> web.Response:
    """Every version of a warning."""
    require_user(request, scope="read")
    warning_id = parse_path(request, WarningPath).id
    with _answers():
        async with request.app[POOL].acquire() as conn:
            found = await store.versions(conn, warning_id)
    return web.json_response(
        {"id": warning_id, "latest": found[-1].to_json(), "versions": [v.to_json() for v in found]}
    )


@operation(
    "Dissemination progress: deliveries to people by state and segments, per version and fan-out; and each "
    "version put out to each target of the area channels, with the evidence of reach it brought back",
    path=WarningPath,
    responses={200: json_reply("Progress")},
    problems=(401, 403, 404),
    security=_AUTHENTICATED,
)
async def warning_deliveries(request: web.Request) -> web.Response:
    """How far dissemination got: deliveries by state and segments sent, overall and per version, with each
    fan-out's progress (people written, people an Update left unchanged)."""
    require_user(request, scope="read")
    warning_id = parse_path(request, WarningPath).id
    with _answers():
        async with request.app[POOL].acquire() as conn:
            await store.versions(conn, warning_id)  # a 404 for a warning that does not exist
            progress = await outbox.summary(conn, warning_id)
            progress["area_channels"] = await area_outbox.area_summary(conn, warning_id)
    return web.json_response({"id": warning_id} | progress, dumps=lambda o: json.dumps(o, default=str))


@operation(
    "Texts, SMS segments, budgets and impact if issued now",
    path=WarningPath,
    responses={200: json_reply("Preview")},
    problems=(401, 403, 404),
    security=_AUTHENTICATED,
)
async def preview_warning(request: web.Request) -> web.Response:
    """What the latest version would say and reach if approved now."""
    require_user(request, scope="read")
    warning_id = parse_path(request, WarningPath).id
    ctx = request.app[ISSUING]
    with _answers():
        async with request.app[POOL].acquire() as conn:
            latest = (await store.versions(conn, warning_id))[-1]
            units = await region_units(conn, ctx.region)
            document = None
            if latest.content.proposal_id is not None:
                document = await proposal_document(conn, latest.content.proposal_id)
    texts = await asyncio.get_running_loop().run_in_executor(
        None, lambda: store.preview(ctx, latest, units, now=datetime.now(UTC))
    )
    return web.json_response({"texts": texts, "impact": store.impact(latest, units, document)})


@writes_on_lane
@operation(
    "Edit the latest (unissued) version: level, onset, expires, areas, polygons, texts, note",
    path=WarningPath,
    body=ChangesBody,
    responses={200: _VERSION},
    problems=_WRITE_PROBLEMS,
    security=_AUTHENTICATED,
)
async def edit_warning(request: web.Request) -> web.Response:
    """Change the latest, unissued version."""
    require_writer(request)
    warning_id = parse_path(request, WarningPath).id
    changes = (await parse_body(request, ChangesBody)).changes()
    if not changes:
        raise ApiProblem(422, "invalid", "nothing to change", "body")
    issuing, risk, now = request.app[ISSUING], _held_risk_database(request), datetime.now(UTC)
    with _answers():
        version = await write_as(
            request,
            lambda conn, user: store.edit(conn, issuing, user.actor, warning_id, changes, now=now, risk=risk),
        )
    return web.json_response(version.to_json())


async def _act(request: web.Request, action: Action, reason: str) -> web.Response:
    require_writer(request)
    warning_id = parse_path(request, WarningPath).id
    issuing, risk, now = request.app[ISSUING], _held_risk_database(request), datetime.now(UTC)
    timeliness = request.app[METRICS].timeliness
    with _answers():
        version = await write_as(
            request,
            lambda conn, user: store.act(
                conn,
                issuing,
                user.actor,
                warning_id,
                action,
                now=now,
                reason=reason,
                risk=risk,
                timeliness=timeliness,
            ),
        )
    return web.json_response(version.to_json())


def _action(summary: str, body: type[Body]) -> Any:
    return operation(
        summary,
        path=WarningPath,
        body=body,
        body_required=False,
        responses={200: _VERSION},
        problems=_WRITE_PROBLEMS,
        security=_AUTHENTICATED,
    )


@writes_on_lane
@_action("Submit for approval", SubmitBody)
async def submit_warning(request: web.Request) -> web.Response:
    """Submit a draft for approval."""
    await parse_body(request, SubmitBody, optional=True)
    return await _act(request, Action.submit, "")


@writes_on_lane
@_action("Approve and issue (a second person for orange and red)", ApproveBody)
async def approve_warning(request: web.Request) -> web.Response:
    """Approve and issue a version pending approval."""
    body = await parse_body(request, ApproveBody, optional=True)
    return await _act(request, Action.approve, body.comment)


@writes_on_lane
@_action("Return for edit with a reason", ReasonBody)
async def return_warning(request: web.Request) -> web.Response:
    """Return a version pending approval to its author."""
    body = await parse_body(request, ReasonBody, optional=True)
    return await _act(request, Action.return_for_edit, body.reason)


@writes_on_lane
@_action("Discard a never-issued version", ReasonBody)
async def discard_warning(request: web.Request) -> web.Response:
    """Discard a version that was never issued."""
    body = await parse_body(request, ReasonBody, optional=True)
    return await _act(request, Action.discard, body.reason)


@writes_on_lane
@operation(
    "Draft an Update of the issued warning",
    path=WarningPath,
    body=ChangesBody,
    body_required=False,
    responses={201: _CREATED},
    problems=_WRITE_PROBLEMS,
    security=_AUTHENTICATED,
)
async def update_warning(request: web.Request) -> web.Response:
    """A draft Update of an issued warning, with the changes given."""
    require_writer(request)
    warning_id = parse_path(request, WarningPath).id
    changes = (await parse_body(request, ChangesBody, optional=True)).changes()
    issuing, risk, now = request.app[ISSUING], _held_risk_database(request), datetime.now(UTC)
    with _answers():
        version = await write_as(
            request,
            lambda conn, user: store.start_update(
                conn, issuing, user.actor, warning_id, changes, now=now, risk=risk
            ),
        )
    return _created(request, version)


@writes_on_lane
@operation(
    "Draft a Cancel of the issued warning",
    path=WarningPath,
    body=CancelBody,
    body_required=False,
    responses={201: _CREATED},
    problems=_WRITE_PROBLEMS,
    security=_AUTHENTICATED,
)
async def cancel_warning(request: web.Request) -> web.Response:
    """A draft Cancel of an issued warning."""
    require_writer(request)
    warning_id = parse_path(request, WarningPath).id
    body = await parse_body(request, CancelBody, optional=True)
    issuing, risk, now = request.app[ISSUING], _held_risk_database(request), datetime.now(UTC)
    with _answers():
        version = await write_as(
            request,
            lambda conn, user: store.start_cancel(
                conn, issuing, user.actor, warning_id, note=body.note, now=now, risk=risk
            ),
        )
    return _created(request, version)


def _held_risk_database(request: web.Request) -> RiskDatabase | None:
    """The risk database this process holds in memory: the store checks it is still the current version
    (one small query) instead of reading the whole risk database for every write."""
    return request.app[RISK_DATABASE].held()


# ---------------------------------------------------------------------------------------------- answers


def _created(request: web.Request, version: store.Version) -> web.Response:
    location = request.app.router["warning"].url_for(id=str(version.warning_id))
    return web.json_response(version.to_json(), status=201, headers={"Location": str(location)})
