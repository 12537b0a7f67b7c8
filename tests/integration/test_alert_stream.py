"""The public alert stream against a real PostgreSQL: warnings issued through the store, read as server-sent
events by a real aiohttp client from the real service."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.factories_app import service
from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.transitions import Action, Actor, Role
from warnings_svc.settings import Settings
from warnings_svc.web.api.alert_stream import event_id, parse_event_id
from warnings_svc.web.events import EVENT_HUB

WANG = Actor("wang", Role.forecaster)
LI = Actor("li", Role.approver)
CTX = ws.Issuing.from_settings(Settings())
EVENT_SECONDS = 10.0
STREAM = "/api/v1/alerts/stream"


@pytest.fixture
async def client(built_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with service(built_url, tmp_path) as c:
        assert await c.app[EVENT_HUB].wait_listening(10)
        yield c


@pytest.fixture
async def conn(built_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(built_url)
    try:
        yield c
    finally:
        await c.close()


async def issue(
    conn: asyncpg.Connection, hazard: str = "heat", level: str = "yellow", *, exercise: bool = False
) -> str:
    """Create and approve a warning over Haibowan now; its alert id."""
    now = datetime.now(UTC)
    v = await ws.create(
        conn,
        CTX,
        WANG,
        hazard=hazard,
        level=level,
        onset=now + timedelta(hours=1),
        expires=now + timedelta(hours=12),
        content=ws.Content(areas=("150302",)),
        exercise=exercise,
        now=now,
    )
    await ws.act(conn, CTX, WANG, v.warning_id, Action.submit, now=now)
    issued = await ws.act(conn, CTX, LI, v.warning_id, Action.approve, now=now, reason="ok")
    return f"{issued.warning_id}-{issued.state.version}"


async def cancel(conn: asyncpg.Connection, alert_id: str) -> str:
    warning_id = int(alert_id.split("-")[0])
    now = datetime.now(UTC)
    await ws.start_cancel(conn, CTX, WANG, warning_id, note="结束", now=now)
    await ws.act(conn, CTX, WANG, warning_id, Action.submit, now=now)
    issued = await ws.act(conn, CTX, LI, warning_id, Action.approve, now=now, reason="ok")
    return f"{issued.warning_id}-{issued.state.version}"


async def next_alert(response: ClientResponse, seconds: float = EVENT_SECONDS) -> tuple[str, dict[str, Any]]:
    """The id and data of the next ``alert`` event on an open stream (comments skipped)."""
    async with asyncio.timeout(seconds):
        fields: dict[str, str] = {}
        while True:
            line = (await response.content.readline()).decode()
            if not line:
                raise AssertionError("the stream ended")
            if line == "\n":
                if fields.get("event") == "alert":
                    return fields["id"], json.loads(fields["data"])
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.rstrip("\n").partition(": ")
                fields[name] = value


async def no_alert_within(response: ClientResponse, seconds: float) -> None:
    with pytest.raises(TimeoutError):
        await next_alert(response, seconds)


async def open_stream(client: TestClient, **headers: str) -> ClientResponse:
    response = await client.get(STREAM, headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert (await response.content.readline()).startswith(b"retry: ")
    return response


async def test_an_issued_warning_reaches_an_anonymous_stream_as_an_alert_event(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    response = await open_stream(client)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    alert_id = await issue(conn, "rainstorm", "orange")
    sent_id, data = await next_alert(response)
    assert data["alert_id"] == alert_id and sent_id == data["id"]
    assert parse_event_id(sent_id)[1:] == tuple(int(p) for p in alert_id.split("-"))
    assert data["hazard"] == "rainstorm" and data["level"] == "orange"
    assert data["msgType"] == "Alert" and data["status"] == "Actual"
    assert data["areas"] == [{"code": "150302000000", "name": "海勃湾区"}]
    assert data["identifier"] and "暴雨" in data["headline"]
    assert data["onset"].endswith("+08:00") and data["expires"].endswith("+08:00")
    origin = str(client.make_url("/")).rstrip("/")
    assert data["cap_url"] == f"{origin}/api/v1/alerts/{alert_id}.cap"
    assert data["web"] == f"{origin}/api/v1/alerts/{alert_id}"
    cap = await client.get(f"/api/v1/alerts/{alert_id}.cap")
    assert cap.status == 200 and data["identifier"].encode() in await cap.read()
    # a Cancel is a message of its own; an exercise never is one
    await issue(conn, exercise=True)
    cancel_id = await cancel(conn, alert_id)
    _, data = await next_alert(response)
    assert data["alert_id"] == cancel_id and data["msgType"] == "Cancel"
    response.close()


async def test_a_reconnect_with_last_event_id_gets_only_the_later_messages_then_live_ones(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    response = await open_stream(client)
    first = await issue(conn)
    seen, data = await next_alert(response)
    assert data["alert_id"] == first
    response.close()

    missed = [await issue(conn, "frost", "blue"), await issue(conn, "sandstorm", "yellow")]
    await issue(conn, exercise=True)
    for how in ({"headers": {"Last-Event-ID": seen}}, {"params": {"last_event_id": seen}}):
        response = await client.get(STREAM, **how)  # type: ignore[arg-type]
        assert response.status == 200
        replayed = [(await next_alert(response))[1]["alert_id"] for _ in missed]
        assert replayed == missed
        await no_alert_within(response, 1.0)  # and not the one before, nor the exercise
        response.close()

    response = await open_stream(client, **{"Last-Event-ID": seen})
    for expected in missed:
        assert (await next_alert(response))[1]["alert_id"] == expected
    live = await issue(conn)
    last_id, data = await next_alert(response)
    assert data["alert_id"] == live
    response.close()

    # the id survives the service: a fresh stream from the newest id has nothing to replay
    response = await open_stream(client, **{"Last-Event-ID": last_id})
    await no_alert_within(response, 1.0)
    response.close()


async def test_a_stream_without_an_id_starts_from_now(client: TestClient, conn: asyncpg.Connection) -> None:
    await issue(conn)
    response = await open_stream(client)
    await no_alert_within(response, 1.0)
    response.close()


async def test_a_message_issued_while_the_listener_is_down_comes_after_the_resync(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    response = await open_stream(client)
    first = await issue(conn)
    assert (await next_alert(response))[1]["alert_id"] == first
    killed = await conn.fetchval(
        """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
           WHERE datname = current_database() AND query LIKE 'LISTEN%'"""
    )
    assert killed >= 1
    during = await issue(conn, "heat", "red")  # likely before the hub listens again: its notification is lost
    assert (await next_alert(response, seconds=20))[1]["alert_id"] == during
    await no_alert_within(response, 1.0)  # once, not twice
    response.close()


@pytest.mark.parametrize(
    ("how", "field"),
    [
        ({"headers": {"Last-Event-ID": "12-1"}}, "Last-Event-ID"),
        ({"headers": {"Last-Event-ID": "20261340T204751Z-12-1"}}, "Last-Event-ID"),
        ({"params": {"last_event_id": "yesterday"}}, "last_event_id"),
        ({"params": {"last_event_id": "x" * 81}}, "last_event_id"),
        ({"params": {"since": "20261205T204751Z-12-1"}}, "since"),
    ],
)
async def test_a_bad_last_event_id_or_an_unknown_parameter_is_a_400_problem(
    client: TestClient, how: dict[str, Any], field: str
) -> None:
    response = await client.get(STREAM, **how)
    assert response.status == 400
    problem = await response.json()
    assert problem["field"] == field and problem["code"] == "invalid_parameter"


async def test_the_stream_is_in_the_api_description(client: TestClient) -> None:
    document = await (await client.get("/openapi.json")).json()
    described = document["paths"][STREAM]["get"]
    assert "text/event-stream" in described["responses"]["200"]["content"]
    assert {p["name"] for p in described["parameters"]} == {"last_event_id"}


def test_event_ids_round_trip_and_order_as_their_keys() -> None:
    a = (datetime(2026, 12, 5, 20, 47, 51, tzinfo=UTC), 9, 1)
    b = (datetime(2026, 12, 5, 20, 47, 52, 250000, tzinfo=UTC), 3, 2)
    assert parse_event_id(event_id(a)) == a and parse_event_id(event_id(b)) == b
    assert event_id(b) == "20261205T204752.250000Z-3-2"
    assert parse_event_id("20261205T204751Z-0-1") is None


async def test_a_last_event_id_older_than_the_replay_says_messages_may_be_missed(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    long_ago = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y%m%dT%H%M%SZ")
    response = await open_stream(client, **{"Last-Event-ID": f"{long_ago}-1-1"})
    async with asyncio.timeout(EVENT_SECONDS):
        line = ""
        while not line.startswith(": the last event id"):  # after the stream's own ": listening"
            line = (await response.content.readline()).decode()
            assert line, "the stream ended"
    assert line.startswith(": the last event id is older than a replay reaches (24 h)")
    response.close()
