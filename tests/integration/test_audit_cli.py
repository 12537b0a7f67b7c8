"""`warnings-svc audit verify` on a real log: ok, then broken by someone who bypasses the append-only trigger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import asyncpg

from tests.factories_db import fresh_database
from warnings_svc.lifecycle import store as ws
from warnings_svc.lifecycle.transitions import Action, Actor, Role
from warnings_svc.settings import Settings

NOW = datetime(2026, 7, 9, 8, tzinfo=UTC)


def verify_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "warnings_svc.cli", "audit", "verify", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


async def test_audit_verify_reports_ok_then_the_first_tampered_entry(pg_server_url: str) -> None:
    async with fresh_database(pg_server_url, built=True) as url:
        conn = await asyncpg.connect(url)
        try:
            ctx = ws.Issuing.from_settings(Settings())
            v = await ws.create(
                conn,
                ctx,
                Actor("wang", Role.forecaster),
                hazard="sandstorm",
                level="yellow",
                onset=NOW,
                expires=NOW + timedelta(hours=12),
                content=ws.Content(areas=("150303",)),
                now=NOW,
            )
            await ws.act(conn, ctx, Actor("wang", Role.forecaster), v.warning_id, Action.submit, now=NOW)
            good = verify_cli(url)
            assert good.returncode == 0, good.stderr
            report = json.loads(good.stdout)
            assert report["ok"] is True and report["entries"] == 2
            # a database owner can switch the trigger off; the chain still tells
            await conn.execute("ALTER TABLE svc.audit_log DISABLE TRIGGER audit_log_no_update")
            await conn.execute("UPDATE svc.audit_log SET actor = 'li' WHERE seq = 1")
            bad = verify_cli(url, "--head", report["head"])
            assert bad.returncode == 1
            broken = json.loads(bad.stdout)
            assert broken["ok"] is False and broken["broken_seq"] == 1 and "hash" in broken["reason"]
        finally:
            await conn.close()


async def test_audit_verify_notices_a_truncated_log(pg_server_url: str) -> None:
    async with fresh_database(pg_server_url, built=True) as url:
        conn = await asyncpg.connect(url)
        try:
            ctx = ws.Issuing.from_settings(Settings())
            for _ in range(2):
                await ws.create(
                    conn,
                    ctx,
                    Actor("wang", Role.forecaster),
                    hazard="heat",
                    level="yellow",
                    onset=NOW,
                    expires=NOW + timedelta(hours=12),
                    content=ws.Content(areas=("150302",)),
                    now=NOW,
                )
            head = json.loads(verify_cli(url).stdout)["head"]
            await conn.execute("ALTER TABLE svc.audit_log DISABLE TRIGGER audit_log_no_update")
            await conn.execute("DELETE FROM svc.audit_log WHERE seq = 2")
            cut = verify_cli(url, "--head", head)
            assert cut.returncode == 1 and "truncated" in json.loads(cut.stdout)["reason"]
        finally:
            await conn.close()
