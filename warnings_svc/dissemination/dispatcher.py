"""The dispatcher: expands fan-outs, claims deliveries, sends them through channel adapters, stores results
and receipts. Any number of dispatchers, in any processes on any hosts, share one PostgreSQL outbox.

One `Dispatcher` runs these asyncio tasks until stopped:

- a listener (LISTEN on `outbox.DISPATCH_CHANNEL`; every loop also polls, so a lost notification or a
  database restart only costs `poll_s`);
- per endpoint, `batches_in_flight` senders: take a batch, respect the endpoint's rate limit
  and circuit breaker, send, and hand the outcomes to the endpoint's results writer, which stores every batch
  waiting in one transaction while the senders go on (so the SMSC's window never waits for the database);
  temporary failures come back after exponential backoff with full jitter (or the adapter's own hint, e.g.
  an SMSC's throttling), permanent ones and exhausted retries go to ``dead`` with the reason. A batch keeps
  its lease (renewed every third of `lease_s`) until its outcomes are stored. A batch is the next chunk of
  the most urgent pending fan-out, expanded by the sender itself and written already leased to it (red
  first; the senders of every dispatcher take chunks in turn), or else ready deliveries claimed from the
  queue (retries, and those of a dispatcher that died), which go first when a fan-out is no more urgent: a
  first attempt costs no claim (`expansion.expand_next`, `outbox.claim`). A dispatcher without endpoints
  expands fan-outs into the queue for the others;
- per endpoint, a receipt writer: a batch of receipts is stored before it is acknowledged to the remote end,
  so a crash loses none. A receipt that beats its message's results (the adapter names the message's key,
  and this dispatcher still holds the batch, results not yet stored) rides with those results: one write
  stores the part, its receipt and, when every part's final receipt came, the delivery settled. Its receipt
  batch is acknowledged once the batches it rides with are stored;
- a reaper returning expired leases (a dispatcher that died mid-send) to the queue, and refreshing the
  queue gauges.

Database outages (a restart, a fail-over) are waited out: every loop retries with capped backoff, and a
batch already sent keeps its outcomes in memory until they are stored. Adapters never touch the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import asyncpg

from channels.base import (
    Channel,
    FailureKind,
    OutboundMessage,
    Receipt,
    ReceiptBatch,
    SendOutcome,
    SendResult,
)
from channels.smpp.esme import SmppSettings, SmsChannel
from channels.sms.encoding import SegmentMethod, segment_count
from risk_zoning.store import UnitRecord, region_units
from warnings_svc.dissemination import outbox
from warnings_svc.dissemination.expansion import Expanded, Taker, expand_next
from warnings_svc.dissemination.first_attempts import FirstAttempts, earliest
from warnings_svc.dissemination.metrics import DispatchMetrics
from warnings_svc.dissemination.partners import inbound
from warnings_svc.dissemination.policy import (
    CircuitBreaker,
    CircuitState,
    TokenBucket,
    backoff_delay,
    endpoint_failed,
)
from warnings_svc.settings import DispatchSettings, SettingsError, SmsEndpointSettings

log = logging.getLogger(__name__)

T = TypeVar("T")
# InternalClientError: asyncpg's state when a connection broke mid-operation (seen across a server restart)
DATABASE_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
    ConnectionError,
    TimeoutError,
)
REAP_EVERY_S = 5.0  # at most this long between two looks for expired leases
# The queue gauges are refreshed at Prometheus's usual scrape interval: counting the deliveries of the versions
# in force reads every one of them (about 20 ms of the server's CPU at 100,000), and every dispatcher does it.
STATS_EVERY_S = 15.0
# Young objects allowed between two runs of the cyclic garbage collector (Python's default: 700). A
# dispatcher makes and drops objects by the hundred thousand a second (claims, PDUs, receipts): at the default
# the collector took a third of its CPU time in bench/fanout.py, at 20,000 (and the start-up heap frozen) 7 %.
# A young collection walks every young object still alive, and receipts now stay alive until the batch they
# ride with is stored: at 20,000 the collector took 0.88 s of a 30,000-recipient bench run, at this 0.19 s.
GC_YOUNG_THRESHOLD = 100_000
_collector_tuned = False
# The newest outbox schema this code writes (migration 9's column) is in place
OUTBOX_SCHEMA_READY = """SELECT EXISTS (SELECT FROM pg_attribute
                                         WHERE attrelid = to_regclass('svc.delivery') AND attname = 'remote_ids'
                                           AND NOT attisdropped)"""
# Receipts are stored a batch per transaction: wait a moment for a batch to fill rather than write thousands
# of tiny ones (the SMSC waits that much longer for its acknowledgements; it does not resend meanwhile).
RECEIPT_BATCH = 2000
RECEIPT_LINGER_S = 0.05
# Receipt batches written on their own at the same time, per endpoint. The receipt writer goes on reading
# while they are written: a receipt read late misses the batch it could have ridden with, is written on its
# own, and that makes the writer later still (with a window of 400 and one write at a time, 9 % rode, not 90).
RECEIPT_WRITES_IN_FLIGHT = 2
# A sent batch's outcomes wait this long before they are stored, so that the receipts of its last parts (the
# SMSC answers the submit, then reports) can still ride with them rather than be written on their own.
RESULTS_LINGER_S = 0.1


@dataclass
class Endpoint:
    """One remote end of a channel (one SMSC), with its own limits and circuit."""

    name: str
    channel: str
    adapter: Channel
    breaker: CircuitBreaker
    bucket: TokenBucket | None = None
    cost: Callable[[str], int] = field(default=lambda text: 1)  # rate-limit tokens one message uses
    probing: bool = False  # a sender is sending the half-open circuit's probe batch

    async def start(self) -> None:
        start = getattr(self.adapter, "start", None)
        if start is not None:
            await start(wait_s=0)


@dataclass(eq=False, slots=True)
class InHand:
    """A claimed batch, from its claim until its outcomes are stored (or it is given up)."""

    endpoint: str
    claimed: list[outbox.Claimed]
    stored: asyncio.Future[bool]  # True once its outcomes (and the receipts riding with them) are stored
    # receipts of its parts that came before the results writer took it, by remote id: stored with it
    receipts: dict[str, Receipt] = field(default_factory=dict)
    taken: bool = False  # the results writer has it: receipts coming now are stored on their own


@dataclass(frozen=True, slots=True)
class Sent:
    """A batch sent, waiting for its outcomes to be stored; `seconds` it took to send."""

    batch: outbox.SentBatch
    seconds: float
    sent_at: float  # time.monotonic() when it was sent


def smpp_settings(e: SmsEndpointSettings) -> SmppSettings:
    """How to talk to an SMSC from its `[[dispatch.sms]]` table; `SettingsError` when its password file is
    unreadable."""
    password = e.password
    if e.password_file is not None:
        try:
            password = e.password_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise SettingsError(e.password_file, f"dispatch.sms {e.name}: {err.strerror or err}") from err
    return SmppSettings(
        host=e.host,
        port=e.port,
        system_id=e.system_id,
        password=password,
        system_type=e.system_type,
        source_addr=e.source_addr,
        binds=e.binds,
        window=e.window,
        segment_method=SegmentMethod(e.segment_method),
        enquire_link_interval_s=e.enquire_link_interval_s,
        response_timeout_s=e.response_timeout_s,
    )


def sms_endpoint(e: SmsEndpointSettings, settings: DispatchSettings) -> Endpoint:
    """An SMS endpoint from its `[[dispatch.sms]]` table; `SettingsError` when its password file is unreadable."""
    smpp = smpp_settings(e)
    return Endpoint(
        name=e.name,
        channel="sms",
        adapter=SmsChannel(smpp),
        breaker=_breaker(settings),
        bucket=TokenBucket(e.rate_per_s, max(e.rate_per_s, 1.0)) if e.rate_per_s > 0 else None,
        cost=segment_count,
    )


def _breaker(settings: DispatchSettings) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=settings.breaker_failures,
        cool_down_s=settings.breaker_cool_down_s,
        max_cool_down_s=settings.breaker_max_cool_down_s,
    )


def endpoints_from_settings(settings: DispatchSettings) -> list[Endpoint]:
    """Every endpoint configured under `[dispatch]`."""
    return [sms_endpoint(e, settings) for e in settings.sms]


def pool_size(settings: DispatchSettings) -> int:
    """Connections a dispatcher process wants: one per batch in flight and receipt write, and a few for
    expansion, results, leases and texts."""
    return (settings.batches_in_flight + RECEIPT_WRITES_IN_FLIGHT) * max(len(settings.sms), 1) + 4


def tune_collector() -> None:
    """Set this process's garbage collector for a long-running server's workload (a dispatcher, a web
    process), once: what is alive after start-up (modules, the risk database, settings) is frozen out of the
    collector's sight, and young objects are collected every `GC_YOUNG_THRESHOLD` allocations rather than 700
    (see bench/LOG.md)."""
    global _collector_tuned
    if _collector_tuned:
        return
    _collector_tuned = True
    gc.collect()  # what is garbage now is freed, not frozen
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def owner_name() -> str:
    """This dispatcher's name on its leases: host, process and a random tag (a restarted process differs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{random.randrange(16**6):06x}"


class Dispatcher:
    """One dispatcher process's worth of work; `run` until `stop` is set."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        database_url: str,
        settings: DispatchSettings,
        endpoints: Sequence[Endpoint],
        *,
        region: str,
        metrics: DispatchMetrics | None = None,
        owner: str | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.pool = pool
        self.database_url = database_url
        self.settings = settings
        self.endpoints = list(endpoints)
        self.region = region
        self.metrics = metrics or DispatchMetrics()
        self._first_attempts = FirstAttempts(self.metrics.timeliness)
        self.owner = owner or owner_name()
        self.rng = rng or random.Random()
        self._work = asyncio.Event()  # deliveries may be ready
        self._fanouts = asyncio.Event()  # fan-outs may be pending
        self._texts: dict[tuple[int, int, str], str] = {}
        self._units: dict[str, UnitRecord] | None = None
        self._claims = itertools.count(1)
        # lease -> its batch, from the claim until its outcomes are stored (what `_renew` keeps leased), and
        # the key of each delivery in hand -> its batch (so a receipt that beats its results can ride with them)
        self._held: dict[str, InHand] = {}
        self._by_key: dict[str, InHand] = {}
        # receipt batches being written or waiting for the batches they ride with, and a bound on writes
        self._acks: set[asyncio.Task[None]] = set()
        self._receipt_writes: dict[str, asyncio.Semaphore] = {}
        # per endpoint: batches sent whose outcomes are not stored yet, and a bound on how many there may be
        # (so a dispatcher holds at most 2 x batches_in_flight batches: being sent, and waiting to be stored)
        self._sent: dict[str, asyncio.Queue[Sent]] = {}
        self._later: dict[str, list[Sent]] = {}
        self._unstored: dict[str, asyncio.Semaphore] = {}
        self.counters = {
            "expanded": 0,
            "claimed": 0,  # taken to send: written leased by its own expansion, or claimed from the queue
            "claimed_from_queue": 0,
            "sent": 0,
            "retried": 0,
            "dead": 0,
            "receipts": 0,
            "receipts_with_results": 0,  # of those, stored with their message's results
        }

    # ------------------------------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event) -> None:
        """Start the endpoints and every loop; on `stop`, finish the batches in hand and close cleanly."""
        if not await self._schema_ready(stop):
            return
        tune_collector()
        for endpoint in self.endpoints:
            await endpoint.start()
        tasks = [
            self._supervised(stop, "dispatch-listen", partial(self._listen, stop)),
            self._supervised(stop, "dispatch-reap", partial(self._reap, stop)),
            self._supervised(stop, "dispatch-renew", self._renew),
        ]
        if not self.endpoints:  # nothing to send with: expand into the queue for dispatchers that have some
            tasks.append(self._supervised(stop, "dispatch-expand", partial(self._expand, stop)))
        senders = []
        writers = []
        for endpoint in self.endpoints:
            # senders hand sent batches to the endpoint's writer and go on; at most this many wait to be stored
            self._sent[endpoint.name] = asyncio.Queue()
            self._unstored[endpoint.name] = asyncio.Semaphore(self.settings.batches_in_flight)
            tasks.append(
                self._supervised(stop, f"receipts-{endpoint.name}", partial(self._store_receipts, endpoint))
            )
            if hasattr(endpoint.adapter, "inbound"):  # messages from phones: stored, then answered
                tasks.append(
                    self._supervised(
                        stop,
                        f"inbound-{endpoint.name}",
                        partial(inbound.store_inbound, self.pool, endpoint.name, endpoint.adapter),
                    )
                )
            writers.append(
                self._supervised(stop, f"results-{endpoint.name}", partial(self._store_results, endpoint))
            )
            for i in range(self.settings.batches_in_flight):
                senders.append(
                    self._supervised(stop, f"send-{endpoint.name}-{i}", partial(self._send, endpoint, stop))
                )
        log.info(
            "dispatcher started",
            extra={"owner": self.owner, "endpoints": [e.name for e in self.endpoints]},
        )
        try:
            await stop.wait()
        finally:
            self._work.set()
            self._fanouts.set()
            await asyncio.gather(*senders, return_exceptions=True)  # they finish the batch in hand
            await asyncio.gather(*(q.join() for q in self._sent.values()))  # and its outcomes are stored
            for writer in writers:
                writer.cancel()
            await asyncio.gather(*writers, return_exceptions=True)
            if self._acks:  # their batches are stored: acknowledge them (any left are resent by the SMSC)
                await asyncio.wait(set(self._acks), timeout=5)
                for ack in self._acks:
                    ack.cancel()
            for endpoint in self.endpoints:
                await endpoint.adapter.close()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            log.info("dispatcher stopped", extra={"owner": self.owner, **self.counters})

    def _supervised(
        self, stop: asyncio.Event, name: str, loop: Callable[[], Awaitable[None]]
    ) -> asyncio.Task[None]:
        """Run one of the dispatcher's loops as a task that a bug cannot silently end: an unexpected error is
        logged with its traceback and the loop starts again a second later (its leased deliveries, if any,
        return when their lease runs out)."""

        async def run() -> None:
            while True:
                try:
                    await loop()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("dispatcher loop failed; starting it again", extra={"loop": name})
                    if stop.is_set():
                        return
                    await asyncio.sleep(1.0)

        return asyncio.create_task(run(), name=name)

    async def _schema_ready(self, stop: asyncio.Event) -> bool:
        """Wait until the outbox tables exist (a service starting up applies migrations meanwhile); False when
        stopped first."""
        waited = False
        while not stop.is_set():
            try:
                async with self.pool.acquire() as conn:
                    if await conn.fetchval(OUTBOX_SCHEMA_READY):
                        return True
            except DATABASE_ERRORS as e:
                log.warning(
                    "database unavailable", extra={"while": "start", "error": " ".join(str(e).split())}
                )
            if not waited:
                log.info("dispatcher waiting for the database schema (warnings-svc db upgrade)")
                waited = True
            await self._wait(stop, self.settings.poll_s)
        return False

    async def _with_database(
        self, stop: asyncio.Event | None, what: str, work: Callable[[], Awaitable[T]]
    ) -> T:
        """Run `work` until it gets through to the database (waiting out restarts with capped backoff)."""
        delay = 0.1
        while True:
            try:
                return await work()
            except DATABASE_ERRORS as e:
                if stop is not None and stop.is_set():
                    raise
                # unreachable (a restart, a fail-over) is waited out quietly; anything else is a fault to see
                unreachable = not isinstance(e, asyncpg.PostgresError) or isinstance(
                    e,
                    asyncpg.PostgresConnectionError
                    | asyncpg.CannotConnectNowError
                    | asyncpg.AdminShutdownError,
                )
                log.log(
                    logging.WARNING if unreachable else logging.ERROR,
                    "database unavailable" if unreachable else "database refused a dispatcher statement",
                    extra={"while": what, "error": " ".join(str(e).split())},
                )
                self.metrics.database_errors.labels(what).inc()
                await asyncio.sleep(self.rng.uniform(0, delay))
                delay = min(delay * 2, 5.0)

    async def _wait(self, event: asyncio.Event, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout_s)

    # ------------------------------------------------------------------------------------------ waking

    async def _listen(self, stop: asyncio.Event) -> None:
        """LISTEN on the dispatch channel on a connection of its own; reconnect when it drops."""
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(self.database_url)
            except DATABASE_ERRORS:
                await asyncio.sleep(self.settings.poll_s)
                continue
            try:
                with contextlib.suppress(*DATABASE_ERRORS):  # a dropped connection: the loop reconnects
                    await conn.add_listener(outbox.DISPATCH_CHANNEL, self._heard)
                    self._work.set()  # anything notified while we were not listening
                    self._fanouts.set()
                    while not stop.is_set() and not conn.is_closed():
                        await asyncio.sleep(self.settings.poll_s)
                        await conn.execute("SELECT 1")  # notice a dead connection
            finally:
                with contextlib.suppress(*DATABASE_ERRORS):
                    await asyncio.wait_for(conn.close(), 2)

    def _heard(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if payload == "fanout":
            self._fanouts.set()
        self._work.set()

    # ------------------------------------------------------------------------------------------ expanding

    async def _expand(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self._fanouts.clear()
            done = await self._with_database(stop, "expand", self._expand_once)
            if done:
                continue
            await self._wait(self._fanouts, self.settings.poll_s)

    async def _expand_once(self) -> bool:
        async with self.pool.acquire() as conn:
            result = await self._expand_on(conn, None)
        return result is not None

    async def _expand_on(self, conn: asyncpg.Connection, taker: Taker | None) -> Expanded | None:
        """Expand the next chunk of a pending fan-out (into the queue, or leased to `taker`) and account for it."""
        if self._units is None:
            self._units = await region_units(conn, self.region)
        result = await expand_next(
            conn,
            self._units,
            chunk=self.settings.expand_chunk,
            first_chunk=self.settings.first_chunk,
            taker=taker,
        )
        if result is None:
            return None
        self.counters["expanded"] += result.deliveries
        self.metrics.expanded.labels(result.channel).inc(result.deliveries)
        if result.deliveries:
            self._work.set()
        if result.done:
            self._units = None  # the next fan-out sees a rebuilt risk database
            log.info(
                "fan-out expanded" if not result.dropped else "fan-out dropped: warning no longer in force",
                extra={"warning_id": result.warning_id, "version": result.version, "channel": result.channel},
            )
        return result

    # ------------------------------------------------------------------------------------------ sending

    async def _send(self, endpoint: Endpoint, stop: asyncio.Event) -> None:
        batch_size = self.settings.batch_size
        while not stop.is_set():
            now = time.monotonic()
            state = endpoint.breaker.state_at(now)
            self.metrics.circuit_state.labels(endpoint.name).set(_CIRCUIT_VALUE[state])
            if state is CircuitState.open or (state is CircuitState.half_open and endpoint.probing):
                # open: wait for the cool-down; half-open: one sender probes, the others wait for its verdict
                await asyncio.sleep(
                    min(endpoint.breaker.retry_in(now) or self.settings.poll_s, self.settings.poll_s)
                )
                continue
            self._work.clear()
            lease = (
                f"{self.owner}#{next(self._claims)}"  # each claim its own lease: stale results are refused
            )
            claimed = await self._with_database(
                stop, "claim", partial(self._claim, endpoint, lease, batch_size)
            )
            if not claimed:
                await self._wait(self._work, self.settings.poll_s)
                continue
            self._work.set()  # there may be more: let the other senders look
            probing = endpoint.breaker.state_at(time.monotonic()) is CircuitState.half_open
            if not endpoint.breaker.allow(time.monotonic()):  # another sender took the probe meanwhile
                await self._with_database(None, "release", partial(self._release, lease, claimed))
                await asyncio.sleep(self.settings.poll_s)
                continue
            endpoint.probing = endpoint.probing or probing
            try:
                await self._send_batch(endpoint, lease, claimed)
            except BaseException:
                # no longer renewed: the lease runs out and the batch is sent again
                self._let_go(lease, stored=False)
                raise
            finally:
                if probing:
                    endpoint.probing = False

    async def _claim(self, endpoint: Endpoint, lease: str, limit: int) -> list[outbox.Claimed]:
        """Take a batch: the next chunk of a pending fan-out, written leased to this sender (its first
        attempts), or else ready deliveries from the queue."""
        async with self.pool.acquire() as conn:
            taker = Taker(endpoint.channel, lease, self.settings.lease_s, limit)
            expanded = await self._expand_on(conn, taker)
            if expanded is not None:
                claimed = list(expanded.claimed)
                self._work.set()  # a fan-out may have more: look again at once, even if this chunk was empty
            else:
                claimed = await outbox.claim(conn, endpoint.channel, lease, limit, self.settings.lease_s)
                self.counters["claimed_from_queue"] += len(claimed)
        if claimed:
            held = self._held[lease] = InHand(
                endpoint.name, claimed, asyncio.get_running_loop().create_future()
            )
            for c in claimed:
                self._by_key[c.key] = held
        self.counters["claimed"] += len(claimed)
        return claimed

    def _let_go(self, lease: str, *, stored: bool) -> None:
        """A batch is no longer in hand: its outcomes are stored, or it was given back or given up (its lease
        then runs out, and receipts that rode with it are stored on their own)."""
        held = self._held.pop(lease, None)
        if held is None:
            return
        for c in held.claimed:
            if self._by_key.get(c.key) is held:
                del self._by_key[c.key]
        if not held.stored.done():
            held.stored.set_result(stored)

    async def _release(self, lease: str, claimed: Sequence[outbox.Claimed]) -> None:
        async with self.pool.acquire() as conn:
            await outbox.release(conn, lease, [c.id for c in claimed])
        self._let_go(lease, stored=False)

    async def _renew(self) -> None:
        """Keep the leases of every batch in hand (being sent, or waiting for its outcomes to be stored): only
        a dispatcher that stopped answering loses them."""
        every = self.settings.lease_s / 3
        while True:
            await asyncio.sleep(every)
            held = dict(self._held)
            if not held:
                continue
            try:
                async with self.pool.acquire() as conn:
                    await outbox.renew_leases(conn, list(held), self.settings.lease_s)
            except DATABASE_ERRORS as e:
                log.warning("lease renewal failed", extra={"error": " ".join(str(e).split())})

    async def _send_batch(self, endpoint: Endpoint, lease: str, claimed: list[outbox.Claimed]) -> None:
        """Send a claimed batch and hand its outcomes to the endpoint's writer (waiting only while
        `batches_in_flight` batches already wait to be stored)."""
        texts = await self._with_database(None, "texts", lambda: self._texts_for(claimed))
        messages = [
            OutboundMessage(c.key, c.address, text)
            for c in claimed
            if (text := texts.get((c.warning_id, c.version, c.language)))
        ]
        started = time.monotonic()
        sent = iter(await self._send_paced(endpoint, messages))
        elapsed = time.monotonic() - started
        # a version without an SMS text (a damaged row) is a dead letter, not a batch failing for ever
        results = [
            next(sent)
            if (c.warning_id, c.version, c.language) in texts
            else SendResult(
                c.key,
                SendOutcome.PERMANENT_FAILURE,
                reason=f"no SMS text issued for {c.language}",
                failure=FailureKind.INVALID,
            )
            for c in claimed
        ]
        self._judge(endpoint, results)
        delays = [self._retry_delay(c, r) for c, r in zip(claimed, results, strict=True)]
        await self._unstored[endpoint.name].acquire()  # released once stored
        # the receipts riding with it so far; more may join until the results writer takes it
        riding = self._held[lease].receipts if lease in self._held else {}
        batch = outbox.SentBatch(lease, claimed, results, delays, riding)
        self._sent[endpoint.name].put_nowait(Sent(batch, elapsed, time.monotonic()))

    async def _record_results(
        self, endpoint: Endpoint, batches: list[outbox.SentBatch]
    ) -> list[outbox.ResultCounts]:
        async with self.pool.acquire() as conn:
            return await outbox.record_results(conn, endpoint.name, batches, self.settings.max_attempts)

    async def _store_results(self, endpoint: Endpoint) -> None:
        """Store the outcomes of sent batches, every one whose linger is over in one transaction."""
        queue = self._sent[endpoint.name]
        # taken from the queue, sent too recently to be stored yet (oldest first); kept on the dispatcher, so
        # a writer started again after a bug still stores them
        later = self._later.setdefault(endpoint.name, [])
        while True:
            if not later:
                later.append(await queue.get())
            linger = later[0].sent_at + RESULTS_LINGER_S - time.monotonic()
            if linger > 0:
                await asyncio.sleep(linger)
            while not queue.empty():
                later.append(queue.get_nowait())
            # A batch sent just now waits for the next round, so the receipts of its last parts can still
            # ride with it (when each was stored with the oldest, 3 % of all receipts missed their batch)
            due = time.monotonic() - RESULTS_LINGER_S
            ready = next((i for i, w in enumerate(later) if w.sent_at > due), len(later))
            waiting = later[:ready]
            del later[:ready]
            for w in waiting:  # before any await: no receipt joins a batch once it is being written
                if (held := self._held.get(w.batch.lease)) is not None:
                    held.taken = True
            batches = [w.batch for w in waiting]
            stored = False
            try:
                all_counts = await self._with_database(
                    None, "results", partial(self._record_results, endpoint, batches)
                )
                stored = True
            finally:
                # stored, or lost to a bug: either way no longer renewed (lost ones run out and are sent again)
                for w in waiting:
                    self._let_go(w.batch.lease, stored=stored)
                    self._unstored[endpoint.name].release()
                    queue.task_done()
            await self._record_first_attempts(endpoint, waiting)
            for w, counts in zip(waiting, all_counts, strict=True):
                for key in ("sent", "retried", "dead"):
                    self.counters[key] += getattr(counts, key)
                self.metrics.observe_batch(
                    endpoint.channel, endpoint.name, w.batch.results, counts, w.seconds
                )

    async def _record_first_attempts(self, endpoint: Endpoint, waiting: Sequence[Sent]) -> None:
        now, clock = datetime.now(UTC), time.monotonic()
        sent = ((w, now - timedelta(seconds=clock - w.sent_at)) for w in waiting)  # wall time of each send
        attempts = earliest(((c.warning_id, c.version), at) for w, at in sent for c in w.batch.claimed)
        await self._first_attempts.record_quietly(self.pool, endpoint.channel, attempts)

    async def _send_paced(self, endpoint: Endpoint, messages: list[OutboundMessage]) -> list[SendResult]:
        """Send through the adapter, in slices the endpoint's rate limit lets through when it has one."""
        bucket = endpoint.bucket
        if bucket is None:
            return await endpoint.adapter.send_batch(messages)
        results: list[SendResult] = []
        start = 0
        while start < len(messages):
            end, cost = start, 0
            while end < len(messages) and (
                end == start or cost + endpoint.cost(messages[end].text) <= bucket.burst
            ):
                cost += endpoint.cost(messages[end].text)
                end += 1
            wait = bucket.take(min(cost, bucket.burst), time.monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
            results += await endpoint.adapter.send_batch(messages[start:end])
            start = end
        return results

    def _judge(self, endpoint: Endpoint, results: Sequence[SendResult]) -> None:
        """Feed the circuit breaker: a batch where the link failed for every item is a failure, any other a
        success (`policy.endpoint_failed`, by the kind of failure the adapter reported)."""
        now = time.monotonic()
        if endpoint_failed(results):
            endpoint.breaker.record_failure(now)
            log.warning(
                "endpoint failing",
                extra={
                    "endpoint": endpoint.name,
                    "failure": str(results[0].failure),
                    "reason": results[0].reason,
                },
            )
        else:
            endpoint.breaker.record_success(now)
        self.metrics.circuit_state.labels(endpoint.name).set(_CIRCUIT_VALUE[endpoint.breaker.state_at(now)])
        self.metrics.circuit_opened.labels(endpoint.name).set(endpoint.breaker.opened_count)

    def _retry_delay(self, claimed: outbox.Claimed, result: SendResult) -> float:
        if result.outcome is not SendOutcome.TEMPORARY_FAILURE:
            return 0.0
        delay = backoff_delay(
            max(claimed.attempts, 1),
            base_s=self.settings.retry_base_s,
            cap_s=self.settings.retry_cap_s,
            rng=self.rng,
        )
        if result.retry_after_s is not None:
            delay = max(delay, result.retry_after_s)
        return delay

    async def _texts_for(self, claimed: Sequence[outbox.Claimed]) -> dict[tuple[int, int, str], str]:
        """The SMS text of each (warning, version, language) in the batch, as issued (cached); missing when
        the version has none."""
        missing = {
            (c.warning_id, c.version)
            for c in claimed
            if (c.warning_id, c.version, c.language) not in self._texts
        }
        if missing:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(
                    """SELECT warning_id, version, rendered FROM svc.warning_version
                       WHERE (warning_id, version) IN (SELECT * FROM unnest($1::bigint[], $2::int[]))""",
                    [w for w, _ in missing],
                    [v for _, v in missing],
                )
            for r in rows:
                rendered = r["rendered"]
                rendered = json.loads(rendered) if isinstance(rendered, str) else (rendered or {})
                for language, texts in rendered.items():
                    if (
                        isinstance(texts, dict)
                        and isinstance(texts.get("sms_full"), str)
                        and texts["sms_full"]
                    ):
                        self._texts[(r["warning_id"], r["version"], language)] = texts["sms_full"]
        out = {}
        for c in claimed:
            k = (c.warning_id, c.version, c.language)
            # a language the version was not issued in falls back to Chinese, the public's language
            text = self._texts.get(k) or self._texts.get((c.warning_id, c.version, "zh-CN"))
            if text is not None:
                out[k] = text
        return out

    # ------------------------------------------------------------------------------------------ receipts

    async def _store_receipts(self, endpoint: Endpoint) -> None:
        """Store every receipt batch, or hand its receipts to the batches in hand whose results they beat, and
        acknowledge it once all of it is stored."""
        writes = self._receipt_writes.setdefault(endpoint.name, asyncio.Semaphore(RECEIPT_WRITES_IN_FLIGHT))
        async for batch in endpoint.adapter.receipts(max_batch=RECEIPT_BATCH, linger_s=RECEIPT_LINGER_S):
            own: list[Receipt] = []
            riding: set[InHand] = set()
            for r in batch:
                held = self._by_key.get(r.key) if r.key else None
                if held is None or held.taken or held.endpoint != endpoint.name:
                    own.append(r)
                    continue
                known = held.receipts.get(r.remote_id)
                if known is None or not known.state.is_final:  # a final state is never overwritten
                    held.receipts[r.remote_id] = r
                riding.add(held)
            self.counters["receipts"] += len(batch)
            self.counters["receipts_with_results"] += len(batch) - len(own)
            self.metrics.observe_receipts(endpoint.name, batch)
            if own:
                await writes.acquire()  # released once written
            ack = asyncio.create_task(self._store_and_ack(endpoint, batch, own, list(riding)))
            self._acks.add(ack)
            ack.add_done_callback(self._ack_done)

    def _ack_done(self, task: asyncio.Task[None]) -> None:
        self._acks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            # not acknowledged: the SMSC sends these receipts again once the link ends
            log.error("receipt batch not stored", exc_info=error)

    async def _write_receipts(self, endpoint: Endpoint, receipts: Sequence[Receipt]) -> int:
        async with self.pool.acquire() as conn:
            return await outbox.store_receipts(conn, endpoint.name, receipts)

    async def _store_and_ack(
        self, endpoint: Endpoint, batch: ReceiptBatch, own: list[Receipt], riding: list[InHand]
    ) -> None:
        """Acknowledge a receipt batch once all of it is stored: `own` written here, the rest with the batches
        it rides with (the receipts of a batch given up are written here too)."""
        if own:
            try:
                await self._with_database(None, "receipts", partial(self._write_receipts, endpoint, own))
            finally:
                self._receipt_writes[endpoint.name].release()
        stored = await asyncio.gather(*(held.stored for held in riding))
        lost = [r for held, ok in zip(riding, stored, strict=True) if not ok for r in held.receipts.values()]
        if lost:
            await self._with_database(None, "receipts", partial(self._write_receipts, endpoint, lost))
        batch.ack()

    # ------------------------------------------------------------------------------------------ leases

    async def _reap(self, stop: asyncio.Event) -> None:
        every = max(0.5, min(self.settings.lease_s / 4, REAP_EVERY_S))
        last_stats = 0.0
        while not stop.is_set():
            try:
                async with self.pool.acquire() as conn:
                    back = await outbox.reclaim_expired_leases(conn)
                    if back:
                        log.warning(
                            "leases expired: deliveries back in the queue", extra={"deliveries": back}
                        )
                        self.metrics.leases_expired.inc(back)
                        self._work.set()
                    if time.monotonic() - last_stats >= STATS_EVERY_S:
                        self.metrics.observe_queue(await outbox.queue_stats(conn))
                        last_stats = time.monotonic()
            except DATABASE_ERRORS as e:
                log.warning("lease check failed", extra={"error": " ".join(str(e).split())})
            await self._wait(stop, every)


_CIRCUIT_VALUE = {CircuitState.closed: 0, CircuitState.half_open: 1, CircuitState.open: 2}
