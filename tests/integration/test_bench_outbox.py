"""bench/outbox.py runs end to end on its own embedded PostgreSQL and reports every phase."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_outbox_benchmark_reports_each_phase_per_delivery() -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "outbox.py"), "--recipients", "1000", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["deliveries"] == 1000
    assert set(result["phases"]) == {"baseline", "expand", "claim", "results", "receipts"}
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
