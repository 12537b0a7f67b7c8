"""A warning's public coverage and its escalation steps (`/api/v1/warnings/{id}/coverage`, `.../escalations`).

The coverage is measured when asked (`coverage.evidence.measure`, the engine the watch and the smoke run use),
beside the time series and checkpoints the watch stored (`coverage.snapshots`) and the ladder's steps
(`coverage.escalation`). The duty officer applies or declines a proposed step here (one click in the
console); a step no longer proposed is a 409 and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import Field

from risk_zoning.errors import DatabaseError
from warnings_svc.coverage import escalation, snapshots
from warnings_svc.coverage.escalation import EscalationError, EscalationEvent
from warnings_svc.coverage.evidence import measure, region_of
from warnings_svc.coverage.metrics import CoverageMetrics
from warnings_svc.lifecycle import store
from warnings_svc.lifecycle.transitions import Role
from warnings_svc.web.accounts import User
from warnings_svc.web.appkeys import COVERAGE_METRICS, ISSUING, METRICS, POOL, RISK_DATABASE, SETTINGS
from warnings_svc.web.auth import Forbidden, require_user, require_writer, write_as, writes_on_lane
from warnings_svc.web.operations import Handler, RequestModel, json_reply, operation, parse_body, parse_path
from warnings_svc.web.problems import ApiProblem

READERS = (Role.operations, Role.approver, Role.forecaster, Role.admin)
DECIDERS = (Role.operations, Role.approver, Role.admin)
_AUTHENTICATED = ("bearer", "session")


class CoveragePath(RequestModel):
    id: int = Field(ge=0, lt=10**18, description="The warning's id")


class EscalationPath(RequestModel):
    id: int = Field(ge=0, lt=10**18, description="The warning's id")
    escalation_id: int = Field(ge=0, lt=10**18, description="The escalation step's id")


class DecisionBody(RequestModel):
    reason: str = Field(
        "", max_length=500, description="Why (optional; kept with the step and its audit entry)"
    )


@operation(
    "A warning's public coverage now (measured from evidence), its time series, checkpoints and escalation steps",
    path=CoveragePath,
    responses={200: json_reply("Coverage, series, checkpoints, escalations")},
    problems=(401, 403, 404, 503),
    security=_AUTHENTICATED,
)
async def warning_coverage(request: web.Request) -> web.Response:
    """The warning's coverage (null when no version of it was issued), series, checkpoints and steps."""
    require_user(request, *READERS, scope="read")
    warning_id = parse_path(request, CoveragePath).id
    settings, issuing = request.app[SETTINGS], request.app[ISSUING]
    async with request.app[POOL].acquire() as conn:
        await _known(conn, warning_id)
        try:
            units = await store.region_units_of(conn, issuing, request.app[RISK_DATABASE].held())
        except DatabaseError as e:
            raise ApiProblem(503, "unavailable", f"no population to measure against: {e}") from e
        measured = await measure(conn, warning_id, region_of(units), settings.coverage, settings.dispatch)
        body = {
            "coverage": None if measured is None else measured.as_json(),
            "series": await snapshots.series(conn, warning_id),
            "checkpoints": await snapshots.checkpoints(conn, warning_id),
            "escalations": await escalation.escalations_of(conn, warning_id),
        }
    return web.json_response(body)


def _decision(event: EscalationEvent, summary: str) -> Handler:
    @writes_on_lane
    @operation(
        summary,
        path=EscalationPath,
        body=DecisionBody,
        body_required=False,
        responses={200: json_reply("The step as it now stands")},
        problems=(400, 401, 403, 404, 409, 413, 415, 422),
        security=_AUTHENTICATED,
    )
    async def decide(request: web.Request) -> web.Response:
        require_writer(request)
        path = parse_path(request, EscalationPath)
        body = await parse_body(request, DecisionBody, optional=True)
        issuing, held = request.app[ISSUING], request.app[RISK_DATABASE].held()
        counter = request.app[COVERAGE_METRICS]

        async def work(conn: asyncpg.Connection, user: User) -> dict[str, Any]:
            if user.role not in DECIDERS:  # a bearer token's holder is known only now
                raise Forbidden(
                    f"role {user.role.value!r} may not do this; it needs operations, approver or admin"
                )
            await _known(conn, path.id)
            units = await store.region_units_of(conn, issuing, held) if event is EscalationEvent.apply else {}
            return await escalation.decide(
                conn, issuing, path.id, path.escalation_id, event, actor=user.name, reason=body.reason,
                units=units, now=datetime.now(UTC), counter=counter,
            )  # fmt: skip

        try:
            step = await write_as(request, work)
        except EscalationError as e:
            raise ApiProblem(404 if e.code == "not_found" else 409, e.code, str(e), "escalation_id") from e
        return web.json_response(step)

    return decide


apply_escalation = _decision(
    EscalationEvent.apply, "Apply a proposed escalation step (its messages are queued)"
)
decline_escalation = _decision(EscalationEvent.decline, "Decline a proposed escalation step")


async def _known(conn: asyncpg.Connection, warning_id: int) -> None:
    if not await conn.fetchval("SELECT EXISTS (SELECT 1 FROM svc.warning WHERE id = $1)", warning_id):
        raise ApiProblem(404, "not_found", f"no warning {warning_id}", "id")


def setup_coverage_api(app: web.Application) -> None:
    """The routes, and the coverage metrics on the service's registry (the watch counts there too)."""
    app[COVERAGE_METRICS] = CoverageMetrics(app[METRICS].registry)
    app.router.add_get("/api/v1/warnings/{id}/coverage", warning_coverage, name="warning_coverage")
    app.router.add_post(
        "/api/v1/warnings/{id}/escalations/{escalation_id}/apply", apply_escalation, name="apply_escalation"
    )
    app.router.add_post(
        "/api/v1/warnings/{id}/escalations/{escalation_id}/decline",
        decline_escalation,
        name="decline_escalation",
    )
