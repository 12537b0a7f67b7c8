"""A benchmark runs as `python bench/NAME.py`, which puts bench/ first on the import path: a script named like
a module that the service's libraries import (or try to import) is imported in its place. bench/coverage.py
once stood in for coverage.py, which numba looks for, and broke the fan-out and public-read benchmarks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_service_imports_with_the_benchmarks_first_on_the_path() -> None:
    code = "import sys; sys.path.insert(0, 'bench'); import numba, warnings_svc.cli, warnings_svc.web.app"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
