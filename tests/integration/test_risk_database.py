"""Building, storing and reading the Wuhai risk database in a real PostgreSQL."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import numpy as np
import pytest

from risk_zoning import HAZARDS
from risk_zoning.build import build_region
from risk_zoning.errors import RegionDataError
from risk_zoning.region import builtin_regions
from risk_zoning.store import current_version, load_current
from risk_zoning.summary import summarise
from tests.factories_db import fresh_database

DISTRICT_POPULATION = {"150302000000": 341_000, "150303000000": 94_700, "150304000000": 122_400}


@pytest.fixture(scope="session")
async def built_url(pg_server_url: str) -> AsyncIterator[str]:
    """A database holding one build of the Wuhai risk database, shared by the read-only tests."""
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


@pytest.fixture
async def built(built_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(built_url)
    yield conn
    await conn.close()


async def test_district_populations_add_up_exactly_to_the_official_figures(built: asyncpg.Connection) -> None:
    db = await load_current(built, "wuhai")
    districts = {u.code: u.population for u in db.units_at("district")}
    assert districts == DISTRICT_POPULATION
    assert db.unit("150300000000").population == sum(DISTRICT_POPULATION.values()) == 558_100
    assert round(float(db.population.astype(np.float64).sum())) == 558_100
    cover = db.cover("district")
    per_district = np.bincount(cover.unit, weights=cover.people, minlength=3)
    assert [int(x) for x in per_district] == [DISTRICT_POPULATION[u.code] for u in db.units_at("district")]


async def test_towns_sum_to_their_district_and_are_flagged_approximate(built: asyncpg.Connection) -> None:
    db = await load_current(built, "wuhai", arrays=False)
    towns = db.units_at("town")
    assert len(towns) == 20
    assert all(t.boundary == "approximate" for t in towns)
    for code, population in DISTRICT_POPULATION.items():
        assert sum(t.population for t in towns if t.parent == code) == population


async def test_every_hazard_is_graded_one_to_five_inside_the_city_only(built: asyncpg.Connection) -> None:
    db = await load_current(built, "wuhai")
    inside = np.zeros(db.grid.size, dtype=bool)
    inside[db.cover("district").cell] = True
    for hazard in HAZARDS:
        grades = db.layer(f"grade_{hazard}").ravel()
        assert set(np.unique(grades[inside])) <= {1, 2, 3, 4, 5}
        assert len(set(np.unique(grades[inside]))) >= 3, hazard
        assert not grades[~inside].any()
        assert len(db.assessments[hazard]["breaks"]) == 4
        weights = db.assessments[hazard]["weights"]["components"]
        assert sum(weights.values()) == pytest.approx(1.0)
        assert set(db.unit_risk[hazard]) == {u.code for u in db.units}


async def test_summary_counts_units_and_cells_per_grade(built: asyncpg.Connection) -> None:
    s = summarise(await load_current(built, "wuhai"))
    assert s["population_total"] == 558_100
    assert len(s["units"]) == 24
    for hazard in HAZARDS:
        h = s["hazards"][hazard]
        assert sum(h["units_by_grade"]["district"].values()) == 3
        assert sum(h["units_by_grade"]["town"].values()) == 20
        assert sum(h["cells_by_grade"].values()) > 1500
        assert sum(h["population_by_grade"].values()) == pytest.approx(558_100, abs=2)
    json.dumps(s, ensure_ascii=False)


async def test_a_failed_build_leaves_the_current_version_untouched(
    conn: asyncpg.Connection, tmp_path: Path
) -> None:
    first = await build_region(conn, "wuhai")
    broken = tmp_path / "wuhai"
    shutil.copytree(builtin_regions() / "wuhai", broken)
    toml = broken / "region.toml"
    toml.write_text(
        toml.read_text("utf-8").replace('hazard = ["frost_days_growing"]', 'hazard = ["frost_nights"]')
    )
    with pytest.raises(RegionDataError, match="unknown layer 'frost_nights'"):
        await build_region(conn, broken)
    assert await current_version(conn, "wuhai") == first
    assert await conn.fetchval("SELECT count(*) FROM risk.version") == 1


async def test_a_rebuild_switches_versions_and_keeps_only_the_last_three(conn: asyncpg.Connection) -> None:
    ids = [await build_region(conn, "wuhai") for _ in range(4)]
    assert await current_version(conn, "wuhai") == ids[-1]
    kept = [r["id"] for r in await conn.fetch("SELECT id FROM risk.version ORDER BY id")]
    assert kept == ids[1:]


def run_cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "risk_zoning.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_summary_json_on_the_command_line(built_url: str) -> None:
    out = run_cli("summary", "--json", url=built_url)
    assert out.returncode == 0, out.stderr
    s = json.loads(out.stdout)
    assert {u["code"]: u["population"] for u in s["units"] if u["level"] == "district"} == DISTRICT_POPULATION
    assert {u["boundary"] for u in s["units"] if u["level"] == "town"} == {"approximate"}


@pytest.mark.parametrize("hazard", HAZARDS)
def test_map_writes_a_png_of_the_risk_grades(built_url: str, tmp_path: Path, hazard: str) -> None:
    out = run_cli("map", "--hazard", hazard, "-o", str(tmp_path / "m.png"), url=built_url)
    assert out.returncode == 0, out.stderr
    png = (tmp_path / "m.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_bad_region_on_the_command_line_is_one_line_and_exit_status_2(tmp_path: Path, built_url: str) -> None:
    (tmp_path / "region.toml").write_text("[region\n")
    out = run_cli("build", "--region", str(tmp_path), "--no-progress", url=built_url)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0
    assert "malformed TOML" in out.stderr and str(tmp_path) in out.stderr
    assert out.stdout == ""


def test_map_to_an_unwritable_path_or_of_a_non_map_layer_is_one_line(built_url: str, tmp_path: Path) -> None:
    out = run_cli("map", "--hazard", "heat", "-o", "/nonexistent/dir/heat.png", url=built_url)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "/nonexistent/dir" in out.stderr
    out = run_cli("map", "--layer", "cover_district_cell", "-o", str(tmp_path / "c.png"), url=built_url)
    assert out.returncode == 2 and "no map layer 'cover_district_cell'" in out.stderr
