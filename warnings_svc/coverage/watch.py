"""The coverage watch: every ``[coverage] snapshot_interval_s``, each live warning's coverage measured from its
evidence and kept, its checkpoints held to the target, and escalation raised or stopped.

A warning is live while a version of it (Alert or Update) is issued and not past its expiry; exercise warnings
are watched too (their snapshots and steps say ``exercise`` through the warning, and their relayer messages
go to test recipients only, as every exercise message does). Each round, for each live warning:

- a ``series`` snapshot (the figure now) and the ratio on /metrics;
- once 10 and 30 minutes after issue have passed (the operational figures) and each checkpoint of its level
  (`[coverage] checkpoints_min`), a ``checkpoint`` snapshot holding the figure *at* that minute
  (`Measurement.at_minutes`); a level's checkpoint below the target raises the alert and the next rung of
  the ladder (`warnings_svc.coverage.escalation`), in the transaction that stores it;
- once the target is met, the steps still proposed are stopped (and the time from approval is observed,
  once per warning).

A warning that ended (expired, cancelled: no version in force; an Update keeps it live) gets its ``final``
snapshot, measured when the watch finds it ended, and its proposed steps are stopped. The region's units (the
denominator) are read once per risk database version. The loop survives a lost database: one line when it is
lost, one when it is back, and the next round tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg

from risk_zoning.errors import DatabaseError
from risk_zoning.store import UnitRecord, region_units
from warnings_svc.coverage import escalation, snapshots
from warnings_svc.coverage.evidence import OPERATIONAL_MINUTES, Measurement, measure, region_of
from warnings_svc.coverage.metrics import CoverageMetrics
from warnings_svc.coverage.model import Region
from warnings_svc.coverage.snapshots import SnapshotKind
from warnings_svc.database import DATABASE_FAILURES
from warnings_svc.lifecycle.store import Issuing
from warnings_svc.settings import CoverageSettings, DispatchSettings

log = logging.getLogger(__name__)

_LIVE = """SELECT DISTINCT warning_id FROM svc.warning_version
           WHERE status = 'issued' AND msg_type IN ('Alert', 'Update') AND expires > $1 ORDER BY warning_id"""
# warnings issued within the look-back that are live no more and have no final figure yet: those the watch
# saw, and those issued and ended between two rounds or while it was down (one index probe each)
_ENDED = """SELECT DISTINCT v.warning_id FROM svc.warning_version v
            WHERE v.identifier IS NOT NULL AND v.sent > $2 AND v.warning_id <> ALL ($1::bigint[])
              AND NOT EXISTS (SELECT 1 FROM svc.coverage_snapshot f
                              WHERE f.warning_id = v.warning_id AND f.kind = 'final')
            ORDER BY v.warning_id"""
FINAL_LOOKBACK = timedelta(
    days=14
)  # a warning ended while the watch was down this long still gets its figure
# the database is gone: the round ends and the loop's own handling reports it and retries
LOST_CONNECTION = (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)


@dataclass
class Round:
    """What one round of the watch did (for the log and the tests)."""

    live: list[int] = field(default_factory=list)
    finished: list[int] = field(default_factory=list)
    checkpoints: list[tuple[int, int, bool]] = field(default_factory=list)  # (warning, minutes, met)
    steps: list[tuple[str, str]] = field(default_factory=list)  # (action, state)


class CoverageWatch:
    """One watch per service (a singleton loop of `serve`); `run_once` is one round, `run_forever` the loop."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        ctx: Issuing,
        coverage: CoverageSettings,
        dispatch: DispatchSettings,
        *,
        metrics: CoverageMetrics | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pool = pool
        self.ctx = ctx
        self.coverage = coverage
        self.dispatch = dispatch
        self.metrics = metrics
        self.clock = clock
        self._region: tuple[int, Region, dict[str, UnitRecord]] | None = None  # per risk database version

    async def run_forever(self) -> None:
        """A round every ``snapshot_interval_s``, whatever happens to the database."""
        failing = False
        while True:
            try:
                done = await self.run_once()
                if done.checkpoints or done.finished:
                    log.info(
                        "coverage checked",
                        extra={
                            "live": len(done.live),
                            "checkpoints": done.checkpoints,
                            "finished": done.finished,
                        },
                    )
                if failing:
                    log.info("coverage snapshots work again")
                failing = False
            except asyncio.CancelledError:
                raise
            except asyncpg.UndefinedTableError:
                log.debug("coverage snapshot skipped: the schema is not up to date yet")
            except DATABASE_FAILURES as e:
                if not failing:
                    log.warning(
                        "coverage snapshot failed: %s; retrying every round", " ".join(str(e).split())
                    )
                failing = True
            except DatabaseError as e:  # no risk database built yet: no population to measure against
                if not failing:
                    log.warning("coverage snapshot skipped: %s", e)
                failing = True
            except Exception:  # a bug in one round must not stop the watch for good: log it, go on
                log.exception("coverage snapshot failed")
            await asyncio.sleep(self.coverage.snapshot_interval_s)

    async def run_once(self) -> Round:
        """One round over every live warning and every warning that ended since the last."""
        done = Round()
        now = self.clock()
        async with self.pool.acquire() as conn:
            region, units = await self._region_of(conn)
            done.live = [r[0] for r in await conn.fetch(_LIVE, now)]
            ratios: dict[str, tuple[str, float]] = {}
            below: list[str] = []
            for warning_id in done.live:
                try:
                    found = await self._watch_live(conn, warning_id, region, units, now, done)
                except LOST_CONNECTION:
                    raise
                except (
                    Exception
                ):  # one warning's trouble (a Cancel racing an automatic step) spares the others
                    log.exception("coverage of warning %s failed this round", warning_id)
                    continue
                if found is not None:
                    measurement, is_below = found
                    ratios[str(warning_id)] = (measurement.warning.level, measurement.now.public)
                    if is_below:
                        below.append(measurement.warning.level)
            for (warning_id,) in await conn.fetch(_ENDED, done.live, now - FINAL_LOOKBACK):
                try:
                    if await self._finish(conn, warning_id, region, now, done):
                        done.finished.append(warning_id)
                except LOST_CONNECTION:
                    raise
                except Exception:
                    log.exception("final coverage of warning %s failed this round", warning_id)
        if self.metrics is not None:
            self.metrics.show_live(ratios)
            self.metrics.show_below_target(below)
            for action, state in done.steps:
                self.metrics.count_step(action, state)
        return done

    async def _region_of(self, conn: asyncpg.Connection) -> tuple[Region, dict[str, UnitRecord]]:
        version = await conn.fetchval(
            "SELECT version_id FROM risk.current_version WHERE region = $1", self.ctx.region
        )
        if version is None:
            raise DatabaseError(f"no risk database is built for region {self.ctx.region!r} yet")
        if self._region is None or self._region[0] != version:
            units = await region_units(conn, self.ctx.region)
            self._region = (version, region_of(units), dict(units))
        return self._region[1], self._region[2]

    async def _watch_live(
        self,
        conn: asyncpg.Connection,
        warning_id: int,
        region: Region,
        units: Mapping[str, UnitRecord],
        now: datetime,
        done: Round,
    ) -> tuple[Measurement, bool] | None:
        """Snapshot one live warning, pass its due checkpoints; (the measurement, whether it is below target
        at its latest checkpoint of its level and still below now)."""
        started = time.perf_counter()
        m = await measure(conn, warning_id, region, self.coverage, self.dispatch, now=now)
        if m is None:
            return None
        met_before = await snapshots.ever_met(conn, warning_id)
        await snapshots.store(conn, m, SnapshotKind.series, taken_at=now)
        if self.metrics is not None:
            self.metrics.snapshot_seconds.observe(time.perf_counter() - started)
        met = m.now.public >= m.target
        if met and not met_before and m.reached_target_at is not None:
            await self._observe_time_to_target(conn, m)
        level = m.warning.level
        held = set(self.coverage.checkpoints_min.get(level, ()))  # type: ignore[call-overload]
        stored = await snapshots.stored_checkpoints(conn, warning_id)
        due = [c for c in sorted(held | set(OPERATIONAL_MINUTES)) if c not in stored and m.is_complete(c)]
        # several checkpoints due at once (the watch was down, an upgrade brought a level's earlier ones): each
        # is stored and alerted, but only the latest may raise a rung, and none once the target is met now
        raising = None if met else max((c for c in due if c in held), default=None)
        for minutes in due:
            at = snapshots.at_checkpoint(m, minutes)
            passed = at.now.public >= m.target
            changes = escalation.Changes()
            async with conn.transaction():
                if not await snapshots.store(
                    conn, at, SnapshotKind.checkpoint, checkpoint_min=minutes, taken_at=now
                ):
                    continue  # another watch stored it meanwhile
                if minutes in held and not passed:
                    await escalation.checkpoint_missed(
                        conn, self.ctx, self.coverage, warning_id=warning_id, version=m.warning.version,
                        level=level, checkpoint_min=minutes, public=at.now.public, units=units, now=now,
                        changes=changes, raise_step=minutes == raising,
                    )  # fmt: skip
            stored.add(minutes)
            done.steps += changes.steps
            if minutes in held:
                done.checkpoints.append((warning_id, minutes, passed))
                if self.metrics is not None:
                    self.metrics.checkpoints.labels(level, "met" if passed else "missed").inc()
        if met:
            await self._stop_open(
                conn, warning_id, f"the target is met: coverage {m.now.public:.4f}", now, done
            )
        latest = max((c for c in stored if c in held), default=None)
        below = False
        if latest is not None and not met:
            public = await conn.fetchval(
                """SELECT public FROM svc.coverage_snapshot
                   WHERE warning_id = $1 AND kind = 'checkpoint' AND checkpoint_min = $2""",
                warning_id,
                latest,
            )
            below = public is not None and public < m.target
        return m, below

    async def _finish(
        self, conn: asyncpg.Connection, warning_id: int, region: Region, now: datetime, done: Round
    ) -> bool:
        """The final snapshot of a warning that ended, and its proposed steps stopped."""
        m = await measure(conn, warning_id, region, self.coverage, self.dispatch, now=now)
        if m is None:
            return False
        changes = escalation.Changes()
        async with conn.transaction():
            stored = await snapshots.store(conn, m, SnapshotKind.final, taken_at=now)
            await escalation.stop_open(
                conn,
                self.ctx,
                warning_id,
                reason="the warning is no longer in force",
                now=now,
                changes=changes,
            )
        done.steps += changes.steps
        return stored

    async def _stop_open(
        self, conn: asyncpg.Connection, warning_id: int, reason: str, now: datetime, done: Round
    ) -> None:
        if not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM svc.coverage_escalation WHERE warning_id = $1 AND state = 'proposed')",
            warning_id,
        ):
            return
        changes = escalation.Changes()
        async with conn.transaction():
            await escalation.stop_open(conn, self.ctx, warning_id, reason=reason, now=now, changes=changes)
        done.steps += changes.steps

    async def _observe_time_to_target(self, conn: asyncpg.Connection, m: Measurement) -> None:
        """Approval -> target coverage, observed the first time a snapshot of the warning meets the target."""
        approved = await conn.fetchval(
            """SELECT approved_at FROM svc.warning_version
               WHERE warning_id = $1 AND sent IS NOT NULL ORDER BY version LIMIT 1""",
            m.warning.warning_id,
        )
        if self.metrics is None or approved is None or m.reached_target_at is None:
            return
        seconds = max(0.0, (m.reached_target_at - approved).total_seconds())
        self.metrics.approval_to_target.labels(m.warning.hazard, m.warning.level).observe(seconds)
