"""Fan-out of one warning to N people over SMPP: the real path against a bare SMPP client on the same SMSC.

The real path: an embedded PostgreSQL (the `pgserver` wheel) with a freshly migrated database and the Wuhai
risk database, N registered recipients spread over the city's three districts, a heat warning for the whole
city issued with ``[warnings] sms_segments = 2`` (its SMS text must need exactly two UCS2 segments: checked,
and the run stops with exit status 2 when approval refuses the text or it needs another count;
``--sms-segments`` sets both the budget and the count expected), and ``--dispatchers N`` (default 2, one per
core) ``warnings-svc dispatch`` processes sharing the outbox, as deployed: expansion, sends over SMPP, results
and receipts stored. Each opens ``--binds`` binds (default 2, the endpoint's default); the bare client then
opens ``--binds`` x N. Their progress is read from the SMSC's counters, so with ``--smsc`` and no
``--smsc-control``, and with ``--profile``, the default is one `Dispatcher` in this process instead.
Timed from the moment the approval returns until every delivery has left pending/sending (``seconds``,
``rate`` = segments sent per second) and until every receipt is stored (``seconds_to_receipts``). Without
``--smsc`` the SMSC is the loopback node-smpp peer of the tests (tests/peers/smsc/server.js, counters only);
with ``--smsc HOST:PORT`` it is that SMSC (its counters only with ``--smsc-control URL``, the peer's control
endpoint).

The ceiling: in the same run, against the same SMSC, a bare `SmsChannel` (same binds and window, no
database) sends N messages of the same text to distinct numbers and consumes the receipts. Both run with
the garbage-collector settings a dispatcher process uses (`dispatcher.tune_collector`). It runs before
the real path (with the previewed text) and after it (with the issued text); the ratio is against the better
of the two.

Latency: "issue -> first submit_sm" over K warnings of a few recipients each (a fresh database; the
dispatcher already running and idle, as in production), each timed from just before the approval is called
to the time the SMSC recorded the first submit_sm for it. This always uses a loopback peer in full record
mode started for the purpose (even with ``--smsc``), since only that records when each submit_sm arrived.

    python bench/fanout.py [--recipients 100000] [--smsc HOST:PORT [--system-id ID] [--password PW]
                           [--smsc-control URL]] [--batch-size 1000] [--batches-in-flight 4]
                           [--dispatchers 2] [--binds 2] [--window 100] [--sms-segments 2] [--level orange]
                           [--latency-samples 50] [--quick] [--json] [--profile]

Run it from the repository root with the project's virtualenv (it imports tests/ for the factories and the
loopback peer; ``scripts/install-smsc-peer`` installs the peer's node package). Progress goes to stderr;
with ``--json`` stdout holds one JSON object. CPU seconds of this process, the PostgreSQL server and the
loopback peer are reported per phase (Linux ``/proc``), so a slow phase shows which process was busy;
``--profile`` adds pyinstrument's profile of this process during the real path (the rate is then not
representative).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests/ holds the factories and the loopback peer
    sys.path.insert(0, str(ROOT))

from machine_facts import CpuClock, cpu_and_memory, postgres_pid  # noqa: E402  (bench/machine_facts.py, beside this script)

from channels.base import HealthState, OutboundMessage, SendOutcome  # noqa: E402
from channels.smpp.esme import SmppSettings, SmsChannel  # noqa: E402
from risk_zoning.io.database import DatabaseError, EmbeddedPostgres  # noqa: E402
from risk_zoning.store import region_units  # noqa: E402
from tests.factories_db import fresh_database  # noqa: E402
from tests.factories_dispatch import (  # noqa: E402
    APPROVER,
    FORECASTER,
    add_recipients,
    running_dispatcher_on,
    sms_segments_of,
    start_dispatcher_process,
    states,
    write_dispatch_config,
)
from tests.peers.smsc_fixture import SmscPeer, SmscPeerError, start_smsc  # noqa: E402
from warnings_svc.dissemination.dispatcher import sms_endpoint, tune_collector  # noqa: E402
from warnings_svc.documents.texts import sms_segments  # noqa: E402
from warnings_svc.lifecycle import store as ws  # noqa: E402
from warnings_svc.lifecycle.transitions import Action  # noqa: E402
from warnings_svc.settings import DispatchSettings, Settings, SmsEndpointSettings  # noqa: E402

SEGMENTS = 2  # the issue's case: a warning whose SMS text needs exactly two segments (--sms-segments)
AREAS = ("150300",)  # the city: reaches every district
FIRST_PHONE = 13_800_000_000  # the recipients (add_recipients' default)
CEILING_PHONES = (13_900_000_000, 13_700_000_000)  # the bare client's numbers, before and after
LATENCY_PHONE = 13_600_000_000
CEILING_CHUNK = 1000  # messages per send_batch of the bare client
CEILING_IN_FLIGHT = 4  # send_batch calls in progress at once: enough to keep every window full


class BenchError(Exception):
    """The benchmark cannot run or did not finish; one line for the user."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- the SMSC


@dataclass(frozen=True)
class Smsc:
    """Where the throughput phases send: host, port, credentials, and the control endpoint when known."""

    host: str
    port: int
    system_id: str
    password: str
    control_url: str | None
    label: str

    def counters(self) -> dict[str, int] | None:
        if self.control_url is None:
            return None
        try:
            with urllib.request.urlopen(self.control_url.rstrip("/") + "/state", timeout=5) as r:
                return json.loads(r.read())["counters"]
        except (OSError, ValueError, KeyError):
            return None


def parse_smsc(value: str) -> tuple[str, int]:
    m = re.fullmatch(r"\[?([^\[\]]+?)\]?:(\d{1,5})", value.strip())
    if m is None or not 1 <= int(m.group(2)) <= 65535:
        raise BenchError(f"--smsc must be HOST:PORT (port 1-65535), not {value!r}", 2)
    return m.group(1), int(m.group(2))


def counter_delta(before: dict[str, int] | None, after: dict[str, int] | None) -> dict[str, int] | None:
    if before is None or after is None:
        return None
    return {k: after[k] - before.get(k, 0) for k in after}


# ---------------------------------------------------------------------------------------------- settings


def dispatch_settings(
    args: argparse.Namespace, host: str, port: int, system_id: str, password: str
) -> DispatchSettings:
    """The dispatcher's settings: production defaults but for the sizes under test."""
    endpoint = SmsEndpointSettings(
        name="smsc",
        host=host,
        port=port,
        system_id=system_id,
        password=password,
        binds=args.binds,
        window=args.window,
    )
    return DispatchSettings(
        sms=(endpoint,),
        batch_size=args.batch_size,
        batches_in_flight=args.batches_in_flight,
        expand_chunk=args.expand_chunk,
        first_chunk=args.first_chunk,
    )


@contextlib.asynccontextmanager
async def dispatcher_running(database_url: str, settings: DispatchSettings, region: str) -> Any:
    """A dispatcher in this event loop with the pool `warnings-svc dispatch` gives it, bound before yielding."""
    endpoints = [sms_endpoint(e, settings) for e in settings.sms]
    async with running_dispatcher_on(database_url, settings, endpoints, region=region) as dispatcher:
        deadline = time.monotonic() + 15
        while not all(e.adapter.health().state is HealthState.UP for e in dispatcher.endpoints):
            if time.monotonic() > deadline:
                raise BenchError("the dispatcher did not bind to the SMSC within 15 s")
            await asyncio.sleep(0.05)
        yield dispatcher


@dataclass
class DispatcherProcesses:
    """Dispatcher processes running: their pids, and once stopped, the counters each printed as it stopped."""

    pids: list[int]
    counters: list[dict[str, int]] = field(default_factory=list)

    def total(self) -> dict[str, int] | None:
        """The counters of every process added up (None when a process printed none)."""
        if not self.counters or len(self.counters) < len(self.pids):
            return None
        return {k: sum(c.get(k, 0) for c in self.counters) for k in self.counters[0]}


def stopped_counters(printed: list[str]) -> dict[str, int] | None:
    """The counters `warnings-svc dispatch` printed as it stopped (a JSON line on its standard output)."""
    for line in reversed(printed):
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and isinstance(record.get("counters"), dict):
                return {k: int(v) for k, v in record["counters"].items()}
    return None


@contextlib.contextmanager
def dispatcher_processes(
    database_url: str, settings: DispatchSettings, count: int
) -> Iterator[DispatcherProcesses]:
    """`count` processes of `warnings-svc dispatch` on the database, as deployed; stopped (SIGTERM) on leaving,
    when the counters each printed are read."""
    folder = Path(tempfile.mkdtemp(prefix="fanout-dispatchers-"))
    started: list[Any] = []
    running = DispatcherProcesses([])
    try:
        config = write_dispatch_config(folder / "dispatch.toml", database_url, settings)
        for i in range(count):
            try:
                started.append(start_dispatcher_process(config, f"dispatcher-{i}"))
            except AssertionError as e:
                raise BenchError(f"a dispatcher process did not start: {e}") from None
        running.pids = [d.process.pid for d in started]
        yield running
    finally:
        for d in started:
            d.stop()
            counters = stopped_counters(d.printed())
            if counters is not None:
                running.counters.append(counters)
        shutil.rmtree(folder, ignore_errors=True)


class Watch:
    """How far the fan-out is: from the in-process dispatcher's counters, or (dispatcher processes) from the
    SMSC's counters while sending and the outbox at the end, so watching costs the database nothing while
    it works."""

    def __init__(self, conn: asyncpg.Connection, smsc: Smsc, segments: int, dispatcher: Any = None) -> None:
        self.conn = conn
        self.smsc = smsc
        self.segments = segments
        self.dispatcher = dispatcher
        self.base = (smsc.counters() or {}) if dispatcher is None else {}

    def _peer(self, key: str) -> int:
        now = self.smsc.counters()
        if now is None:
            raise BenchError("the SMSC's counters are unreadable: dispatcher processes cannot be watched")
        return now.get(key, 0) - self.base.get(key, 0)

    def sent(self) -> int:
        """Deliveries sent (or dead) so far, approximately while sending."""
        if self.dispatcher is not None:
            return self.dispatcher.counters["sent"] + self.dispatcher.counters["dead"]
        return self._peer("submits") // self.segments

    async def all_out(self, warning_id: int) -> bool:
        """Whether no delivery of the warning is pending or sending (nor waits to be expanded)."""
        return not await self.conn.fetchval(
            """SELECT EXISTS (SELECT FROM svc.fanout WHERE warning_id = $1 AND state = 'pending')
                   OR EXISTS (SELECT FROM svc.delivery WHERE state = 'pending' AND warning_id = $1)
                   OR EXISTS (SELECT FROM svc.delivery WHERE state = 'sending' AND warning_id = $1)""",
            warning_id,
        )

    def receipts(self) -> int:
        if self.dispatcher is not None:
            return self.dispatcher.counters["receipts"]
        return self._peer("receipts_acked")


# ---------------------------------------------------------------------------------------------- the ceiling


async def bare_client(
    smsc: Smsc, args: argparse.Namespace, text: str, n: int, first_phone: int, timeout_s: float
) -> dict[str, Any]:
    """A bare SmsChannel (the dispatcher's binds and window, no database) sends n messages of `text` to
    distinct numbers, CEILING_IN_FLIGHT chunks of CEILING_CHUNK at a time, and consumes the receipts."""
    channel = SmsChannel(
        SmppSettings(
            smsc.host,
            smsc.port,
            smsc.system_id,
            smsc.password,
            binds=args.binds * args.dispatchers,  # as many binds as the dispatchers open together
            window=args.window,
        )
    )
    if not await channel.start(wait_s=10):
        await channel.close()
        raise BenchError(f"the bare client could not bind to {smsc.label} within 10 s")
    expected = n * args.sms_segments
    received = 0
    all_in = asyncio.Event()

    async def consume() -> None:
        nonlocal received
        async for batch in channel.receipts():
            received += len(batch)
            batch.ack()
            if received >= expected:
                all_in.set()

    consumer = asyncio.create_task(consume())
    starts = iter(range(0, n, CEILING_CHUNK))
    accepted = failed = 0

    async def worker() -> None:
        nonlocal accepted, failed
        for start in starts:
            messages = [
                OutboundMessage(f"ceiling/{i}", f"+86{first_phone + i}", text)
                for i in range(start, min(start + CEILING_CHUNK, n))
            ]
            for r in await channel.send_batch(messages):
                if r.outcome is SendOutcome.ACCEPTED:
                    accepted += 1
                else:
                    failed += 1

    cpu_before = CLOCK.read()
    t0 = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(CEILING_IN_FLIGHT))), timeout_s)
        t_sent = time.perf_counter() - t0
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), timeout_s)
        t_receipts = time.perf_counter() - t0 if all_in.is_set() else None
        cpu = CpuClock.delta(cpu_before, CLOCK.read())
        await asyncio.sleep(0.3)  # the consumer has asked for the next batch: the last one is acknowledged
    except TimeoutError:
        raise BenchError(f"the bare client did not send {n} messages within {timeout_s:.0f} s") from None
    finally:
        await channel.close()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(consumer, 5)
    return {
        "binds": args.binds * args.dispatchers,
        "messages": n,
        "accepted": accepted,
        "failed": failed,
        "segments": accepted * args.sms_segments,
        "seconds": round(t_sent, 3),
        "rate": round(accepted * args.sms_segments / t_sent, 1),
        "receipts": received,
        "seconds_to_receipts": round(t_receipts, 3) if t_receipts is not None else None,
        "cpu_seconds": cpu,
    }


# ---------------------------------------------------------------------------------------------- warnings


async def draft(conn: asyncpg.Connection, ctx: ws.Issuing, level: str) -> ws.Version:
    """A heat warning for the whole city, created and submitted (approving it is what is timed)."""
    now = datetime.now(UTC)
    onset = now.replace(minute=0, second=0, microsecond=0) + timedelta(
        hours=1
    )  # on the hour, as forecasters do
    v = await ws.create(
        conn,
        ctx,
        FORECASTER,
        hazard="heat",
        level=level,
        onset=onset,
        expires=onset + timedelta(hours=24),
        content=ws.Content(areas=AREAS),
        now=now,
    )
    try:
        await ws.act(conn, ctx, FORECASTER, v.warning_id, Action.submit, now=now)
    except ws.StoreError as e:
        raise BenchError(
            f"a heat {level} warning for {AREAS[0]} cannot be submitted with "
            f"[warnings] sms_segments = {ctx.budgets.sms_full_segments} (see --sms-segments): {e}",
            2,
        ) from None
    return v


async def approve(conn: asyncpg.Connection, ctx: ws.Issuing, warning_id: int) -> ws.Version:
    return await ws.act(conn, ctx, APPROVER, warning_id, Action.approve, now=datetime.now(UTC), reason="ok")


async def previewed_text(
    conn: asyncpg.Connection, ctx: ws.Issuing, version: ws.Version, segments_wanted: int
) -> str:
    units = await region_units(conn, ctx.region)
    text = ws.preview(ctx, version, units, now=datetime.now(UTC))["zh-CN"]["sms_full"]
    if sms_segments(text) != segments_wanted:
        raise BenchError(
            f"the warning's SMS text needs {sms_segments(text)} segments, not {segments_wanted}: "
            "the texts or [warnings] sms_segments changed",
            2,
        )
    return text


async def issued_text(conn: asyncpg.Connection, warning_id: int, segments_wanted: int) -> str:
    segments = await sms_segments_of(conn, warning_id)
    if segments != segments_wanted:
        raise BenchError(f"the issued SMS text needs {segments} segments, not {segments_wanted}", 2)
    rendered = await conn.fetchval(
        "SELECT rendered FROM svc.warning_version WHERE warning_id = $1 AND version = 1", warning_id
    )
    rendered = json.loads(rendered) if isinstance(rendered, str) else rendered
    return rendered["zh-CN"]["sms_full"]


# ---------------------------------------------------------------------------------------------- phases


class Progress:
    """A progress line on stderr: rewritten in place on a terminal, every few seconds otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def show(self, text: str, final: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            print("\r" + text + " " * 8, end="\n" if final else "", file=sys.stderr, flush=True)
        elif final or now - self.last >= 5:
            log(text)
            self.last = now


async def real_path(
    url: str, smsc: Smsc, args: argparse.Namespace, ctx: ws.Issuing, level: str
) -> dict[str, Any]:
    """The throughput phase: recipients, ceiling before, the issued warning through the dispatcher, ceiling after."""
    n = args.recipients
    timeout_s = 60 + n / 500
    out: dict[str, Any] = {"recipients": n}
    conn = await asyncpg.connect(url)
    try:
        t = time.perf_counter()
        await add_recipients(conn, n, first_phone=FIRST_PHONE)
        await conn.execute("ANALYZE svc.recipient")  # a registry in steady state has statistics
        out["setup_seconds"] = {"recipients": round(time.perf_counter() - t, 2)}
        log(f"{n} recipients registered in {out['setup_seconds']['recipients']} s")

        v = await draft(conn, ctx, level)
        text = await previewed_text(conn, ctx, v, args.sms_segments)
        log(f"ceiling before: a bare client sends {n} x {args.sms_segments} segments to {smsc.label}")
        before = await bare_client(smsc, args, text, n, CEILING_PHONES[0], timeout_s)
        log(f"  {before['rate']} segments/s")

        settings = dispatch_settings(args, smsc.host, smsc.port, smsc.system_id, smsc.password)
        progress = Progress()
        processes: DispatcherProcesses | None = None
        async with contextlib.AsyncExitStack() as stack:
            if args.dispatchers == 1:
                dispatcher = await stack.enter_async_context(dispatcher_running(url, settings, ctx.region))
                watch = Watch(conn, smsc, args.sms_segments, dispatcher)
            else:
                processes = stack.enter_context(dispatcher_processes(url, settings, args.dispatchers))
                CLOCK.dispatchers = tuple(processes.pids)
                dispatcher = None
            await asyncio.sleep(1.0)  # idle, as a dispatcher waiting for work is
            if dispatcher is None:
                watch = Watch(conn, smsc, args.sms_segments)
            counters_before = smsc.counters()
            cpu_before = CLOCK.read()
            profiler = None
            if args.profile:
                from pyinstrument import Profiler

                profiler = Profiler(interval=0.001, async_mode="disabled")
                profiler.start()
            t_call = time.perf_counter()
            await approve(conn, ctx, v.warning_id)
            t0 = time.perf_counter()
            first_sent = None
            # polled often in-process (free), every 0.1 s from the SMSC's control endpoint otherwise
            every = 0.02 if dispatcher is not None else 0.1
            while True:
                sent_now = watch.sent()
                if first_sent is None and sent_now:
                    first_sent = time.perf_counter() - t0
                if sent_now >= n and await watch.all_out(v.warning_id):
                    break
                elapsed = time.perf_counter() - t0
                if elapsed > timeout_s:
                    raise BenchError(
                        f"not every delivery was sent within {timeout_s:.0f} s: {await states(conn)}"
                    )
                progress.show(
                    f"sent {sent_now}/{n}, {sent_now * args.sms_segments / max(elapsed, 1e-9):.0f} segments/s"
                )
                await asyncio.sleep(every)
            seconds = time.perf_counter() - t0
            if profiler is not None:
                profiler.stop()
            cpu_sent = CLOCK.read()
            counters_sent = dict(dispatcher.counters) if dispatcher is not None else None
            progress.show(f"sent {n}/{n} in {seconds:.1f} s", final=True)
            while watch.receipts() < n * args.sms_segments:
                if time.perf_counter() - t0 > 2 * timeout_s:
                    raise BenchError(f"not every receipt was stored within {2 * timeout_s:.0f} s")
                progress.show(f"receipts {watch.receipts()}/{n * args.sms_segments}")
                await asyncio.sleep(every)
            deadline = time.monotonic() + 30  # receipts stored: every delivery should be settled
            while (await states(conn, v.warning_id)).get("sent", 0) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            seconds_to_receipts = time.perf_counter() - t0
            progress.show(
                f"receipts {watch.receipts()}/{n * args.sms_segments} in {seconds_to_receipts:.1f} s",
                final=True,
            )
            cpu_receipts = CLOCK.read()
            counters_after = smsc.counters()
            dispatcher_counters = dict(dispatcher.counters) if dispatcher is not None else None
        CLOCK.dispatchers = ()  # the dispatcher processes have stopped
        if processes is not None:  # added up from what each printed as it stopped
            dispatcher_counters = processes.total()
        by_state = await states(conn, v.warning_id)
        segments = await conn.fetchval(
            "SELECT coalesce(sum(segments), 0) FROM svc.delivery WHERE warning_id = $1", v.warning_id
        )
        parts = await conn.fetchval("SELECT count(*) FROM svc.sent_part")
        text = await issued_text(conn, v.warning_id, args.sms_segments)
        sent = sum(by_state.get(s, 0) for s in ("sent", "delivered", "accepted"))
        out |= {
            "sent": sent,
            "delivered": by_state.get("delivered", 0),
            "segments": int(segments),
            "seconds": round(seconds, 3),
            "rate": round(sent * args.sms_segments / seconds, 1),
            "seconds_to_receipts": round(seconds_to_receipts, 3),
            "approve_seconds": round(t0 - t_call, 3),
            "approval_to_first_sent_seconds": round(first_sent, 3) if first_sent is not None else None,
            "states": by_state,
            "message_parts_stored": parts,
            "text": {"characters": len(text), "segments": sms_segments(text)},
            "dispatcher_counters_when_sent": counters_sent,
            "dispatcher_counters": dispatcher_counters,
            "smsc_counters": counter_delta(counters_before, counters_after),
            "cpu_seconds_until_sent": CpuClock.delta(cpu_before, cpu_sent),
            "cpu_seconds_until_receipts": CpuClock.delta(cpu_before, cpu_receipts),
        }
        if profiler is not None:
            log(profiler.output_text(unicode=False, color=False))
            log(profiler.output_text(unicode=False, color=False, flat=True))
        log(f"real path: {out['rate']} segments/s; ceiling after: a bare client again")
        after = await bare_client(smsc, args, text, n, CEILING_PHONES[1], timeout_s)
        log(f"  {after['rate']} segments/s")
        best = max(before["rate"], after["rate"])
        out["ceiling"] = {
            "before": before,
            "after": after,
            "rate": best,
            "which": "better of before and after",
        }
        out["ratio"] = round(out["rate"] / best, 3) if best else None
    finally:
        await conn.close()
    return out


async def latency(
    url: str, peer: SmscPeer, args: argparse.Namespace, ctx: ws.Issuing, level: str
) -> dict[str, Any]:
    """Issue -> first submit_sm at the SMSC, over `latency_samples` warnings, the dispatcher idle in between."""
    conn = await asyncpg.connect(url)
    try:
        await add_recipients(conn, args.latency_recipients, first_phone=LATENCY_PHONE)
        settings = dispatch_settings(args, peer.host, peer.port, peer.system_id, peer.password)
        samples: list[float] = []
        approvals: list[float] = []
        rng = random.Random(1)
        async with dispatcher_running(url, settings, ctx.region) as dispatcher:
            await asyncio.sleep(1.0)
            for k in range(args.latency_samples + 1):  # the first one warms up and is not counted
                await asyncio.sleep(rng.uniform(0.2, 0.5))  # idle, at no fixed phase of the poll loops
                v = await draft(conn, ctx, level)
                seen = len(peer.received())  # blocking, but outside the timed window
                sent_before = dispatcher.counters["sent"]
                t_issue = time.time()
                await approve(conn, ctx, v.warning_id)
                approved = time.time() - t_issue
                deadline = time.monotonic() + 15
                while dispatcher.counters["sent"] - sent_before < args.latency_recipients:
                    if time.monotonic() > deadline:
                        raise BenchError(f"latency sample {k}: not sent within 15 s ({dispatcher.counters})")
                    await asyncio.sleep(0.005)
                records = [r for r in peer.received()[seen:] if r.get("outcome") == "accepted"]
                if not records:
                    raise BenchError(f"latency sample {k}: the SMSC recorded no submit_sm")
                if k:
                    samples.append(min(r["at"] for r in records) - t_issue)
                    approvals.append(approved)
        ms = np.array(samples) * 1000
        return {
            "samples": len(samples),
            "recipients_per_warning": args.latency_recipients,
            "issue_to_first_submit_ms": {
                "p50": round(float(np.percentile(ms, 50)), 1),
                "p99": round(float(np.percentile(ms, 99)), 1),
                "max": round(float(ms.max()), 1),
                "min": round(float(ms.min()), 1),
            },
            "approve_call_ms_p50": round(float(np.percentile(np.array(approvals) * 1000, 50)), 1),
            "peer": "loopback node-smpp peer in full record mode, started for this phase",
            "first_sample_discarded": True,
        }
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------- facts


def machine(pg_version: str | None) -> dict[str, Any]:
    node = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        if shutil.which("node"):
            node = subprocess.run(
                ["node", "--version"], capture_output=True, text=True, timeout=10
            ).stdout.strip()
    return cpu_and_memory() | {
        "asyncpg": asyncpg.__version__,
        "postgresql": pg_version,
        "node": node,
    }


def loadavg() -> list[float] | None:
    with contextlib.suppress(OSError):
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    return None


# ---------------------------------------------------------------------------------------------- main

CLOCK = CpuClock(None, None)


@contextlib.contextmanager
def peer_process(record_mode: str) -> Iterator[SmscPeer]:
    try:
        peer = start_smsc(record_mode=record_mode)
    except SmscPeerError as e:
        raise BenchError(str(e), 2) from None
    try:
        yield peer
    finally:
        peer.stop()


async def run(server_url: str, pgdata: Path, args: argparse.Namespace) -> dict[str, Any]:
    global CLOCK
    tune_collector()  # as a dispatcher does when it starts: the bare client runs under the same collector
    ctx = ws.Issuing.from_settings(Settings(warnings={"sms_segments": args.sms_segments}))
    conn = await asyncpg.connect(server_url)
    try:
        pg_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    result: dict[str, Any] = {
        "machine": machine(pg_version),
        "arguments": {k: v for k, v in vars(args).items() if k != "password"},
        "settings": {
            "batch_size": args.batch_size,
            "batches_in_flight": args.batches_in_flight,
            "dispatchers": args.dispatchers,
            "binds": args.binds,
            "window": args.window,
            "expand_chunk": args.expand_chunk,
            "first_chunk": args.first_chunk,
            "poll_s": DispatchSettings().poll_s,
        },
        "loadavg_start": loadavg(),
    }
    t_all = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if args.smsc:
            host, port = parse_smsc(args.smsc)
            smsc = Smsc(host, port, args.system_id, args.password, args.smsc_control, args.smsc)
            peer_pid = None
        else:
            peer = stack.enter_context(peer_process("counts"))
            smsc = Smsc(
                peer.host, peer.port, peer.system_id, peer.password, peer.control_url, "the loopback peer"
            )
            peer_pid = peer.process.pid
        CLOCK = CpuClock(postgres_pid(pgdata), peer_pid)
        result["smsc"] = (
            "loopback node-smpp peer (tests/peers/smsc/server.js), counters only"
            if not args.smsc
            else f"{args.smsc}" + ("" if args.smsc_control else " (no --smsc-control: no SMSC counters)")
        )
        t = time.perf_counter()
        async with fresh_database(server_url, built=True) as url:
            result["database_built_seconds"] = round(time.perf_counter() - t, 1)
            result |= await real_path(url, smsc, args, ctx, args.level)
    if args.latency_samples > 0:
        log(f"latency: {args.latency_samples} warnings to {args.latency_recipients} recipients each")
        try:
            with peer_process("full") as latency_peer:
                async with fresh_database(server_url, built=True) as url:
                    result["latency"] = await latency(url, latency_peer, args, ctx, args.level)
        except BenchError as e:
            if not args.smsc:
                raise
            log(f"latency skipped: {e}")  # keep the throughput figures of the given SMSC
            result["latency_skipped"] = str(e)
    result["targets"] = {
        "rate_at_least_3000": result["rate"] >= 3000,
        "ratio_at_least_0.8": result["ratio"] is not None and result["ratio"] >= 0.8,
        "issue_to_first_submit_p99_under_200_ms": (
            result["latency"]["issue_to_first_submit_ms"]["p99"] < 200 if "latency" in result else None
        ),
    }
    result["loadavg_end"] = loadavg()
    result["total_seconds"] = round(time.perf_counter() - t_all, 1)
    return result


def print_summary(r: dict[str, Any]) -> None:
    c = r["ceiling"]
    print(
        f"\nfan-out of one warning to {r['recipients']} people, {r['text']['segments']} segments each, via {r['smsc']}"
    )
    st = r["settings"]
    where = "in this process" if st["dispatchers"] == 1 else f"in {st['dispatchers']} processes"
    print(f"  real path     {r['rate']:>9.1f} segments/s   sent {r['sent']} in {r['seconds']} s; "
          f"{r['delivered']} delivered (all receipts in {r['seconds_to_receipts']} s); "
          f"dispatchers {where}, {st['binds']} binds each")  # fmt: skip
    for which in ("before", "after"):
        b = c[which]
        print(f"  bare client   {b['rate']:>9.1f} segments/s   ({which}; receipts in {b['seconds_to_receipts']} s; "
              f"{b['binds']} binds)")  # fmt: skip
    print(f"  ratio to the ceiling: {r['ratio']}")
    print(
        f"  CPU seconds until sent: {r['cpu_seconds_until_sent']}; bare client: {c['after']['cpu_seconds']}"
    )
    if "latency" in r:
        lat = r["latency"]["issue_to_first_submit_ms"]
        print(f"  issue -> first submit_sm over {r['latency']['samples']} warnings: "
              f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")  # fmt: skip
    print(f"  targets: {r['targets']}")
    print(f"  settings: {r['settings']}")
    print(f"  machine: {json.dumps(r['machine'])}; load average {r['loadavg_start']} -> {r['loadavg_end']}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipients", type=int, default=100_000, help="registered people the warning reaches")
    p.add_argument("--smsc", metavar="HOST:PORT", help="an SMSC to send to (default: a loopback peer)")
    p.add_argument("--system-id", default="wuhai", help="bind system_id at --smsc")
    p.add_argument("--password", default="secret", help="bind password at --smsc")
    p.add_argument(
        "--smsc-control",
        metavar="URL",
        help="the control endpoint of --smsc (loopback peer's), for its counters",
    )
    p.add_argument("--batch-size", type=int, default=1000, help="[dispatch] batch_size")
    p.add_argument("--batches-in-flight", type=int, default=4, help="[dispatch] batches_in_flight")
    p.add_argument(
        "--binds", type=int, default=2, help="[[dispatch.sms]] binds (the bare client: times --dispatchers)"
    )
    p.add_argument(
        "--dispatchers",
        type=int,
        help="1: a dispatcher in this process; more: that many `warnings-svc dispatch` processes (default: 2, "
        "one per core; 1 with --profile, or with --smsc and no --smsc-control)",
    )
    p.add_argument("--window", type=int, default=100, help="[[dispatch.sms]] window (and the bare client's)")
    p.add_argument(
        "--expand-chunk", type=int, default=DispatchSettings().expand_chunk, help="[dispatch] expand_chunk"
    )
    p.add_argument(
        "--first-chunk", type=int, default=DispatchSettings().first_chunk, help="[dispatch] first_chunk"
    )
    p.add_argument(
        "--sms-segments",
        type=int,
        default=SEGMENTS,
        help="[warnings] sms_segments: the SMS segments the warning's text must need (checked)",
    )
    p.add_argument(
        "--level", default="orange", choices=["yellow", "orange"], help="heat level of the warning"
    )
    p.add_argument(
        "--latency-samples", type=int, default=50, help="warnings timed issue -> first submit_sm (0: skip)"
    )
    p.add_argument("--latency-recipients", type=int, default=3, help="recipients of each latency warning")
    p.add_argument("--quick", action="store_true", help="smoke run: 5,000 recipients, 10 latency samples")
    p.add_argument("--profile", action="store_true", help="pyinstrument profile of the real path on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args()
    if args.quick:
        args.recipients, args.latency_samples = 5000, 10
    if args.dispatchers is None:
        # processes are watched through the SMSC's counters, and a profile is of this process
        args.dispatchers = 1 if args.profile or (args.smsc and not args.smsc_control) else 2
    try:
        if args.smsc:
            parse_smsc(args.smsc)
        if args.recipients < 1:
            raise BenchError("--recipients must be at least 1", 2)
        if not 1 <= args.dispatchers <= 8:
            raise BenchError("--dispatchers must be between 1 and 8", 2)
        if args.dispatchers > 1 and args.profile:
            raise BenchError("--profile profiles this process: it needs --dispatchers 1", 2)
        if args.dispatchers > 1 and args.smsc and not args.smsc_control:
            raise BenchError("--dispatchers above 1 needs the SMSC's counters: give --smsc-control", 2)
        try:
            DispatchSettings(
                batch_size=args.batch_size,
                batches_in_flight=args.batches_in_flight,
                expand_chunk=args.expand_chunk,
                first_chunk=args.first_chunk,
                sms=(
                    SmsEndpointSettings(
                        host="h", port=1, system_id="x", binds=args.binds, window=args.window
                    ),
                ),
            )
            Settings(warnings={"sms_segments": args.sms_segments})
        except ValueError as e:
            raise BenchError(f"invalid settings: {' '.join(str(e).split())}", 2) from None
        folder = Path(tempfile.mkdtemp(prefix="fanout-bench-pg-"))
        embedded = EmbeddedPostgres(folder)
        try:
            server_url = embedded.start()
            result = asyncio.run(run(server_url, embedded.pgdata, args))
        finally:
            embedded.stop()
            shutil.rmtree(folder, ignore_errors=True)
    except (BenchError, DatabaseError) as e:
        print(f"fanout: {e}", file=sys.stderr)
        sys.exit(getattr(e, "code", 2))
    if args.json:
        print(json.dumps(result))
    else:
        print_summary(result)


if __name__ == "__main__":
    main()
