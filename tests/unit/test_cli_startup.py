"""The command lines start light: `--help` and a mistyped command import none of the scientific or network stack.

Each case runs in a fresh interpreter (the test session itself has imported everything long ago) and reports
which heavy modules are loaded once the arguments have been parsed; the wall time is left to benchmarks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parents[2]

# Each takes tens to hundreds of milliseconds to import; together they made `--help` take well over a second.
HEAVY = (
    "numpy",
    "numba",
    "scipy",
    "pandas",
    "xarray",
    "dask",
    "netCDF4",
    "rasterio",
    "matplotlib",
    "asyncpg",
    "aiohttp",
)

# Runs one command line in-process, then prints its exit status and the heavy modules loaded, as the last line.
PROBE = """
import json, sys
from {module} import main
try:
    status = main(sys.argv[1:])
except SystemExit as exit:
    status = exit.code
sys.stdout.flush()
heavy = sorted(name for name in {heavy!r} if name in sys.modules)
print(json.dumps({{"status": status, "heavy": heavy}}))
"""


def run_probe(module: str, *argv: str, env: dict[str, str] | None = None) -> tuple[int, list[str], str, str]:
    """Exit status, heavy modules loaded, the rest of stdout, and stderr of `module`'s main(argv)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(module=module, heavy=HEAVY), *argv],
        cwd=REPOSITORY,  # `-c` puts the working folder first on sys.path: this tree is the one tested
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    *output, last = done.stdout.splitlines()
    report = json.loads(last)
    return report["status"], report["heavy"], "\n".join(output), done.stderr


@pytest.mark.parametrize(
    ("argv", "expected_status"),
    [
        (["--help"], 0),
        (["score", "--help"], 0),
        (["demo", "--help"], 0),
        (["recipients", "count", "--help"], 0),
        (["frobnicate"], 2),
        (["score"], 2),
        (["scenario", "flood", "-o", "out"], 2),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_parsing_a_warnings_svc_command_line_imports_no_heavy_module(
    argv: list[str], expected_status: int
) -> None:
    status, heavy, _, _ = run_probe("warnings_svc.cli", *argv)
    assert status == expected_status
    assert heavy == []


def test_the_help_still_lists_every_command() -> None:
    status, _, output, _ = run_probe("warnings_svc.cli", "--help")
    assert status == 0
    listed = re.findall(r"^    (\S+)", output, re.MULTILINE)
    assert listed == [
        "demo",
        "serve",
        "dispatch",
        "db",
        "score",
        "scenario",
        "ingest",
        "user",
        "recipients",
        "departments",
        "terminals",
        "report",
        "audit",
    ]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (
            ["frobnicate"],
            "warnings-svc: argument COMMAND: invalid choice: 'frobnicate' (choose from 'demo', ",
        ),
        (
            ["score"],
            "warnings-svc: the following arguments are required: FILE.nc (see `warnings-svc score --help`)",
        ),
        (
            ["user", "add", "li", "--role", "boss"],
            "warnings-svc: argument --role: invalid choice: 'boss' (choose from",
        ),
        (
            ["user", "token", "li", "--scope", "all"],
            "warnings-svc: argument --scope: invalid choice: 'all' (choose from",
        ),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_an_argument_error_is_one_line_on_stderr_and_exit_status_2(argv: list[str], line: str) -> None:
    status, _, output, stderr = run_probe("warnings_svc.cli", *argv)
    assert status == 2
    assert output == ""
    assert stderr.count("\n") == 1
    assert stderr.startswith(line)


def test_the_user_actions_are_there_once_the_user_command_is_parsed() -> None:
    status, _, output, _ = run_probe("warnings_svc.cli", "user", "add", "--help")
    assert status == 0
    assert "--role {forecaster,approver,operations,department,admin}" in output
    assert "--password-stdin" in output


@pytest.mark.parametrize(
    ("argv", "expected_status"),
    [(["--help"], 0), (["map", "--help"], 0), (["frobnicate"], 2)],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_parsing_a_risk_zoning_command_line_imports_no_heavy_module(
    argv: list[str], expected_status: int
) -> None:
    status, heavy, _, _ = run_probe("risk_zoning.cli", *argv)
    assert status == expected_status
    assert heavy == []


SCIENTIFIC = ("numba", "scipy", "pandas", "xarray", "dask", "netCDF4", "rasterio", "matplotlib")


def test_a_command_that_fails_on_the_database_imports_no_scientific_module(tmp_path: Path) -> None:
    # Before, telling a user error from a bug imported every module an error could come from (the web
    # application, xarray, numba: 2-3 s), and finding the risk database built imported what building takes.
    terminals = tmp_path / "terminals.csv"
    terminals.write_text("terminal_id,kind,area,population_served,name\nls-1,loudspeaker,150304011,10,\n")
    unreachable = {**os.environ, "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/warnings"}
    status, heavy, _, stderr = run_probe(
        "warnings_svc.cli", "terminals", "import", str(terminals), env=unreachable
    )
    assert status == 2 and "cannot connect to PostgreSQL" in stderr and stderr.count("\n") == 2
    assert [name for name in heavy if name in SCIENTIFIC] == []
