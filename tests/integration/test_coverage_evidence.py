"""What counts as reach, and what the watch does when several checkpoints come due at once: each case here was
a defect found in review (a step sent although the target was met, a round of escalation that lowered the
figure, a terminal counted once per version, a Cancel counted as reach, a warning ended between two rounds
that never got its final figure)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import CollectorRegistry

from channels.area import Evidence, EvidenceKind
from risk_zoning.io.database import create_pool
from risk_zoning.store import region_units
from tests.factories_acks import add_relayer
from tests.factories_db import fresh_database
from tests.factories_dispatch import successor
from tests.integration.test_coverage_watch import CTX, DISPATCH, HAIBOWAN, Clock, _evidence, _warning
from warnings_svc.coverage import escalation
from warnings_svc.coverage.evidence import measure, region_of
from warnings_svc.coverage.metrics import CoverageMetrics
from warnings_svc.coverage.watch import CoverageWatch
from warnings_svc.dissemination import area_outbox, expansion
from warnings_svc.settings import CoverageSettings


@pytest.fixture
async def pool(pg_server_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A database of its own for each test, migrated and with the risk database built."""
    async with fresh_database(pg_server_url, built=True) as url:
        p = await create_pool(url, max_size=4)
        yield p
        await p.close()


AUTOMATIC = CoverageSettings.model_validate({"escalation": {"mode": "automatic"}})


def watch_at(pool: asyncpg.Pool, at: datetime, coverage: CoverageSettings = AUTOMATIC) -> CoverageWatch:
    return CoverageWatch(
        pool, CTX, coverage, DISPATCH, metrics=CoverageMetrics(CollectorRegistry()), clock=Clock(at)
    )


async def test_checkpoints_passed_together_with_the_target_met_send_nothing(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        warning_id, issued, people = await _warning(conn)
        await _evidence(
            conn, warning_id, "area_sms", "china-mobile", "handsets", round(people * 0.72), issued
        )
        await _evidence(conn, warning_id, "cell_broadcast", "cbc", "broadcast", round(people * 0.95),
                        issued + timedelta(minutes=33))  # fmt: skip
    # the watch's first round comes at 35 minutes (it was down): red's checkpoints 10, 15, 20 and 30 were
    # all missed, but the target is met now, so they are alerted and kept, and no rung is spent
    done = await watch_at(pool, issued + timedelta(minutes=35)).run_once()
    assert [(c[1], c[2]) for c in done.checkpoints] == [(10, False), (15, False), (20, False), (30, False)]
    assert done.steps == []
    async with pool.acquire() as conn:
        assert await escalation.escalations_of(conn, warning_id) == []
        assert await conn.fetchval("SELECT count(*) FROM svc.area_delivery WHERE again > 0") == 0


async def test_checkpoints_passed_together_below_the_target_raise_one_rung(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        warning_id, issued, people = await _warning(conn)
        await _evidence(conn, warning_id, "area_sms", "china-mobile", "handsets", round(people * 0.6), issued)
    done = await watch_at(pool, issued + timedelta(minutes=35)).run_once()
    assert len(done.checkpoints) == 4
    assert done.steps == [("area_sms_again", "proposed"), ("area_sms_again", "applied")]  # one, not four
    async with pool.acquire() as conn:
        steps = await escalation.escalations_of(conn, warning_id)
        assert [(s["checkpoint_min"], s["step"]) for s in steps] == [(30, 1)]  # raised by the latest


async def test_a_round_of_escalation_reported_from_zero_does_not_lower_the_figure(pool: asyncpg.Pool) -> None:
    coverage = CoverageSettings()
    async with pool.acquire() as conn:
        warning_id, _, people = await _warning(conn)
        region = region_of(await region_units(conn, "wuhai"))
        # the task and an "area SMS again" round, queued as escalation queues it
        await conn.execute(
            """INSERT INTO svc.area_delivery (warning_id, version, channel, target, msg_type, priority, content,
                      again, state)
               SELECT warning_id, version, channel, target, msg_type, priority, content, 1, 'done'
               FROM svc.area_delivery WHERE warning_id = $1 AND channel = 'area_sms'""",
            warning_id,
        )
        handsets = round(people * 1.2)

        def report(key: str, share: float) -> Evidence:
            return Evidence(key=key, remote_id="", kind=EvidenceKind.HANDSETS, area=HAIBOWAN, measured=True,
                            targeted=handsets, sent=handsets, delivered=round(handsets * share),
                            at=datetime.now(UTC))  # fmt: skip

        key = area_outbox.area_delivery_key(warning_id, 1, "area_sms", "china-mobile", "Alert")
        assert await area_outbox.store_evidence(conn, "area_sms", "china-mobile", [report(key, 0.6)]) == 1
        before = (await measure(conn, warning_id, region, coverage, DISPATCH)).now.public  # type: ignore[union-attr]
        again = area_outbox.area_delivery_key(warning_id, 1, "area_sms", "china-mobile", "Alert", again=1)
        assert await area_outbox.store_evidence(conn, "area_sms", "china-mobile", [report(again, 0.05)]) == 1
        expiry = area_outbox.area_delivery_key(warning_id, 1, "area_sms", "china-mobile", "Expire")
        assert await area_outbox.store_evidence(conn, "area_sms", "china-mobile", [report(expiry, 0.0)]) == 0
        after = (await measure(conn, warning_id, region, coverage, DISPATCH)).now.public  # type: ignore[union-attr]
        assert after == before > 0.5
        rounds = await conn.fetch(
            "SELECT round, delivered FROM svc.reach_evidence WHERE warning_id = $1 ORDER BY round", warning_id
        )
        assert [r["round"] for r in rounds] == [0, 1]


async def test_a_terminal_that_played_two_versions_counts_once(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        warning_id, issued, people = await _warning(conn)
        await successor(conn, warning_id, {"note": "still hot"}, ctx=CTX)
        await conn.execute(
            """INSERT INTO svc.terminal (terminal_id, kind, area, population_served, target)
               VALUES ('ls-1', 'loudspeaker', $1, $2, 'terminals')""",
            HAIBOWAN,
            round(people * 0.4),
        )
        for version in (1, 2):
            await conn.execute(
                "INSERT INTO svc.terminal_ack (terminal_id, warning_id, version, played_at) VALUES ('ls-1', $1, $2, $3)",
                warning_id,
                version,
                issued + timedelta(seconds=version),
            )
        region = region_of(await region_units(conn, "wuhai"))
        m = await measure(conn, warning_id, region, CoverageSettings(), DISPATCH,
                          now=datetime.now(UTC) + timedelta(minutes=1))  # fmt: skip
        assert m is not None and abs(m.now.public - 0.4) < 0.001


async def test_a_cancel_texted_to_someone_is_no_reach_and_a_warning_ended_unseen_gets_its_final_figure(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        warning_id, _, _ = await _warning(conn)
        await conn.execute(
            """INSERT INTO svc.recipient (name, phone, areas, roles, consent, consent_basis, consent_at)
               VALUES ('张三', '+8613912345678', $1, '{public_subscriber}', true, 'explicit', now())""",
            [HAIBOWAN],
        )
        cancel = await successor(conn, warning_id, None, ctx=CTX)
        # the Cancel's SMS reached the person's handset: that tells them the warning is over, it warns nobody
        fanout = await conn.fetchval(
            "SELECT id FROM svc.fanout WHERE warning_id = $1 AND version = $2",
            warning_id,
            cancel.state.version,
        ) or await conn.fetchval(
            """INSERT INTO svc.fanout (warning_id, version, channel, priority, state)
               VALUES ($1, $2, 'sms', 0, 'done') RETURNING id""",
            warning_id,
            cancel.state.version,
        )
        await conn.execute(
            """INSERT INTO svc.delivery (fanout_id, warning_id, version, channel, recipient_id, address, language,
                      areas, priority, state, queued, final_at)
               SELECT $1, $2, $3, 'sms', id, phone, 'zh-CN', areas, 0, 'delivered', false, now()
               FROM svc.recipient""",
            fanout,
            warning_id,
            cancel.state.version,
        )
        region = region_of(await region_units(conn, "wuhai"))
        m = await measure(conn, warning_id, region, CoverageSettings(), DISPATCH)
        assert m is not None and m.now.public == 0
    # the watch never saw the warning live (issued and cancelled between two rounds): it still keeps a final
    done = await watch_at(pool, datetime.now(UTC) + timedelta(minutes=1)).run_once()
    assert done.finished == [warning_id]
    async with pool.acquire() as conn:
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM svc.coverage_snapshot WHERE warning_id = $1 AND kind = 'final'",
                warning_id,
            )
            == 1
        )


async def test_more_relayers_during_the_fan_out_texts_those_it_will_pass_over_and_leaves_it_the_others(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        behind = await add_relayer(conn)  # the fan-out's cursor is past them: written here
        ahead = await add_relayer(conn)  # the fan-out reaches them: left to it
        other = await add_relayer(conn)  # chose rainstorms only: the heat fan-out passes them over
        await conn.execute("UPDATE svc.recipient SET hazards = '{rainstorm}' WHERE id = $1", other["id"])
        warning_id, _, _ = await _warning(conn)
        fanout = await conn.fetchrow(
            "SELECT id, state FROM svc.fanout WHERE warning_id = $1 AND channel = 'sms'", warning_id
        )
        assert fanout["state"] == "pending"  # nothing expanded it yet
        await conn.execute(
            "UPDATE svc.fanout SET after_recipient = $2 WHERE id = $1", fanout["id"], behind["id"]
        )
        units = await region_units(conn, "wuhai")
        async with conn.transaction():
            written = await expansion.write_relayer_deliveries(conn, warning_id, 1, "sms", units)
        texted = {
            r[0]
            for r in await conn.fetch(
                "SELECT recipient_id FROM svc.delivery WHERE warning_id = $1", warning_id
            )
        }
    assert written == 2 and texted == {behind["id"], other["id"]}
    assert ahead["id"] not in texted
