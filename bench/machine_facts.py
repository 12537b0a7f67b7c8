"""What the benchmarks report about the machine they ran on (the figures mean little without it)."""

from __future__ import annotations

import contextlib
import os
import platform
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
