"""The region's current risk database held in memory, and the rendered risk maps cached per version."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from functools import partial

import asyncpg

from risk_zoning.errors import DatabaseError
from risk_zoning.plot import render_risk_map
from risk_zoning.store import RiskDatabase, current_version, load_current
from warnings_svc.database import DATABASE_UNREACHABLE
from warnings_svc.web.metrics import ServiceMetrics

log = logging.getLogger(__name__)

RISK_WATCH_SECONDS = 30.0  # how often the current risk database version is checked in the background
MAP_CACHE_VERSIONS = 2  # rendered maps are kept for this many risk database versions


class CurrentRiskDatabase:
    """The region's current risk database in memory, reloaded only when the current version changes."""

    def __init__(self, pool: asyncpg.Pool, region: str, metrics: ServiceMetrics) -> None:
        self._pool = pool
        self._region = region
        self._metrics = metrics
        self._db: RiskDatabase | None = None
        self._reload = asyncio.Lock()

    def held(self) -> RiskDatabase | None:
        """The version in memory, without asking the database whether it is still current (None before the
        first load): for writers that check the version id themselves (`lifecycle.store.region_units_of`)."""
        return self._db

    async def get(self) -> RiskDatabase:
        """The current version; `DatabaseError` when the region has none."""
        async with self._pool.acquire() as conn:
            version = await current_version(conn, self._region)
        if self._db is not None and self._db.version_id == version:
            return self._db
        async with self._reload:  # one load at a time, however many requests arrive together
            if self._db is None or self._db.version_id != version:
                async with self._pool.acquire() as conn:
                    db = await load_current(conn, self._region)
                self._metrics.observe_risk_database(self._region, db.version_id, db.created_at.timestamp())
                log.info("risk database loaded", extra={"region": self._region, "version_id": db.version_id})
                self._db = db
            return self._db


class RiskMapCache:
    """PNG risk maps per (version, hazard, language), rendered once each, off the event loop."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._renders: dict[tuple[int, str, str], asyncio.Future[bytes]] = {}

    async def get(self, db: RiskDatabase, hazard: str, lang: str) -> bytes:
        key = (db.version_id, hazard, lang)
        render = self._renders.get(key)
        if render is None:
            self._forget_old_versions(db.version_id)
            loop = asyncio.get_running_loop()
            render = loop.run_in_executor(self.executor, partial(render_risk_map, db, hazard, lang=lang))
            self._renders[key] = render
        try:
            # Shielded: a client that goes away must not cancel a render that others are waiting for.
            return await asyncio.shield(render)
        except Exception:
            if self._renders.get(key) is render:
                del self._renders[key]  # failures are not cached; the next request tries again
            raise

    def _forget_old_versions(self, newest: int) -> None:
        keep = sorted({k[0] for k in self._renders} | {newest})[-MAP_CACHE_VERSIONS:]
        for key in [k for k in self._renders if k[0] not in keep]:
            del self._renders[key]


async def watch_risk_database(current: CurrentRiskDatabase) -> None:
    """Keep the loaded version (and its gauges) current, so a rebuild shows without a restart.

    A database that cannot be reached is logged once when the checks start failing and once when they work
    again (not a traceback every check); anything else unexpected keeps its traceback."""
    unreachable = False
    while True:
        try:
            await current.get()
            if unreachable:
                log.info("checking the risk database works again")
            unreachable = False
        except DatabaseError as e:
            log.debug("no risk database yet", extra={"reason": str(e)})
        except DATABASE_UNREACHABLE as e:
            if not unreachable:
                log.warning("checking the risk database failed: %s; retrying", " ".join(str(e).split()))
            unreachable = True
        except Exception:  # the loop's boundary: record and carry on
            log.exception("checking the risk database failed")
        await asyncio.sleep(RISK_WATCH_SECONDS)
