"""What a command line said on stderr, for tests of its one-line errors."""

from __future__ import annotations

import re

# The line every command that opens a database prints first: `warnings-svc: database: ... (source)`.
DATABASE_LINE = re.compile(r"^(warnings-svc|risk-zoning): database: ")


def problem_lines(stderr: str) -> list[str]:
    """stderr's lines without the one naming the database, leaving what the command had to complain about."""
    return [line for line in stderr.splitlines() if not DATABASE_LINE.match(line)]
