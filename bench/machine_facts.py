"""What the benchmarks report about the machine they ran on (the figures mean little without it), and the CPU
time its processes used."""

from __future__ import annotations

import contextlib
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def cpu_and_memory() -> dict[str, Any]:
    """The CPU's model name, the core count and the memory in GiB (each best effort: not every system names
    its CPU or reports its memory)."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
    }


def _ticks(pid: int, children: bool) -> int:
    """utime + stime (+ cutime + cstime: children it has waited for) of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3): utime is field 14, so index 11
    return sum(int(x) for x in fields[11 : 15 if children else 13])


def postgres_pid(pgdata: Path) -> int | None:
    """The postmaster's pid, from the data directory (None when it is not running)."""
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
    return out


@dataclass
class CpuClock:
    """CPU seconds used by this process, the PostgreSQL server (postmaster and its backends), the loopback
    peer when it runs here (the SMSC, or a webhook receiver: `peer_name`), and dispatcher processes when there
    are any."""

    postmaster: int | None
    peer_pid: int | None
    dispatchers: tuple[int, ...] = ()
    peer_name: str = "smsc_peer"

    def read(self) -> dict[str, float]:
        hz = os.sysconf("SC_CLK_TCK")
        out = {"bench_python": time.process_time()}
        with contextlib.suppress(OSError, ValueError):
            if self.postmaster is not None:
                ticks = _ticks(self.postmaster, True)
                for child in _children(self.postmaster):
                    with contextlib.suppress(OSError, ValueError):
                        ticks += _ticks(child, True)
                out["postgres"] = ticks / hz
        with contextlib.suppress(OSError, ValueError):
            if self.peer_pid is not None:
                out[self.peer_name] = _ticks(self.peer_pid, True) / hz
        if self.dispatchers:
            ticks = 0
            for pid in self.dispatchers:
                with contextlib.suppress(OSError, ValueError):
                    ticks += _ticks(pid, False)
            out["dispatchers"] = ticks / hz
        return out

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {k: round(after[k] - before[k], 2) for k in after if k in before}
