"""A service told to stop while a run is being scored stops at once: the run is abandoned (scoring writes
nothing; the inbox takes it again at the next start), not waited for."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]

# A scorer whose worker is busy (a task that would take a minute) is closed, then the interpreter exits.
PROBE = """
import asyncio, time
from warnings_svc.forecast.runs import RunScorer
from warnings_svc.settings import ScoringSettings

async def main():
    scorer = RunScorer(None, "postgresql://unused", ScoringSettings())
    busy = asyncio.get_running_loop().run_in_executor(scorer._executor, time.sleep, 60)
    await asyncio.sleep(3)  # the worker has started and is busy
    busy.cancel()
    scorer.close()
    print("closed", flush=True)

asyncio.run(main())
"""


def test_closing_a_scorer_while_it_scores_lets_the_process_end_at_once() -> None:
    # Before, the interpreter's exit waited for the worker's task: a web worker told to stop mid-scoring was
    # killed by its parent 45 s later ("did not stop in time"), and the test suite waited with it.
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPOSITORY, capture_output=True, text=True, timeout=120
    )
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "closed" and "Traceback" not in done.stderr
    assert took < 30, f"the process took {took:.0f} s to end"
