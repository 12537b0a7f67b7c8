"""Storing and loading versions of the risk database in PostgreSQL (schema `risk`)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import asyncpg
import numpy as np
import shapely

from risk_zoning.errors import DatabaseError
from risk_zoning.grid import RegularGrid

LEVELS: tuple[str, ...] = ("city", "district", "town")
KEEP_VERSIONS = 3  # older versions are deleted after a successful switch


@dataclass(frozen=True)
class UnitRecord:
    code: str
    idx: int
    name: str
    name_en: str
    level: str
    parent: str | None
    population: int
    area_km2: float
    boundary: str
    code_status: str
    geometry: dict[str, Any]  # GeoJSON

    def shape(self) -> shapely.Geometry:
        return shapely.geometry.shape(self.geometry)


@dataclass(frozen=True)
class Cover:
    """Which cells make up each unit of a level: parallel arrays (see risk_zoning.grid.CellCover)."""

    cell: np.ndarray
    unit: np.ndarray
    people: np.ndarray
    fraction: np.ndarray


@dataclass(frozen=True)
class StoredArray:
    name: str
    kind: str
    hazard: str | None
    units: str
    data: np.ndarray
    provenance: dict[str, Any]


@dataclass
class RiskDatabase:
    """One version of a region's risk database, loaded into memory for scoring and display."""

    version_id: int
    region: str
    region_code: str
    region_name: str
    created_at: datetime
    grid: RegularGrid
    config: dict[str, Any]
    provenance: dict[str, Any]
    units: list[UnitRecord]
    arrays: dict[str, StoredArray]
    assessments: dict[str, dict[str, Any]] = field(default_factory=dict)
    unit_risk: dict[str, dict[str, tuple[float, int]]] = field(default_factory=dict)
    unit_population_by_grade: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def units_at(self, level: str) -> list[UnitRecord]:
        return sorted((u for u in self.units if u.level == level), key=lambda u: u.idx)

    def unit(self, code: str) -> UnitRecord:
        for u in self.units:
            if u.code == code:
                return u
        raise KeyError(code)

    def layer(self, name: str) -> np.ndarray:
        return self.arrays[name].data

    def layers_of(self, *kinds: str) -> dict[str, StoredArray]:
        return {k: a for k, a in self.arrays.items() if a.kind in kinds}

    def cover(self, level: str) -> Cover:
        """Cells of each unit of `level`; the city level is every cell of the district cover."""
        if level == "city":
            d = self.cover("district")
            return Cover(d.cell, np.zeros_like(d.unit), d.people, d.fraction)
        a = self.arrays
        return Cover(
            a[f"cover_{level}_cell"].data.astype(np.int64),
            a[f"cover_{level}_unit"].data,
            a[f"cover_{level}_people"].data,
            a[f"cover_{level}_fraction"].data.astype(np.float64),
        )

    @property
    def population(self) -> np.ndarray:
        """Residents per cell, shape (ny, nx)."""
        return self.arrays["population"].data


def encode_array(data: np.ndarray) -> tuple[str, list[int], bytes]:
    """dtype string, shape and raw little-endian bytes of an array."""
    arr = np.ascontiguousarray(data)
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    return arr.dtype.str, list(arr.shape), arr.tobytes()


def decode_array(dtype: str, shape: list[int], data: bytes) -> np.ndarray:
    """The array stored by `encode_array`, read-only and without a copy."""
    return np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)


async def current_version(conn: asyncpg.Connection, region: str) -> int | None:
    """The id of the region's current version, or None when it has never been built (or no schema)."""
    if not await conn.fetchval("SELECT to_regclass('risk.current_version') IS NOT NULL"):
        return None
    return cast(
        "int | None",
        await conn.fetchval("SELECT version_id FROM risk.current_version WHERE region = $1", region),
    )


async def write_version(
    conn: asyncpg.Connection,
    *,
    region: str,
    region_code: str,
    region_name: str,
    grid: RegularGrid,
    config: dict[str, Any],
    provenance: dict[str, Any],
    units: list[dict[str, Any]],
    arrays: list[StoredArray],
    assessments: list[dict[str, Any]],
    unit_risk: list[tuple[str, str, float, int, list[int]]],
) -> int:
    """Write a complete version and make it current in ONE transaction: readers see the old or the new one."""
    async with conn.transaction():
        vid = await conn.fetchval(
            """INSERT INTO risk.version (region, region_code, region_name, grid, config, provenance)
               VALUES ($1, $2, $3, $4::jsonb, $5::jsonb, $6::jsonb) RETURNING id""",
            region,
            region_code,
            region_name,
            json.dumps(grid.to_dict()),
            json.dumps(config, ensure_ascii=False),
            json.dumps(provenance, ensure_ascii=False),
        )
        await conn.copy_records_to_table(
            "unit",
            schema_name="risk",
            columns=[
                "version_id",
                "code",
                "idx",
                "name",
                "name_en",
                "level",
                "parent",
                "population",
                "area_km2",
                "boundary",
                "code_status",
                "geometry",
            ],
            records=[
                (
                    vid,
                    u["code"],
                    u["idx"],
                    u["name"],
                    u["name_en"],
                    u["level"],
                    u["parent"],
                    u["population"],
                    u["area_km2"],
                    u["boundary"],
                    u["code_status"],
                    json.dumps(u["geometry"]),
                )
                for u in units
            ],
        )
        records = []
        for a in arrays:
            dtype, shape, raw = encode_array(a.data)
            records.append(
                (
                    vid,
                    a.name,
                    a.kind,
                    a.hazard,
                    dtype,
                    shape,
                    a.units,
                    json.dumps(a.provenance, ensure_ascii=False),
                    raw,
                )
            )
        await conn.copy_records_to_table(
            "layer",
            schema_name="risk",
            columns=["version_id", "name", "kind", "hazard", "dtype", "shape", "units", "provenance", "data"],
            records=records,
        )
        await conn.executemany(
            """INSERT INTO risk.assessment (version_id, hazard, method, weights, breaks)
               VALUES ($1, $2, $3::jsonb, $4::jsonb, $5)""",
            [
                (vid, a["hazard"], json.dumps(a["method"]), json.dumps(a["weights"]), list(a["breaks"]))
                for a in assessments
            ],
        )
        await conn.copy_records_to_table(
            "unit_risk",
            schema_name="risk",
            columns=["version_id", "unit_code", "hazard", "risk_index", "grade", "population_by_grade"],
            records=[(vid, code, hz, idx, grade, pbg) for hz, code, idx, grade, pbg in unit_risk],
        )
        await conn.execute(
            """INSERT INTO risk.current_version (region, version_id) VALUES ($1, $2)
               ON CONFLICT (region) DO UPDATE SET version_id = EXCLUDED.version_id, switched_at = now()""",
            region,
            vid,
        )
        await conn.execute(
            """DELETE FROM risk.version WHERE region = $1 AND id NOT IN
                 (SELECT id FROM risk.version WHERE region = $1 ORDER BY id DESC LIMIT $2)""",
            region,
            KEEP_VERSIONS,
        )
    return cast(int, vid)


async def load_version(conn: asyncpg.Connection, version_id: int, *, arrays: bool = True) -> RiskDatabase:
    """Load one version; with `arrays=False` only units and results (no gridded data)."""
    v = await conn.fetchrow("SELECT * FROM risk.version WHERE id = $1", version_id)
    if v is None:
        raise DatabaseError(f"risk database version {version_id} does not exist")
    units = [
        UnitRecord(
            code=r["code"],
            idx=r["idx"],
            name=r["name"],
            name_en=r["name_en"],
            level=r["level"],
            parent=r["parent"],
            population=r["population"],
            area_km2=r["area_km2"],
            boundary=r["boundary"],
            code_status=r["code_status"],
            geometry=json.loads(r["geometry"]),
        )
        for r in await conn.fetch(
            "SELECT * FROM risk.unit WHERE version_id = $1 ORDER BY level, idx", version_id
        )
    ]
    stored: dict[str, StoredArray] = {}
    if arrays:
        for r in await conn.fetch(
            "SELECT name, kind, hazard, dtype, shape, units, provenance, data FROM risk.layer WHERE version_id = $1",
            version_id,
        ):
            stored[r["name"]] = StoredArray(
                r["name"],
                r["kind"],
                r["hazard"],
                r["units"],
                decode_array(r["dtype"], list(r["shape"]), r["data"]),
                json.loads(r["provenance"]),
            )
    db = RiskDatabase(
        version_id=version_id,
        region=v["region"],
        region_code=v["region_code"],
        region_name=v["region_name"],
        created_at=v["created_at"],
        grid=RegularGrid.from_dict(json.loads(v["grid"])),
        config=json.loads(v["config"]),
        provenance=json.loads(v["provenance"]),
        units=units,
        arrays=stored,
    )
    for r in await conn.fetch(
        "SELECT * FROM risk.assessment WHERE version_id = $1 ORDER BY hazard", version_id
    ):
        db.assessments[r["hazard"]] = {
            "method": json.loads(r["method"]),
            "weights": json.loads(r["weights"]),
            "breaks": list(r["breaks"]),
        }
    for r in await conn.fetch("SELECT * FROM risk.unit_risk WHERE version_id = $1", version_id):
        db.unit_risk.setdefault(r["hazard"], {})[r["unit_code"]] = (r["risk_index"], r["grade"])
        db.unit_population_by_grade.setdefault(r["hazard"], {})[r["unit_code"]] = list(
            r["population_by_grade"]
        )
    return db


async def load_current(conn: asyncpg.Connection, region: str, *, arrays: bool = True) -> RiskDatabase:
    """The region's current version; `DatabaseError` naming the build command when there is none."""
    vid = await current_version(conn, region)
    if vid is None:
        raise DatabaseError(
            f"no risk database for region {region!r}: run `risk-zoning build --region {region}`"
        )
    return await load_version(conn, vid, arrays=arrays)


async def region_units(conn: asyncpg.Connection, region: str) -> dict[str, UnitRecord]:
    """The region's assessment units by geocode, from the current risk database (no arrays)."""
    db: RiskDatabase = await load_current(conn, region, arrays=False)
    return {u.code: u for u in db.units}


async def ensure_built(conn: asyncpg.Connection, region: str = "wuhai", progress: bool = True) -> int:
    """The current version id, building the region's risk database first if it has none.

    Here rather than in `risk_zoning.build`: most callers (every command of the service) find it built, and
    need not import what building takes (xarray, the assessment: about a second)."""
    from risk_zoning.io.database import RISK_MIGRATIONS, upgrade

    await upgrade(conn, [RISK_MIGRATIONS])
    vid = await current_version(conn, region)
    if vid is None:
        from risk_zoning.build import build_region

        vid = await build_region(conn, region, progress=progress)
    return vid
