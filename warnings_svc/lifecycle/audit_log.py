"""The audit log in the database (`svc.audit_log`): append inside the caller's transaction, read, verify.

The chain itself (hashing, verification) is `warnings_svc.lifecycle.audit`; this module only stores it.
Appends are serialised by a transaction-level advisory lock, so concurrent actions on different warnings still
form one unbroken chain, and an action that rolls back leaves no entry behind.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import asyncpg

from warnings_svc.lifecycle.audit import AuditEntry, VerifyResult, chain, verify

AUDIT_LOCK = 0x5741524E_41554454  # "WARNAUDT": one chain, one writer at a time
_FETCH_BATCH = 1000


async def append(
    conn: asyncpg.Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
    key: bytes | None = None,
) -> AuditEntry:
    """Append one entry; call inside the transaction that makes the change it records."""
    if not conn.is_in_transaction():
        raise RuntimeError("audit entries are appended inside the transaction of the change they record")
    await conn.execute("SELECT pg_advisory_xact_lock($1)", AUDIT_LOCK)
    row = await conn.fetchrow("SELECT * FROM svc.audit_log ORDER BY seq DESC LIMIT 1")
    entry = chain(
        None if row is None else _entry(row),
        at=at,
        actor=actor,
        action=action,
        subject=subject,
        before=before,
        after=after,
        key=key,
    )
    await conn.execute(
        """INSERT INTO svc.audit_log (seq, at, actor, action, subject, before, after, prev_hash, hash)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8, $9)""",
        entry.seq,
        entry.at,
        entry.actor,
        entry.action,
        entry.subject,
        _json(entry.before),
        _json(entry.after),
        entry.prev_hash,
        entry.hash,
    )
    return entry


async def entries(conn: asyncpg.Connection, *, subject: str | None = None) -> AsyncIterator[AuditEntry]:
    """Every entry (or a subject's), oldest first, fetched in batches."""
    last = 0
    while True:
        rows = await conn.fetch(
            """SELECT * FROM svc.audit_log WHERE seq > $1 AND ($2::text IS NULL OR subject = $2)
               ORDER BY seq LIMIT $3""",
            last,
            subject,
            _FETCH_BATCH,
        )
        for row in rows:
            yield _entry(row)
        if len(rows) < _FETCH_BATCH:
            return
        last = rows[-1]["seq"]


async def verify_log(
    conn: asyncpg.Connection, key: bytes | None = None, *, head: str | None = None
) -> VerifyResult:
    """`audit.verify` over the whole stored log."""
    collected = [e async for e in entries(conn)]
    return verify(collected, key, head=head)


def _entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        seq=row["seq"],
        at=row["at"],
        actor=row["actor"],
        action=row["action"],
        subject=row["subject"],
        before=None if row["before"] is None else json.loads(row["before"]),
        after=None if row["after"] is None else json.loads(row["after"]),
        prev_hash=row["prev_hash"],
        hash=row["hash"],
    )


def _json(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)
