"""Scores of the service given on the public page (the plan's public satisfaction indicator), with the rate
limit that keeps an open form from being flooded. Scores by SMS reply are stored where messages from phones
are handled (`dissemination.partners.inbound`); both go to ``svc.satisfaction`` and the yearly report reads
them (`coverage.report`).

The limit is per client address, counted in the database so that it holds across web workers, as the login
limit is (`web.accounts`): at most `WebScoreLimit.per_address` scores in `WebScoreLimit.window`. Many people
can share one address (a mobile carrier's NAT, an office), so the limit is generous: it stops a script, not a
family. The addresses are kept in ``svc.satisfaction_attempt`` only as long as the window, apart from the
scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

SATISFACTION_LOCK_CLASS = 0x5A71  # advisory lock class serialising one address's scores (two-key form)


@dataclass(frozen=True)
class WebScoreLimit:
    """How many scores one client address may give within `window`."""

    per_address: int = 20
    window: timedelta = timedelta(minutes=10)


WEB_SCORE_LIMIT = WebScoreLimit()


class TooManyScores(Exception):
    """The address gave its allowance of scores; `retry_after` seconds until it may give another."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many scores from this address; try again in {retry_after} s")
        self.retry_after = retry_after


async def store_web_score(
    conn: asyncpg.Connection,
    *,
    score: int,
    warning_id: int,
    area: str | None,
    comment: str,
    remote_address: str,
    now: datetime,
    limit: WebScoreLimit = WEB_SCORE_LIMIT,
) -> int:
    """Store a score given on the public page (already validated); its id. `TooManyScores` (nothing
    written) when the address is over its limit."""
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext($2))", SATISFACTION_LOCK_CLASS, remote_address
        )
        # the limit-th most recent score in the window: once it ages out, one more score counts
        oldest = await conn.fetchval(
            """SELECT at FROM svc.satisfaction_attempt WHERE remote_address = $1 AND at > $2
               ORDER BY at DESC OFFSET $3 - 1 LIMIT 1""",
            remote_address,
            now - limit.window,
            limit.per_address,
        )
        if oldest is not None:
            raise TooManyScores(max(1, int((oldest + limit.window - now).total_seconds() + 0.999)))
        await conn.execute("DELETE FROM svc.satisfaction_attempt WHERE at <= $1", now - limit.window)
        await conn.execute(
            "INSERT INTO svc.satisfaction_attempt (remote_address, at) VALUES ($1, $2)", remote_address, now
        )
        score_id: int = await conn.fetchval(
            """INSERT INTO svc.satisfaction (score, area, warning_id, via, comment, given_at)
               VALUES ($1, $2, $3, 'web', $4, $5) RETURNING id""",
            score,
            area,
            warning_id,
            comment,
            now,
        )
    return score_id
