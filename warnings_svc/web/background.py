"""The web process's background work, started and stopped with the app in one place: the risk map renderer,
the risk database watcher, the database watch, forecast run scoring, the coverage watch and the embedded dispatchers (people over
SMS; the targets of the area channels).

Every loop that must keep running is registered in `BACKGROUND_LOOPS`: one that ends while the app runs
makes `/healthz` answer 503 (`web.health`). Loops that use the database wait out its loss and log one line
when it is lost and one when it is back, never a traceback per try.

With several web worker processes (`web.workers`) each runs what it needs to answer (the renderer, the risk
database watcher, the live events' hub, the database watch, a scorer for the uploads it receives); the loops
that must run once per service (the inbox watcher, the dispatcher, the expiry clock) run in the primary
worker only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial

import asyncpg
from aiohttp import web

from warnings_svc.coverage.watch import CoverageWatch
from warnings_svc.database import DATABASE_FAILURES
from warnings_svc.dissemination.area_dispatch import (
    AreaDispatcher,
    AreaDispatchOptions,
    AreaMetrics,
    area_targets_from_settings,
)
from warnings_svc.dissemination.dispatcher import Dispatcher, endpoints_from_settings
from warnings_svc.dissemination.metrics import DispatchMetrics
from warnings_svc.dissemination.partners.dispatch import (
    PartnerDispatcher,
    PartnerMetrics,
    partner_channels_from_settings,
)
from warnings_svc.dissemination.partners.dispatch import (
    options_from_settings as partner_options_from_settings,
)
from warnings_svc.forecast.runs import (
    Inbox,
    RunScorer,
    watch_inbox,
)
from warnings_svc.lifecycle import acknowledgement_steps, store
from warnings_svc.web.appkeys import (
    COVERAGE_METRICS,
    INBOX_DISK,
    ISSUING,
    METRICS,
    POOL,
    RISK_DATABASE,
    RISK_MAPS,
    RUN_SCORER,
    SETTINGS,
)
from warnings_svc.web.events import EVENT_HUB, end_event_streams, event_hub
from warnings_svc.web.health import BACKGROUND_LOOPS, DATABASE_WATCH, READINESS
from warnings_svc.web.risk_database import RiskMapCache, watch_risk_database
from warnings_svc.web.write_lane import WRITE_LANE, WriteLane

log = logging.getLogger(__name__)


async def _risk_map_renderer(app: web.Application) -> AsyncIterator[None]:
    # One thread: matplotlib's rcParams (each render's font context) are process-wide, and the cache makes
    # each map a one-off anyway.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="risk-map")
    app[RISK_MAPS] = RiskMapCache(executor)
    yield
    executor.shutdown(wait=False, cancel_futures=True)


# A web worker other than the primary scores only the uploads it receives; its scoring processes (each holds
# the risk database, hundreds of MB) end after this long without one, and start again at the next.
UPLOAD_SCORER_IDLE_SECONDS = 300.0


async def _upload_scoring(app: web.Application, *, database_url: str) -> AsyncIterator[None]:
    scorer = RunScorer(
        app[POOL],
        database_url,
        app[SETTINGS].scoring,
        release_after_seconds=UPLOAD_SCORER_IDLE_SECONDS,
        timeliness=app[METRICS].timeliness,
    )
    app[RUN_SCORER] = scorer
    yield
    scorer.close()


async def _run_scoring(app: web.Application, *, database_url: str) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    metrics = app[METRICS]
    scorer = RunScorer(app[POOL], database_url, settings.scoring, timeliness=metrics.timeliness)
    app[RUN_SCORER] = scorer
    inbox = Inbox(
        settings.data_dir,
        settle_seconds=2 * settings.scoring.inbox_poll_seconds,
        retry_seconds=12 * settings.scoring.inbox_poll_seconds,  # a minute at the default poll
        disk=app.get(INBOX_DISK),
        on_stuck=lambda stuck: metrics.count_inbox_move_failure(stuck.destination),
    )
    metrics.observe_inbox(lambda: len(inbox.stuck()))
    app[READINESS].watch_inbox(inbox)
    task = asyncio.create_task(
        watch_inbox(inbox, scorer, settings.region, settings.scoring.inbox_poll_seconds), name="watch-inbox"
    )
    app[BACKGROUND_LOOPS].watch("watch-inbox", task)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    scorer.close()


async def _run_dispatcher(app: web.Application, *, database_url: str) -> AsyncIterator[None]:
    """The embedded dispatcher: its metrics on the service's /metrics; stopped (batches in hand finished,
    binds closed) with the app."""
    settings = app[SETTINGS]
    dispatcher = Dispatcher(
        app[POOL],
        database_url,
        settings.dispatch,
        endpoints_from_settings(settings.dispatch),
        region=settings.region,
        metrics=DispatchMetrics(app[METRICS].registry),
    )
    app[READINESS].watch_sms_binds(
        {
            e.name: list(getattr(e.adapter, "binds", ()))
            for e in dispatcher.endpoints
            if hasattr(e.adapter, "binds")
        }
    )
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop), name="dispatcher")
    app[BACKGROUND_LOOPS].watch("dispatcher", task)
    yield
    stop.set()
    await task


async def _run_area_dispatcher(app: web.Application, *, database_url: str) -> AsyncIterator[None]:
    """The embedded area dispatcher (terminals, operators, CBCs, platforms): its targets' health on /readyz,
    its metrics on /metrics; stopped with the app."""
    settings = app[SETTINGS]
    dispatcher = AreaDispatcher(
        app[POOL],
        database_url,
        area_targets_from_settings(settings),
        AreaDispatchOptions.from_settings(settings.dispatch),
        metrics=AreaMetrics(app[METRICS].registry),
    )
    app[READINESS].watch_area_targets(dispatcher.health)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop), name="area-dispatcher")
    app[BACKGROUND_LOOPS].watch("area-dispatcher", task)
    yield
    stop.set()
    await task


async def _run_partner_dispatcher(app: web.Application, *, database_url: str) -> AsyncIterator[None]:
    """The embedded partner dispatcher (webhooks, email, MQTT topics, SMS to partners and duty contacts): its
    channels' health on /readyz, its metrics on /metrics; stopped with the app."""
    settings = app[SETTINGS]
    dispatcher = PartnerDispatcher(
        app[POOL],
        database_url,
        partner_channels_from_settings(settings),
        partner_options_from_settings(settings),
        metrics=PartnerMetrics(app[METRICS].registry),
    )
    app[READINESS].watch_partner_channels(dispatcher.health)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop), name="partner-dispatcher")
    app[BACKGROUND_LOOPS].watch("partner-dispatcher", task)
    yield
    stop.set()
    await task


async def _risk_database_watcher(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(watch_risk_database(app[RISK_DATABASE]), name="watch-risk-database")
    app[BACKGROUND_LOOPS].watch("watch-risk-database", task)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


EXPIRY_CHECK_SECONDS = 30.0  # how often warnings past their expiry are expired


async def _expiry_clock(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_expire_forever(app), name="expiry-clock")
    app[BACKGROUND_LOOPS].watch("expiry-clock", task)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _expire_forever(app: web.Application) -> None:
    failing = False
    while True:
        await asyncio.sleep(EXPIRY_CHECK_SECONDS)
        try:
            async with app[POOL].acquire() as conn:
                done = await store.expire_due(conn, app[ISSUING], now=datetime.now(UTC))
            if done:
                log.info("warnings expired", extra={"warnings": done})
            if failing:
                log.info("expiry checks work again")
            failing = False
        except asyncio.CancelledError:
            raise
        except asyncpg.UndefinedTableError:
            log.debug("expiry check skipped: the schema is not up to date yet")
        except DATABASE_FAILURES as e:
            # the clock must survive a database restart; the next tick tries again (one line per outage)
            if not failing:
                log.warning("expiry check failed: %s; retrying every tick", " ".join(str(e).split()))
            failing = True


async def _acknowledgement_steps(app: web.Application) -> AsyncIterator[None]:
    """Acknowledgements (叫应): the messages from phones handled and the due requests escalated, every
    ``[acknowledgements] check_interval_s`` (`lifecycle.acknowledgement_steps`)."""
    issuing = app[ISSUING]
    held = app[RISK_DATABASE].held if RISK_DATABASE in app else (lambda: None)

    async def units_of(conn: asyncpg.Connection) -> dict:
        return await store.region_units_of(conn, issuing, held())

    task = asyncio.create_task(
        acknowledgement_steps.run_forever(
            app[POOL], issuing, units_of, on_overdue=app[METRICS].acknowledgements_overdue.set
        ),
        name="acknowledgement-steps",
    )
    app[BACKGROUND_LOOPS].watch("acknowledgement-steps", task)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _coverage_watch(app: web.Application) -> AsyncIterator[None]:
    """The coverage watch (`coverage.watch`): snapshots, checkpoints and escalation of the live warnings, every
    ``[coverage] snapshot_interval_s``."""
    settings = app[SETTINGS]
    watch = CoverageWatch(
        app[POOL], app[ISSUING], settings.coverage, settings.dispatch, metrics=app[COVERAGE_METRICS]
    )
    task = asyncio.create_task(watch.run_forever(), name="coverage-watch")
    app[BACKGROUND_LOOPS].watch("coverage-watch", task)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _database_watch(app: web.Application) -> AsyncIterator[None]:
    watch = app[DATABASE_WATCH]
    if EVENT_HUB in app:
        watch.on_back(app[EVENT_HUB].retry_now)
    task = asyncio.create_task(watch.run(), name="database-watch")
    app[BACKGROUND_LOOPS].watch("database-watch", task)
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _stop_watching_loops(app: web.Application) -> None:
    app[BACKGROUND_LOOPS].stopping()


async def _write_lane(app: web.Application, *, database_url: str) -> AsyncIterator[None]:
    """The write lane (`web.write_lane`); the database watch discards its connections with the main pool's."""
    lane = WriteLane(database_url)
    await lane.start()
    app[WRITE_LANE] = lane
    app[DATABASE_WATCH].also_expire(lane)
    yield
    await lane.stop()


def add_background_tasks(app: web.Application, database_url: str | None, *, singletons: bool = True) -> None:
    """Every loop the web process runs besides answering requests, opened and closed with the app: the risk
    map renderer, the risk database watcher and the live events' hub always; with `database_url`, forecast
    run scoring (uploads).

    `singletons` (the only web process, or the primary of several) adds what must run once per service: the
    expiry clock, the acknowledgement steps, the coverage watch and, with `database_url`, the inbox watcher and, when configured embedded, the dispatcher."""
    settings = app[SETTINGS]
    app.cleanup_ctx.append(_risk_map_renderer)
    app.cleanup_ctx.append(_risk_database_watcher)
    app.cleanup_ctx.append(partial(event_hub, database_url=database_url))
    app.cleanup_ctx.append(
        _database_watch
    )  # after the hub: it wakes the hub's listener when the database is back
    app.on_shutdown.append(_stop_watching_loops)
    app.on_shutdown.append(end_event_streams)
    if singletons:
        app.cleanup_ctx.append(_expiry_clock)
        app.cleanup_ctx.append(_acknowledgement_steps)
        app.cleanup_ctx.append(_coverage_watch)
    lane_url = database_url or settings.database_url  # tests give the URL in the settings only
    if lane_url is not None:
        app.cleanup_ctx.append(partial(_write_lane, database_url=lane_url))
    if database_url is not None:
        scoring = _run_scoring if singletons else _upload_scoring
        app.cleanup_ctx.append(partial(scoring, database_url=database_url))
    if singletons and database_url is not None and settings.dispatch.embedded and settings.dispatch.sms:
        app.cleanup_ctx.append(partial(_run_dispatcher, database_url=database_url))
    if (
        singletons
        and lane_url is not None
        and settings.dispatch.embedded
        and settings.dispatch.area_targets()
    ):
        app.cleanup_ctx.append(partial(_run_area_dispatcher, database_url=lane_url))
    if singletons and lane_url is not None and settings.dispatch.embedded:
        app.cleanup_ctx.append(partial(_run_partner_dispatcher, database_url=lane_url))
