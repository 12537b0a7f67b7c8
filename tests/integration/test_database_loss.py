"""A lost database is survived: the embedded PostgreSQL killed under a running demo is restarted by the service
(and when it cannot be, the service exits non-zero with one line); an external database that goes away and
returns is reconnected to without restarting the service."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from risk_zoning.io.database import EmbeddedPostgres, upgrade
from risk_zoning.store import ensure_built
from tests.factories_app import heat_draft, service, user_tokens
from tests.integration.test_process_lifetimes import (  # the real demo and its helpers
    Demo,
    data_dir,  # noqa: F401  (the fixture)
    pid_alive,
    postmaster_pid,
    wait_until,
)
from warnings_svc.database import MIGRATIONS

BACK_SECONDS = 60  # generous: four test sessions share two cores
GIVE_UP_SECONDS = 120  # the watch tries for about 30 s, then the service stops
BACK_LINE = "database back: the embedded PostgreSQL was restarted"
DRAFT = heat_draft()  # an orange heat warning for Haibowan, from two hours from now for a day


def stderr_text(path: Path) -> str:
    return path.read_text("utf-8", errors="replace")


def status_of(url: str, token: str | None = None, body: dict | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def embedded_url(pgdata: Path) -> str:
    """The URL of the embedded server, from its postmaster.pid (line 5 is the socket's folder)."""
    socket_dir = (pgdata / "postmaster.pid").read_text().splitlines()[4]
    return f"postgresql://postgres@/warnings?host={socket_dir}"


@pytest.mark.slow
def test_a_killed_embedded_postgresql_is_restarted_with_nothing_lost_and_when_it_cannot_be_the_service_exits(
    data_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    pgdata = data_dir / "postgres"
    stderr_path = tmp_path / "demo.stderr"
    with stderr_path.open("wb") as stderr:
        demo = Demo(data_dir, stderr)
        try:
            demo.wait_ready()
            base = f"http://127.0.0.1:{demo.port}"
            token = asyncio.run(user_tokens(embedded_url(pgdata), [("loss-forecaster", "forecaster")]))
            status, body = status_of(f"{base}/api/v1/warnings", token["loss-forecaster"], DRAFT)
            assert status == 201, body
            warning_id = json.loads(body)["id"]

            killed = postmaster_pid(pgdata)
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
            ready_seen: list[int] = []
            health_seen: set[int] = set()

            def ready_again() -> bool:
                ready_seen.append(status_of(f"{base}/readyz")[0])
                health_seen.add(status_of(f"{base}/healthz")[0])
                return ready_seen[-1] == 200 and 503 in ready_seen

            assert wait_until(ready_again, BACK_SECONDS), ready_seen[-5:]
            assert health_seen == {200}  # a database being restarted is no reason to restart the service
            assert postmaster_pid(pgdata) not in (None, killed)
            status, body = status_of(f"{base}/api/v1/warnings/{warning_id}", token["loss-forecaster"])
            assert status == 200 and json.loads(body)["id"] == warning_id
            readiness = json.loads(status_of(f"{base}/readyz")[1])
            assert readiness["checks"]["embedded_database"]["ok"] is True
            metrics = status_of(f"{base}/metrics")[1].decode()
            assert 'warnings_database_recoveries_total{how="restarted"} 1.0' in metrics
            assert "warnings_database_up 1.0" in metrics

            # Now make a restart impossible: PostgreSQL refuses a folder of another major version.
            killed = postmaster_pid(pgdata)
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
            (pgdata / "PG_VERSION").write_text("7\n")
            assert demo.proc.wait(timeout=GIVE_UP_SECONDS) != 0
        finally:
            demo.end()
    lines = stderr_text(stderr_path).splitlines()
    reason = "warnings-svc: the embedded PostgreSQL stopped and could not be restarted"
    assert lines[-1].startswith(reason) and "database files are incompatible" in lines[-1]
    assert "(1 attempt over" in lines[-1]  # no later attempt could start it: given up at the first
    assert sum(line.startswith(reason) for line in lines) == 1
    assert not any("Traceback" in line for line in lines)
    assert not pid_alive(killed)
    assert wait_until(
        lambda: postmaster_pid(pgdata) is None or not pid_alive(postmaster_pid(pgdata) or 0), 10
    )


@pytest.mark.slow
def test_with_several_web_workers_the_parent_restarts_a_killed_embedded_postgresql(
    data_dir: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The parent owns the embedded server when web workers share the port: it restarts it, and the workers'
    pools reconnect."""
    pgdata = data_dir / "postgres"
    with (tmp_path / "demo.stderr").open("wb") as stderr:
        demo = Demo(data_dir, stderr, "--workers", "2")
        try:
            demo.wait_ready()
            base = f"http://127.0.0.1:{demo.port}"
            killed = postmaster_pid(pgdata)
            assert killed is not None
            os.kill(killed, signal.SIGKILL)
            seen: list[int] = []

            def ready_again() -> bool:
                seen.append(status_of(f"{base}/readyz")[0])
                return seen[-1] == 200 and postmaster_pid(pgdata) not in (None, killed)

            assert wait_until(ready_again, BACK_SECONDS), seen[-5:]
            assert all(status_of(f"{base}/readyz")[0] == 200 for _ in range(6))  # both workers
            assert demo.proc.poll() is None
            # The workers' pools may reconnect before the parent has finished restarting the server and
            # said so: wait for its line rather than stopping it half-way.
            assert wait_until(lambda: BACK_LINE in stderr_text(tmp_path / "demo.stderr"), 10)
        finally:
            demo.end()


@pytest.fixture
async def own_server() -> AsyncIterator[tuple[EmbeddedPostgres, str]]:
    """A PostgreSQL this test may stop and start again, and the URL of a ready database on it (migrated, the
    Wuhai risk database built).

    Outside pytest's tmp tree, for the reason given in conftest's `pg_server_url`."""
    folder = Path(tempfile.mkdtemp(prefix="warnings-test-external-"))
    embedded = EmbeddedPostgres(folder)
    url = await asyncio.to_thread(embedded.start)
    conn = await asyncpg.connect(url)
    try:
        await upgrade(conn, MIGRATIONS)
        await ensure_built(conn, "wuhai", progress=False)
    finally:
        await conn.close()
    yield embedded, url
    await asyncio.to_thread(embedded.stop)  # when the test has not stopped it already
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.slow
async def test_an_external_database_that_stops_and_returns_is_reconnected_without_restarting_the_service(
    own_server: tuple[EmbeddedPostgres, str], tmp_path: Path
) -> None:
    embedded, url = own_server
    folder = embedded.pgdata.parent
    async with service(url, tmp_path) as client:
        assert (await client.get("/readyz")).status == 200
        assert (await client.get("/api/v1/alerts/active")).status == 200

        await asyncio.to_thread(embedded.stop)  # the last handle: pg_ctl stop
        assert postmaster_pid(folder / "postgres") is None
        assert (await client.get("/api/v1/alerts/active")).status == 503
        response = await client.get("/readyz")
        assert response.status == 503
        assert (await response.json())["checks"]["database"]["ok"] is False
        assert (await client.get("/healthz")).status == 200
        deadline = time.monotonic() + BACK_SECONDS
        while "warnings_database_up 0.0" not in await (await client.get("/metrics")).text():
            assert time.monotonic() < deadline, "the watch never saw the database go"
            await asyncio.sleep(0.2)

        again = EmbeddedPostgres(folder)
        assert await asyncio.to_thread(again.start) == url  # the same socket: the same URL
        try:
            deadline = time.monotonic() + BACK_SECONDS
            while (await client.get("/readyz")).status != 200:
                assert time.monotonic() < deadline, "the service did not reconnect"
                await asyncio.sleep(0.2)
            assert (await client.get("/api/v1/alerts/active")).status == 200
            assert (await client.get("/healthz")).status == 200
            deadline = time.monotonic() + BACK_SECONDS
            while 'warnings_database_recoveries_total{how="reconnected"} 1.0' not in (
                metrics := await (await client.get("/metrics")).text()
            ):
                assert time.monotonic() < deadline, "the watch never saw the database return"
                await asyncio.sleep(0.2)
            assert "warnings_database_up 1.0" in metrics
        finally:
            await asyncio.to_thread(again.stop)
