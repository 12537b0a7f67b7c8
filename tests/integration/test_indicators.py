"""The plan's yearly indicators against the embedded PostgreSQL: the coverage report (stored snapshots and
figures computed from evidence), the satisfaction report, scores by SMS reply through the real inbound
handler and the loopback SMSC, the public page's form over real HTTP, and the commands' exit statuses."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from channels.smpp.esme import SmppSettings, SmsChannel
from risk_zoning.store import region_units
from tests.factories_acks import quick_ctx
from tests.factories_app import service
from tests.factories_cli import problem_lines, run_service_cli
from tests.factories_dispatch import add_recipients, expand_all, issue, phone, wait_until
from tests.factories_indicators import (
    HAIBOWAN,
    HAINAN,
    WUDA,
    add_broadcast_evidence,
    add_score,
    add_snapshot,
    beijing_time,
    minutes_after,
    move_to,
)
from tests.peers.smsc_fixture import SmscPeer
from warnings_svc.coverage.report import coverage_report, satisfaction_report
from warnings_svc.coverage.satisfaction import WEB_SCORE_LIMIT
from warnings_svc.dissemination.partners import inbound
from warnings_svc.lifecycle import acknowledgement_steps as steps
from warnings_svc.settings import Settings

YEAR = 2025  # the coverage and satisfaction scenarios; what the other tests do happens this year


@pytest.fixture
async def conn(built_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(built_url)
    yield c
    await c.close()


@pytest.fixture
async def units(conn: asyncpg.Connection) -> dict:
    return await region_units(conn, "wuhai")


@pytest.fixture
async def client(built_url: str, tmp_path: Path) -> AsyncIterator[TestClient]:
    async with service(built_url, tmp_path) as c:
        yield c


# ---------------------------------------------------------------------------------------------- coverage


async def _year_of_warnings(conn: asyncpg.Connection, units: dict) -> dict[str, int]:
    """2025's warnings: two with stored figures (one lacks its 10-minute checkpoint), one with evidence only,
    an exercise; one of 2024. Returns Wuda's population and its people reached by 10 and 20 minutes."""
    if await conn.fetchval("SELECT count(*) FROM svc.coverage_snapshot") > 0:
        wuda = units[WUDA].population
        return {"wuda": wuda, "early": wuda // 2, "final": wuda // 2 + wuda // 4}
    # issued first, then moved (each identifier is made from its send time, unique only when issued in turn)
    first = await issue(conn, level="orange")
    second = await issue(conn, level="yellow")
    third = await issue(conn, level="red", areas=(WUDA,))
    drill = await issue(conn, level="red", exercise=True)
    older = await issue(conn, level="yellow")
    await move_to(conn, first.warning_id, beijing_time(YEAR, 7, 1))
    await add_snapshot(
        conn, first.warning_id, "final", {HAIBOWAN: (1000, 980), HAINAN: (3000, 2700)}, minutes=600
    )
    await add_snapshot(
        conn, first.warning_id, "checkpoint", {HAIBOWAN: (1000, 500), HAINAN: (3000, 1500)}, minutes=10,
        checkpoint_min=10,
    )  # fmt: skip
    await move_to(conn, second.warning_id, beijing_time(YEAR, 8, 2))
    await add_snapshot(conn, second.warning_id, "final", {HAIBOWAN: (2000, 1900)}, minutes=300)
    # (no 10-minute checkpoint and no evidence: at 10 minutes it reached nobody)
    issued = beijing_time(YEAR, 12, 31, 23)  # late on the year's last day, Beijing time: still 2025
    await move_to(conn, third.warning_id, issued)
    wuda = units[WUDA].population
    await add_broadcast_evidence(conn, third.warning_id, "cbc-a", WUDA, wuda // 2, minutes_after(issued, 5))
    await add_broadcast_evidence(conn, third.warning_id, "cbc-b", WUDA, wuda // 4, minutes_after(issued, 20))
    await move_to(conn, drill.warning_id, beijing_time(YEAR, 5, 5))
    await add_snapshot(conn, drill.warning_id, "final", {HAIBOWAN: (1000, 10)}, minutes=60)
    await move_to(conn, older.warning_id, beijing_time(YEAR - 1, 12, 31, 23))
    await add_snapshot(conn, older.warning_id, "final", {HAIBOWAN: (1000, 0)}, minutes=60)
    return {"wuda": wuda, "early": wuda // 2, "final": wuda // 2 + wuda // 4}


async def test_the_coverage_indicator_is_the_population_weighted_mean_of_the_years_warnings(
    conn: asyncpg.Connection, units: dict
) -> None:
    wuda = await _year_of_warnings(conn, units)
    settings = Settings()
    steps_seen: list[int] = []

    def progress(total: int):  # type: ignore[no-untyped-def]
        steps_seen.append(total)
        return lambda: steps_seen.append(-1)

    report = await coverage_report(
        conn, YEAR, units, settings.coverage, settings.dispatch, now=datetime.now(UTC), progress=progress
    )
    rows = {r.code: r for r in report.rows}
    assert list(rows) == [HAIBOWAN, HAINAN, WUDA, "city"]
    haibowan = rows[HAIBOWAN]
    assert (haibowan.warnings, haibowan.population, haibowan.reached, haibowan.reached_early) == (
        2,
        3000,
        2880,
        500,
    )
    assert haibowan.coverage == pytest.approx(0.96) and haibowan.met == 2  # 98 % and 95 %: both met
    hainan = rows[HAINAN]
    assert (hainan.warnings, hainan.coverage, hainan.coverage_early, hainan.met) == (1, 0.9, 0.5, 0)
    assert (rows[WUDA].population, rows[WUDA].reached, rows[WUDA].reached_early) == (
        wuda["wuda"], wuda["final"], wuda["early"],
    )  # fmt: skip
    city = rows["city"]
    assert city.warnings == 3 and city.met == 1  # only the second warning (95 %) met the target as a whole
    assert city.population == 6000 + wuda["wuda"]
    assert city.reached == 2880 + 2700 + wuda["final"]
    assert city.coverage == pytest.approx((5580 + wuda["final"]) / (6000 + wuda["wuda"]))
    assert (report.exercises_left_out, report.computed) == (1, 2)
    assert steps_seen == [2, -1, -1]  # two warnings computed from evidence, each a step of the progress
    assert "population-weighted" in report.method


async def test_the_coverage_command_prints_the_table_and_writes_csv_and_plot(
    conn: asyncpg.Connection, units: dict, built_url: str, tmp_path: Path
) -> None:
    wuda = await _year_of_warnings(conn, units)
    done = run_service_cli(
        built_url, "report", "coverage", "--year", str(YEAR), "--out", str(tmp_path / "out")
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"public coverage of warnings, {YEAR}: target 95 %"
    assert lines[1].split() == [
        "district",
        "warnings",
        "coverage",
        "(final)",
        "at",
        "10",
        "min",
        "met",
        "target",
    ]
    assert lines[2].split() == ["海勃湾区", "Haibowan", "2", "96.0", "%", "16.7", "%", "100.0", "%"]
    assert lines[3].split() == ["海南区", "Hainan", "1", "90.0", "%", "50.0", "%", "0.0", "%"]
    assert "3 warning(s); 2 computed now from evidence (no stored snapshot); 1 exercise(s) left out" in lines
    assert any(line.startswith("method: population-weighted mean") for line in lines)
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out" / f"coverage-{YEAR}.csv").read_text())))
    assert [r["code"] for r in rows] == [HAIBOWAN, HAINAN, WUDA, "city"]
    assert (rows[0]["warned_population"], rows[0]["reached_final"], rows[0]["coverage_final"]) == (
        "3000",
        "2880",
        "0.9600",
    )
    assert rows[2]["reached_final"] == str(wuda["final"])
    assert rows[3]["warnings"] == "3" and rows[3]["met_target"] == "1"
    png = (tmp_path / "out" / f"coverage-{YEAR}.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) < 200_000


async def test_a_year_without_warnings_says_so_and_bad_input_is_one_line_with_status_2(
    built_url: str, tmp_path: Path
) -> None:
    empty = run_service_cli(built_url, "report", "coverage", "--year", "2003", "--out", str(tmp_path))
    assert (empty.returncode, empty.stdout.strip()) == (0, "no warnings issued in 2003")
    assert not list(tmp_path.iterdir())  # nothing to plot, no files
    future = run_service_cli(built_url, "report", "coverage", "--year", "2999")
    assert future.returncode == 2
    assert problem_lines(future.stderr) == [
        f"warnings-svc: --year 2999: give a year from 2000 to {datetime.now(UTC).year}"
    ]
    a_file = tmp_path / "file"
    a_file.write_text("")
    unwritable = run_service_cli(built_url, "report", "coverage", "--year", "2020", "--out", str(a_file))
    assert unwritable.returncode == 2
    [line] = problem_lines(unwritable.stderr)
    assert line.startswith(f"warnings-svc: --out {a_file}: cannot write there")
    not_a_year = run_service_cli(built_url, "report", "satisfaction", "--year", "twenty")
    assert not_a_year.returncode == 2 and len(problem_lines(not_a_year.stderr)) == 1
    none = run_service_cli(built_url, "report", "satisfaction", "--year", "2004", "--out", str(tmp_path))
    assert (none.returncode, none.stdout.strip()) == (0, "no satisfaction scores given in 2004")


# ---------------------------------------------------------------------------------------------- satisfaction


async def test_the_satisfaction_report_gives_points_on_100_per_district_and_for_the_city(
    conn: asyncpg.Connection, units: dict, built_url: str, tmp_path: Path
) -> None:
    town = next(c for c, u in units.items() if u.parent == HAIBOWAN)
    drill = await issue(conn, level="yellow", exercise=True)
    for score, area in ((5, HAIBOWAN), (4, town), (5, HAINAN), (5, HAINAN), (5, HAINAN), (1, None)):
        await add_score(conn, score, area, beijing_time(YEAR, 6, 1))
    await add_score(conn, 1, HAINAN, beijing_time(YEAR, 6, 1), warning_id=drill.warning_id)  # an exercise
    await add_score(conn, 1, HAINAN, beijing_time(YEAR + 1, 1, 1, 0))  # next year, Beijing time
    report = await satisfaction_report(conn, YEAR, units)
    rows = {r.code: r for r in report.rows}
    assert list(rows) == [HAIBOWAN, HAINAN, "unknown", "city"]
    assert (rows[HAIBOWAN].responses, rows[HAIBOWAN].mean, rows[HAIBOWAN].points) == (2, 4.5, 87.5)
    assert (rows[HAINAN].responses, rows[HAINAN].points, rows[HAINAN].meets_plan) == (3, 100.0, True)
    assert (rows["unknown"].responses, rows["unknown"].points) == (1, 0.0)
    assert rows["city"].responses == 6
    assert rows["city"].points == pytest.approx((25 / 6 - 1) / 4 * 100)
    assert rows["city"].meets_plan is False
    done = run_service_cli(built_url, "report", "satisfaction", "--year", str(YEAR), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "海勃湾区 Haibowan  2          4.50        87.5    below" in done.stdout
    written = list(csv.DictReader(io.StringIO((tmp_path / f"satisfaction-{YEAR}.csv").read_text())))
    assert [(r["code"], r["responses"], r["points"]) for r in written] == [
        (HAIBOWAN, "2", "87.50"), (HAINAN, "3", "100.00"), ("unknown", "1", "0.00"), ("city", "6", "79.17"),
    ]  # fmt: skip


async def _outcomes(conn: asyncpg.Connection, source: str, n: int) -> list[str]:
    async def handled() -> bool:
        return (
            await conn.fetchval(
                "SELECT count(*) FROM svc.inbound_sms WHERE source = $1 AND handled_at IS NOT NULL", source
            )
            >= n
        )

    await wait_until(handled, 5, f"{n} message(s) from {source} handled")
    rows = await conn.fetch("SELECT outcome FROM svc.inbound_sms WHERE source = $1 ORDER BY id", source)
    return [r["outcome"] for r in rows]


async def _deliveries_to(conn: asyncpg.Connection, person: str) -> int:
    return await conn.fetchval(
        "SELECT count(*) FROM svc.delivery WHERE recipient_id = (SELECT id FROM svc.recipient WHERE phone = $1)",
        person,
    )


async def test_a_score_by_sms_reply_goes_to_the_latest_warning_sent_and_a_later_one_replaces_it(
    conn: asyncpg.Connection, built_url: str, smsc: SmscPeer, units: dict
) -> None:
    ctx = quick_ctx()
    await add_recipients(conn, 1, first_phone=13_700_000_000, areas=(HAINAN,))
    person = phone(0, 13_700_000_000)
    await expand_all(conn)  # earlier warnings first: the next one is the latest sent to this person
    earlier = await issue(conn, level="yellow", ctx=ctx)
    await expand_all(conn)
    latest = await issue(conn, level="orange", ctx=ctx)
    await expand_all(conn)
    told = await _deliveries_to(conn, person)
    channel = SmsChannel(
        SmppSettings(smsc.host, smsc.port, smsc.system_id, smsc.password, reconnect_min_s=0.05)
    )
    assert await channel.start(wait_s=3)
    pool = await asyncpg.create_pool(built_url, min_size=1, max_size=2)
    task = asyncio.create_task(inbound.store_inbound(pool, "smsc", channel))
    bare = person.removeprefix("+86")
    try:
        for n, text in enumerate(("评分 4", "５", "6", "SCORE: 2"), start=1):
            smsc.send_mo(bare, text)

            async def stored(n: int = n) -> bool:
                return (
                    await conn.fetchval("SELECT count(*) FROM svc.inbound_sms WHERE source = $1", bare) >= n
                )

            await wait_until(stored, 5, f"message {n} stored")
            await steps.run_once(conn, ctx, units, now=datetime.now(UTC))
            if n == 1:
                row = await conn.fetchrow(
                    "SELECT score, area, via, warning_id FROM svc.satisfaction WHERE recipient_id IS NOT NULL"
                )
                assert dict(row) == {
                    "score": 4,
                    "area": HAINAN,
                    "via": "sms",
                    "warning_id": latest.warning_id,
                }
        smsc.send_mo("13999999999", "3")  # nobody registered this number

        async def stranger() -> bool:
            return (
                await conn.fetchval("SELECT count(*) FROM svc.inbound_sms WHERE source = '13999999999'") >= 1
            )

        await wait_until(stranger, 5, "the stranger's message stored")
        await steps.run_once(conn, ctx, units, now=datetime.now(UTC))
    finally:
        await channel.close()
        await asyncio.wait_for(task, 5)
        await pool.close()
    assert await _outcomes(conn, bare, 4) == [
        f"score 4 for warning {latest.warning_id}",
        f"score 5 for warning {latest.warning_id}",
        "not understood",
        f"score 2 for warning {latest.warning_id}",
    ]
    assert await _outcomes(conn, "13999999999", 1) == ["unknown number"]
    scores = await conn.fetch("SELECT score, warning_id FROM svc.satisfaction WHERE via = 'sms'")
    assert [(r["score"], r["warning_id"]) for r in scores] == [(2, latest.warning_id)]  # one, the latest
    assert earlier.warning_id not in [r["warning_id"] for r in scores]
    assert await _deliveries_to(conn, person) == told  # nothing was answered to any score


# ---------------------------------------------------------------------------------------------- public form


async def _scores(conn: asyncpg.Connection) -> int:
    return await conn.fetchval("SELECT count(*) FROM svc.satisfaction WHERE via = 'web'")


async def test_the_public_page_asks_and_a_score_is_stored_by_json_or_by_its_form(
    conn: asyncpg.Connection, client: TestClient, units: dict
) -> None:
    v = await issue(conn, level="orange", areas=(HAIBOWAN,))
    alert = f"{v.warning_id}-1"
    page = await client.get(f"/alerts/{alert}")
    assert page.status == 200
    html = await page.text()
    assert 'action="/api/v1/satisfaction"' in html and f'value="{alert}"' in html
    assert f'<option value="{HAIBOWAN}">' in html and f'<option value="{HAINAN}">' not in html
    for unknown in ("/alerts/999999-1", "/alerts/not-an-id"):
        missing = await client.get(unknown)
        assert (missing.status, missing.content_type) == (404, "text/html")
    before = await _scores(conn)
    stored = await client.post(
        "/api/v1/satisfaction", json={"score": 5, "warning": alert, "area": HAIBOWAN, "comment": " 很及时 "}
    )
    assert stored.status == 201
    body = await stored.json()
    assert {k: body[k] for k in ("score", "warning", "area")} == {
        "score": 5,
        "warning": alert,
        "area": HAIBOWAN,
    }
    row = await conn.fetchrow(
        "SELECT score, area, warning_id, comment, recipient_id FROM svc.satisfaction WHERE id = $1",
        body["id"],
    )
    assert dict(row) == {
        "score": 5,
        "area": HAIBOWAN,
        "warning_id": v.warning_id,
        "comment": "很及时",
        "recipient_id": None,
    }
    form = await client.post(
        "/api/v1/satisfaction",
        data={"score": "3", "warning": alert, "area": "", "comment": ""},
        headers={"Origin": f"http://{client.host}:{client.port}"},
        allow_redirects=False,
    )
    assert form.status == 303 and form.headers["Location"] == f"/alerts/{alert}?rated=1#satisfaction"
    assert await _scores(conn) == before + 2
    thanks = await (await client.get(f"/alerts/{alert}?rated=1")).text()
    assert 'data-state="stored"' in thanks
    spec = await (await client.get("/openapi.json")).json()
    assert "SatisfactionBody" in str(spec["paths"]["/api/v1/satisfaction"]["post"]) or "score" in str(
        spec["paths"]["/api/v1/satisfaction"]["post"]
    )


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"score": 6, "warning": "{alert}"}, 422, "score"),
        ({"score": 0, "warning": "{alert}"}, 422, "score"),
        ({"score": 4.5, "warning": "{alert}"}, 422, "score"),
        ({"score": True, "warning": "{alert}"}, 422, "score"),
        ({"warning": "{alert}"}, 422, "score"),
        ({"score": 4, "warning": "12"}, 422, "warning"),
        ({"score": 4, "warning": "999999-1"}, 404, "warning"),
        ({"score": 4, "warning": "{alert}", "area": "1503"}, 422, "area"),
        ({"score": 4, "warning": "{alert}", "area": "150303000000"}, 422, "area"),  # outside the warned area
        ({"score": 4, "warning": "{alert}", "comment": "x" * 501}, 422, "comment"),
        ({"score": 4, "warning": "{alert}", "comment": "a\x00b"}, 422, "comment"),
        ({"score": 4, "warning": "{alert}", "extra": 1}, 422, "extra"),
    ],
)
async def test_a_bad_score_is_refused_and_writes_nothing(
    conn: asyncpg.Connection, client: TestClient, body: dict, status: int, field: str
) -> None:
    v = await issue(conn, level="yellow", areas=(HAIBOWAN,))
    filled = {
        k: (val.format(alert=f"{v.warning_id}-1") if isinstance(val, str) and k == "warning" else val)
        for k, val in body.items()
    }
    before = await _scores(conn)
    answer = await client.post("/api/v1/satisfaction", json=filled)
    assert answer.status == status
    problem = await answer.json()
    assert problem.get("field") == field
    assert await _scores(conn) == before


async def test_refused_without_a_write_a_cross_site_form_an_exercise_and_a_body_of_another_kind(
    conn: asyncpg.Connection, client: TestClient
) -> None:
    v = await issue(conn, level="yellow")
    drill = await issue(conn, level="yellow", exercise=True)
    before = await _scores(conn)
    form = {"score": "4", "warning": f"{v.warning_id}-1"}
    crossing = await client.post(
        "/api/v1/satisfaction", data=form, headers={"Origin": "https://evil.example"}
    )
    assert crossing.status == 403
    fetched = await client.post("/api/v1/satisfaction", data=form, headers={"Sec-Fetch-Site": "cross-site"})
    assert fetched.status == 403
    exercise = await client.post(
        "/api/v1/satisfaction", json={"score": 4, "warning": f"{drill.warning_id}-1"}
    )
    assert exercise.status == 404  # not a public message
    text = await client.post("/api/v1/satisfaction", data=b"score=4", headers={"Content-Type": "text/plain"})
    assert text.status == 415
    assert (await client.post("/api/v1/satisfaction", json=[4])).status == 400
    assert await _scores(conn) == before


async def test_one_address_gives_a_limited_number_of_scores(
    conn: asyncpg.Connection, client: TestClient
) -> None:
    v = await issue(conn, level="yellow")
    await conn.execute("DELETE FROM svc.satisfaction_attempt")
    before = await _scores(conn)
    body = {"score": 4, "warning": f"{v.warning_id}-1"}
    for _ in range(WEB_SCORE_LIMIT.per_address):
        assert (await client.post("/api/v1/satisfaction", json=body)).status == 201
    limited = await client.post("/api/v1/satisfaction", json=body)
    assert limited.status == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= WEB_SCORE_LIMIT.window.total_seconds()
    assert await _scores(conn) == before + WEB_SCORE_LIMIT.per_address
    # another address (behind no trusted proxy, X-Forwarded-For is ignored): still limited as the peer
    forged = await client.post("/api/v1/satisfaction", json=body, headers={"X-Forwarded-For": "203.0.113.9"})
    assert forged.status == 429
    await conn.execute("DELETE FROM svc.satisfaction_attempt")
