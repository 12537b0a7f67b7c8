"""The current region as the console draws it, cached per risk database version."""

from __future__ import annotations

import asyncio

import asyncpg

from risk_zoning.errors import DatabaseError
from risk_zoning.store import current_version, load_version
from warnings_svc.web.console.map import RegionView


class RegionViews:
    """The current `RegionView`, rebuilt only when the region's risk database version changes."""

    def __init__(self, region: str) -> None:
        self._region = region
        self._view: RegionView | None = None
        self._lock = asyncio.Lock()

    async def get(self, conn: asyncpg.Connection) -> RegionView:
        version = await current_version(conn, self._region)
        if version is None:
            raise DatabaseError(f"no risk database for region {self._region!r}: run `risk-zoning build`")
        if self._view is not None and self._view.version_id == version:
            return self._view
        async with self._lock:
            if self._view is None or self._view.version_id != version:
                db = await load_version(conn, version, arrays=False)
                self._view = await asyncio.get_running_loop().run_in_executor(
                    None, RegionView.build, version, db.units
                )
            return self._view
