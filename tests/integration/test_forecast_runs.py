"""Forecast runs end to end: scenario files -> `warnings-svc score` / ingest / upload / inbox -> proposals,
against the embedded PostgreSQL and the real HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import xarray as xr
from aiohttp.test_utils import TestClient, TestServer

from risk_zoning.io.database import create_pool, upgrade
from risk_zoning.region import load_region
from risk_zoning.store import ensure_built, load_current
from tests.factories_cli import problem_lines
from warnings_svc.database import MIGRATIONS
from warnings_svc.demo.scenarios import write_scenario
from warnings_svc.forecast.criteria import load_criteria
from warnings_svc.forecast.ingest import live_warnings, score_files, store_result
from warnings_svc.forecast.scoring import InclusionRules
from warnings_svc.forecast.tiled import DaskScoring
from warnings_svc.settings import ScoringSettings, Settings
from warnings_svc.web.accounts import create_user, issue_token
from warnings_svc.web.app import create_app

HAZARD_SCENARIOS = ("heat", "rainstorm", "frost", "sandstorm")
LEVELS = {"blue", "yellow", "orange", "red"}


@pytest.fixture(scope="session")
def scenarios(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    """One deterministic run per scenario, CF style, plus an ECMWF-style 10-member heat ensemble."""
    root = tmp_path_factory.mktemp("scenarios")
    region = load_region("wuhai")
    out = {name: write_scenario(name, root / name, region) for name in (*HAZARD_SCENARIOS, "quiet")}
    out["heat_ensemble"] = write_scenario("heat", root / "ens", region, members=10, style="ecmwf")
    return out


def score_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "warnings_svc.cli", "score", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def check_proposal(p: dict) -> None:
    assert p["hazard"] in HAZARD_SCENARIOS and p["level"] in LEVELS
    assert p["areas"] and all(len(a) == 12 and a.isdigit() for a in p["areas"])
    onset, expires = datetime.fromisoformat(p["onset"]), datetime.fromisoformat(p["expires"])
    assert onset.utcoffset() == timedelta(hours=8) and expires > onset
    assert 0.0 <= p["probability"] <= 1.0
    assert isinstance(p["exposed_population"], int) and p["exposed_population"] > 0
    assert {"run", "hazard", "inclusion"} <= set(p["evidence"])
    for polygon in p["polygons"]:
        pairs = polygon.split(" ")
        assert pairs[0] == pairs[-1] and len(pairs) >= 4


@pytest.mark.parametrize("hazard", HAZARD_SCENARIOS)
def test_score_proposes_a_warning_for_each_hazard_scenario(
    scenarios: dict, built_url: str, hazard: str
) -> None:
    out = score_cli(*map(str, scenarios[hazard]), "--format", "json", url=built_url)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["run"]["hazards"][hazard]["evaluated"] is True
    mine = [p for p in doc["proposals"] if p["hazard"] == hazard]
    assert mine, doc["run"]
    for p in doc["proposals"]:
        check_proposal(p)
        assert p["action"] == "new"


def test_a_quiet_run_proposes_nothing(scenarios: dict, built_url: str) -> None:
    out = score_cli(*map(str, scenarios["quiet"]), url=built_url)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["proposals"] == []


def test_an_ensemble_gives_member_counts_and_probabilities(scenarios: dict, built_url: str) -> None:
    out = score_cli(*map(str, scenarios["heat_ensemble"]), url=built_url)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["run"]["members"] == 10
    heat = [p for p in doc["proposals"] if p["hazard"] == "heat"]
    assert heat
    assert all(p["evidence"]["hazard"]["members"] == 10 for p in heat)
    # the strongest level is reached by only some members somewhere
    assert min(p["probability"] for p in heat) < 1.0 or any(
        i["max_probability"] < 1.0 for p in heat for i in p["impacts"]
    )


def test_score_plot_draws_the_levels(scenarios: dict, built_url: str, tmp_path: Path) -> None:
    out = score_cli(*map(str, scenarios["sandstorm"]), "--plot", str(tmp_path / "levels.png"), url=built_url)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "levels.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _no_units(src: Path, dst: Path) -> Path:
    ds = xr.open_dataset(src)
    ds = ds[["tas"]].load()
    ds["tas"].attrs.pop("units", None)
    ds.to_netcdf(dst)
    return dst


@pytest.mark.parametrize("kind", ["text", "truncated", "no_units"])
def test_a_bad_file_exits_2_with_one_line_naming_it_and_nothing_on_stdout(
    scenarios: dict, built_url: str, tmp_path: Path, kind: str
) -> None:
    bad = tmp_path / f"{kind}.nc"
    if kind == "text":
        bad.write_text("this is not a forecast")
    elif kind == "truncated":
        bad.write_bytes(scenarios["heat"][0].read_bytes()[:5000])
    else:
        _no_units(scenarios["heat"][0], bad)
    out = score_cli(str(bad), url=built_url)
    assert out.returncode == 2
    assert out.stdout == ""
    lines = problem_lines(out.stderr)  # after the line naming the database scored against
    assert len(lines) == 1 and lines[0].startswith("warnings-svc: ") and bad.name in lines[0]


# ---------------------------------------------------------------------------------------------- lifecycle


async def test_a_new_run_is_diffed_against_warnings_in_force(scenarios: dict, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await upgrade(conn, MIGRATIONS)
        await ensure_built(conn, "wuhai", progress=False)
        db = await load_current(conn, "wuhai")
        now = datetime.now(UTC)
        heat_id = await conn.fetchval(
            "INSERT INTO svc.warning (hazard, level, areas, onset, expires) VALUES ('heat', 'yellow', $1, $2, $3)"
            " RETURNING id",
            ["150304000000"],
            now,
            now + timedelta(hours=6),
        )
        sand_id = await conn.fetchval(
            "INSERT INTO svc.warning (hazard, level, areas, onset, expires) VALUES ('sandstorm', 'yellow', $1, $2,"
            " $3) RETURNING id",
            ["150302000000"],
            now,
            now + timedelta(hours=6),
        )
        live = await live_warnings(conn)
        criteria, rules = load_criteria(), InclusionRules()

        hot = score_files(scenarios["heat"], db, criteria, rules, live)
        heat = [p for p in hot.proposals if p.hazard == "heat"]
        changed = [p for p in heat if p.replaces == heat_id]
        assert len(changed) == 1 and changed[0].action in ("upgrade", "expand")
        assert changed[0].changes["from_level"] == "yellow"
        # the heat run has no dust storm: the live sandstorm warning is proposed for cancellation
        cancels = [p for p in hot.proposals if p.action == "cancel"]
        assert [c.replaces for c in cancels] == [sand_id]

        # a run with temperature only cannot judge sandstorms, so it never cancels one
        temp_only = _subset(
            scenarios["quiet"][0], ["tas"], Path(scenarios["quiet"][0]).parent / "tas_only.nc"
        )
        quiet = score_files([temp_only], db, criteria, rules, live)
        assert [(p.action, p.replaces) for p in quiet.proposals] == [("cancel", heat_id)]
    finally:
        await conn.close()


def _subset(src: Path, names: list[str], dst: Path) -> Path:
    with xr.open_dataset(src) as ds:
        ds[names].load().to_netcdf(dst)
    return dst


async def test_a_run_is_stored_once_and_supersedes_earlier_proposals(scenarios: dict, db_url: str) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        await upgrade(conn, MIGRATIONS)
        await ensure_built(conn, "wuhai", progress=False)
        db = await load_current(conn, "wuhai")
        first = score_files(scenarios["heat"], db, load_criteria(), InclusionRules()).to_json()
        run_id, ids, new = await store_result(conn, first)
        assert new and ids
        again = await store_result(conn, first)
        assert again == (run_id, ids, False)
        second = score_files(scenarios["heat_ensemble"], db, load_criteria(), InclusionRules()).to_json()
        _, ids2, _ = await store_result(conn, second)
        statuses = dict(await conn.fetch("SELECT id, status FROM svc.proposal"))
        assert {statuses[i] for i in ids} == {"superseded"}
        assert {statuses[i] for i in ids2} == {"open"}
    finally:
        await conn.close()


# ---------------------------------------------------------------------------------------------- service


@pytest.fixture
async def service(built_url: str, tmp_path: Path) -> AsyncIterator[tuple[TestClient, Path]]:
    async with serving(built_url, tmp_path) as served:
        yield served


@contextlib.asynccontextmanager
async def serving(
    built_url: str, tmp_path: Path, *, singletons: bool = True, **scoring: Any
) -> AsyncIterator[tuple[TestClient, Path]]:
    """The service with an operations token, scoring settings changed by `scoring`; `singletons=False` as a
    web worker other than the primary."""
    pool = await create_pool(built_url, max_size=4)
    settings = Settings(
        database_url=built_url,
        data_dir=tmp_path,
        scoring=ScoringSettings(inbox_poll_seconds=0.2, **scoring),
    )
    async with pool.acquire() as conn:
        token = (
            await issue_token(conn, "ops")
            if await _has_user(conn, "ops")
            else (await create_user(conn, "ops", "operations"))[1]
        )
    client = TestClient(
        TestServer(create_app(settings, pool, database_url=built_url, singletons=singletons)),
        headers={"Authorization": f"Bearer {token}"},
    )
    await client.start_server()
    try:
        yield client, tmp_path
    finally:
        await client.close()
        await pool.close()


async def _has_user(conn, name: str) -> bool:
    return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM svc.app_user WHERE name = $1)", name)


async def test_an_upload_needs_a_user_who_may_send_forecasts(scenarios: dict, service) -> None:
    client, _ = service
    body = scenarios["quiet"][0].read_bytes()
    anonymous = await client.post(
        "/api/v1/runs?filename=a.nc",
        data=body,
        headers={"Content-Type": "application/x-netcdf", "Authorization": ""},
    )
    assert anonymous.status == 401


async def test_an_uploaded_run_is_scored_off_the_loop_and_stored(scenarios: dict, service) -> None:
    client, _ = service
    path = scenarios["sandstorm"][0]
    upload = client.post(
        f"/api/v1/runs?filename={path.name}",
        data=path.read_bytes(),
        headers={"Content-Type": "application/x-netcdf"},
    )
    # while the worker scores, the event loop still answers
    health = asyncio.ensure_future(client.get("/healthz"))
    resp = await upload
    assert (await health).status == 200
    assert resp.status in (200, 201), await resp.text()
    body = await resp.json()
    assert body["proposal_ids"] and {p["hazard"] for p in body["proposals"]} >= {"sandstorm"}
    run = await (await client.get(f"/api/v1/runs/{body['run_id']}")).json()
    assert [p["id"] for p in run["proposals"]] == body["proposal_ids"]
    listed = await (await client.get("/api/v1/proposals?hazard=sandstorm")).json()
    assert {p["id"] for p in listed["proposals"]} >= set(body["proposal_ids"])
    page = await (await client.get("/?lang=en")).text()
    assert "Warning proposals" in page and 'class="warning warning-' in page
    assert all(f"<td>{i}</td>" in page for i in body["proposal_ids"])
    png = await client.get("/maps/proposals.png")
    assert png.status == 200 and (await png.read())[:4] == b"\x89PNG"
    # proposals are internal until a warning is issued: without a login, none of them shows
    anonymous = {"Authorization": ""}
    for path in (f"/api/v1/runs/{body['run_id']}", "/api/v1/proposals", "/maps/proposals.png"):
        assert (await client.get(path, headers=anonymous)).status == 401, path
    public = await (await client.get("/?lang=en", headers=anonymous)).text()
    assert 'class="warning warning-' not in public and "Log in to see open proposals" in public


async def test_an_unusable_upload_is_a_422_problem_naming_the_file(service) -> None:
    client, _ = service
    resp = await client.post(
        "/api/v1/runs?filename=junk.nc", data=b"junk", headers={"Content-Type": "application/x-netcdf"}
    )
    assert resp.status == 422
    problem = await resp.json()
    assert "junk.nc" in problem["detail"] and "\n" not in problem["detail"]


async def test_an_upload_over_the_size_limit_is_a_413_problem_and_leaves_no_file(
    built_url: str, tmp_path: Path
) -> None:
    """Uploads are streamed to disk; past the limit the request is refused and what was written removed."""
    async with serving(built_url, tmp_path, max_upload_mib=3) as (client, root):
        resp = await client.post(
            "/api/v1/runs?filename=big.nc",
            data=b"\x00" * (4 * 2**20),
            headers={"Content-Type": "application/x-netcdf"},
        )
        assert resp.status == 413
        problem = await resp.json()
        assert problem["code"] == "too_large" and problem["field"] == "file"
        assert "3 MiB" in problem["detail"]
        assert not any((root / "uploads").iterdir())


async def test_bad_proposal_filters_are_400_problems(service) -> None:
    client, _ = service
    for query in ("status=maybe", "hazard=hail", "limit=0", "limit=x", "hazard=heat&level=red"):
        resp = await client.get(f"/api/v1/proposals?{query}")
        assert resp.status == 400, query
        problem = await resp.json()
        assert problem["status"] == 400 and problem["field"] == query.split("=")[-2].split("&")[-1], query


def _multipart(disposition: bytes, content: bytes = b"junk", *, end: bytes = b"\r\n--B--\r\n") -> bytes:
    return b"--B\r\nContent-Disposition: form-data; " + disposition + b"\r\n\r\n" + content + end


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"junk"),
        ("multipart/form-data; boundary=B", _multipart(b'name="file\x01"; filename="a.nc"')),
        ("multipart/form-data; boundary=B", _multipart(b'name="\xe4\xb8\x80\x7f"; filename="a.nc"')),
        ("multipart/form-data; boundary=B", _multipart(b'name="file"; filename="\xe4\xb8\x80\x01.nc"')),
        ("multipart/form-data; boundary=B", _multipart(b'name="file"; filename="a.nc"', end=b"")),
    ],
    ids=[
        "no boundary",
        "control byte in a name",
        "non-ascii and DEL in a name",
        "in a file name",
        "cut short",
    ],
)
async def test_a_multipart_upload_that_cannot_be_read_is_a_400_problem_and_leaves_no_file(
    service, content_type: str, body: bytes
) -> None:
    client, root = service
    resp = await client.post("/api/v1/runs", data=body, headers={"Content-Type": content_type})
    assert resp.status == 400, await resp.text()
    problem = await resp.json(content_type=None)
    assert (problem["code"], problem["field"]) == ("invalid_multipart", "file")
    assert "\n" not in problem["detail"]
    assert not any((root / "uploads").iterdir())


async def test_an_unusable_upload_names_the_file_as_uploaded_never_the_servers_folder(service) -> None:
    client, root = service
    # as a browser sends it: the name's UTF-8 as it is
    body = _multipart('name="file"; filename="run (1) 乌海.nc"'.encode())
    resp = await client.post(
        "/api/v1/runs", data=body, headers={"Content-Type": "multipart/form-data; boundary=B"}
    )
    assert resp.status == 422
    detail = (await resp.json())["detail"]
    assert detail.startswith("run (1) 乌海.nc: ")
    assert str(root) not in detail and "uploads" not in detail and "01_" not in detail


async def test_an_upload_with_an_overlong_file_name_is_a_400_problem(service) -> None:
    import aiohttp

    client, root = service
    too_long = "x" * 300 + ".nc"
    by_query = await client.post(
        f"/api/v1/runs?filename={too_long}", data=b"junk", headers={"Content-Type": "application/x-netcdf"}
    )
    assert by_query.status == 400
    assert (await by_query.json())["field"] == "filename"
    form = aiohttp.FormData()
    form.add_field("file", b"junk", filename=too_long)
    by_part = await client.post("/api/v1/runs", data=form)
    assert by_part.status == 400
    assert (await by_part.json())["field"] == "file"
    assert not any((root / "uploads").iterdir())


async def test_the_inbox_scores_good_files_and_quarantines_bad_ones(scenarios: dict, service) -> None:
    _client, root = service
    inbox = root / "inbox"
    good = inbox / scenarios["frost"][0].name
    good.write_bytes(scenarios["frost"][0].read_bytes())
    (inbox / "broken.nc").write_text("not netcdf")
    for _ in range(300):
        archived = list((root / "archive").glob("*.nc"))
        reasons = list((root / "quarantine").glob("*.reason"))
        if archived and reasons:
            break
        await asyncio.sleep(0.2)
    assert len(archived) == 1 and archived[0].name.endswith(f"_{good.name}")
    assert len(reasons) == 1 and "broken.nc" in reasons[0].read_text()
    assert not any(inbox.iterdir())


def test_observed_and_continuing_heat_raises_the_level_where_stations_saw_it(
    scenarios: dict, built_url: str, tmp_path: Path
) -> None:
    # a station in Wuda's urban core saw 40.5 degC on each of the three days before the heat run (12 UTC
    # on 14 July); the forecast keeps it above 35 degC, so the observed branch reaches red there
    csv = tmp_path / "stations.csv"
    csv.write_text(
        "station_id,lon,lat,time,tmax[degC]\n"
        + "".join(f"WUDA1,106.72,39.50,2024-07-{d}T20:00+08:00,40.5\n" for d in (12, 13, 14)),
        "utf-8",
    )
    plain = json.loads(score_cli(*map(str, scenarios["heat"]), url=built_url).stdout)
    out = score_cli(*map(str, scenarios["heat"]), "--observations", str(csv), url=built_url)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert "red" not in {p["level"] for p in plain["proposals"] if p["hazard"] == "heat"}
    red = [p for p in doc["proposals"] if p["hazard"] == "heat" and p["level"] == "red"]
    assert [p["areas"] for p in red] == [["150304000000"]]
    assert red[0]["evidence"]["branch"] == "forecast+observed"


def test_a_bad_observation_file_is_one_line_naming_file_and_row(
    scenarios: dict, built_url: str, tmp_path: Path
) -> None:
    csv = tmp_path / "stations.csv"
    csv.write_text("station_id,lon,lat,time,tmax[degC]\nA,106.7,39.5,yesterday,40\n", "utf-8")
    out = score_cli(*map(str, scenarios["heat"]), "--observations", str(csv), url=built_url)
    assert out.returncode == 2 and out.stdout == ""
    assert len(problem_lines(out.stderr)) == 1 and "stations.csv" in out.stderr


def test_the_scenario_command_writes_runs_that_score(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "warnings_svc.cli", "scenario"]
    out = subprocess.run(
        [*cmd, "frost", "-o", str(tmp_path), "--style", "grapes"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    files = [Path(line) for line in out.stdout.split()]
    assert len(files) > 1 and all(
        f.is_file() and f.parent == tmp_path for f in files
    )  # one file per variable
    bad = subprocess.run(
        [*cmd, "frost", "-o", str(tmp_path), "--members", "500"], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--members" in bad.stderr


# ---------------------------------------------------------------------------------------------- review fixes


def test_a_run_without_wind_still_scores_heat_and_says_why_sandstorm_was_not_judged(
    scenarios: dict, built_url: str, tmp_path: Path
) -> None:
    partial = _subset(scenarios["heat"][0], ["tas", "vis"], tmp_path / "tas_vis.nc")
    out = score_cli(str(partial), url=built_url)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["run"]["hazards"]["sandstorm"]["evaluated"] is False
    assert "wind" in doc["run"]["hazards"]["sandstorm"]["reason"]
    assert {p["hazard"] for p in doc["proposals"]} == {"heat"}


def test_ingest_prints_what_is_stored_also_for_a_redelivered_run(scenarios: dict, db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": db_url}
    cmd = [sys.executable, "-m", "warnings_svc.cli", "ingest", *map(str, scenarios["rainstorm"])]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    a, b = json.loads(first.stdout), json.loads(again.stdout)
    assert a["new"] is True and b["new"] is False and a["run_id"] == b["run_id"]
    assert [p["id"] for p in a["proposals"]] == [p["id"] for p in b["proposals"]]


async def test_uploaded_parts_with_the_same_or_odd_names_neither_collide_nor_escape(
    scenarios: dict, service
) -> None:
    import aiohttp

    client, _ = service
    src = scenarios["heat"][0]
    temperature = _subset(src, ["tas"], src.parent / "t_only.nc").read_bytes()
    ground = _subset(src, ["ts"], src.parent / "ts_only.nc").read_bytes()
    form = aiohttp.FormData()
    form.add_field("file", temperature, filename="a.nc")
    form.add_field("file", ground, filename="a.nc")
    resp = await client.post("/api/v1/runs", data=form)
    assert resp.status in (200, 201), await resp.text()
    assert {"air_temperature", "ground_temperature"} <= set((await resp.json())["run"]["quantities"])
    odd = await client.post(
        "/api/v1/runs?filename=..", data=b"junk", headers={"Content-Type": "application/x-netcdf"}
    )
    assert odd.status == 422


async def test_a_web_worker_other_than_the_primary_scores_uploads_and_leaves_the_inbox_to_the_primary(
    scenarios: dict, built_url: str, tmp_path: Path
) -> None:
    import aiohttp

    async with serving(built_url, tmp_path, singletons=False) as (client, root):
        (root / "inbox").mkdir()
        dropped = shutil.copy(scenarios["frost"][0], root / "inbox" / "dropped.nc")
        form = aiohttp.FormData()
        for path in scenarios["heat"]:
            form.add_field("file", path.read_bytes(), filename=path.name)
        resp = await client.post("/api/v1/runs", data=form)
        assert resp.status in (200, 201), await resp.text()
        assert (await resp.json())["run_id"] > 0
        await asyncio.sleep(1.0)  # five inbox polls at 0.2 s, had this worker watched the inbox
        assert Path(dropped).exists()


async def test_a_dangling_link_in_the_inbox_does_not_stop_the_watcher(scenarios: dict, service) -> None:
    _, root = service
    inbox = root / "inbox"
    (inbox / "ghost.nc").symlink_to(root / "nowhere.nc")
    good = inbox / scenarios["quiet"][0].name
    good.write_bytes(scenarios["quiet"][0].read_bytes())
    for _ in range(300):
        if list((root / "archive").glob(f"*{good.name}")):
            break
        await asyncio.sleep(0.2)
    assert list((root / "archive").glob(f"*{good.name}"))


async def test_a_broken_criteria_file_stops_the_service_at_start_up(built_url: str, tmp_path: Path) -> None:
    from warnings_svc.forecast.criteria import CriteriaError

    bad = tmp_path / "criteria.toml"
    bad.write_text('[heat.levels.orange]\nge = "hot"\n')
    pool = await create_pool(built_url, max_size=2)
    settings = Settings(database_url=built_url, data_dir=tmp_path, scoring=ScoringSettings(criteria_file=bad))
    client = TestClient(TestServer(create_app(settings, pool, database_url=built_url)))
    try:
        with pytest.raises(CriteriaError, match=r"criteria\.toml"):
            await client.start_server()
    finally:
        await client.close()
        await pool.close()


async def test_scoring_on_a_dask_cluster_gives_the_same_proposals(scenarios: dict, built_url: str) -> None:
    from distributed import LocalCluster

    conn = await asyncpg.connect(built_url)
    try:
        db = await load_current(conn, "wuhai")
    finally:
        await conn.close()
    plain = score_files(scenarios["sandstorm"], db, load_criteria(), InclusionRules()).to_json()
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        tiled = score_files(
            scenarios["sandstorm"],
            db,
            load_criteria(),
            InclusionRules(),
            dask=DaskScoring(cluster.scheduler_address, tile=32),
        ).to_json()
    assert tiled["proposals"] == plain["proposals"]


@pytest.mark.parametrize("command", ["score", "ingest"])  # ingest scored in-process whatever [scoring] said
def test_an_unreachable_dask_scheduler_is_one_line(
    command: str, scenarios: dict, built_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "svc.toml"
    config.write_text('[scoring]\ndask_scheduler = "tcp://127.0.0.1:9"\ndask_connect_timeout_s = 1.5\n')
    env = {**os.environ, "DATABASE_URL": built_url}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "warnings_svc.cli",
            command,
            "--config",
            str(config),
            *map(str, scenarios["heat"]),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert len(problem_lines(out.stderr)) == 1 and "127.0.0.1:9" in out.stderr
    assert "within 1.5 s" in out.stderr  # [scoring] dask_connect_timeout_s, not the 10 s default
