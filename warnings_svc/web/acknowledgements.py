"""Acknowledgements (叫应) and relayers' reports on the web: the one-time link page, the partners' signed
callback, the console's actions, and the relayers' standing link page.

- ``GET /ack/{token}`` shows the warning and a button; ``POST /ack/{token}`` acknowledges. A used token
  answers 410, an expired one (the warning is no longer in force, the request was closed) 410, an unknown
  one 404, each as a page that says so; none of them writes anything. No login: the token is the secret.
- ``POST /api/v1/acknowledgements``: a partner system acknowledges for a department, ``{"identifier",
  "department", "by"}`` signed with Standard Webhooks headers under the secret (current or, during a
  rotation, previous) of one of that department's webhook subscriptions; 5 minutes' tolerance. 202 with the
  outcome (``acknowledged``, or ``duplicate``: idempotent), else a problem (400/422 unreadable, 401 not
  signed by the department, 404 no request, 409 no longer in force).
- ``POST /api/v1/acknowledgements/{id}/acknowledge`` (an acknowledgement received by phone) and
  ``POST /api/v1/acknowledgements/{id}/call`` (the duty officer's call outcome): forecasters, approvers and
  operations users, from the console.
- ``GET /relay/{token}``: a relayer's standing link (an HMAC of their id under ``data_dir/keys/relay-link.key``)
  lists the warnings in force for their areas with a number field; ``POST`` stores a report (via 'link').

Every change is audited (`lifecycle.acknowledgement_steps`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, Literal

from aiohttp import web
from pydantic import Field, ValidationError

from channels.webhooks.signing import verify
from warnings_svc.dissemination.partners import acknowledgements as acks
from warnings_svc.dissemination.partners import inbound
from warnings_svc.lifecycle import acknowledgement_steps as steps
from warnings_svc.lifecycle import store
from warnings_svc.lifecycle.transitions import Role
from warnings_svc.web.appkeys import ISSUING, POOL, RISK_DATABASE, SETTINGS, TEMPLATES
from warnings_svc.web.auth import require_writer, write_as, writes_on_lane
from warnings_svc.web.console.labels import beijing, warning_title
from warnings_svc.web.console.page import SECURITY_HEADERS
from warnings_svc.web.operations import (
    RequestModel,
    json_answer,
    json_reply,
    loads_json,
    media_reply,
    operation,
    parse_body,
    parse_path,
    read_body,
)
from warnings_svc.web.problems import ApiProblem, problem_from_validation

CALLBACK_TOLERANCE_S = 300.0
ACK_ROLES = (Role.forecaster, Role.approver, Role.operations)
RELAY_SECRET = web.AppKey("relay_secret", bytes)


# ---------------------------------------------------------------------------------------------- requests


class TokenPath(RequestModel):
    # any text: an unknown token is answered by the page itself (404 in HTML), never by a JSON problem
    token: str = Field(description="The link's token")


class RequestPath(RequestModel):
    id: int = Field(ge=1, lt=10**18, description="The acknowledgement request's id")


class CallbackBody(RequestModel):
    """A partner system's acknowledgement for a department."""

    identifier: str = Field(min_length=1, max_length=200, description="The CAP identifier of the warning")
    department: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="The department's code")
    by: str = Field(min_length=1, max_length=80, description="Who acknowledged")


class ConsoleAckBody(RequestModel):
    """An acknowledgement received by phone, recorded in the console."""

    by: str = Field(min_length=1, max_length=80, description="Who acknowledged (name, rank)")


class CallBody(RequestModel):
    """The outcome of the duty officer's call."""

    outcome: Literal["reached", "not_reached"] = Field(
        description="reached: acknowledged on the phone; not_reached: nobody answered"
    )
    note: str = Field("", max_length=200, description="What happened")


# ---------------------------------------------------------------------------------------------- pages


def _page(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    html = request.app[TEMPLATES].get_template(template).render(lang="zh", **context)
    return web.Response(text=html, content_type="text/html", status=status, headers=SECURITY_HEADERS)


_TOKEN_STATUS = {
    acks.TokenState.open: 200,
    acks.TokenState.used: 410,
    acks.TokenState.expired: 410,
    acks.TokenState.unknown: 404,
}


def _ack_context(found: acks.TokenLookup) -> dict[str, Any]:
    return {
        "state": str(found.state),
        "department": found.department,
        "person": found.person,
        "headline": found.headline,
        "level": found.level,
        "expires": beijing(found.expires, "%Y-%m-%d %H:%M"),
    }


@operation(
    "The one-time acknowledgement page (the link in an acknowledgement call; no login)",
    path=TokenPath,
    responses={
        200: media_reply("The warning and a button", "text/html"),
        404: media_reply("An unknown link (a page saying so)", "text/html"),
        410: media_reply(
            "A link used up, or for a warning no longer in force (a page saying so)", "text/html"
        ),
    },
)
async def ack_page(request: web.Request) -> web.Response:
    """Show the warning with a button, or why the link no longer works (404 unknown, 410 used or expired)."""
    token = parse_path(request, TokenPath).token
    async with request.app[POOL].acquire() as conn:
        found = await acks.lookup_token(conn, token, now=datetime.now(UTC))
    return _page(request, "ack.html", _TOKEN_STATUS[found.state], done=False, **_ack_context(found))


@operation(
    "Acknowledge through the one-time link (the page's button; no login)",
    path=TokenPath,
    responses={
        200: media_reply("Acknowledged", "text/html"),
        404: media_reply("An unknown link: nothing written (a page saying so)", "text/html"),
        410: media_reply("Used up, or no longer in force: nothing written (a page saying so)", "text/html"),
    },
    problems=(403,),  # a request from another site
)
async def ack_submit(request: web.Request) -> web.Response:
    """Acknowledge; a used, expired or unknown token writes nothing and says so."""
    token = parse_path(request, TokenPath).token
    async with request.app[POOL].acquire() as conn:
        found, result = await steps.acknowledge_link(
            conn, request.app[ISSUING], token, actor="link", now=datetime.now(UTC)
        )
    if result.outcome is acks.AckOutcome.acknowledged:
        return _page(request, "ack.html", 200, done=True, **_ack_context(found))
    state = found.state if found.state is not acks.TokenState.open else acks.TokenState.used
    context = _ack_context(found) | {"state": str(state)}
    return _page(request, "ack.html", _TOKEN_STATUS[state], done=False, **context)


# ---------------------------------------------------------------------------------------------- callback


@operation(
    "A partner system acknowledges a warning for a department (Standard Webhooks signature)",
    body=CallbackBody,
    responses={202: json_reply("Taken: acknowledged, or acknowledged before (duplicate)")},
    problems=(400, 401, 404, 409, 413, 415, 422),
    description="Sign the body with the headers `webhook-id`, `webhook-timestamp` and `webhook-signature` "
    "under the secret of one of the department's webhook subscriptions (during a rotation the previous "
    "secret also works). The timestamp may be 5 minutes off at most.",
)
async def ack_callback(request: web.Request) -> web.Response:
    """Check the body, then the signature, then acknowledge."""
    raw = await read_body(request)
    headers = {
        h: request.headers.get(h, "") for h in ("webhook-id", "webhook-timestamp", "webhook-signature")
    }
    if missing := [h for h, v in headers.items() if not v or len(v) > 1000]:
        raise ApiProblem(400, "invalid", f"missing or overlong {', '.join(missing)}", missing[0])
    if request.content_type != "application/json":
        raise ApiProblem(415, "invalid", f"send application/json, not {request.content_type}", "body")
    body = loads_json(raw)
    if not isinstance(body, dict):
        raise ApiProblem(400, "invalid", "the body must be a JSON object", "body")
    try:
        asked = CallbackBody.model_validate(body)
    except ValidationError as e:
        raise problem_from_validation(e, 422) from e
    now = datetime.now(UTC)
    async with request.app[POOL].acquire() as conn:
        secrets_ = await _department_secrets(conn, asked.department, now)
        signed = bool(secrets_) and verify(
            secrets_,
            headers["webhook-id"],
            headers["webhook-timestamp"],
            raw,
            headers["webhook-signature"],
            now=time.time(),
            tolerance_s=CALLBACK_TOLERANCE_S,
        )
        if not signed:
            raise ApiProblem(
                401, "signature", "not signed by a webhook subscription of this department (or too old)"
            )
        request_id = await acks.request_for_department(conn, asked.identifier, asked.department)
        if request_id is None:
            raise ApiProblem(404, "not_found", "this department owes no acknowledgement for that warning")
        result = await steps.acknowledge(
            conn,
            request.app[ISSUING],
            request_id,
            by=asked.by,
            via="callback",
            actor=f"department:{asked.department}",
            now=now,
        )
    if result.outcome is acks.AckOutcome.not_in_force:
        raise ApiProblem(409, "not_in_force", "the warning is no longer in force")
    return json_answer({"outcome": str(result.outcome), "request": request_id}, status=202)


async def _department_secrets(conn: Any, department: str, now: datetime) -> list[str]:
    """The signing secrets of a department's webhook subscriptions (not deleted or disabled): current ones,
    and previous ones still within their rotation overlap."""
    rows = await conn.fetch(
        """SELECT s.secret, s.previous_secret, s.previous_until FROM svc.subscription s
           JOIN svc.department d ON d.id = s.department_id
           WHERE d.code = $1 AND s.channel = 'webhook' AND s.deleted_at IS NULL AND s.state <> 'disabled'""",
        department,
    )
    out = [r["secret"] for r in rows if r["secret"]]
    out += [
        r["previous_secret"]
        for r in rows
        if r["previous_secret"] and r["previous_until"] is not None and r["previous_until"] > now
    ]
    return out


# ---------------------------------------------------------------------------------------------- console actions

_CONSOLE_PROBLEMS = (400, 401, 403, 404, 409, 413, 415, 422)


def _answer(result: acks.AckResult) -> web.Response:
    if result.outcome is acks.AckOutcome.unknown:
        raise ApiProblem(404, "not_found", "no such acknowledgement request", "id")
    if result.outcome is acks.AckOutcome.duplicate:
        raise ApiProblem(409, "already_acknowledged", "this request was acknowledged before")
    if result.outcome is acks.AckOutcome.not_in_force:
        raise ApiProblem(
            409, "not_in_force", "the warning is no longer in force, or the request is not on the call list"
        )
    return json_answer({"outcome": str(result.outcome), "request": result.request_id})


@writes_on_lane
@operation(
    "Record an acknowledgement received by phone (forecasters, approvers, operations)",
    path=RequestPath,
    body=ConsoleAckBody,
    responses={200: json_reply("Acknowledged")},
    problems=_CONSOLE_PROBLEMS,
    security=("bearer", "session"),
)
async def console_acknowledge(request: web.Request) -> web.Response:
    require_writer(request)
    request_id = parse_path(request, RequestPath).id
    body = await parse_body(request, ConsoleAckBody)
    ctx, now = request.app[ISSUING], datetime.now(UTC)

    async def work(conn: Any, user: Any) -> acks.AckResult:
        _require_role(user)
        by = f"{body.by} ({user.name})"
        return await steps.acknowledge(conn, ctx, request_id, by=by, via="console", actor=user.name, now=now)

    return _answer(await write_as(request, work))


@writes_on_lane
@operation(
    "Record the outcome of the duty officer's call (forecasters, approvers, operations)",
    path=RequestPath,
    body=CallBody,
    responses={200: json_reply("Recorded: acknowledged via call, or noted")},
    problems=_CONSOLE_PROBLEMS,
    security=("bearer", "session"),
)
async def console_call(request: web.Request) -> web.Response:
    require_writer(request)
    request_id = parse_path(request, RequestPath).id
    body = await parse_body(request, CallBody)
    ctx, now = request.app[ISSUING], datetime.now(UTC)

    async def work(conn: Any, user: Any) -> acks.AckResult:
        _require_role(user)
        return await steps.record_call(
            conn, ctx, request_id, reached=body.outcome == "reached", note=body.note, actor=user.name, now=now
        )

    return _answer(await write_as(request, work))


def _require_role(user: Any) -> None:
    if user.role not in ACK_ROLES:
        raise ApiProblem(
            403, "role", "only forecasters, approvers and operations users record acknowledgements"
        )


# ---------------------------------------------------------------------------------------------- relayers


async def _relay_view(request: web.Request) -> tuple[int | None, Any]:
    token = parse_path(request, TokenPath).token
    recipient_id = inbound.recipient_of_token(request.app[RELAY_SECRET], token)
    return recipient_id, token


async def _units(request: web.Request, conn: Any) -> dict[str, Any]:
    held = request.app[RISK_DATABASE].held() if RISK_DATABASE in request.app else None
    return await store.region_units_of(conn, request.app[ISSUING], held)


@operation(
    "A relayer's standing link: the warnings in force for their areas, with a field for how many people "
    "they told (no login)",
    path=TokenPath,
    responses={
        200: media_reply("The relayer's page", "text/html"),
        404: media_reply("An unknown link (a page saying so)", "text/html"),
    },
)
async def relay_page(request: web.Request) -> web.Response:
    recipient_id, token = await _relay_view(request)
    return await _relay_answer(request, recipient_id, token, message="", status=200)


async def _relay_answer(
    request: web.Request, recipient_id: int | None, token: str, *, message: str, status: int
) -> web.Response:
    now = datetime.now(UTC)
    async with request.app[POOL].acquire() as conn:
        person = None if recipient_id is None else await inbound.relayer(conn, recipient_id)
        if person is None:
            return _page(request, "relay.html", 404, found=False, warnings=[], message="", name="", token="")
        units = await _units(request, conn)
        warnings = await inbound.warnings_for_relayer(conn, person["areas"], units, now=now)
        reports = {
            r["warning_id"]: r["reported"]
            for r in await conn.fetch(
                "SELECT warning_id, reported FROM svc.relay_report WHERE recipient_id = $1", person["id"]
            )
        }
    rows = [
        {
            "id": w["warning_id"],
            "title": warning_title(w["hazard"], w["level"], "zh"),
            "level": w["level"],
            "headline": w["headline"],
            "expires": beijing(w["expires"], "%m-%d %H:%M"),
            "reported": reports.get(w["warning_id"]),
        }
        for w in warnings
    ]
    return _page(
        request,
        "relay.html",
        status,
        found=True,
        warnings=rows,
        message=message,
        name=person["name"],
        token=token,
    )


@operation(
    "A relayer reports how many people they told about a warning (form fields warning_id, people; no login)",
    path=TokenPath,
    body_type="application/x-www-form-urlencoded",
    body_media={"application/x-www-form-urlencoded": {"type": "object"}},
    responses={
        200: media_reply("Stored; the page again", "text/html"),
        404: media_reply("An unknown link: nothing written", "text/html"),
        422: media_reply("Not a number, or the warning is not in force: nothing written", "text/html"),
    },
    problems=(403,),  # a request from another site
)
async def relay_submit(request: web.Request) -> web.Response:
    recipient_id, token = await _relay_view(request)
    if recipient_id is None:
        return await _relay_answer(request, None, token, message="", status=404)
    form = await request.post()
    raw_warning, raw_people = str(form.get("warning_id", "")), str(form.get("people", "")).strip()
    if not (raw_warning.isascii() and raw_warning.isdigit() and len(raw_warning) < 19):
        return await _relay_answer(request, recipient_id, token, message="invalid_warning", status=422)
    if not (raw_people.isascii() and raw_people.isdigit() and len(raw_people) <= 7):
        return await _relay_answer(request, recipient_id, token, message="invalid_people", status=422)
    async with request.app[POOL].acquire() as conn:
        units = await _units(request, conn)
        people = await steps.relay_report(
            conn,
            request.app[ISSUING],
            int(raw_warning),
            recipient_id,
            int(raw_people),
            units,
            actor=f"relayer:{recipient_id}",
            now=datetime.now(UTC),
        )
    if people is None:
        return await _relay_answer(request, recipient_id, token, message="not_in_force", status=422)
    return await _relay_answer(request, recipient_id, token, message="stored", status=200)


def relay_link(app: web.Application, recipient_id: int) -> str:
    """A relayer's standing link (path, under the public URL when one is configured)."""
    base = (app[SETTINGS].warnings.public_url or "").rstrip("/")
    return f"{base}/relay/{inbound.relay_token(app[RELAY_SECRET], recipient_id)}"


def setup_acknowledgements(app: web.Application) -> None:
    """The routes, and the relayers' link secret (made in data_dir/keys on first start)."""
    app[RELAY_SECRET] = inbound.relay_secret(app[SETTINGS].data_dir)
    app.router.add_get("/ack/{token}", ack_page, name="ack_page")
    app.router.add_post("/ack/{token}", ack_submit, name="ack_submit")
    app.router.add_post("/api/v1/acknowledgements", ack_callback, name="ack_callback")
    app.router.add_post(
        "/api/v1/acknowledgements/{id}/acknowledge", console_acknowledge, name="console_acknowledge"
    )
    app.router.add_post("/api/v1/acknowledgements/{id}/call", console_call, name="console_call")
    app.router.add_get("/relay/{token}", relay_page, name="relay_page")
    app.router.add_post("/relay/{token}", relay_submit, name="relay_submit")
