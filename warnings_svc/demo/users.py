"""The demo's people: one account per role, with passwords kept beside the demo's data so they can be shown
again at every start (the database holds only their hashes), and synthetic SMS recipients for the demo's
loopback SMSC."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

import asyncpg

from warnings_svc.web.accounts import AccountError, create_user, get_user, set_password

CREDENTIALS_FILE = "demo-users.json"
# name, role, display name: two forecasters and a chief so the two-person rule can be tried out
DEMO_USERS: tuple[tuple[str, str, str], ...] = (
    ("forecaster", "forecaster", "值班预报员 Duty forecaster"),
    ("forecaster2", "forecaster", "预报员 Forecaster"),
    ("chief", "approver", "首席预报员 Chief forecaster"),
    ("operations", "operations", "运维值班 Operations"),
    ("department", "department", "应急管理局 Emergency management"),
)


async def seed_demo_users(pool: asyncpg.Pool, data_dir: Path) -> list[dict[str, Any]]:
    """Create the demo accounts that are missing; returns every demo account with its password.

    Passwords are random, made once per data folder and stored in ``data_dir/demo-users.json`` (mode 0600);
    an account whose password is not in that file (the file was deleted) gets a new one.
    """
    path = data_dir / CREDENTIALS_FILE
    known: dict[str, str] = {}
    if path.is_file():
        try:
            known = {u["name"]: u["password"] for u in json.loads(path.read_text("utf-8"))}
        except (ValueError, KeyError, TypeError):
            known = {}
    out = []
    async with pool.acquire() as conn:
        for name, role, display in DEMO_USERS:
            password = known.get(name) or secrets.token_urlsafe(12)
            try:
                await get_user(conn, name)
                exists = True
            except AccountError:
                exists = False
            if not exists:
                await create_user(conn, name, role, password=password, display_name=display)
            elif name not in known:
                await set_password(conn, name, password)
            out.append({"name": name, "role": role, "password": password})
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
    return out


DEMO_RECIPIENTS = 600
DEMO_SOURCE = "demo: synthetic people, phones that reach only the loopback SMSC"


async def seed_demo_recipients(pool: asyncpg.Pool, region_units: list[str], n: int = DEMO_RECIPIENTS) -> int:
    """Register `n` synthetic people, spread over `region_units` in turn (every tenth a test recipient for
    exercises, every fifth reading English), unless the registry holds anyone already; how many were added."""
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM svc.recipient)"):
            return 0
        await conn.execute(
            """INSERT INTO svc.recipient (name, phone, language, areas, roles, consent, consent_basis, consent_at,
                                          test_recipient, source)
               SELECT '演示用户 ' || i, '+86' || (19900000000 + i)::text,
                      CASE WHEN i % 5 = 0 THEN 'en' ELSE 'zh-CN' END,
                      ARRAY[($2::text[])[1 + i % cardinality($2::text[])]],
                      ARRAY[CASE WHEN i % 50 = 0 THEN 'relayer' ELSE 'public_subscriber' END],
                      true, 'explicit', now(), i % 10 = 0, $3
               FROM generate_series(1, $1) AS i""",
            n,
            region_units,
            DEMO_SOURCE,
        )
    return n
