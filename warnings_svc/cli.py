"""Command line of the warning service: `demo`, `serve`, `db upgrade`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import unicodedata
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

# Only the standard library at the top: `--help` and a mistyped command answer at once. Each command imports
# what it needs (numba, xarray, aiohttp, ... take over a second to load), and the error classes are imported
# only when a command has failed.
if TYPE_CHECKING:
    import asyncpg

    from risk_zoning.io.database import EmbeddedPostgres
    from risk_zoning.store import RiskDatabase
    from warnings_svc.demo.peers.stage import DemoStageThread
    from warnings_svc.dissemination.dispatcher import Endpoint
    from warnings_svc.forecast.criteria import Criteria
    from warnings_svc.forecast.ingest import ScoreResult
    from warnings_svc.forecast.scoring import LiveWarning
    from warnings_svc.settings import DispatchSettings, Settings
    from warnings_svc.web.database_watch import DatabaseWatch

PROG = "warnings-svc"
POOL_CLOSE_SECONDS = 10.0

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A failure the user can fix (port in use, ...); `str()` is the one line to show."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; user errors become one line on stderr and exit status 2.

    A reader that stops early (`warnings-svc user list | head -1`) ends the command quietly with exit status
    141, as a program killed by SIGPIPE ends in the shell (see `risk_zoning.cli.end_on_closed_pipe`)."""
    args = _parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    try:
        status = command(args)
        sys.stdout.flush()  # a closed pipe shows here rather than as a notice at interpreter exit
        return status
    except BrokenPipeError:
        from risk_zoning.cli import end_on_closed_pipe

        return end_on_closed_pipe()
    except KeyboardInterrupt:
        return 130
    except OSError as e:  # an unwritable data folder and the like
        return _fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e))
    except _user_errors() as e:  # evaluated only once a command has failed
        return _fail(str(e))
    except _database_errors() as e:
        return _fail(f"database: {e}")


# The errors a user can fix, shown as their one line (none of them is an `OSError`): (module, class name)
USER_ERRORS = (
    ("risk_zoning.errors", "RiskZoningError"),
    ("warnings_svc.settings", "SettingsError"),
    ("warnings_svc.web.workers", "ServeError"),
    ("warnings_svc.forecast.criteria", "CriteriaError"),
    ("warnings_svc.forecast.hazards", "HazardError"),
    ("warnings_svc.forecast.runs", "RejectedRun"),
    ("warnings_svc.forecast.tiled", "SchedulerError"),
)


def _user_errors() -> tuple[type[Exception], ...]:
    """The classes of `USER_ERRORS` this process has imported, and `CommandError`: an error raised is of a
    class whose module was imported, so those not imported need not be (importing them all for a command
    that failed took 2-3 s: the web application, xarray, numba)."""
    found: list[type[Exception]] = [CommandError]
    for module, name in USER_ERRORS:
        error = getattr(sys.modules.get(module), name, None)
        if error is not None:
            found.append(error)
    return tuple(found)


def _database_errors() -> tuple[type[Exception], ...]:
    import asyncpg

    return (asyncpg.PostgresError,)


def _fail(message: str) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)
    return 2


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line too, like every other error of this command.

    `fill`, when given, adds the parser's arguments the first time it parses: for a command whose choices
    come from the service's modules, so that other commands and `--help` need not import them."""

    def __init__(self, *args: Any, fill: Callable[[_Parser], None] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fill = fill

    def parse_known_args(
        self, args: Iterable[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        if self._fill is not None:
            fill, self._fill = self._fill, None
            fill(self)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: {message} (see `{self.prog} --help`)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Meteorological disaster early-warning service.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="run the service on an embedded PostgreSQL with the Wuhai region, nothing to configure"
    )
    demo.add_argument("--data-dir", type=Path, help="folder for the embedded PostgreSQL and local state")
    demo.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    demo.add_argument("--port", type=int, help="port to listen on (default 8080)")
    _add_workers_option(demo)
    demo.add_argument(
        "--smsc",
        metavar="HOST:PORT",
        help="send the demo's SMS to this loopback SMSC (system_id wuhai, password secret; scripts/demo starts one)",
    )
    demo.add_argument(
        "--no-peers",
        action="store_true",
        help="leave out the simulated peers of the area channels (the MQTT broker and its terminals, the "
        "operators' gateways, the CBC, the broadcast platform, the newsroom)",
    )
    demo.add_argument(
        "--smoke",
        action="store_true",
        help="run the whole chain once in a fresh temporary folder (ingest, proposals, two-person approval, "
        "dispatch and receipts with --smsc) and print a JSON summary; exit 0 when every step passed",
    )
    demo.set_defaults(command=run_demo)

    serve = commands.add_parser("serve", help="run the service as configured")
    serve.add_argument(
        "--config", type=Path, help="TOML settings file (see deploy/warnings-svc.example.toml)"
    )
    _add_workers_option(serve)
    serve.set_defaults(command=run_serve)

    dispatch = commands.add_parser(
        "dispatch",
        help="run one more dispatcher (deliveries of issued warnings); any number may run on any hosts",
    )
    _database_options(dispatch, config_help="TOML settings file ([dispatch] and its endpoints)")
    dispatch.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on HOST:PORT/metrics, HOST the settings' host (default: none)",
    )
    dispatch.set_defaults(command=run_dispatch)

    db = commands.add_parser("db", help="database administration").add_subparsers(
        required=True, metavar="ACTION"
    )
    db_upgrade = db.add_parser("upgrade", help="apply pending schema migrations")
    _database_options(db_upgrade)
    db_upgrade.set_defaults(command=run_db_upgrade)

    score = commands.add_parser(
        "score",
        help="score forecast files against the risk database and print the proposals (stores nothing)",
    )
    score.add_argument("files", nargs="+", type=Path, metavar="FILE.nc", help="one run: one or several files")
    score.add_argument("--format", choices=("json", "text"), default="json")
    score.add_argument(
        "--observations",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="station CSV or analysis grid for the observed-and-continuing branch (repeatable)",
    )
    score.add_argument("--plot", type=Path, metavar="OUT.png", help="draw the levels reached per hazard")
    _database_options(score, config_help="TOML settings file ([scoring] rules, database)")
    score.set_defaults(command=run_score)

    scenario = commands.add_parser(
        "scenario", help="write a synthetic forecast scenario over the region as NetCDF (labelled synthetic)"
    )
    scenario.add_argument("name", choices=("heat", "rainstorm", "frost", "sandstorm", "quiet"))
    scenario.add_argument("-o", "--output", type=Path, required=True, metavar="DIR")
    scenario.add_argument("--members", type=int, default=0, help="ensemble members (0: deterministic)")
    scenario.add_argument(
        "--style",
        choices=("cf", "ecmwf", "grapes"),
        default="cf",
        help="file layout of a real centre (default: cf)",
    )
    scenario.add_argument("--region", default="wuhai")
    scenario.add_argument("--seed", type=int, default=0)
    scenario.set_defaults(command=run_scenario)

    ingest = commands.add_parser("ingest", help="score forecast files and store the run and its proposals")
    ingest.add_argument("files", nargs="+", type=Path, metavar="FILE.nc")
    _database_options(ingest)
    ingest.set_defaults(command=run_ingest)

    _add_user_commands(commands)
    _add_recipient_commands(commands)
    _add_department_commands(commands)
    _add_terminal_commands(commands)
    _add_report_commands(commands)

    audit = commands.add_parser("audit", help="the tamper-evident audit log").add_subparsers(
        required=True, metavar="ACTION"
    )
    verify = audit.add_parser(
        "verify",
        help="check the hash chain of every entry; exit status 1 and the first break if it is broken",
    )
    verify.add_argument("--head", metavar="HASH", help="a head hash kept elsewhere: the chain must reach it")
    _database_options(verify, config_help="TOML settings file ([warnings] audit_key_file)")
    verify.set_defaults(command=run_audit_verify)
    return parser


def _add_workers_option(parser: argparse.ArgumentParser) -> None:
    def count(text: str) -> int:
        from warnings_svc.settings import MAX_WEB_WORKERS  # here: `--help` imports nothing but argparse

        if not text.isdigit() or not 1 <= int(text) <= MAX_WEB_WORKERS:
            raise argparse.ArgumentTypeError(f"give a number of processes from 1 to {MAX_WEB_WORKERS}")
        return int(text)

    parser.add_argument(
        "--workers",
        dest="web_workers",
        type=count,
        metavar="N",
        help="web worker processes answering on the one port (the web_workers setting; default 1)",
    )
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_const",
        const=False,
        help="write no line per request (the access_log setting; for a reverse proxy that logs them)",
    )


def _add_user_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    commands.add_parser(
        "user", help="accounts: add users, issue and revoke bearer tokens", fill=_add_user_actions
    )


def _add_user_actions(parser: _Parser) -> None:
    from warnings_svc.lifecycle.transitions import Role
    from warnings_svc.web.accounts import SCOPES

    user = parser.add_subparsers(required=True, metavar="ACTION")
    add = user.add_parser("add", help="create a user; prints JSON with its first bearer token")
    add.add_argument("name", help="2-32 characters of a-z 0-9 _ . - starting with a letter")
    add.add_argument("--role", required=True, choices=[r.value for r in Role])
    add.add_argument("--display-name", default="", help="the name people see (e.g. 李伟)")
    add.add_argument(
        "--password-stdin", action="store_true", help="read a console password from the first line of stdin"
    )
    add.set_defaults(command=run_user_add)

    token = user.add_parser("token", help="issue another bearer token for a user; prints it as JSON")
    token.add_argument("name")
    token.add_argument(
        "--scope",
        action="append",
        choices=sorted(SCOPES),
        help="what the token may do (repeatable; default read and write)",
    )
    token.add_argument("--label", default="", help="what the token is for")
    token.set_defaults(command=run_user_token)

    revoke = user.add_parser("revoke", help="revoke a bearer token for good")
    revoke.add_argument("token", help="the token, or - to read it from stdin (keeps it out of `ps`)")
    revoke.set_defaults(command=run_user_revoke)

    listing = user.add_parser("list", help="list users as JSON lines (never a secret)")
    listing.set_defaults(command=run_user_list)

    _database_options(add, token, revoke, listing)


def _add_terminal_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    terminals = commands.add_parser(
        "terminals", help="loudspeakers and displays that get warnings over MQTT: import from CSV, list"
    ).add_subparsers(required=True, metavar="ACTION")
    load = terminals.add_parser(
        "import",
        help="register or update terminals from a UTF-8 CSV (every row checked first: a bad file writes nothing)",
    )
    load.add_argument(
        "file", type=Path, help="CSV with columns terminal_id, kind, area, population_served (target, name)"
    )
    load.set_defaults(command=run_terminals_import)
    listing = terminals.add_parser("list", help="the registered terminals, one JSON object a line")
    listing.set_defaults(command=run_terminals_list)
    _database_options(load, listing)


def _database_options(*parsers: argparse.ArgumentParser, config_help: str = "TOML settings file") -> None:
    """--config and --data-dir, for the commands that open the database."""
    for parser in parsers:
        parser.add_argument("--config", type=Path, help=config_help)
        parser.add_argument(
            "--data-dir", type=Path, help="folder of the embedded PostgreSQL (no database_url)"
        )


def _add_recipient_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    recipients = commands.add_parser(
        "recipients", help="the people warnings reach: import from CSV, opt-out, counts"
    ).add_subparsers(required=True, metavar="ACTION")
    load = recipients.add_parser(
        "import",
        help="register or update recipients from a UTF-8 CSV; prints the JSON report; "
        "exit status 1 when any row was rejected",
    )
    load.add_argument(
        "file", type=Path, help="CSV with columns name, phone, areas, roles (and optional ones)"
    )
    load.set_defaults(command=run_recipients_import)

    out = recipients.add_parser("opt-out", help="stop texting a phone number (the person stays registered)")
    out.add_argument("phone", help="mobile number: 13912345678, +8613912345678 or 0086...")
    out.set_defaults(command=run_recipients_opt_out)

    count = recipients.add_parser("count", help="how many people a warning would reach; prints JSON")
    count.add_argument("--area", help="6-, 9- or 12-digit admin code (default: the whole region)")
    count.add_argument("--hazard", help="heat, rainstorm, frost or sandstorm (default: any)")
    count.add_argument(
        "--exercise", action="store_true", help="count test recipients only, as for an exercise"
    )
    count.set_defaults(command=run_recipients_count)

    links = recipients.add_parser(
        "relay-links",
        help="each relayer's standing link for reporting how many people they told, one JSON object a line",
    )
    links.set_defaults(command=run_recipients_relay_links)

    _database_options(load, out, count, links)


def _add_department_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    departments = commands.add_parser(
        "departments", help="the registry of departments and their duty chains: import from CSV, list"
    ).add_subparsers(required=True, metavar="ACTION")
    load = departments.add_parser(
        "import",
        help="register or update departments (by code) from a UTF-8 CSV; prints the JSON report; "
        "exit status 1 when any row was rejected",
    )
    load.add_argument(
        "file",
        type=Path,
        help="CSV with columns code, name, sector, area, duty_name, duty_phone (and optional ones; "
        "docs/departments.md)",
    )
    load.set_defaults(command=run_departments_import)
    listing = departments.add_parser("list", help="the departments with their duty chains, retired ones too")
    listing.add_argument(
        "--format",
        choices=("json", "table"),
        default="json",
        help="json: one object a line (default); table: aligned columns for reading",
    )
    listing.set_defaults(command=run_departments_list)
    _database_options(load, listing)


def _add_report_commands(commands: argparse._SubParsersAction[_Parser]) -> None:
    reports = commands.add_parser(
        "report", help="the climate plan's yearly indicators: coverage, satisfaction"
    ).add_subparsers(required=True, metavar="REPORT")
    coverage = reports.add_parser(
        "coverage",
        help="the year's public coverage per district and for the city (population-weighted mean over the "
        "year's warnings); prints a table, writes CSV and a PNG plot",
    )
    coverage.set_defaults(command=run_report_coverage)
    satisfaction = reports.add_parser(
        "satisfaction",
        help="the year's public satisfaction per district and for the city (scores 1-5 by SMS reply or on the "
        "public page, as points on 100 against the plan's 90); prints a table, writes CSV",
    )
    satisfaction.set_defaults(command=run_report_satisfaction)
    for report in (coverage, satisfaction):
        report.add_argument("--year", type=int, required=True, metavar="YYYY", help="the calendar year")
        report.add_argument(
            "--out", type=Path, default=Path("."), metavar="DIR", help="folder for the files (default .)"
        )
        _database_options(report)


def _options(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def _settings(args: argparse.Namespace, *names: str) -> tuple[Settings, str]:
    """The settings (`--config`, the environment, then the options `names`) and which one chose the database."""
    from warnings_svc.settings import database_source, load_settings_with_sources

    settings, sources = load_settings_with_sources(
        getattr(args, "config", None), os.environ, _options(args, *names)
    )
    return settings, database_source(settings, sources)


def _say_database(settings: Settings, source: str) -> None:
    """One line on stderr naming the database the command opens and the setting that chose it.

    A command run without `--data-dir` opens the default folder's database, not the one a demo started with
    another uses; the line makes that visible. On stderr: stdout stays the command's output (JSON)."""
    from risk_zoning.io.database import describe_database

    print(f"{PROG}: {describe_database(settings.database_url, settings.data_dir, source)}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- commands


def run_demo(args: argparse.Namespace) -> int:
    """Embedded PostgreSQL, migrations, the Wuhai risk database, the console."""
    from warnings_svc.settings import database_source, load_settings_with_sources

    settings, sources = load_settings_with_sources(
        None, os.environ, _options(args, "data_dir", "host", "port", "web_workers", "access_log")
    )
    _configure_logging(settings.log_level)
    if settings.database_url:
        # A demo must never write into a real database someone left in the environment.
        log.info("demo ignores DATABASE_URL and uses an embedded PostgreSQL")
        settings = settings.model_copy(update={"database_url": None})
    if args.smsc:
        settings = settings.model_copy(update={"dispatch": _demo_dispatch(args.smsc)})
    if args.smoke:
        return _smoke(settings, args)
    _say_database(settings, database_source(settings, sources))
    from warnings_svc.demo.peers.stage import DemoStageThread

    # the demo's MQTT broker with simulated terminals, and the simulated gateways, CBC and platform, beside
    # the service
    if args.no_peers:
        return serve(settings, progress=True, demo=True)
    stage = DemoStageThread()
    if settings.warnings.public_url is None:  # links in what goes out (CAP, audio, airing) point at the demo
        from warnings_svc.web.workers import authority

        public = settings.warnings.model_copy(
            update={"public_url": f"http://{authority(settings.host, settings.port)}"}
        )
        settings = settings.model_copy(update={"warnings": public})
    started = stage.start()
    settings = settings.model_copy(
        update={
            "dispatch": started.dispatch(settings.dispatch, radio_tv=True),
            "partners": started.partner_settings(settings.partners),
        }
    )
    try:
        return serve(settings, progress=True, demo=True, stage=stage)
    finally:
        stage.stop()


def _smoke(settings: Settings, args: argparse.Namespace) -> int:
    """`demo --smoke`: the chain once on a fresh embedded database in a temporary folder, removed after."""
    from risk_zoning.io.database import database_url
    from warnings_svc.demo.smoke import run_smoke

    if args.data_dir is not None:
        raise CommandError("--smoke runs in a fresh temporary folder of its own: leave out --data-dir")
    folder = Path(tempfile.mkdtemp(prefix="warnings-svc-smoke-"))
    try:
        settings = settings.model_copy(update={"data_dir": folder})
        _say_database(settings, "a temporary folder, removed after")
        with database_url(None, folder) as url:
            summary = asyncio.run(run_smoke(settings, url, peers=not args.no_peers))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(summary, ensure_ascii=False, default=str))
    return 0 if summary["ok"] else 1


def _demo_dispatch(smsc: str) -> DispatchSettings:
    """One SMS endpoint on the demo's loopback SMSC (`HOST:PORT`, loopback only: the demo's people are made up)."""
    from warnings_svc.settings import DispatchSettings, SmsEndpointSettings

    host, _, port = smsc.rpartition(":")
    if (
        host not in ("127.0.0.1", "localhost", "::1", "[::1]")
        or not port.isdigit()
        or not 0 < int(port) < 65536
    ):
        raise CommandError(f"--smsc {smsc!r}: give a loopback HOST:PORT such as 127.0.0.1:2775")
    endpoint = SmsEndpointSettings(
        name="demo-smsc", host=host.strip("[]"), port=int(port), system_id="wuhai", password="secret"
    )
    return DispatchSettings(sms=(endpoint,))


def run_serve(args: argparse.Namespace) -> int:
    """The service as configured; builds the region's risk database first if it has none."""
    settings, source = _settings(args, "web_workers", "access_log")
    _configure_logging(settings.log_level)
    _say_database(settings, source)
    return serve(settings, progress=sys.stderr.isatty())


def run_dispatch(args: argparse.Namespace) -> int:
    """A dispatcher process: serves the outbox until SIGINT or SIGTERM, then finishes its batches in hand.
    It prints one JSON line when it has started (its owner name) and one with its counters when it stops."""
    from risk_zoning.io.database import database_url
    from warnings_svc.dissemination.dispatcher import endpoints_from_settings

    settings, source = _settings(args, "data_dir")
    _configure_logging(settings.log_level)
    if not settings.dispatch.sms and not settings.dispatch.area_targets():
        raise CommandError(
            "no endpoint to send through: add a [[dispatch.sms]] table (or a target of the area channels, such "
            "as [[dispatch.mqtt]]) to the settings file"
        )
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise CommandError(f"--metrics-port {args.metrics_port}: not a port number")
    endpoints = endpoints_from_settings(settings.dispatch)
    _say_database(settings, source)
    with database_url(settings.database_url, settings.data_dir) as url:
        asyncio.run(_dispatch(settings, url, endpoints, args.metrics_port))
    return 0


async def _dispatch(
    settings: Settings, url: str, endpoints: list[Endpoint], metrics_port: int | None
) -> None:
    from risk_zoning.io.database import create_pool, upgrade
    from warnings_svc.database import MIGRATIONS
    from warnings_svc.dissemination.area_dispatch import (
        AreaDispatcher,
        AreaDispatchOptions,
        AreaMetrics,
        area_targets_from_settings,
    )
    from warnings_svc.dissemination.dispatcher import Dispatcher, pool_size
    from warnings_svc.dissemination.metrics import DispatchMetrics, serve_metrics
    from warnings_svc.dissemination.partners.dispatch import (
        PartnerDispatcher,
        PartnerMetrics,
        options_from_settings,
        partner_channels_from_settings,
    )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # +4: the area and partner dispatchers
    pool = await create_pool(url, max_size=pool_size(settings.dispatch) + 4)
    metrics = DispatchMetrics()
    runner = None
    try:
        if metrics_port is not None:
            runner = await serve_metrics(metrics.registry, settings.host, metrics_port)
        async with pool.acquire() as conn:
            await upgrade(conn, MIGRATIONS)
        dispatcher = Dispatcher(
            pool, url, settings.dispatch, endpoints, region=settings.region, metrics=metrics
        )
        # the area channels' targets are served here too (with `embedded = false`, nowhere else)
        area = AreaDispatcher(
            pool, url, area_targets_from_settings(settings), AreaDispatchOptions.from_settings(settings.dispatch),
            metrics=AreaMetrics(metrics.registry),
        )  # fmt: skip
        partners = PartnerDispatcher(
            pool, url, partner_channels_from_settings(settings), options_from_settings(settings),
            metrics=PartnerMetrics(metrics.registry),
        )  # fmt: skip
        print(
            json.dumps(
                {
                    "dispatcher": dispatcher.owner,
                    "endpoints": [e.name for e in endpoints],
                    "area_targets": [f"{c} {n}" for c, n in area.targets],
                    "partner_channels": list(partners.channels),
                }
            ),
            flush=True,
        )
        runs = [dispatcher.run(stop)] if endpoints else []
        if area.targets:
            runs.append(area.run(stop))
        runs.append(partners.run(stop))
        await asyncio.gather(*runs)
        # what it did, for whoever started it (the fan-out benchmark adds these up across processes)
        print(json.dumps({"stopped": dispatcher.owner, "counters": dispatcher.counters}), flush=True)
    finally:
        if runner is not None:
            await runner.cleanup()
        try:
            await asyncio.wait_for(pool.close(), POOL_CLOSE_SECONDS)
        except TimeoutError:
            pool.terminate()


def run_audit_verify(args: argparse.Namespace) -> int:
    """Verify the audit chain; prints {"ok", "entries", "head", ...} and exits 1 when it is broken."""
    from warnings_svc.lifecycle.audit_log import verify_log
    from warnings_svc.lifecycle.store import Issuing
    from warnings_svc.settings import load_settings

    settings = load_settings(args.config, os.environ, _options(args, "data_dir"))
    key = Issuing.from_settings(settings).audit_key
    result = _on_database(args, lambda conn: verify_log(conn, key, head=args.head))
    report = {"ok": result.ok, "entries": result.count, "head": result.head}
    if not result.ok:
        report |= {"broken_seq": result.broken_seq, "reason": result.reason}
    _print_json(report)
    return 0 if result.ok else 1


def run_db_upgrade(args: argparse.Namespace) -> int:
    """Apply pending migrations and name them."""
    from risk_zoning.io.database import database_url

    settings, source = _settings(args, "data_dir")
    _configure_logging(settings.log_level)
    _say_database(settings, source)
    with database_url(settings.database_url, settings.data_dir) as url:
        applied = asyncio.run(_upgrade(url))
    print("\n".join(applied) if applied else "up to date")
    return 0


async def _upgrade(url: str) -> list[str]:
    from risk_zoning.io.database import connect, upgrade
    from warnings_svc.database import MIGRATIONS

    conn = await connect(url)
    try:
        return await upgrade(conn, MIGRATIONS)
    finally:
        await conn.close()


def run_score(args: argparse.Namespace) -> int:
    """Stateless scoring: one JSON object on stdout, or one error line on stderr and exit status 2."""
    from warnings_svc.forecast.ingest import score_files
    from warnings_svc.forecast.runs import dask_scoring, inclusion_rules

    settings, source = _settings(args, "data_dir")
    _configure_logging("WARNING")
    db, live, criteria = _scoring_inputs(settings, source)
    result = score_files(
        args.files,
        db,
        criteria,
        inclusion_rules(settings.scoring),
        live,
        args.observations,
        dask=dask_scoring(settings.scoring),
    )
    if args.plot:
        _plot_levels(db, result, args.plot)
    if args.format == "json":
        json.dump(result.to_json(), sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        print(_score_text(result.to_json()))
    return 0


def run_scenario(args: argparse.Namespace) -> int:
    """Write a scenario's files and list them."""
    from warnings_svc.demo.scenarios import write_scenario

    if not 0 <= args.members <= 100:
        raise CommandError(f"--members must be between 0 and 100, got {args.members}")
    for path in write_scenario(
        args.name, args.output, args.region, members=args.members, style=args.style, seed=args.seed
    ):
        print(path)
    return 0


def run_ingest(args: argparse.Namespace) -> int:
    """Score and store one run; prints the run id and its proposals as JSON."""
    from risk_zoning.io.database import connect, database_url, upgrade
    from risk_zoning.store import ensure_built
    from warnings_svc.database import MIGRATIONS
    from warnings_svc.forecast.ingest import score_files, store_result
    from warnings_svc.forecast.runs import dask_scoring, inclusion_rules

    settings, source = _settings(args, "data_dir")
    _configure_logging("WARNING")
    _say_database(settings, source)
    with database_url(settings.database_url, settings.data_dir) as url:

        async def go() -> dict[str, Any]:
            conn = await connect(url)
            try:
                await upgrade(conn, MIGRATIONS)
                await ensure_built(conn, settings.region, progress=sys.stderr.isatty())
                db, live = await _risk_and_live(conn, settings.region)
                result = score_files(
                    args.files,
                    db,
                    _criteria(settings),
                    inclusion_rules(settings.scoring),
                    live,
                    dask=dask_scoring(settings.scoring),
                )
                run_id, _, new = await store_result(conn, result.to_json())
                # what is stored, not the fresh scoring: a re-delivered run keeps its first proposals
                rows = await conn.fetch(
                    "SELECT id, hazard, level, action, areas, status FROM svc.proposal WHERE run_id = $1 ORDER BY id",
                    run_id,
                )
                return {"run_id": run_id, "new": new, "proposals": [dict(r) for r in rows]}
            finally:
                await conn.close()

        out = asyncio.run(go())
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2)
    print()
    return 0


def run_user_add(args: argparse.Namespace) -> int:
    """Create a user: prints {"name", "role", "token"} as JSON."""
    from warnings_svc.web.accounts import create_user

    password = _password_from_stdin() if args.password_stdin else None
    user, token = _on_database(
        args,
        lambda conn: create_user(
            conn, args.name, args.role, password=password, display_name=args.display_name
        ),
    )
    _print_json({"name": user.name, "role": user.role.value, "token": token})
    return 0


def run_user_token(args: argparse.Namespace) -> int:
    """Issue another token: prints {"name", "scopes", "token"} as JSON."""
    from warnings_svc.web.accounts import SCOPES, issue_token

    scopes = sorted(set(args.scope or SCOPES))
    token = _on_database(args, lambda conn: issue_token(conn, args.name, scopes=scopes, label=args.label))
    _print_json({"name": args.name, "scopes": scopes, "token": token})
    return 0


def run_user_revoke(args: argparse.Namespace) -> int:
    """Revoke a token; an unknown or already revoked one is an error."""
    from warnings_svc.web.accounts import revoke_token

    token = sys.stdin.readline().strip() if args.token == "-" else args.token
    if not _on_database(args, lambda conn: revoke_token(conn, token)):
        raise CommandError("no such token, or it was revoked already")
    print("revoked")
    return 0


def run_user_list(args: argparse.Namespace) -> int:
    """One JSON object per user, by name."""
    from warnings_svc.web.accounts import list_users

    for user in _on_database(args, list_users):
        print(json.dumps(user, ensure_ascii=False, default=lambda v: v.isoformat()))
    return 0


def run_terminals_import(args: argparse.Namespace) -> int:
    """Register terminals from a CSV: prints {"registered": n}; a bad file (any bad row, an area that is not a
    unit of the region, a target not configured) is refused in one line, exit status 2, nothing written."""
    from risk_zoning.store import ensure_built, region_units
    from warnings_svc.dissemination.recipients import RecipientError, read_csv_text
    from warnings_svc.dissemination.terminals import (
        TerminalError,
        check_terminals,
        parse_terminals_csv,
        register_terminals,
    )
    from warnings_svc.settings import load_settings

    settings = load_settings(args.config, os.environ, _options(args, "data_dir"))
    try:
        rows = parse_terminals_csv(read_csv_text(args.file), args.file.name)  # before the database starts

        async def work(conn: asyncpg.Connection) -> int:
            await ensure_built(conn, settings.region, progress=sys.stderr.isatty())
            units = await region_units(conn, settings.region)
            check_terminals(rows, units, [t.name for t in settings.dispatch.mqtt])
            return await register_terminals(conn, rows)

        registered = _on_database(args, work)
    except (RecipientError, TerminalError) as e:
        raise CommandError(str(e)) from e
    _print_json({"registered": registered})
    return 0


def run_terminals_list(args: argparse.Namespace) -> int:
    """Every registered terminal, one JSON object a line."""

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        rows = await conn.fetch(
            """SELECT terminal_id, kind, area, population_served, target, name, registered_at, retired_at
               FROM svc.terminal ORDER BY terminal_id"""
        )
        return [dict(r) for r in rows]

    for terminal in _on_database(args, work):
        print(json.dumps(terminal, ensure_ascii=False, default=lambda v: v.isoformat()))
    return 0


def run_recipients_import(args: argparse.Namespace) -> int:
    """Import a recipients CSV: prints the report as JSON; exit status 1 when any row was rejected.

    A file that cannot be read as a recipients CSV at all is refused in one line with exit status 2."""
    from risk_zoning.store import ensure_built
    from warnings_svc.dissemination.recipients import RecipientError, import_csv, read_csv_text
    from warnings_svc.settings import load_settings

    region = load_settings(args.config, os.environ, _options(args, "data_dir")).region
    try:
        text = read_csv_text(args.file)  # an unreadable file fails before the database starts

        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            await ensure_built(conn, region, progress=sys.stderr.isatty())
            report = await import_csv(conn, text, region, origin=f"csv:{args.file.name}")
            return report.to_json()

        report = _on_database(args, work)
    except RecipientError as e:
        raise CommandError(str(e)) from e
    _print_json(report)
    # the accepted rows are stored; a script must still learn that some people were left out
    return 1 if report["rejected_rows"] else 0


def run_recipients_opt_out(args: argparse.Namespace) -> int:
    """Opt a phone out: prints {"phone", "opted_out_at"}; an unknown phone is an error."""
    from warnings_svc.dissemination.recipients import RecipientError, opt_out

    try:
        when = _on_database(args, lambda conn: opt_out(conn, args.phone))
    except RecipientError as e:
        raise CommandError(str(e)) from e
    if when is None:
        raise CommandError(f"no recipient has phone {args.phone}")
    _print_json({"phone": args.phone, "opted_out_at": when.isoformat()})
    return 0


def run_recipients_relay_links(args: argparse.Namespace) -> int:
    """Print {"id", "name", "phone", "link"} per relayer (not opted out): the link of their page (/relay/...),
    under ``[warnings] public_url`` when one is configured. The links' secret lives in data_dir/keys."""
    from warnings_svc.dissemination.partners.inbound import relay_secret, relay_token
    from warnings_svc.settings import load_settings

    settings = load_settings(args.config, os.environ, _options(args, "data_dir"))
    secret = relay_secret(settings.data_dir)
    base = (settings.warnings.public_url or "").rstrip("/")
    rows = _on_database(
        args,
        lambda conn: conn.fetch(
            """SELECT id, name, phone FROM svc.recipient WHERE 'relayer' = ANY (roles) AND opted_out_at IS NULL
               ORDER BY id"""
        ),
    )
    for row in rows:
        link = f"{base}/relay/{relay_token(secret, row['id'])}"
        _print_json({"id": row["id"], "name": row["name"], "phone": row["phone"], "link": link})
    return 0


def run_recipients_count(args: argparse.Namespace) -> int:
    """Count the people a warning would reach: prints {"area", "hazard", "exercise", "recipients"}."""
    from risk_zoning.store import ensure_built, region_units
    from warnings_svc.dissemination.recipients import RecipientError, count_recipients, full_code
    from warnings_svc.settings import load_settings

    region = load_settings(args.config, os.environ, _options(args, "data_dir")).region
    try:
        area = full_code(args.area) if args.area else None

        async def work(conn: asyncpg.Connection) -> int:
            units = None
            if area is not None:
                await ensure_built(conn, region, progress=sys.stderr.isatty())
                units = await region_units(conn, region)
                if area not in units:
                    raise RecipientError(f"area {args.area} is not a unit of region {region}")
            areas = [area] if area is not None else None
            return await count_recipients(
                conn, areas=areas, hazard=args.hazard, units=units, exercise=args.exercise
            )

        n = _on_database(args, work)
    except RecipientError as e:
        raise CommandError(str(e)) from e
    _print_json({"area": area, "hazard": args.hazard, "exercise": args.exercise, "recipients": n})
    return 0


def run_departments_import(args: argparse.Namespace) -> int:
    """Import a departments CSV: prints the report as JSON; exit status 1 when any row was rejected.

    A file that cannot be read as a departments CSV at all is refused in one line with exit status 2."""
    from risk_zoning.store import ensure_built
    from warnings_svc.dissemination.partners.registry import (
        DepartmentError,
        import_csv,
        parse_csv,
        read_departments_csv,
    )
    from warnings_svc.settings import load_settings

    region = load_settings(args.config, os.environ, _options(args, "data_dir")).region
    try:
        name, text = read_departments_csv(args.file)
        parse_csv(text, name)  # an unusable file fails before the database starts

        async def work(conn: asyncpg.Connection) -> dict[str, Any]:
            await ensure_built(conn, region, progress=sys.stderr.isatty())
            report = await import_csv(conn, text, region, origin=f"csv:{args.file.name}")
            return report.to_json()

        report = _on_database(args, work)
    except DepartmentError as e:
        raise CommandError(str(e)) from e
    _print_json(report)
    return 1 if report["rejected_rows"] else 0


def run_departments_list(args: argparse.Namespace) -> int:
    """Every department with its duty chain (retired ones too), as JSON lines or a table."""
    from warnings_svc.dissemination.partners.registry import RANKS, all_departments, department_json

    async def work(conn: asyncpg.Connection) -> list[dict[str, Any]]:
        return [department_json(d) for d in await all_departments(conn, retired=True)]

    departments = _on_database(args, work)
    if args.format == "json":
        for d in departments:
            print(json.dumps(d, ensure_ascii=False))
        return 0
    rows = [["code", "sector", "area", "name", *RANKS, "retired"]]
    for d in departments:
        chain = [f"{p['name']} {p['phone']}" if (p := d["people"].get(rank)) else "-" for rank in RANKS]
        rows.append([d["code"], d["sector"], d["area"], d["name"], *chain, (d["retired_at"] or "")[:10]])
    print(_table(rows))
    return 0


def run_report_coverage(args: argparse.Namespace) -> int:
    """The year's coverage indicator: a table on stdout, ``coverage-YYYY.csv`` and ``coverage-YYYY.png`` in
    --out; a year without warnings says so (no files). Progress on stderr while figures are computed."""
    from datetime import UTC, datetime

    from risk_zoning.store import ensure_built, region_units
    from warnings_svc.coverage.report import (
        ReportError,
        check_year,
        coverage_csv,
        coverage_plot,
        coverage_report,
        coverage_table,
    )
    from warnings_svc.settings import load_settings

    settings = load_settings(args.config, os.environ, _options(args, "data_dir"))
    now = datetime.now(UTC)
    try:
        check_year(args.year, now=now)
    except ReportError as e:
        raise CommandError(str(e)) from e
    _writable_folder(args.out)  # before the database starts

    async def work(conn: asyncpg.Connection) -> Any:
        await ensure_built(conn, settings.region, progress=sys.stderr.isatty())
        units = await region_units(conn, settings.region)
        return await coverage_report(
            conn, args.year, units, settings.coverage, settings.dispatch, now=now, progress=_progress_bar
        )

    report = _on_database(args, work)
    left_out = f"; {report.exercises_left_out} exercise(s) left out" if report.exercises_left_out else ""
    if not report.warnings:
        print(f"no warnings issued in {args.year}{left_out}")
        return 0
    print(f"public coverage of warnings, {args.year}: target {100 * report.target:.0f} %")
    print(_table(coverage_table(report)))
    computed = (
        f"; {report.computed} computed now from evidence (no stored snapshot)" if report.computed else ""
    )
    print(f"{len(report.warnings)} warning(s){computed}{left_out}")
    print(f"method: {report.method}")
    csv_path = args.out / f"coverage-{args.year}.csv"
    png_path = args.out / f"coverage-{args.year}.png"
    _write_file(csv_path, coverage_csv(report).encode())
    _write_file(png_path, coverage_plot(report))
    print(f"wrote {csv_path} and {png_path}")
    return 0


def run_report_satisfaction(args: argparse.Namespace) -> int:
    """The year's satisfaction indicator: a table on stdout and ``satisfaction-YYYY.csv`` in --out."""
    from datetime import UTC, datetime

    from risk_zoning.store import ensure_built, region_units
    from warnings_svc.coverage.report import (
        ReportError,
        check_year,
        satisfaction_csv,
        satisfaction_report,
        satisfaction_table,
    )
    from warnings_svc.settings import load_settings

    settings = load_settings(args.config, os.environ, _options(args, "data_dir"))
    try:
        check_year(args.year, now=datetime.now(UTC))
    except ReportError as e:
        raise CommandError(str(e)) from e
    _writable_folder(args.out)

    async def work(conn: asyncpg.Connection) -> Any:
        await ensure_built(conn, settings.region, progress=sys.stderr.isatty())
        return await satisfaction_report(conn, args.year, await region_units(conn, settings.region))

    report = _on_database(args, work)
    if not report.city.responses:
        print(f"no satisfaction scores given in {args.year}")
        return 0
    print(f"public satisfaction, {args.year}: plan 90 points")
    print(_table(satisfaction_table(report)))
    print(f"method: {report.method}")
    csv_path = args.out / f"satisfaction-{args.year}.csv"
    _write_file(csv_path, satisfaction_csv(report).encode())
    print(f"wrote {csv_path}")
    return 0


def _writable_folder(folder: Path) -> None:
    """Make sure the report's folder exists and takes files, before any work: else one line, exit status 2."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as e:
        raise CommandError(f"--out {folder}: cannot write there ({e.strerror or e})") from e


def _write_file(path: Path, data: bytes) -> None:
    """Written whole or not at all: a reader never sees half a file."""
    partial = path.with_name(path.name + ".part")
    partial.write_bytes(data)
    partial.replace(path)


def _progress_bar(total: int) -> Callable[[], None]:
    """A tqdm bar on stderr over the warnings whose figures are computed (shown on a terminal only)."""
    from tqdm import tqdm

    bar = tqdm(total=total, unit="warning", desc="computing coverage", disable=None, leave=False)

    def step() -> None:
        bar.update(1)
        if bar.n >= total:
            bar.close()

    if total == 0:
        bar.close()
    return step


def _table(rows: list[list[str]]) -> str:
    """Rows as aligned columns; a Chinese character takes two columns of a terminal."""

    def width(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)

    widths = [max(width(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell + " " * (w - width(cell)) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _on_database(args: argparse.Namespace, work: Callable[[asyncpg.Connection], Awaitable[Any]]) -> Any:
    """Run `work` on a connection to the configured database, after applying pending migrations."""
    from risk_zoning.io.database import connect, database_url, upgrade
    from warnings_svc.database import MIGRATIONS
    from warnings_svc.web.accounts import AccountError

    settings, source = _settings(args, "data_dir")
    _configure_logging("WARNING")
    _say_database(settings, source)
    with database_url(settings.database_url, settings.data_dir) as url:

        async def go() -> Any:
            conn = await connect(url)
            try:
                await upgrade(conn, MIGRATIONS)
                return await work(conn)
            finally:
                await conn.close()

        try:
            return asyncio.run(go())
        except AccountError as e:
            raise CommandError(str(e)) from e


def _password_from_stdin() -> str:
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise CommandError("--password-stdin: no password on the first line of stdin")
    return password


def _print_json(doc: dict[str, Any]) -> None:
    json.dump(doc, sys.stdout, ensure_ascii=False)
    print()


def _criteria(settings: Settings) -> Criteria:
    from warnings_svc.forecast.criteria import load_criteria

    return load_criteria(settings.scoring.criteria_file)


async def _risk_and_live(conn: asyncpg.Connection, region: str) -> tuple[RiskDatabase, list[LiveWarning]]:
    from risk_zoning.store import load_current
    from warnings_svc.forecast.ingest import live_warnings

    db = await load_current(conn, region)
    has_warnings = await conn.fetchval("SELECT to_regclass('svc.warning') IS NOT NULL")
    return db, (await live_warnings(conn) if has_warnings else [])


def _scoring_inputs(settings: Settings, source: str) -> tuple[RiskDatabase, list[LiveWarning], Criteria]:
    """The current risk database (built first if missing), the warnings in force, and the criteria."""
    from risk_zoning.io.database import connect, database_url
    from risk_zoning.store import ensure_built

    criteria = _criteria(settings)  # validate configuration before starting anything
    _say_database(settings, source)
    with database_url(settings.database_url, settings.data_dir) as url:

        async def go() -> tuple[RiskDatabase, list[LiveWarning]]:
            conn = await connect(url)
            try:
                await ensure_built(conn, settings.region, progress=sys.stderr.isatty())
                return await _risk_and_live(conn, settings.region)
            finally:
                await conn.close()

        db, live = asyncio.run(go())
    return db, live, criteria


def _plot_levels(db: RiskDatabase, result: ScoreResult, path: Path) -> None:
    import numpy as np

    from risk_zoning import HAZARD_NAMES
    from risk_zoning.plot import cjk_font, render_category_panels
    from warnings_svc.vocabulary import LEVEL_COLOURS, LEVEL_NAMES, LEVELS

    zh = cjk_font() is not None
    panels = {}
    for hazard, (levels, reached) in result.level_grids.items():
        # reached counts the hazard's own levels; map onto the common blue..red scale
        lookup = np.array([0] + [LEVELS.index(lv) + 1 for lv in levels], dtype=np.int8)
        panels[HAZARD_NAMES["zh" if zh else "en"][hazard]] = lookup[reached]
    # hazards that reach nothing are left out, unless nothing is reached at all
    panels = {k: v for k, v in panels.items() if v.any()} or panels
    labels = tuple(LEVEL_NAMES[lv][0 if zh else 1] for lv in LEVELS)
    title = ("预报预警等级 " if zh else "Forecast warning levels, run ") + result.run["reference_time"]
    png = render_category_panels(
        db,
        panels,
        tuple(LEVEL_COLOURS[lv] for lv in LEVELS),
        labels,
        title=title,
        lang="zh" if zh else "en",
    )
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(png)
    tmp.replace(path)


def _score_text(doc: dict[str, Any]) -> str:
    run = doc["run"]
    lines = [f"run {run['reference_time']}  members {run['members']}  files {', '.join(run['files'])}"]
    for hazard, info in run["hazards"].items():
        variable = info.get("variable") or {}
        source = variable.get("source_variable", "?") if isinstance(variable, dict) else variable
        state = info.get("reason") or info.get("suppressed") or f"evaluated from {source}"
        lines.append(f"  {hazard:<10} {state}")
    if not doc["proposals"]:
        lines.append("no proposals")
    for p in doc["proposals"]:
        lines.append(
            f"{p['action']:<9} {p['hazard']:<10} {p['level']:<7} {', '.join(p['area_names']) or ', '.join(p['areas'])}"
            f"  {p['onset']} -> {p['expires']}  p={p['probability']:.2f}  exposed {p['exposed_population']:,}"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- serving


class ServiceFailed(Exception):
    """The service cannot go on (its embedded database could not be restarted, web workers kept ending);
    `str()` is the one line."""


def serve(
    settings: Settings, *, progress: bool, demo: bool = False, stage: DemoStageThread | None = None
) -> int:
    """Serve until SIGINT or SIGTERM, then stop the web server (or its worker processes) and any embedded
    PostgreSQL; exit status 0.

    When the service cannot go on (the embedded PostgreSQL stopped and could not be restarted, see
    `web.database_watch`; web workers kept ending, see `web.workers`), it stops and exits with status 1 and
    one line on stderr saying why, for its supervisor to restart it."""
    from risk_zoning.io.database import database_server
    from warnings_svc.web.workers import run_event_loop

    failure: ServiceFailed | None = None
    # Until the event loop takes the signals over, SIGTERM unwinds like Ctrl-C, so the embedded server stops.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        with database_server(settings.database_url, settings.data_dir) as (url, embedded):
            try:
                if settings.web_workers == 1:
                    run_event_loop(_serve(settings, url, embedded, progress=progress, demo=demo, stage=stage))
                else:
                    _serve_workers(settings, url, embedded, progress=progress, demo=demo, stage=stage)
            except ServiceFailed as e:
                failure = e
            finally:
                # Stopping PostgreSQL takes a moment; a second Ctrl-C must not leave it running.
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
    except KeyboardInterrupt:
        log.info("stopped before the service was up")
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log.info("stopped")
    if failure is not None:
        print(f"{PROG}: {' '.join(str(failure).split())}", file=sys.stderr, flush=True)
        return 1
    return 0


def _raise_keyboard_interrupt(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


async def _serve(
    settings: Settings,
    url: str,
    embedded: EmbeddedPostgres | None,
    *,
    progress: bool,
    demo: bool = False,
    stage: DemoStageThread | None = None,
) -> None:
    from warnings_svc.web.health import DATABASE_WATCH
    from warnings_svc.web.workers import listening, settle_heap
    from warnings_svc.web.write_lane import yield_to_writes

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Listen before the (possibly long) first build: a taken port fails at once, and /readyz answers 503
    # until the risk database is there.
    watch: DatabaseWatch | None = None
    try:
        async with listening(settings, url, embedded=embedded) as (pool, app):
            # the database watch gave up restarting the embedded server: stop as when asked to, then fail
            watch = app[DATABASE_WATCH]
            stop_on_give_up = asyncio.create_task(watch.gave_up.wait(), name="stop-on-give-up")
            stop_on_give_up.add_done_callback(lambda _: stop.set())
            try:
                if await _unless_stopped(
                    stop, _prepare_service(pool, settings, progress=progress, demo=demo, stage=stage)
                ):
                    await settle_heap(app)
                    yield_to_writes(app)
                    _print_console(settings)
                    await stop.wait()
                    log.info("stopping")
            finally:
                stop_on_give_up.cancel()
    finally:
        if watch is not None and watch.gave_up.is_set():  # the cause of whatever else failed meanwhile
            raise ServiceFailed(watch.reason)


def _serve_workers(
    settings: Settings,
    url: str,
    embedded: EmbeddedPostgres | None,
    *,
    progress: bool,
    demo: bool,
    stage: DemoStageThread | None = None,
) -> None:
    """`web_workers` processes on one port: the database prepared here once, then the workers started and
    watched (`warnings_svc.web.workers`); Ctrl-C or SIGTERM stop them (a `KeyboardInterrupt` there)."""
    from warnings_svc.web.workers import WorkerPlan, check_port_free, run_workers

    check_port_free(settings.host, settings.port)  # before the (possibly long) first build
    size = asyncio.run(_prepare_once(settings, url, progress=progress, demo=demo, stage=stage))
    plan = WorkerPlan(settings, url, size, _configure_logging)
    given_up = run_workers(
        plan, settings.web_workers, on_ready=lambda: _print_console(settings), embedded=embedded
    )
    if given_up is not None:
        raise ServiceFailed(given_up)


async def _prepare_once(
    settings: Settings, url: str, *, progress: bool, demo: bool, stage: DemoStageThread | None = None
) -> int:
    """Prepare the database for the workers; returns the pool size each may have."""
    from risk_zoning.io.database import create_pool
    from warnings_svc.web.workers import pool_size

    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            size = pool_size(settings.web_workers, int(await conn.fetchval("SHOW max_connections")))
        await _prepare_service(pool, settings, progress=progress, demo=demo, stage=stage)
        return size
    finally:
        await pool.close()


async def _prepare_service(
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    progress: bool,
    demo: bool,
    stage: DemoStageThread | None = None,
) -> None:
    """Migrations and the region's risk database; for the demo also its forecast, users, departments and
    recipients, and with a `stage` its simulated terminals."""
    from risk_zoning.store import region_units
    from warnings_svc.demo.seeding import seed_demo_departments, seed_demo_forecast
    from warnings_svc.demo.users import seed_demo_recipients, seed_demo_users

    await _prepare_database(pool, settings.region, progress=progress)
    if not demo:
        return
    if not await _has_runs(pool):
        seeded = await asyncio.get_running_loop().run_in_executor(
            None, seed_demo_forecast, settings.data_dir, settings.region
        )
        if seeded is not None:
            log.info("demo forecast placed in the inbox", extra={"run": seeded.name})
    for u in await seed_demo_users(pool, settings.data_dir):
        print(f"Demo user: {u['name']:<12} password {u['password']}  ({u['role']})", flush=True)
    departments = await seed_demo_departments(pool, settings.region)
    if departments is not None and departments.inserted:
        print(f"Departments: {departments.inserted} synthetic departments registered (demo data)", flush=True)
    if settings.dispatch.sms:
        async with pool.acquire() as conn:
            units = await region_units(conn, settings.region)
        towns = sorted(code for code, unit in units.items() if unit.level == "town") or sorted(units)
        added = await seed_demo_recipients(pool, towns)
        if added:
            log.info("demo recipients registered", extra={"recipients": added})
        print(f"SMS: issued warnings go to the loopback SMSC at {_smsc_authority(settings)}", flush=True)
    if stage is not None:
        await _start_demo_terminals(pool, settings, stage)


async def _start_demo_terminals(pool: asyncpg.Pool, settings: Settings, stage: DemoStageThread) -> None:
    from risk_zoning.store import region_units
    from warnings_svc.demo.peers.terminals import demo_terminal_rows
    from warnings_svc.dissemination.terminals import register_terminals

    async with pool.acquire() as conn:
        units = await region_units(conn, settings.region)
        rows = demo_terminal_rows(units)
        await register_terminals(conn, rows)
    stage.populate(units)
    loop = asyncio.get_running_loop()
    connected = await loop.run_in_executor(None, stage.start_terminals, rows)
    print(
        f"Terminals: {connected} simulated loudspeakers and displays on the demo's MQTT broker at {stage.stage.url}",
        flush=True,
    )
    async with pool.acquire() as conn:
        made = await stage.subscribe_partners(conn, settings.region)
    partners = stage.stage.partners
    print(
        f"Partners: {len(made)} demo subscriptions (webhooks to {partners.webhook_url}, emails to a mail server "
        f"at 127.0.0.1:{partners.smtp_port}, an MQTT topic under {settings.partners.mqtt_topic_prefix}/)",
        flush=True,
    )
    from warnings_svc.documents.speech import speech_available

    spoken, why = await asyncio.to_thread(speech_available)
    print(
        "Audio: the broadcast script is spoken at /api/v1/alerts/{id}.wav"
        if spoken
        else f"Audio: none in this demo ({why}); everything else works without it",
        flush=True,
    )


def _print_console(settings: Settings) -> None:
    from warnings_svc.web.workers import authority

    print(f"Console: http://{authority(settings.host, settings.port)}/console/", flush=True)


async def _has_runs(pool: asyncpg.Pool) -> bool:
    async with pool.acquire() as conn:
        return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM svc.forecast_run)"))


async def _prepare_database(pool: asyncpg.Pool, region: str, *, progress: bool) -> None:
    from risk_zoning.io.database import upgrade
    from risk_zoning.store import ensure_built
    from warnings_svc.database import MIGRATIONS

    async with pool.acquire() as conn:
        await upgrade(conn, MIGRATIONS)
        version = await ensure_built(conn, region, progress=progress)
    log.info("risk database ready", extra={"region": region, "version_id": version})


async def _unless_stopped(stop: asyncio.Event, work: Awaitable[None]) -> bool:
    """Run `work` unless a stop is asked for first (then cancel it); True when it finished."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        stopped.cancel()
        task.result()
        return True
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    log.info("stop asked for while starting")
    return False


def _smsc_authority(settings: Settings) -> str:
    endpoint = settings.dispatch.sms[0]
    return f"{endpoint.host}:{endpoint.port}"


# ---------------------------------------------------------------------------------------------- logging

_RECORD_FIELDS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class _FieldsFormatter(logging.Formatter):
    """The message, then the record's structured fields (`extra=`) as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if record.name.startswith("aiohttp."):  # its access log passes its own fields, already in the line
            return line
        fields = " ".join(f"{k}={v}" for k, v in vars(record).items() if k not in _RECORD_FIELDS)
        return f"{line} {fields}" if fields else line


def _configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_FieldsFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # pgserver narrates every pg_ctl call at INFO; our own lines say what matters.
    logging.getLogger("pgserver").setLevel(max(logging.getLevelName(level), logging.WARNING))


if __name__ == "__main__":
    sys.exit(main())
