"""Shared fixtures: one embedded PostgreSQL for the session, a fresh database per test that asks for one."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from risk_zoning.io.database import EmbeddedPostgres
from tests.factories_db import fresh_database
from tests.peers.mosquitto_fixture import mosquitto  # noqa: F401  (a real MQTT broker, for every test)
from tests.peers.smsc_fixture import smsc  # noqa: F401  (the loopback SMSC fixture, for every test)
from tests.peers.smtp_fixture import smtp_server  # noqa: F401  (a real SMTP server, aiosmtpd)


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
    async with fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture(scope="module")
async def built_url(pg_server_url: str) -> AsyncIterator[str]:
    """A database with every migration applied and the Wuhai risk database built, shared by one module."""
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a fresh database."""
    c = await asyncpg.connect(db_url)
    yield c
    await c.close()
