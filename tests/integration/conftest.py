"""Fixtures shared by the integration tests; a module that needs another database (a module-wide one, one
emptied per test) defines its own `db_url` or `conn`, which take precedence."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.factories_db import fresh_database


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh database for one test: migrated, with the Wuhai risk database built."""
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(db_url)
    try:
        yield c
    finally:
        await c.close()
