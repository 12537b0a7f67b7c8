"""The public page of a warning message, with its question "How useful was this warning?", and the scores
it posts (the plan's public satisfaction indicator, `coverage.report`).

- ``GET /alerts/{id}``: a public message (``{warning_id}-{version}``, what ``/api/v1/alerts/{id}`` serves as
  GeoJSON) as a page: headline, description, instruction, areas, times, links to its CAP and GB/T documents,
  and a small form (a score 1-5, where one is, an optional comment). No login. Only messages the public read
  side shows (issued, not an exercise: `lifecycle.public_alerts`); anything else is a 404 page.
- ``POST /api/v1/satisfaction``: ``{"score": 1-5, "warning": "12-1", "area": "150302000000" (optional),
  "comment": "..." (optional, <= 500 characters)}`` as JSON (answered 201 with the stored score) or as the
  page's urlencoded form (answered 303 back to the page, which then thanks). Validated whole before anything
  is written: a field of the wrong form is a 422 problem naming it, a warning that is not a public message a
  404, an area that is not a unit of the region a 422. No login, so no CSRF token either; a form posted from
  another site is refused (403) by the origin check every unsafe request passes (`web.auth`: the
  ``Sec-Fetch-Site`` and ``Origin`` headers). Rate limited per client address (`coverage.satisfaction`:
  20 scores in 10 minutes; 429 with Retry-After); the address is not stored with the score.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any

from aiohttp import web
from pydantic import Field, ValidationError, field_validator

from warnings_svc.coverage.satisfaction import TooManyScores, store_web_score
from warnings_svc.lifecycle.public_alerts import PublicAlert, parse_alert_id
from warnings_svc.web.api.alerts import PUBLIC_ALERTS
from warnings_svc.web.appkeys import POOL, SETTINGS, TEMPLATES
from warnings_svc.web.client_address import client_address
from warnings_svc.web.console.labels import beijing
from warnings_svc.web.console.page import SECURITY_HEADERS
from warnings_svc.web.operations import (
    RequestModel,
    json_answer,
    json_reply,
    loads_json,
    media_reply,
    operation,
    parse_path,
    read_body,
)
from warnings_svc.web.problems import ApiProblem, problem_from_validation

COMMENT_MAX_CHARS = 500
FORM = "application/x-www-form-urlencoded"


class AlertPagePath(RequestModel):
    # any text: an id that names no public message is answered by the page itself (404 in HTML)
    id: str = Field(description="{warning_id}-{version}, e.g. 12-1")


class SatisfactionBody(RequestModel):
    """A score of the warning service, given on a warning's public page."""

    score: Annotated[int, Field(ge=1, le=5, strict=False, description="1 (useless) to 5 (very useful)")]
    warning: str = Field(
        pattern=r"^[1-9]\d{0,17}-[1-9]\d{0,8}$",
        description="The public message scored: {warning_id}-{version}",
    )
    area: str | None = Field(
        None, pattern=r"^[0-9]{12}$", description="Where the person is: a 12-digit code of the region's units"
    )
    comment: str = Field("", max_length=COMMENT_MAX_CHARS, description="Anything the person adds")

    @field_validator("score", mode="before")
    @classmethod
    def _whole_number(cls, value: object) -> object:
        # a form sends text, so "4" is taken (from JSON too); true and 4.0 are not scores
        if isinstance(value, bool | float):
            raise ValueError("a whole number from 1 to 5")
        return value

    @field_validator("area", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("comment")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co") and c not in "\n\t" for c in value):
            raise ValueError("control characters are not allowed")
        return value.strip()


class ScoresLimited(ApiProblem):
    """429 with the seconds to wait (the problem middleware sends `problem_headers` with the answer)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(429, "too_many_scores", message)
        self.problem_headers = {"Retry-After": str(retry_after)}


# ---------------------------------------------------------------------------------------------- the page


@operation(
    "A public warning message as a page, with the question how useful it was (HTML, no login)",
    path=AlertPagePath,
    responses={
        200: media_reply("The page", "text/html"),
        404: media_reply("No such public message (a page saying so)", "text/html"),
    },
)
async def alert_page(request: web.Request) -> web.Response:
    key = parse_alert_id(parse_path(request, AlertPagePath).id)
    alert, areas = (None, []) if key is None else await _public_alert(request, *key)
    if alert is None:
        return _page(request, 404, found=False)
    return _page(request, 200, found=True, **_alert_context(alert, areas, rated="rated" in request.query))


async def _public_alert(
    request: web.Request, warning_id: int, version: int
) -> tuple[PublicAlert | None, list[dict[str, str]]]:
    """The public message and the areas a person may say they are in (the warned units and those in them)."""
    public = request.app[PUBLIC_ALERTS]
    async with request.app[POOL].acquire() as conn:
        alert = await public.one(conn, warning_id, version)
        if alert is None:
            return None, []
        region = await public.areas(conn)
    inside = [
        u
        for u in region.units.values()
        if u.level in ("district", "town") and any(region.overlap(u.code, a) for a in alert.areas)
    ]
    return alert, [{"code": u.code, "name": u.name} for u in sorted(inside, key=lambda u: u.code)]


def _alert_context(alert: PublicAlert, areas: list[dict[str, str]], *, rated: bool) -> dict[str, Any]:
    info = alert.cap.primary
    return {
        "id": alert.id,
        "level": alert.level,
        "headline": info.headline,
        "description": info.description,
        "instruction": info.instruction,
        "area_desc": info.area_desc,
        "sender": info.sender_name,
        "sent": beijing(alert.sent, "%Y-%m-%d %H:%M"),
        "expires": beijing(alert.expires, "%Y-%m-%d %H:%M"),
        "areas": areas,
        "rated": rated,
        "comment_max": COMMENT_MAX_CHARS,
    }


def _page(request: web.Request, status: int, **context: Any) -> web.Response:
    html = request.app[TEMPLATES].get_template("alert.html").render(lang="zh", **context)
    return web.Response(text=html, content_type="text/html", status=status, headers=SECURITY_HEADERS)


# ---------------------------------------------------------------------------------------------- the score


@operation(
    "Give the warning service a score 1-5 for a public message (no login; rate limited per client address)",
    body=SatisfactionBody,
    body_media={FORM: {"type": "object"}},
    responses={
        201: json_reply("Stored"),
        303: media_reply("Stored (a form post): back to the message's page"),
    },
    problems=(400, 403, 404, 413, 415, 422, 429),
    description="JSON or the public page's urlencoded form, with the same fields. A form posted from another "
    "site is refused (Origin / Sec-Fetch-Site). Nothing is written unless the whole request is valid.",
)
async def give_score(request: web.Request) -> web.Response:
    raw = await read_body(request)
    if request.content_type == FORM:
        form = await request.post()
        fields: object = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        if len(form) != len(set(form.keys())):
            raise ApiProblem(400, "invalid", "each field once", "body")
    elif request.content_type == "application/json":
        fields = loads_json(raw)
    else:
        raise ApiProblem(
            415, "invalid", f"send application/json or {FORM}, not {request.content_type}", "body"
        )
    if not isinstance(fields, dict):
        raise ApiProblem(400, "invalid", "the body must be a JSON object", "body")
    try:
        asked = SatisfactionBody.model_validate(fields)
    except ValidationError as e:
        raise problem_from_validation(e, 422) from e
    key = parse_alert_id(asked.warning)
    assert key is not None
    alert, areas = await _public_alert(request, *key)
    if alert is None:
        raise ApiProblem(404, "not_found", f"no public warning message {asked.warning}", "warning")
    if asked.area is not None and asked.area not in {a["code"] for a in areas}:
        raise ApiProblem(422, "invalid", "not a unit of the region inside the warned areas", "area")
    remote = client_address(
        request.remote, request.headers.get("X-Forwarded-For"), request.app[SETTINGS].trusted_proxies
    )
    try:
        async with request.app[POOL].acquire() as conn:
            score_id = await store_web_score(
                conn,
                score=asked.score,
                warning_id=alert.warning_id,
                area=asked.area,
                comment=asked.comment,
                remote_address=remote,
                now=datetime.now(UTC),
            )
    except TooManyScores as e:
        raise ScoresLimited(str(e), e.retry_after) from e
    if request.content_type == FORM:
        return web.Response(status=303, headers={"Location": f"/alerts/{alert.id}?rated=1#satisfaction"})
    body = {"id": score_id, "score": asked.score, "warning": alert.id, "area": asked.area}
    return json_answer(body, status=201)


def setup_satisfaction(app: web.Application) -> None:
    """The public page of a message and the scores it posts (after `setup_alerts`: uses its repository)."""
    app.router.add_get("/alerts/{id}", alert_page, name="alert_page")
    app.router.add_post("/api/v1/satisfaction", give_score, name="satisfaction_submit")
