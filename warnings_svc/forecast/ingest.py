"""Forecast files in: read and check a run, score it against the risk database, store it or quarantine it."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import numpy as np
import xarray as xr

from risk_zoning import BEIJING, HAZARDS
from risk_zoning.errors import GridDataError
from risk_zoning.grid import RegularGrid
from risk_zoning.io.netcdf import NETCDF_SUFFIXES, QUANTITIES, QuantityNotFoundError, open_grid, read_quantity
from risk_zoning.store import RiskDatabase
from warnings_svc.forecast.criteria import Criteria
from warnings_svc.forecast.hazards import (
    HAZARD_INPUTS,
    HazardInputError,
    MissingInputError,
    combine_branches,
    evaluate,
    stations_to_grid,
)
from warnings_svc.forecast.scoring import InclusionRules, LiveWarning, Proposal, diff_against_live, propose
from warnings_svc.forecast.tiled import DaskScoring, evaluate_all_tiled
from warnings_svc.notify import notify

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ForecastRun:
    """One model run read from its files: canonical quantities on the region grid and what it came from."""

    files: tuple[dict[str, Any], ...]
    content_sha256: str
    reference_time: np.datetime64
    members: int
    data: dict[str, xr.DataArray]
    source: str

    def summary(self) -> dict[str, Any]:
        times = [da["time"].values for da in self.data.values()]
        return {
            "files": [f["name"] for f in self.files],
            "content_sha256": self.content_sha256,
            "reference_time": iso(self.reference_time),
            "valid_from": iso(min(t.min() for t in times)),
            "valid_to": iso(max(t.max() for t in times)),
            "members": self.members,
            "quantities": {q: da.attrs.get("source_variable", "") for q, da in sorted(self.data.items())},
            "source": self.source,
        }


def iso(t: np.datetime64) -> str:
    """ISO 8601 in Beijing time with its offset, as every time the service shows."""
    dt = datetime.fromtimestamp(np.datetime64(cast(Any, t), "us").astype(np.int64) / 1e6, tz=UTC)
    return dt.astimezone(BEIJING).isoformat()


def file_info(paths: Sequence[Path]) -> tuple[tuple[dict[str, Any], ...], str]:
    """Name, size and SHA-256 of every file, and one digest of the whole run (order-independent)."""
    infos: list[dict[str, Any]] = []
    for p in paths:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        infos.append({"name": p.name, "bytes": p.stat().st_size, "sha256": h.hexdigest()})
    run = hashlib.sha256("".join(sorted(i["sha256"] for i in infos)).encode()).hexdigest()
    return tuple(infos), run


def read_run(paths: Sequence[str | Path], grid: RegularGrid) -> ForecastRun:
    """Read every quantity the files hold onto the region grid; a file with nothing usable is an error."""
    files = [Path(p) for p in paths]
    for p in files:
        if not p.is_file():
            raise GridDataError(p, "no such file")
    sources = []
    for p in files:
        with open_grid(p) as ds:  # rejects what is not NetCDF, truncated files ... with one line
            sources.append(str(ds.attrs.get("source") or ds.attrs.get("title") or ""))
    data: dict[str, xr.DataArray] = {}
    for q in QUANTITIES:
        try:
            data[q] = read_quantity(files, q, grid)
        except QuantityNotFoundError:
            continue
    if not data:
        names = ", ".join(p.name for p in files)
        raise GridDataError(
            names, "no usable forecast variable (temperature, precipitation, visibility, wind, dust)"
        )
    infos, digest = file_info(files)
    members = max((da.sizes.get("member", 0) for da in data.values()), default=0)
    return ForecastRun(
        files=infos,
        content_sha256=digest,
        reference_time=_reference_time(data),
        members=members,
        data=data,
        source="; ".join(dict.fromkeys(s for s in sources if s)),
    )


def _reference_time(data: dict[str, xr.DataArray]) -> np.datetime64:
    """The run's initialisation time: the files' forecast_reference_time, else the first valid time."""
    refs = [
        da["forecast_reference_time"].values for da in data.values() if "forecast_reference_time" in da.coords
    ]
    if refs:
        return np.datetime64(min(np.min(r) for r in refs), "ns")
    return np.datetime64(min(da["time"].values.min() for da in data.values()), "ns")


def read_station_csv(path: str | Path, grid: RegularGrid) -> dict[str, xr.DataArray]:
    """Station observations from a CSV file placed on `grid` (format: `warnings_svc.forecast.hazards.stations_to_grid`)."""
    path = Path(path)
    try:
        text = path.read_text("utf-8-sig")
    except FileNotFoundError as e:
        raise HazardInputError(f"{path}: no such file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise HazardInputError(f"{path}: cannot read ({e})") from e
    return stations_to_grid(text, grid, source=str(path))


def read_observations(paths: Sequence[str | Path], grid: RegularGrid) -> dict[str, xr.DataArray]:
    """Observations for the observed-and-continuing branch: station CSV files and/or analysis grids (NetCDF)."""
    out: dict[str, xr.DataArray] = {}
    grids = [Path(p) for p in paths if Path(p).suffix.lower() in NETCDF_SUFFIXES]
    for p in paths:
        if Path(p) not in grids:
            out.update(read_station_csv(p, grid))
    if grids:
        for q in QUANTITIES:
            try:
                out[q] = read_quantity(grids, q, grid)
            except QuantityNotFoundError:
                continue
    return out


@dataclass(frozen=True)
class ScoreResult:
    run: dict[str, Any]
    proposals: list[Proposal]
    # per evaluated hazard: the strongest level reached per cell (1 = weakest level of the hazard, 0 = none)
    level_grids: dict[str, tuple[tuple[str, ...], np.ndarray]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run, "proposals": [p.to_json() for p in self.proposals]}


def score_run(
    run: ForecastRun,
    db: RiskDatabase,
    criteria: Criteria,
    rules: InclusionRules,
    live: Iterable[LiveWarning] = (),
    hazards: Sequence[str] = HAZARDS,
    observations: dict[str, xr.DataArray] | None = None,
    dask: DaskScoring | None = None,
) -> ScoreResult:
    """Evaluate every hazard the run has data for, turn results into proposals, diff them against `live`.

    With `observations`, a hazard whose observed quantity is there is also judged on the observed-and-
    continuing branch, and the two branches are combined cell by cell (the stronger wins). With
    `dask` the forecast branch is computed tile by tile on that cluster (identical results)."""
    started = time.perf_counter()
    summary = run.summary()
    summary["risk_database_version"] = db.version_id
    hazard_info: dict[str, Any] = {}
    level_grids: dict[str, tuple[tuple[str, ...], np.ndarray]] = {}
    proposals: list[Proposal] = []
    evaluated: set[str] = set()
    tiled = (
        evaluate_all_tiled(
            run.data,
            criteria,
            reference_time=run.reference_time,
            hazards=hazards,
            tile=dask.tile,
            scheduler=dask.scheduler,
            connect_timeout=dask.connect_timeout_s,
        )
        if dask is not None
        else None
    )
    for hazard in hazards:
        available = {q: run.data[q] for q in HAZARD_INPUTS[hazard] if q in run.data}
        if not available:
            hazard_info[hazard] = {"evaluated": False, "reason": "no suitable variable in the run"}
            continue
        try:
            if tiled is None:
                result = evaluate(hazard, available, criteria, reference_time=run.reference_time)
            elif hazard in tiled:
                result = tiled[hazard]
            else:  # the tiled path leaves out hazards without usable inputs; say why as the local path does
                result = evaluate(
                    hazard,
                    {q: da.isel(lat=[0], lon=[0]) for q, da in available.items()},
                    criteria,
                    reference_time=run.reference_time,
                )
        except MissingInputError as e:  # e.g. visibility without any wind: the other hazards still count
            hazard_info[hazard] = {"evaluated": False, "reason": " ".join(str(e).split())}
            continue
        observed = {q: observations[q] for q in HAZARD_INPUTS[hazard] if observations and q in observations}
        observed_note = None
        if observed and not result.suppressed:
            try:
                obs = evaluate(
                    hazard, available, criteria, reference_time=run.reference_time, observations=observed
                )
                result = combine_branches(result, obs)
            except MissingInputError as e:  # observations of the wrong kind: the forecast branch stands
                observed_note = " ".join(str(e).split())
        hazard_info[hazard] = {
            "evaluated": True,
            "suppressed": result.suppressed,
            "branch": result.branch,
            "variable": result.evidence.get("variable"),
            **({"observations_unused": observed_note} if observed_note else {}),
        }
        if result.suppressed:
            continue
        evaluated.add(hazard)
        reached = np.nan_to_num(result.probability.values) >= rules.min_probability
        level_grids[hazard] = (tuple(result.levels), reached.sum(axis=0).astype(np.int8))
        proposals.extend(
            propose(
                result,
                db,
                rules,
                run={"content_sha256": run.content_sha256, "reference_time": summary["reference_time"]},
            )
        )
    # only hazards this run could judge may cancel a live warning
    in_scope = [w for w in live if w.hazard in evaluated]
    proposals = diff_against_live(proposals, in_scope)
    summary["hazards"] = hazard_info
    summary["scoring_seconds"] = round(time.perf_counter() - started, 3)
    return ScoreResult(run=summary, proposals=proposals, level_grids=level_grids)


def score_files(
    paths: Sequence[str | Path],
    db: RiskDatabase,
    criteria: Criteria,
    rules: InclusionRules,
    live: Iterable[LiveWarning] = (),
    observation_paths: Sequence[str | Path] = (),
    dask: DaskScoring | None = None,
) -> ScoreResult:
    """Read and score in one call: the unit of work sent to a worker process by the service."""
    started = time.perf_counter()
    observations = read_observations(observation_paths, db.grid) if observation_paths else None
    result = score_run(
        read_run(paths, db.grid),
        db,
        criteria,
        rules,
        live,
        observations=observations,
        dask=dask,
    )
    result.run["seconds"] = round(time.perf_counter() - started, 3)
    return result


async def live_warnings(conn: asyncpg.Connection) -> list[LiveWarning]:
    """Warnings in force now."""
    rows = await conn.fetch(
        """SELECT id, hazard, level, areas, onset, expires FROM svc.warning
           WHERE status IN ('issued', 'updated') AND expires > now()"""
    )
    return [
        LiveWarning(
            r["id"],
            r["hazard"],
            r["level"],
            frozenset(a.strip() for a in r["areas"]),
            r["onset"],
            r["expires"],
        )
        for r in rows
    ]


async def store_result(conn: asyncpg.Connection, result: dict[str, Any]) -> tuple[int, list[int], bool]:
    """Store a scored run (`ScoreResult.to_json()`) and its proposals in one transaction; earlier open
    proposals of the hazards it evaluated are superseded. Returns (run id, proposal ids, whether the run was
    new): a re-delivered run (same file contents) is stored once."""
    run = result["run"]
    async with conn.transaction():
        run_id = await conn.fetchval(
            """INSERT INTO svc.forecast_run (content_sha256, files, reference_time, scored_at, members, quantities,
                                             source, risk_version, summary)
               VALUES ($1, $2::jsonb, $3::timestamptz, now(), $4, $5, $6, $7, $8::jsonb)
               ON CONFLICT (content_sha256) DO NOTHING RETURNING id""",
            run["content_sha256"],
            json.dumps(run["files"]),
            datetime.fromisoformat(run["reference_time"]),
            run["members"],
            list(run["quantities"]),
            run["source"],
            run["risk_database_version"],
            json.dumps(run, ensure_ascii=False),
        )
        if run_id is None:
            existing = await conn.fetchval(
                "SELECT id FROM svc.forecast_run WHERE content_sha256 = $1", run["content_sha256"]
            )
            rows = await conn.fetch("SELECT id FROM svc.proposal WHERE run_id = $1 ORDER BY id", existing)
            return existing, [r["id"] for r in rows], False
        hazards = sorted(h for h, info in run["hazards"].items() if info.get("evaluated"))
        await conn.execute(
            "UPDATE svc.proposal SET status = 'superseded' WHERE status = 'open' AND hazard = ANY($1::text[])",
            hazards,
        )
        ids = []
        for p in result["proposals"]:
            ids.append(
                await conn.fetchval(
                    """INSERT INTO svc.proposal (run_id, hazard, level, action, replaces, areas, onset, expires,
                                                 probability, exposed_population, document)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::jsonb) RETURNING id""",
                    run_id,
                    p["hazard"],
                    p["level"],
                    p["action"],
                    p["replaces"],
                    p["areas"],
                    datetime.fromisoformat(p["onset"]),
                    datetime.fromisoformat(p["expires"]),
                    p["probability"],
                    p["exposed_population"],
                    json.dumps(p, ensure_ascii=False),
                )
            )
        event = {"kind": "run", "id": run_id, "action": "scored", "proposals": ids, "hazards": hazards}
        await notify(conn, event)
    return run_id, ids, True


class Disk:
    """The file-system operations runs are archived and quarantined with.

    The one seam where a disk fault (a read-only inbox, a full quarantine folder) can be put in: a test gives
    a subclass raising the `OSError` the kernel would, which also works as root, where `chmod` stops nothing.
    """

    def rename(self, source: Path, target: Path) -> None:
        os.rename(source, target)

    def copy(self, source: Path, target: Path) -> None:
        if source.is_dir() and not source.is_symlink():
            # one file at a time, stopping at the first error (copytree would go on and gather them all)
            target.mkdir()
            for child in sorted(source.iterdir()):
                self.copy(child, target / child.name)
        else:
            shutil.copy2(source, target, follow_symlinks=False)

    def remove(self, path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()

    def write_text(self, path: Path, text: str) -> None:
        with open(path, "x", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())


def _tree_digest(path: Path) -> dict[str, str]:
    """What a file or folder holds: per relative path, the SHA-256 of a file or the target of a link."""
    members = [path] if path.is_symlink() or not path.is_dir() else [path, *sorted(path.rglob("*"))]
    out: dict[str, str] = {}
    for p in members:
        name = p.relative_to(path).as_posix()
        if p.is_symlink():
            out[name] = "link:" + os.readlink(p)
        elif p.is_dir():
            out[name] = "folder"
        else:
            out[name] = file_info([p])[0][0]["sha256"]
    return out


def _remove_quietly(path: Path, disk: Disk) -> None:
    """Clean up after a failed step; a failure here must not hide the one that is reported."""
    if os.path.lexists(path):
        try:
            disk.remove(path)
        except OSError as e:
            log.warning("could not clean up %s: %s", path.name, e.strerror or e)


def move_entry(source: Path, target: Path, disk: Disk) -> None:
    """Move a file or folder to `target` whole or not at all; raises the `OSError` of the step that failed.

    Within one file system this is one rename. Across file systems (EXDEV) the entry is copied under a
    hidden name beside `target`, the copy is compared with the original and renamed into place, and only
    then is the original taken away (renamed to a hidden name first, so a folder is never half removed in
    view of the inbox). If any step fails, the copy is removed again: `target` never holds a partial copy
    and the original stays where it was, so a run is never in two places.
    """
    try:
        disk.rename(source, target)
        return
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
    partial = target.with_name(f".{target.name}.partial")
    try:
        disk.copy(source, partial)
        if _tree_digest(partial) != _tree_digest(source):
            raise OSError(errno.EIO, "the copy differs from the original")
        disk.rename(partial, target)
    except OSError:
        _remove_quietly(partial, disk)
        raise
    leaving = source.with_name(f".{source.name}.moved")
    try:
        disk.rename(source, leaving)
    except OSError:
        _remove_quietly(target, disk)
        raise
    try:
        disk.remove(leaving)
    except OSError as e:  # the run is safe in `target`; what is left is hidden from the inbox
        log.warning("could not remove the moved original %s: %s", leaving.name, e.strerror or e)


def archive(path: Path, archive_dir: Path, disk: Disk | None = None) -> Path:
    """Move a scored file or folder to `archive_dir` under a time-stamped name, so a corrected re-issue never
    replaces the original; whole or not at all (see `move_entry`)."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    target = archive_dir / f"{stamp}_{path.name}"
    move_entry(path, target, disk or Disk())
    return target


def quarantine(path: Path, quarantine_dir: Path, reason: str, disk: Disk | None = None) -> Path:
    """Move a rejected file aside with a one-line `.reason` file next to it; never overwrite an earlier one.

    The reason is written first (under a hidden name, then renamed), and taken back if the file cannot be
    moved, so the quarantine never holds a file without its reason, nor a partial copy.
    """
    disk = disk or Disk()
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = quarantine_dir / f"{stamp}_{path.name}"
    n = 1
    while os.path.lexists(target) or os.path.lexists(target.with_name(target.name + ".reason")):
        target = quarantine_dir / f"{stamp}_{n}_{path.name}"
        n += 1
    note = target.with_name(target.name + ".reason")
    staged = note.with_name(f".{note.name}.partial")
    try:
        disk.write_text(staged, reason.replace("\n", " ") + "\n")
        disk.rename(staged, note)
    except OSError:
        _remove_quietly(staged, disk)
        raise
    try:
        move_entry(path, target, disk)
    except OSError:
        _remove_quietly(note, disk)
        raise
    log.warning("forecast file quarantined", extra={"file": path.name, "reason": reason})
    return target
