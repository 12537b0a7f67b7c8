"""Connections to PostgreSQL (a URL, or an embedded server in a data folder) and numbered SQL migrations.

The embedded server (`EmbeddedPostgres`) can be watched and started again by the process that owns it:
`postmaster_alive()` says whether the server that `postmaster.pid` names still runs (a pid now worn by
another process, or a zombie, does not count), and `restart()` starts it again on the same socket, so the
same URL reaches it. A restart right after the postmaster was killed may fail for a moment, while its old
backends still hold its shared memory: callers retry with backoff (`warnings_svc.web.database_watch`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import subprocess
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg

from risk_zoning.errors import DatabaseError, DataFolderUnusable

if TYPE_CHECKING:
    from types import ModuleType

    from pgserver import PostgresServer

log = logging.getLogger(__name__)

# PostgreSQL's reasons for not starting on a data folder that no later attempt can change (its FATAL lines)
UNUSABLE_FOLDER_REASONS = (
    "database files are incompatible with server",  # another major version's folder
    "is not a valid data directory",
    "has wrong ownership",
    "has invalid permissions",
)

MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# One advisory lock key for every migration run, so concurrent `db upgrade`s queue instead of racing.
MIGRATION_LOCK_KEY = 0x57A2_0001
EMBEDDED_DATABASE = "warnings"
# The data folder of the embedded PostgreSQL, read by both command lines (and the service's settings), so that
# every command finds the database a demo started with another folder uses.
DATA_DIR_VARIABLE = "WARNINGS_SVC_DATA_DIR"


@dataclass(frozen=True)
class MigrationSource:
    """A component's numbered migrations, shipped as package data (`<package>/migrations/NNNN_name.sql`)."""

    component: str
    package: str


@dataclass(frozen=True)
class Migration:
    component: str
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


RISK_MIGRATIONS = MigrationSource("risk", "risk_zoning")


def read_migrations(source: MigrationSource) -> list[Migration]:
    """The migrations of one component, in version order; numbering must be 1, 2, 3 ... without gaps."""
    folder = resources.files(source.package) / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        m = MIGRATION_FILE.match(entry.name)
        if m:
            found.append(Migration(source.component, int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    for expected, mig in enumerate(found, start=1):
        if mig.version != expected:
            raise DatabaseError(
                f"{source.package}/migrations: expected migration {expected:04d}, found {mig.version:04d}"
            )
    return found


async def upgrade(conn: asyncpg.Connection, sources: Sequence[MigrationSource]) -> list[str]:
    """Apply every pending migration of `sources` in order, each in its own transaction.

    Returns the names applied. Refuses to run if an applied migration's file has changed since.
    """
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS public.schema_migrations (
               component text NOT NULL, version int NOT NULL, name text NOT NULL, checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"""
    )
    applied_names: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        for source in sources:
            rows = await conn.fetch(
                "SELECT version, name, checksum FROM public.schema_migrations WHERE component = $1",
                source.component,
            )
            done = {r["version"]: r for r in rows}
            for mig in read_migrations(source):
                label = f"{mig.component}/{mig.version:04d}_{mig.name}"
                if mig.version in done:
                    if done[mig.version]["checksum"] != mig.checksum:
                        raise DatabaseError(
                            f"migration {label} was edited after it was applied; add a new one instead"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(mig.sql)
                    await conn.execute(
                        "INSERT INTO public.schema_migrations (component, version, name, checksum) VALUES ($1,$2,$3,$4)",
                        mig.component,
                        mig.version,
                        mig.name,
                        mig.checksum,
                    )
                log.info("applied migration", extra={"migration": label})
                applied_names.append(label)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_names


class EmbeddedPostgres:
    """A PostgreSQL server from the `pgserver` wheel, living in `data_dir/postgres`, stopped by `stop()`."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = Path(data_dir).expanduser().resolve() / "postgres"
        self._server: PostgresServer | None = None

    def start(self) -> str:
        """Start (or join) the server and return a URL to the project's database, creating it if needed.

        A server left running by a process that died without stopping it (kill -9, a crash) is taken over:
        its handle is dropped first, so this process's `stop()` stops the server again."""
        pgserver = _import_pgserver()
        self.pgdata.mkdir(parents=True, exist_ok=True)
        try:
            with pgserver.PostgresServer._lock:  # the lock pgserver itself takes around its handle file
                prune_dead_handles(self.pgdata, joined=self.pgdata in pgserver.PostgresServer._instances)
            self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        except Exception as e:  # pgserver raises bare subprocess/assert errors; give one line instead
            raise DatabaseError(f"embedded PostgreSQL in {self.pgdata} did not start: {e}") from e
        exists = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{EMBEDDED_DATABASE}';")
        if "(1 row)" not in exists:
            self._server.psql(f"CREATE DATABASE {EMBEDDED_DATABASE};")
        return self._server.get_uri(EMBEDDED_DATABASE)

    def postmaster_alive(self) -> bool:
        """Whether the server that `pgdata/postmaster.pid` names is running: the pid is a live process (not a
        zombie) that started when the server did (not a later process wearing a reused pid)."""
        return _live_postmaster(self.pgdata) is not None

    def restart(self) -> str:
        """Start the server again after it ended without being stopped (killed, crashed); its URL.

        Nothing happens when it runs. `DatabaseError` with one line (PostgreSQL's own reason when its log has
        one) when it cannot start now; a caller retries, since the old server's backends may hold its shared
        memory for a moment after the postmaster died."""
        if self._server is None:
            raise DatabaseError(f"embedded PostgreSQL in {self.pgdata} was never started by this process")
        pgserver = _import_pgserver()
        from pgserver.utils import PostmasterInfo

        server = self._server
        with pgserver.PostgresServer._lock:
            if _live_postmaster(self.pgdata) is None:
                _drop_stale_pid_file(self.pgdata)
                # pgserver would trust the dead server's info (or a reused pid): make it read the folder again
                server._postmaster_info = None
                quiet = logging.getLogger("pgserver")
                level = quiet.level
                quiet.setLevel(logging.CRITICAL)  # it prints the whole server log on each failure
                try:
                    server.ensure_postgres_running()
                except (subprocess.SubprocessError, OSError, AssertionError, RuntimeError) as e:
                    reason = _last_log_reason(self.pgdata, e)
                    unusable = any(words in reason for words in UNUSABLE_FOLDER_REASONS)
                    raise (DataFolderUnusable if unusable else DatabaseError)(
                        f"embedded PostgreSQL in {self.pgdata} did not start: {reason}"
                    ) from e
                finally:
                    quiet.setLevel(level)
                    if server._postmaster_info is None:
                        # whatever runs now (a start that came up late) is still stopped by `stop()`
                        info = PostmasterInfo.read_from_pgdata(self.pgdata)
                        if info is not None and info.process is not None:
                            server._postmaster_info = info
        return server.get_uri(EMBEDDED_DATABASE)

    def stop(self) -> None:
        """Give up this process's handle; the last handle stops the server (fast shutdown)."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def _postmaster_pid_file(pgdata: Path) -> tuple[int, float, str] | None:
    """The pid, start time (Unix) and shared memory key line of `postmaster.pid`; None when absent or torn."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        return int(lines[0]), float(lines[2]), lines[6] if len(lines) > 6 else ""
    except (OSError, ValueError, IndexError):
        return None


def _live_postmaster(pgdata: Path) -> int | None:
    """The pid of the postmaster serving `pgdata`, when one runs."""
    import psutil  # installed with pgserver

    found = _postmaster_pid_file(pgdata)
    if found is None:
        return None
    pid, started, _ = found
    try:
        process = psutil.Process(pid)
        # two seconds of slack: the file's time is whole seconds, the process's is not
        if process.status() == psutil.STATUS_ZOMBIE or process.create_time() > started + 2.0:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return pid


def _drop_stale_pid_file(pgdata: Path) -> None:
    """Remove `postmaster.pid` when it names a pid that some other process wears now (or a zombie).

    PostgreSQL itself ignores a lock file whose pid is gone, but refuses one whose pid merely exists, and
    pgserver would take such a pid for the running server. The file is left while any process still has
    the old server's shared memory attached: that is PostgreSQL's own guard against two servers on one folder.
    """
    import psutil

    found = _postmaster_pid_file(pgdata)
    if found is None or not psutil.pid_exists(found[0]):
        return
    shm_id = found[2].split()[-1] if found[2].split() else ""
    if shm_id and _shared_memory_attached(shm_id):
        return
    log.info("embedded PostgreSQL in %s: removing a stale postmaster.pid (pid %s)", pgdata, found[0])
    (pgdata / "postmaster.pid").unlink(missing_ok=True)


def _shared_memory_attached(shm_id: str) -> bool:
    """Whether System V shared memory segment `shm_id` still has processes attached (Linux's /proc)."""
    try:
        rows = Path("/proc/sysvipc/shm").read_text().splitlines()[1:]
    except OSError:
        return True  # cannot tell: keep PostgreSQL's guard
    for row in rows:
        fields = row.split()
        if len(fields) > 6 and fields[1] == shm_id:
            return int(fields[6]) > 0
    return False


def _last_log_reason(pgdata: Path, error: BaseException) -> str:
    """The last FATAL/PANIC line of the server's log (why it did not start), else the error itself."""
    try:
        lines = (pgdata / "log").read_text(errors="replace").splitlines()[-50:]
    except OSError:
        lines = []
    for line in reversed(lines):
        for mark in ("FATAL:", "PANIC:"):
            if mark in line:
                return " ".join(line[line.index(mark) :].split())
    return " ".join(str(error).split()) or type(error).__name__


HANDLE_FILE = ".handle_pids.json"  # pgserver's list of the processes using a server; the last one stops it


def prune_dead_handles(pgdata: Path, *, joined: bool) -> list[int]:
    """Drop from pgserver's handle file the processes that no longer use the server; returns them.

    pgserver stops the server only when the process leaving is the last one listed, so a process killed
    before it could leave would keep the server running forever after. Gone: a pid with no process, a pid
    now worn by a process started after the file was last written (it cannot have registered), and this
    process's own pid when it holds no handle yet (a former process with the same pid, as in containers).
    `joined` says whether this process already holds a handle. Call with pgserver's lock held.
    """
    import psutil  # installed with pgserver

    path = pgdata / HANDLE_FILE
    try:
        listed = json.loads(path.read_text())
        written = path.stat().st_mtime
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable %s (%s); starting with no other users", path, e)
        path.unlink(missing_ok=True)
        return []
    if not isinstance(listed, list) or not all(isinstance(pid, int) for pid in listed):
        log.warning("ignoring malformed %s; starting with no other users", path)
        path.unlink(missing_ok=True)
        return []

    def still_using(pid: int) -> bool:
        if pid == os.getpid():
            return joined
        try:
            # one second of slack: file times and process start times are not equally precise
            return bool(psutil.Process(pid).create_time() <= written + 1.0)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False

    kept = [pid for pid in listed if still_using(pid)]
    gone = [pid for pid in listed if pid not in kept]
    if gone:
        path.write_text(json.dumps(kept))
        log.info(
            "embedded PostgreSQL in %s: dropped handles of processes that are gone: %s; remaining: %s",
            pgdata,
            ", ".join(map(str, gone)),
            ", ".join(map(str, kept)) or "none (this process takes the server over)",
        )
    return gone


@contextlib.contextmanager
def database_url(url: str | None, data_dir: Path) -> Iterator[str]:
    """The URL to use: `url` when given, else an embedded server in `data_dir`, stopped on exit."""
    with database_server(url, data_dir) as (found, _):
        yield found


@contextlib.contextmanager
def database_server(url: str | None, data_dir: Path) -> Iterator[tuple[str, EmbeddedPostgres | None]]:
    """The URL to use and, without `url`, the embedded server in `data_dir` behind it (to watch and restart),
    stopped on exit."""
    if url:
        yield url, None
        return
    embedded = EmbeddedPostgres(data_dir)
    try:
        yield embedded.start(), embedded
    finally:
        embedded.stop()


async def connect(url: str) -> asyncpg.Connection:
    """One connection, with a clear error when the server cannot be reached."""
    try:
        return await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as e:
        raise DatabaseError(f"cannot connect to PostgreSQL at {redact(url)}: {e}") from e


class ServerUnreachable(ConnectionError):
    """The server could not be reached for a new connection (refused, its socket file gone, no route)."""


async def _connect_reachably(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """`asyncpg.connect`, where any OS error on the way (a stopped local server's socket file is gone:
    `FileNotFoundError`) is a `ConnectionError`, as a refused connection is: the server is away."""
    try:
        return await asyncpg.connect(*args, **kwargs)
    except ConnectionError:
        raise
    except OSError as e:
        raise ServerUnreachable(e.errno, e.strerror or str(e)) from e


async def create_pool(url: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """A connection pool, with a clear error when the server cannot be reached.

    Connections lost later (the server restarted) are opened again by the pool on the next acquire; while
    the server is away that raises a `ConnectionError` (`ServerUnreachable`)."""
    try:
        return await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, connect=_connect_reachably
        )
    except (OSError, asyncpg.PostgresError) as e:
        raise DatabaseError(f"cannot connect to PostgreSQL at {redact(url)}: {e}") from e


def redact(url: str) -> str:
    """The URL with any password replaced (in its user part or a `password=` parameter), for messages and logs."""
    url = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&]*", r"\1***", url, flags=re.IGNORECASE)


def describe_database(url: str | None, data_dir: Path, source: str) -> str:
    """The line a command prints to say which database it opens and which setting chose it (`source`).

    `database: postgresql://li:***@db.example.cn/warnings (environment variable DATABASE_URL)`, or
    `database: embedded PostgreSQL in /srv/warnings (option --data-dir)`; a password is never shown.
    """
    where = redact(url) if url else f"embedded PostgreSQL in {Path(data_dir).expanduser().resolve()}"
    return f"database: {where} ({source})"


def _import_pgserver() -> ModuleType:
    """`pgserver`, imported here: only embedded mode needs the bundled binaries.

    Its import asks platformdirs for a runtime folder for a lock file; without XDG_RUNTIME_DIR (cron, ssh
    without a login session, containers) platformdirs warns with `RuntimeDirWarning` and falls back to
    /tmp/runtime-UID, which serves the lock as well. That warning, and only it, is not for our users."""
    import platformdirs

    category = getattr(platformdirs, "RuntimeDirWarning", None)  # older platformdirs do not warn
    with warnings.catch_warnings():
        if category is not None:
            warnings.simplefilter("ignore", category)
        import pgserver
    return pgserver


def default_data_dir() -> Path:
    """Where the embedded PostgreSQL and local state live when nothing is configured."""
    import platformdirs

    return platformdirs.user_data_path("warnings-svc")
