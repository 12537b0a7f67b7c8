"""The coverage watch survives a lost database: it logs one line when the database goes, keeps its loop, and
snapshots again once the database is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from risk_zoning.io.database import EmbeddedPostgres, create_pool
from tests.factories_dispatch import CTX, issue
from tests.integration.test_database_loss import own_server  # noqa: F401  (the fixture: a server we may stop)
from warnings_svc.coverage.watch import CoverageWatch
from warnings_svc.settings import CoverageSettings, DispatchSettings

BACK_SECONDS = 60  # generous: test sessions share two cores


async def _snapshots(pool, warning_id: int) -> int:
    async with pool.acquire() as conn:
        return await conn.fetchval(
            "SELECT count(*) FROM svc.coverage_snapshot WHERE warning_id = $1", warning_id
        )


@pytest.mark.slow
async def test_the_watch_keeps_running_through_a_lost_database_and_snapshots_again_when_it_is_back(
    own_server: tuple[EmbeddedPostgres, str],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    embedded, url = own_server
    folder = embedded.pgdata.parent
    pool = await create_pool(url, max_size=2)
    async with pool.acquire() as conn:
        warning_id = (await issue(conn, level="red", areas=("150302",))).warning_id
    watch = CoverageWatch(
        pool, CTX, CoverageSettings(snapshot_interval_s=1), DispatchSettings(embedded=False)
    )
    caplog.set_level(logging.INFO, logger="warnings_svc.coverage.watch")
    task = asyncio.create_task(watch.run_forever())
    again: EmbeddedPostgres | None = None
    try:
        deadline = time.monotonic() + BACK_SECONDS
        while await _snapshots(pool, warning_id) == 0:
            assert time.monotonic() < deadline, "no snapshot was stored"
            await asyncio.sleep(0.2)

        await asyncio.to_thread(embedded.stop)
        await asyncio.sleep(3.5)  # three rounds or so without a database
        assert not task.done()
        failures = [r for r in caplog.records if r.getMessage().startswith("coverage snapshot failed")]
        assert len(failures) == 1, [r.getMessage() for r in caplog.records]  # one line per outage
        assert not any(r.exc_info for r in failures)

        again = EmbeddedPostgres(folder)
        assert await asyncio.to_thread(again.start) == url
        before = await _snapshots(pool, warning_id)
        deadline = time.monotonic() + BACK_SECONDS
        while await _snapshots(pool, warning_id) <= before:
            assert time.monotonic() < deadline, "the watch did not snapshot again"
            assert not task.done()
            await asyncio.sleep(0.2)
        deadline = time.monotonic() + BACK_SECONDS
        while not any(r.getMessage() == "coverage snapshots work again" for r in caplog.records):
            assert time.monotonic() < deadline, "the watch never said the database was back"
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pool.close()
        if again is not None:
            await asyncio.to_thread(again.stop)
