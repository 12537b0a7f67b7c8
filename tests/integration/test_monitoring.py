"""Monitoring against the running service: /metrics with the dispatchers' metrics through promtool, the
timeliness histograms observed along a real warning (proposal, approval, first SMS), first attempts observed
once across dispatch processes, overdue acknowledgements, and the deploy/ expressions against what the
service exposes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from risk_zoning.region import load_region
from tests.factories_acks import add_department, quick_ctx, request_of
from tests.factories_app import service
from tests.factories_db import fresh_database
from tests.factories_dispatch import add_recipients, dispatch_settings, issue, states, wait_until
from tests.monitoring_names import (
    COVERAGE_METRICS,
    PROMETHEUS_SERIES,
    dashboard_expressions,
    exposed_names,
    metric_names,
    rule_expressions,
)
from tests.peers.mosquitto_fixture import MosquittoBroker
from warnings_svc.demo.scenarios import write_scenario
from warnings_svc.dissemination.dispatcher import Dispatcher, pool_size, sms_endpoint
from warnings_svc.dissemination.first_attempts import FirstAttempts
from warnings_svc.dissemination.metrics import DispatchMetrics
from warnings_svc.dissemination.partners import acknowledgements as acks
from warnings_svc.forecast.runs import Inbox, RunScorer
from warnings_svc.settings import DispatchSettings, MqttTargetSettings, ScoringSettings
from warnings_svc.timeliness import timeliness_on
from warnings_svc.web.accounts import create_user
from warnings_svc.web.appkeys import METRICS

PROMTOOL = Path("/usr/bin/promtool")


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    """A fresh database with the Wuhai risk database built (the suite's `conn` connects to it)."""
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


def promtool_check_metrics(exposition: bytes) -> subprocess.CompletedProcess[str]:
    if not PROMTOOL.exists():
        pytest.fail("promtool is not installed: run scripts/install-debian-peers", pytrace=False)
    return subprocess.run(
        [str(PROMTOOL), "check", "metrics"],
        input=exposition.decode("utf-8"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def seed_proposal(conn: asyncpg.Connection, *, minutes_ago: float) -> int:
    """An open orange sandstorm proposal for Wuda, written `minutes_ago`, of a stored run."""
    written = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    onset = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(hours=3)
    run_id = await conn.fetchval(
        """INSERT INTO svc.forecast_run (content_sha256, files, reference_time, summary)
           VALUES ($1, '[]', $2, '{}') RETURNING id""",
        uuid.uuid4().hex,
        written,
    )
    areas = ["150304000000"]
    document = {
        "hazard": "sandstorm", "level": "orange", "action": "new", "replaces": None, "areas": areas,
        "onset": onset.isoformat(), "expires": (onset + timedelta(hours=12)).isoformat(), "probability": 0.8,
        "exposed_population": 1000, "polygons": [],
        "impacts": [{"code": a, "exposed_population": 1000, "vulnerable": {}} for a in areas],
    }  # fmt: skip
    return await conn.fetchval(
        """INSERT INTO svc.proposal (run_id, hazard, level, action, areas, onset, expires, probability,
                                     exposed_population, document, created_at)
           VALUES ($1, 'sandstorm', 'orange', 'new', $2, $3, $4, 0.8, 1000, $5, $6) RETURNING id""",
        run_id,
        areas,
        onset,
        onset + timedelta(hours=12),
        json.dumps(document),
        written,
    )


async def test_metrics_of_the_service_and_its_dispatchers_pass_promtool_and_carry_the_timeliness(
    conn: asyncpg.Connection, db_url: str, smsc, mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    await add_recipients(conn, 20, areas=("150304000000",))
    sms = dispatch_settings(smsc)
    # the area dispatcher (MQTT terminals) and the partner dispatcher run inside the service; the SMS
    # dispatcher on the service's registry, as `serve` runs it with `[dispatch] embedded = true`
    dispatch = DispatchSettings.model_validate(
        sms.model_dump()
        | {"mqtt": [MqttTargetSettings(name="terminals", url=mosquitto.url, topic_prefix="wuhai/t")]}
    )
    proposal_id = await seed_proposal(conn, minutes_ago=12)
    _, forecaster = await create_user(conn, "wang", "forecaster")
    _, approver = await create_user(conn, "li", "approver")
    async with service(db_url, tmp_path, dispatch=dispatch) as client:
        registry = client.app[METRICS].registry
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=pool_size(sms))
        dispatcher = Dispatcher(
            pool, db_url, sms, [sms_endpoint(e, sms) for e in sms.sms], region="wuhai",
            metrics=DispatchMetrics(registry),
        )  # fmt: skip
        stop = asyncio.Event()
        running = asyncio.create_task(dispatcher.run(stop))
        try:

            async def post(path: str, token: str, body: dict | None = None) -> dict:
                response = await client.post(
                    path, json=body or {}, headers={"Authorization": f"Bearer {token}"}
                )
                assert response.status in (200, 201), await response.text()
                return await response.json()

            draft = await post(f"/api/v1/proposals/{proposal_id}/draft", forecaster)
            await post(f"/api/v1/warnings/{draft['id']}/submit", forecaster)
            issued = await post(f"/api/v1/warnings/{draft['id']}/approve", approver, {"comment": "同意"})
            assert issued["status"] == "issued"

            async def all_sent() -> bool:
                first = "warnings_approval_to_first_delivery_seconds_count"
                return (await states(conn, draft["id"])).get("delivered", 0) == 20 and all(
                    registry.get_sample_value(first, {"hazard": "sandstorm", "level": "orange", "channel": c})
                    for c in ("sms", "mqtt")
                )

            await wait_until(all_sent, 30, "every SMS delivered, its first attempts observed")
            response = await client.get("/metrics")
            exposition = await response.read()
        finally:
            stop.set()
            await running
            await pool.close()
    text = exposition.decode("utf-8")
    labels = {"hazard": "sandstorm", "level": "orange"}
    assert registry.get_sample_value("warnings_proposal_to_approval_seconds_count", labels) == 1
    waited = registry.get_sample_value("warnings_proposal_to_approval_seconds_sum", labels)
    assert 12 * 60 <= waited < 20 * 60
    lead = registry.get_sample_value("warnings_lead_time_seconds_sum", labels)
    assert 2 * 3600 <= lead <= 3 * 3600
    first = registry.get_sample_value(
        "warnings_approval_to_first_delivery_seconds_count", labels | {"channel": "sms"}
    )
    assert first == 1  # once per version and channel, though it went out in several batches
    assert (
        0
        <= registry.get_sample_value(
            "warnings_approval_to_first_delivery_seconds_sum", labels | {"channel": "sms"}
        )
        < 30
    )
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM svc.first_send_attempt WHERE warning_id = $1 AND channel = 'sms'",
            draft["id"],
        )
        == 1
    )
    # the dispatchers' metrics are on the same /metrics, and the whole passes promtool's lint
    for family in ("warnings_deliveries", "warnings_area_target_up", "warnings_partner_channel_up",
                   "warnings_acknowledgements_overdue", "warnings_grid_to_proposal_seconds"):  # fmt: skip
        assert f"# TYPE {family} " in text, family
    done = promtool_check_metrics(exposition)
    assert done.returncode == 0, done.stdout + done.stderr
    # every metric the dashboard and the alert rules ask for is one the service exposes (or Prometheus's own
    # `up`), the coverage watch's among them
    assert exposed_names(text) >= COVERAGE_METRICS
    known = exposed_names(text) | PROMETHEUS_SERIES
    for where, expr in [*dashboard_expressions(), *rule_expressions()]:
        missing = metric_names(expr) - known
        assert not missing, f"{where}: {sorted(missing)} not exposed"


async def test_promtool_refuses_an_exposition_with_a_lint_problem() -> None:
    # the check above can fail: a counter without its _total suffix, as a hand-written exposition might have
    bad = b"# HELP warnings_things Things.\n# TYPE warnings_things counter\nwarnings_things 1\n"
    done = promtool_check_metrics(bad)
    assert done.returncode != 0 and "warnings_things" in done.stdout + done.stderr


async def test_a_first_attempt_is_observed_once_whichever_dispatch_process_makes_it(
    conn: asyncpg.Connection,
) -> None:
    # two `warnings-svc dispatch` processes: each its own registry, one database
    v = await issue(conn, level="red", hazard="rainstorm")
    registries = [CollectorRegistry(), CollectorRegistry()]
    workers = [FirstAttempts(timeliness_on(DispatchMetrics(r).registry)) for r in registries]
    at = datetime.now(UTC)
    key = (v.warning_id, v.state.version)
    taken = [await w.record(conn, "sms", {key: at}) for w in workers]
    taken.append(
        await workers[0].record(conn, "sms", {key: at + timedelta(seconds=1)})
    )  # remembered: no query
    taken.append(await workers[1].record(conn, "cell_broadcast", {key: at + timedelta(seconds=2)}))
    assert taken == [1, 0, 0, 1]
    labels = {"hazard": "rainstorm", "level": "red"}
    counts = [
        r.get_sample_value("warnings_approval_to_first_delivery_seconds_count", labels | {"channel": "sms"})
        or 0
        for r in registries
    ]
    assert counts == [1, 0]
    broadcast = registries[1].get_sample_value(
        "warnings_approval_to_first_delivery_seconds_sum", labels | {"channel": "cell_broadcast"}
    )
    assert broadcast == pytest.approx(
        (at + timedelta(seconds=2) - v.state.approved_at).total_seconds(), abs=1e-3
    )
    # a dispatch process's own /metrics passes promtool as well
    done = promtool_check_metrics(generate_latest(registries[1]))
    assert done.returncode == 0, done.stdout + done.stderr


async def test_acknowledgements_count_as_overdue_once_their_first_deadline_passed(
    conn: asyncpg.Connection,
) -> None:
    ctx = quick_ctx(minutes=1)
    department = await add_department(conn)
    now = datetime.now(UTC)
    soon, later = now + timedelta(seconds=30), now + timedelta(minutes=2)
    before_soon, before = await acks.overdue_count(conn, soon), await acks.overdue_count(conn, later)
    v = await issue(conn, level="orange", ctx=ctx)
    request = await request_of(conn, v.warning_id, department["id"])
    assert await acks.overdue_count(conn, soon) == before_soon  # waiting within its deadline
    assert await acks.overdue_count(conn, later) == before + 1  # its deadline (1 min) passed
    # escalated once (called again, a new deadline): still overdue; acknowledged: no longer
    async with conn.transaction():
        await acks.escalate_due(conn, later, ctx.acknowledgements, issuer="x")
    assert (await request_of(conn, v.warning_id, department["id"]))["step"] == 1
    assert await acks.overdue_count(conn, later) == before + 1
    async with conn.transaction():
        await acks.acknowledge(conn, request["id"], by="duty", via="console", now=later)
    assert await acks.overdue_count(conn, later) == before


async def test_a_scored_run_observes_arrival_to_proposal_for_each_proposal(
    conn: asyncpg.Connection, db_url: str, tmp_path: Path
) -> None:
    files = write_scenario("heat", tmp_path / "heat", load_region("wuhai"))
    registry = CollectorRegistry()
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    scorer = RunScorer(pool, db_url, ScoringSettings(workers=1), timeliness=timeliness_on(registry))
    arrived_at = datetime.now(UTC) - timedelta(seconds=90)
    try:
        outcome = await scorer.ingest(files, "wuhai", arrived_at=arrived_at)
        again = await scorer.ingest(files, "wuhai", arrived_at=arrived_at)  # the same run delivered twice
    finally:
        scorer.close()
        await pool.close()
    assert outcome.new and not again.new
    levels = Counter(p["level"] for p in outcome.result["proposals"])
    assert levels  # the heat scenario proposes warnings
    for level, n in levels.items():
        labels = {"hazard": "heat", "level": level}
        assert registry.get_sample_value("warnings_grid_to_proposal_seconds_count", labels) == n  # once
        assert registry.get_sample_value("warnings_grid_to_proposal_seconds_sum", labels) >= 90 * n


def test_an_inbox_entry_arrived_when_its_last_file_was_written(tmp_path: Path) -> None:
    inbox = Inbox(tmp_path)
    entry = inbox.inbox / "run-1"
    entry.mkdir()
    for name, mtime in (("a.nc", 1_780_000_000), ("b.nc", 1_780_000_600)):
        (entry / name).write_bytes(b"x")
        os.utime(entry / name, (mtime, mtime))
    assert inbox.arrived_at(entry) == datetime.fromtimestamp(1_780_000_600, UTC)
