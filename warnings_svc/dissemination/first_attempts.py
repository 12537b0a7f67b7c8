"""The first send attempt of each version on each channel (`svc.first_send_attempt`), and the observation of
approval -> first delivery that goes with it.

Every dispatcher calls `FirstAttempts.record_quietly` after it stored its attempts' outcomes. The row is
inserted once whichever process gets there first, and only the process whose insert took it observes, so the
histogram counts each version and channel once however many dispatch workers share the database. A small
memory of the versions already seen spares the query for every later batch of the same version.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import datetime

import asyncpg

from warnings_svc.timeliness import Timeliness

log = logging.getLogger(__name__)

# Versions remembered per process as attempted already; a forgotten one costs one query that inserts nothing.
REMEMBERED = 4096

_RECORD = """WITH taken AS (
        INSERT INTO svc.first_send_attempt (warning_id, version, channel, attempted_at)
        SELECT w, v, $3, a FROM unnest($1::bigint[], $2::int[], $4::timestamptz[]) AS t(w, v, a)
        ON CONFLICT DO NOTHING RETURNING warning_id, version, attempted_at)
    SELECT v.hazard, v.level, v.approved_at, t.attempted_at
    FROM taken t JOIN svc.warning_version v USING (warning_id, version)
    WHERE v.approved_at IS NOT NULL"""


def earliest(attempts: Iterable[tuple[tuple[int, int], datetime]]) -> dict[tuple[int, int], datetime]:
    """The earliest of the attempts of each version ((warning id, version), when)."""
    found: dict[tuple[int, int], datetime] = {}
    for key, at in attempts:
        if key not in found or at < found[key]:
            found[key] = at
    return found


class FirstAttempts:
    """Records first attempts and observes them on `timeliness`; one per dispatcher."""

    def __init__(self, timeliness: Timeliness) -> None:
        self.timeliness = timeliness
        self._seen: OrderedDict[tuple[int, int, str], None] = OrderedDict()

    async def record(
        self, conn: asyncpg.Connection, channel: str, attempts: Mapping[tuple[int, int], datetime]
    ) -> int:
        """Record each (warning id, version) of `attempts` not attempted on `channel` before, with its time;
        observe those this call took, and say how many."""
        fresh = sorted(key for key in attempts if (*key, channel) not in self._seen)
        if not fresh:
            return 0
        rows = await conn.fetch(
            _RECORD, [w for w, _ in fresh], [v for _, v in fresh], channel, [attempts[k] for k in fresh]
        )
        for w, v in fresh:
            self._seen[(w, v, channel)] = None
        while len(self._seen) > REMEMBERED:
            self._seen.popitem(last=False)
        for r in rows:
            self.timeliness.observe_first_attempt(
                r["hazard"], r["level"], channel, r["approved_at"], r["attempted_at"]
            )
        return len(rows)

    async def record_quietly(
        self, pool: asyncpg.Pool, channel: str, attempts: Mapping[tuple[int, int], datetime]
    ) -> None:
        """`record` on a connection of `pool`. It only feeds a metric, so a failure is logged and forgotten,
        never retried and never in the way of the deliveries."""
        try:
            async with pool.acquire() as conn:
                await self.record(conn, channel, attempts)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as e:
            log.warning("first send attempts not recorded: %s", " ".join(str(e).split()))
