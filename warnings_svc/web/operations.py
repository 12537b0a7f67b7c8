"""Typed requests: each handler declares its operation (path, query and body models, responses, problems), and
reads its request through those models, so what is checked and what `/openapi.json` says come from one place.

    @operation("Warning proposals, newest first", query=ProposalsQuery, responses={200: json_reply(...)},
               problems=(400,))
    async def list_proposals(request): query = parse_query(request, ProposalsQuery) ...

`warnings_svc.web.openapi` walks the router and describes every handler by its `Operation`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy
from pydantic import BaseModel, ConfigDict, ValidationError

from warnings_svc.web.problems import ApiProblem, json_path, problem_from_validation

MAX_BODY_BYTES = 64 * 1024
# How deep arrays and objects may nest in a JSON body. Real bodies need a handful of levels (a GeoJSON
# multipolygon in an object: 6); json.loads recurses, so thousands of levels would be a RecursionError.
MAX_JSON_DEPTH = 32
OPERATION_ATTRIBUTE = "__operation__"

Model = TypeVar("Model", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RequestModel(BaseModel):
    """A request's path, query or body: unknown names are refused, nothing is coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LenientQuery(BaseModel):
    """The query of a route that has always ignored parameters it does not know (cache busters and the like
    keep working)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


@dataclass(frozen=True)
class Reply:
    """One documented answer: its description and either a pydantic model (JSON) or media types -> schema."""

    description: str
    model: type[BaseModel] | None = None
    media: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """What one handler does, takes and answers, as `/openapi.json` describes it."""

    summary: str
    path: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    body_type: str = "application/json"  # the media type `body` comes in
    body_media: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # a body that is no model
    body_required: bool = True
    responses: Mapping[int, Reply] = field(default_factory=dict)
    problems: tuple[int, ...] = ()
    security: tuple[str, ...] = ()  # names of `OPENAPI_SECURITY_SCHEMES`, any one of which will do
    login_optional: bool = False  # anyone may ask; a login (one of `security`) shows more
    description: str | None = None


def operation(summary: str, **declared: Any) -> Callable[[Handler], Handler]:
    """Attach an `Operation` to a handler (see `Operation` for the keywords)."""
    described = Operation(summary, **declared)

    def attach(handler: Handler) -> Handler:
        setattr(handler, OPERATION_ATTRIBUTE, described)
        return handler

    return attach


def operation_of(handler: object) -> Operation | None:
    """The operation a handler declared, if any."""
    found = getattr(handler, OPERATION_ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None


def json_reply(description: str, model: type[BaseModel] | None = None, **more: Any) -> Reply:
    """A JSON answer described by a model (or a free-form object)."""
    media = {} if model else {"application/json": {"type": "object"}}
    return Reply(description, model=model, media=media, **more)


def media_reply(description: str, *media_types: str, schema: Mapping[str, Any] | None = None) -> Reply:
    """An answer in one or more media types, all with the same schema (text by default)."""
    return Reply(description, media={m: schema or {"type": "string"} for m in media_types})


# ---------------------------------------------------------------------------------------------- parsing


def json_answer(body: Any, **response: Any) -> web.Response:
    """`web.json_response` with non-ASCII text written as is (place names stay readable, not ``\\u`` escapes);
    `response` are its other arguments (status, headers)."""
    return web.json_response(body, dumps=partial(json.dumps, ensure_ascii=False), **response)


def parse_path(request: web.Request, model: type[Model], *, status: int = 404) -> Model:
    """The path parameters as `model`; when one is not of its form, a 404 naming it (nothing can be found
    there) or the given `status`."""
    try:
        return model.model_validate(dict(request.match_info))
    except ValidationError as e:
        name = json_path(tuple(e.errors(include_url=False)[0]["loc"])) or "path"
        raw = request.match_info.get(name, "")[:40]
        if status == 404:
            raise ApiProblem(404, "not_found", f"no such {name} {raw!r}", name) from e
        raise problem_from_validation(e, status, whole="path") from e


def parse_query(request: web.Request, model: type[Model], *, lists: frozenset[str] = frozenset()) -> Model:
    """The query parameters as `model`; a 400 naming the first parameter at fault. Names in `lists` keep
    every value given; of any other name repeated, the first value counts."""
    values: dict[str, Any] = {}
    for name in request.query:
        if name not in values:
            values[name] = request.query.getall(name) if name in lists else request.query[name]
    try:
        return model.model_validate(values)
    except ValidationError as e:
        raise problem_from_validation(e, 400, whole="query") from e


async def parse_body(request: web.Request, model: type[Model], *, optional: bool = False) -> Model:
    """A JSON object body as `model`: 413 past `MAX_BODY_BYTES`, 415 when not JSON, 400 when unreadable or
    (unless `optional`) empty, 422 naming the first field at fault."""
    raw = await read_body(request)
    if not raw.strip():
        if optional:
            return _validated(model, {})
        raise ApiProblem(400, "invalid", "a JSON object is required", "body")
    if request.content_type != "application/json":
        raise ApiProblem(415, "invalid", f"send application/json, not {request.content_type}", "body")
    body = loads_json(raw)
    if not isinstance(body, dict):
        raise ApiProblem(400, "invalid", "the body must be a JSON object", "body")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise problem_from_validation(e, 422) from e


async def read_body(request: web.Request) -> bytes:
    """The whole body of a JSON request, at most `MAX_BODY_BYTES` (else a 413 naming the body).

    aiohttp keeps what `request.read()` read, so the idempotency middleware (which hashes the body) and
    `parse_body` both read it here and the client's bytes are read once. A declared Content-Length over the
    limit is refused before reading; a chunked body is read up to the app's `client_max_size` and measured.
    """
    too_large = ApiProblem(413, "too_large", f"the body is larger than {MAX_BODY_BYTES} bytes", "body")
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise too_large
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as e:
        raise too_large from e
    if len(raw) > MAX_BODY_BYTES:
        raise too_large
    return raw


def loads_json(raw: bytes, *, field: str = "body") -> Any:
    """A JSON text read from a client: 400 naming `field` when it is no JSON or nests deeper than
    `MAX_JSON_DEPTH` (checked before parsing, which recurses)."""
    depth = json_depth(raw)
    if depth > MAX_JSON_DEPTH:
        raise ApiProblem(
            400,
            "too_deep",
            f"the JSON nests {depth} levels deep, more than the {MAX_JSON_DEPTH} allowed",
            field,
        )
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiProblem(400, "invalid", f"the body is not JSON: {e}", field) from e


# a JSON string (skipped whole: brackets inside it are text) or one bracket; bytes of UTF-8 text beyond ASCII
# never look like a quote, a backslash or a bracket
_JSON_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def json_depth(raw: bytes) -> int:
    """How deep arrays and objects nest in a JSON text, counted without parsing it (no recursion).

    >>> json_depth(b'{"a": [1, {"b": "[[["}]}'), json_depth(b"3"), json_depth(b"[" * 5000)
    (3, 0, 5000)
    """
    depth = deepest = 0
    for match in _JSON_STRING_OR_BRACKET.finditer(raw):
        token = match[0]
        if token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif token in (b"]", b"}"):
            depth -= 1
    return deepest


async def read_form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | web.FileField]:
    """The request's form (url-encoded or multipart, as `request.post()` reads it, cached); a 400 naming the
    body when it cannot be read as one (a multipart type without a boundary, broken part headers, text not
    in its charset)."""
    try:
        return await request.post()
    except (ValueError, LookupError, HttpProcessingError) as e:  # UnicodeDecodeError is a ValueError
        raise ApiProblem(400, "invalid_form", f"the form cannot be read: {_first_line(e)}", "body") from e


def _first_line(error: BaseException) -> str:
    text = (error.message if isinstance(error, HttpProcessingError) else str(error)).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


def _validated(model: type[Model], body: dict[str, Any]) -> Model:
    try:
        return model.model_validate(body)
    except ValidationError as e:
        raise problem_from_validation(e, 422) from e
