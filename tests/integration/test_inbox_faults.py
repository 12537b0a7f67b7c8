"""Disk faults at the inbox (issue 16): a run that cannot be moved to archive/ or quarantine/ is scored once,
reported once, left alone, shown by /readyz and the metrics, and forgotten once the fault is gone. The service
runs on the embedded PostgreSQL; the fault is put in at the inbox's file-system seam (see factories_disks)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from risk_zoning.io.database import create_pool
from risk_zoning.region import load_region
from tests.factories_disks import FullFolder, ReadOnlyFolder
from warnings_svc.demo.scenarios import write_scenario
from warnings_svc.forecast.ingest import Disk
from warnings_svc.settings import ScoringSettings, Settings
from warnings_svc.web.app import create_app
from warnings_svc.web.appkeys import INBOX_DISK

POLL_SECONDS = 0.2


@pytest.fixture(scope="module")
def quiet_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One file of a run that scores (and proposes nothing)."""
    return write_scenario("quiet", tmp_path_factory.mktemp("quiet"), load_region("wuhai"))[0]


@contextlib.asynccontextmanager
async def serving(built_url: str, root: Path, disk: Disk) -> AsyncIterator[TestClient]:
    """The service scoring its inbox under `root`, its moves done by `disk`."""
    pool = await create_pool(built_url, max_size=4)
    settings = Settings(
        database_url=built_url, data_dir=root, scoring=ScoringSettings(inbox_poll_seconds=POLL_SECONDS)
    )
    app = create_app(settings, pool, database_url=built_url)
    app[INBOX_DISK] = disk
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await pool.close()


async def until(condition: Callable[[], bool], seconds: float = 90.0) -> None:
    for _ in range(int(seconds / 0.1)):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the condition did not come true in time")


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


async def readiness(client: TestClient) -> tuple[int, dict]:
    resp = await client.get("/readyz")
    return resp.status, await resp.json()


async def metric(client: TestClient, line_start: str) -> float:
    text = await (await client.get("/metrics")).text()
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(line_start + " ")]
    return values[0] if values else 0.0


async def test_a_run_in_a_read_only_inbox_is_scored_once_reported_once_and_archived_once_writable(
    built_url: str, tmp_path: Path, quiet_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="warnings_svc.forecast")
    disk = ReadOnlyFolder(tmp_path / "inbox")
    async with serving(built_url, tmp_path, disk) as client:
        entry = tmp_path / "inbox" / quiet_run.name
        entry.write_bytes(quiet_run.read_bytes())
        await until(lambda: bool(messages(caplog, "left where it is")))
        await asyncio.sleep(20 * POLL_SECONDS)  # many more polls while the fault stands

        assert len(messages(caplog, "forecast run scored")) == 1
        assert messages(caplog, "left where it is") == [
            f"inbox entry left where it is until it changes: cannot move {quiet_run.name} to archive/: "
            "Read-only file system"
        ]
        assert entry.exists() and not any((tmp_path / "archive").iterdir())
        status, body = await readiness(client)
        assert status == 200 and body["status"] == "degraded"
        assert body["failed"] == [] and body["degraded"] == ["inbox"]
        assert body["checks"]["inbox"]["detail"] == (
            f"cannot move {quiet_run.name} to archive/: Read-only file system"
        )
        assert await metric(client, "warnings_inbox_faults") == 1.0
        assert await metric(client, 'warnings_inbox_move_failures_total{destination="archive"}') == 1.0

        disk.heal()  # the inbox is writable again: the move alone is retried, the run is not scored again
        await until(lambda: not entry.exists())
        assert len(list((tmp_path / "archive").iterdir())) == 1
        status, body = await readiness(client)
        assert status == 200 and body["checks"]["inbox"]["ok"] is True
        assert await metric(client, "warnings_inbox_faults") == 0.0
        assert len(messages(caplog, "forecast run scored")) == 1
        assert len(messages(caplog, "left where it is")) == 1


async def test_a_full_quarantine_keeps_no_partial_copy_and_no_file_without_its_reason(
    built_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="warnings_svc.forecast")
    quarantine = tmp_path / "quarantine"
    disk = FullFolder(quarantine, free_bytes=4096)  # room for a reason, not for the file
    async with serving(built_url, tmp_path, disk) as client:
        entry = tmp_path / "inbox" / "broken.nc"
        entry.write_text("not netcdf " * 2000)
        await until(lambda: bool(messages(caplog, "left where it is")))
        await asyncio.sleep(20 * POLL_SECONDS)

        assert not any(quarantine.iterdir()), sorted(p.name for p in quarantine.iterdir())
        assert entry.exists() and entry.stat().st_size == len("not netcdf " * 2000)
        assert len(messages(caplog, "left where it is")) == 1
        status, body = await readiness(client)
        assert (
            status == 200
            and body["degraded"] == ["inbox"]
            and body["checks"]["inbox"]["detail"]
            == ("cannot move broken.nc to quarantine/: No space left on device")
        )
        assert await metric(client, 'warnings_inbox_move_failures_total{destination="quarantine"}') == 1.0

        entry.unlink()  # the operator takes the file away: the fault is gone with it
        await until(lambda: bool(messages(caplog, "is gone")))
        status, body = await readiness(client)
        assert status == 200 and body["checks"]["inbox"] == {"ok": True, "detail": "every entry can be moved"}
        assert await metric(client, "warnings_inbox_faults") == 0.0


async def test_a_quarantine_with_space_again_takes_the_file_with_its_reason(
    built_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="warnings_svc.forecast")
    quarantine = tmp_path / "quarantine"
    disk = FullFolder(quarantine, free_bytes=0)  # not even the reason fits
    async with serving(built_url, tmp_path, disk) as client:
        entry = tmp_path / "inbox" / "broken.nc"
        entry.write_text("not netcdf")
        await until(lambda: bool(messages(caplog, "left where it is")))
        assert not any(quarantine.iterdir())

        disk.heal()
        await until(lambda: not entry.exists())
        files = sorted(p.name for p in quarantine.iterdir())
        assert len(files) == 2 and files[1] == files[0] + ".reason"
        assert "broken.nc" in (quarantine / files[1]).read_text()
        assert (quarantine / files[0]).read_text() == "not netcdf"
        status, _ = await readiness(client)
        assert status == 200
