"""The API description served at /openapi.json, generated from the routes and the operations their handlers
declare (`warnings_svc.web.operations`): path, query and body models become parameters, request bodies and
`components/schemas`; every declared problem status answers with `components/responses/Problem`, and every
operation's 405 (another method on its path) with `components/responses/MethodNotAllowed` and its `Allow`.
The writes that honour an `Idempotency-Key` take it as a header parameter, and each of their answers may be a
replay marked `Idempotent-Replayed` (their problems are `components/responses/ReplayableProblem`).

The console's HTML pages still describe themselves in hand-written `OPENAPI_PATHS`, used for the routes whose
handlers declare no operation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from warnings_svc.web.auth import OPENAPI_SECURITY_SCHEMES
from warnings_svc.web.console import OPENAPI_PATHS as CONSOLE_OPENAPI_PATHS
from warnings_svc.web.idempotency import OPENAPI_PARAMETER as IDEMPOTENCY_KEY_PARAMETER
from warnings_svc.web.idempotency import OPENAPI_PROBLEMS as IDEMPOTENCY_KEY_PROBLEMS
from warnings_svc.web.idempotency import OPENAPI_REPLAYED_HEADER, REPLAYED, takes_idempotency_key
from warnings_svc.web.middleware import PROBLEM_JSON
from warnings_svc.web.operations import Operation, Reply, json_answer, media_reply, operation, operation_of

log = logging.getLogger(__name__)

METHODS = ("get", "put", "post", "delete", "patch")
REF_TEMPLATE = "#/components/schemas/{model}"
PROBLEM_RESPONSE = {"$ref": "#/components/responses/Problem"}
REPLAYABLE_PROBLEM_RESPONSE = {"$ref": "#/components/responses/ReplayableProblem"}
REPLAYED_HEADER = {"$ref": f"#/components/headers/{REPLAYED}"}
METHOD_NOT_ALLOWED_RESPONSE = {"$ref": "#/components/responses/MethodNotAllowed"}


@operation(
    "This document",
    responses={200: media_reply("OpenAPI 3.1", "application/json", schema={"type": "object"})},
)
async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 description of this application's routes."""
    return json_answer(openapi_document(request.app))


# ---------------------------------------------------------------------------------------------- the document


class UndescribedRoute(Exception):
    """A route whose handler declares no operation and that no hand-written description covers."""


def openapi_document(
    app: web.Application, *, handwritten: Mapping[str, Any] = CONSOLE_OPENAPI_PATHS, strict: bool = False
) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route of `app` (HEAD and static files aside). A route nothing
    describes is `UndescribedRoute` when `strict` (the tests), else left out with a warning (routes a test
    adds to an app are nobody's API)."""
    schemas: dict[str, Any] = {"Problem": PROBLEM_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        method = route.method.lower()
        resource = route.resource
        if resource is None or method not in METHODS or isinstance(resource, web.StaticResource):
            continue
        path = resource.canonical
        declared = operation_of(route.handler)
        if declared is not None:
            described = describe(declared, path, schemas)
            if takes_idempotency_key(method, path, declared):
                described = _with_idempotency_key(described)
        elif method in handwritten.get(path, {}):
            described = handwritten[path][method]
        else:
            undescribed = f"{route.method} {path} ({route.handler.__qualname__}) declares no operation"
            if strict:
                raise UndescribedRoute(undescribed)
            log.warning("not in /openapi.json: %s", undescribed)
            continue
        # every path answers another method than its own with a 405 problem naming them in `Allow`
        responses = {**described.get("responses", {}), "405": METHOD_NOT_ALLOWED_RESPONSE}
        paths.setdefault(path, {})[method] = {**described, "responses": responses}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "warnings-svc",
            "version": "0.1.0",
            "description": "Meteorological disaster early warning: risk database, forecast runs and proposals, "
            "warnings and their lifecycle, public alerts, health, metrics. A request whose request line or one "
            "of whose header fields is longer than 8,190 bytes is refused by the HTTP layer before it reaches "
            "an operation: 400 with a plain-text body, nothing written.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": OPENAPI_SECURITY_SCHEMES,
            "schemas": dict(sorted(schemas.items())),
            "headers": {REPLAYED: OPENAPI_REPLAYED_HEADER},
            "responses": {
                "Problem": {
                    "description": "Problem details (RFC 9457)",
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                },
                "ReplayableProblem": {
                    "description": "Problem details (RFC 9457); possibly the kept first answer to a request "
                    "with the same Idempotency-Key",
                    "headers": {REPLAYED: REPLAYED_HEADER},
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                },
                "MethodNotAllowed": {
                    "description": "This path does not take that method; `Allow` lists those it takes",
                    "headers": {"Allow": {"schema": {"type": "string"}, "required": True}},
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                },
            },
        },
    }


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "code": {"type": "string", "description": "Machine-readable, snake_case"},
        "field": {"type": "string", "description": "The field at fault, as its dotted JSON path"},
    },
}


def describe(declared: Operation, path: str, schemas: dict[str, Any]) -> dict[str, Any]:
    """One operation object of the document; the models it names are added to `schemas`."""
    out: dict[str, Any] = {"summary": declared.summary}
    if declared.description:
        out["description"] = declared.description
    parameters = [
        *_parameters(declared.path, "path", schemas),
        *_parameters(declared.query, "query", schemas),
    ]
    if parameters:
        out["parameters"] = parameters
    body = _request_body(declared, schemas)
    if body:
        out["requestBody"] = body
    responses: dict[str, Any] = {
        str(status): _response(reply, schemas) for status, reply in sorted(declared.responses.items())
    }
    responses.update({str(status): PROBLEM_RESPONSE for status in sorted(declared.problems)})
    out["responses"] = responses
    if declared.security:
        out["security"] = [{}] * declared.login_optional + [{name: []} for name in declared.security]
    return out


def _with_idempotency_key(described: dict[str, Any]) -> dict[str, Any]:
    """A write operation that honours `Idempotency-Key`: the header among its parameters, the problems a key
    can cause among its answers, and on each answer (a replay may be any of them) `Idempotent-Replayed`."""
    responses = dict(described["responses"])
    for status in IDEMPOTENCY_KEY_PROBLEMS:
        responses.setdefault(str(status), PROBLEM_RESPONSE)
    for status, response in responses.items():
        if response == PROBLEM_RESPONSE:
            responses[status] = REPLAYABLE_PROBLEM_RESPONSE
        else:
            responses[status] = {
                **response,
                "headers": {**response.get("headers", {}), REPLAYED: REPLAYED_HEADER},
            }
    return {
        **described,
        "parameters": [*described.get("parameters", ()), IDEMPOTENCY_KEY_PARAMETER],
        "responses": dict(sorted(responses.items())),
    }


def _parameters(model: type[BaseModel] | None, where: str, schemas: dict[str, Any]) -> Iterable[dict]:
    if model is None:
        return []
    schema = _schema(model, schemas, inline=True)
    required = set(schema.get("required", ()))
    out = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        description = prop.pop("description", None)
        style = {k: prop.pop(k) for k in ("style", "explode") if k in prop}
        prop.pop("title", None)
        parameter: dict[str, Any] = {
            "name": name,
            "in": where,
            "required": where == "path" or name in required,
        }
        if description:
            parameter["description"] = description
        parameter |= style
        parameter["schema"] = prop
        out.append(parameter)
    return out


def _request_body(declared: Operation, schemas: dict[str, Any]) -> dict[str, Any] | None:
    content: dict[str, Any] = {}
    if declared.body is not None:
        content[declared.body_type] = {"schema": _schema(declared.body, schemas)}
    content |= {media: {"schema": dict(schema)} for media, schema in declared.body_media.items()}
    if not content:
        return None
    return {"required": declared.body_required, "content": content}


def _response(reply: Reply, schemas: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description}
    content: dict[str, Any] = {}
    if reply.model is not None:
        content["application/json"] = {"schema": _schema(reply.model, schemas)}
    content |= {media: {"schema": dict(schema)} for media, schema in reply.media.items()}
    if content:
        out["content"] = content
    if reply.headers:
        out["headers"] = {name: {"schema": {"type": "string"}} for name in reply.headers}
    return out


def _schema(model: type[BaseModel], schemas: dict[str, Any], *, inline: bool = False) -> dict[str, Any]:
    """The model's JSON schema: a reference into `schemas` (where it and the models it uses are put), or
    (`inline`) the schema itself, whose nested models still go to `schemas`."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    schemas.update(schema.pop("$defs", {}))
    if inline:
        return schema
    schemas[model.__name__] = schema
    return {"$ref": REF_TEMPLATE.format(model=model.__name__)}
