"""Running `warnings-svc` on a test database, and what it said on stderr, for tests of its one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

# The line every command that opens a database prints first: `warnings-svc: database: ... (source)`.
DATABASE_LINE = re.compile(r"^(warnings-svc|risk-zoning): database: ")


def problem_lines(stderr: str) -> list[str]:
    """stderr's lines without the one naming the database, leaving what the command had to complain about."""
    return [line for line in stderr.splitlines() if not DATABASE_LINE.match(line)]


def run_service_cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`warnings-svc ARGS` in a child process on the database at `database_url` (its `DATABASE_URL`)."""
    return subprocess.run(
        [sys.executable, "-m", "warnings_svc.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "DATABASE_URL": database_url},
        timeout=120,
    )
