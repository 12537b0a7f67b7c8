"""Login, sessions, CSRF and bearer tokens through the real app on a real PostgreSQL, and the `user` CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from risk_zoning.io.database import upgrade
from tests.factories_app import clean_environment, service, warnings_svc_command
from tests.factories_cli import problem_lines
from tests.factories_db import fresh_database
from warnings_svc.database import MIGRATIONS
from warnings_svc.lifecycle.transitions import Role
from warnings_svc.web.accounts import authenticate_token, create_user, issue_token, revoke_token
from warnings_svc.web.auth import CSRF, SCOPES, SESSION_COOKIE, USER, require_user

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
async def accounts_url(pg_server_url: str) -> AsyncIterator[str]:
    """A database with every migration applied (no risk database: these routes do not need one)."""
    async with fresh_database(pg_server_url) as url:
        conn = await asyncpg.connect(url)
        try:
            await upgrade(conn, MIGRATIONS)
        finally:
            await conn.close()
        yield url


@pytest.fixture
async def db(accounts_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the shared database, with no users, sessions or failed logins left by other tests."""
    conn = await asyncpg.connect(accounts_url)
    await conn.execute("TRUNCATE svc.app_user, svc.login_failure CASCADE")
    yield conn
    await conn.close()


# Test-only routes, added to this test's app instance (never to the production factory).
async def whoami(request: web.Request) -> web.Response:
    user = request[USER]
    return web.json_response(
        {"user": user and user.name, "scopes": sorted(request[SCOPES]), "csrf": request[CSRF]}
    )


async def read_something(request: web.Request) -> web.Response:
    return web.json_response({"name": require_user(request, scope="read").name})


async def write_as_forecaster(request: web.Request) -> web.Response:
    user = require_user(request, Role.forecaster, Role.approver)
    return web.json_response({"name": user.name})


TEST_ROUTES = [
    web.get("/test/whoami", whoami),
    web.get("/test/read", read_something),
    web.post("/test/write", write_as_forecaster),
]


@pytest.fixture
async def client(accounts_url: str, db: asyncpg.Connection, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with service(accounts_url, tmp_path, routes=TEST_ROUTES) as c:
        yield c


async def log_in(client: TestClient, name: str, password: str = PASSWORD, **form: str) -> Any:
    return await client.post(
        "/console/login", data={"name": name, "password": password, **form}, allow_redirects=False
    )


async def csrf_token(client: TestClient) -> str:
    return (await (await client.get("/test/whoami")).json())["csrf"]


# ---------------------------------------------------------------------------------------------- login page


async def test_the_login_form_is_chinese_by_default_and_english_on_request(client: TestClient) -> None:
    zh = await client.get("/console/login")
    assert zh.status == 200
    assert zh.headers["Content-Type"].startswith("text/html")
    html = await zh.text()
    assert "用户名" in html and "密码" in html and '<form method="post" action="/console/login"' in html
    assert 'href="/static/style.css"' in html  # the site's page, not a bare form
    en = await (await client.get("/console/login?lang=en")).text()
    assert "User name" in en and "Password" in en and "用户名" not in en


async def test_the_login_form_escapes_what_it_echoes(client: TestClient) -> None:
    response = await log_in(client, '"><script>alert(1)</script>', "wrong password")
    html = await response.text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;" in html


async def test_logging_in_sets_a_strict_http_only_session_cookie_and_goes_on_to_next(
    client: TestClient, db: asyncpg.Connection
) -> None:
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    response = await log_in(client, "li.wei", next="/console/warnings/7?lang=en")
    assert response.status == 303
    assert response.headers["Location"] == "/console/warnings/7?lang=en"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    attributes = {a.strip().split("=")[0].lower() for a in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path"} <= attributes and "secure" not in attributes
    assert "SameSite=Strict" in cookie and "Path=/" in cookie
    me = await (await client.get("/test/whoami")).json()
    assert me["user"] == "li.wei" and me["scopes"] == ["read", "write"] and len(me["csrf"]) >= 40
    # logged in already: the form goes straight on
    again = await client.get("/console/login?next=/console/x", allow_redirects=False)
    assert (again.status, again.headers["Location"]) == (303, "/console/x")


async def test_without_next_login_goes_to_the_console(client: TestClient, db: asyncpg.Connection) -> None:
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    response = await log_in(client, "li.wei")
    assert response.headers["Location"] == "/console/"


async def test_the_cookie_is_secure_when_the_public_url_is_https(
    accounts_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    async with service(
        accounts_url, tmp_path, routes=TEST_ROUTES, warnings={"public_url": "https://warnings.example.cn"}
    ) as c:
        response = await log_in(c, "li.wei")
    assert response.status == 303
    assert "Secure" in response.headers["Set-Cookie"]


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/console/",
        "/\\evil.example",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/console/\nSet-Cookie: x=1",
        " /console/",
        "console/",
        "",
    ],
)
async def test_login_never_redirects_off_site(
    client: TestClient, db: asyncpg.Connection, target: str
) -> None:
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    response = await log_in(client, "li.wei", next=target)
    assert response.status == 303
    assert response.headers["Location"] == "/console/"
    logged_in = await client.get("/console/login", params={"next": target}, allow_redirects=False)
    assert logged_in.headers["Location"] == "/console/"


async def test_a_wrong_password_shows_the_form_again_with_401_and_no_cookie(
    client: TestClient, db: asyncpg.Connection
) -> None:
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    response = await log_in(client, "li.wei", "not the password", lang="en")
    assert response.status == 401
    assert "Set-Cookie" not in response.headers
    html = await response.text()
    assert "Wrong user name or password" in html and 'value="li.wei"' in html
    assert (await (await client.get("/test/whoami")).json())["user"] is None


@pytest.mark.parametrize(
    "form", [{"name": "li\x00wei"}, {"password": PASSWORD + "\x00"}], ids=["name", "password"]
)
async def test_a_nul_character_in_the_login_form_is_the_form_again_with_400_not_a_database_error(
    client: TestClient, db: asyncpg.Connection, form: dict[str, str]
) -> None:
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    response = await client.post(
        "/console/login", data={"name": "li.wei", "password": PASSWORD, **form}, allow_redirects=False
    )
    assert response.status == 400
    assert response.content_type == "text/html" and "Set-Cookie" not in response.headers
    assert await db.fetchval("SELECT count(*) FROM svc.web_session") == 0


async def test_after_five_failures_login_is_429_with_retry_after_even_with_the_right_password(
    client: TestClient, db: asyncpg.Connection
) -> None:
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    for _ in range(5):
        assert (await log_in(client, "li.wei", "not the password")).status == 401
    response = await log_in(client, "li.wei", PASSWORD)
    assert response.status == 429
    assert 0 < int(response.headers["Retry-After"]) <= 15 * 60
    assert "Set-Cookie" not in response.headers
    assert "分钟后再试" in await response.text()


async def log_in_from(client: TestClient, address: str, name: str, password: str = PASSWORD) -> Any:
    """A login through a proxy that names the client `address` in X-Forwarded-For."""
    return await client.post(
        "/console/login",
        data={"name": name, "password": password},
        headers={"X-Forwarded-For": address},
        allow_redirects=False,
    )


async def _fail_twenty_times_from(client: TestClient, address: str) -> None:
    """20 failed logins (the per-address limit) claiming to come from `address`, spread over names so that
    no name reaches its own limit."""
    for i in range(20):
        assert (await log_in_from(client, address, f"nobody.{i % 5}.{address}", "wrong")).status == 401


async def test_behind_a_trusted_proxy_failed_logins_count_per_client_address(
    accounts_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    await create_user(db, "zhao.lei", "forecaster", password=PASSWORD)
    async with service(accounts_url, tmp_path, trusted_proxies=("127.0.0.1", "::1")) as client:
        await _fail_twenty_times_from(client, "203.0.113.7")
        assert (await log_in_from(client, "203.0.113.7", "zhao.lei")).status == 429  # that client is limited
        assert (await log_in_from(client, "203.0.113.8", "zhao.lei")).status == 303  # the next one is not


async def test_without_trusted_proxies_x_forwarded_for_is_ignored(
    client: TestClient, db: asyncpg.Connection
) -> None:
    await create_user(db, "qian.yu", "forecaster", password=PASSWORD)
    await _fail_twenty_times_from(client, "203.0.113.9")
    # claiming another address does not escape the limit of the address the requests really come from
    assert (await log_in_from(client, "203.0.113.10", "qian.yu")).status == 429


# ---------------------------------------------------------------------------------------------- CSRF


async def test_a_cookie_post_without_the_csrf_token_is_403_and_with_it_passes(
    client: TestClient, db: asyncpg.Connection
) -> None:
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    await log_in(client, "li.wei")
    token = await csrf_token(client)

    refused = await client.post("/console/logout", allow_redirects=False)
    assert refused.status == 403  # a person's form: an error page, not a problem document
    assert refused.content_type == "text/html" and "CSRF" in await refused.text()
    api = await client.post("/test/write", allow_redirects=False)
    problem = await api.json(content_type=None)
    assert problem["type"].endswith("csrf-rejected") and "CSRF" in problem["detail"]
    wrong = await client.post("/console/logout", data={"csrf_token": token[:-1] + "x"}, allow_redirects=False)
    assert wrong.status == 403
    assert (await (await client.get("/test/whoami")).json())["user"] == "li.wei"  # still logged in

    by_header = await client.post("/test/write", headers={"X-CSRF-Token": token})
    assert by_header.status == 200 and (await by_header.json())["name"] == "li.wei"
    no_header = await client.post("/test/write", json={})
    assert no_header.status == 403

    out = await client.post("/console/logout", data={"csrf_token": token}, allow_redirects=False)
    assert (out.status, out.headers["Location"]) == (303, "/console/login")
    assert f"{SESSION_COOKIE}=" in out.headers["Set-Cookie"]  # the cookie is cleared
    assert await db.fetchval("SELECT count(*) FROM svc.web_session") == 0
    assert (await (await client.get("/test/whoami")).json())["user"] is None


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}],
    ids=["foreign origin", "null origin", "cross-site fetch"],
)
async def test_cross_site_posts_are_refused_even_with_the_csrf_token(
    client: TestClient, db: asyncpg.Connection, headers: dict[str, str]
) -> None:
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    await log_in(client, "li.wei")
    token = await csrf_token(client)
    response = await client.post("/test/write", headers={"X-CSRF-Token": token, **headers})
    assert response.status == 403
    assert (await response.json(content_type=None))["type"].endswith("csrf-rejected")
    # nor can another site log someone in (login CSRF)
    forged = await client.post(
        "/console/login",
        data={"name": "li.wei", "password": PASSWORD},
        headers=headers,
        allow_redirects=False,
    )
    assert forged.status == 403


async def test_a_same_origin_post_passes(client: TestClient, db: asyncpg.Connection) -> None:
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    origin = str(client.make_url("/")).rstrip("/")
    response = await client.post(
        "/console/login",
        data={"name": "li.wei", "password": PASSWORD},
        headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
        allow_redirects=False,
    )
    assert response.status == 303


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"name=li.wei&password=x"),
        (
            "multipart/form-data; boundary=B",
            b'--B\r\nContent-Disposition: form-data; name="n\x01"\r\n\r\nx\r\n--B--\r\n',
        ),
        ("multipart/form-data; boundary=B", b'--B\r\nContent-Disposition: form-data; name="name"\r\n\r\nli'),
        ("application/x-www-form-urlencoded", b"name=li.wei&password=\xff\xfe"),
        ("application/x-www-form-urlencoded; charset=no-such-charset", b"name=li.wei&password=x"),
    ],
    ids=[
        "multipart without a boundary",
        "control byte in a part name",
        "cut short",
        "not utf-8",
        "no charset",
    ],
)
async def test_a_login_form_that_cannot_be_read_is_a_400_page_and_logs_nobody_in(
    client: TestClient, db: asyncpg.Connection, content_type: str, body: bytes
) -> None:
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    response = await client.post(
        "/console/login", data=body, headers={"Content-Type": content_type}, allow_redirects=False
    )
    assert response.status == 400
    assert response.content_type == "text/html" and "the form cannot be read" in await response.text()
    assert "Set-Cookie" not in response.headers
    assert await db.fetchval("SELECT count(*) FROM svc.web_session") == 0


async def test_a_session_post_whose_form_is_not_utf8_is_a_400_and_keeps_the_session(
    client: TestClient, db: asyncpg.Connection
) -> None:
    """The CSRF check reads the form's token; a form it cannot read is the client's fault, not a 500."""
    await create_user(db, "li.wei", "forecaster", password=PASSWORD)
    await log_in(client, "li.wei")
    response = await client.post(
        "/console/logout",
        data=b"csrf_token=\xff",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        allow_redirects=False,
    )
    assert response.status == 400
    assert await db.fetchval("SELECT count(*) FROM svc.web_session") == 1


# ---------------------------------------------------------------------------------------------- tokens and roles


async def test_without_credentials_a_protected_route_is_401_with_a_bearer_challenge(
    client: TestClient,
) -> None:
    response = await client.get("/test/read")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json(content_type=None))["status"] == 401


async def test_a_bearer_token_authenticates_without_csrf(client: TestClient, db: asyncpg.Connection) -> None:
    _, token = await create_user(db, "api-client", "forecaster")
    response = await client.post("/test/write", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    assert (await response.json())["name"] == "api-client"


async def test_a_read_only_token_may_read_but_not_write(client: TestClient, db: asyncpg.Connection) -> None:
    await create_user(db, "dashboard", "forecaster")
    token = await issue_token(db, "dashboard", scopes=["read"])
    auth = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/test/read", headers=auth)).status == 200
    response = await client.post("/test/write", headers=auth)
    assert response.status == 403
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]
    assert "write" in (await response.json(content_type=None))["detail"]


async def test_a_department_user_is_refused_where_a_forecaster_is_needed(
    client: TestClient, db: asyncpg.Connection
) -> None:
    _, token = await create_user(db, "water-bureau", "department")
    response = await client.post("/test/write", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 403
    problem = await response.json(content_type=None)
    assert problem["type"].endswith("forbidden") and "'department'" in problem["detail"]


async def test_a_revoked_or_made_up_token_is_401_invalid_token(
    client: TestClient, db: asyncpg.Connection
) -> None:
    _, token = await create_user(db, "old-script", "operations")
    await revoke_token(db, token)
    for bad in (token, "wst_made-up", ""):
        response = await client.get("/test/read", headers={"Authorization": f"Bearer {bad}"})
        assert response.status == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_public_routes_still_answer_without_credentials(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/openapi.json")).status == 200


# ---------------------------------------------------------------------------------------------- command line


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*warnings_svc_command(), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_environment(),
    )


@pytest.fixture
def config(accounts_url: str, tmp_path: Path, db: asyncpg.Connection) -> Path:
    path = tmp_path / "warnings-svc.toml"
    path.write_text(f'database_url = "{accounts_url}"\ndata_dir = "{tmp_path / "data"}"\n')
    return path


async def test_user_add_prints_json_with_a_token_that_authenticates(
    config: Path, db: asyncpg.Connection
) -> None:
    result = run_cli(
        "user", "add", "zhang.san", "--role", "approver", "--display-name", "张三", "--config", str(config)
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["name"] == "zhang.san" and created["role"] == "approver"
    found = await authenticate_token(db, created["token"])
    assert found is not None
    user, scopes = found
    assert (user.name, user.role, user.display_name, scopes) == (
        "zhang.san",
        Role.approver,
        "张三",
        frozenset({"read", "write"}),
    )


async def test_user_add_with_a_password_lets_the_user_log_in(
    config: Path, client: TestClient, db: asyncpg.Connection
) -> None:
    result = run_cli(
        "user",
        "add",
        "li.si",
        "--role",
        "forecaster",
        "--password-stdin",
        "--config",
        str(config),
        stdin=PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert (await log_in(client, "li.si")).status == 303


async def test_user_token_list_and_revoke(config: Path, db: asyncpg.Connection) -> None:
    await create_user(db, "wang.wu", "operations")
    issued = run_cli(
        "user", "token", "wang.wu", "--scope", "read", "--label", "wall screen", "--config", str(config)
    )
    assert issued.returncode == 0, issued.stderr
    token = json.loads(issued.stdout)["token"]
    assert json.loads(issued.stdout)["scopes"] == ["read"]
    assert (await authenticate_token(db, token))[1] == frozenset({"read"})  # type: ignore[index]

    listed = run_cli("user", "list", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    users = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(u["name"], u["role"], u["tokens"]) for u in users] == [("wang.wu", "operations", 2)]
    assert token not in listed.stdout and "argon2" not in listed.stdout

    revoked = run_cli("user", "revoke", "-", "--config", str(config), stdin=token + "\n")
    assert revoked.returncode == 0, revoked.stderr
    assert await authenticate_token(db, token) is None
    again = run_cli("user", "revoke", token, "--config", str(config))
    assert again.returncode == 2
    assert problem_lines(again.stderr) == ["warnings-svc: no such token, or it was revoked already"]


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("user", "add", "zhao", "--role", "boss"), "invalid choice: 'boss'"),
        (("user", "add", "Zhao Liu", "--role", "forecaster"), "is not allowed"),
        (("user", "token", "nobody"), "no user named 'nobody'"),
    ],
    ids=["bad role", "bad name", "unknown user"],
)
def test_user_command_errors_are_one_line_on_stderr_with_exit_status_2(
    config: Path, args: tuple[str, ...], named: str
) -> None:
    result = run_cli(*args, "--config", str(config))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = problem_lines(result.stderr)  # after the line naming the database, when one was opened
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("warnings-svc") and named in lines[0]


async def test_adding_a_user_twice_is_one_line_and_exit_status_2(
    config: Path, db: asyncpg.Connection
) -> None:
    await create_user(db, "zhou", "forecaster")
    result = run_cli("user", "add", "zhou", "--role", "forecaster", "--config", str(config))
    assert result.returncode == 2
    assert problem_lines(result.stderr) == ["warnings-svc: user 'zhou' exists already"]


async def test_a_form_larger_than_forms_need_is_refused_with_413(client: TestClient) -> None:
    """Url-encoded forms are read whole, so they are capped (1 MiB); uploads stream and have their own limit."""
    response = await client.post(
        "/console/login", data={"name": "x", "password": "y" * (2 * 2**20)}, allow_redirects=False
    )
    assert response.status == 413
