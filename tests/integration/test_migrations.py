"""Numbered migrations against a real PostgreSQL."""

import asyncpg
import pytest

from risk_zoning.db import RISK_MIGRATIONS, DatabaseError, read_migrations, upgrade
from warnings_svc.app import SERVICE_MIGRATIONS


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


async def test_receipts_move_onto_their_parts_when_the_outbox_is_upgraded(conn: asyncpg.Connection) -> None:
    """Service migration 7 folds svc.receipt into svc.delivery_part: a receipt lands on its part's row, or
    becomes a row of its own (no delivery known yet) when its part was not mapped."""
    await upgrade(conn, [RISK_MIGRATIONS])
    service = read_migrations(SERVICE_MIGRATIONS)
    assert service[6].name == "outbox_lighter_writes"
    for m in service[:6]:
        await conn.execute(m.sql)
    await conn.execute("SET session_replication_role = replica")  # parts of deliveries not written here
    await conn.execute(
        """INSERT INTO svc.delivery_part (endpoint, remote_id, delivery_id)
           VALUES ('smsc', 'a', 1), ('smsc', 'b', 1), ('other', 'a', 2)"""
    )
    await conn.execute(
        """INSERT INTO svc.receipt (endpoint, remote_id, state, raw_state, error_code)
           VALUES ('smsc', 'a', 'delivered', 'DELIVRD', '000'), ('smsc', 'c', 'failed', 'UNDELIV', '001')"""
    )
    await conn.execute("RESET session_replication_role")
    await conn.execute(service[6].sql)
    rows = await conn.fetch(
        "SELECT endpoint, remote_id, delivery_id, state, raw_state FROM svc.delivery_part ORDER BY 1, 2"
    )
    assert [tuple(r) for r in rows] == [
        ("other", "a", 2, None, ""),
        ("smsc", "a", 1, "delivered", "DELIVRD"),
        ("smsc", "b", 1, None, ""),
        ("smsc", "c", None, "failed", "UNDELIV"),
    ]
    assert await conn.fetchval("SELECT to_regclass('svc.receipt')") is None
