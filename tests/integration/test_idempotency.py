"""`Idempotency-Key` on the write API: a retry gets the first answer and does not act twice (issue 16), on the
production app and the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.factories_app import heat_draft, service, user_tokens
from warnings_svc.web.idempotency import UNRELEASED_KEYS
from warnings_svc.web.operations import MAX_BODY_BYTES

DRAFT = heat_draft()  # an orange heat warning for Haibowan, from two hours from now for a day


@pytest.fixture(scope="module")
async def tokens(built_url: str) -> dict[str, str]:
    return await user_tokens(built_url, [("wang", "forecaster"), ("chen", "forecaster"), ("li", "approver")])


@pytest.fixture
async def client(built_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with service(built_url, tmp_path) as c:
        yield c


@pytest.fixture
async def db(built_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(built_url)
    try:
        yield conn
    finally:
        await conn.close()


async def send(
    client: TestClient, path: str, token: str, body: Any = None, key: str | None = None, method: str = "POST"
) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    if key is not None:
        headers["Idempotency-Key"] = key
    response = await client.request(method, path, json=body if body is not None else {}, headers=headers)
    return response.status, await response.json(content_type=None), response.headers


async def drafts_of(db: asyncpg.Connection, user: str) -> int:
    return await db.fetchval(
        "SELECT count(*) FROM svc.warning_version WHERE created_by = $1 AND version = 1", user
    )


async def pending_warning(client: TestClient, tokens: dict[str, str]) -> int:
    status, draft, _ = await send(client, "/api/v1/warnings", tokens["wang"], DRAFT)
    assert status == 201, draft
    status, body, _ = await send(client, f"/api/v1/warnings/{draft['id']}/submit", tokens["wang"])
    assert status == 200, body
    return draft["id"]


async def test_an_approval_retried_with_its_key_issues_once_and_answers_the_same_again(client, tokens, db):
    wid = await pending_warning(client, tokens)
    path = f"/api/v1/warnings/{wid}/approve"
    status, first, headers = await send(client, path, tokens["li"], {"comment": "同意"}, key="approve-1")
    assert status == 200 and first["status"] == "issued", first
    assert "Idempotent-Replayed" not in headers
    versions = await db.fetchval("SELECT count(*) FROM svc.warning_version WHERE warning_id = $1", wid)
    audited = await db.fetchval("SELECT count(*) FROM svc.audit_log")

    status, again, headers = await send(client, path, tokens["li"], {"comment": "同意"}, key="approve-1")

    assert (status, again) == (200, first)
    assert headers["Idempotent-Replayed"] == "true"
    assert headers["Content-Type"].startswith("application/json")
    assert (
        await db.fetchval("SELECT count(*) FROM svc.warning_version WHERE warning_id = $1", wid) == versions
    )
    assert await db.fetchval("SELECT count(*) FROM svc.audit_log") == audited


async def test_a_create_retried_with_its_key_makes_one_draft_and_repeats_its_location(client, tokens, db):
    before = await drafts_of(db, "wang")
    status, first, headers = await send(client, "/api/v1/warnings", tokens["wang"], DRAFT, key="create-1")
    location = headers["Location"]
    status_again, again, headers_again = await send(
        client, "/api/v1/warnings", tokens["wang"], DRAFT, key="create-1"
    )
    assert (status, status_again) == (201, 201)
    assert again == first and headers_again["Location"] == location
    assert headers_again["Idempotent-Replayed"] == "true"
    assert await drafts_of(db, "wang") == before + 1


async def test_the_same_key_with_another_body_is_a_422_and_does_nothing(client, tokens, db):
    await send(client, "/api/v1/warnings", tokens["wang"], DRAFT, key="create-2")
    before = await drafts_of(db, "wang")
    status, problem, _ = await send(
        client, "/api/v1/warnings", tokens["wang"], {**DRAFT, "level": "red"}, key="create-2"
    )
    assert status == 422 and problem["code"] == "idempotency_key_reused"
    assert problem["field"] == "Idempotency-Key"
    assert await drafts_of(db, "wang") == before


async def test_the_same_key_on_another_path_is_a_422(client, tokens):
    wid = await pending_warning(client, tokens)
    await send(client, f"/api/v1/warnings/{wid}/return", tokens["li"], {"reason": "no"}, key="li-1")
    status, problem, _ = await send(client, f"/api/v1/warnings/{wid}/discard", tokens["li"], {}, key="li-1")
    assert status == 422 and problem["code"] == "idempotency_key_reused"


@pytest.mark.parametrize("key", ["k" * 256, "clé"])
async def test_a_malformed_key_is_a_400_naming_the_header_and_writes_nothing(client, tokens, db, key):
    before = await drafts_of(db, "wang")
    status, problem, _ = await send(client, "/api/v1/warnings", tokens["wang"], DRAFT, key=key)
    assert status == 400 and problem["field"] == "Idempotency-Key", problem
    assert await drafts_of(db, "wang") == before
    assert await db.fetchval("SELECT count(*) FROM svc.idempotency_key WHERE key = $1", key) == 0


async def test_without_a_key_each_request_acts(client, tokens, db):
    before = await drafts_of(db, "wang")
    for _ in range(2):
        status, _, headers = await send(client, "/api/v1/warnings", tokens["wang"], DRAFT)
        assert status == 201 and "Idempotent-Replayed" not in headers
    assert await drafts_of(db, "wang") == before + 2


async def test_another_users_same_key_is_another_key(client, tokens, db):
    before = await drafts_of(db, "wang"), await drafts_of(db, "chen")
    status, mine, _ = await send(client, "/api/v1/warnings", tokens["wang"], DRAFT, key="shared")
    status_theirs, theirs, headers = await send(
        client, "/api/v1/warnings", tokens["chen"], DRAFT, key="shared"
    )
    assert (status, status_theirs) == (201, 201) and mine["id"] != theirs["id"]
    assert "Idempotent-Replayed" not in headers
    assert (await drafts_of(db, "wang"), await drafts_of(db, "chen")) == (before[0] + 1, before[1] + 1)


async def test_a_refusal_is_kept_and_replayed_too(client, tokens):
    status, first, _ = await send(
        client, "/api/v1/warnings", tokens["wang"], {**DRAFT, "hazard": "x"}, key="r"
    )
    status_again, again, headers = await send(
        client, "/api/v1/warnings", tokens["wang"], {**DRAFT, "hazard": "x"}, key="r"
    )
    assert (status, status_again) == (422, 422) and again == first
    assert headers["Idempotent-Replayed"] == "true"


async def test_a_key_whose_first_request_still_runs_is_a_409(client, tokens, db):
    await _record_in_progress(db, "wang", "running", DRAFT)
    before = await drafts_of(db, "wang")
    status, problem, _ = await send(client, "/api/v1/warnings", tokens["wang"], DRAFT, key="running")
    assert status == 409 and problem["code"] == "idempotency_key_in_progress"
    assert await drafts_of(db, "wang") == before


async def test_an_abandoned_first_request_lets_the_retry_run(client, tokens, db):
    await _record_in_progress(db, "wang", "crashed", DRAFT, age=timedelta(minutes=5))
    before = await drafts_of(db, "wang")
    status, _, headers = await send(client, "/api/v1/warnings", tokens["wang"], DRAFT, key="crashed")
    assert status == 201 and "Idempotent-Replayed" not in headers
    assert await drafts_of(db, "wang") == before + 1
    stored = await db.fetchval("SELECT status FROM svc.idempotency_key WHERE key = 'crashed'")
    assert stored == 201


async def test_a_key_whose_release_failed_is_released_once_the_database_answers(client, tokens, db):
    """The first request failed with the database (a 5xx) and so did its key's release: the key is released
    as soon as the database answers, so the client's retry runs instead of hearing "in progress" for a minute."""
    await _record_in_progress(db, "wang", "lost-with-the-database", DRAFT)
    user_id = await db.fetchval("SELECT id FROM svc.app_user WHERE name = 'wang'")
    client.app[UNRELEASED_KEYS].add((user_id, "lost-with-the-database"))
    for _ in range(50):
        if not client.app[UNRELEASED_KEYS]:
            break
        await asyncio.sleep(0.1)
    assert not client.app[UNRELEASED_KEYS]
    status, _, headers = await send(
        client, "/api/v1/warnings", tokens["wang"], DRAFT, key="lost-with-the-database"
    )
    assert status == 201 and "Idempotent-Replayed" not in headers


async def test_an_expired_key_is_purged_and_may_be_used_afresh(client, tokens, db):
    await _record_in_progress(db, "wang", "old", {"something": "else"}, age=timedelta(hours=25), status=201)
    status, _, headers = await send(client, "/api/v1/warnings", tokens["wang"], DRAFT, key="old")
    assert status == 201 and "Idempotent-Replayed" not in headers
    assert (
        await db.fetchval(
            "SELECT count(*) FROM svc.idempotency_key WHERE created_at < now() - interval '1 day'"
        )
        == 0
    )


async def test_a_json_body_over_the_limit_is_still_a_413_with_or_without_a_key(client, tokens, db):
    big = {**DRAFT, "note": "x" * (MAX_BODY_BYTES + 1)}
    for key in (None, "big"):
        status, problem, _ = await send(client, "/api/v1/warnings", tokens["wang"], big, key=key)
        assert status == 413 and problem["code"] == "too_large" and problem["field"] == "body"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b" " * 1024

    response = await client.post(
        "/api/v1/warnings",
        data=chunks(),
        headers={"Authorization": f"Bearer {tokens['wang']}", "Content-Type": "application/json"},
    )
    assert response.status == 413 and (await response.json(content_type=None))["code"] == "too_large"
    assert await db.fetchval("SELECT count(*) FROM svc.idempotency_key WHERE key = 'big'") == 0


async def _record_in_progress(
    db: asyncpg.Connection,
    user: str,
    key: str,
    body: Any,
    *,
    age: timedelta = timedelta(0),
    status: int | None = None,
) -> tuple[int, bytes]:
    """A key row as a first request left it (`status` None: still running, or crashed) `age` ago."""
    user_id = await db.fetchval("SELECT id FROM svc.app_user WHERE name = $1", user)
    # the body exactly as aiohttp's client serialises `json=`
    digest = hashlib.sha256(json.dumps(body).encode()).digest()
    await db.execute(
        """INSERT INTO svc.idempotency_key
               (user_id, key, method, path, body_sha256, created_at, status, headers, body, answered_at)
           VALUES ($1, $2, 'POST', '/api/v1/warnings', $3, now() - $4::interval, $5,
                   CASE WHEN $5::int IS NULL THEN NULL ELSE '{}'::jsonb END,
                   CASE WHEN $5::int IS NULL THEN NULL ELSE ''::bytea END,
                   CASE WHEN $5::int IS NULL THEN NULL ELSE now() END)""",
        user_id,
        key,
        digest,
        age,
        status,
    )
    return user_id, digest


async def test_the_api_description_offers_the_key_on_the_json_writes_only(client):
    document = await (await client.get("/openapi.json")).json()
    offered = {
        (method, path)
        for path, item in document["paths"].items()
        for method, described in item.items()
        if any(
            p["name"] == "Idempotency-Key" and p["in"] == "header" for p in described.get("parameters", ())
        )
    }
    assert ("post", "/api/v1/warnings/{id}/approve") in offered and (
        "patch",
        "/api/v1/warnings/{id}",
    ) in offered
    # the warnings API's nine writes, the two decisions on an escalation step, and the others of the API; not
    # the streamed upload, not the console's forms
    assert len({(m, p) for m, p in offered if p.startswith(("/api/v1/warnings", "/api/v1/proposals/"))}) == 11
    assert ("post", "/api/v1/partner-deliveries/{id}/resend") in offered
    assert all(p.startswith("/api/") for _, p in offered)
    approve = document["paths"]["/api/v1/warnings/{id}/approve"]["post"]
    assert {"400", "409", "422"} <= set(approve["responses"])
