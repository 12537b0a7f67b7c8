"""Scoring forecast runs inside the service: a worker process pool off the event loop, an inbox folder
watched for new files (rejects quarantined with a reason), and storage of runs and proposals."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import logging
import multiprocessing
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from risk_zoning.errors import RiskZoningError
from risk_zoning.store import RiskDatabase, load_version
from warnings_svc.database import DATABASE_UNREACHABLE
from warnings_svc.forecast.criteria import Criteria, load_criteria
from warnings_svc.forecast.hazards import HazardError
from warnings_svc.forecast.ingest import Disk, archive, live_warnings, quarantine, score_files, store_result
from warnings_svc.forecast.scoring import InclusionRules, LiveWarning
from warnings_svc.forecast.tiled import DaskScoring, SchedulerError
from warnings_svc.settings import ScoringSettings
from warnings_svc.timeliness import Timeliness

log = logging.getLogger(__name__)


def dask_scoring(s: ScoringSettings) -> DaskScoring | None:
    """Where the settings have grids scored tile by tile, or None (in-process)."""
    if s.dask_scheduler is None:
        return None
    return DaskScoring(s.dask_scheduler, tile=s.tile, connect_timeout_s=s.dask_connect_timeout_s)


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


class ScoringUnavailable(Exception):
    """The scoring workers are gone (a worker crashed); the run was not judged and may be retried."""


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
    criteria: Criteria,
    rules: dict[str, Any],
    live: list[LiveWarning],
    dask: DaskScoring | None = None,
) -> dict[str, Any]:
    """Read, evaluate and score one run in a worker process; returns `ScoreResult.to_json()`.

    Problems with the input come back as `RejectedRun` with one line, never a traceback.
    """
    try:
        db = _worker_load(url, version_id)
        return score_files(paths, db, criteria, InclusionRules(**rules), live, dask=dask).to_json()
    except SchedulerError as e:  # the cluster, not the run: leave the run for a retry
        raise ScoringUnavailable(" ".join(str(e).split())) from None
    except (RiskZoningError, HazardError, ValueError) as e:
        raise RejectedRun(" ".join(str(e).split())) from None


# --- service side --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestOutcome:
    run_id: int
    proposal_ids: list[int]
    new: bool
    result: dict[str, Any]


def _new_executor(workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: the parent holds an event loop, asyncpg sockets and threads
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_PARENT_CHECK_SECONDS = 1.0


def die_with_parent(parent_pid: int) -> None:
    """End this process when its parent `parent_pid` dies, even by SIGKILL (a scoring worker's initializer,
    and the first thing a web worker does).

    A worker waits on a queue whose pipe it holds both ends of, so it never sees the service go and would
    live on as an orphan holding its memory (and, through its copy of the tracker's pipe, keep the
    multiprocessing resource tracker alive too). On Linux the kernel sends SIGKILL when the parent goes
    (prctl PR_SET_PDEATHSIG; the pool starts workers from the event-loop thread, which lives as long as the
    service). Elsewhere, and as a backstop, a thread watches for the worker being re-parented."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the service died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_CHECK_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-parent", daemon=True).start()


class RunScorer:
    """Scores runs in worker processes and stores them; one per service.

    The criteria are loaded once here, so a broken criteria file stops the service at start-up (one line,
    exit status 2) instead of being blamed on every forecast.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        database_url: str,
        settings: ScoringSettings,
        *,
        release_after_seconds: float | None = None,
        timeliness: Timeliness | None = None,
    ) -> None:
        self.pool = pool
        self.timeliness = timeliness
        self.database_url = database_url
        self.settings = settings
        self.criteria = load_criteria(settings.criteria_file)
        self.rules = inclusion_rules(settings)
        # Spawned workers start at the first run, not here. With `release_after_seconds` they are also ended
        # once no run came for that long (a web worker that rarely takes an upload keeps no scoring memory).
        self._executor = _new_executor(settings.workers)
        self._release_after = release_after_seconds
        self._scoring = 0
        self._release: asyncio.TimerHandle | None = None

    async def ingest(
        self, paths: list[Path], region: str, *, arrived_at: datetime | None = None
    ) -> IngestOutcome:
        """Score `paths` as one run against the current risk database and store run and proposals.
        `arrived_at` is when the run came (now when not given), for the grid -> proposal histogram."""
        arrived_at = arrived_at or datetime.now(UTC)
        async with self.pool.acquire() as conn:
            version = await conn.fetchval(
                "SELECT version_id FROM risk.current_version WHERE region = $1", region
            )
            if version is None:
                raise ScoringUnavailable(f"no risk database for region {region!r} yet")
            live = await live_warnings(conn)
        loop = asyncio.get_running_loop()
        if self._release is not None:
            self._release.cancel()
        self._scoring += 1
        try:
            result = await loop.run_in_executor(
                self._executor,
                score_in_worker,
                [str(p) for p in paths],
                self.database_url,
                version,
                self.criteria,
                asdict(self.rules),
                live,
                dask_scoring(self.settings),
            )
        except BrokenProcessPool as e:
            # a worker died (out of memory, a crashing library on a hostile file): start fresh workers and
            # let the caller retry rather than blame the run
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = _new_executor(self.settings.workers)
            raise ScoringUnavailable("a scoring worker stopped unexpectedly; try again") from e
        finally:
            self._scoring -= 1
            if self._release_after is not None and not self._scoring:
                self._release = loop.call_later(self._release_after, self._release_workers)
        async with self.pool.acquire() as conn:
            run_id, ids, new = await store_result(conn, result)
        if new and self.timeliness is not None:
            kinds = [(p["hazard"], p["level"]) for p in result["proposals"]]
            self.timeliness.observe_proposals(arrived_at, datetime.now(UTC), kinds)
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

    def _release_workers(self) -> None:
        if not self._scoring:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = _new_executor(self.settings.workers)

    def close(self) -> None:
        """Stop scoring for good (the service stopping). A run being scored is abandoned: scoring writes
        nothing, so its inbox entry or upload is simply taken again by the next start. Its worker is killed,
        since at exit the interpreter waits for the pool's running work: a web worker told to stop while
        scoring was held until its parent killed it, 45 s later."""
        if self._release is not None:
            self._release.cancel()
        # the pool's processes (no public accessor before Python 3.14's `kill_workers`)
        processes = list((getattr(self._executor, "_processes", None) or {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()


@dataclass
class StuckEntry:
    """An inbox entry that could not be moved where it belongs: reported once, then left alone (never scored
    again) until it changes or goes; the move alone is retried now and then."""

    entry: Path
    footprint: tuple[int, float]  # its identity: total size and newest modification time when it stuck
    destination: str  # "archive" or "quarantine"
    reason: str  # why it could not be moved, one line
    rejected_because: str | None  # for a reject: the reason to write beside it in the quarantine
    retry_at: float  # time.monotonic() of the next quiet attempt

    @property
    def detail(self) -> str:
        return f"cannot move {self.entry.name} to {self.destination}/: {self.reason}"


def _why(e: OSError) -> str:
    """An `OSError` in one line without the machine's paths."""
    return " ".join(str(e.strerror or e).split()) or type(e).__name__


# A producer's word that a run folder in the inbox is whole (see `Inbox`); a dot file, so never scored.
COMPLETE_MARKER = ".complete"


class Inbox:
    """A folder where forecast files are dropped: each file (or each sub-folder, for a run split over several
    files) is scored once it has settled, then archived; rejects go to `quarantine/` with a reason.

    An entry has settled when its size did not change since the last look and nothing in it was modified
    for `settle_seconds`. Producers of multi-file runs should still write the folder elsewhere (or under a
    name starting with a dot, which is ignored) and rename it into the inbox in one step. A folder that holds
    a file named `COMPLETE_MARKER` (``.complete``, written last) is complete as it stands: it is taken at the
    first poll that sees it, without waiting to settle (the time a warning waits on its forecast).

    Moves are whole or not at all (`ingest.move_entry`). An entry that cannot be moved (a read-only inbox, a
    full quarantine) is reported once (one log line, `on_stuck`), listed by `stuck()`, not scored again
    while its size and modification time stay the same, and its move is retried every `retry_seconds`.
    `disk` does the file-system work (a test puts a fault there).
    """

    def __init__(
        self,
        root: Path,
        settle_seconds: float = 10.0,
        *,
        disk: Disk | None = None,
        retry_seconds: float = 60.0,
        on_stuck: Callable[[StuckEntry], None] | None = None,
    ) -> None:
        self.inbox = root / "inbox"
        self.archive = root / "archive"
        self.quarantine = root / "quarantine"
        self.settle_seconds = settle_seconds
        self.disk = disk or Disk()
        self.retry_seconds = retry_seconds
        self.on_stuck = on_stuck
        for d in (self.inbox, self.archive, self.quarantine):
            d.mkdir(parents=True, exist_ok=True)
        self._sizes: dict[Path, int] = {}
        self._stuck: dict[Path, StuckEntry] = {}

    @staticmethod
    def _footprint(entry: Path) -> tuple[int, float]:
        """Total size and newest modification time; entries that vanish or dangle count as empty."""
        files = [f for f in entry.rglob("*") if f.is_file()] if entry.is_dir() else [entry]
        size, newest = 0, 0.0
        for f in files:
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            size, newest = size + st.st_size, max(newest, st.st_mtime)
        return size, newest

    def arrived_at(self, entry: Path) -> datetime:
        """When `entry` arrived: its newest file's modification time (the last byte written)."""
        return datetime.fromtimestamp(self._footprint(entry)[1], UTC)

    def ready(self) -> list[Path]:
        """Entries that have settled (see the class docstring), leaving out those stuck and unchanged."""
        out, seen = [], {}
        now = time.time()
        for entry in sorted(self.inbox.iterdir()):
            if entry.name.startswith("."):
                continue
            footprint = self._footprint(entry)
            size, newest = footprint
            seen[entry] = size
            stuck = self._stuck.get(entry)
            if stuck is not None:
                if stuck.footprint == footprint:
                    continue
                del self._stuck[entry]
                log.info("a stuck inbox entry changed; it is taken again", extra={"entry": entry.name})
            complete = entry.is_dir() and (entry / COMPLETE_MARKER).is_file()
            if complete or (self._sizes.get(entry) == size and now - newest >= self.settle_seconds):
                out.append(entry)
        for gone in [e for e in self._stuck if e not in seen]:
            del self._stuck[gone]
            log.info("a stuck inbox entry is gone", extra={"entry": gone.name})
        self._sizes = seen
        return out

    def stuck(self) -> list[StuckEntry]:
        """Entries that could not be moved and have not changed since, by name."""
        # `_stuck` changes only in the poll's worker thread (one call at a time); readiness reads it from the
        # event loop, so take the copy in one step (a C-level copy under the GIL) before sorting it.
        entries = list(self._stuck.values())
        return sorted(entries, key=lambda s: s.entry.name)

    def retry_stuck(self) -> None:
        """Try the moves that failed again, quietly (they were reported once), each every `retry_seconds`."""
        now = time.monotonic()
        for stuck in self.stuck():
            if now < stuck.retry_at or self._footprint(stuck.entry) != stuck.footprint:
                continue  # not due, or changed or gone: `ready` takes it from there
            try:
                self._move(stuck.entry, stuck.rejected_because)
            except OSError as e:
                stuck.retry_at = now + self.retry_seconds
                log.debug("a stuck inbox entry still cannot be moved: %s", _why(e))
                continue
            del self._stuck[stuck.entry]
            log.info(
                "a stuck inbox entry was moved", extra={"entry": stuck.entry.name, "to": stuck.destination}
            )

    @staticmethod
    def files_of(entry: Path) -> list[Path]:
        if entry.is_dir():
            return sorted(f for f in entry.iterdir() if f.is_file() and not f.name.startswith("."))
        return [entry]

    def _move(self, entry: Path, rejected_because: str | None) -> Path:
        if rejected_because is None:
            return archive(entry, self.archive, self.disk)
        return quarantine(entry, self.quarantine, rejected_because, self.disk)

    def _dispose(self, entry: Path, destination: str, rejected_because: str | None) -> Path | None:
        self._sizes.pop(entry, None)
        try:
            return self._move(entry, rejected_because)
        except OSError as e:
            stuck = StuckEntry(
                entry,
                self._footprint(entry),
                destination,
                _why(e),
                rejected_because,
                time.monotonic() + self.retry_seconds,
            )
            self._stuck[entry] = stuck
            log.error(
                "inbox entry left where it is until it changes: %s",
                stuck.detail,
                extra={"entry": entry.name, "to": destination, "reason": stuck.reason},
            )
            if self.on_stuck is not None:
                self.on_stuck(stuck)
            return None

    def done(self, entry: Path) -> Path | None:
        """Archive under a time-stamped name, so a corrected re-issue never replaces the original; None when
        it cannot be moved (reported once, then in `stuck()`)."""
        return self._dispose(entry, "archive", None)

    def reject(self, entry: Path, reason: str) -> Path | None:
        """Quarantine with a `.reason` file; None when it cannot be moved (reported once, then in `stuck()`)."""
        return self._dispose(entry, "quarantine", reason)


async def watch_inbox(
    inbox: Inbox, scorer: RunScorer, region: str, poll_seconds: float, on_run: Any = None
) -> None:
    """Poll the inbox forever; nothing one entry does can stop the loop. While the database is away, the
    entries wait in the inbox: one line when polls start failing for that, one when they work again."""
    unreachable = False
    while True:
        try:
            await _poll_once(inbox, scorer, region, on_run)
            if unreachable:
                log.info("inbox polls reach the database again")
            unreachable = False
        except asyncio.CancelledError:
            raise
        except DATABASE_UNREACHABLE as e:
            if not unreachable:
                log.warning("inbox poll cannot reach the database: %s; retrying", " ".join(str(e).split()))
            unreachable = True
        except Exception:  # the boundary of a background loop: record and carry on
            log.exception("inbox poll failed")
        await asyncio.sleep(poll_seconds)


async def _poll_once(inbox: Inbox, scorer: RunScorer, region: str, on_run: Any) -> None:
    # The inbox's file work runs in a thread, one call at a time: a move across file systems copies and
    # compares a whole run, which must not stall the event loop.
    ready = await asyncio.to_thread(inbox.ready)
    await asyncio.to_thread(inbox.retry_stuck)
    for entry in ready:
        try:
            files = await asyncio.to_thread(inbox.files_of, entry)
            if not files:
                raise RejectedRun(f"{entry.name}: empty folder")
            arrived_at = await asyncio.to_thread(inbox.arrived_at, entry)
            outcome = await scorer.ingest(files, region, arrived_at=arrived_at)
            # stored whether or not the file can be archived: a stuck one is not scored again
            await asyncio.to_thread(inbox.done, entry)
            if on_run is not None:
                on_run(outcome)
        except RejectedRun as e:
            await asyncio.to_thread(inbox.reject, entry, str(e))
        except ScoringUnavailable as e:
            log.warning("inbox entry left for a retry", extra={"entry": entry.name, "reason": str(e)})
        except (asyncio.CancelledError, asyncpg.PostgresError, OSError):
            raise  # the database or the disk, not the file: the entry stays for the next poll
        except Exception:  # an unforeseen failure on this entry: keep it aside, carry on with the rest
            log.exception("inbox entry failed", extra={"entry": entry.name})
            await asyncio.to_thread(inbox.reject, entry, "internal error while scoring; see the service log")


SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def new_upload_folder(root: Path) -> Path:
    """A fresh folder under `root/uploads` for one upload's files (the caller removes it)."""
    uploads = root / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="run-", dir=uploads))


def upload_path(folder: Path, index: int, name: str) -> Path:
    """Where the `index`-th uploaded file goes in `folder`. Names are reduced to safe characters and
    numbered, so parts can neither escape the folder nor overwrite each other; the original name stays
    recognisable in messages."""
    safe = SAFE_NAME.sub("_", Path(name).name).strip("._") or "forecast.nc"
    return folder / f"{index:02d}_{safe}"
