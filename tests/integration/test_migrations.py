"""Numbered migrations against a real PostgreSQL."""

import asyncpg
import pytest

from risk_zoning.db import RISK_MIGRATIONS, DatabaseError, read_migrations, upgrade


async def test_upgrade_applies_the_risk_schema_once_and_is_idempotent(conn: asyncpg.Connection) -> None:
    first = await upgrade(conn, [RISK_MIGRATIONS])
    assert first == [f"risk/{m.version:04d}_{m.name}" for m in read_migrations(RISK_MIGRATIONS)]
    assert await conn.fetchval("SELECT to_regclass('risk.layer') IS NOT NULL")
    assert await upgrade(conn, [RISK_MIGRATIONS]) == []


async def test_upgrade_refuses_when_an_applied_migration_was_edited(conn: asyncpg.Connection) -> None:
    await upgrade(conn, [RISK_MIGRATIONS])
    await conn.execute(
        "UPDATE public.schema_migrations SET checksum = 'x' WHERE component = 'risk' AND version = 1"
    )
    with pytest.raises(DatabaseError, match="edited after it was applied"):
        await upgrade(conn, [RISK_MIGRATIONS])
