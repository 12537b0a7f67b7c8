"""The warnings write API over HTTP, with real users and tokens on the embedded PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.factories_app import service, user_tokens
from warnings_svc.web.accounts import issue_token

ONSET = datetime.now(UTC) + timedelta(hours=2)
DRAFT = {
    "hazard": "heat",
    "level": "orange",
    "areas": ["150302", "150303000000"],
    "onset": ONSET.isoformat(),
    "expires": (ONSET + timedelta(hours=24)).isoformat(),
}


@pytest.fixture(scope="module")
async def tokens(built_url: str) -> dict[str, str]:
    out = await user_tokens(
        built_url, [("wang", "forecaster"), ("li", "approver"), ("zhao", "approver"), ("dept", "department")]
    )
    conn = await asyncpg.connect(built_url)
    try:
        out["wang_read"] = await issue_token(conn, "wang", scopes=("read",))
    finally:
        await conn.close()
    return out


@pytest.fixture
async def client(built_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with service(built_url, tmp_path) as c:
        yield c


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(client: TestClient, path: str, token: str, body: dict | None = None):
    response = await client.post(path, json=body if body is not None else {}, headers=auth(token))
    return response.status, await response.json(content_type=None)


async def test_draft_submit_approve_by_a_second_person(client, tokens):
    status, draft = await post(client, "/api/v1/warnings", tokens["wang"], DRAFT)
    assert status == 201, draft
    wid = draft["id"]
    assert draft["status"] == "draft" and draft["areas"] == ["150302000000", "150303000000"]
    status, body = await post(client, f"/api/v1/warnings/{wid}/submit", tokens["wang"])
    assert (status, body["status"]) == (200, "pending_approval")
    status, body = await post(client, f"/api/v1/warnings/{wid}/approve", tokens["li"], {"comment": "同意"})
    assert status == 200, body
    assert body["status"] == "issued" and body["approved_by"] == "li" and body["identifier"]
    response = await client.get(f"/api/v1/warnings/{wid}", headers=auth(tokens["dept"]))
    assert response.status == 200
    assert [v["status"] for v in (await response.json())["versions"]] == ["issued"]
    # the approval promised the SMS deliveries in the same transaction (no dispatcher runs here)
    response = await client.get(f"/api/v1/warnings/{wid}/deliveries", headers=auth(tokens["dept"]))
    progress = await response.json()
    assert response.status == 200 and progress["versions"] == [
        {"version": 1, "deliveries": dict.fromkeys(progress["deliveries"], 0), "segments": 0}
    ]
    assert [(f["version"], f["channel"], f["state"]) for f in progress["fanouts"]] == [(1, "sms", "pending")]


async def test_self_approval_is_a_403_naming_the_rule(client, tokens, built_url):
    _, draft = await post(client, "/api/v1/warnings", tokens["li"], DRAFT)
    await post(client, f"/api/v1/warnings/{draft['id']}/submit", tokens["li"])
    status, problem = await post(client, f"/api/v1/warnings/{draft['id']}/approve", tokens["li"])
    assert status == 403 and problem["code"] == "self_approval"
    assert "second person" in problem["detail"]


async def test_department_users_cannot_write_and_read_tokens_cannot_write(client, tokens):
    status, problem = await post(client, "/api/v1/warnings", tokens["dept"], DRAFT)
    assert status == 403 and problem["code"] == "role"
    status, problem = await post(client, "/api/v1/warnings", tokens["wang_read"], DRAFT)
    assert status == 403
    response = await client.post("/api/v1/warnings", json=DRAFT)
    assert response.status == 401


async def test_invalid_bodies_name_the_field(client, tokens):
    cases = [
        ({**DRAFT, "areas": ["999999"]}, 422, "areas"),
        ({**DRAFT, "onset": "tomorrow"}, 422, "onset"),
        ({**DRAFT, "onset": "2026-07-01T08:00:00"}, 422, "onset"),
        ({**DRAFT, "hazard": "tornado"}, 422, "hazard"),
        ({**DRAFT, "level": "purple"}, 422, None),
        ({**DRAFT, "colour": "red"}, 422, "colour"),
        ({k: v for k, v in DRAFT.items() if k != "expires"}, 422, "expires"),
        ({**DRAFT, "texts": {"fr": {"headline": "x"}}}, 422, "texts"),
    ]
    for body, status, field in cases:
        got, problem = await post(client, "/api/v1/warnings", tokens["wang"], body)
        assert got == status, (body, problem)
        assert problem["status"] == status and problem["detail"]
        if field:
            assert problem["field"] == field, problem
    response = await client.post(
        "/api/v1/warnings",
        data=b"{not json",
        headers={**auth(tokens["wang"]), "Content-Type": "application/json"},
    )
    assert response.status == 400 and (await response.json(content_type=None))["field"] == "body"


async def test_return_needs_a_reason_then_edit_and_resubmit(client, tokens):
    _, draft = await post(client, "/api/v1/warnings", tokens["wang"], DRAFT)
    wid = draft["id"]
    await post(client, f"/api/v1/warnings/{wid}/submit", tokens["wang"])
    status, problem = await post(client, f"/api/v1/warnings/{wid}/return", tokens["li"])
    assert status == 422 and problem["field"] == "reason"
    status, body = await post(client, f"/api/v1/warnings/{wid}/return", tokens["li"], {"reason": "区域过大"})
    assert (status, body["status"], body["return_reason"]) == (200, "returned", "区域过大")
    response = await client.patch(
        f"/api/v1/warnings/{wid}", json={"areas": ["150302"], "level": "yellow"}, headers=auth(tokens["wang"])
    )
    body = await response.json()
    assert response.status == 200 and body["status"] == "draft" and body["level"] == "yellow"
    status, body = await post(client, f"/api/v1/warnings/{wid}/submit", tokens["wang"])
    assert body["status"] == "pending_approval"


async def test_update_and_cancel_chain(client, tokens):
    _, draft = await post(client, "/api/v1/warnings", tokens["wang"], DRAFT)
    wid = draft["id"]
    await post(client, f"/api/v1/warnings/{wid}/submit", tokens["wang"])
    await post(client, f"/api/v1/warnings/{wid}/approve", tokens["li"])
    status, problem = await post(client, f"/api/v1/warnings/{wid}/submit", tokens["wang"])
    assert status == 409  # issued: immutable
    response = await client.patch(
        f"/api/v1/warnings/{wid}", json={"level": "red"}, headers=auth(tokens["wang"])
    )
    assert response.status == 409 and (await response.json(content_type=None))["code"] == "immutable"
    status, update = await post(client, f"/api/v1/warnings/{wid}/update", tokens["wang"], {"level": "red"})
    assert status == 201 and update["msg_type"] == "Update" and update["references"] == [f"{wid}/1"]
    await post(client, f"/api/v1/warnings/{wid}/submit", tokens["wang"])
    status, body = await post(client, f"/api/v1/warnings/{wid}/approve", tokens["zhao"])
    assert status == 200 and body["level"] == "red"
    status, cancel = await post(
        client, f"/api/v1/warnings/{wid}/cancel", tokens["wang"], {"note": "高温减弱"}
    )
    assert status == 201 and cancel["msg_type"] == "Cancel"
    await post(client, f"/api/v1/warnings/{wid}/submit", tokens["wang"])
    # the red warning may not be cancelled by one person either
    status, problem = await post(client, f"/api/v1/warnings/{wid}/approve", tokens["li"])
    assert status == 200, problem
    response = await client.get(f"/api/v1/warnings/{wid}", headers=auth(tokens["wang"]))
    versions = (await response.json())["versions"]
    assert [(v["msg_type"], v["status"]) for v in versions] == [
        ("Alert", "updated"),
        ("Update", "cancelled"),
        ("Cancel", "issued"),
    ]


async def test_preview_shows_texts_segments_and_population(client, tokens):
    _, draft = await post(client, "/api/v1/warnings", tokens["wang"], DRAFT)
    response = await client.get(f"/api/v1/warnings/{draft['id']}/preview", headers=auth(tokens["wang"]))
    body = await response.json()
    assert response.status == 200
    zh = body["texts"]["zh-CN"]
    assert zh["headline"].startswith("乌海市气象台发布高温橙色预警") and zh["sms_full_segments"] >= 1
    assert body["impact"]["population"] == sum(a["population"] for a in body["impact"]["areas"]) > 0


async def test_unknown_warning_is_404(client, tokens):
    response = await client.get("/api/v1/warnings/99999999", headers=auth(tokens["wang"]))
    assert response.status == 404
    response = await client.get("/api/v1/warnings/abc", headers=auth(tokens["wang"]))
    assert response.status == 404
