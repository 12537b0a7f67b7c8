"""The benchmarks' command lines: bench/outbox.py runs end to end on its own embedded PostgreSQL and reports
every phase; bench/fanout.py refuses options it cannot honour before starting anything."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from aiohttp import web

from tests.factories_app import clean_environment
from tests.loopback import serving

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("flags", "phases"),
    [
        ((), {"baseline", "take", "results"}),  # expanded leased; receipts ride with the results
        (("--receipts-after", "--through-queue"), {"baseline", "expand", "claim", "results", "receipts"}),
    ],
)
def test_the_outbox_benchmark_reports_each_phase_per_delivery(
    flags: tuple[str, ...], phases: set[str]
) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "outbox.py"), "--recipients", "1000", "--json", *flags],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-2000:]  # it checks that every delivery ended delivered
    result = json.loads(run.stdout)
    assert result["deliveries"] == 1000
    assert set(result["phases"]) == phases
    assert result["total"]["postgres_s"] > 0 and result["total"]["wall_s"] > 0


def test_the_outbox_benchmark_refuses_a_silly_size_with_status_2() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "outbox.py"), "--recipients", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 2
    assert run.stderr.strip() == "outbox: --recipients must be between 1,000 and 1,000,000"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--dispatchers", "9"], "fanout: --dispatchers must be between 1 and 8"),
        (
            ["--dispatchers", "2", "--profile"],
            "fanout: --profile profiles this process: it needs --dispatchers 1",
        ),
        (
            ["--dispatchers", "2", "--smsc", "127.0.0.1:2775"],
            "fanout: --dispatchers above 1 needs the SMSC's counters: give --smsc-control",
        ),
    ],
)
def test_the_fanout_benchmark_refuses_impossible_dispatcher_options_with_status_2(
    arguments: list[str], message: str
) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fanout.py"), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1] == message


def test_the_fanout_benchmark_runs_two_dispatcher_processes_by_default() -> None:
    """Two processes of two binds each, against a bare client with as many binds as they have together."""
    run = subprocess.run(
        [
            *(sys.executable, str(ROOT / "bench" / "fanout.py")),
            *("--recipients", "1000", "--latency-samples", "3", "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert (result["settings"]["dispatchers"], result["settings"]["binds"]) == (2, 2)
    assert result["states"] == {"delivered": 1000}
    assert result["dispatcher_counters"]["sent"] == 1000  # added up from both processes as they stopped
    assert result["smsc_counters"]["submits"] == 2000
    assert result["smsc_counters"]["distinct_destinations"] == 1000
    for phase in ("before", "after"):
        assert result["ceiling"][phase]["binds"] == 4  # as many as the two processes open together
        assert result["ceiling"][phase]["accepted"] == 1000
    assert 0 < result["ratio"] == round(result["rate"] / result["ceiling"]["rate"], 3)
    assert result["latency"]["samples"] == 3


TINY_PUBLIC_READ = ("--workers", "2", "--clients", "10", "--duration", "2", "--approvals", "3", "--json")


@pytest.mark.slow
def test_the_public_read_benchmark_reports_both_servers_and_the_approvals() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "public_read.py"), *TINY_PUBLIC_READ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=clean_environment(),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["load"].startswith("wrk")  # scripts/install-debian-peers installs it
    for server in ("service", "static"):
        assert result[server]["requests"] > 0 and result[server]["errors"] == 0
        assert result[server]["p50_ms"] <= result[server]["p99_ms"]
    assert result["ratio"] > 0
    assert result["approvals"]["count"] == 3 and result["approvals"]["errors"] == 0
    assert result["own_sessions"] is True
    waits = result["probe"]["longest_waits_ms"]  # the idle process beside the load
    assert len(waits) == 5 and waits == sorted(waits) and waits[0] >= 0
    # the second phase: each reader pauses after every answer, 10 readers 1 ms for 8,000 a second
    paced = result["paced"]
    assert (paced["offered_requests_per_s"], paced["pause_ms"]) == (8000, 1)
    assert paced["service"]["requests"] > 0 and paced["service"]["errors"] == 0
    assert paced["approvals"]["count"] == 3 and paced["approvals"]["errors"] == 0


def _public_read_bench() -> ModuleType:
    """bench/public_read.py as a module (bench/ last on the path: no script there stands in for a library)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.append(str(ROOT / "bench"))
    return importlib.import_module("public_read")


async def test_without_wrk_the_public_read_benchmark_loads_with_its_own_bounded_client(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # the whole benchmark runs with wrk above; here the fallback load generator, against a small server
    bench = _public_read_bench()
    monkeypatch.setenv("PATH", "")
    tool = bench.load_tool()
    assert tool.startswith("aiohttp client")

    async def answer(request: web.Request) -> web.Response:
        return web.Response(
            text="ok" if request.path == "/a" else "missing", status=200 if request.path == "/a" else 404
        )

    app = web.Application()
    app.router.add_get("/{name}", answer)
    async with serving(app) as base:
        args = argparse.Namespace(clients=4, duration=1)
        paced = await bench.load(tool, base, ["/a"], args, tmp_path, pause_ms=50)
        wrong = await bench.load(tool, base, ["/a", "/b"], args, tmp_path)
    # 4 readers pausing 50 ms for 1 s: about 80 requests, none an error
    assert 20 <= paced["requests"] <= 100 and paced["errors"] == 0
    assert paced["p50_ms"] <= paced["p99_ms"]
    # every other path answers 404: counted as errors
    assert wrong["requests"] > paced["requests"] and 0.4 < wrong["errors"] / wrong["requests"] < 0.6


def _webhooks_bench() -> ModuleType:
    """bench/webhooks.py as a module (bench/ last on the path, as above)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.append(str(ROOT / "bench"))
    return importlib.import_module("webhooks")


def test_the_webhook_benchmark_bounds_the_service_by_the_cpu_it_used() -> None:
    import doctest

    bench = _webhooks_bench()
    assert doctest.testmod(bench).failed == 0
    # the dispatcher's own process binds when the others are light; the three together when they are not
    assert bench.fastest_s({"process": 300, "receiver": 10, "postgres": 10}, 2) == 0.3
    assert bench.fastest_s({"process": 300, "receiver": 10, "postgres": 10}, 1) == 0.32


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="the CPU is read from /proc")
def test_the_benchmarks_cpu_clock_counts_a_servers_running_and_ended_processes_and_names_the_peer() -> None:
    # this test's process stands for the postmaster: a child that burns 0.3 s of CPU counts while it runs
    # (a backend) and once it ended and was waited for (a backend that closed), besides the parent's own CPU
    _webhooks_bench()  # bench/ on the path
    from machine_facts import CpuClock

    server = CpuClock(os.getpid(), None)
    before = server.read()
    burn = "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\nsys.stdin.read()"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE)
    try:
        peer = CpuClock(None, child.pid, peer_name="receiver")
        deadline = time.monotonic() + 30
        while peer.read().get("receiver", 0.0) < 0.3 and time.monotonic() < deadline:
            time.sleep(0.02)
        running = CpuClock.delta(before, server.read())
        assert running["postgres"] - running["bench_python"] >= 0.25, running
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)
    ended = CpuClock.delta(before, server.read())
    assert ended["postgres"] - ended["bench_python"] >= 0.25, ended
