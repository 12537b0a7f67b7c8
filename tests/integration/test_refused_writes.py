"""A refused write writes nothing: every request the warnings API refuses leaves the warning tables, the
outbox and the audit log byte for byte as they were, and the warnings stay readable afterwards."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.factories_app import service, user_tokens

PASSWORD = "correct horse battery staple"
ONSET = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
DRAFT: dict[str, Any] = {
    "hazard": "heat",
    "level": "orange",
    "areas": ["150302"],
    "onset": ONSET.isoformat(),
    "expires": (ONSET + timedelta(hours=24)).isoformat(),
}
# Every table creating, editing, submitting or approving a warning writes to.
WRITTEN_TABLES = ("svc.warning", "svc.warning_version", "svc.audit_log", "svc.fanout", "svc.delivery")

# A valid CAP polygon over Haibowan district (lat,lon; closed; counter-clockwise).
GOOD_POLYGON = "39.6,106.8 39.6,106.9 39.7,106.9 39.7,106.8 39.6,106.8"
LONG_LINE = " ".join(
    f"{39.6 + 0.05 * math.sin(i / 500):.6f},{106.8 + 0.05 * math.cos(i / 500):.6f}" for i in range(3000)
)
BAD_POLYGONS = {
    "not a polygon": "not a polygon",
    "three points": "39.6,106.8 39.6,106.9 39.6,106.8",
    "a bow-tie": "39.6,106.8 39.7,106.9 39.6,106.9 39.7,106.8 39.6,106.8",
    "latitude 139": "139.6,106.8 139.6,106.9 139.7,106.9 139.6,106.8",
    "an unclosed line of 3,000 points": LONG_LINE,
}
BAD_TIMES = {
    "onset in year 1": {"onset": "0001-01-01T00:00:00+00:00"},
    "onset in year 1, +14:00": {"onset": "0001-01-01T00:00:00+14:00"},
    "expires at the end of year 9999": {"expires": "9999-12-31T23:59:59.999999+00:00"},
    "expires in year 9999, +14:00": {"expires": "9999-12-31T23:59:59+14:00"},
    "expires in year 9999, -14:00": {"expires": "9999-12-31T23:59:59-14:00"},
    "onset ten years ahead": {
        "onset": (ONSET + timedelta(days=3650)).isoformat(),
        "expires": (ONSET + timedelta(days=3651)).isoformat(),
    },
}
BAD_TEXTS = {
    "a NUL in a headline": ({"texts": {"zh-CN": {"headline": "高温\x00预警"}}}, "texts.zh-CN.headline"),
    "a lone surrogate in a description": (
        {"texts": {"en": {"description": "heat \ud800 ahead"}}},
        "texts.en.description",
    ),
    "a NUL in the note": ({"note": "see\x00me"}, "note"),
    "a lone surrogate in the note": ({"note": "\udfff"}, "note"),
}


def refused_changes() -> list[tuple[str, dict[str, Any], str]]:
    """(what, changes, the field the refusal must name) for every refused change of content or times."""
    out = [(what, times, next(iter(times))) for what, times in BAD_TIMES.items()]
    out += [(what, {"polygons": [polygon]}, "polygons") for what, polygon in BAD_POLYGONS.items()]
    out += [(what, changes, field) for what, (changes, field) in BAD_TEXTS.items()]
    return out


@pytest.fixture(scope="module")
async def tokens(built_url: str) -> dict[str, str]:
    return await user_tokens(built_url, [("wang", "forecaster"), ("li", "approver")], password=PASSWORD)


@pytest.fixture
async def client(built_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with service(built_url, tmp_path) as c:
        yield c


@pytest.fixture
async def conn(built_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(built_url)
    try:
        yield c
    finally:
        await c.close()


async def snapshot(conn: asyncpg.Connection) -> dict[str, list[str]]:
    """Every row of every written table as PostgreSQL prints it, in order."""
    return {
        t: [r[0] for r in await conn.fetch(f"SELECT x::text FROM {t} x ORDER BY 1")] for t in WRITTEN_TABLES
    }


async def send(client: TestClient, method: str, path: str, token: str, body: dict[str, Any] | None):
    response = await client.request(
        method, path, json=body if body is not None else {}, headers={"Authorization": f"Bearer {token}"}
    )
    return response.status, await response.json(content_type=None)


async def assert_refused_writing_nothing(
    client: TestClient,
    conn: asyncpg.Connection,
    what: str,
    request: tuple[str, str, str, dict[str, Any] | None],
    field: str,
) -> None:
    before = await snapshot(conn)
    status, problem = await send(client, *request)
    assert (status, problem.get("field")) == (422, field), (what, request[:2], problem)
    assert problem["detail"], what
    assert await snapshot(conn) == before, f"{what}: {request[:2]} wrote to the database"


async def draft(client: TestClient, tokens: dict[str, str], **more: Any) -> int:
    status, body = await send(client, "POST", "/api/v1/warnings", tokens["wang"], DRAFT | more)
    assert status == 201, body
    return int(body["id"])


async def issued(client: TestClient, tokens: dict[str, str]) -> int:
    wid = await draft(client, tokens)
    assert (await send(client, "POST", f"/api/v1/warnings/{wid}/submit", tokens["wang"], None))[0] == 200
    assert (await send(client, "POST", f"/api/v1/warnings/{wid}/approve", tokens["li"], None))[0] == 200
    return wid


async def assert_everything_still_readable(
    client: TestClient, tokens: dict[str, str], ids: list[int]
) -> None:
    for path in ["/api/v1/warnings", *(f"/api/v1/warnings/{wid}" for wid in ids)]:
        status, body = await send(client, "GET", path, tokens["wang"], None)
        assert status == 200, (path, body)
    client.session.cookie_jar.clear()
    response = await client.post(
        "/console/login", data={"name": "wang", "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 303
    response = await client.get("/console/")
    assert response.status == 200, await response.text()


async def test_a_refused_draft_writes_nothing(client, tokens, conn):
    await draft(client, tokens)  # the tables are not empty: a refusal must not touch existing rows either
    for what, changes, field in refused_changes():
        body = DRAFT | changes
        await assert_refused_writing_nothing(
            client, conn, what, ("POST", "/api/v1/warnings", tokens["wang"], body), field
        )
    await assert_everything_still_readable(client, tokens, [])


async def test_a_refused_edit_writes_nothing(client, tokens, conn):
    wid = await draft(client, tokens, polygons=[GOOD_POLYGON], texts={"zh-CN": {"headline": "高温橙色预警"}})
    for what, changes, field in refused_changes():
        await assert_refused_writing_nothing(
            client, conn, what, ("PATCH", f"/api/v1/warnings/{wid}", tokens["wang"], changes), field
        )
    await assert_everything_still_readable(client, tokens, [wid])


async def test_a_refused_update_writes_nothing(client, tokens, conn):
    wid = await issued(client, tokens)
    for what, changes, field in refused_changes():
        await assert_refused_writing_nothing(
            client, conn, what, ("POST", f"/api/v1/warnings/{wid}/update", tokens["wang"], changes), field
        )
    await assert_everything_still_readable(client, tokens, [wid])


async def test_a_refused_action_writes_nothing(client, tokens, conn):
    pending = await draft(client, tokens)
    assert (await send(client, "POST", f"/api/v1/warnings/{pending}/submit", tokens["wang"], None))[0] == 200
    for text, what in [("同意\x00", "a NUL"), ("\ud800", "a lone surrogate")]:
        await assert_refused_writing_nothing(
            client,
            conn,
            f"{what} in the comment",
            ("POST", f"/api/v1/warnings/{pending}/approve", tokens["li"], {"comment": text}),
            "comment",
        )
        await assert_refused_writing_nothing(
            client,
            conn,
            f"{what} in the reason",
            ("POST", f"/api/v1/warnings/{pending}/return", tokens["li"], {"reason": text}),
            "reason",
        )
    await assert_everything_still_readable(client, tokens, [pending])


async def test_a_stored_polygon_that_is_no_polygon_is_refused_at_submit_and_approval(client, tokens, conn):
    # versions written before polygons were checked may hold anything; submitting or approving one is a 422
    # naming the polygons (it used to be a 500 at approval), and writes nothing
    to_submit, to_approve = await draft(client, tokens), await draft(client, tokens)
    assert (await send(client, "POST", f"/api/v1/warnings/{to_approve}/submit", tokens["wang"], None))[
        0
    ] == 200
    for what, polygon in BAD_POLYGONS.items():
        for wid in (to_submit, to_approve):
            await conn.execute(
                "UPDATE svc.warning_version SET polygons = $2 WHERE warning_id = $1", wid, [polygon]
            )
        await assert_refused_writing_nothing(
            client,
            conn,
            what,
            ("POST", f"/api/v1/warnings/{to_submit}/submit", tokens["wang"], None),
            "polygons",
        )
        await assert_refused_writing_nothing(
            client,
            conn,
            what,
            ("POST", f"/api/v1/warnings/{to_approve}/approve", tokens["li"], None),
            "polygons",
        )
    await assert_everything_still_readable(client, tokens, [to_submit, to_approve])


async def test_valid_polygons_and_times_near_now_are_still_accepted(client, tokens):
    wid = await draft(client, tokens, polygons=[GOOD_POLYGON])
    later = ONSET + timedelta(days=300)
    status, body = await send(
        client,
        "PATCH",
        f"/api/v1/warnings/{wid}",
        tokens["wang"],
        {"onset": later.isoformat(), "expires": (later + timedelta(hours=6)).isoformat()},
    )
    assert status == 200 and body["polygons"] == [GOOD_POLYGON], body
    assert (await send(client, "POST", f"/api/v1/warnings/{wid}/submit", tokens["wang"], None))[0] == 200
    status, body = await send(client, "POST", f"/api/v1/warnings/{wid}/approve", tokens["li"], None)
    assert status == 200 and body["status"] == "issued", body
