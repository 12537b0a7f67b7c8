"""One warning to 1,000 subscribed webhook endpoints: the time until every delivery is stored, beside a bare
aiohttp client posting the same signed bodies to the same endpoints, in the same run.

The endpoints: one receiver process (aiohttp on 127.0.0.1) answering 204 on every path; each subscription has
a path of its own, as 1,000 partners would have their own URLs.

- The ceiling (bare aiohttp): one ClientSession posts the warning's JSON document, signed per subscription
  (Standard Webhooks headers, each subscription's secret), to every endpoint, `--concurrency` at a time. Time
  from the first request to the last answer.
Both run on the event loop the service runs on (uvloop where installed).

- The service: a warning issued through the store (`lifecycle.store.act`: the approval writes one partner
  delivery per matching subscription), the partner dispatcher (running here, the same `--concurrency`)
  claims, signs, posts and stores every attempt. Time from the start of the approval to the moment the
  database holds every delivery as delivered (polled every 20 ms).

The ratio printed is the ceiling's time over the service's (1.0: as fast as a bare client; the target is 0.8).

Where /proc is readable (Linux), each run also prints the CPU each party used in its window: the bench's
process (the dispatcher, or the bare client), PostgreSQL (every backend, ended ones included) and the
receiver; and the best ratio that CPU allows on this machine: the service cannot finish before its own
process's CPU is spent, nor before all three processes' CPU is spread over every core (`cpu_bound_ratio`).

    python bench/webhooks.py [--endpoints 1000] [--concurrency 64] [--runs 3] [--json]

Loopback only; every wait is bounded. Progress goes to stderr; with ``--json`` stdout holds one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import asyncpg  # noqa: E402
from aiohttp import web  # noqa: E402
from machine_facts import CpuClock, postgres_pid  # noqa: E402  (bench/machine_facts.py, beside this script)

WAIT_S = 120.0


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------- CPU used


def cpu_used(clock: CpuClock, before: dict[str, float]) -> dict[str, int] | None:
    """Milliseconds of CPU the bench's process, the receiver and PostgreSQL used since `before`; None where
    /proc could not tell all three."""
    used = CpuClock.delta(before, clock.read())
    if not {"bench_python", "receiver", "postgres"} <= used.keys():
        return None
    return {"process": round(used["bench_python"] * 1000), "receiver": round(used["receiver"] * 1000),
            "postgres": round(used["postgres"] * 1000)}  # fmt: skip


def fastest_s(used: dict, cores: int) -> float:
    """The least wall time in which the CPU of `used` (milliseconds) could have been spent on `cores`: the
    bench's process runs on one core at a time, and all three together on every core at most.

    >>> fastest_s({"process": 240, "receiver": 110, "postgres": 90}, 2)
    0.24
    >>> fastest_s({"process": 200, "receiver": 150, "postgres": 150}, 2)
    0.25
    """
    return max(used["process"], sum(used.values()) / cores) / 1000


# ------------------------------------------------------------------------------------------- the endpoints


def receiver_main() -> None:
    """The receiver process: 204 to every POST; prints its port, then runs until its stdin closes."""

    async def answer(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        print(site._server.sockets[0].getsockname()[1], flush=True)  # type: ignore[union-attr]
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        await runner.cleanup()

    asyncio.run(main())


# ------------------------------------------------------------------------------------------- the ceiling


async def bare_posts(
    targets: list[tuple[str, str]], body: bytes, concurrency: int, clock: CpuClock
) -> tuple[float, dict[str, int] | None]:
    """Seconds for a bare aiohttp client to post `body`, signed with each target's secret, to every URL; and
    the CPU used meanwhile (`cpu_used`)."""
    from channels.webhooks.signing import signature_header

    limit = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(i: int, url: str, secret: str) -> None:
            async with limit:
                ts = int(time.time())
                message_id = f"msg_bare_{i}"
                headers = {
                    "content-type": "application/json",
                    "webhook-id": message_id,
                    "webhook-timestamp": str(ts),
                    "webhook-signature": signature_header([secret], message_id, ts, body),
                }
                async with session.post(url, data=body, headers=headers, allow_redirects=False) as answer:
                    await answer.read()
                    if not 200 <= answer.status < 300:
                        raise SystemExit(f"bench/webhooks.py: the bare client got {answer.status}")

        before = clock.read()
        started = time.monotonic()
        await asyncio.gather(*(post(i, url, secret) for i, (url, secret) in enumerate(targets)))
        took = time.monotonic() - started
        return took, cpu_used(clock, before)


# ---------------------------------------------------------------------------------------------- the service


async def service_run(
    url: str, total: int, concurrency: int, level: str, clock: CpuClock
) -> tuple[float, float, bytes, dict[str, int] | None]:
    """Seconds from the approval's start, and from the approval's return (the warning issued: its deliveries
    committed), to `total` deliveries stored as delivered; the body sent; and the CPU used from the issue to
    the last delivery stored (`cpu_used`)."""
    from channels.webhooks.client import WebhookChannel
    from tests.factories_dispatch import APPROVER, CTX, FORECASTER
    from warnings_svc.dissemination.partners.dispatch import PartnerDispatcher, options_from_settings
    from warnings_svc.lifecycle import store as ws
    from warnings_svc.lifecycle.transitions import Action
    from warnings_svc.settings import Settings

    pool = await asyncpg.create_pool(url, min_size=2, max_size=6)
    channel = WebhookChannel(allow_private=(ipaddress.ip_network("127.0.0.1/32"),), timeout_s=15.0)
    options = dataclasses.replace(options_from_settings(Settings()), concurrency=concurrency)  # the defaults
    dispatcher = PartnerDispatcher(pool, url, {"webhook": channel}, options)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        await asyncio.sleep(1.0)  # listening, as a running service is
        async with pool.acquire() as conn:
            now = datetime.now(UTC)
            onset = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
            draft = await ws.create(conn, CTX, FORECASTER, hazard="heat", level=level, onset=onset,
                                    expires=onset + timedelta(hours=24), content=ws.Content(areas=("150300",)),
                                    now=now)  # fmt: skip
            await ws.act(conn, CTX, FORECASTER, draft.warning_id, Action.submit, now=now)
            started = time.monotonic()  # the approval issues it and promises it to every subscription
            v = await ws.act(conn, CTX, APPROVER, draft.warning_id, Action.approve, now=datetime.now(UTC))
            before = clock.read()  # before the clock starts: reading /proc is the bench's
            issued = time.monotonic()
            used = None
            deadline = started + WAIT_S
            # the dispatcher counts the results it has stored (once their transaction committed): watched
            # here every millisecond at no cost to the database, then confirmed by the database itself
            while dispatcher.counters.stored.get("webhook", 0) < total and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            n = 0
            while True:
                stored_at = time.monotonic()
                n = await conn.fetchval(
                    "SELECT count(*) FROM svc.partner_delivery WHERE warning_id = $1 AND state = 'delivered'",
                    v.warning_id,
                )
                if n >= total or stored_at >= deadline:
                    used = cpu_used(clock, before)
                    break
                await asyncio.sleep(0.02)
            if n < total:
                raise SystemExit(
                    f"bench/webhooks.py: only {n} of {total} deliveries stored in {WAIT_S:.0f} s"
                )
            payload = await conn.fetchval(
                "SELECT payload FROM svc.partner_document WHERE warning_id = $1", v.warning_id
            )
            body = json.dumps(json.loads(payload), ensure_ascii=False, separators=(",", ":"))
            return stored_at - started, stored_at - issued, body.encode(), used
    finally:
        stop.set()
        await task
        await pool.close()


async def prepare(url: str, port: int, total: int) -> list[tuple[str, str]]:
    """`total` webhook subscriptions to paths of the receiver; their (URL, secret)."""
    from risk_zoning.io.database import upgrade
    from risk_zoning.store import ensure_built, region_units
    from warnings_svc.database import MIGRATIONS
    from warnings_svc.dissemination.partners import subscriptions as subs

    conn = await asyncpg.connect(url)
    try:
        await upgrade(conn, MIGRATIONS)
        await ensure_built(conn, "wuhai", progress=False)
        units = await region_units(conn, "wuhai")
        targets = []
        for i in range(total):
            address = f"http://127.0.0.1:{port}/partner/{i}"
            _, secret = await subs.create(
                conn, f"bench-{i % 50}", subs.check_spec("webhook", address, units=units)
            )
            targets.append((address, secret))
        return targets
    finally:
        await conn.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--receiver":
        receiver_main()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3, help="warnings each way (alternating)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.endpoints <= 20_000 or not 1 <= args.concurrency <= 1000 or not 1 <= args.runs <= 10:
        raise SystemExit("bench/webhooks.py: --endpoints 1-20000, --concurrency 1-1000, --runs 1-10")

    from risk_zoning.io.database import EmbeddedPostgres
    from warnings_svc.dissemination.dispatcher import tune_collector
    from warnings_svc.web.workers import run_event_loop  # uvloop, as the service runs its dispatcher

    receiver = subprocess.Popen(
        [sys.executable, __file__, "--receiver"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert receiver.stdout is not None
        port = int(receiver.stdout.readline())
        with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as folder:
            server = EmbeddedPostgres(Path(folder) / "pg")
            try:
                url = server.start()  # the bench's own server: its maintenance database holds the schema
                targets = asyncio.run(prepare(url, port, args.endpoints))
                say(f"{args.endpoints} webhook subscriptions on a receiver at 127.0.0.1:{port}")
                # the collector as in the serving process that runs the partner dispatcher (`settle_heap`);
                # the bare client runs under the same collector
                tune_collector()
                clock = CpuClock(postgres_pid(server.pgdata), receiver.pid, peer_name="receiver")
                bare, served, from_approval, bounds = [], [], [], []
                cpu: dict[str, list] = {"service": [], "bare": []}
                levels = ("red", "orange", "yellow")  # the levels of heat
                for run in range(args.runs):
                    whole, took, body, used = run_event_loop(
                        service_run(url, args.endpoints, args.concurrency, levels[run % 3], clock)
                    )
                    served.append(took)
                    from_approval.append(whole)
                    say(
                        f"run {run + 1}: service {took:.3f} s from the warning's issue to every delivery stored "
                        f"({whole:.3f} s from the approval's start; {len(body)} B)"
                    )
                    bare_took, bare_used = run_event_loop(bare_posts(targets, body, args.concurrency, clock))
                    bare.append(bare_took)
                    say(f"run {run + 1}: bare    {bare_took:.3f} s (the same signed bodies)")
                    if used is not None and bare_used is not None:
                        cpu["service"].append(used)
                        cpu["bare"].append(bare_used)
                        fastest = fastest_s(used, os.cpu_count() or 1)
                        bounds.append(bare_took / fastest)
                        say(
                            f"run {run + 1}: CPU in the service's window: its process {used['process']} ms, "
                            f"PostgreSQL {used['postgres']} ms, the receiver {used['receiver']} ms: no sooner "
                            f"than {fastest * 1000:.0f} ms on {os.cpu_count()} cores (ratio at most "
                            f"{bounds[-1]:.2f}); in the bare run's: the client {bare_used['process']} ms, the "
                            f"receiver {bare_used['receiver']} ms"
                        )
            finally:
                server.stop()
    finally:
        if receiver.stdin:
            receiver.stdin.close()
        receiver.wait(30)
    result = {
        "endpoints": args.endpoints,
        "concurrency": args.concurrency,
        "bare_s": [round(b, 3) for b in bare],
        "service_s": [round(s, 3) for s in served],
        "service_from_approval_s": [round(s, 3) for s in from_approval],
        "ratio": round(statistics.median(bare) / statistics.median(served), 2),
        "ratio_from_approval": round(statistics.median(bare) / statistics.median(from_approval), 2),
        "deliveries_per_s_service": round(args.endpoints / statistics.median(served)),
        "target": 0.8,
        "cpu_ms": cpu,
        "cpu_bound_ratio": round(statistics.median(bounds), 2) if bounds else None,
        "machine": {"cpus": os.cpu_count(), "when": datetime.now(UTC).isoformat(timespec="seconds")},
    }
    say(
        f"median: bare {statistics.median(bare):.3f} s, service {statistics.median(served):.3f} s from the issue "
        f"(ratio {result['ratio']}, target >= 0.8), {statistics.median(from_approval):.3f} s from the approval's "
        f"start (ratio {result['ratio_from_approval']})"
    )
    if bounds:
        say(f"the CPU the service used allows a ratio of at most {result['cpu_bound_ratio']} on this machine")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
