"""How both command lines behave around their output: the database they name, a closed pipe, no stray notices.

Each case runs the real command in a child process, against the session's PostgreSQL (by URL) or an
embedded one of its own in a fresh folder (by data folder), as a user would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from risk_zoning.io.database import redact
from tests.factories_app import clean_environment

DATA_DIR_LINE = "database: embedded PostgreSQL in {folder} (environment variable WARNINGS_SVC_DATA_DIR)"


@pytest.fixture
def data_folder() -> Iterator[Path]:
    """A fresh folder for an embedded PostgreSQL, outside pytest's tmp tree (see conftest.pg_server_url)."""
    folder = Path(tempfile.mkdtemp(prefix="warnings-cli-data-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def run(
    module: str, *argv: str, env: dict[str, str], stdout: int = subprocess.PIPE
) -> subprocess.CompletedProcess[str]:
    """`python -m module argv...` with exactly `env`; stderr captured, stdout as given (captured by default)."""
    return subprocess.run(
        [sys.executable, "-m", module, *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        timeout=180,
    )


def without_runtime_dir(**extra: str) -> dict[str, str]:
    """The clean environment without XDG_RUNTIME_DIR, as under cron, `su` or in a container."""
    env = clean_environment(**extra)
    env.pop("XDG_RUNTIME_DIR", None)
    return env


def run_into_closed_pipe(module: str, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The command with its stdout a pipe nobody reads any more, as in `command | head -1` once head is done."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return run(module, *argv, env=env, stdout=write_end)
    finally:
        os.close(write_end)


# ---------------------------------------------------------------------------------------------- the database


def test_every_command_finds_the_database_of_WARNINGS_SVC_DATA_DIR_and_says_so(data_folder: Path) -> None:
    default_home = data_folder / "default-home"  # where platformdirs puts the default data folder here
    env = clean_environment(WARNINGS_SVC_DATA_DIR=str(data_folder), XDG_DATA_HOME=str(default_home))
    line = DATA_DIR_LINE.format(folder=data_folder.resolve())

    added = run("warnings_svc.cli", "user", "add", "li", "--role", "forecaster", env=env)
    assert added.returncode == 0, added.stderr
    assert added.stderr.splitlines() == [f"warnings-svc: {line}"]
    # the demo's situation: another command, no --data-dir, finds the user in the same folder
    token = run("warnings_svc.cli", "user", "token", "li", env=env)
    assert token.returncode == 0, token.stderr
    assert json.loads(token.stdout)["name"] == "li"

    summary = run("risk_zoning.cli", "summary", env=env)
    assert summary.stderr.splitlines()[0] == f"risk-zoning: {line}"
    assert summary.returncode == 2 and "no risk database for region 'wuhai'" in summary.stderr
    assert not (default_home / "warnings-svc" / "postgres").exists()


def test_an_option_names_itself_as_the_source_and_wins_over_the_environment(data_folder: Path) -> None:
    env = clean_environment(WARNINGS_SVC_DATA_DIR=str(data_folder / "not-this-one"))
    listed = run("warnings_svc.cli", "user", "list", "--data-dir", str(data_folder), env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.splitlines() == [
        f"warnings-svc: database: embedded PostgreSQL in {data_folder.resolve()} (option --data-dir)"
    ]
    assert not (data_folder / "not-this-one").exists()


def test_a_database_url_is_named_with_its_password_masked(built_url: str) -> None:
    url = built_url + ("&" if "?" in built_url else "?") + "password=hunter2"
    counted = run("warnings_svc.cli", "recipients", "count", env=clean_environment(DATABASE_URL=url))
    assert counted.returncode == 0, counted.stderr
    assert counted.stderr.splitlines() == [
        f"warnings-svc: database: {redact(url)} (environment variable DATABASE_URL)"
    ]
    assert "hunter2" not in counted.stderr and "password=***" in counted.stderr

    summary = run("risk_zoning.cli", "summary", "--json", "--database-url", url, env=clean_environment())
    assert summary.returncode == 0, summary.stderr
    assert summary.stderr.splitlines() == [f"risk-zoning: database: {redact(url)} (option --database-url)"]
    assert json.loads(summary.stdout)["region"] == "wuhai"  # stdout stays the command's output alone


# ---------------------------------------------------------------------------------------------- a closed pipe


@pytest.mark.parametrize(
    ("module", "argv"),
    [("risk_zoning.cli", ["summary"]), ("warnings_svc.cli", ["recipients", "count"])],
    ids=["risk-zoning summary", "warnings-svc recipients count"],
)
def test_a_reader_that_went_away_ends_the_command_quietly_with_status_141(
    built_url: str, module: str, argv: list[str]
) -> None:
    done = run_into_closed_pipe(module, *argv, env=clean_environment(DATABASE_URL=built_url))
    assert done.returncode == 141
    assert [line for line in done.stderr.splitlines() if ": database: " not in line] == []


# ---------------------------------------------------------------------------------------------- platformdirs


@pytest.mark.parametrize(
    ("module", "argv"),
    [("risk_zoning.cli", ["summary"]), ("warnings_svc.cli", ["db", "upgrade"])],
    ids=["risk-zoning summary", "warnings-svc db upgrade"],
)
def test_without_XDG_RUNTIME_DIR_no_runtime_dir_warning_is_printed(
    data_folder: Path, module: str, argv: list[str]
) -> None:
    done = run(module, *argv, "--data-dir", str(data_folder), env=without_runtime_dir())
    assert (data_folder / "postgres").is_dir()  # the embedded server, whose import asks for a runtime folder
    assert "RuntimeDirWarning" not in done.stderr and "XDG_RUNTIME_DIR" not in done.stderr, done.stderr
