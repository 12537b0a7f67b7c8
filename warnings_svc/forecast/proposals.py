"""Stored forecast runs and the warning proposals scored from them, read back (`ingest.store_result` writes
them). Every function takes a connection, so a caller's transaction can span several calls."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

PROPOSAL_STATUSES: tuple[str, ...] = ("open", "superseded", "accepted", "dismissed")


async def fetch_run(conn: asyncpg.Connection, run_id: int) -> dict[str, Any] | None:
    """A stored run: its summary and every proposal scored from it, oldest first; None when there is none."""
    row = await conn.fetchrow("SELECT id, summary, received_at FROM svc.forecast_run WHERE id = $1", run_id)
    if row is None:
        return None
    proposals = await conn.fetch(
        "SELECT id, status, document FROM svc.proposal WHERE run_id = $1 ORDER BY id", run_id
    )
    return {
        "id": row["id"],
        "received_at": row["received_at"].isoformat(),
        "run": json.loads(row["summary"]),
        "proposals": [{"id": p["id"], "status": p["status"], **json.loads(p["document"])} for p in proposals],
    }


async def find_proposals(
    conn: asyncpg.Connection, *, status: str, hazard: str | None, limit: int
) -> list[dict[str, Any]]:
    """Proposals in `status` (of `hazard` when given), newest first, at most `limit`."""
    rows = await conn.fetch(
        """SELECT id, run_id, status, document FROM svc.proposal
           WHERE status = $1 AND ($2::text IS NULL OR hazard = $2) ORDER BY id DESC LIMIT $3""",
        status,
        hazard,
        limit,
    )
    return [
        {"id": r["id"], "run_id": r["run_id"], "status": r["status"], **json.loads(r["document"])}
        for r in rows
    ]


async def open_proposal_documents(conn: asyncpg.Connection, limit: int = 30) -> list[asyncpg.Record]:
    """The newest open proposals: `id`, `document` (JSON text) and their run's `reference_time` (ISO text)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT p.id, p.document, r.summary->>'reference_time' AS reference_time FROM svc.proposal p
           JOIN svc.forecast_run r ON r.id = p.run_id WHERE p.status = 'open' ORDER BY p.id DESC LIMIT $1""",
        limit,
    )
    return rows


async def proposal_document(conn: asyncpg.Connection, proposal_id: int) -> dict[str, Any] | None:
    """One proposal's document, or None when it does not exist."""
    raw = await conn.fetchval("SELECT document FROM svc.proposal WHERE id = $1", proposal_id)
    return None if raw is None else json.loads(raw)


async def open_proposal_summaries(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """The newest open proposals as lists and maps show them, newest first, at most `limit`: `id`, `hazard`,
    `level`, `action`, `replaces`, `areas`, `onset`, `expires`, `probability`, `exposed_population`,
    `geometry` (GeoJSON text or None) and their run's `reference_time`."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT p.id, p.hazard, p.level, p.action, p.replaces, p.areas, p.onset, p.expires, p.probability,
                  p.exposed_population, p.document->'geometry' AS geometry, r.reference_time
           FROM svc.proposal p JOIN svc.forecast_run r ON r.id = p.run_id
           WHERE p.status = 'open' ORDER BY p.id DESC LIMIT $1""",
        limit,
    )
    return rows
