"""How many statements an approval sends to PostgreSQL: a guard against round trips creeping back in.

Under read load every awaited round trip of a write waits for the database and its lane's turn, so their
number, not their cost, sets the approval's latency. Counted with asyncpg's query logger on the app's real
pool and on its write lane's (`web.write_lane`), whose pool the test opens with the same logger.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from risk_zoning.store import load_current
from tests.factories_app import heat_draft, user_tokens
from warnings_svc.lifecycle.store import Issuing, region_units_of
from warnings_svc.settings import Settings
from warnings_svc.web import write_lane
from warnings_svc.web.app import create_app
from warnings_svc.web.appkeys import RISK_DATABASE
from warnings_svc.web.write_lane import WRITE_LANE

# The approval of a pending warning (bearer token, no idempotency key), from authentication to the answer.
APPROVAL_STATEMENTS = 19  # 17, and since issue 18 the partners' subscriptions and the departments it calls

DRAFT = heat_draft()  # an orange heat warning for Haibowan, from two hours from now for a day


async def test_an_approval_makes_no_more_round_trips_than_counted(
    built_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = await user_tokens(built_url, [("wu", "forecaster"), ("sun", "approver")])
    statements: list[str] = []

    async def log_queries(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: statements.append(record.query))

    async def lane_pool(url: str, min_size: int, max_size: int) -> asyncpg.Pool:
        return await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=log_queries)

    monkeypatch.setattr(write_lane, "create_pool", lane_pool)

    pool = await asyncpg.create_pool(built_url, min_size=1, max_size=1, init=log_queries)
    client = TestClient(TestServer(create_app(Settings(database_url=built_url, data_dir=tmp_path), pool)))
    await client.start_server()
    try:
        await client.app[RISK_DATABASE].get()  # as the background watch has done by then in a running service
        wang, sun = ({"Authorization": f"Bearer {tokens[n]}"} for n in ("wu", "sun"))
        draft = await (await client.post("/api/v1/warnings", json=DRAFT, headers=wang)).json()
        await client.post(f"/api/v1/warnings/{draft['id']}/submit", json={}, headers=wang)
        await client.post(
            f"/api/v1/warnings/{draft['id']}/approve", json={}, headers=sun
        )  # token now touched
        second = await (await client.post("/api/v1/warnings", json=DRAFT, headers=wang)).json()
        await client.post(f"/api/v1/warnings/{second['id']}/submit", json={}, headers=wang)

        statements.clear()
        lane = client.app[WRITE_LANE]
        hand_overs = 0
        run = lane.run

        async def counted(work):  # type: ignore[no-untyped-def]
            nonlocal hand_overs
            hand_overs += 1
            return await run(work)

        monkeypatch.setattr(lane, "run", counted)
        response = await client.post(f"/api/v1/warnings/{second['id']}/approve", json={}, headers=sun)
        assert response.status == 200 and (await response.json())["status"] == "issued"
        assert WRITE_LANE in client.app  # the approval went through the lane, whose statements count too
    finally:
        await client.close()
        await pool.close()
    assert hand_overs == 1  # the token's lookup went with the write: one wait for the reading loop's turn
    assert len(statements) <= APPROVAL_STATEMENTS, "\n".join(statements)
    assert len(statements) >= APPROVAL_STATEMENTS - 3, "the write lane's statements were not counted"


async def test_a_held_risk_database_is_used_only_while_it_is_the_current_version(built_url: str) -> None:
    conn = await asyncpg.connect(built_url)
    try:
        current = await load_current(conn, "wuhai", arrays=False)
        ctx = Issuing.from_settings(Settings(database_url=built_url))
        held = dataclasses.replace(current, units=current.units[:1])  # tells the held copy from a fresh read
        assert list(await region_units_of(conn, ctx, held)) == [current.units[0].code]
        outdated = dataclasses.replace(held, version_id=current.version_id - 1)
        assert len(await region_units_of(conn, ctx, outdated)) == len(current.units) > 1
    finally:
        await conn.close()
