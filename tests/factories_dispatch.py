"""Recipients, issued warnings and running dispatchers for the dissemination tests and the fan-out benchmark."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from warnings_svc import warning_store as ws
from warnings_svc.dispatch import Dispatcher, sms_endpoint
from warnings_svc.lifecycle import Action, Actor, Role
from warnings_svc.settings import DispatchSettings, Settings, SmsEndpointSettings
from warnings_svc.texts import sms_segments

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
    v = await ws.create(
        conn,
        ctx,
        FORECASTER,
        hazard=hazard,
        level=level,
        onset=now + timedelta(minutes=30),
        expires=now + timedelta(hours=hours),
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
        await ws.start_cancel(conn, ctx, FORECASTER, warning_id, now=now)
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
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=6)
    dispatcher = Dispatcher(
        pool, database_url, settings, [sms_endpoint(e, settings) for e in settings.sms], region=region
    )
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield dispatcher
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await pool.close()


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
