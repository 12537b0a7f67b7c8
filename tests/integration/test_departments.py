"""The registry of departments against a real PostgreSQL with the Wuhai risk database: CSV import, the
console's changes, whom a warning calls, and the CLI."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from risk_zoning.store import region_units
from tests.factories_cli import problem_lines, run_service_cli
from tests.factories_db import fresh_database
from warnings_svc.dissemination.partners.registry import (
    SECTORS,
    DepartmentError,
    DepartmentRowError,
    all_departments,
    check_row,
    departments_in,
    form_fields,
    get_department,
    import_csv,
    save_department,
    set_retired,
)

SAMPLE = Path(__file__).parents[1] / "data" / "departments" / "sample.csv"
DEMO = Path(__file__).parents[2] / "warnings_svc" / "demo" / "departments.csv"
HEADER = "code,name,sector,area,duty_name,duty_phone,deputy_name,deputy_phone\n"


@pytest.fixture(scope="module")
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(db_url)
    await c.execute("TRUNCATE svc.department CASCADE")
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def units(conn: asyncpg.Connection):
    return await region_units(conn, "wuhai")


# ---------------------------------------------------------------------------------------------- import


async def test_good_rows_are_imported_and_every_bad_one_is_reported_by_line_and_column(conn) -> None:
    report = await import_csv(conn, SAMPLE, "wuhai")
    assert (report.inserted, report.updated, report.unchanged, report.rejected_rows) == (3, 0, 0, 6)
    got = {(r.line, r.column): r for r in report.rejected}
    assert set(got) == {
        (6, "sector"),
        (7, "area"),
        (8, "duty_name"),
        (8, "duty_phone"),
        (9, "duty_phone"),
        (9, "duty_email"),
        (9, "deputy_phone"),
        (10, "hazards"),
        (10, "min_level"),
        (11, "code"),
    }
    assert got[6, "sector"].value == "police" and "emergency, education" in got[6, "sector"].reason
    assert got[7, "area"].value == "150399" and "not a unit" in got[7, "area"].reason
    assert "landline" in got[9, "duty_phone"].reason
    assert got[9, "deputy_phone"].reason == "the deputy's phone is required"
    assert got[11, "code"].reason == "same code as line 3"  # codes are folded to lower case
    hbw = await get_department(conn, "hbw-emergency")
    assert hbw is not None and hbw.area == "150302000000" and hbw.source == "csv:sample.csv"
    assert hbw.hazards == ("heat", "rainstorm", "frost", "sandstorm") and hbw.min_level == "blue"
    assert {r: (p.name, p.phone, p.email) for r, p in hbw.people.items()} == {
        "duty": ("值班员甲", "+8615404730011", "duty@hbw.example.org"),
        "deputy": ("副职乙", "+8615404730012", ""),
        "leader": ("领导丙", "+8615404730013", "leader@hbw.example.org"),
    }
    wuda = await get_department(conn, "wd-education")
    assert wuda is not None and (wuda.sector, wuda.hazards, wuda.min_level) == (
        "education",
        ("heat", "sandstorm"),
        "yellow",
    )
    assert list(wuda.people) == ["duty"]


async def test_reimport_changes_nothing_and_a_later_file_updates_by_code_without_retiring_the_others(
    conn,
) -> None:
    await import_csv(conn, SAMPLE, "wuhai")
    before = await conn.fetch("SELECT code, updated_at FROM svc.department ORDER BY code")
    again = await import_csv(conn, SAMPLE, "wuhai")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3)
    assert await conn.fetch("SELECT code, updated_at FROM svc.department ORDER BY code") == before
    # a later file with one department: its deputy changes, its leader is vacated; the others stay in service
    later = (
        "code,name,sector,area,duty_name,duty_phone,deputy_name,deputy_phone\n"
        "hbw-emergency,海勃湾区应急管理局,emergency,150302,值班员甲,15404730011,新副职,15404730019\n"
    )
    third = await import_csv(conn, later, "wuhai")
    assert (third.inserted, third.updated, third.unchanged) == (0, 1, 0)
    hbw = await get_department(conn, "hbw-emergency")
    assert hbw is not None and set(hbw.people) == {"duty", "deputy"}
    assert hbw.people["deputy"].phone == "+8615404730019" and hbw.name_en == ""
    assert len(await all_departments(conn)) == 3  # none retired by the import


async def test_a_retired_department_named_in_a_file_is_updated_and_stays_retired(conn) -> None:
    await import_csv(conn, SAMPLE, "wuhai")
    await set_retired(conn, "city-water", True)
    changed = SAMPLE.read_text(encoding="utf-8").replace("rainstorm,orange", "rainstorm,red")
    report = await import_csv(conn, changed, "wuhai")
    assert (report.updated, report.still_retired) == (1, 1)
    water = await get_department(conn, "city-water")
    assert water is not None and water.min_level == "red" and water.retired_at is not None


async def test_a_gbk_or_foreign_file_writes_nothing_and_says_so_in_one_line(conn) -> None:
    with pytest.raises(DepartmentError, match="GBK"):
        await import_csv(conn, SAMPLE.read_text(encoding="utf-8").encode("gbk"), "wuhai")
    with pytest.raises(DepartmentError, match=r"missing column.*duty_phone"):
        await import_csv(conn, "code,name,sector,area,duty_name\n", "wuhai")
    with pytest.raises(DepartmentError, match=r"unknown column.*'phone'"):
        await import_csv(conn, HEADER.strip() + ",phone\n", "wuhai")
    assert await conn.fetchval("SELECT count(*) FROM svc.department") == 0


async def test_a_failure_while_writing_leaves_nothing_half_written(conn) -> None:
    # a constraint the last accepted row breaks: the database refuses it, and nothing of the file stays
    await conn.execute(
        "ALTER TABLE svc.department ADD CONSTRAINT no_water CHECK (sector <> 'water') NOT VALID"
    )
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await import_csv(conn, SAMPLE, "wuhai")
        assert await conn.fetchval("SELECT count(*) FROM svc.department") == 0
        assert await conn.fetchval("SELECT count(*) FROM svc.duty_person") == 0
    finally:
        await conn.execute("ALTER TABLE svc.department DROP CONSTRAINT no_water")


async def test_the_demo_file_is_synthetic_and_covers_the_city_and_the_three_districts(conn, units) -> None:
    text = DEMO.read_text(encoding="utf-8")
    assert text.startswith("# 示例数据") and "SYNTHETIC" in text.splitlines()[0]
    report = await import_csv(conn, DEMO, "wuhai")
    assert report.rejected == [] and report.inserted >= 30
    departments = await all_departments(conn)
    assert {d.area for d in departments} == {"150300000000", "150302000000", "150303000000", "150304000000"}
    assert {d.sector for d in departments} == set(SECTORS)
    for d in departments:
        assert "duty" in d.people
        assert all(p.phone.startswith("+86154") for p in d.people.values())  # the unassigned 154 prefix
        assert all(p.email.endswith(".example.org") for p in d.people.values() if p.email)
    # a yellow heat warning for a town of Wuda calls Wuda's and the city's offices that respond to heat
    called = await departments_in(conn, hazard="heat", level="yellow", areas=["150304011000"], units=units)
    assert {d.area for d in called} == {"150300000000", "150304000000"}
    assert {"wuda-education", "wuda-health", "wuhai-emergency"} <= {d.code for d in called}
    assert not {"wuda-water", "wuhai-power"} & {d.code for d in called}  # rainstorm only; orange and above


# ---------------------------------------------------------------------------------------------- console


async def test_adding_editing_and_retiring_one_department_through_the_same_checks(conn, units) -> None:
    fields = {
        "code": "hn-power",
        "name": "海南区供电分公司",
        "sector": "power",
        "area": "150303",
        "hazards": "heat",
        "duty_name": "值班员",
        "duty_phone": "15404730081",
    }
    before, after = await save_department(conn, check_row(fields, units), new=True)
    assert before is None and after.source == "console" and after.area == "150303000000"
    with pytest.raises(DepartmentRowError) as caught:
        await save_department(conn, check_row(fields, units), new=True)
    assert caught.value.problems[0][0] == "code" and "exists" in caught.value.problems[0][2]
    edited = form_fields(after) | {"leader_name": "领导", "leader_phone": "15404730083"}
    before, after = await save_department(conn, check_row(edited, units), new=False)
    assert set(before.people) == {"duty"} and set(after.people) == {"duty", "leader"}
    with pytest.raises(DepartmentError, match="no department"):
        await save_department(conn, check_row(fields | {"code": "nobody"}, units), new=False)

    heat = {"hazard": "heat", "level": "red", "areas": ["150303000000"], "units": units}
    assert [d.code for d in await departments_in(conn, **heat)] == ["hn-power"]
    _, retired = await set_retired(conn, "hn-power", True)
    assert retired.retired_at is not None and await departments_in(conn, **heat) == []
    _, again = await set_retired(conn, "hn-power", True)
    assert again.retired_at == retired.retired_at  # the first retirement stands
    _, restored = await set_retired(conn, "hn-power", False)
    assert restored.retired_at is None and len(await departments_in(conn, **heat)) == 1


# ---------------------------------------------------------------------------------------------- CLI


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_service_cli(url, "departments", *args)


async def test_the_cli_imports_and_lists(db_url: str, conn, tmp_path: Path) -> None:
    done = _cli(db_url, "import", str(SAMPLE))
    assert done.returncode == 1, done.stderr  # rows were rejected: the report says which
    assert problem_lines(done.stderr) == []
    report = json.loads(done.stdout)
    assert (report["inserted"], report["rejected_rows"]) == (3, 6)
    assert {"line": 6, "column": "sector", "value": "police"}.items() <= report["rejected"][0].items()
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "hn-water,海南区水务局,water,150303,值班员,15404730091,,\n", encoding="utf-8")
    done = _cli(db_url, "import", str(good))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["inserted"] == 1

    listed = _cli(db_url, "list")
    assert listed.returncode == 0, listed.stderr
    lines = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [d["code"] for d in lines] == ["city-water", "hbw-emergency", "hn-water", "wd-education"]
    assert lines[1]["people"]["leader"] == {
        "name": "领导丙",
        "phone": "+8615404730013",
        "email": "leader@hbw.example.org",
    }
    table = _cli(db_url, "list", "--format", "table")
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["code", "sector", "area", "name", "duty", "deputy", "leader", "retired"]
    assert "hn-water" in rows[3] and "值班员 +8615404730091" in rows[3]


async def test_the_cli_refuses_an_unusable_file_in_one_line_and_writes_nothing(
    db_url: str, conn, tmp_path: Path
) -> None:
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(SAMPLE.read_text(encoding="utf-8").encode("gbk"))
    other = tmp_path / "other.csv"
    other.write_text("name,phone,areas,roles\n王芳,13912345678,150302,relayer\n", encoding="utf-8")
    comments = tmp_path / "comments.csv"
    comments.write_text("# nothing but a comment\n\n", encoding="utf-8")
    for path, says in (
        (gbk, "GBK"),
        (other, "not a departments CSV"),
        (comments, "empty"),
        (tmp_path / "absent.csv", "No such file"),
    ):
        done = _cli(db_url, "import", str(path))
        assert done.returncode == 2 and done.stdout == "", done.stdout
        assert len(problem_lines(done.stderr)) == 1 and says in done.stderr, done.stderr
    assert await conn.fetchval("SELECT count(*) FROM svc.department") == 0
