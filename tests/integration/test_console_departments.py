"""The registry of departments in the console against a real PostgreSQL: admins only, forms with the CSRF
token, errors named on the form with nothing written, audit entries, and the impact preview it feeds."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from tests.factories_app import service
from tests.factories_db import fresh_database
from warnings_svc.lifecycle import audit_log
from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.transitions import Actor, Role
from warnings_svc.settings import Settings
from warnings_svc.web.accounts import create_user

PASSWORD = "correct horse battery"
CTX = ws.Issuing.from_settings(Settings())
FORM = {
    "code": "hn-emergency",
    "name": "海南区应急管理局",
    "name_en": "Hainan Emergency Management Bureau",
    "sector": "emergency",
    "area": "150303000000",
    "min_level": "blue",
    "duty_name": "值班员",
    "duty_phone": "154 0473 3011",
    "duty_email": "duty@hn.example.org",
}


@pytest.fixture(scope="module")
async def url(pg_server_url: str) -> AsyncIterator[str]:
    # a database of its own: these tests start from an empty registry
    async with fresh_database(pg_server_url, built=True) as u:
        yield u


@pytest.fixture
async def conn(url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(url)
    for attempt in range(
        3
    ):  # the loops of a service started first (acknowledgements, coverage) read these tables
        try:
            await c.execute("TRUNCATE svc.department CASCADE")
            break
        except asyncpg.DeadlockDetectedError:
            if attempt == 2:
                raise
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def client(url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with service(url, tmp_path) as c:
        yield c


async def log_in_as(client: TestClient, conn: asyncpg.Connection, role: str) -> str:
    name = f"{role[:4]}{uuid.uuid4().hex[:8]}"
    await create_user(conn, name, role, password=PASSWORD)
    client.session.cookie_jar.clear()
    response = await client.post(
        "/console/login", data={"name": name, "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    return name


async def csrf(client: TestClient, path: str = "/console/departments") -> str:
    html = await (await client.get(path)).text()
    match = re.search(r'<meta name="csrf-token" content="([^"]*)">', html)
    assert match, html[:300]
    return match.group(1)


async def post(client: TestClient, path: str, data: dict | list) -> tuple[int, str]:
    response = await client.post(path, data=data, allow_redirects=False)
    return response.status, await response.text()


async def department_audit(conn: asyncpg.Connection, code: str) -> list:
    return [e async for e in audit_log.entries(conn, subject=f"department:{code}")]


async def heat_draft(conn: asyncpg.Connection, areas: tuple[str, ...]) -> int:
    now = datetime.now(UTC)
    version = await ws.create(
        conn,
        CTX,
        Actor("someone", Role.forecaster),
        hazard="heat",
        level="orange",
        onset=now + timedelta(hours=2),
        expires=now + timedelta(hours=20),
        content=ws.Content(areas=areas),
        now=now,
    )
    return version.warning_id


async def test_only_admins_see_and_use_the_registry(client: TestClient, conn: asyncpg.Connection) -> None:
    await log_in_as(client, conn, "forecaster")
    home = await (await client.get("/console/")).text()
    assert 'id="nav-departments"' not in home
    token = await csrf(client, "/console/")
    for path in ("/console/departments", "/console/departments/new", "/console/departments/x"):
        response = await client.get(path)
        assert response.status == 403 and response.headers["Content-Type"].startswith("text/html"), path
        assert "admin" in await response.text()
    for path in ("/console/departments", "/console/departments/x", "/console/departments/x/retire"):
        status, _ = await post(client, path, FORM | {"csrf_token": token})
        assert status == 403, path
    assert await conn.fetchval("SELECT count(*) FROM svc.department") == 0

    await log_in_as(client, conn, "admin")
    home = await (await client.get("/console/")).text()
    assert '<a href="/console/departments" id="nav-departments">部门</a>' in home
    listing = await (await client.get("/console/departments")).text()
    assert "尚未登记任何部门" in listing


async def test_an_admin_adds_edits_retires_and_restores_with_an_audit_entry_each(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    admin = await log_in_as(client, conn, "admin")
    earlier = len(await department_audit(conn, "hn-emergency"))  # the log outlives the tests' truncations
    token = await csrf(client)
    status, _ = await post(client, "/console/departments", FORM | {"csrf_token": token})
    assert status == 303
    listing = await (await client.get("/console/departments")).text()
    row = listing.split('id="department-hn-emergency"')[1].split("</tr>")[0]
    assert "海南区应急管理局" in row and "应急管理" in row and "海南区" in row and "+8615404733011" in row
    assert "在用" in row

    form = await (await client.get("/console/departments/hn-emergency")).text()
    assert 'value="值班员"' in form and 'value="+8615404733011"' in form and "readonly" in form
    edited = FORM | {"csrf_token": token, "deputy_name": "副职", "deputy_phone": "15404733012"}
    # hazards are ticked boxes: one field per hazard
    data = [*edited.items(), ("hazards", "heat"), ("hazards", "sandstorm")]
    status, _ = await post(client, "/console/departments/hn-emergency", data)
    assert status == 303
    status, _ = await post(client, "/console/departments/hn-emergency/retire", {"csrf_token": token})
    assert status == 303
    listing = await (await client.get("/console/departments")).text()
    assert 'class="retired"' in listing and "已停用" in listing
    status, _ = await post(client, "/console/departments/hn-emergency/retire", {"csrf_token": token})
    assert status == 303  # retiring again changes nothing and records nothing
    status, _ = await post(client, "/console/departments/hn-emergency/restore", {"csrf_token": token})
    assert status == 303

    entries = (await department_audit(conn, "hn-emergency"))[earlier:]
    assert [e.action for e in entries] == [
        "department_add",
        "department_edit",
        "department_retire",
        "department_restore",
    ]
    assert {e.actor for e in entries} == {admin}
    add, edit = entries[0], entries[1]
    assert add.before is None and add.after["people"]["duty"]["phone"] == "+8615404733011"
    assert "deputy" not in edit.before["people"] and edit.after["people"]["deputy"]["name"] == "副职"
    assert edit.after["hazards"] == ["heat", "sandstorm"] and edit.after["source"] == "console"
    assert (await audit_log.verify_log(conn)).ok


async def test_a_bad_form_is_shown_again_naming_each_field_and_writes_nothing(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    await log_in_as(client, conn, "admin")
    earlier = len(await department_audit(conn, "hn-emergency"))  # the log outlives the tests' truncations
    token = await csrf(client)
    bad = FORM | {
        "csrf_token": token,
        "code": "Bad Code",
        "area": "150399000000",
        "duty_phone": "0473-2001234",
        "leader_email": "chief@example.org",
        "name_en": "<script>alert(1)</script>",
    }
    status, html = await post(client, "/console/departments", bad)
    assert status == 422
    errors = html.split('id="form-errors"')[1].split("</div>")[0]
    for field in ("code", "area", "duty_phone", "leader_name", "leader_phone"):
        assert f'data-field="{field}"' in errors, field
    assert "landline" in html and 'id="error-area"' in html
    assert 'value="海南区应急管理局"' in html  # what was typed stays in the form, escaped
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    # an existing code is refused on the code field
    assert (await post(client, "/console/departments", FORM | {"csrf_token": token}))[0] == 303
    status, html = await post(client, "/console/departments", FORM | {"csrf_token": token, "name": "另一个"})
    assert status == 422 and 'id="error-code"' in html and "exists" in html
    # without the session's CSRF token nothing is written either
    status, _ = await post(client, "/console/departments/hn-emergency", FORM | {"name": "改名"})
    assert status == 403
    assert await conn.fetchval("SELECT count(*) FROM svc.department") == 1
    assert await conn.fetchval("SELECT name FROM svc.department") == "海南区应急管理局"
    assert [e.action for e in (await department_audit(conn, "hn-emergency"))[earlier:]] == ["department_add"]
    assert await department_audit(conn, "bad code") == []
    missing = await client.get("/console/departments/nobody")
    assert missing.status == 404 and "没有此部门" in await missing.text()


async def test_the_impact_preview_lists_the_registry_and_says_when_it_is_empty(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    warning_id = await heat_draft(conn, ("150303000000",))
    await log_in_as(client, conn, "forecaster")
    html = await (await client.get(f"/console/warnings/{warning_id}")).text()
    assert 'id="registry-empty"' in html and "部门名录为空" in html and "请管理员" in html
    await log_in_as(client, conn, "admin")
    html = await (await client.get(f"/console/warnings/{warning_id}")).text()
    assert '<a href="/console/departments">登记部门</a>' in html

    token = await csrf(client)
    data = FORM | {"csrf_token": token, "leader_name": "带班领导", "leader_phone": "15404733013"}
    assert (await post(client, "/console/departments", data))[0] == 303
    html = await (await client.get(f"/console/warnings/{warning_id}?lang=en")).text()
    responders = html.split('id="impact-responders"')[1].split("</table>")[0]
    assert "Hainan Emergency Management Bureau" in responders and "+8615404733011" in responders
    assert "<small" in responders and "leader: 带班领导" in responders
    assert "demo data" not in html  # added in the console: not the demo's
    assert "⟦" not in html

    assert (await post(client, "/console/departments/hn-emergency/retire", {"csrf_token": token}))[0] == 303
    html = await (await client.get(f"/console/warnings/{warning_id}")).text()
    assert 'id="impact-responders"' not in html and 'id="registry-empty"' in html


async def test_the_pages_are_translated_in_either_language(
    client: TestClient, conn: asyncpg.Connection
) -> None:
    await log_in_as(client, conn, "admin")
    token = await csrf(client)
    assert (await post(client, "/console/departments", FORM | {"csrf_token": token}))[0] == 303
    for lang in ("zh", "en"):
        for path in ("/console/departments", "/console/departments/new", "/console/departments/hn-emergency"):
            response = await client.get(f"{path}?lang={lang}")
            assert response.status == 200, path
            html = await response.text()
            assert "⟦" not in html, (path, re.findall(r"⟦[^⟧]*⟧", html))
    english = await (await client.get("/console/departments?lang=en")).text()
    assert "Departments and their duty chains" in english and "emergency management" in english
