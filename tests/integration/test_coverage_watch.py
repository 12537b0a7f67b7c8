"""The coverage watch holds each live warning to the target: a checkpoint below it raises the alert and the
ladder's next step, which the duty officer applies over HTTP (its messages really queued) or the watch applies
at once; the steps still proposed stop once the target is met, and the warning's final figure is kept."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from risk_zoning.io.database import create_pool
from risk_zoning.store import region_units
from tests.factories_acks import add_relayer, audit_actions
from tests.factories_app import service, user_tokens
from tests.factories_db import fresh_database
from tests.factories_dispatch import expand_all, issue
from warnings_svc.coverage import escalation, snapshots
from warnings_svc.coverage.evidence import warning_facts
from warnings_svc.coverage.metrics import CoverageMetrics
from warnings_svc.coverage.watch import CoverageWatch
from warnings_svc.dissemination import area_outbox
from warnings_svc.lifecycle import store as ws
from warnings_svc.settings import (
    AreaSmsTargetSettings,
    CellBroadcastTargetSettings,
    CoverageSettings,
    DispatchSettings,
    MqttTargetSettings,
    Settings,
)

# two checkpoints for a red warning, so a test walks the ladder over a few of the clock's moves
CHECKPOINTS = {"red": (10, 30), "orange": (30,), "yellow": (60,), "blue": (60,)}

HAIBOWAN = "150302000000"
DISPATCH = DispatchSettings(
    embedded=False,  # nothing is sent: the tests look at what is queued
    mqtt=(MqttTargetSettings(name="terminals", url="mqtt://127.0.0.1:1"),),
    area_sms=(AreaSmsTargetSettings(name="china-mobile", routes=("http://127.0.0.1:1",)),),
    # red is left out: escalation's cell broadcast step has something to add
    cell_broadcast=(
        CellBroadcastTargetSettings(name="cbc", routes=("http://127.0.0.1:1",), levels=("orange",)),
    ),
)
CTX = ws.Issuing.from_settings(Settings(dispatch=DISPATCH))


@pytest.fixture
async def url(pg_server_url: str) -> AsyncIterator[str]:
    """A database of its own for each test (migrated, the risk database built): no other test's warnings live."""
    async with fresh_database(pg_server_url, built=True) as found:
        yield found


@pytest.fixture
async def pool(url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(url, max_size=4)
    yield p
    await p.close()


class Clock:
    """The watch's clock, moved by the test."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


async def _warning(conn: asyncpg.Connection, ctx: ws.Issuing = CTX) -> tuple[int, datetime, int]:
    """A red heat warning for Haibowan, issued now: (its id, when issued, Haibowan's population)."""
    v = await issue(conn, level="red", areas=(HAIBOWAN[:6],), ctx=ctx)
    facts = await warning_facts(conn, v.warning_id)
    assert facts is not None
    units = await region_units(conn, "wuhai")
    return v.warning_id, facts.issued_at, units[HAIBOWAN].population


async def _evidence(
    conn: asyncpg.Connection, warning_id: int, channel: str, target: str, kind: str, people: int, at: datetime
) -> None:
    """A peer's report of reach in Haibowan (as the area dispatcher stores it), measured for handsets."""
    await conn.execute(
        """INSERT INTO svc.reach_evidence (warning_id, version, channel, target, area, kind, measured, targeted,
                  sent, delivered, people, final, reported_at)
           VALUES ($1, 1, $2, $3, $4, $5, $6, $7, $7, $7, $8, false, $9)""",
        warning_id,
        channel,
        target,
        HAIBOWAN,
        kind,
        kind == "handsets",
        people,
        None if kind == "handsets" else people,
        at,
    )


def _watch(
    pool: asyncpg.Pool, clock: Clock, coverage: CoverageSettings, metrics: CoverageMetrics
) -> CoverageWatch:
    return CoverageWatch(pool, CTX, coverage, DISPATCH, metrics=metrics, clock=clock)


def _sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


async def _area_rows(conn: asyncpg.Connection, warning_id: int) -> list[tuple[str, str, int, str]]:
    rows = await conn.fetch(
        """SELECT channel, target, again, state FROM svc.area_delivery WHERE warning_id = $1 AND msg_type = 'Alert'
           ORDER BY id""",
        warning_id,
    )
    return [(r[0], r[1], r[2], r[3]) for r in rows]


async def test_a_missed_checkpoint_is_alerted_proposed_applied_over_http_and_stopped_once_the_target_is_met(
    pool: asyncpg.Pool, url: str, tmp_path: Path
) -> None:
    registry = CollectorRegistry()
    metrics = CoverageMetrics(registry)
    coverage = CoverageSettings(snapshot_interval_s=1, checkpoints_min=CHECKPOINTS)
    async with pool.acquire() as conn:
        warning_id, issued, population = await _warning(conn)
        assert await _area_rows(conn, warning_id) == [
            ("mqtt", "terminals", 0, "pending"), ("area_sms", "china-mobile", 0, "pending"),
        ]  # fmt: skip
        # half of Haibowan's handsets got the operator's area SMS two minutes after issue
        await _evidence(
            conn,
            warning_id,
            "area_sms",
            "china-mobile",
            "handsets",
            round(population * 0.6),
            issued + timedelta(minutes=2),
        )
    clock = Clock(issued + timedelta(minutes=5))
    watch = _watch(pool, clock, coverage, metrics)
    done = await watch.run_once()
    assert warning_id in done.live and done.checkpoints == [] and done.steps == []
    assert _sample(
        registry, "warnings_coverage_ratio", warning=str(warning_id), level="red"
    ) == pytest.approx(0.5, abs=0.01)

    clock.at = issued + timedelta(minutes=11)  # the red warning's first checkpoint (10 min) has passed
    done = await watch.run_once()
    assert done.checkpoints == [(warning_id, 10, False)]
    assert done.steps == [("area_sms_again", "proposed")]
    assert (await watch.run_once()).steps == []  # a second round raises nothing twice
    async with pool.acquire() as conn:
        steps = await escalation.escalations_of(conn, warning_id)
        assert [(s["checkpoint_min"], s["step"], s["action"], s["state"]) for s in steps] == [
            (10, 1, "area_sms_again", "proposed")
        ]
        assert steps[0]["coverage"] == pytest.approx(0.5, abs=0.01)
        assert (await snapshots.checkpoints(conn, warning_id))[0]["met"] is False
        actions = await audit_actions(conn, warning_id)
        assert actions[-2:] == ["coverage_below_target", "escalation_proposed"]
    assert _sample(registry, "warnings_coverage_below_target", level="red") == 1
    assert _sample(registry, "warnings_coverage_checkpoints_total", level="red", outcome="missed") == 1
    assert (
        _sample(registry, "warnings_escalation_steps_total", action="area_sms_again", state="proposed") == 1
    )

    # the duty officer sees it and applies it with one click
    tokens = await user_tokens(url, [(f"ops{warning_id}", "operations"), (f"fc{warning_id}", "forecaster")])
    ops = {"Authorization": f"Bearer {tokens[f'ops{warning_id}']}"}
    forecaster = {"Authorization": f"Bearer {tokens[f'fc{warning_id}']}"}
    async with service(url, tmp_path, dispatch=DISPATCH, coverage=coverage) as client:
        answer = await client.get(f"/api/v1/warnings/{warning_id}/coverage", headers=forecaster)
        assert answer.status == 200
        body = await answer.json()
        # measured now (real time, a few seconds after issue: the 10 minute figure is still to come)
        assert body["coverage"]["target"] == 0.95 and body["coverage"]["at_10_min_complete"] is False
        assert [c["minutes"] for c in body["checkpoints"]] == [10] and body["checkpoints"][0]["met"] is False
        assert [round(s["minutes"]) for s in body["series"] if s["minutes"] >= 1] == [5, 11, 11]
        assert body["escalations"][0]["state"] == "proposed"
        step_id = body["escalations"][0]["id"]
        path = f"/api/v1/warnings/{warning_id}/escalations/{step_id}"
        assert (await client.post(f"{path}/apply", headers=forecaster)).status == 403
        assert (
            await client.post(f"/api/v1/warnings/999999/escalations/{step_id}/apply", headers=ops)
        ).status == 404
        assert (await client.get("/api/v1/warnings/999999/coverage", headers=ops)).status == 404
        refused = await client.post(f"{path}/apply", json={"reason": "x" * 501}, headers=ops)
        assert refused.status == 422
        applied = await client.post(
            f"{path}/apply", json={"reason": "operators confirm the cells"}, headers=ops
        )
        assert applied.status == 200, await applied.text()
        step = await applied.json()
        assert step["state"] == "applied" and step["decided_by"] == f"ops{warning_id}"
        assert step["detail"]["queued"] == ["area_sms/china-mobile"]
        again = await client.post(f"{path}/decline", headers=ops)
        assert again.status == 409 and (await again.json())["code"] == "conflict"
        assert "warnings_escalation_steps_total" in await (await client.get("/metrics")).text()
    async with pool.acquire() as conn:
        # really queued: a second round of the area SMS, with a key of its own
        assert await _area_rows(conn, warning_id) == [
            ("mqtt", "terminals", 0, "pending"), ("area_sms", "china-mobile", 0, "pending"),
            ("area_sms", "china-mobile", 1, "pending"),
        ]  # fmt: skip
        assert (await audit_actions(conn, warning_id))[-1] == "escalation_applied"
        # once the first round is out, the dispatcher claims the second with the same content and a key of its own
        await conn.execute(
            """UPDATE svc.area_delivery SET state = 'done', done_at = now(), remote_id = 'task-1'
               WHERE warning_id = $1 AND channel = 'area_sms' AND again = 0""",
            warning_id,
        )
        claim, taken = await area_outbox.claim_area(conn, "area_sms", "china-mobile", "test-lease", 30)
        assert taken and claim is not None
        assert (
            claim.alert.key == f"{warning_id}-1/area_sms/china-mobile/again-1" and claim.msg_type == "Alert"
        )
        assert claim.alert.level == "red" and claim.alert.texts.sms

    clock.at = issued + timedelta(minutes=31)  # the second checkpoint, still below: the next rung
    done = await watch.run_once()
    assert done.checkpoints == [(warning_id, 30, False)] and done.steps == [("cell_broadcast", "proposed")]
    # the cell broadcast an operator ran meanwhile reaches nearly everyone: the target is met
    async with pool.acquire() as conn:
        await _evidence(
            conn,
            warning_id,
            "cell_broadcast",
            "cbc",
            "broadcast",
            round(population * 0.95),
            issued + timedelta(minutes=32),
        )
    clock.at = issued + timedelta(minutes=33)
    done = await watch.run_once()
    assert done.steps == [("cell_broadcast", "stopped")]
    async with pool.acquire() as conn:
        steps = await escalation.escalations_of(conn, warning_id)
        assert [(s["action"], s["state"]) for s in steps] == [
            ("area_sms_again", "applied"),
            ("cell_broadcast", "stopped"),
        ]
        assert "target is met" in steps[1]["reason"]
    assert _sample(registry, "warnings_coverage_below_target", level="red") == 0
    assert (
        _sample(registry, "warnings_approval_to_target_coverage_seconds_count", hazard="heat", level="red")
        == 1
    )
    clock.at = issued + timedelta(minutes=40)
    await watch.run_once()  # met again: observed once only
    assert (
        _sample(registry, "warnings_approval_to_target_coverage_seconds_count", hazard="heat", level="red")
        == 1
    )

    # the warning ends: its final figure is kept and its ratio leaves /metrics
    clock.at = issued + timedelta(days=3)
    done = await watch.run_once()
    assert warning_id in done.finished and warning_id not in done.live
    assert _sample(registry, "warnings_coverage_ratio", warning=str(warning_id), level="red") is None
    async with pool.acquire() as conn:
        final = await conn.fetchrow(
            "SELECT public, figures FROM svc.coverage_snapshot WHERE warning_id = $1 AND kind = 'final'",
            warning_id,
        )
        assert final["public"] >= 0.95 and json.loads(final["figures"])["met"] is True
    assert warning_id not in (await watch.run_once()).finished  # once


async def test_in_automatic_mode_each_step_is_applied_at_once_or_skipped_with_the_reason(
    pool: asyncpg.Pool,
) -> None:
    registry = CollectorRegistry()
    coverage = CoverageSettings.model_validate(
        {
            "checkpoints_min": CHECKPOINTS,
            "escalation": {"mode": "automatic", "ladders": {"red": ["more_relayers", "loudspeakers_again"]}},
        }
    )
    async with pool.acquire() as conn:
        # a relayer who chose rainstorms only: the heat warning's fan-out leaves them out
        relayer = await add_relayer(conn, area=HAIBOWAN)
        await conn.execute("UPDATE svc.recipient SET hazards = '{rainstorm}' WHERE id = $1", relayer["id"])
        warning_id, issued, _ = await _warning(conn)
        await expand_all(conn)
        sent_to = "SELECT count(*) FROM svc.delivery WHERE warning_id = $1 AND recipient_id = $2"
        assert await conn.fetchval(sent_to, warning_id, relayer["id"]) == 0
    clock = Clock(issued + timedelta(minutes=10, seconds=1))
    watch = _watch(pool, clock, coverage, CoverageMetrics(registry))
    done = await watch.run_once()
    assert done.steps == [("more_relayers", "proposed"), ("more_relayers", "applied")]
    async with pool.acquire() as conn:
        assert await conn.fetchval(sent_to, warning_id, relayer["id"]) == 1
        step = (await escalation.escalations_of(conn, warning_id))[0]
        assert step["state"] == "applied" and step["decided_by"] == escalation.WATCH_ACTOR
        assert step["detail"]["relayers"] >= 1
    clock.at = issued + timedelta(minutes=31)
    done = await watch.run_once()
    assert done.steps == [("loudspeakers_again", "proposed"), ("loudspeakers_again", "applied")]
    async with pool.acquire() as conn:
        assert ("mqtt", "terminals", 1, "pending") in await _area_rows(conn, warning_id)
        actions = await audit_actions(conn, warning_id)
        assert actions.count("escalation_applied") == 2 and actions.count("coverage_below_target") == 2

    # nothing to apply: no SMS target for people, no area channel at all -> skipped, with the reason
    bare = dataclasses.replace(CTX, area_targets=(), channels=())
    async with pool.acquire() as conn:
        warning_id, issued, _ = await _warning(conn, bare)
    bare_clock = Clock(issued + timedelta(minutes=11))
    watch = CoverageWatch(pool, bare, coverage, DISPATCH, clock=bare_clock)
    steps = (await watch.run_once()).steps
    bare_clock.at = issued + timedelta(minutes=31)
    steps += (await watch.run_once()).steps
    assert steps == [
        ("more_relayers", "proposed"), ("more_relayers", "skipped"),
        ("loudspeakers_again", "proposed"), ("loudspeakers_again", "skipped"),
    ]  # fmt: skip
    async with pool.acquire() as conn:
        reasons = [s["reason"] for s in await escalation.escalations_of(conn, warning_id)]
    assert "no SMS fan-out" in reasons[0] and "no mqtt or broadcast_platform target" in reasons[1]


async def test_a_step_proposed_when_the_warning_ends_is_stopped_and_a_decline_is_kept(
    pool: asyncpg.Pool,
) -> None:
    coverage = CoverageSettings(checkpoints_min=CHECKPOINTS)
    async with pool.acquire() as conn:
        warning_id, issued, _ = await _warning(conn)
    clock = Clock(issued + timedelta(minutes=11))
    watch = _watch(pool, clock, coverage, CoverageMetrics(CollectorRegistry()))
    assert (await watch.run_once()).steps == [("area_sms_again", "proposed")]
    clock.at = issued + timedelta(minutes=31)
    assert (await watch.run_once()).steps == [("cell_broadcast", "proposed")]
    async with pool.acquire() as conn:
        first, second = await escalation.escalations_of(conn, warning_id)
        declined = await escalation.decide(
            conn, CTX, warning_id, first["id"], escalation.EscalationEvent.decline, actor="duty", reason="no",
            units={}, now=clock.at,
        )  # fmt: skip
        assert declined["state"] == "declined" and declined["reason"] == "no"
        with pytest.raises(escalation.EscalationError) as refused:
            await escalation.decide(
                conn, CTX, warning_id, first["id"], escalation.EscalationEvent.apply, actor="duty", reason="",
                units={}, now=clock.at,
            )  # fmt: skip
        assert refused.value.code == "conflict"
    clock.at = issued + timedelta(days=3)
    await watch.run_once()
    async with pool.acquire() as conn:
        states = [(s["state"], s["reason"]) for s in await escalation.escalations_of(conn, warning_id)]
    assert states == [("declined", "no"), ("stopped", "the warning is no longer in force")]
    _ = second
