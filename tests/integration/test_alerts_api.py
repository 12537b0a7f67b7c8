"""The public read side against a real PostgreSQL: warnings issued through the store, read over HTTP."""

from __future__ import annotations

import io
import json
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from lxml import etree

from risk_zoning.store import load_current, region_units
from tests.factories_app import service
from tests.factories_db import fresh_database
from warnings_svc.documents.cap import validate_cap
from warnings_svc.documents.gbt import gbt_file_name
from warnings_svc.documents.geojson import geojson_geometry
from warnings_svc.documents.texts import load_texts
from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.public_alerts import PublicAlerts
from warnings_svc.lifecycle.transitions import Action, Actor, Role
from warnings_svc.settings import Settings, WarningSettings
from warnings_svc.web.api.alert_documents import AlertLinks, alert_feature, json_body
from warnings_svc.web.api.alert_filters import event_names

WANG = Actor("wang", Role.forecaster)
LI = Actor("li", Role.approver)
ATOM = "{http://www.w3.org/2005/Atom}"
CAP_NS = "{urn:oasis:names:tc:emergency:cap:1.2}"
HOSTILE = "<script>alert(\"x\")</script> & 'quoted' 预警"
PUBLIC_URL = "https://warnings.example.cn/wuhai"


@dataclass(frozen=True)
class World:
    """The warnings this module issues, by role in the tests (alert ids ``{warning_id}-{version}``)."""

    heat_town: str  # heat orange over one town of Wuda (150304011)
    rain_district: str  # rainstorm yellow over Haibowan (150302), hostile forecaster texts
    frost_polygon: str  # frost blue over Hainan (150303) with a small CAP polygon
    updated_old: str  # rainstorm blue over Hainan, superseded ...
    updated_new: str  # ... by this yellow Update
    cancelled: str  # heat yellow over Hainan, withdrawn ...
    cancel: str  # ... by this Cancel
    exercise: str  # sandstorm red exercise over Haibowan (issued, never public)
    draft: str  # heat yellow draft (never issued)
    old: str  # heat yellow sent two days ago, long expired
    polygon_point: tuple[float, float]  # (lat, lon) inside the frost polygon
    wuda_town_point: tuple[float, float]  # (lat, lon) inside town 150304011


async def _create(conn, hazard, level, areas, *, now, onset, expires, exercise=False, **content):
    return await ws.create(
        conn,
        CTX,
        WANG,
        hazard=hazard,
        level=level,
        onset=onset,
        expires=expires,
        content=ws.Content(areas=areas, **content),
        exercise=exercise,
        now=now,
    )


async def _approve(conn, warning_id, now):
    await ws.act(conn, CTX, WANG, warning_id, Action.submit, now=now)
    v = await ws.act(conn, CTX, LI, warning_id, Action.approve, now=now, reason="ok")
    return f"{v.warning_id}-{v.state.version}"


CTX = ws.Issuing.from_settings(Settings())


def _square(lat: float, lon: float, half: float = 0.01) -> str:
    corners = [
        (lat - half, lon - half),
        (lat - half, lon + half),
        (lat + half, lon + half),
        (lat + half, lon - half),
    ]
    corners.append(corners[0])
    return " ".join(f"{a:.4f},{b:.4f}" for a, b in corners)


@pytest.fixture(scope="module")
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


@pytest.fixture(scope="module")
async def world(db_url: str) -> World:
    real = datetime.now(UTC).replace(microsecond=0)
    onset, expires = real + timedelta(hours=1), real + timedelta(hours=30)
    conn = await asyncpg.connect(db_url)
    try:
        units = {u.code: u for u in (await load_current(conn, "wuhai", arrays=False)).units}
        hainan = units["150303000000"].shape().representative_point()
        town = units["150304011000"].shape().representative_point()

        # first, because send times only ever increase: a message of two days ago, expired since
        then = real - timedelta(hours=48)
        v = await _create(
            conn,
            "heat",
            "yellow",
            ("150303",),
            now=then,
            onset=then + timedelta(hours=1),
            expires=then + timedelta(hours=6),
        )
        old = await _approve(conn, v.warning_id, then)

        t0 = real - timedelta(hours=2)
        v = await _create(conn, "heat", "orange", ("150304011",), now=t0, onset=onset, expires=expires)
        heat_town = await _approve(conn, v.warning_id, t0)
        v = await _create(
            conn,
            "rainstorm",
            "yellow",
            ("150302",),
            now=t0,
            onset=onset,
            expires=expires,
            texts={"zh-CN": {"headline": HOSTILE, "description": f"描述 {HOSTILE}"}},
        )
        rain_district = await _approve(conn, v.warning_id, t0)
        v = await _create(
            conn,
            "frost",
            "blue",
            ("150303",),
            now=t0,
            onset=onset,
            expires=expires,
            polygons=(_square(hainan.y, hainan.x),),
        )
        frost_polygon = await _approve(conn, v.warning_id, t0)

        v = await _create(conn, "rainstorm", "blue", ("150303",), now=t0, onset=onset, expires=expires)
        updated_old = await _approve(conn, v.warning_id, t0)
        await ws.start_update(conn, CTX, WANG, v.warning_id, {"level": "yellow"}, now=t0)
        updated_new = await _approve(conn, v.warning_id, t0 + timedelta(minutes=5))

        v = await _create(conn, "heat", "yellow", ("150303",), now=t0, onset=onset, expires=expires)
        cancelled = await _approve(conn, v.warning_id, t0)
        await ws.start_cancel(
            conn, CTX, WANG, v.warning_id, note="高温已结束", now=t0 + timedelta(minutes=10)
        )
        cancel = await _approve(conn, v.warning_id, t0 + timedelta(minutes=10))

        v = await _create(
            conn, "sandstorm", "red", ("150302",), now=t0, onset=onset, expires=expires, exercise=True
        )
        exercise = await _approve(conn, v.warning_id, t0)
        v = await _create(conn, "heat", "yellow", ("150302",), now=t0, onset=onset, expires=expires)
        draft = f"{v.warning_id}-1"
    finally:
        await conn.close()
    return World(
        heat_town=heat_town,
        rain_district=rain_district,
        frost_polygon=frost_polygon,
        updated_old=updated_old,
        updated_new=updated_new,
        cancelled=cancelled,
        cancel=cancel,
        exercise=exercise,
        draft=draft,
        old=old,
        polygon_point=(round(hainan.y, 5), round(hainan.x, 5)),
        wuda_town_point=(round(town.y, 5), round(town.x, 5)),
    )


@pytest.fixture(scope="module")
async def client(
    db_url: str, world: World, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient]:
    async with service(db_url, tmp_path_factory.mktemp("alerts")) as c:
        yield c


async def _ids(client: TestClient, query: str = "") -> set[str]:
    response = await client.get(f"/api/v1/alerts/active{query}")
    assert response.status == 200, await response.text()
    return {f["properties"]["id"] for f in (await response.json())["features"]}


async def _problem(client: TestClient, path: str) -> dict:
    response = await client.get(path)
    assert response.status == 400, await response.text()
    assert response.headers["Content-Type"].startswith("application/problem+json")
    return await response.json(content_type=None)


def _active(world: World) -> set[str]:
    return {world.heat_town, world.rain_district, world.frost_polygon, world.updated_new}


# ---------------------------------------------------------------------------------------------- active list


async def test_active_lists_each_warnings_issued_actual_version_as_geojson(
    client: TestClient, world: World
) -> None:
    response = await client.get("/api/v1/alerts/active")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/geo+json"
    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert response.headers["Vary"] == "Accept"
    body = await response.json()
    assert body["type"] == "FeatureCollection" and body["title"] and body["updated"]
    by_id = {f["properties"]["id"]: f for f in body["features"]}
    assert set(by_id) == _active(world)

    heat = by_id[world.heat_town]
    assert heat["id"] == f"http://{client.host}:{client.port}/api/v1/alerts/{world.heat_town}"
    p = heat["properties"]
    assert (p["status"], p["messageType"], p["hazard"], p["level"]) == ("Actual", "Alert", "heat", "orange")
    assert (p["severity"], p["urgency"], p["certainty"], p["event"]) == (
        "Severe",
        "Expected",
        "Likely",
        "高温",
    )
    assert p["geocode"] == {"GB2260": ["150304011000"]}
    assert p["identifier"].startswith("15030041600000_") and p["sender"] == "wuhai@weather.example.cn"
    assert p["sent"] == p["effective"] and p["sent"].endswith("+08:00")
    assert p["headline"].startswith("乌海市气象台发布高温橙色预警")
    assert p["en"]["event"] == "Heat" and p["en"]["headline"]
    assert p["references"] == []
    assert {link["type"]: link["href"] for link in p["links"]} == {
        "application/cap+xml": f"{heat['id']}.cap",
        "application/xml": f"{heat['id']}.gbt.xml",
    }
    assert heat["geometry"]["type"] == "MultiPolygon" and heat["geometry"]["coordinates"]


async def test_an_update_replaces_its_predecessor_and_references_it(client: TestClient, world: World) -> None:
    ids = await _ids(client)
    assert world.updated_new in ids and world.updated_old not in ids
    response = await client.get(f"/api/v1/alerts/{world.updated_new}")
    p = (await response.json())["properties"]
    assert p["messageType"] == "Update" and p["level"] == "yellow"
    [reference] = p["references"]
    assert reference["id"].endswith(f"/api/v1/alerts/{world.updated_old}")
    old = await (await client.get(f"/api/v1/alerts/{world.updated_old}")).json()
    assert old["properties"]["replacedBy"].endswith(f"/api/v1/alerts/{world.updated_new}")
    assert old["properties"]["identifier"] == reference["identifier"]


async def test_the_geometry_is_the_cap_polygon_when_there_is_one(client: TestClient, world: World) -> None:
    feature = await (await client.get(f"/api/v1/alerts/{world.frost_polygon}")).json()
    [polygon] = feature["geometry"]["coordinates"]
    lons = [x for x, _ in polygon[0]]
    assert max(lons) - min(lons) == pytest.approx(0.02, abs=1e-6)


# ---------------------------------------------------------------------------------------------- filters


async def test_a_district_code_finds_a_town_warning_inside_it(client: TestClient, world: World) -> None:
    assert await _ids(client, "?area=150304") == {world.heat_town}
    assert await _ids(client, "?area=150304000000") == {world.heat_town}


async def test_a_town_code_finds_the_warnings_of_its_district(client: TestClient, world: World) -> None:
    assert await _ids(client, "?area=150302001") == {world.rain_district}
    assert await _ids(client, "?area=150304011") == {world.heat_town}


async def test_the_city_code_finds_every_warning_and_lists_combine(client: TestClient, world: World) -> None:
    assert await _ids(client, "?area=150300") == _active(world)
    assert await _ids(client, "?area=150302,150304") == {world.rain_district, world.heat_town}
    assert await _ids(client, "?area=150302&area=150304") == {world.rain_district, world.heat_town}


async def test_point_inside_and_outside(client: TestClient, world: World) -> None:
    lat, lon = world.wuda_town_point
    assert await _ids(client, f"?point={lat},{lon}") == {world.heat_town}
    lat, lon = world.polygon_point
    assert world.frost_polygon in await _ids(client, f"?point={lat},{lon}")
    assert await _ids(client, f"?point={lat},{lon}&event=frost") == {world.frost_polygon}
    assert await _ids(client, "?point=0,0") == set()


async def test_event_by_hazard_or_cap_event_text_in_either_language(client: TestClient, world: World) -> None:
    assert await _ids(client, "?event=heat") == {world.heat_town}
    assert await _ids(client, "?event=%E9%AB%98%E6%B8%A9") == {world.heat_town}  # 高温
    assert await _ids(client, "?event=Rainstorm,frost") == {
        world.rain_district,
        world.updated_new,
        world.frost_polygon,
    }


async def test_severity_urgency_certainty_and_status_actual(client: TestClient, world: World) -> None:
    assert await _ids(client, "?severity=Severe") == {world.heat_town}
    assert await _ids(client, "?severity=moderate,Minor") == {
        world.rain_district,
        world.updated_new,
        world.frost_polygon,
    }
    assert await _ids(client, "?urgency=Expected&certainty=Likely&status=actual") == _active(world)
    assert await _ids(client, "?urgency=Immediate") == set()


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("?areas=150302", "areas"),
        ("?limit=10", "limit"),
        ("?point=39.6", "point"),
        ("?point=abc,def", "point"),
        ("?point=139.6,106.8", "point"),
        ("?point=39.6,106.8&point=39.5,106.7", "point"),
        ("?area=", "area"),
        ("?area=15030", "area"),
        ("?area=999999", "area"),
        ("?area=150302,", "area"),
        ("?event=tornado", "event"),
        ("?severity=Bad", "severity"),
        ("?severity=Unknown", "severity"),
        ("?urgency=soon", "urgency"),
        ("?certainty=sure", "certainty"),
        ("?status=exercise", "status"),
        ("?status=test", "status"),
        ("?status=whatever", "status"),
    ],
)
async def test_an_unknown_parameter_or_bad_value_is_a_400_naming_it(
    client: TestClient, query: str, parameter: str
) -> None:
    problem = await _problem(client, f"/api/v1/alerts/active{query}")
    assert problem["field"] == parameter and problem["status"] == 400
    assert problem["detail"].startswith(f"{parameter}: ") and "\n" not in problem["detail"]


async def test_status_exercise_is_refused_with_the_reason(client: TestClient) -> None:
    problem = await _problem(client, "/api/v1/alerts/active?status=Exercise")
    assert "Actual messages only" in problem["detail"]


async def test_parameters_on_documents_and_the_feed_are_refused_too(client: TestClient, world: World) -> None:
    for path in (
        f"/api/v1/alerts/{world.heat_town}",
        f"/api/v1/alerts/{world.heat_town}.cap",
        "/feeds/alerts.atom",
    ):
        problem = await _problem(client, f"{path}?format=json")
        assert problem["field"] == "format"


# ---------------------------------------------------------------------------------------------- never public


async def test_an_exercise_is_never_shown(client: TestClient, world: World) -> None:
    assert world.exercise not in await _ids(client)
    for suffix in ("", ".cap", ".gbt.xml"):
        response = await client.get(f"/api/v1/alerts/{world.exercise}{suffix}")
        assert response.status == 404
        assert response.headers["Content-Type"].startswith("application/problem+json")
    feed = await (await client.get("/feeds/alerts.atom")).read()
    assert b"Exercise" not in feed and b"\xe6\xb2\x99\xe5\xb0\x98" not in feed  # 沙尘


async def test_a_draft_is_never_shown(client: TestClient, world: World) -> None:
    for suffix in ("", ".cap", ".gbt.xml"):
        assert (await client.get(f"/api/v1/alerts/{world.draft}{suffix}")).status == 404
    for path in ("/api/v1/alerts/nothing", "/api/v1/alerts/0-1", "/api/v1/alerts/99999-1.cap"):
        assert (await client.get(path)).status == 404


async def test_a_cancel_leaves_active_but_shows_in_the_feed(client: TestClient, world: World) -> None:
    ids = await _ids(client)
    assert world.cancelled not in ids and world.cancel not in ids
    feed = etree.fromstring(await (await client.get("/feeds/alerts.atom")).read())
    kinds = {e.findtext(f"{CAP_NS}msgType"): e for e in feed.iter(f"{ATOM}entry")}
    assert "Cancel" in kinds
    assert kinds["Cancel"].findtext(f"{ATOM}title").startswith("乌海市气象台解除高温黄色预警")
    cancel = await (await client.get(f"/api/v1/alerts/{world.cancel}")).json()
    assert cancel["properties"]["messageType"] == "Cancel" and cancel["properties"]["note"] == "高温已结束"
    assert cancel["properties"]["urgency"] == "Past"


async def test_old_messages_leave_the_feed_but_stay_retrievable(client: TestClient, world: World) -> None:
    feed = etree.fromstring(await (await client.get("/feeds/alerts.atom")).read())
    linked = {
        link.get("href") for link in feed.iter(f"{ATOM}link") if link.get("type") == "application/cap+xml"
    }
    assert not any(h.endswith(f"/{world.old}.cap") for h in linked)
    assert any(h.endswith(f"/{world.updated_old}.cap") for h in linked)  # sent within the window
    assert (await client.get(f"/api/v1/alerts/{world.old}")).status == 200
    assert (await client.get(f"/api/v1/alerts/{world.old}.cap")).status == 200


# ---------------------------------------------------------------------------------------------- documents


async def test_cap_is_the_stored_document_byte_for_byte_and_schema_valid(
    client: TestClient, world: World, db_url: str
) -> None:
    response = await client.get(f"/api/v1/alerts/{world.heat_town}.cap")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/cap+xml; charset=utf-8"
    assert response.headers["Cache-Control"] == "public, max-age=86400, immutable"
    body = await response.read()
    validate_cap(body)
    warning_id, version = map(int, world.heat_town.split("-"))
    conn = await asyncpg.connect(db_url)
    try:
        stored = await conn.fetchval(
            "SELECT cap_xml FROM svc.warning_version WHERE warning_id = $1 AND version = $2",
            warning_id,
            version,
        )
    finally:
        await conn.close()
    assert body == stored
    negotiated = await client.get(
        f"/api/v1/alerts/{world.heat_town}", headers={"Accept": "application/cap+xml"}
    )
    assert await negotiated.read() == stored


async def test_gbt_document_has_the_national_file_name(client: TestClient, world: World, db_url: str) -> None:
    response = await client.get(f"/api/v1/alerts/{world.heat_town}.gbt.xml")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/xml; charset=utf-8"
    warning_id, version = map(int, world.heat_town.split("-"))
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            "SELECT * FROM svc.warning_version WHERE warning_id = $1 AND version = $2", warning_id, version
        )
        units = await region_units(conn, "wuhai")
    finally:
        await conn.close()
    assert await response.read() == row["gbt_xml"]
    v = ws.version_from_row(row)
    name = gbt_file_name(ws.message_of(CTX, v, units, sent=row["sent"]))
    assert name.endswith("_11B09_ORANGE_ALERT.XML")
    assert response.headers["Content-Disposition"] == f'inline; filename="{name}"'


async def test_the_broadcast_script_is_served_as_mandarin_speech(
    client: TestClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = await client.get(f"/api/v1/alerts/{world.heat_town}.wav")
    assert response.status == 200 and response.headers["Content-Type"] == "audio/wav"
    wav = await response.read()
    with wave.open(io.BytesIO(wav)) as audio:  # a real WAV file, seconds long (a script of a few sentences)
        assert audio.getnchannels() == 1 and audio.getnframes() / audio.getframerate() > 5
    again = await client.get(
        f"/api/v1/alerts/{world.heat_town}.wav", headers={"If-None-Match": response.headers["ETag"]}
    )
    assert again.status == 304  # made once, then served from the cache with its ETag
    # a draft has no public audio; where espeak-ng is missing the answer says so
    assert (await client.get(f"/api/v1/alerts/{world.draft}.wav")).status == 404
    monkeypatch.setenv("PATH", "/nonexistent")
    missing = await client.get(f"/api/v1/alerts/{world.rain_district}.wav")
    assert missing.status == 404
    assert "espeak-ng" in (await missing.json())["detail"]


# ---------------------------------------------------------------------------------------------- Atom


async def test_atom_by_accept_lists_the_filtered_active_alerts_linking_to_cap(
    client: TestClient, world: World
) -> None:
    response = await client.get(
        "/api/v1/alerts/active?event=heat",
        headers={"Accept": "application/geo+json;q=0.5, application/atom+xml;q=0.9"},
    )
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    feed = etree.fromstring(await response.read())
    assert feed.tag == f"{ATOM}feed"
    [entry] = feed.findall(f"{ATOM}entry")
    [cap] = [link for link in entry.findall(f"{ATOM}link") if link.get("type") == "application/cap+xml"]
    assert cap.get("rel") == "alternate" and cap.get("href").endswith(f"/api/v1/alerts/{world.heat_town}.cap")
    assert entry.findtext(f"{ATOM}id").startswith("tag:wuhai@weather.example.cn,")
    assert entry.find(f"{ATOM}category").get("term") == "高温"
    # a client preferring GeoJSON, or naming nothing we offer, gets GeoJSON
    for accept in ("application/atom+xml;q=0.2, application/geo+json", "text/html", "*/*"):
        r = await client.get("/api/v1/alerts/active", headers={"Accept": accept})
        assert r.headers["Content-Type"] == "application/geo+json"
    r = await client.get("/api/v1/alerts/active", headers={"Accept": "application/json"})
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"


async def test_the_feed_parses_and_every_entry_links_to_its_cap(client: TestClient, world: World) -> None:
    response = await client.get("/feeds/alerts.atom")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/atom+xml; charset=utf-8"
    feed = etree.fromstring(await response.read())
    entries = feed.findall(f"{ATOM}entry")
    assert len(entries) == 7  # 4 active, the superseded rainstorm, the cancelled heat and its Cancel
    for entry in entries:
        caps = [link for link in entry.findall(f"{ATOM}link") if link.get("type") == "application/cap+xml"]
        assert len(caps) == 1 and caps[0].get("rel") == "alternate"
        cap = await client.get(caps[0].get("href").removeprefix(f"http://{client.host}:{client.port}"))
        assert cap.status == 200
        assert entry.findtext(f"{ATOM}updated") == entry.findtext(f"{CAP_NS}sent")
    newest = max(e.findtext(f"{ATOM}updated") for e in entries)
    assert feed.findtext(f"{ATOM}updated") >= newest


async def test_hostile_forecaster_text_comes_out_escaped(client: TestClient, world: World) -> None:
    raw = await (await client.get("/feeds/alerts.atom")).read()
    assert b"<script>" not in raw and b"&lt;script&gt;" in raw
    feed = etree.fromstring(raw)
    titles = [e.findtext(f"{ATOM}title") for e in feed.iter(f"{ATOM}entry")]
    assert HOSTILE in titles
    raw = await (await client.get(f"/api/v1/alerts/{world.rain_district}")).read()
    assert b"<script>" not in raw and b"&" not in raw
    feature = json.loads(raw)
    assert feature["properties"]["headline"] == HOSTILE
    assert feature["properties"]["description"] == f"描述 {HOSTILE}"
    raw = await (await client.get("/api/v1/alerts/active")).read()
    assert b"<script>" not in raw
    response = await client.get(f"/api/v1/alerts/{world.rain_district}.cap")
    assert b"<script>" not in await response.read()
    assert response.headers["X-Content-Type-Options"] == "nosniff"


# ---------------------------------------------------------------------------------------------- caching


@pytest.mark.parametrize(
    "path", ["/api/v1/alerts/active?area=150304", "/feeds/alerts.atom", "ALERT", "ALERT.cap", "ALERT.gbt.xml"]
)
async def test_etag_and_last_modified_give_304(client: TestClient, world: World, path: str) -> None:
    path = path.replace("ALERT", f"/api/v1/alerts/{world.heat_town}")
    first = await client.get(path)
    assert first.status == 200
    etag, modified = first.headers["ETag"], first.headers["Last-Modified"]
    assert etag.startswith('"') and not etag.startswith("W/")
    again = await client.get(path, headers={"If-None-Match": etag})
    assert again.status == 304 and again.headers["ETag"] == etag
    assert await again.read() == b""
    assert (await client.get(path, headers={"If-None-Match": '"other"'})).status == 200
    assert (await client.get(path, headers={"If-Modified-Since": modified})).status == 304
    earlier = datetime.strptime(modified, "%a, %d %b %Y %H:%M:%S GMT").replace(tzinfo=UTC) - timedelta(
        seconds=1
    )
    assert (
        await client.get(path, headers={"If-Modified-Since": format_datetime(earlier, usegmt=True)})
    ).status == 200
    # If-None-Match wins over If-Modified-Since
    both = await client.get(path, headers={"If-None-Match": '"other"', "If-Modified-Since": modified})
    assert both.status == 200


async def test_representations_have_different_etags(client: TestClient) -> None:
    geo = await client.get("/api/v1/alerts/active")
    atom = await client.get("/api/v1/alerts/active", headers={"Accept": "application/atom+xml"})
    assert geo.headers["ETag"] != atom.headers["ETag"]


async def test_geojson_answers_are_byte_for_byte_the_plain_rendering_of_the_real_outlines(
    client: TestClient, world: World, db_url: str
) -> None:
    listed = await client.get("/api/v1/alerts/active")
    one = await client.get(f"/api/v1/alerts/{world.rain_district}")
    body = await listed.read()
    public = PublicAlerts("wuhai", event_names(load_texts()))
    links = AlertLinks(str(client.make_url("")).rstrip("/"))
    conn = await asyncpg.connect(db_url)
    try:
        areas = await public.areas(conn)
        alerts = await public.active(conn, datetime.now(UTC))
        references = await public.reference_ids(conn, alerts)
        rain = next(a for a in alerts if a.id == world.rain_district)
    finally:
        await conn.close()

    def plain(alert):
        return alert_feature(
            alert, geojson_geometry(areas.geometry(alert.areas, alert.polygons)), links, references
        )

    shown = json.loads(body)
    assert all(f["geometry"]["type"] == "MultiPolygon" for f in shown["features"])  # real outlines drawn
    assert body == json_body(
        {
            "type": "FeatureCollection",
            "title": shown["title"],
            "updated": shown["updated"],
            "features": [plain(a) for a in alerts],
        }
    )
    assert await one.read() == json_body(plain(rain))


async def test_a_new_risk_database_version_renders_the_geometry_afresh(db_url: str, world: World) -> None:
    public = PublicAlerts("wuhai", event_names(load_texts()))
    square = {
        "type": "Polygon",
        "coordinates": [[[106.8, 39.6], [106.9, 39.6], [106.9, 39.7], [106.8, 39.6]]],
    }
    conn = await asyncpg.connect(db_url)
    rebuild = conn.transaction()  # a rebuild in which Haibowan's outline changed, never committed
    try:
        before = await public.areas(conn)
        drawn = before.geometry_json(("150302000000",), ())
        assert json.loads(drawn)["type"] == "MultiPolygon"
        assert (await public.areas(conn)).geometry_json(("150302000000",), ()) is drawn  # kept while current
        await rebuild.start()
        version = await conn.fetchval(
            """INSERT INTO risk.version (region, region_code, region_name, grid, config, provenance)
               SELECT region, region_code, region_name, grid, config, provenance FROM risk.version
               WHERE id = $1 RETURNING id""",
            before.version_id,
        )
        await conn.execute(
            """INSERT INTO risk.unit SELECT $2, code, idx, name, name_en, level, parent, population, area_km2,
                      boundary, code_status, CASE WHEN code = '150302000000' THEN $3::jsonb ELSE geometry END
               FROM risk.unit WHERE version_id = $1""",
            before.version_id,
            version,
            json.dumps(square),
        )
        await conn.execute("UPDATE risk.current_version SET version_id = $1 WHERE region = 'wuhai'", version)
        after = await public.areas(conn)
        assert after.version_id == version
        assert json.loads(after.geometry_json(("150302000000",), ())) == {
            "type": "MultiPolygon",
            "coordinates": [square["coordinates"]],
        }
    finally:
        await conn.close()  # the rebuild was never committed: closing undoes it


# ---------------------------------------------------------------------------------------------- URLs


async def test_absolute_urls_come_from_public_url_when_set(db_url: str, world: World, tmp_path: Path) -> None:
    async with service(db_url, tmp_path, warnings=WarningSettings(public_url=PUBLIC_URL + "/")) as c:
        body = await (await c.get("/api/v1/alerts/active")).json()
        feed = etree.fromstring(await (await c.get("/feeds/alerts.atom")).read())
    assert {f["id"] for f in body["features"]} == {f"{PUBLIC_URL}/api/v1/alerts/{i}" for i in _active(world)}
    assert feed.findtext(f"{ATOM}id") == f"{PUBLIC_URL}/feeds/alerts.atom"
    hrefs = {link.get("href") for link in feed.iter(f"{ATOM}link")}
    assert f"{PUBLIC_URL}/api/v1/alerts/{world.heat_town}.cap" in hrefs
