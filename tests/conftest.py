"""Shared fixtures: one embedded PostgreSQL for the session, a fresh database per test that asks for one."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from risk_zoning.db import EmbeddedPostgres


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of the maintenance database of a real PostgreSQL started from the pgserver wheel.

    Its data lives outside pytest's tmp tree: as root, pgserver runs PostgreSQL as another user, and a
    second pytest session resets that tree to mode 0700, which would cut the running server off its data.
    """
    folder = Path(tempfile.mkdtemp(prefix="warnings-test-pg-"))
    embedded = EmbeddedPostgres(folder)
    url = embedded.start()
    yield url
    embedded.stop()
    shutil.rmtree(folder, ignore_errors=True)


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
