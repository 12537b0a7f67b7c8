"""Databases for tests on the shared embedded PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg


@asynccontextmanager
async def fresh_database(server_url: str, *, built: bool = False) -> AsyncIterator[str]:
    """URL of a new database on the test server, dropped afterwards; with `built`, every migration is
    applied and the Wuhai risk database is built in it."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = server_url.replace("/warnings?", f"/{name}?")
    if built:
        from risk_zoning.io.database import upgrade
        from risk_zoning.store import ensure_built
        from warnings_svc.database import MIGRATIONS

        conn = await asyncpg.connect(url)
        try:
            await upgrade(conn, MIGRATIONS)
            await ensure_built(conn, "wuhai", progress=False)
        finally:
            await conn.close()
    try:
        yield url
    finally:
        admin = await asyncpg.connect(server_url)
        try:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await admin.close()
