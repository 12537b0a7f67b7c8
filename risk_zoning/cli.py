"""`risk-zoning`: build, inspect and draw a region's hazard risk database."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from risk_zoning import HAZARDS
from risk_zoning.errors import RiskZoningError

if TYPE_CHECKING:
    import asyncpg

    from risk_zoning.store import RiskDatabase

T = TypeVar("T")

PROG = "risk-zoning"
# The status of a program killed by SIGPIPE as the shell reports it (128 + 13): what `cmd | head` leaves.
CLOSED_PIPE_STATUS = 141


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def db_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--region", default="wuhai", help="built-in region key or path to a region folder")
        sp.add_argument(
            "--database-url", default=None, help="PostgreSQL URL (default: $DATABASE_URL, else embedded)"
        )
        sp.add_argument(
            "--data-dir", type=Path, default=None, help="data directory of the embedded PostgreSQL"
        )

    b = sub.add_parser("build", help="(re)build the risk database of a region, with a progress bar")
    db_options(b)
    b.add_argument("--no-progress", action="store_true")

    s = sub.add_parser("summary", help="assessment units, population and risk grades of the current version")
    db_options(s)
    s.add_argument("--json", action="store_true", help="print one JSON object")

    m = sub.add_parser("map", help="draw risk grades (or any layer) with unit outlines to a PNG")
    db_options(m)
    what = m.add_mutually_exclusive_group(required=True)
    what.add_argument("--hazard", choices=HAZARDS)
    what.add_argument("--layer", help="a stored layer name, e.g. population, elderly_share, heat_days_ge35")
    m.add_argument("-o", "--output", type=Path, required=True)
    m.add_argument("--lang", choices=("zh", "en"), default="zh")

    c = sub.add_parser(
        "climatology", help="compute hazard climatology from historical grids into a NetCDF file"
    )
    c.add_argument("files", nargs="+", type=Path)
    c.add_argument("--region", default="wuhai")
    c.add_argument(
        "--hazard", action="append", choices=HAZARDS, help="repeatable; default: every hazard found"
    )
    c.add_argument("-o", "--output", type=Path, required=True)

    v = sub.add_parser("validate", help="check a region folder without touching any database")
    v.add_argument("--region", default="wuhai")
    return p


def _database(args: argparse.Namespace) -> AbstractContextManager[str]:
    """The database to open, chosen as `warnings-svc` chooses it, named in one line on stderr.

    `--database-url`, else $DATABASE_URL, else the embedded PostgreSQL in `--data-dir`, else in
    $WARNINGS_SVC_DATA_DIR (so that `risk-zoning summary` reads the database a demo started with
    `--data-dir` uses), else in the default data folder."""
    from risk_zoning.io.database import DATA_DIR_VARIABLE, database_url, default_data_dir, describe_database

    if args.data_dir is not None:
        data_dir, source = args.data_dir, "option --data-dir"
    elif os.environ.get(DATA_DIR_VARIABLE):
        data_dir, source = (
            Path(os.environ[DATA_DIR_VARIABLE]).expanduser(),
            f"environment variable {DATA_DIR_VARIABLE}",
        )
    else:
        data_dir, source = (
            default_data_dir(),
            f"the default; {DATA_DIR_VARIABLE} or --data-dir choose another",
        )
    url = args.database_url or os.environ.get("DATABASE_URL") or None
    if url:
        source = "option --database-url" if args.database_url else "environment variable DATABASE_URL"
    print(f"{PROG}: {describe_database(url, data_dir, source)}", file=sys.stderr)
    return database_url(url, data_dir)


async def _with_connection(url: str, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    from risk_zoning.io.database import connect

    conn = await connect(url)
    try:
        return await fn(conn)
    finally:
        await conn.close()


def _build(args: argparse.Namespace) -> int:
    from risk_zoning.build import build_region
    from risk_zoning.region import load_region_file, resolve_region

    # an unknown region or a malformed region.toml is refused before a database is started
    load_region_file(resolve_region(args.region) / "region.toml")
    with _database(args) as url:
        vid = asyncio.run(
            _with_connection(url, lambda c: build_region(c, args.region, progress=not args.no_progress))
        )
    print(f"built risk database version {vid} for region {args.region}")
    return 0


def _load(args: argparse.Namespace, arrays: bool = True) -> RiskDatabase:
    from risk_zoning.region import load_region
    from risk_zoning.store import load_current

    key = load_region(args.region).key if "/" in args.region else args.region
    with _database(args) as url:
        return asyncio.run(_with_connection(url, lambda c: load_current(c, key, arrays=arrays)))


def _summary(args: argparse.Namespace) -> int:
    from risk_zoning.summary import summarise

    s = summarise(_load(args))
    if args.json:
        json.dump(s, sys.stdout, ensure_ascii=False, indent=2)
        print()
        return 0
    print(f"{s['name']} ({s['region_code']}), risk database version {s['version']}, built {s['built_at']}")
    print(f"population total {s['population_total']:,} ({s['population_source']})\n")
    print(
        f"{'code':<13}{'level':<9}{'population':>11} {'km²':>7}  {'boundary':<12}"
        + "".join(f"{h:>10}" for h in HAZARDS)
        + "  name"
    )
    for u in s["units"]:
        grades = "".join(f"{u['risk'].get(h, {}).get('grade', '-'):>10}" for h in HAZARDS)
        print(
            f"{u['code']:<13}{u['level']:<9}{u['population']:>11,} {u['area_km2']:>7.1f}  {u['boundary']:<12}"
            f"{grades}  {u['name']} {u['name_en']}"
        )
    print("\ncells per grade (1 low .. 5 high)")
    for h, e in s["hazards"].items():
        print(f"  {h:<10}" + "  ".join(f"{g}:{n:>5}" for g, n in e["cells_by_grade"].items()))
    return 0


def _map(args: argparse.Namespace) -> int:
    from risk_zoning.plot import render_layer_map, render_risk_map

    folder = args.output.parent
    if not folder.is_dir():  # refused before a database is started and the risk database read
        raise FileNotFoundError(errno.ENOENT, "no such folder", str(folder))
    db = _load(args)
    if args.hazard:
        if f"grade_{args.hazard}" not in db.arrays:
            raise RiskZoningError(f"hazard {args.hazard} is not assessed in this region")
        png = render_risk_map(db, args.hazard, lang=args.lang)
    else:
        maps = sorted(n for n, a in db.arrays.items() if a.data.ndim == 2)
        if args.layer not in maps:
            raise RiskZoningError(f"no map layer {args.layer!r}; layers: {', '.join(maps)}")
        png = render_layer_map(db, args.layer, lang=args.lang)
    tmp = args.output.with_name(args.output.name + ".part")
    tmp.write_bytes(png)
    tmp.replace(args.output)
    print(f"wrote {args.output}")
    return 0


def _climatology(args: argparse.Namespace) -> int:
    from risk_zoning.climatology import climatology_steps, compute_climatology
    from risk_zoning.region import load_region

    region = load_region(args.region)
    hazards = args.hazard or HAZARDS
    bar = _StepBar(total=len(climatology_steps(hazards)))
    try:
        indicators = compute_climatology(args.files, region.grid, hazards=hazards, progress=bar)
    finally:
        bar.close()
    _write_netcdf(indicators, args.output)
    print(f"wrote {len(indicators)} indicators to {args.output}: {', '.join(sorted(indicators))}")
    return 0


def _write_netcdf(indicators: dict[str, Any], output: Path) -> None:
    """Write all indicators to one NetCDF file, atomically (a partial file never carries the final name)."""
    import xarray as xr

    tmp = output.with_name(output.name + ".part")
    xr.Dataset(indicators).to_netcdf(tmp, engine="netcdf4")
    tmp.replace(output)


class _StepBar:
    """A tqdm bar advanced by named steps."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="step", leave=False)

    def __call__(self, name: str) -> None:
        self._bar.set_description(name)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def _validate(args: argparse.Namespace) -> int:
    from risk_zoning.features import load_features
    from risk_zoning.region import load_region

    r = load_region(args.region)
    load_features(r.path(r.config.features.file))
    print(
        f"{r.folder}: ok ({len(r.districts)} districts, {len(r.towns)} towns, grid {r.grid.ny}x{r.grid.nx})"
    )
    return 0


COMMANDS = {
    "build": _build,
    "summary": _summary,
    "map": _map,
    "climatology": _climatology,
    "validate": _validate,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; errors become one line on stderr and exit status 2, a closed stdout ends it quietly."""
    args = _parser().parse_args(argv)
    try:
        status = COMMANDS[args.command](args)
        sys.stdout.flush()  # a closed pipe shows here rather than as a notice at interpreter exit
        return status
    except BrokenPipeError:  # `risk-zoning summary | head`: the reader has what it wanted
        return end_on_closed_pipe()
    except RiskZoningError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an unwritable output path and the like
        where = f"{e.filename}: " if e.filename else ""
        print(f"{PROG}: {where}{e.strerror or e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def end_on_closed_pipe() -> int:
    """After stdout's reader went away: nothing more said, exit status 141 as after SIGPIPE in the shell.

    Output still buffered would fail again when Python flushes stdout at exit (a second "Broken pipe" notice
    and status 120); stdout is pointed at the null device instead, as the Python documentation advises."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)
    return CLOSED_PIPE_STATUS


if __name__ == "__main__":
    sys.exit(main())
