"""Public answers rendered once per change, against a real PostgreSQL: invalidation by the real NOTIFY path and
by time, 304s that touch no database, headers as they were, the first page for anonymous readers only."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from lxml import etree

from tests.factories_app import service, user_tokens
from tests.factories_db import fresh_database
from tests.factories_dispatch import issue, successor
from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.transitions import Action, Actor, Role
from warnings_svc.settings import Settings
from warnings_svc.web.appkeys import METRICS, POOL
from warnings_svc.web.events import EVENT_HUB, Event, Subscription

ATOM = "{http://www.w3.org/2005/Atom}"
CAP_NS = "{urn:oasis:names:tc:emergency:cap:1.2}"
HEARD_SECONDS = 5.0  # a committed change reaches the listener well within this
CTX = ws.Issuing.from_settings(Settings())
WANG = Actor("wang", Role.forecaster)
LI = Actor("li", Role.approver)


@pytest.fixture(scope="module")
async def issued(built_url: str) -> str:
    """One warning issued before the service starts: its alert id."""
    conn = await asyncpg.connect(built_url)
    try:
        v = await issue(conn, hazard="frost", level="blue", areas=("150303",))
    finally:
        await conn.close()
    return f"{v.warning_id}-{v.state.version}"


@pytest.fixture
async def client(built_url: str, issued: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with service(built_url, tmp_path) as c:
        assert await c.app[EVENT_HUB].wait_listening(10)
        yield c


def _sample(client: TestClient, name: str, **labels: str) -> float:
    return client.app[METRICS].registry.get_sample_value(name, labels) or 0.0


def _hits(client: TestClient, route: str) -> float:
    return _sample(client, "warnings_public_cache_hits_total", route=route)


async def _active_ids(client: TestClient) -> set[str]:
    response = await client.get("/api/v1/alerts/active")
    assert response.status == 200
    return {f["properties"]["id"] for f in (await response.json())["features"]}


async def _feed_ids(client: TestClient) -> set[str]:
    response = await client.get("/feeds/alerts.atom")
    assert response.status == 200
    feed = etree.fromstring(await response.read())
    return {link.get("href").rsplit("/", 1)[1].removesuffix(".cap") for link in feed.iter(f"{ATOM}link")} - {
        "active",
        "alerts.atom",
    }


async def _heard(subscription: Subscription, warning_id: int, action: str) -> None:
    """Wait (bounded) until the listener has passed on the warning's event; the cache hears it first."""
    async with asyncio.timeout(HEARD_SECONDS):
        while True:
            event = await subscription.queue.get()
            if (
                isinstance(event, Event)
                and event.data.get("id") == warning_id
                and event.data["action"] == action
            ):
                return


# ---------------------------------------------------------------------------------------------- changes


async def test_issued_updated_and_cancelled_warnings_show_on_the_next_request_after_their_notify(
    client: TestClient, built_url: str, issued: str
) -> None:
    hub = client.app[EVENT_HUB]
    conn = await asyncpg.connect(built_url)
    try:
        with hub.subscribe() as heard:
            assert issued in await _active_ids(client)
            hits = _hits(client, "alerts_active")
            assert issued in await _active_ids(client)
            assert _hits(client, "alerts_active") == hits + 1  # kept: only an invalidation can change it

            v = await issue(conn, hazard="heat", level="yellow", areas=("150302",))
            await _heard(heard, v.warning_id, "approve")
            assert f"{v.warning_id}-1" in await _active_ids(client)
            assert f"{v.warning_id}-1" in await _feed_ids(client)

            await successor(conn, v.warning_id, {"level": "orange"})
            await _heard(heard, v.warning_id, "approve")
            ids = await _active_ids(client)
            assert f"{v.warning_id}-2" in ids and f"{v.warning_id}-1" not in ids
            replaced = await (await client.get(f"/api/v1/alerts/{v.warning_id}-1")).json()
            assert replaced["properties"]["replacedBy"].endswith(f"/api/v1/alerts/{v.warning_id}-2")

            await successor(conn, v.warning_id, None)
            await _heard(heard, v.warning_id, "approve")
            ids = await _active_ids(client)
            assert not {i for i in ids if i.startswith(f"{v.warning_id}-")}
            assert f"{v.warning_id}-3" in await _feed_ids(client)
    finally:
        await conn.close()


async def test_a_listener_reconnect_empties_the_cache(
    client: TestClient, built_url: str, issued: str
) -> None:
    assert (await client.get(f"/api/v1/alerts/{issued}.cap")).status == 200
    hits = _hits(client, "alert_cap")
    assert (await client.get(f"/api/v1/alerts/{issued}.cap")).status == 200
    assert _hits(client, "alert_cap") == hits + 1
    conn = await asyncpg.connect(built_url)
    try:
        with client.app[EVENT_HUB].subscribe() as heard:
            killed = await conn.fetchval(
                """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                   WHERE datname = current_database() AND query LIKE 'LISTEN%'"""
            )
            assert killed >= 1
            async with asyncio.timeout(15):
                while not isinstance(event := await heard.queue.get(), Event) or event.name != "resync":
                    pass
    finally:
        await conn.close()
    assert _sample(client, "warnings_public_cache_invalidations_total", reason="resync") == 1
    assert _sample(client, "warnings_public_cache_entries") == 0


async def test_answers_change_when_their_moment_passes_with_no_event(
    pg_server_url: str, tmp_path: Path
) -> None:
    """Nothing is written while the moments pass, and the expiry clock's first round is 30 s away."""
    ahead = timedelta(seconds=6)  # room for a slow start on a busy machine
    async with fresh_database(pg_server_url, built=True) as url:
        real = datetime.now(UTC).replace(microsecond=0)
        conn = await asyncpg.connect(url)
        try:
            # a Cancel sent 24 h - 6 s ago: it leaves the feed in 6 s
            cancelled = await _issue_at(conn, real - timedelta(hours=25), expires=real + timedelta(hours=30))
            await ws.start_cancel(conn, CTX, WANG, cancelled, note="", now=real - timedelta(hours=24) + ahead)
            cancel = await _approve_at(conn, cancelled, real - timedelta(hours=24) + ahead)
            # an Alert whose first version (superseded) expires in 6 s: the lists' Last-Modified moves then
            updated = await _issue_at(conn, real - timedelta(hours=1), expires=real + ahead)
            await ws.start_update(
                conn,
                CTX,
                WANG,
                updated,
                {"expires": real + timedelta(hours=30)},
                now=real - timedelta(minutes=40),
            )
            await _approve_at(conn, updated, real - timedelta(minutes=40))
            # an Alert in force for 6 s more
            lapsing = await _issue_at(conn, real - timedelta(minutes=30), expires=real + ahead)
        finally:
            await conn.close()
        async with service(url, tmp_path) as client:
            assert await client.app[EVENT_HUB].wait_listening(10)
            assert f"{lapsing}-1" in await _active_ids(client)
            assert cancel in await _feed_ids(client)
            events = _sample(client, "warnings_events_total", kind="warning")
            assert f"{lapsing}-1" in await _active_ids(client)  # kept ...
            assert _hits(client, "alerts_active") == 1
            await asyncio.sleep((real + ahead - datetime.now(UTC)).total_seconds() + 0.2)

            moment = format_datetime(real + ahead, usegmt=True)
            response = await client.get("/api/v1/alerts/active")
            ids = {f["properties"]["id"] for f in json.loads(await response.read())["features"]}
            assert f"{lapsing}-1" not in ids and f"{updated}-2" in ids
            assert response.headers["Last-Modified"] == moment
            feed = await client.get("/feeds/alerts.atom")
            assert cancel not in await _feed_ids(client)
            assert feed.headers["Last-Modified"] == moment
            assert _sample(client, "warnings_events_total", kind="warning") == events  # ... no NOTIFY came
            assert _sample(client, "warnings_public_cache_invalidations_total", reason="time") >= 2


async def _issue_at(conn: asyncpg.Connection, now: datetime, *, expires: datetime) -> int:
    v = await ws.create(
        conn,
        CTX,
        WANG,
        hazard="heat",
        level="yellow",
        onset=now + timedelta(minutes=10),
        expires=expires,
        content=ws.Content(areas=("150303",)),
        now=now,
    )
    await _approve_at(conn, v.warning_id, now)
    return v.warning_id


async def _approve_at(conn: asyncpg.Connection, warning_id: int, now: datetime) -> str:
    await ws.act(conn, CTX, WANG, warning_id, Action.submit, now=now)
    v = await ws.act(conn, CTX, LI, warning_id, Action.approve, now=now, reason="ok")
    return f"{v.warning_id}-{v.state.version}"


# ---------------------------------------------------------------------------------------------- no database


async def test_a_304_or_a_200_from_the_cache_touches_no_database(client: TestClient, issued: str) -> None:
    paths = [
        "/api/v1/alerts/active",
        "/api/v1/alerts/active?area=150303",
        "/feeds/alerts.atom",
        f"/api/v1/alerts/{issued}",
        f"/api/v1/alerts/{issued}.cap",
        f"/api/v1/alerts/{issued}.gbt.xml",
        "/",
    ]
    first = {path: await client.get(path) for path in paths}
    assert all(r.status == 200 for r in first.values())
    bodies = {path: await r.read() for path, r in first.items()}
    await client.app[POOL].close()  # from here on, any query would fail
    for path, response in first.items():
        etag = response.headers.get("ETag")
        if etag is not None:
            again = await client.get(path, headers={"If-None-Match": etag})
            assert again.status == 304, path
            assert again.headers["ETag"] == etag
        again = await client.get(path)
        assert again.status == 200, path
        assert await again.read() == bodies[path]


# ---------------------------------------------------------------------------------------------- headers


_VARIES = {"date", "x-request-id", "server"}


def _headers(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The answer's headers by lower-case name, without those that differ at every request."""
    return {k.lower(): v for k, v in response.headers.items() if k.lower() not in _VARIES}


@pytest.mark.parametrize(
    ("path", "accept", "expected"),
    [
        (
            "/api/v1/alerts/active",
            None,
            {"Content-Type": "application/geo+json", "Cache-Control": "public, max-age=60", "Vary": "Accept"},
        ),
        (
            "/api/v1/alerts/active",
            "application/json",
            {
                "Content-Type": "application/json; charset=utf-8",
                "Cache-Control": "public, max-age=60",
                "Vary": "Accept",
            },
        ),
        (
            "/api/v1/alerts/active",
            "application/atom+xml",
            {
                "Content-Type": "application/atom+xml; charset=utf-8",
                "Cache-Control": "public, max-age=60",
                "Vary": "Accept",
            },
        ),
        (
            "/feeds/alerts.atom",
            None,
            {"Content-Type": "application/atom+xml; charset=utf-8", "Cache-Control": "public, max-age=60"},
        ),
        (
            "ALERT",
            None,
            {"Content-Type": "application/geo+json", "Cache-Control": "public, max-age=60", "Vary": "Accept"},
        ),
        (
            "ALERT",
            "application/cap+xml",
            {
                "Content-Type": "application/cap+xml; charset=utf-8",
                "Cache-Control": "public, max-age=60",
                "Vary": "Accept",
            },
        ),
        (
            "ALERT.cap",
            None,
            {
                "Content-Type": "application/cap+xml; charset=utf-8",
                "Cache-Control": "public, max-age=86400, immutable",
            },
        ),
        (
            "ALERT.gbt.xml",
            None,
            {
                "Content-Type": "application/xml; charset=utf-8",
                "Cache-Control": "public, max-age=86400, immutable",
            },
        ),
    ],
)
async def test_public_answers_carry_the_headers_they_always_did_from_the_cache_too(
    client: TestClient, issued: str, path: str, accept: str | None, expected: dict[str, str]
) -> None:
    path = path.replace("ALERT", f"/api/v1/alerts/{issued}")
    headers = {"Accept": accept} if accept else {}
    rendered, kept = await client.get(path, headers=headers), await client.get(path, headers=headers)
    assert rendered.status == kept.status == 200
    assert await rendered.read() == await kept.read()
    assert _headers(rendered) == _headers(kept)
    got = _headers(kept)
    assert got.pop("etag").startswith('"')
    assert got.pop("last-modified").endswith(" GMT")
    assert int(got.pop("content-length")) > 0
    disposition = got.pop("content-disposition", None)
    assert (disposition is not None) == path.endswith(".gbt.xml")
    always = {"Access-Control-Allow-Origin": "*", "X-Content-Type-Options": "nosniff"}
    assert got == {k.lower(): v for k, v in (expected | always).items()}


async def test_concurrent_first_requests_render_once(client: TestClient) -> None:
    path = "/api/v1/alerts/active?severity=minor"
    answers = await asyncio.gather(*(client.get(path) for _ in range(20)))
    assert all(r.status == 200 for r in answers)
    assert len({await r.read() for r in answers}) == 1
    renders = _sample(client, "warnings_public_cache_misses_total", route="alerts_active", kind="render")
    assert renders == 1


# ---------------------------------------------------------------------------------------------- first page


async def test_the_first_page_is_kept_for_anonymous_readers_only(client: TestClient, built_url: str) -> None:
    tokens = await user_tokens(built_url, [("page-reader", "forecaster")])
    anonymous = await client.get("/?lang=en")
    again = await client.get("/?lang=en")
    assert anonymous.status == again.status == 200
    assert _hits(client, "index") == 1
    page = await again.text()
    assert page == await anonymous.text() and 'lang="en"' in page
    assert _headers(again) == _headers(anonymous)
    assert again.headers["Vary"] == "Cookie" and again.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "Cache-Control" not in again.headers and "/console/login?next=/%3Flang%3Den" in page

    mine = await client.get("/?lang=en", headers={"Authorization": f"Bearer {tokens['page-reader']}"})
    assert mine.status == 200 and mine.headers["Cache-Control"] == "private, no-store"
    assert await mine.text() != page  # the open proposals (none here) instead of the link to log in
    assert _hits(client, "index") == 1
    assert "/console/login?next=/" in await (await client.get("/")).text()  # another target, another page
