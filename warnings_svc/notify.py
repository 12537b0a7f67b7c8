"""Change events: one PostgreSQL NOTIFY channel that every writer announces its committed changes on.

A notification is delivered only when the writer's transaction commits, so listeners (the console's live
refresh) never hear of a change that was rolled back. Payloads are small JSON objects with ``kind``
(``warning``, ``proposal``, ``run``), ``id`` and ``action``; listeners re-read the database for the rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg

EVENTS_CHANNEL = "svc_events"


async def notify(conn: asyncpg.Connection, event: Mapping[str, Any]) -> None:
    """Announce ``event`` on `EVENTS_CHANNEL` when the current transaction commits."""
    await conn.execute(
        "SELECT pg_notify($1, $2)", EVENTS_CHANNEL, json.dumps(dict(event), ensure_ascii=False)
    )
