"""Loading a region's risk database into numpy: a province-sized version against the memory-copy floor.

Writes a synthetic version shaped like a province at 1 km (default 1000 x 1000 cells, 20 float32 layers plus
cell covers) into a real PostgreSQL (embedded unless --database-url), then times `load_version` against a
baseline in the same process: copying the same bytes from memory into new numpy arrays.

    python bench/risk_load.py [--cells 1000] [--layers 20] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from risk_zoning.grid import RegularGrid
from risk_zoning.io.database import RISK_MIGRATIONS, connect, database_url, upgrade
from risk_zoning.store import StoredArray, load_version, write_version


def synthetic_arrays(n: int, layers: int) -> list[StoredArray]:
    rng = np.random.default_rng(0)
    out = [
        StoredArray(f"layer_{i:02d}", "exposure", None, "1", rng.random((n, n), dtype=np.float32), {})
        for i in range(layers)
    ]
    cells = np.arange(n * n, dtype=np.int32)
    out += [
        StoredArray("cover_district_cell", "cover", None, "1", cells, {}),
        StoredArray("cover_district_unit", "cover", None, "1", (cells // 10_000).astype(np.int32), {}),
        StoredArray("cover_district_people", "cover", None, "people", rng.integers(0, 500, n * n), {}),
        StoredArray("cover_district_fraction", "cover", None, "1", np.ones(n * n, dtype=np.float32), {}),
    ]
    return out


async def run(url: str, n: int, layers: int, repeat: int) -> dict:
    conn = await connect(url)
    try:
        await upgrade(conn, [RISK_MIGRATIONS])
        arrays = synthetic_arrays(n, layers)
        unit = {
            "code": "150000000000",
            "idx": 0,
            "name": "省",
            "name_en": "province",
            "level": "city",
            "parent": None,
            "population": 1,
            "area_km2": 1.0,
            "boundary": "official",
            "code_status": "official",
            "geometry": {"type": "Point", "coordinates": [0, 0]},
        }
        vid = await write_version(
            conn,
            region="bench",
            region_code="150000",
            region_name="bench",
            grid=RegularGrid(100.0, 30.0, 1 / 120, n, n),
            config={},
            provenance={},
            units=[unit],
            arrays=arrays,
            assessments=[],
            unit_risk=[],
        )
        total_bytes = sum(a.data.nbytes for a in arrays)
        await load_version(conn, vid)  # warm the server's cache, as in a running service
        load_s, copy_s = [], []
        for _ in range(repeat):
            t = time.perf_counter()
            db = await load_version(conn, vid)
            load_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            copies = [np.frombuffer(a.data.tobytes(), dtype=a.data.dtype) for a in arrays]
            copy_s.append(time.perf_counter() - t)
            assert len(db.arrays) == len(arrays) and len(copies) == len(arrays)
        await conn.execute("DELETE FROM risk.current_version WHERE region = 'bench'")
        await conn.execute("DELETE FROM risk.version WHERE region = 'bench'")
    finally:
        await conn.close()
    best_load, best_copy = min(load_s), min(copy_s)
    return {
        "cells_per_layer": n * n,
        "arrays": len(arrays),
        "megabytes": round(total_bytes / 1e6, 1),
        "load_seconds": round(best_load, 4),
        "load_seconds_median": round(statistics.median(load_s), 4),
        "memory_copy_seconds": round(best_copy, 4),
        "ratio_to_memory_copy": round(best_load / best_copy, 1),
        "load_gb_per_s": round(total_bytes / best_load / 1e9, 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--cells", type=int, default=1000, help="cells per side (1000 -> a million cells per layer)"
    )
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--database-url", default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as d, database_url(args.database_url, Path(d)) as url:
        result = asyncio.run(run(url, args.cells, args.layers, args.repeat))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>24}: {v}")


if __name__ == "__main__":
    main()
