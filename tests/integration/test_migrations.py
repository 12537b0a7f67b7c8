"""Numbered migrations against a real PostgreSQL."""

import asyncpg
import pytest

from risk_zoning.io.database import RISK_MIGRATIONS, DatabaseError, read_migrations, upgrade
from warnings_svc.database import SERVICE_MIGRATIONS
from warnings_svc.dissemination import outbox
from warnings_svc.lifecycle import store


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


async def schema_before_service_migration(conn: asyncpg.Connection, number: int, name: str) -> str:
    """Apply the risk migrations and the service migrations before `number`; the SQL of `number` (named `name`)."""
    await upgrade(conn, [RISK_MIGRATIONS])
    service = read_migrations(SERVICE_MIGRATIONS)
    assert (service[number - 1].version, service[number - 1].name) == (number, name)
    for m in service[: number - 1]:
        await conn.execute(m.sql)
    return service[number - 1].sql


async def test_receipts_move_onto_their_parts_when_the_outbox_is_upgraded(conn: asyncpg.Connection) -> None:
    """Service migration 7 folds svc.receipt into svc.delivery_part: a receipt lands on its part's row, or
    becomes a row of its own (no delivery known yet) when its part was not mapped."""
    sql = await schema_before_service_migration(conn, 7, "outbox_lighter_writes")
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
    await conn.execute(sql)
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


async def test_leases_become_rows_of_their_own_when_the_outbox_is_upgraded(conn: asyncpg.Connection) -> None:
    """Service migration 8: a batch being sent keeps its lease (now a row naming its deliveries, which the
    reaper still honours), ready deliveries stay queued, and the parts already mapped stay findable by their
    delivery for settling."""
    sql = await schema_before_service_migration(conn, 8, "outbox_updates_in_place")
    await conn.execute("SET session_replication_role = replica")  # recipients not written here
    await conn.execute(
        """INSERT INTO svc.delivery (id, fanout_id, warning_id, version, channel, recipient_id, address,
                                     language, areas, priority, state, lease_owner, lease_until)
           VALUES (1, 1, 1, 1, 'sms', 1, '+8613900000001', 'zh', '{}', 1, 'pending', NULL, NULL),
                  (2, 1, 1, 1, 'sms', 2, '+8613900000002', 'zh', '{}', 1, 'sending', 'w#1', now() - interval '1 s'),
                  (3, 1, 1, 1, 'sms', 3, '+8613900000003', 'zh', '{}', 1, 'sending', 'w#1', now() - interval '1 s'),
                  (4, 1, 1, 1, 'sms', 4, '+8613900000004', 'zh', '{}', 1, 'sent', NULL, NULL)"""
    )
    await conn.execute(
        "INSERT INTO svc.delivery_part (endpoint, remote_id, delivery_id) VALUES ('smsc', 'a', 4)"
    )
    await conn.execute("RESET session_replication_role")
    await conn.execute(sql)

    queued = await conn.fetch("SELECT id, queued FROM svc.delivery ORDER BY id")
    assert [tuple(r) for r in queued] == [(1, True), (2, False), (3, False), (4, False)]
    assert [tuple(r) for r in await conn.fetch("SELECT lease, ids FROM svc.delivery_lease")] == [
        ("w#1", [2, 3])
    ]
    assert await conn.fetchval("SELECT unsettled FROM svc.delivery_part WHERE remote_id = 'a'") is True
    assert await outbox.reclaim_expired_leases(conn) == 2
    states = await conn.fetch("SELECT id, state, queued, lease_owner FROM svc.delivery WHERE id IN (2, 3)")
    assert {tuple(r) for r in states} == {(2, "pending", True, None), (3, "pending", True, None)}
    assert await conn.fetchval("SELECT count(*) FROM svc.delivery_lease") == 0


async def test_settled_deliveries_say_when_their_last_part_arrived_when_the_outbox_is_upgraded(
    conn: asyncpg.Connection,
) -> None:
    """Service migration 9: a delivery settled before it learns when its last part reached the handset (the
    latest done date of its parts' receipts); one still waiting does not; every part reads from svc.sent_part."""
    sql = await schema_before_service_migration(conn, 9, "settled_parts_in_row")
    await conn.execute("SET session_replication_role = replica")  # recipients not written here
    await conn.execute(
        """INSERT INTO svc.delivery (id, fanout_id, warning_id, version, channel, recipient_id, address,
                                     language, areas, priority, state, queued, endpoint, segments)
           VALUES (1, 1, 1, 1, 'sms', 1, '+8613900000001', 'zh', '{}', 1, 'delivered', false, 'smsc', 2),
                  (2, 1, 1, 1, 'sms', 2, '+8613900000002', 'zh', '{}', 1, 'sent', false, 'smsc', 2)"""
    )
    await conn.execute(
        """INSERT INTO svc.delivery_part (endpoint, remote_id, delivery_id, state, done_at, unsettled)
           VALUES ('smsc', 'a', 1, 'delivered', '2026-11-24 06:01+00', false),
                  ('smsc', 'b', 1, 'delivered', '2026-11-24 06:02+00', false),
                  ('smsc', 'c', 2, 'en_route', '2026-11-24 06:01+00', true),
                  ('smsc', 'd', 2, NULL, NULL, true)"""
    )
    await conn.execute("RESET session_replication_role")
    await conn.execute(sql)

    done = await conn.fetch(
        "SELECT id, to_char(done_at AT TIME ZONE 'UTC', 'HH24:MI') FROM svc.delivery ORDER BY id"
    )
    assert [tuple(r) for r in done] == [(1, "06:02"), (2, None)]
    parts = await conn.fetch("SELECT remote_id, delivery_id, state FROM svc.sent_part ORDER BY remote_id")
    assert [tuple(r) for r in parts] == [
        ("a", 1, "delivered"),
        ("b", 1, "delivered"),
        ("c", 2, "en_route"),
        ("d", 2, None),
    ]
    await conn.execute("UPDATE svc.delivery SET remote_ids = '{x,y}' WHERE id = 2")
    parts = await conn.fetch(
        "SELECT remote_id, delivery_id FROM svc.sent_part WHERE remote_id > 'd' ORDER BY 1"
    )
    assert [tuple(r) for r in parts] == [("x", 2), ("y", 2)]


async def test_drafts_with_times_out_of_range_become_readable_when_upgraded(conn: asyncpg.Connection) -> None:
    """Service migration 11 brings the -infinity/infinity (or year 1 / year 9999) times that unchecked requests
    once stored back to when the draft was written, and says so in its note; issued versions are left alone."""
    sql = await schema_before_service_migration(conn, 11, "finite_warning_times")
    written = "2026-06-01 08:00:00+00"
    for warning_id, onset, expires in (
        (1, "-infinity", "2026-06-02 08:00:00+00"),
        (2, "2026-06-01 09:00:00+00", "infinity"),
        (3, "0001-01-01 00:00:00+00", "9999-12-31 23:59:59+00"),
        (4, "2026-06-01 09:00:00+00", "2026-06-01 21:00:00+00"),
    ):
        await conn.execute(
            """INSERT INTO svc.warning (id, hazard, level, areas, onset, expires, status, created_at)
               VALUES ($1, 'heat', 'yellow', '{150302}', $2::text::timestamptz, $3::text::timestamptz, 'draft', $4::text::timestamptz)""",
            warning_id,
            onset,
            expires,
            written,
        )
        await conn.execute(
            """INSERT INTO svc.warning_version (warning_id, version, msg_type, status, hazard, level, areas, onset,
                   expires, created_by, last_edited_by, editors, created_at)
               VALUES ($1, 1, 'Alert', 'draft', 'heat', 'yellow', '{150302}', $2::text::timestamptz,
                       $3::text::timestamptz, 'li', 'li', '{li}', $4::text::timestamptz)""",
            warning_id,
            onset,
            expires,
            written,
        )
    async with conn.transaction():
        await conn.execute(sql)
    await conn.execute("SET TIME ZONE 'UTC'")
    rows = await conn.fetch(
        """SELECT v.warning_id, v.onset::text, v.expires::text, v.note, w.onset::text AS face_onset
           FROM svc.warning_version v JOIN svc.warning w ON w.id = v.warning_id ORDER BY 1"""
    )
    assert [(r["warning_id"], r["onset"], r["expires"]) for r in rows] == [
        (1, "2026-06-01 08:00:00+00", "2026-06-02 08:00:00+00"),
        (2, "2026-06-01 09:00:00+00", "2026-06-02 09:00:00+00"),
        (3, "2026-06-01 08:00:00+00", "2026-06-02 08:00:00+00"),
        (4, "2026-06-01 09:00:00+00", "2026-06-01 21:00:00+00"),
    ]
    assert all(r["face_onset"] == r["onset"] for r in rows)
    assert ["Times repaired" in r["note"] for r in rows] == [True, True, True, False]
    assert "onset was -infinity" in rows[0]["note"]
    versions = await store.versions(conn, 1)  # readable again
    assert versions[0].to_json()["onset"].startswith("2026-06-01T08:00")
