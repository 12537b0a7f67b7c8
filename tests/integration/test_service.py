"""The service against a real embedded PostgreSQL: the app through aiohttp's test server, and the CLI."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from markupsafe import escape

from risk_zoning import GRADE_COLOURS, HAZARDS
from risk_zoning.io.database import read_migrations, upgrade
from risk_zoning.store import ensure_built, load_current
from risk_zoning.summary import summarise
from tests.factories_app import clean_environment, service, warnings_svc_command
from tests.factories_cli import problem_lines
from tests.ports import free_port
from warnings_svc.database import MIGRATIONS
from warnings_svc.web.accounts import create_user
from warnings_svc.web.auth import SESSION_COOKIE
from warnings_svc.web.openapi import openapi_document
from warnings_svc.web.operations import MAX_JSON_DEPTH

DEMO_START_SECONDS = 600  # first start: initdb plus the Wuhai build
STOP_SECONDS = 30


@pytest.fixture
async def client(built_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with service(built_url, tmp_path) as c:
        yield c


PASSWORD = "correct horse battery"


async def new_user(url: str, role: str) -> tuple[str, str]:
    """A new user of `role` (a name no other test uses) with `PASSWORD`: its name and bearer token."""
    conn = await asyncpg.connect(url)
    try:
        count = await conn.fetchval("SELECT count(*) FROM svc.app_user")
        user, token = await create_user(conn, f"{role}-{count + 1}", role, password=PASSWORD)
    finally:
        await conn.close()
    return user.name, token


# ---------------------------------------------------------------------------------------------- probes


async def test_healthz_answers_ok_without_a_schema(db_url: str, tmp_path: Path) -> None:
    async with service(db_url, tmp_path) as c:
        response = await c.get("/healthz")
        assert response.status == 200
        assert await response.json() == {"status": "ok"}


@pytest.mark.slow
async def test_readyz_is_503_until_migrations_are_applied_and_the_region_is_built(
    db_url: str, tmp_path: Path
) -> None:
    async with service(db_url, tmp_path) as c:
        response = await c.get("/readyz")
        body = await response.json()
        assert response.status == 503
        assert body["failed"] == ["migrations", "risk_database"]
        assert "risk/0001_risk_schema" in body["checks"]["migrations"]["detail"]
        assert "service/0001_service_schema" in body["checks"]["migrations"]["detail"]
        assert body["checks"]["database"]["ok"] is True

        conn = await asyncpg.connect(db_url)
        try:
            await upgrade(conn, MIGRATIONS)
            response = await c.get("/readyz")
            body = await response.json()
            assert response.status == 503
            assert body["failed"] == ["risk_database"]
            assert "risk-zoning build" in body["checks"]["risk_database"]["detail"]

            version = await ensure_built(conn, "wuhai", progress=False)
        finally:
            await conn.close()
        response = await c.get("/readyz")
        body = await response.json()
        assert response.status == 200, body
        assert body["status"] == "ok" and body["failed"] == []
        assert body["checks"]["risk_database"]["detail"] == f"version {version}"


async def test_readyz_notices_a_migration_edited_after_it_was_applied(built_url: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(built_url)
    try:
        await conn.execute("UPDATE public.schema_migrations SET checksum = 'x' WHERE component = 'service'")
        async with service(built_url, tmp_path) as c:
            response = await c.get("/readyz")
            body = await response.json()
        assert response.status == 503
        assert body["failed"] == ["migrations", "risk_database"]
        assert "service/0001_service_schema" in body["checks"]["migrations"]["detail"]
    finally:
        await upgrade_checksums_back(conn)
        await conn.close()


async def upgrade_checksums_back(conn: asyncpg.Connection) -> None:
    for source in MIGRATIONS:
        for m in read_migrations(source):
            await conn.execute(
                "UPDATE public.schema_migrations SET checksum = $1 WHERE component = $2 AND version = $3",
                m.checksum,
                m.component,
                m.version,
            )


# ---------------------------------------------------------------------------------------------- metrics


async def test_metrics_count_requests_by_route_pattern_never_the_raw_path(client: TestClient) -> None:
    await client.get("/healthz")
    await client.get("/healthz")
    await client.get("/maps/risk/no-such-hazard.png")
    await client.get("/")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    assert 'warnings_http_requests_total{method="GET",route="/healthz",status="200"} 2.0' in text
    assert (
        'warnings_http_requests_total{method="GET",route="/maps/risk/{hazard}.png",status="404"} 1.0' in text
    )
    assert 'warnings_http_request_duration_seconds_count{route="/"} 1.0' in text
    assert "no-such-hazard" not in text
    assert 'warnings_risk_database_version{region="wuhai"}' in text
    assert 'warnings_risk_database_build_timestamp_seconds{region="wuhai"}' in text


async def test_each_app_counts_only_its_own_requests(built_url: str, tmp_path: Path) -> None:
    async with service(built_url, tmp_path) as first:
        await first.get("/healthz")
    async with service(built_url, tmp_path) as second:
        text = await (await second.get("/metrics")).text()
    assert 'route="/healthz"' not in text


# ---------------------------------------------------------------------------------------------- API


async def test_openapi_json_is_an_openapi_3_1_document_of_every_route(client: TestClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    document = json.loads(await response.text())
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) >= {
        "/",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/maps/risk/{hazard}.png",
        "/maps/proposals.png",
        "/api/v1/risk/summary",
        "/api/v1/runs",
        "/api/v1/runs/{id}",
        "/api/v1/proposals",
    }
    routes = {r.resource.canonical for r in client.app.router.routes() if r.resource.canonical != "/static"}
    assert routes == set(document["paths"])
    assert document == openapi_document(client.app)


async def test_an_unknown_hazard_map_is_a_404_problem_document(db_url: str, tmp_path: Path) -> None:
    async with service(db_url, tmp_path) as c:
        response = await c.get("/maps/risk/tornado.png")
        assert response.status == 404
        assert response.headers["Content-Type"].startswith("application/problem+json")
        problem = await response.json(content_type=None)
    assert {"type", "title", "status", "detail"} <= set(problem)
    assert problem["status"] == 404
    assert "tornado" in problem["detail"] and "heat" in problem["detail"]


async def test_an_unknown_language_for_a_map_is_a_400_problem_naming_the_parameter(
    client: TestClient,
) -> None:
    response = await client.get("/maps/risk/heat.png?lang=fr")
    assert response.status == 400
    problem = await response.json(content_type=None)
    assert problem["detail"].startswith("lang:")


async def test_an_unknown_api_path_is_a_404_problem_document(client: TestClient) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status == 404
    assert (await response.json(content_type=None))["status"] == 404


async def test_a_method_a_path_does_not_take_is_a_405_that_says_which_it_takes(client: TestClient) -> None:
    api = await client.delete("/api/v1/proposals")
    assert api.status == 405
    assert api.headers["Content-Type"].startswith("application/problem+json")
    assert (await api.json(content_type=None))["code"] == "method_not_allowed"
    assert set(api.headers["Allow"].split(",")) == {"GET", "HEAD"}
    page = await client.post("/")  # a person's page: the error page, with the same header
    assert page.status == 405 and set(page.headers["Allow"].split(",")) == {"GET", "HEAD"}


async def test_proposals_runs_and_the_proposals_map_are_401_problems_without_a_login(
    client: TestClient,
) -> None:
    for path in ("/api/v1/proposals", "/api/v1/runs/1", "/maps/proposals.png"):
        response = await client.get(path)
        assert response.status == 401, path
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await response.json(content_type=None))["code"] == "unauthenticated"
    # the risk itself stays public
    assert (await client.get("/maps/risk/heat.png")).status == 200
    assert (await client.get("/api/v1/risk/summary")).status == 200


async def test_any_logged_in_user_may_read_proposals_and_unknown_parameters_are_refused(
    client: TestClient, built_url: str
) -> None:
    _, token = await new_user(built_url, "department")
    bearer = {"Authorization": f"Bearer {token}"}
    listed = await client.get("/api/v1/proposals", headers=bearer)
    assert listed.status == 200 and "proposals" in await listed.json()
    unknown = await client.get("/api/v1/proposals?status=open&colour=red", headers=bearer)
    assert unknown.status == 400
    problem = await unknown.json(content_type=None)
    assert (problem["code"], problem["field"]) == ("invalid_parameter", "colour")


@pytest.mark.parametrize("run_id", ["150805435554299310237548544", "9223372036854775808", "-1", "x"])
async def test_a_run_id_that_is_no_run_id_is_a_404_not_a_503(
    client: TestClient, built_url: str, run_id: str
) -> None:
    _, token = await new_user(built_url, "operations")
    response = await client.get(f"/api/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 404
    problem = await response.json(content_type=None)
    assert (problem["code"], problem["field"]) == ("not_found", "id")


@pytest.mark.parametrize("opening", ["[", '{"a":'])
async def test_a_json_body_nested_thousands_deep_is_a_400_problem_and_writes_nothing(
    client: TestClient, built_url: str, opening: str
) -> None:
    _, token = await new_user(built_url, "forecaster")
    closing = "]" if opening == "[" else "}"
    body = opening * 5000 + "1" + closing * 5000
    conn = await asyncpg.connect(built_url)
    try:
        before = await conn.fetchval("SELECT count(*) FROM svc.warning")
        response = await client.post(
            "/api/v1/warnings",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        assert response.status == 400
        problem = await response.json(content_type=None)
        assert (problem["code"], problem["field"]) == ("too_deep", "body")
        assert f"the {MAX_JSON_DEPTH} allowed" in problem["detail"]
        assert await conn.fetchval("SELECT count(*) FROM svc.warning") == before
    finally:
        await conn.close()


async def test_without_a_built_region_the_api_says_503_and_names_the_build_command(
    db_url: str, tmp_path: Path
) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await upgrade(conn, MIGRATIONS)
    finally:
        await conn.close()
    async with service(db_url, tmp_path) as c:
        api = await c.get("/api/v1/risk/summary")
        page = await c.get("/")
        assert api.status == 503
        assert "risk-zoning build" in (await api.json(content_type=None))["detail"]
        assert page.status == 503
        assert page.headers["Content-Type"].startswith("text/html")
        assert "risk-zoning build" in await page.text()


async def test_the_risk_summary_is_the_summary_of_the_current_version(
    client: TestClient, built_url: str
) -> None:
    response = await client.get("/api/v1/risk/summary")
    assert response.status == 200
    conn = await asyncpg.connect(built_url)
    try:
        expected = summarise(await load_current(conn, "wuhai"))
    finally:
        await conn.close()
    assert await response.json() == json.loads(json.dumps(expected))


@pytest.mark.slow
@pytest.mark.parametrize("hazard", HAZARDS)
@pytest.mark.parametrize("lang", ["zh", "en"])
async def test_the_risk_map_of_every_hazard_is_a_png_and_is_cached(
    client: TestClient, hazard: str, lang: str
) -> None:
    first = await client.get(f"/maps/risk/{hazard}.png?lang={lang}")
    assert first.status == 200
    assert first.headers["Content-Type"] == "image/png"
    body = await first.read()
    assert body.startswith(b"\x89PNG\r\n\x1a\n")
    again = await client.get(
        f"/maps/risk/{hazard}.png?lang={lang}", headers={"If-None-Match": first.headers["ETag"]}
    )
    assert again.status == 304


# ---------------------------------------------------------------------------------------------- first page


async def test_the_first_page_lists_every_assessment_unit_and_the_four_maps(
    client: TestClient, built_url: str
) -> None:
    conn = await asyncpg.connect(built_url)
    try:
        db = await load_current(conn, "wuhai")
    finally:
        await conn.close()
    response = await client.get("/")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/html")
    html = await response.text()
    assert db.region_name in html
    for unit in db.units:
        assert unit.name in html
        assert unit.code.strip() in html
    for hazard in HAZARDS:
        assert f'<img src="/maps/risk/{hazard}.png"' in html
    assert f"{db.version_id}" in html
    assert 'href="/static/style.css"' in html

    english = await (await client.get("/?lang=en")).text()
    assert all(escape(unit.name_en) in english for unit in db.units)
    assert '<img src="/maps/risk/heat.png?lang=en"' in english


async def test_the_first_page_shows_proposals_only_to_a_logged_in_user_and_asks_others_to_log_in(
    client: TestClient, built_url: str
) -> None:
    anonymous = await client.get("/?lang=en")
    html = await anonymous.text()
    assert 'href="/console/login?next=/%3Flang%3Den&amp;lang=en">Log in to see open proposals</a>' in html
    assert "No open proposals" not in html and "/maps/proposals.png" not in html
    assert "登录后可查看待审的预警建议" in await (await client.get("/")).text()

    name, _ = await new_user(built_url, "department")
    login = await client.post(
        "/console/login", data={"name": name, "password": PASSWORD}, allow_redirects=False
    )
    assert SESSION_COOKIE in login.cookies
    logged_in = await client.get("/?lang=en")
    html = await logged_in.text()
    assert "No open proposals" in html and "Log in to see open proposals" not in html
    assert "no-store" in logged_in.headers["Cache-Control"]  # one user's page: no shared cache keeps it


async def test_the_first_page_escapes_text_from_the_database(built_url: str, tmp_path: Path) -> None:
    hostile = '<script>alert("x")</script> & Co'
    conn = await asyncpg.connect(built_url)
    try:
        code, before = await conn.fetchrow(
            """SELECT code, name_en FROM risk.unit WHERE level = 'district' AND version_id =
                 (SELECT version_id FROM risk.current_version WHERE region = 'wuhai') LIMIT 1"""
        )
        await conn.execute("UPDATE risk.unit SET name_en = $1 WHERE code = $2", hostile, code)
        async with service(built_url, tmp_path) as c:
            html = await (await c.get("/?lang=en")).text()
    finally:
        await conn.execute("UPDATE risk.unit SET name_en = $1 WHERE code = $2", before, code)
        await conn.close()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; Co" in html


async def test_the_first_page_lists_each_district_before_its_towns_and_flags_synthetic_inputs(
    client: TestClient,
) -> None:
    html = await (await client.get("/")).text()
    codes = re.findall(r"<td><code>(\d{12})</code>", html)
    districts = [c for c in codes if c.endswith("000000") and not c.endswith("00000000")]
    assert codes[0] == "150300000000"
    for district, following in zip(districts, [*districts[1:], None], strict=True):
        block = codes[codes.index(district) + 1 : codes.index(following) if following else None]
        assert block and all(code.startswith(district[:6]) for code in block)
    assert 'class="notice"' in html and "population" in html


async def test_the_stylesheet_is_served_with_the_grade_colours_of_the_maps(client: TestClient) -> None:
    response = await client.get("/static/style.css")
    assert response.status == 200
    css = await response.text()
    colours = [re.search(rf"--grade-{g}: (#[0-9a-fA-F]{{6}});", css) for g in range(1, 6)]
    assert [m.group(1).lower() for m in colours if m] == [c.lower() for c in GRADE_COLOURS]


# ---------------------------------------------------------------------------------------------- command line


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def postmaster_pid(pgdata: Path) -> int | None:
    pidfile = pgdata / "postmaster.pid"
    return int(pidfile.read_text().split()[0]) if pidfile.exists() else None


@pytest.fixture
def demo_dir() -> Iterator[Path]:
    """A data folder for a demo; any PostgreSQL a failed test leaves running there is stopped.

    Not under pytest's temporary root: run as root, pgserver runs PostgreSQL as the user `pgserver`, and
    every pytest session that starts meanwhile resets `pytest-of-root` to mode 0700, cutting the server off.
    """
    folder = Path(tempfile.mkdtemp(prefix="warnings-svc-demo-"))
    yield folder / "data"
    pid = postmaster_pid(folder / "data" / "postgres")
    if pid is not None and process_alive(pid):
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    shutil.rmtree(folder, ignore_errors=True)


def wait_for_line(stream: object, prefix: str, seconds: float) -> str:
    """The first line of `stream` starting with `prefix`, read on a thread so a silent process cannot hang."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        line = lines.get(timeout=seconds)
        if line is None:
            raise AssertionError(f"output ended without a line starting {prefix!r}")
        if line.startswith(prefix):
            return line


@pytest.mark.slow
def test_demo_serves_the_console_then_stops_cleanly_with_postgresql_on_ctrl_c(
    demo_dir: Path, tmp_path: Path
) -> None:
    port = free_port()
    stderr_path = tmp_path / "demo.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [*warnings_svc_command(), "demo", "--data-dir", str(demo_dir), "--port", str(port)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=clean_environment(),
        )
        try:
            line = wait_for_line(proc.stdout, "Console:", DEMO_START_SECONDS)
            assert line.strip() == f"Console: http://127.0.0.1:{port}/console/"
            users = json.loads((demo_dir / "demo-users.json").read_text("utf-8"))
            assert {u["role"] for u in users} == {"forecaster", "approver", "operations", "department"}
            assert (demo_dir / "demo-users.json").stat().st_mode & 0o077 == 0
            chief = next(u for u in users if u["role"] == "approver")
            login = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            login.request(
                "POST",
                "/console/login",
                body=urllib.parse.urlencode({"name": chief["name"], "password": chief["password"]}),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            answer = login.getresponse()
            assert answer.status in (302, 303) and "wsvc_session=" in answer.getheader("Set-Cookie", "")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                assert json.load(r) == {"status": "ok"}
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as r:
                assert r.status == 200
                assert "乌海" in r.read().decode("utf-8")
            pid = postmaster_pid(demo_dir / "postgres")
            assert pid is not None and process_alive(pid)

            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=STOP_SECONDS) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert postmaster_pid(demo_dir / "postgres") is None or not process_alive(pid)
    assert "Traceback" not in stderr_path.read_text("utf-8", errors="replace")


@pytest.mark.parametrize(
    ("text", "named"),
    [("port = 70000\n", "port"), ("prot = 8080\n", "prot"), ("port = [\n", "TOML")],
    ids=["bad port", "unknown key", "malformed"],
)
def test_serve_with_a_bad_config_exits_2_with_one_line_on_stderr(
    tmp_path: Path, text: str, named: str
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    result = subprocess.run(
        [*warnings_svc_command(), "serve", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_environment(),
    )
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("warnings-svc: ")
    assert str(bad) in lines[0] and named in lines[0]


def test_serve_with_an_unreachable_database_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*warnings_svc_command(), "serve"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_environment(DATABASE_URL=f"postgresql://nobody:secret@127.0.0.1:{free_port()}/none"),
    )
    assert result.returncode == 2
    lines = problem_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("warnings-svc: cannot connect to PostgreSQL")
    assert "secret" not in result.stderr


def test_serve_on_a_port_in_use_exits_2_with_one_line(db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*warnings_svc_command(), "serve"],
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_environment(DATABASE_URL=db_url, WARNINGS_SVC_PORT=str(port)),
        )
    assert result.returncode == 2
    assert problem_lines(result.stderr) == [
        f"warnings-svc: cannot listen on 127.0.0.1:{port}: address already in use"
    ]


def test_db_upgrade_names_the_migrations_it_applies_then_says_up_to_date(db_url: str) -> None:
    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*warnings_svc_command(), "db", "upgrade"],
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_environment(DATABASE_URL=db_url),
        )

    first = run()
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == [
        f"{m.component}/{m.version:04d}_{m.name}" for source in MIGRATIONS for m in read_migrations(source)
    ]
    second = run()
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "up to date"
