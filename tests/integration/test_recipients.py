"""Recipients against a real PostgreSQL with the Wuhai risk database: CSV import, opt-out, targeting, CLI."""

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
from warnings_svc.dissemination.recipients import (
    RecipientError,
    count_recipients,
    import_csv,
    opt_out,
    select_recipients,
)

SAMPLE = Path(__file__).parents[1] / "data" / "recipients" / "sample.csv"
HEADER = "name,phone,language,areas,roles,hazards,consent,consent_at,test_recipient,groups\n"
WANG, LI, ZHANG, WU, ZHENG, QIAN = (
    "+8613912345678",
    "+8613900000001",
    "+8613700000002",
    "+8613800000007",
    "+8613800000008",
    "+8613800000010",
)


@pytest.fixture(scope="module")
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(db_url)
    await c.execute("TRUNCATE svc.recipient, svc.recipient_group CASCADE")
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def units(conn: asyncpg.Connection):
    return await region_units(conn, "wuhai")


async def _phones(conn, areas, hazard, units, **kw) -> list[str]:
    return [r.phone for r in await select_recipients(conn, areas, hazard, units=units, **kw)]


# ---------------------------------------------------------------------------------------------- import


async def test_good_rows_are_imported_and_every_bad_one_is_reported_by_line_and_column(conn) -> None:
    report = await import_csv(conn, SAMPLE, "wuhai")
    assert (report.inserted, report.updated, report.unchanged, report.rejected_rows) == (6, 0, 0, 7)
    got = {(r.line, r.column): r for r in report.rejected}
    assert set(got) == {
        (5, "phone"),
        (6, "areas"),
        (7, "roles"),
        (8, "consent"),
        (9, "phone"),
        (10, "language"),
        (13, "hazards"),
    }
    assert "landline" in got[5, "phone"].reason and got[5, "phone"].value == "0473-2001234"
    assert got[6, "areas"].value == "150399" and "not a unit" in got[6, "areas"].reason
    assert got[9, "phone"].reason == "same phone as line 2"
    assert "public subscriber" in got[8, "consent"].reason
    row = await conn.fetchrow("SELECT * FROM svc.recipient WHERE phone = $1", LI)
    assert row["areas"] == ["150302000000"] and row["roles"] == ["responsible_person"]
    assert (
        row["hazards"] == ["heat", "rainstorm"] and row["test_recipient"] and row["consent_basis"] == "duty"
    )
    assert row["source"] == "csv:sample.csv"
    zhang = await conn.fetchrow("SELECT * FROM svc.recipient WHERE phone = $1", ZHANG)
    # 2026-03-01 without an offset is midnight in Beijing
    assert zhang["language"] == "en" and zhang["consent_at"].isoformat() == "2026-02-28T16:00:00+00:00"
    groups = await conn.fetch(
        """SELECT g.name, array_agg(r.phone ORDER BY r.phone) AS phones FROM svc.recipient_group g
           JOIN svc.recipient_group_member m ON m.group_id = g.id JOIN svc.recipient r ON r.id = m.recipient_id
           GROUP BY g.name ORDER BY g.name"""
    )
    assert {g["name"]: g["phones"] for g in groups} == {"区应急局": [LI], "海勃湾区信息员": [LI, WANG]}


async def test_reimport_is_idempotent_and_a_changed_row_is_updated(conn) -> None:
    await import_csv(conn, SAMPLE, "wuhai")
    before = await conn.fetch("SELECT phone, consent_at, updated_at FROM svc.recipient ORDER BY phone")
    again = await import_csv(conn, SAMPLE, "wuhai")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 6)
    assert (
        await conn.fetch("SELECT phone, consent_at, updated_at FROM svc.recipient ORDER BY phone") == before
    )
    changed = SAMPLE.read_text(encoding="utf-8").replace(
        "李强,+86 139 0000 0001,zh-CN,150302", "李强,13900000001,en,150302"
    )
    third = await import_csv(conn, changed, "wuhai")
    assert (third.inserted, third.updated, third.unchanged) == (0, 1, 5)
    assert await conn.fetchval("SELECT language FROM svc.recipient WHERE phone = $1", LI) == "en"
    assert await conn.fetchval("SELECT count(*) FROM svc.recipient") == 6


async def test_a_file_with_a_bom_imports_like_one_without(conn) -> None:
    report = await import_csv(conn, b"\xef\xbb\xbf" + SAMPLE.read_bytes(), "wuhai")
    assert (report.inserted, report.rejected_rows) == (6, 7)


async def test_a_gbk_file_writes_nothing_and_says_so_in_one_line(conn, tmp_path: Path) -> None:
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(SAMPLE.read_text(encoding="utf-8").encode("gbk"))
    with pytest.raises(RecipientError, match="GBK"):
        await import_csv(conn, gbk, "wuhai")
    assert await conn.fetchval("SELECT count(*) FROM svc.recipient") == 0


async def test_a_failure_while_writing_leaves_nothing_half_written(conn) -> None:
    # a constraint one accepted row breaks: the database refuses it, and nothing of the file stays
    await conn.execute("ALTER TABLE svc.recipient ADD CONSTRAINT no_en CHECK (language <> 'en') NOT VALID")
    try:
        with pytest.raises(asyncpg.CheckViolationError):
            await import_csv(conn, SAMPLE, "wuhai")
        assert await conn.fetchval("SELECT count(*) FROM svc.recipient") == 0
        assert await conn.fetchval("SELECT count(*) FROM svc.recipient_group") == 0
    finally:
        await conn.execute("ALTER TABLE svc.recipient DROP CONSTRAINT no_en")


# ---------------------------------------------------------------------------------------------- opt-out


async def test_opt_out_keeps_the_row_excludes_it_and_survives_a_reimport(conn, units) -> None:
    await import_csv(conn, SAMPLE, "wuhai")
    assert WANG in await _phones(conn, ["150302"], "heat", units)
    first = await opt_out(conn, "139-1234-5678")
    assert first is not None and await opt_out(conn, "+8613912345678") == first
    assert await opt_out(conn, "13911111111") is None
    assert WANG not in await _phones(conn, ["150302"], "heat", units)
    report = await import_csv(conn, SAMPLE, "wuhai")
    assert report.opted_out == 1
    assert await conn.fetchval("SELECT opted_out_at FROM svc.recipient WHERE phone = $1", WANG) == first
    assert WANG not in await _phones(conn, ["150302"], "heat", units)


# ---------------------------------------------------------------------------------------------- targeting


async def test_targeting_follows_containment_both_ways_hazards_and_consent(conn, units) -> None:
    await import_csv(conn, SAMPLE, "wuhai")
    # district warning: the town's relayer, the district's responsible person, the city department
    assert await _phones(conn, ["150302"], "heat", units) == [WANG, LI, ZHENG]
    # town warning: that town's relayer and those registered for the district and the city around it
    assert await _phones(conn, ["150302001000"], "rainstorm", units) == [WANG, LI, ZHENG]
    # the next town: not the first town's relayer; frost is not among Li's hazards
    assert await _phones(conn, ["150302002000"], "frost", units) == [ZHENG]
    # Wu is registered for a town of 150304 and wants frost; Qian said no to consent
    assert await _phones(conn, ["150304"], "frost", units) == [WU, ZHENG]
    assert await _phones(conn, ["150303"], "sandstorm", units) == [ZHANG, ZHENG]
    assert await _phones(conn, ["150300"], "heat", units) == [WANG, LI, ZHENG]
    assert QIAN not in await _phones(conn, ["150300"], "heat", units)


async def test_an_exercise_selects_only_test_recipients(conn, units) -> None:
    await import_csv(conn, SAMPLE, "wuhai")
    assert await _phones(conn, ["150302"], "heat", units, exercise=True) == [LI, ZHENG]
    assert await _phones(conn, ["150303"], "sandstorm", units, exercise=True) == [ZHENG]


async def test_counts_match_the_selection(conn, units) -> None:
    await import_csv(conn, SAMPLE, "wuhai")
    assert await count_recipients(conn) == 5  # six registered, Qian without consent
    assert await count_recipients(conn, areas=["150302"], hazard="heat", units=units) == 3
    assert await count_recipients(conn, hazard="frost") == 3  # Wang and Zheng want all, Wu frost
    with pytest.raises(RecipientError, match="unknown hazard"):
        await count_recipients(conn, hazard="hail")


# ---------------------------------------------------------------------------------------------- scale


def _generated(n: int, towns: list[str]) -> str:
    lines = [HEADER]
    for i in range(n):
        roles = "public_subscriber" if i % 3 == 0 else "relayer"
        consent = "yes" if i % 3 == 0 else ""
        lines.append(
            f"用户{i},{13000000000 + i},zh-CN,{towns[i % len(towns)]},{roles},heat;sandstorm,{consent},,{i % 100 == 0},\n"
        )
    return "".join(lines)


async def test_ten_thousand_rows_import_in_one_go_and_reimport_changes_nothing(conn, units) -> None:
    # how long this takes is measured, not asserted here (timing belongs in benchmarks): about 0.6-0.8 s
    towns = sorted(c for c, u in units.items() if u.level not in ("city", "district"))
    text = _generated(10_000, towns)
    report = await import_csv(conn, text, "wuhai")
    again = await import_csv(conn, text, "wuhai")
    assert (report.inserted, report.rejected_rows) == (10_000, 0)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 10_000)
    selected = await select_recipients(conn, ["150300"], "heat", units=units)
    assert len(selected) == 10_000


# ---------------------------------------------------------------------------------------------- CLI


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_service_cli(url, "recipients", *args)


async def test_the_cli_imports_opts_out_and_counts(db_url: str, conn, tmp_path: Path) -> None:
    done = _cli(db_url, "import", str(SAMPLE))
    assert done.returncode == 1, done.stderr  # rows were rejected: the report says which
    assert problem_lines(done.stderr) == []
    report = json.loads(done.stdout)
    assert report["inserted"] == 6 and report["rejected_rows"] == 7
    assert {"line": 5, "column": "phone", "value": "0473-2001234"}.items() <= report["rejected"][0].items()
    count = _cli(db_url, "count", "--area", "150302", "--hazard", "heat")
    assert count.returncode == 0, count.stderr
    assert json.loads(count.stdout) == {
        "area": "150302000000",
        "hazard": "heat",
        "exercise": False,
        "recipients": 3,
    }
    out = _cli(db_url, "opt-out", "13912345678")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["phone"] == "13912345678"
    assert json.loads(_cli(db_url, "count", "--area", "150302", "--hazard", "heat").stdout)["recipients"] == 2
    unknown = _cli(db_url, "opt-out", "13911111111")
    assert (
        unknown.returncode == 2
        and len(problem_lines(unknown.stderr)) == 1
        and "no recipient" in unknown.stderr
    )


async def test_the_cli_import_exits_0_only_when_no_row_was_rejected(
    db_url: str, conn, tmp_path: Path
) -> None:
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "王芳,13912345678,zh-CN,150302001000,relayer,,,,,\n", encoding="utf-8")
    done = _cli(db_url, "import", str(good))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["inserted"] == 1
    one_bad = tmp_path / "one-bad.csv"
    one_bad.write_text(
        HEADER + "李强,13900000001,zh-CN,150302,relayer,,,,,\n赵敏,0473-2001234,zh-CN,150302,relayer,,,,,\n",
        encoding="utf-8",
    )
    done = _cli(db_url, "import", str(one_bad))
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)  # the report is printed all the same, and the good row is stored
    assert (report["inserted"], report["rejected_rows"]) == (1, 1)
    assert await conn.fetchval("SELECT count(*) FROM svc.recipient") == 2


async def test_the_cli_refuses_an_unreadable_or_foreign_file_in_one_line(db_url: str, tmp_path: Path) -> None:
    gbk = tmp_path / "gbk.csv"
    gbk.write_bytes(SAMPLE.read_text(encoding="utf-8").encode("gbk"))
    other = tmp_path / "other.csv"
    other.write_text("a,b,c\n1,2,3\n", encoding="utf-8")
    for path, says in (
        (gbk, "GBK"),
        (other, "not a recipients CSV"),
        (tmp_path / "absent.csv", "No such file"),
    ):
        done = _cli(db_url, "import", str(path))
        assert done.returncode == 2 and done.stdout == ""
        assert len(problem_lines(done.stderr)) == 1 and says in done.stderr, done.stderr
