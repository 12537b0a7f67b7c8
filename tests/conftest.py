"""Shared fixtures: one embedded PostgreSQL for the session, a fresh database per test that asks for one."""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from risk_zoning.io.database import EmbeddedPostgres
from tests.factories_db import fresh_database
from tests.peers.mosquitto_fixture import mosquitto  # noqa: F401  (a real MQTT broker, for every test)
from tests.peers.smsc_fixture import smsc  # noqa: F401  (the loopback SMSC fixture, for every test)
from tests.peers.smtp_fixture import smtp_server  # noqa: F401  (a real SMTP server, aiosmtpd)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each of schemathesis' generated tests an id of its own. Under pytest 9 its items are named by
    operation (``test_x[GET /healthz]``) but all keep the test function's node id: a failure did not say which
    operation failed, and pytest-xdist, which tells items apart by node id, ran one of them and dropped the
    rest. Should pytest's node ids change shape again, collection stops here rather than lose tests."""
    counts = Counter(item.nodeid for item in items)
    for item in items:
        if (
            counts[item.nodeid] > 1
            and item.parent is not None
            and item.name != item.nodeid.rpartition("::")[2]
        ):
            item._id = item.parent.id.child(item.name)  # type: ignore[attr-defined]
    repeated = [nodeid for nodeid, n in Counter(item.nodeid for item in items).items() if n > 1]
    if repeated:
        raise pytest.UsageError(f"{len(repeated)} test ids are not unique, e.g. {repeated[0]}")


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
