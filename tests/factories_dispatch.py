"""Recipients, issued warnings and running dispatchers for the dissemination tests and the fan-out benchmark."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from channels.smpp.esme import SmsChannel
from risk_zoning.store import region_units
from warnings_svc.dissemination.dispatcher import Dispatcher, Endpoint, pool_size, sms_endpoint
from warnings_svc.dissemination.expansion import expand_next
from warnings_svc.documents.texts import sms_segments
from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.transitions import Action, Actor, Role
from warnings_svc.settings import DispatchSettings, Settings, SmsEndpointSettings

FORECASTER = Actor("wang", Role.forecaster)
APPROVER = Actor("li", Role.approver)
CTX = ws.Issuing.from_settings(Settings())
DISTRICTS = ("150302000000", "150303000000", "150304000000")  # Haibowan, Hainan, Wuda


async def add_recipients(
    conn: asyncpg.Connection,
    n: int,
    *,
    first_phone: int = 13_800_000_000,
    areas: tuple[str, ...] = DISTRICTS,
    test_every: int = 0,
    language_en_every: int = 0,
) -> None:
    """Register `n` consenting people with consecutive phones, spread over `areas` (one each, in turn); every
    `test_every`-th a test recipient, every `language_en_every`-th reading English."""
    await conn.execute(
        """INSERT INTO svc.recipient (name, phone, language, areas, roles, consent, consent_basis, consent_at,
                                      test_recipient)
           SELECT 'person ' || i, '+86' || ($2::bigint + i)::text,
                  CASE WHEN $5 > 0 AND i % $5 = 0 THEN 'en' ELSE 'zh-CN' END,
                  ARRAY[($3::text[])[1 + i % cardinality($3::text[])]], ARRAY['public_subscriber'],
                  true, 'explicit', now(), $4 > 0 AND i % $4 = 0
           FROM generate_series(0, $1 - 1) AS i""",
        n,
        first_phone,
        list(areas),
        test_every,
        language_en_every,
    )


async def expand_all(conn: asyncpg.Connection, *, region: str = "wuhai", chunk: int = 10_000) -> int:
    """Expand every pending fan-out into deliveries, as a dispatcher's expander does; how many were written."""
    units = await region_units(conn, region)
    written = 0
    while (expanded := await expand_next(conn, units, chunk=chunk, first_chunk=min(500, chunk))) is not None:
        written += expanded.deliveries
    return written


async def sms_segments_of(conn: asyncpg.Connection, warning_id: int, version: int = 1) -> int:
    """SMS segments of the version's issued zh-CN SMS text (what every recipient should have been sent)."""
    rendered = json.loads(
        await conn.fetchval(
            "SELECT rendered FROM svc.warning_version WHERE warning_id = $1 AND version = $2",
            warning_id,
            version,
        )
    )
    return sms_segments(rendered["zh-CN"]["sms_full"])


def phone(i: int, first_phone: int = 13_800_000_000) -> str:
    """The phone `add_recipients` gave the i-th person."""
    return f"+86{first_phone + i}"


async def issue(
    conn: asyncpg.Connection,
    *,
    level: str = "orange",
    areas: tuple[str, ...] = ("150300",),  # the city: reaches every district and town
    hazard: str = "heat",
    exercise: bool = False,
    hours: float = 24,
    ctx: ws.Issuing = CTX,
) -> ws.Version:
    """A warning issued now (real time: the dispatcher compares with the database clock) by two people."""
    now = datetime.now(UTC)
    # on the hour, as forecasters set them (times with minutes make the texts longer)
    onset = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    v = await ws.create(
        conn,
        ctx,
        FORECASTER,
        hazard=hazard,
        level=level,
        onset=onset,
        expires=onset + timedelta(hours=hours),
        content=ws.Content(areas=areas),
        exercise=exercise,
        now=now,
    )
    await ws.act(conn, ctx, FORECASTER, v.warning_id, Action.submit, now=now)
    return await ws.act(conn, ctx, APPROVER, v.warning_id, Action.approve, now=datetime.now(UTC), reason="ok")


async def successor(
    conn: asyncpg.Connection, warning_id: int, changes: dict[str, Any] | None, *, ctx: ws.Issuing = CTX
) -> ws.Version:
    """Issue an Update with `changes` (None: a Cancel) of the warning."""
    now = datetime.now(UTC)
    if changes is None:
        await ws.start_cancel(conn, ctx, FORECASTER, warning_id, note="", now=now)
    else:
        await ws.start_update(conn, ctx, FORECASTER, warning_id, changes, now=now)
    await ws.act(conn, ctx, FORECASTER, warning_id, Action.submit, now=now)
    return await ws.act(conn, ctx, APPROVER, warning_id, Action.approve, now=datetime.now(UTC), reason="ok")


def dispatch_settings(peer: Any, **changes: Any) -> DispatchSettings:
    """Dispatch settings for one SMS endpoint on the loopback SMSC `peer`, tuned for quick tests."""
    endpoint = SmsEndpointSettings(
        name="smsc", host=peer.host, port=peer.port, system_id=peer.system_id, password=peer.password
    )
    base = DispatchSettings(
        sms=(endpoint,), lease_s=5, poll_s=0.2, retry_base_s=0.1, retry_cap_s=1.0, breaker_cool_down_s=0.5
    )
    return replace_settings(base, **changes)


def replace_settings(settings: DispatchSettings, **changes: Any) -> DispatchSettings:
    return DispatchSettings.model_validate(settings.model_dump() | changes)


@asynccontextmanager
async def running_dispatcher(
    database_url: str, settings: DispatchSettings, *, region: str = "wuhai"
) -> AsyncIterator[Dispatcher]:
    """A dispatcher running in this event loop until the block ends."""
    endpoints = [sms_endpoint(e, settings) for e in settings.sms]
    async with running_dispatcher_on(database_url, settings, endpoints, region=region) as dispatcher:
        yield dispatcher


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout_s: float, what: str, every_s: float = 0.1
) -> float:
    """Poll `check` until true (at most `timeout_s`); the seconds it took. AssertionError naming `what`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if await check():
            return time.monotonic() - start
        await asyncio.sleep(every_s)
    raise AssertionError(f"{what}: not within {timeout_s} s")


async def states(conn: asyncpg.Connection, warning_id: int | None = None) -> dict[str, int]:
    """Deliveries by state (of one warning, or all)."""
    rows = await conn.fetch(
        "SELECT state, count(*) AS n FROM svc.delivery WHERE $1::bigint IS NULL OR warning_id = $1 GROUP BY state",
        warning_id,
    )
    return {r["state"]: r["n"] for r in rows}


async def outbox_report(conn: asyncpg.Connection, warning_id: int) -> str:
    """What a warning's deliveries that are not delivered are doing, on one line: for a test that timed out."""
    rows = await conn.fetch(
        """SELECT state, attempts, split_part(coalesce(lease_owner, ''), '#', 1) AS owner,
                  next_attempt_at > now() AS later, left(reason, 60) AS reason, count(*) AS n,
                  count(*) FILTER (WHERE EXISTS (
                      SELECT 1 FROM svc.delivery_part p WHERE p.delivery_id = d.id AND p.state IS NULL)) AS waiting
           FROM svc.delivery d WHERE warning_id = $1 AND state <> 'delivered'
           GROUP BY 1, 2, 3, 4, 5 ORDER BY n DESC LIMIT 8""",
        warning_id,
    )
    leases = await conn.fetchval("SELECT count(*) FROM svc.delivery_lease")
    orphans = await conn.fetchval("SELECT count(*) FROM svc.delivery_part WHERE delivery_id IS NULL")
    groups = "; ".join(
        f"{r['n']} {r['state']} attempts={r['attempts']} owner={r['owner'] or '-'} later={r['later']} "
        f"parts_without_receipt={r['waiting']} reason={r['reason']!r}"
        for r in rows
    )
    return f"{groups or 'all delivered'} | leases={leases} receipts_without_delivery={orphans}"


# ---------------------------------------------------------------------------------------------- fault tests


def read_records(path: Path) -> list[dict[str, Any]]:
    """The JSON lines a loopback SMSC appended to its `--record` file (a line cut short by a kill is skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def accepted_per_destination(records: Iterable[dict[str, Any]]) -> Counter[str]:
    """How many submit_sm (segments) the SMSC accepted for each destination."""
    return Counter(
        r["destination_addr"]
        for r in records
        if r.get("command") == "submit_sm" and r.get("outcome") == "accepted"
    )


def write_dispatch_config(path: Path, database_url: str, settings: DispatchSettings) -> Path:
    """A settings file for `warnings-svc dispatch --config`: the database and the `[dispatch]` table."""
    lines = [f"database_url = {json.dumps(database_url)}", 'log_level = "WARNING"', "", "[dispatch]"]
    for key, value in settings.model_dump(exclude={"sms", "channels"}).items():
        lines.append(f"{key} = {json.dumps(value)}")
    for e in settings.sms:
        lines += ["", "[[dispatch.sms]]"]
        for key, value in e.model_dump(exclude_none=True).items():
            lines.append(f"{key} = {json.dumps(value if not isinstance(value, Path) else str(value))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class DispatcherProcess:
    """A `warnings-svc dispatch` process (its stdout and stderr go to files next to its config)."""

    process: subprocess.Popen[bytes]
    owner: str
    log: Path

    def printed(self) -> list[str]:
        """The lines it printed on its standard output: its start line, then its counters if it stopped
        cleanly."""
        out = self.log.with_suffix(".out")
        return out.read_text(encoding="utf-8", errors="replace").splitlines()

    def kill(self) -> None:
        """SIGKILL: no clean stop, leases stay held."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM (finish the batches in hand), then SIGKILL after 30 s; the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode


def start_dispatcher_process(
    config: Path, name: str = "dispatcher", start_timeout_s: float = 30
) -> DispatcherProcess:
    """Start `warnings-svc dispatch --config` and wait until it prints its start line (its owner name)."""
    from tests.factories_app import clean_environment, warnings_svc_command

    out_path = config.with_name(f"{name}.out")
    log_path = config.with_name(f"{name}.log")
    with out_path.open("wb") as out, log_path.open("wb") as err:
        process = subprocess.Popen(
            [*warnings_svc_command(), "dispatch", "--config", str(config)],
            stdout=out,
            stderr=err,
            env=clean_environment(),
        )
    deadline = time.monotonic() + start_timeout_s
    while time.monotonic() < deadline:
        first = out_path.read_text(encoding="utf-8").partition("\n")
        if first[1]:
            return DispatcherProcess(process, json.loads(first[0])["dispatcher"], log_path)
        if process.poll() is not None:
            break
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
    raise AssertionError(f"dispatcher did not start (exit {process.returncode}): {' | '.join(tail)}")


def sms_endpoint_tuned(e: SmsEndpointSettings, settings: DispatchSettings, **smpp: Any) -> Endpoint:
    """`sms_endpoint`, with SMPP link settings the settings file does not expose changed (e.g. reconnect_max_s)."""
    endpoint = sms_endpoint(e, settings)
    adapter = endpoint.adapter
    assert isinstance(adapter, SmsChannel)
    endpoint.adapter = SmsChannel(dataclasses.replace(adapter.settings, **smpp))
    return endpoint


@asynccontextmanager
async def running_dispatcher_on(
    database_url: str, settings: DispatchSettings, endpoints: list[Endpoint], *, region: str = "wuhai"
) -> AsyncIterator[Dispatcher]:
    """`running_dispatcher` with endpoints of the caller's making, on the pool `warnings-svc dispatch` gives it."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=pool_size(settings))
    dispatcher = Dispatcher(pool, database_url, settings, endpoints, region=region)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield dispatcher
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 30)
        finally:
            await pool.close()
