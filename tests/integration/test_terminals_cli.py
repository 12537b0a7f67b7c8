"""`warnings-svc terminals import|list` against a real PostgreSQL: a good file registered, a bad one refused in
one line with exit status 2 and nothing written."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.factories_cli import problem_lines, run_service_cli

HEADER = "terminal_id,kind,area,population_served,name\n"


@pytest.fixture
def db_url(built_url: str) -> str:
    return built_url


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_service_cli(url, "terminals", *args)


async def test_terminals_are_registered_from_csv_and_listed(db_url: str, conn, tmp_path: Path) -> None:
    good = tmp_path / "terminals.csv"
    good.write_text(
        HEADER + "ls-001,loudspeaker,150304011,1200,乌达 1 号\nled-001,display,150302000000,300,\n",
        encoding="utf-8",
    )
    done = _cli(db_url, "import", str(good))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"registered": 2}
    listed = [json.loads(line) for line in _cli(db_url, "list").stdout.splitlines()]
    mine = {t["terminal_id"]: t for t in listed if t["terminal_id"] in ("ls-001", "led-001")}
    assert mine["ls-001"]["area"] == "150304011000" and mine["ls-001"]["population_served"] == 1200
    assert mine["led-001"]["kind"] == "display" and mine["led-001"]["target"] == "terminals"
    # registered again: updated, not doubled
    good.write_text(HEADER + "ls-001,loudspeaker,150304011,1500,\n", encoding="utf-8")
    assert _cli(db_url, "import", str(good)).returncode == 0
    assert (
        await conn.fetchval("SELECT population_served FROM svc.terminal WHERE terminal_id = 'ls-001'") == 1500
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (HEADER + "ls-9,loudspeaker,150304011,10,\nls-10,siren,150304011,10,\n", "line 3: kind"),
        (HEADER + "ls-9,loudspeaker,999999,10,\n", "not a unit of this region"),
        (HEADER + "ls-9,loudspeaker,150304011,-5,\n", "line 2: population_served"),
        (HEADER + "ls 9,loudspeaker,150304011,10,\n", "line 2: terminal_id"),
        (HEADER + "ls-9,loudspeaker,150304011,10,x,extra\n", "more fields than the header"),
        ("id,kind\n1,display\n", "the header needs"),
        (HEADER, "no terminal rows"),
    ],
)
async def test_a_bad_file_is_refused_in_one_line_and_writes_nothing(
    db_url: str, conn, tmp_path: Path, text: str, says: str
) -> None:
    before = await conn.fetchval("SELECT count(*) FROM svc.terminal")
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    done = _cli(db_url, "import", str(path))
    assert done.returncode == 2 and done.stdout == "", done.stderr
    assert len(problem_lines(done.stderr)) == 1 and says in done.stderr, done.stderr
    assert await conn.fetchval("SELECT count(*) FROM svc.terminal") == before
