"""The service as the integration tests run it: the production app factory on a real pool, and the CLI."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from risk_zoning.io.database import create_pool
from warnings_svc.settings import Settings
from warnings_svc.web.accounts import create_user
from warnings_svc.web.app import create_app


@asynccontextmanager
async def service(
    url: str, data_dir: Path, *, routes: Iterable[web.RouteDef] = (), port: int | None = None, **settings: Any
) -> AsyncIterator[TestClient]:
    """The production app factory on a real pool, served on a free port.

    `settings` are further `Settings` fields; `routes` are test-only routes added to this instance (never
    to the production factory); `port` a port chosen beforehand (for links the service gives out to itself).
    """
    pool = await create_pool(url, max_size=4)
    app = create_app(Settings(database_url=url, data_dir=data_dir, **settings), pool)
    app.router.add_routes(routes)
    client = TestClient(TestServer(app, port=port))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        await pool.close()


def heat_draft(**changes: Any) -> dict[str, Any]:
    """The body of a create request: an orange heat warning for Haibowan (150302), from two hours from now
    for a day, with `changes`."""
    onset = datetime.now(UTC) + timedelta(hours=2)
    return {
        "hazard": "heat",
        "level": "orange",
        "areas": ["150302"],
        "onset": onset.isoformat(),
        "expires": (onset + timedelta(hours=24)).isoformat(),
    } | changes


def warnings_svc_command() -> list[str]:
    """The `warnings-svc` command: the venv's console script when there is one."""
    script = Path(sys.executable).with_name("warnings-svc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "warnings_svc.cli"]


def clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without the service's own settings (none may leak in), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("WARNINGS_SVC_")}
    return {**env, **extra}


async def user_tokens(
    url: str, users: Iterable[tuple[str, str]], *, password: str | None = None
) -> dict[str, str]:
    """Create each (name, role) in the database at `url` and return their bearer tokens by name."""
    conn = await asyncpg.connect(url)
    try:
        tokens = {}
        for name, role in users:
            _, tokens[name] = await create_user(conn, name, role, password=password)
        return tokens
    finally:
        await conn.close()
