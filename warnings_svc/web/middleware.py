"""Middleware of every request: correlation id and metrics, and errors turned into problem documents or error
pages.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from warnings_svc.web.appkeys import METRICS, REQUEST_ID, TEMPLATES
from warnings_svc.web.errors import INTERNAL_ERROR, one_line, problem_for
from warnings_svc.web.problems import ApiProblem, Problem

log = logging.getLogger(__name__)

DATABASE_UNAVAILABLE_DETAIL = "the database cannot be reached now; retry in a few seconds"

PROBLEM_JSON = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_BODY_HEADERS = frozenset({"content-type", "content-length", "content-encoding"})


# ---------------------------------------------------------------------------------------------- middleware

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def observe_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Correlation id, request counter and latency by route pattern (never the raw path)."""
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = offered if _CLIENT_REQUEST_ID.match(offered) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers[REQUEST_ID_HEADER] = request_id
        return response
    except web.HTTPException as e:
        status = e.status
        e.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        request.app[METRICS].observe_request(
            _route_pattern(request), request.method, status, time.perf_counter() - started
        )


def _route_pattern(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def answer_problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn errors into answers: problem documents for machines, an error page for the HTML console."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400 or not _wants_problem_json(request):
            raise
        code = "_".join(e.reason.lower().split())  # "Method Not Allowed" -> method_not_allowed
        response = _problem_response(request, Problem(e.status, code, e.reason, "about:blank"), e.reason)
        # what the refusal says beyond its body goes with it: a 405's `Allow`, a 413's or 429's own headers
        response.headers.extend((k, v) for k, v in e.headers.items() if k.lower() not in _BODY_HEADERS)
        return response
    except Exception as e:
        return error_answer(request, e)


def error_answer(request: web.Request, error: Exception) -> web.Response:
    """The answer to an error a handler raised: its problem document (or error page), with the headers the
    error carries; an error no table knows is logged and answered as a 500.

    Inner middleware call it too to see the answer a handler's refusal will get (`web.idempotency` keeps it).
    """
    problem = problem_for(error)
    if problem is None:
        log.exception(
            "unhandled error",
            exc_info=error,
            extra={"request_id": request[REQUEST_ID], "path": request.path},
        )
        problem, detail = INTERNAL_ERROR, "the error was logged with this request's id"
    else:
        if problem.status >= 500:
            log.warning("request failed: %s", one_line(error), extra={"request_id": request[REQUEST_ID]})
        # a lost database's own words (asyncpg's states, socket paths) are for the log, not for clients
        detail = DATABASE_UNAVAILABLE_DETAIL if problem.code == "database_unavailable" else one_line(error)
    if _wants_problem_json(request):
        field = error.field if isinstance(error, ApiProblem) else None
        response = _problem_response(request, problem, detail, field)
    else:
        response = _error_page(request, problem, detail)
    response.headers.update(getattr(error, "problem_headers", {}))  # WWW-Authenticate, Retry-After
    return response


def _wants_problem_json(request: web.Request) -> bool:
    # people's pages (the first page, the console, its login and logout forms) get an HTML error page
    route = request.match_info.route
    if route.resource is not None:
        return route.name != "index" and not request.path.startswith("/console/")
    return request.path.startswith(("/api/", "/maps/"))


def _problem_response(
    request: web.Request, problem: Problem, detail: str, field: str | None = None
) -> web.Response:
    """The one problem document shape: RFC 9457's keys, the request id, ``code`` and, when one is at fault,
    ``field``."""
    body: dict[str, Any] = {
        "type": problem.type,
        "title": problem.title,
        "status": problem.status,
        "detail": detail,
        "instance": request.path,
        "request_id": request[REQUEST_ID],
        "code": problem.code,
    }
    if field:
        body["field"] = field
    return web.Response(
        status=problem.status,
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type=PROBLEM_JSON,
        charset="utf-8",
    )


def _error_page(request: web.Request, problem: Problem, detail: str) -> web.Response:
    html = (
        request.app[TEMPLATES]
        .get_template("error.html")
        .render(problem=problem, detail=detail, request_id=request[REQUEST_ID])
    )
    return web.Response(status=problem.status, text=html, content_type="text/html")
