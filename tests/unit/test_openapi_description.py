"""The generated API description: every route is described, with its path parameters, and every write
operation with its body and its answers, problem documents included."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web

from warnings_svc.settings import Settings
from warnings_svc.web.app import create_app
from warnings_svc.web.openapi import UndescribedRoute, openapi_document
from warnings_svc.web.operations import operation_of

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
PROBLEM = {"$ref": "#/components/responses/Problem"}
REPLAYABLE_PROBLEM = {"$ref": "#/components/responses/ReplayableProblem"}
REPLAYED = {"$ref": "#/components/headers/Idempotent-Replayed"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> web.Application:
    # the production factory (as tests/factories_app.py builds it); no request is served, so no pool
    data_dir: Path = tmp_path_factory.mktemp("data")
    return create_app(Settings(database_url="postgresql://nobody@localhost/none", data_dir=data_dir), None)


@pytest.fixture(scope="module")
def document(app: web.Application) -> dict:
    return openapi_document(app, strict=True)


def _routes(app: web.Application) -> list[web.AbstractRoute]:
    return [
        r
        for r in app.router.routes()
        if r.method != "HEAD" and not isinstance(r.resource, web.StaticResource)
    ]


def test_every_route_has_an_operation_with_its_path_parameters(app: web.Application, document: dict) -> None:
    for route in _routes(app):
        path = route.resource.canonical
        described = document["paths"].get(path, {}).get(route.method.lower())
        assert described is not None, f"{route.method} {path} is not in /openapi.json"
        declared = {p["name"] for p in described.get("parameters", ()) if p["in"] == "path"}
        assert declared == set(re.findall(r"{(\w+)}", path)), f"{route.method} {path}: path parameters"
        assert all(p["required"] for p in described.get("parameters", ()) if p["in"] == "path")


def test_every_write_operation_declares_its_body_and_its_answers_with_problems(
    app: web.Application, document: dict
) -> None:
    for route in _routes(app):
        if route.method not in WRITE_METHODS:
            continue
        path = route.resource.canonical
        described = document["paths"][path][route.method.lower()]
        declared = operation_of(route.handler)
        assert declared is not None, f"{route.method} {path}: a write operation must declare itself"
        if declared.body is not None or declared.body_media:
            assert described["requestBody"]["content"], f"{route.method} {path}: body"
        answers = described["responses"]
        assert any(status.startswith(("2", "3")) for status in answers), f"{route.method} {path}: answers"
        problems = [s for s, r in answers.items() if r in (PROBLEM, REPLAYABLE_PROBLEM)]
        assert problems, f"{route.method} {path}: problem responses"


def test_the_warnings_api_writes_declare_their_id_their_body_and_their_problems(document: dict) -> None:
    writes = [
        (path, method)
        for path, item in document["paths"].items()
        if path.startswith(("/api/v1/warnings", "/api/v1/proposals/"))
        for method in item
        if method in ("post", "patch")
    ]
    # create, draft from a proposal, edit, 4 actions, update, cancel; apply and decline an escalation step
    assert len(writes) == 11
    for path, method in writes:
        described = document["paths"][path][method]
        assert "requestBody" in described, (path, method)
        assert "422" in described["responses"] and "401" in described["responses"], (path, method)
        if "{id}" in path:
            assert described["parameters"][0]["name"] == "id"


def test_references_point_at_schemas_that_exist(document: dict) -> None:
    text = repr(document)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in document["components"]["schemas"], name
    assert document["components"]["schemas"]["Problem"]["required"][-1] == "code"


def test_a_route_without_a_declared_operation_is_refused(app: web.Application) -> None:
    async def undeclared(request: web.Request) -> web.Response:
        return web.Response()

    bare = web.Application()
    bare.router.add_get("/nothing-said", undeclared)
    with pytest.raises(UndescribedRoute, match="/nothing-said"):
        openapi_document(bare, strict=True)


def test_proposals_and_runs_declare_a_login_and_their_401(document: dict) -> None:
    for path in ("/api/v1/proposals", "/api/v1/runs/{id}", "/maps/proposals.png"):
        described = document["paths"][path]["get"]
        assert described["security"] == [{"bearer": []}, {"session": []}], path
        assert {"401", "403"} <= set(described["responses"]), path
    first_page = document["paths"]["/"]["get"]
    assert first_page["security"][0] == {}  # anyone; a login shows the proposals too
    public = document["paths"]["/maps/risk/{hazard}.png"]["get"]
    assert "security" not in public and "401" not in public["responses"]


def test_every_operation_answers_a_405_whose_allow_header_is_described(document: dict) -> None:
    for path, item in document["paths"].items():
        for method, described in item.items():
            assert described["responses"]["405"] == {"$ref": "#/components/responses/MethodNotAllowed"}, (
                path,
                method,
            )
    not_allowed = document["components"]["responses"]["MethodNotAllowed"]
    assert not_allowed["headers"]["Allow"]["required"] is True


def _takes_an_idempotency_key(described: dict) -> bool:
    return any(
        p["in"] == "header" and p["name"] == "Idempotency-Key" for p in described.get("parameters", ())
    )


def test_the_writes_that_honour_an_idempotency_key_describe_it_and_the_replayed_header(
    document: dict,
) -> None:
    keyed = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method, described in item.items()
        if _takes_an_idempotency_key(described)
    }
    # the JSON writes of the API: a warning's (create, draft from a proposal, edit, 6 actions, apply and
    # decline an escalation step), a
    # subscription's (create, delete, pause, resume, rotate; a PUT is idempotent by itself), send again of
    # a partner delivery and the 3 acknowledgement writes; not the streamed uploads, not the console's forms,
    # no read
    assert ("POST", "/api/v1/warnings") in keyed and ("PATCH", "/api/v1/warnings/{id}") in keyed
    warning_writes = {(m, p) for m, p in keyed if p.startswith(("/api/v1/warnings", "/api/v1/proposals/"))}
    assert ("POST", "/api/v1/warnings/{id}/approve") in keyed and len(warning_writes) == 11
    assert ("POST", "/api/v1/subscriptions") in keyed and ("DELETE", "/api/v1/subscriptions/{id}") in keyed
    assert len({k for k in keyed if k[1].startswith("/api/v1/subscriptions")}) == 5
    assert ("POST", "/api/v1/partner-deliveries/{id}/resend") in keyed
    assert all(p.startswith("/api/") for _, p in keyed)
    assert ("POST", "/api/v1/acknowledgements/{id}/call") in keyed
    assert len({k for k in keyed if k[1].startswith("/api/v1/acknowledgements")}) == 3
    assert ("POST", "/api/v1/runs") not in keyed and ("POST", "/console/login") not in keyed
    assert all(method != "GET" for method, _ in keyed)
    for method, path in keyed:
        answers = document["paths"][path][method.lower()]["responses"]
        for status, answer in answers.items():
            if status == "405":  # the router's, never kept nor replayed
                assert answer == {"$ref": "#/components/responses/MethodNotAllowed"}
            elif status.startswith(("4", "5")):
                assert answer == REPLAYABLE_PROBLEM, (method, path, status)
            else:
                assert answer["headers"]["Idempotent-Replayed"] == REPLAYED, (method, path, status)
        assert {"400", "409", "422"} <= set(answers), (method, path)
    replayed = document["components"]["headers"]["Idempotent-Replayed"]
    assert replayed["schema"] == {"type": "string", "enum": ["true"]} and replayed["required"] is False
    problem = document["components"]["responses"]["ReplayableProblem"]
    assert problem["headers"]["Idempotent-Replayed"] == REPLAYED
    assert problem["content"] == document["components"]["responses"]["Problem"]["content"]


def test_answers_of_operations_without_an_idempotency_key_say_nothing_of_replays(document: dict) -> None:
    for path, item in document["paths"].items():
        for method, described in item.items():
            if not _takes_an_idempotency_key(described):
                assert "Idempotent-Replayed" not in repr(described) and "Replayable" not in repr(described), (
                    method,
                    path,
                )
