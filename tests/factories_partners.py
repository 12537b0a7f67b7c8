"""Partners as the tests meet them: webhook receivers on 127.0.0.1 that verify every delivery with the
independent `standardwebhooks` package, subscriptions, and a partner dispatcher running in the test's loop."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import standardwebhooks
from aiohttp import web

from channels.partner import PartnerChannel
from channels.webhooks.client import WebhookChannel
from risk_zoning.store import region_units
from warnings_svc.dissemination.partners import subscriptions as subs
from warnings_svc.dissemination.partners.dispatch import PartnerDispatcher, PartnerDispatchOptions

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)
QUICK = PartnerDispatchOptions(schedule_s=(0, 0.2, 0.4), concurrency=16, lease_s=5, poll_s=0.1)


@dataclass
class Received:
    """One request a receiver got, and whether the independent library accepted its signature."""

    path: str
    headers: dict[str, str]
    body: bytes
    verified_with: list[str]  # the names of the secrets it verified under

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A partner's webhook endpoint: answers each path with its scripted statuses in turn (then 204), and
    checks every request's signature against each secret it is given, with `standardwebhooks`."""

    secrets: dict[str, str] = field(default_factory=dict)  # name -> whsec_...
    script: dict[str, list[int | tuple[int, dict[str, str]] | float]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = []
        for name, secret in self.secrets.items():
            with contextlib.suppress(standardwebhooks.WebhookVerificationError):
                standardwebhooks.Webhook(secret).verify(body, headers)
                verified.append(name)
        self.received.append(Received(request.path, headers, body, verified))
        steps = self.script.get(request.path) or []
        step = steps.pop(0) if steps else 204
        if isinstance(step, float):  # seconds to sleep before answering (a slow endpoint)
            await asyncio.sleep(step)
            return web.Response(status=204)
        if isinstance(step, tuple):
            return web.Response(status=step[0], headers=step[1])
        return web.Response(status=step)

    async def __aenter__(self) -> WebhookReceiver:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


async def subscribe(
    conn: asyncpg.Connection, channel: str, address: str, *, owner: str = "water", **wants: Any
) -> tuple[subs.Subscription, str]:
    """A subscription stored as the API stores it; it and its secret."""
    units = await region_units(conn, "wuhai")
    spec = subs.check_spec(channel, address, units=units, **wants)
    return await subs.create(conn, owner, spec)


@asynccontextmanager
async def running_partners(
    database_url: str,
    channels: Mapping[str, PartnerChannel] | None = None,
    options: PartnerDispatchOptions = QUICK,
) -> AsyncIterator[PartnerDispatcher]:
    """A partner dispatcher (webhooks to 127.0.0.1 by default) running in this loop until the block ends."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=4)
    adapters = channels or {"webhook": WebhookChannel(allow_private=LOOPBACK, timeout_s=1.0)}
    dispatcher = PartnerDispatcher(pool, database_url, adapters, options)
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield dispatcher
    finally:
        stop.set()
        await task
        await pool.close()


async def deliveries(conn: asyncpg.Connection, subscription_id: int) -> list[asyncpg.Record]:
    """A subscription's deliveries, oldest first."""
    return await conn.fetch(
        """SELECT id, warning_id, version, msg_type, state, attempts, last_status, reason, message_id
           FROM svc.partner_delivery WHERE subscription_id = $1 ORDER BY id""",
        subscription_id,
    )


async def attempts(conn: asyncpg.Connection, delivery_id: int) -> list[asyncpg.Record]:
    """A delivery's attempts, in order."""
    return await conn.fetch(
        """SELECT attempt, outcome, status, error, latency_ms FROM svc.partner_attempt
           WHERE delivery_id = $1 ORDER BY id""",
        delivery_id,
    )
