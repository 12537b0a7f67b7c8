"""Scoring forecast runs inside the service: a worker process pool off the event loop, an inbox folder
watched for new files (rejects quarantined with a reason), and storage of runs and proposals."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from risk_zoning.errors import RiskZoningError
from risk_zoning.store import RiskDatabase, load_version
from warnings_svc.criteria import CriteriaError, load_criteria
from warnings_svc.ingest import live_warnings, quarantine, score_files, store_result
from warnings_svc.scoring import InclusionRules, LiveWarning
from warnings_svc.settings import ScoringSettings

log = logging.getLogger(__name__)

FORECAST_SUFFIXES = (".nc", ".nc4", ".netcdf", ".cdf")


def inclusion_rules(s: ScoringSettings) -> InclusionRules:
    """The scoring rules of the settings."""
    return InclusionRules(
        area_level=s.area_level,
        min_probability=s.min_probability,
        min_fraction_exposed=s.min_fraction_exposed,
        min_exposed_population=s.min_exposed_population,
        max_vertices=s.max_vertices,
        min_polygon_area_km2=s.min_polygon_area_km2,
        expiry_margin_h=s.expiry_margin_h,
    )


class RejectedRun(Exception):
    """A forecast run that cannot be used; `str()` is one line naming the file and the problem."""


# --- worker process side: module-level functions, so they pickle ---------------------------------------

_worker_risk: dict[tuple[str, int], RiskDatabase] = {}


def _worker_load(url: str, version_id: int) -> RiskDatabase:
    """The risk database version, loaded once per worker process."""
    key = (url, version_id)
    if key not in _worker_risk:

        async def load() -> RiskDatabase:
            conn = await asyncpg.connect(url)
            try:
                return await load_version(conn, version_id)
            finally:
                await conn.close()

        _worker_risk.clear()  # keep one version per worker
        _worker_risk[key] = asyncio.run(load())
    return _worker_risk[key]


def score_in_worker(
    paths: list[str],
    url: str,
    version_id: int,
    criteria_file: str | None,
    rules: dict[str, Any],
    live: list[LiveWarning],
) -> dict[str, Any]:
    """Read, evaluate and score one run in a worker process; returns `ScoreResult.to_json()`.

    Problems with the input come back as `RejectedRun` with one line, never a traceback.
    """
    try:
        db = _worker_load(url, version_id)
        criteria = load_criteria(Path(criteria_file) if criteria_file else None)
        return score_files(paths, db, criteria, InclusionRules(**rules), live).to_json()
    except (RiskZoningError, CriteriaError, ValueError) as e:
        raise RejectedRun(" ".join(str(e).split())) from None


# --- service side --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestOutcome:
    run_id: int
    proposal_ids: list[int]
    new: bool
    result: dict[str, Any]


class RunScorer:
    """Scores runs in worker processes and stores them; one per service."""

    def __init__(self, pool: asyncpg.Pool, database_url: str, settings: ScoringSettings) -> None:
        self.pool = pool
        self.database_url = database_url
        self.settings = settings
        self.rules = inclusion_rules(settings)
        # spawn, not fork: the parent holds an event loop, asyncpg sockets and threads
        self._executor = ProcessPoolExecutor(
            max_workers=settings.workers, mp_context=multiprocessing.get_context("spawn")
        )

    async def ingest(self, paths: list[Path], region: str) -> IngestOutcome:
        """Score `paths` as one run against the current risk database and store run and proposals."""
        async with self.pool.acquire() as conn:
            version = await conn.fetchval(
                "SELECT version_id FROM risk.current_version WHERE region = $1", region
            )
            if version is None:
                raise RejectedRun(f"no risk database for region {region!r} yet")
            live = await live_warnings(conn)
        criteria = str(self.settings.criteria_file) if self.settings.criteria_file else None
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._executor,
            score_in_worker,
            [str(p) for p in paths],
            self.database_url,
            version,
            criteria,
            asdict(self.rules),
            live,
        )
        async with self.pool.acquire() as conn:
            run_id, ids, new = await store_result(conn, result)
        log.info(
            "forecast run scored",
            extra={
                "run_id": run_id,
                "proposals": len(ids),
                "new": new,
                "files": ",".join(p.name for p in paths),
            },
        )
        return IngestOutcome(run_id, ids, new, result)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class Inbox:
    """A folder where forecast files are dropped: each file (or each sub-folder, for a run split over several
    files) is scored once it has stopped growing, then archived; rejects go to `quarantine/` with a reason."""

    def __init__(self, root: Path) -> None:
        self.inbox = root / "inbox"
        self.archive = root / "archive"
        self.quarantine = root / "quarantine"
        for d in (self.inbox, self.archive, self.quarantine):
            d.mkdir(parents=True, exist_ok=True)
        self._sizes: dict[Path, int] = {}

    def ready(self) -> list[Path]:
        """Entries whose size did not change since the last look (so a file still being copied waits)."""
        out, seen = [], {}
        for entry in sorted(self.inbox.iterdir()):
            if entry.name.startswith("."):
                continue
            size = (
                sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
                if entry.is_dir()
                else entry.stat().st_size
            )
            seen[entry] = size
            if self._sizes.get(entry) == size:
                out.append(entry)
        self._sizes = seen
        return out

    @staticmethod
    def files_of(entry: Path) -> list[Path]:
        if entry.is_dir():
            return sorted(f for f in entry.iterdir() if f.is_file() and not f.name.startswith("."))
        return [entry]

    def done(self, entry: Path) -> None:
        target = self.archive / entry.name
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        shutil.move(str(entry), target)
        self._sizes.pop(entry, None)

    def reject(self, entry: Path, reason: str) -> Path:
        self._sizes.pop(entry, None)
        return quarantine(entry, self.quarantine, reason)


async def watch_inbox(
    inbox: Inbox, scorer: RunScorer, region: str, poll_seconds: float, on_run: Any = None
) -> None:
    """Poll the inbox forever; one bad file never stops the loop."""
    while True:
        for entry in inbox.ready():
            try:
                files = inbox.files_of(entry)
                if not files:
                    raise RejectedRun(f"{entry.name}: empty folder")
                outcome = await scorer.ingest(files, region)
                inbox.done(entry)
                if on_run is not None:
                    on_run(outcome)
            except RejectedRun as e:
                inbox.reject(entry, str(e))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("inbox entry failed", extra={"entry": entry.name})
                inbox.reject(entry, "internal error while scoring; see the service log")
        await asyncio.sleep(poll_seconds)


def save_upload(files: list[tuple[str, bytes]], root: Path) -> Path:
    """Write uploaded files into a fresh folder under `root/uploads` and return it (the caller removes it)."""
    uploads = root / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="run-", dir=uploads))
    for name, data in files:
        (folder / (Path(name).name or "forecast.nc")).write_bytes(data)
    return folder


DEMO_SCENARIO = "sandstorm"  # assessed all year round, unlike frost; a 10-member ensemble shows probabilities


def seed_demo_forecast(root: Path, region: str, now: datetime | None = None) -> Path | None:
    """Drop a synthetic demo run (labelled so in its files) into the inbox, unless the inbox already holds
    something. The run starts at the latest 00/12 UTC cycle, so its proposals lie in the near future."""
    from warnings_svc.scenarios import write_scenario

    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    if any(inbox.iterdir()):
        return None
    now = now or datetime.now(UTC)
    cycle = now.replace(hour=0 if now.hour < 12 else 12, minute=0, second=0, microsecond=0)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=root))
    write_scenario(DEMO_SCENARIO, staging, region, reference_time=cycle, members=10, style="ecmwf")
    target = inbox / f"demo-{DEMO_SCENARIO}-{cycle:%Y%m%d%H}"
    staging.rename(target)  # one rename: the watcher never sees half a run
    return target
