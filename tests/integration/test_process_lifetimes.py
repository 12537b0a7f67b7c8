"""The processes the service starts end with it: scoring workers die when it is killed, and the embedded
PostgreSQL a killed service left running is taken over by the next start and stopped by its clean stop. Web
workers (`--workers`) share one port and the database's sessions, are restarted when killed, and stop with
the service."""

from __future__ import annotations

import http.client
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import psutil
import pytest

from risk_zoning.io.database import HANDLE_FILE, prune_dead_handles
from tests.factories_app import clean_environment, warnings_svc_command
from tests.ports import free_port

START_SECONDS = 300  # a first start runs initdb and builds the Wuhai risk database
WORKER_SECONDS = 90  # the demo forecast reaches a scoring worker after an inbox poll or two
GONE_SECONDS = 10
STOP_SECONDS = 30


def postmaster_pid(pgdata: Path) -> int | None:
    pidfile = pgdata / "postmaster.pid"
    return int(pidfile.read_text().split()[0]) if pidfile.exists() else None


def wait_until(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A data folder (not under pytest's root, see test_service.demo_dir); any PostgreSQL left there stops."""
    folder = Path(tempfile.mkdtemp(prefix="warnings-svc-lifetimes-"))
    yield folder / "data"
    pid = postmaster_pid(folder / "data" / "postgres")
    if pid is not None and pid_alive(pid):
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
    shutil.rmtree(folder, ignore_errors=True)


class Demo:
    """`warnings-svc demo` on `data_dir` as a child process, its stdout read on a thread."""

    def __init__(self, data_dir: Path, stderr: IO[bytes], *options: str) -> None:
        self.port = free_port()
        self.passwords: dict[str, str] = {}  # the demo users', as printed
        self.proc = subprocess.Popen(
            [
                *warnings_svc_command(),
                "demo",
                "--data-dir",
                str(data_dir),
                "--port",
                str(self.port),
                *options,
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=clean_environment(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_ready(self) -> None:
        """Until the console line is printed and /readyz answers 200."""
        deadline = time.monotonic() + START_SECONDS
        while True:
            line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.1))
            assert line is not None, "the demo ended before printing its console address"
            if line.startswith("Demo user:"):
                name, _, password = line.split()[2:5]
                self.passwords[name] = password
            if line.startswith("Console:"):
                break
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=30) as answer:
            assert answer.status == 200

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)

    def end(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=STOP_SECONDS)


def is_scoring_worker(process: psutil.Process) -> bool:
    try:
        return "spawn_main" in " ".join(process.cmdline())
    except psutil.NoSuchProcess:
        return False


def alive(process: psutil.Process) -> bool:
    """Running and not a zombie: an orphan waits as a zombie until whatever adopted it reaps it."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def pid_alive(pid: int) -> bool:
    try:
        return alive(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
def test_killing_the_service_with_sigkill_ends_its_scoring_worker_and_resource_tracker(
    data_dir: Path, tmp_path: Path
) -> None:
    children: list[psutil.Process] = []
    with (tmp_path / "demo.stderr").open("wb") as stderr:
        demo = Demo(data_dir, stderr)
        try:
            demo.wait_ready()
            assert wait_until(lambda: any(is_scoring_worker(p) for p in demo.descendants()), WORKER_SECONDS)
            children = demo.descendants()
            assert children, "the service started no worker processes"
            os.kill(demo.proc.pid, signal.SIGKILL)
            demo.proc.wait(timeout=STOP_SECONDS)
            wait_until(lambda: not any(alive(p) for p in children), GONE_SECONDS)
            survivors = [(p.pid, " ".join(p.cmdline())) for p in children if alive(p)]
            assert survivors == []
        finally:
            demo.end()
            for child in children:
                if alive(child):
                    child.kill()


@pytest.mark.slow
def test_a_start_after_sigkill_takes_over_postgresql_and_a_clean_stop_then_stops_it(
    data_dir: Path, tmp_path: Path
) -> None:
    pgdata = data_dir / "postgres"
    with (tmp_path / "first.stderr").open("wb") as stderr:
        first = Demo(data_dir, stderr)
        try:
            first.wait_ready()
            os.kill(first.proc.pid, signal.SIGKILL)
            first.proc.wait(timeout=STOP_SECONDS)
        finally:
            first.end()
    left_running = postmaster_pid(pgdata)
    assert left_running is not None and pid_alive(left_running)

    with (tmp_path / "second.stderr").open("wb") as stderr:
        second = Demo(data_dir, stderr)
        try:
            second.wait_ready()
            assert postmaster_pid(pgdata) == left_running  # taken over, not a second server
            second.proc.send_signal(signal.SIGTERM)
            assert second.proc.wait(timeout=STOP_SECONDS) == 0
        finally:
            second.end()
    assert wait_until(lambda: not pid_alive(left_running), GONE_SECONDS)
    assert postmaster_pid(pgdata) is None
    assert "Traceback" not in (tmp_path / "second.stderr").read_text("utf-8", errors="replace")


def test_pruning_handles_drops_dead_pids_reused_pids_and_this_process_unless_it_joined(
    tmp_path: Path,
) -> None:
    ended = subprocess.Popen(["sleep", "0"])
    ended.wait()
    older = subprocess.Popen(["sleep", "30"])
    try:
        handles = tmp_path / HANDLE_FILE
        time.sleep(1.5)  # past the second of slack, so a process started from here on is younger
        handles.write_text(json.dumps([ended.pid, older.pid, os.getpid()]))
        written = handles.stat().st_mtime
        os.utime(handles, (written - 5, written - 5))  # as if written before `older` started...
        assert prune_dead_handles(tmp_path, joined=False) == [ended.pid, older.pid, os.getpid()]
        assert json.loads(handles.read_text()) == []

        handles.write_text(json.dumps([ended.pid, older.pid, os.getpid()]))  # ...and after it started
        assert prune_dead_handles(tmp_path, joined=True) == [ended.pid]
        assert json.loads(handles.read_text()) == [older.pid, os.getpid()]
    finally:
        older.kill()
        older.wait()


def web_workers(demo: Demo) -> set[int]:
    """The pids of the demo's web workers: its spawned children (not the resource tracker)."""
    return {p.pid for p in psutil.Process(demo.proc.pid).children() if is_scoring_worker(p)}


def answered_by(demo: Demo, path: str, headers: dict[str, str] | None = None) -> tuple[int, int]:
    """GET `path` on a new connection: the status, and the pid of the worker that holds the connection."""
    connection = http.client.HTTPConnection("127.0.0.1", demo.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        status = connection.getresponse().status
        client_port = connection.sock.getsockname()[1]
        for pid in web_workers(demo):
            for c in psutil.Process(pid).net_connections(kind="tcp"):
                if c.laddr and c.laddr.port == demo.port and c.raddr and c.raddr.port == client_port:
                    return status, pid
        raise AssertionError(f"no web worker holds the connection from port {client_port}")
    finally:
        connection.close()


def answers_from_another_worker(demo: Demo, than: int, path: str, headers: dict[str, str]) -> int:
    """The status of GET `path` answered by a worker other than `than` (new connections until one is)."""
    for _ in range(100):  # the kernel spreads connections by their ports: one lands elsewhere soon
        status, pid = answered_by(demo, path, headers)
        if pid != than:
            return status
    raise AssertionError("every connection went to the same worker")


def log_in(demo: Demo, name: str) -> tuple[str, int]:
    """A console session for the demo user `name`: its cookie, and the pid of the worker that made it."""
    connection = http.client.HTTPConnection("127.0.0.1", demo.port, timeout=30)
    try:
        form = urllib.parse.urlencode({"name": name, "password": demo.passwords[name], "next": "/"})
        connection.request(
            "POST", "/console/login", body=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        answer = connection.getresponse()
        answer.read()
        assert answer.status == 303, answer.status
        cookie = answer.getheader("Set-Cookie", "").split(";")[0]
        client_port = connection.sock.getsockname()[1]
        pid = next(
            pid
            for pid in web_workers(demo)
            for c in psutil.Process(pid).net_connections(kind="tcp")
            if c.raddr and c.raddr.port == client_port
        )
        return cookie, pid
    finally:
        connection.close()


@pytest.mark.slow
def test_two_web_workers_share_the_port_and_sessions_and_a_killed_one_is_replaced_until_sigterm_ends_all(
    data_dir: Path, tmp_path: Path
) -> None:
    pgdata = data_dir / "postgres"
    descendants: list[psutil.Process] = []
    with (tmp_path / "demo.stderr").open("wb") as stderr:
        demo = Demo(data_dir, stderr, "--workers", "2")
        try:
            demo.wait_ready()
            workers = web_workers(demo)
            assert len(workers) == 2
            answering: set[int] = set()
            for _ in range(100):
                status, pid = answered_by(demo, "/healthz")
                assert status == 200
                answering.add(pid)
                if answering == workers:
                    break
            assert answering == workers  # two distinct processes answer on the one port

            cookie, made_by = log_in(demo, "forecaster")
            assert answered_by(demo, "/api/v1/proposals")[0] == 401  # proposals need a login...
            assert answers_from_another_worker(demo, made_by, "/api/v1/proposals", {"Cookie": cookie}) == 200

            os.kill(made_by, signal.SIGKILL)
            assert wait_until(lambda: len(web_workers(demo) - {made_by}) == 2, 60)
            assert wait_until(lambda: answered_by(demo, "/healthz")[0] == 200, 10)
            replacement = (web_workers(demo) - workers).pop()
            assert answers_from_another_worker(demo, replacement, "/healthz", {}) == 200

            descendants = demo.descendants()
            postmaster = postmaster_pid(pgdata)
            demo.proc.send_signal(signal.SIGTERM)
            assert demo.proc.wait(timeout=STOP_SECONDS + 60) == 0
            assert wait_until(lambda: not any(alive(p) for p in descendants), GONE_SECONDS)
            assert postmaster is not None and wait_until(lambda: not pid_alive(postmaster), GONE_SECONDS)
        finally:
            demo.end()
            for child in descendants:
                if alive(child):
                    child.kill()
    assert "Traceback" not in (tmp_path / "demo.stderr").read_text("utf-8", errors="replace")


@pytest.mark.slow
def test_web_workers_that_keep_dying_make_the_service_exit_1_with_one_line(
    data_dir: Path, tmp_path: Path
) -> None:
    from warnings_svc.web.workers import MAX_RESTARTS

    pgdata = data_dir / "postgres"
    stderr_path = tmp_path / "demo.stderr"
    with stderr_path.open("wb") as stderr:
        demo = Demo(data_dir, stderr, "--workers", "2")
        try:
            demo.wait_ready()
            killed: set[int] = set()
            for _ in range(MAX_RESTARTS + 1):  # within the restart window: the service gives up after that
                assert wait_until(lambda: bool(web_workers(demo) - killed), 60)
                victim = min(web_workers(demo) - killed)
                os.kill(victim, signal.SIGKILL)
                killed.add(victim)
            assert demo.proc.wait(timeout=STOP_SECONDS + 60) == 1
        finally:
            demo.end()
    output = stderr_path.read_text("utf-8", errors="replace")
    said = [line for line in output.splitlines() if line.startswith("warnings-svc: web workers")]
    assert len(said) == 1 and "giving up" in said[0], output[-3000:]
    assert wait_until(lambda: postmaster_pid(pgdata) is None, GONE_SECONDS)
