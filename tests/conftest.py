"""Shared fixtures: one embedded PostgreSQL for the session, a fresh database per test that asks for one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from risk_zoning.db import EmbeddedPostgres


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the maintenance database of a real PostgreSQL started from the pgserver wheel."""
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("pg"))
    url = embedded.start()
    yield url
    embedded.stop()


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    """URL of a new, empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    yield pg_server_url.replace("/warnings?", f"/{name}?")
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a fresh database."""
    c = await asyncpg.connect(db_url)
    yield c
    await c.close()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return Path(__file__).resolve().parent
