"""The public side under load: 200 concurrent readers of the alerts, the feed, CAP and GB/T documents and the
console's first page, against a plain static file server serving the same bytes, in the same run.

The service: `warnings-svc demo --workers N` (default: one per CPU) in a temporary data folder (embedded
PostgreSQL, the Wuhai risk database; the demo's forecast is scored before the load starts), with a few
warnings issued through the API beforehand so the public documents have content. The load: ``wrk -t2
-c CLIENTS`` with a Lua script spreading its requests over `/api/v1/alerts/active` (GeoJSON), the Atom feed,
the CAP document of every issued warning, one GB/T document and `/`; without wrk on PATH, a bounded aiohttp
client load generator in a separate process (the output says which). While the readers run, one client
approves warnings drafted and submitted beforehand (yellow and blue: one approval each), back to back at
an even pace, and their latencies are reported.

Two phases, each with its own approvals: first the readers read as fast as they are answered (the most the
service serves, and the ratio to the static server); then each pauses after every answer so that together
they offer about `--rate` requests a second (8,000 by default, above the 5,000 of the target): the latency
at that rate, readers' and approvals', without the machine saturated.

The baseline: each URL's body fetched once, written to a file, and served by aiohttp's static route in the
same number of processes sharing the port with SO_REUSEPORT (a plain static file server on the same
framework), under the same load. The ratio printed is the service's requests/s over the static server's.

The servers run each in a session of their own, as a supervisor starts a service, apart from the load
generator (which stands for the public on other machines); `--one-session` keeps them in its session, as
earlier runs did. An idle probe process measures how long anything here waited for a CPU during the load,
so that a slow approval can be told apart from a machine that stalled.

    python bench/public_read.py [--workers N] [--clients 200] [--duration 20] [--approvals 40] [--rate 8000]
                                [--access-log] [--one-session] [--json]

The service runs with `--no-access-log` unless `--access-log` is given: behind a reverse proxy the proxy
logs the requests, and the line per request costs about a third of the service's rate here.

Loopback only; every phase is bounded in time. Progress goes to stderr; with ``--json`` stdout holds one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGETS = {"requests_per_s": 5000, "p99_ms": 100, "ratio": 0.5, "approval_p99_ms": 150}
START_SECONDS = 300  # a first start runs initdb and builds the Wuhai risk database
SCORED_SECONDS = 120  # until the demo's forecast has left the inbox
STOP_SECONDS = 60
ISSUED = (  # the warnings the public documents show: (hazard, level, district)
    ("heat", "yellow", "150302"),
    ("rainstorm", "blue", "150303"),
    ("sandstorm", "yellow", "150304"),
)
HAZARDS = ("heat", "rainstorm", "sandstorm", "frost")
DISTRICTS = ("150302", "150303", "150304")


class BenchError(Exception):
    """The benchmark cannot run or did not finish; one line for the user."""


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------- the service


def service_command() -> list[str]:
    return [sys.executable, "-c", "import sys; from warnings_svc.cli import main; sys.exit(main())"]


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("WARNINGS_SVC_")}
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}


@contextlib.contextmanager
def running_service(
    data_dir: Path,
    port: int,
    workers: int,
    log_path: Path,
    *,
    access_log: bool = False,
    own_session: bool = True,
    with_peers: bool = False,
) -> Iterator[subprocess.Popen[str]]:
    """`warnings-svc demo --workers N` until the console line is printed; stopped with SIGTERM on leaving.

    In a session of its own unless `own_session` is false, as a supervisor starts it (systemd gives each service
    a group of its own): with the kernel's autogroup scheduling, a session is a scheduling group, and a service
    sharing one with the load generator was starved now and then for 0.5-1.5 s (bench/LOG.md)."""
    with log_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                *service_command(),
                "demo",
                *("--data-dir", str(data_dir), "--port", str(port), "--workers", str(workers)),
                *(() if access_log else ("--no-access-log",)),
                *(() if with_peers else ("--no-peers",)),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=environment(),
            start_new_session=own_session,
        )
        try:
            deadline = time.monotonic() + START_SECONDS
            assert proc.stdout is not None
            for line in proc.stdout:
                if line.startswith("Console:"):
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"the service did not start within {START_SECONDS} s")
            else:
                raise BenchError(f"the service ended while starting; see {log_path}")
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def token(data_dir: Path, user: str) -> str:
    out = subprocess.run(
        [*service_command(), "user", "token", user, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=120,
        check=True,
    )
    return str(json.loads(out.stdout)["token"])


def wait_for_inbox(data_dir: Path) -> None:
    """Until the demo's forecast has been scored (its scoring is not part of the load)."""
    deadline = time.monotonic() + SCORED_SECONDS
    inbox = data_dir / "inbox"
    while time.monotonic() < deadline:
        if inbox.is_dir() and not any(inbox.iterdir()):
            return
        time.sleep(0.5)
    raise BenchError(f"the demo's forecast was not scored within {SCORED_SECONDS} s")


async def submitted(session: aiohttp.ClientSession, base: str, forecaster: str, n: int) -> list[int]:
    """`n` yellow and blue warnings drafted and submitted by the forecaster; their ids."""
    onset = datetime.now(UTC) + timedelta(hours=1)
    ids = []
    for i in range(n):
        hazard, level, district = (
            ISSUED[i] if i < len(ISSUED) else (HAZARDS[i % 4], ("yellow", "blue")[i % 2], DISTRICTS[i % 3])
        )
        body = {
            "hazard": hazard,
            "level": level,
            "areas": [district],
            "onset": onset.isoformat(),
            "expires": (onset + timedelta(hours=24)).isoformat(),
        }
        auth = {"Authorization": f"Bearer {forecaster}"}
        async with session.post(f"{base}/api/v1/warnings", json=body, headers=auth) as r:
            if r.status != 201:
                raise BenchError(f"drafting a warning answered {r.status}: {(await r.text())[:300]}")
            wid = (await r.json())["id"]
        async with session.post(f"{base}/api/v1/warnings/{wid}/submit", headers=auth) as r:
            if r.status != 200:
                raise BenchError(f"submitting warning {wid} answered {r.status}: {(await r.text())[:300]}")
        ids.append(wid)
    return ids


async def approve(
    session: aiohttp.ClientSession, base: str, chief: str, wid: int
) -> tuple[float, int, dict[str, Any]]:
    """One approval: its seconds, status and the issued version."""
    started = time.perf_counter()
    async with session.post(
        f"{base}/api/v1/warnings/{wid}/approve",
        json={"comment": "同意"},
        headers={"Authorization": f"Bearer {chief}"},
    ) as r:
        body = await r.read()
        seconds = time.perf_counter() - started
        return seconds, r.status, (json.loads(body) if r.status == 200 else {})


async def prepare(base: str, forecaster: str, chief: str, approvals: int) -> tuple[list[str], list[int]]:
    """Issue the public warnings; submit the drafts to approve under load. The paths to read, the drafts."""
    async with aiohttp.ClientSession() as session:
        alerts = []
        for wid in await submitted(session, base, forecaster, len(ISSUED)):
            _, status, version = await approve(session, base, chief, wid)
            if status != 200:
                raise BenchError(f"approving warning {wid} answered {status}")
            alerts.append(f"{wid}-{version['version']}")
        drafts = await submitted(session, base, forecaster, approvals)
        paths = ["/api/v1/alerts/active", "/feeds/alerts.atom", "/"]
        paths += [f"/api/v1/alerts/{alert}.cap" for alert in alerts]
        paths.append(f"/api/v1/alerts/{alerts[0]}.gbt.xml")
        for path in paths:  # every path answers before the load: errors under load are the load's
            async with session.get(base + path) as r:
                if r.status != 200:
                    raise BenchError(f"GET {path} answered {r.status} before the load")
    return paths, drafts


async def approving(
    base: str, chief: str, drafts: list[int], duration: float
) -> list[tuple[float, int, dict[str, Any]]]:
    """Approve `drafts` one after the other, evenly over the middle of `duration`."""
    pace = duration * 0.8 / max(len(drafts), 1)
    out = []
    async with aiohttp.ClientSession() as session:
        await asyncio.sleep(duration * 0.1)
        for wid in drafts:
            began = time.monotonic()
            out.append(await approve(session, base, chief, wid))
            await asyncio.sleep(max(pace - (time.monotonic() - began), 0))
    return out


# ---------------------------------------------------------------------------------------------- static


def fetch_bodies(base: str, paths: list[str], folder: Path) -> list[str]:
    """Each path's body written to `folder` once; the static server's paths for them."""
    import urllib.request

    static = []
    for i, path in enumerate(paths):
        with urllib.request.urlopen(base + path, timeout=30) as r:
            (folder / f"{i}").write_bytes(r.read())
        static.append(f"/files/{i}")
    return static


def _static_worker(folder: str, port: int, parent: int, own_session: bool) -> None:
    from aiohttp import web

    from warnings_svc.forecast.runs import die_with_parent

    die_with_parent(parent)
    if own_session:  # arranged as the service is (`running_service`)
        os.setsid()

    async def serve() -> None:
        app = web.Application()
        app.router.add_static("/files", folder)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True).start()
        await asyncio.Event().wait()

    asyncio.run(serve())


@contextlib.contextmanager
def static_server(folder: Path, port: int, workers: int, own_session: bool) -> Iterator[None]:
    context = multiprocessing.get_context("spawn")
    processes: list[BaseProcess] = [
        context.Process(target=_static_worker, args=(str(folder), port, os.getpid(), own_session))
        for _ in range(workers)
    ]
    for p in processes:
        p.start()
    try:
        deadline = time.monotonic() + 60
        while True:  # until something answers on the port (all listen within a moment of each other)
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if time.monotonic() > deadline:
                raise BenchError("the static file server did not start within 60 s")
            time.sleep(0.2)
        time.sleep(1.0)
        yield
    finally:
        for p in processes:
            p.terminate()
        for p in processes:
            p.join(10)


# ---------------------------------------------------------------------------------------------- load


LUA = """
paths = {%s}
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", paths[(counter %% #paths) + 1])
end
"""
LUA_PAUSE = """
delay = function()
  return %d
end
"""


def _milliseconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip()).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


async def wrk_load(
    base: str, paths: list[str], clients: int, duration: int, folder: Path, pause_ms: int = 0
) -> dict[str, Any]:
    script = folder / "paths.lua"
    script.write_text(
        LUA % ", ".join(json.dumps(p) for p in paths) + (LUA_PAUSE % pause_ms if pause_ms else "")
    )
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t2", f"-c{clients}", f"-d{duration}s", "--latency", "--timeout", "10s", "-s", str(script), base,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), duration + 60)
    text = out.decode()
    if proc.returncode != 0 or "Requests/sec" not in text:
        raise BenchError(f"wrk failed: {(err.decode() or text).strip()[:300]}")
    requests = int(re.search(r"(\d+) requests in", text).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests": requests,
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),  # type: ignore[union-attr]
        "p50_ms": _milliseconds(re.search(r"^\s+50%\s+(\S+)", text, re.MULTILINE).group(1)),  # type: ignore[union-attr]
        "p99_ms": _milliseconds(re.search(r"^\s+99%\s+(\S+)", text, re.MULTILINE).group(1)),  # type: ignore[union-attr]
        "errors": (int(non_2xx.group(1)) if non_2xx else 0)
        + (sum(map(int, sockets.groups())) if sockets else 0),
    }


def _client_load(
    base: str, paths: list[str], clients: int, duration: int, pause_ms: int, answer: Any
) -> None:
    """The fallback load generator (a process of its own): `clients` connections reading `paths` in turn, each
    pausing `pause_ms` after every answer."""

    async def run() -> dict[str, Any]:
        latencies: list[float] = []
        errors = 0
        stop_at = time.monotonic() + duration

        async def client(session: aiohttp.ClientSession, offset: int) -> None:
            nonlocal errors
            i = offset
            while time.monotonic() < stop_at:
                started = time.perf_counter()
                try:
                    async with session.get(base + paths[i % len(paths)]) as r:
                        await r.read()
                        errors += r.status >= 400
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                latencies.append(time.perf_counter() - started)
                i += 1
                if pause_ms:
                    await asyncio.sleep(pause_ms / 1000)

        connector = aiohttp.TCPConnector(limit=clients)
        timeout = aiohttp.ClientTimeout(total=10)
        began = time.monotonic()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await asyncio.gather(*(client(session, k) for k in range(clients)))
        elapsed = time.monotonic() - began
        ms = np.array(latencies) * 1000
        return {
            "requests": len(latencies),
            "requests_per_s": len(latencies) / elapsed,
            "p50_ms": float(np.percentile(ms, 50)) if len(ms) else None,
            "p99_ms": float(np.percentile(ms, 99)) if len(ms) else None,
            "errors": errors,
        }

    answer.send(asyncio.run(run()))


async def answer_of(target: Callable[..., None], args: tuple[Any, ...], within: float) -> Any:
    """Run `target(*args, answer)` in a spawned process; what it sends on `answer` within `within` seconds,
    else None (the process is then killed)."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    proc = context.Process(target=target, args=(*args, send))
    proc.start()
    send.close()
    loop = asyncio.get_running_loop()
    ready = await loop.run_in_executor(None, receive.poll, within)
    result = receive.recv() if ready else None
    proc.join(10)
    if proc.is_alive():
        proc.kill()
    return result


async def client_load(
    base: str, paths: list[str], clients: int, duration: int, pause_ms: int = 0
) -> dict[str, Any]:
    result = await answer_of(_client_load, (base, paths, clients, duration, pause_ms), duration + 120)
    if result is None:
        raise BenchError("the load generator did not finish")
    return dict(result)


async def load(
    tool: str, base: str, paths: list[str], args: argparse.Namespace, folder: Path, pause_ms: int = 0
) -> dict[str, Any]:
    """`args.clients` readers for `args.duration` seconds, each as fast as it is answered, or pausing
    `pause_ms` after every answer (a reader's pace: then they offer about clients / pause requests a second)."""
    if tool == "wrk":
        return await wrk_load(base, paths, args.clients, args.duration, folder, pause_ms)
    return await client_load(base, paths, args.clients, args.duration, pause_ms)


def pause_for(clients: int, rate: int) -> int:
    """The pause (whole milliseconds) after each answer that makes `clients` readers offer about `rate`
    requests a second.

    >>> pause_for(200, 8000), pause_for(200, 5000), pause_for(10, 100000)
    (25, 40, 1)
    """
    return max(1, round(1000 * clients / rate))


# ---------------------------------------------------------------------------------------------- the machine


PROBE_SLEEP_SECONDS = 0.005


def _stolen_seconds() -> float | None:
    """CPU time the hypervisor has taken from this machine since boot (Linux's `steal`), or None."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _stall_probe(duration: float, answer: Any) -> None:
    """A process doing nothing but sleeping 5 ms at a time, in a session of its own: how much longer than that
    it waited for a CPU tells what any process here could have waited, whatever the service does."""
    os.setsid()
    stolen_before = _stolen_seconds()
    waits: list[float] = []
    stop_at = time.monotonic() + duration
    while time.monotonic() < stop_at:
        started = time.perf_counter()
        time.sleep(PROBE_SLEEP_SECONDS)
        waits.append(time.perf_counter() - started - PROBE_SLEEP_SECONDS)
    stolen_after = _stolen_seconds()
    stolen = stolen_after - stolen_before if stolen_before is not None and stolen_after is not None else None
    longest = sorted(waits)[-5:]
    answer.send({"longest_waits_ms": [round(1000 * w, 1) for w in longest], "stolen_s": stolen})


async def stall_probe(duration: float) -> dict[str, Any] | None:
    """`_stall_probe` over `duration` seconds, in a process of its own; None when it gave no answer."""
    result = await answer_of(_stall_probe, (duration,), duration + 60)
    return dict(result) if result is not None else None


# ---------------------------------------------------------------------------------------------- run


def percentile_ms(seconds: list[float], q: float) -> float | None:
    return float(np.percentile(np.array(seconds) * 1000, q)) if seconds else None


def load_tool() -> str:
    """wrk when it is on PATH, else the bounded aiohttp client (`_client_load`)."""
    return "wrk" if shutil.which("wrk") else "aiohttp client load generator (no wrk on PATH)"


async def measure(args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    tool = load_tool()
    data_dir = folder / "data"
    port, static_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    log(
        f"starting the service: demo --workers {args.workers}{'' if args.access_log else ' --no-access-log'}"
        f" on {base}"
    )
    own_session = not args.one_session
    with running_service(
        data_dir,
        port,
        args.workers,
        folder / "service.log",
        access_log=args.access_log,
        own_session=own_session,
        with_peers=args.with_peers,
    ):
        wait_for_inbox(data_dir)
        forecaster, chief = token(data_dir, "forecaster"), token(data_dir, "chief")
        phases = 2 if args.rate else 1
        paths, drafts = await prepare(base, forecaster, chief, args.approvals * phases)
        log(f"{len(paths)} public paths; {len(drafts)} drafts to approve; load: {tool}")
        log(f"readers as fast as they are answered, {args.duration} s")
        service, approvals, probe = await asyncio.gather(
            load(tool, base, paths, args, folder),
            approving(base, chief, drafts[: args.approvals], args.duration),
            stall_probe(args.duration),
        )
        paced = None
        if args.rate:
            pause_ms = pause_for(args.clients, args.rate)
            log(
                f"readers pausing {pause_ms} ms after each answer (about {args.rate} requests/s), {args.duration} s"
            )
            paced_service, paced_approvals, paced_probe = await asyncio.gather(
                load(tool, base, paths, args, folder, pause_ms),
                approving(base, chief, drafts[args.approvals :], args.duration),
                stall_probe(args.duration),
            )
            paced = {
                "offered_requests_per_s": args.rate,
                "pause_ms": pause_ms,
                "service": paced_service,
                "approvals": approval_figures(paced_approvals),
                "probe": paced_probe,
            }
        files = folder / "static"
        files.mkdir()
        static_paths = fetch_bodies(base, paths, files)
    log(f"static file server: aiohttp add_static, {args.workers} processes with SO_REUSEPORT")
    with static_server(files, static_port, args.workers, own_session):
        static = await load(tool, f"http://127.0.0.1:{static_port}", static_paths, args, folder)
    return {
        "load": tool,
        "workers": args.workers,
        "access_log": args.access_log,
        "clients": args.clients,
        "duration_s": args.duration,
        "paths": paths,
        "service": service,
        "static": static,
        "static_server": "aiohttp static route, same process count, SO_REUSEPORT (a plain static file server "
        "on the same framework)",
        "ratio": service["requests_per_s"] / static["requests_per_s"] if static["requests_per_s"] else None,
        "approvals": approval_figures(approvals),
        "paced": paced,
        "targets": TARGETS,
        "own_sessions": own_session,
        "probe": probe,
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
    }


def approval_figures(approvals: list[tuple[float, int, Any]]) -> dict[str, Any]:
    seconds = [s for s, status, _ in approvals if status == 200]
    return {
        "count": len(approvals),
        "errors": len(approvals) - len(seconds),
        "p50_ms": percentile_ms(seconds, 50),
        "p99_ms": percentile_ms(seconds, 99),
        "slowest_ms": [round(1000 * x, 1) for x in sorted(seconds)[-5:]],
    }


def print_summary(r: dict[str, Any]) -> None:
    def row(name: str, f: dict[str, Any]) -> str:
        return (
            f"{name:<8} {f['requests_per_s']:>9.0f} req/s  p50 {f['p50_ms']:.1f} ms  p99 {f['p99_ms']:.1f} ms  "
            f"errors {f['errors']}  ({f['requests']} requests)"
        )

    def approvals(a: dict[str, Any]) -> None:
        p50, p99 = (f"{a[k]:.1f} ms" if a[k] is not None else "n/a" for k in ("p50_ms", "p99_ms"))
        print(
            f"approval {a['count']} under load, p50 {p50}, p99 {p99}, errors {a['errors']}   "
            f"target p99 < {t['approval_p99_ms']} ms"
        )
        print(f"         slowest approvals: {', '.join(f'{ms:.0f}' for ms in a['slowest_ms'])} ms")

    def machine(probe: dict[str, Any] | None) -> None:
        if probe is not None:
            stolen = (
                "" if probe["stolen_s"] is None else f"; the hypervisor took {probe['stolen_s']:.1f} s of CPU"
            )
            print(
                f"         an idle process's longest waits for a CPU under the service's load: "
                f"{', '.join(f'{ms:.0f}' for ms in probe['longest_waits_ms'])} ms{stolen}"
            )

    t = r["targets"]
    print(
        f"load: {r['load']}, {r['clients']} clients, {r['duration_s']} s; {r['workers']} worker processes each; "
        f"service access log {'on' if r['access_log'] else 'off'}"
    )
    print("readers as fast as they are answered:")
    print(row("service", r["service"]) + f"   target >= {t['requests_per_s']} req/s")
    print(row("static", r["static"]) + f"   {r['static_server']}")
    print(f"ratio    service/static {r['ratio']:.2f}   target >= {t['ratio']}")
    approvals(r["approvals"])
    machine(r["probe"])
    paced = r.get("paced")
    if paced is not None:
        print(f"readers pausing {paced['pause_ms']} ms after each answer (about {paced['offered_requests_per_s']} "
              "requests/s offered):")  # fmt: skip
        print(
            row("service", paced["service"])
            + f"   target p99 < {t['p99_ms']} ms at >= {t['requests_per_s']} req/s"
        )
        approvals(paced["approvals"])
        machine(paced["probe"])
    print(f"machine  {r['cpus']} CPUs, load average {r['loadavg'][0]:.2f} at the end")
    if not r["own_sessions"]:
        print("         --one-session: the servers shared the load generator's session (scheduling group)")


def bounded(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        if not text.isdigit() or not low <= int(text) <= high:
            raise argparse.ArgumentTypeError(f"give a whole number from {low} to {high}")
        return int(text)

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(prog="public_read", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=bounded(1, 16), default=os.cpu_count() or 1)
    parser.add_argument("--clients", type=bounded(1, 1000), default=200)
    parser.add_argument("--duration", type=bounded(1, 120), default=20, help="seconds of load per server")
    parser.add_argument("--approvals", type=bounded(1, 500), default=40, help="approvals in each phase")
    parser.add_argument(
        "--rate",
        type=bounded(0, 100_000),
        default=8000,
        help="requests/s the readers offer in the second phase, each pausing after every answer "
        "(0: no second phase)",
    )
    parser.add_argument(
        "--access-log",
        action="store_true",
        help="keep the service's line per request (off by default: a reverse proxy logs them in production)",
    )
    parser.add_argument(
        "--one-session",
        action="store_true",
        help="run the servers in the load generator's session, as runs before 2026-12-05 16:00 UTC did "
        "(by default each runs in a session of its own, as under a supervisor)",
    )
    parser.add_argument(
        "--with-peers",
        action="store_true",
        help="run the demo with its simulated peers of the area channels (an MQTT broker with 263 terminals, "
        "gateways, a CBC, a platform, a newsroom) in the service's own process, every approval put out to them; "
        "by default they are left out (`demo --no-peers`): they are not part of the service in production",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-public-read-"))
    try:
        result = asyncio.run(measure(args, folder))
    except BenchError as e:
        print(f"public_read: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result))
    else:
        print_summary(result)


if __name__ == "__main__":
    main()
