"""The area dispatcher against the loopback simulators of an operator's area SMS gateway and of a cell
broadcast centre (real HTTP on 127.0.0.1): an Update and a Cancel carried to what is out, a route down, every
route failing until the delivery is dead with the reason, a gateway that reports late or never."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from channels.area_sms.client import OperatorAreaSmsChannel
from channels.cbs.ecbe import CbcChannel
from risk_zoning.store import region_units
from tests.factories_db import fresh_database
from tests.factories_dispatch import CTX, DISTRICTS, issue, successor, wait_until
from warnings_svc.demo.peers.cbc import CbcSimulator
from warnings_svc.demo.peers.operator_gateway import Fault, OperatorGatewaySimulator
from warnings_svc.dissemination.area_dispatch import AreaDispatcher, AreaDispatchOptions
from warnings_svc.dissemination.area_outbox import AreaTarget
from warnings_svc.lifecycle import store as ws

LEVELS = frozenset({"blue", "yellow", "orange", "red"})
CTX_AREA = dataclasses.replace(
    CTX,
    area_targets=(
        AreaTarget("area_sms", "china-mobile", LEVELS),
        AreaTarget("cell_broadcast", "cbc", LEVELS),
    ),
)
OPTIONS = AreaDispatchOptions(lease_s=5, max_attempts=3, retry_base_s=0.05, retry_cap_s=0.2, poll_s=0.1)
TOKEN = "simulator-token"


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


@asynccontextmanager
async def _dispatching(
    db_url: str, operator_routes: list[str], cbc_routes: list[str], options: AreaDispatchOptions = OPTIONS
) -> AsyncIterator[None]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
    targets = {
        ("area_sms", "china-mobile"): OperatorAreaSmsChannel(
            "china-mobile",
            operator_routes,
            TOKEN,
            request_timeout_s=1.0,
            connect_timeout_s=0.5,
            poll_interval_s=0.1,
        ),
        ("cell_broadcast", "cbc"): CbcChannel(
            "cbc", cbc_routes, connect_timeout_s=0.5, request_timeout_s=1.0
        ),
    }
    # seeded: a test that waits between attempts knows the first wait (full jitter: 0 to the cap)
    dispatcher = AreaDispatcher(pool, db_url, targets, options, rng=random.Random(0))
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await pool.close()


async def _deliveries(conn: asyncpg.Connection, warning_id: int, channel: str) -> list[asyncpg.Record]:
    return await conn.fetch(
        """SELECT version, msg_type, state, attempts, remote_id, route, reason FROM svc.area_delivery
           WHERE warning_id = $1 AND channel = $2 ORDER BY id""",
        warning_id,
        channel,
    )


async def _settled(conn: asyncpg.Connection, warning_id: int) -> bool:
    return not await conn.fetchval(
        "SELECT count(*) FROM svc.area_delivery WHERE warning_id = $1 AND state IN ('pending', 'sending')",
        warning_id,
    )


async def _final_evidence(conn: asyncpg.Connection, warning_id: int, version: int, areas: int) -> bool:
    n = await conn.fetchval(
        """SELECT count(*) FROM svc.reach_evidence
           WHERE warning_id = $1 AND version = $2 AND channel = 'area_sms' AND final""",
        warning_id,
        version,
    )
    return n >= areas


async def test_an_update_and_a_cancel_reach_what_is_out_at_the_operator_and_the_cbc(conn, db_url) -> None:
    units = await region_units(conn, "wuhai")
    populations = {code: u.population for code, u in units.items()}
    async with OperatorGatewaySimulator("china_mobile", populations, token=TOKEN, rate_per_s=1e6) as gateway, \
            CbcSimulator() as cbc, _dispatching(db_url, gateway.urls, [cbc.url]):  # fmt: skip
        v1 = await issue(conn, level="orange", areas=(DISTRICTS[0],), ctx=CTX_AREA)
        await wait_until(lambda: _final_evidence(conn, v1.warning_id, 1, 1), 20, "the operator's last report")
        (task_id,) = gateway.tasks
        v2 = await successor(conn, v1.warning_id, {"level": "red"}, ctx=CTX_AREA)
        await wait_until(lambda: _final_evidence(conn, v1.warning_id, 2, 1), 20, "the Update's last report")
        await successor(conn, v1.warning_id, None, ctx=CTX_AREA)
        await wait_until(lambda: _settled(conn, v1.warning_id), 20, "the Cancel put out")
        # the operator: one task, the Update a new revision of it, then the Cancel (the task had already
        # reached every handset, so it stays done)
        assert list(gateway.tasks) == [task_id]
        task = gateway.tasks[task_id]
        assert [r.number for r in task.revisions] == [1, 2]
        deletes = [r for r in gateway.received if r.method == "DELETE"]
        assert [(r.path, r.status) for r in deletes] == [(f"/v1/area-tasks/{task_id}", 200)]
        assert "红色" in task.revisions[1].request.text
        sms = await _deliveries(conn, v1.warning_id, "area_sms")
        assert [(r["msg_type"], r["state"], r["remote_id"]) for r in sms] == [
            ("Alert", "done", task_id), ("Update", "done", task_id), ("Cancel", "done", task_id)
        ]  # fmt: skip
        # the CBC: the Update replaced the message with update number 1, the Cancel deleted it
        first, second = cbc.accepted
        serial = [m["smscb_message"]["serial_nr"]["serial_nr_decoded"] for m in (first, second)]
        assert [s["update_nr"] for s in serial] == [0, 1] and serial[0]["msg_code"] == serial[1]["msg_code"]
        assert second["smscb_message"]["message_id"] in cbc.deleted and not cbc.messages
        # evidence per version: measured handsets from the operator, an estimate for cell broadcast
        rows = await conn.fetch(
            """SELECT version, channel, measured, targeted, delivered, final FROM svc.reach_evidence
               WHERE warning_id = $1 ORDER BY version, channel""",
            v1.warning_id,
        )
        assert [(r["version"], r["channel"], r["measured"]) for r in rows] == [
            (1, "area_sms", True), (1, "cell_broadcast", False), (2, "area_sms", True), (2, "cell_broadcast", False)
        ]  # fmt: skip
        handsets = gateway.targeted_for(DISTRICTS[0])
        assert rows[0]["targeted"] == rows[2]["targeted"] == handsets and 0 < rows[0]["delivered"] < handsets
        assert v2.state.level == "red"


async def test_the_secondary_route_takes_over_when_the_primary_is_down(conn, db_url) -> None:
    units = await region_units(conn, "wuhai")
    populations = {code: u.population for code, u in units.items()}
    async with OperatorGatewaySimulator("china_mobile", populations, token=TOKEN, rate_per_s=1e6) as gateway, \
            CbcSimulator() as cbc:  # fmt: skip
        await gateway.script(Fault.DROP, route=0)  # the primary stops listening
        async with _dispatching(db_url, gateway.urls, [cbc.url]):
            v = await issue(conn, level="red", areas=(DISTRICTS[1],), ctx=CTX_AREA)
            await wait_until(
                lambda: _final_evidence(conn, v.warning_id, 1, 1), 20, "reported through the secondary"
            )
        (sms,) = await _deliveries(conn, v.warning_id, "area_sms")
        assert sms["state"] == "done" and sms["route"] == gateway.urls[1] and sms["attempts"] == 1


async def test_every_route_of_a_cbc_failing_is_retried_then_dead_with_the_reasons(conn, db_url) -> None:
    async with (
        CbcSimulator() as primary,
        CbcSimulator() as secondary,
        OperatorGatewaySimulator("china_mobile", {}, token=TOKEN) as gateway,
    ):
        primary.script("fail", status=503)
        secondary.script("fail", status=500)
        async with _dispatching(db_url, gateway.urls, [primary.url, secondary.url]):
            v = await issue(conn, level="orange", areas=(DISTRICTS[2],), ctx=CTX_AREA)
            await wait_until(
                lambda: _dead(conn, v.warning_id), 20, "the cell broadcast given up after its attempts"
            )
        (cb,) = await _deliveries(conn, v.warning_id, "cell_broadcast")
        assert cb["attempts"] == OPTIONS.max_attempts
        assert primary.url in cb["reason"] and secondary.url in cb["reason"]
        assert len([r for r in primary.received if r.method == "POST"]) == OPTIONS.max_attempts
        assert len([r for r in secondary.received if r.method == "POST"]) == OPTIONS.max_attempts
        # the operator refused the areas it has no population for: refused for good, not retried
        (sms,) = await _deliveries(conn, v.warning_id, "area_sms")
        assert (sms["state"] == "dead" and sms["attempts"] == 1 and "422" in sms["reason"]) or "area" in sms[
            "reason"
        ]


async def _dead(conn: asyncpg.Connection, warning_id: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT state = 'dead' FROM svc.area_delivery WHERE warning_id = $1 AND channel = 'cell_broadcast'",
            warning_id,
        )
    )


async def test_a_gateway_that_reports_late_or_never(conn, db_url) -> None:
    units = await region_units(conn, "wuhai")
    populations = {code: u.population for code, u in units.items()}
    async with OperatorGatewaySimulator("china_mobile", populations, token=TOKEN, rate_per_s=1e6) as gateway, \
            CbcSimulator() as cbc, _dispatching(db_url, gateway.urls, [cbc.url]):  # fmt: skip
        await gateway.script(Fault.LATE, seconds=1.5)
        v = await issue(conn, level="yellow", areas=(DISTRICTS[0],), ctx=CTX_AREA)
        await wait_until(lambda: _settled(conn, v.warning_id), 10, "put out")
        # put out at once, but no figure for 1.5 s: the evidence stays unfinished meanwhile
        await asyncio.sleep(0.5)
        assert not await _final_evidence(conn, v.warning_id, 1, 1)
        took = await wait_until(lambda: _final_evidence(conn, v.warning_id, 1, 1), 10, "the late report")
        assert took > 0.5
        # a gateway that never reports: the task is out, its evidence shows nothing delivered
        await gateway.script(Fault.SILENT)
        w = await issue(conn, level="yellow", areas=(DISTRICTS[1],), hazard="frost", ctx=CTX_AREA)
        await wait_until(lambda: _settled(conn, w.warning_id), 10, "put out")
        await asyncio.sleep(1.0)
        delivered = await conn.fetchval(
            "SELECT coalesce(sum(delivered), 0) FROM svc.reach_evidence WHERE warning_id = $1 AND channel = 'area_sms'",
            w.warning_id,
        )
        assert delivered == 0
        (sms,) = await _deliveries(conn, w.warning_id, "area_sms")
        assert sms["state"] == "done" and sms["remote_id"] in gateway.tasks


async def test_a_withdrawal_after_an_attempt_of_unknown_outcome_still_reaches_the_operator(
    conn, db_url
) -> None:
    """The Alert's POST timed out on both routes, but the gateway made the task: when the warning is
    cancelled before the retry, the Alert is finished (same key, same task) and the Cancel stops it; it is
    never dropped as "never went out" with the task left sending."""
    units = await region_units(conn, "wuhai")
    populations = {code: u.population for code, u in units.items()}
    async with OperatorGatewaySimulator("china_mobile", populations, token=TOKEN, rate_per_s=10.0) as gateway, \
            CbcSimulator() as cbc:  # fmt: skip
        await gateway.script(Fault.SLOW, delay_s=1.5, count=2)  # longer than the client waits, on both routes
        patient = dataclasses.replace(OPTIONS, retry_base_s=30, retry_cap_s=30)  # the retry waits 25 s
        async with _dispatching(db_url, gateway.urls, [cbc.url], patient):
            v = await issue(conn, level="red", areas=(DISTRICTS[0],), ctx=CTX_AREA)
            await wait_until(lambda: _tried(conn, v.warning_id), 10, "the first attempt failed")
        await wait_until(_async(lambda: bool(gateway.tasks)), 5, "the gateway made the task all the same")
        await successor(conn, v.warning_id, None, ctx=CTX_AREA)
        # the retry's time comes (the clock moved on 25 s)
        await conn.execute(
            "UPDATE svc.area_delivery SET next_attempt_at = now() WHERE warning_id = $1", v.warning_id
        )
        async with _dispatching(db_url, gateway.urls, [cbc.url]):
            await wait_until(lambda: _settled(conn, v.warning_id), 10, "the Cancel put out")
        (task_id,) = gateway.tasks
        sms = await _deliveries(conn, v.warning_id, "area_sms")
        assert [(r["msg_type"], r["state"], r["remote_id"]) for r in sms] == [
            ("Alert", "done", task_id), ("Cancel", "done", task_id)
        ]  # fmt: skip
        assert gateway.tasks[task_id].cancelled_at is not None  # stopped, not left sending to every handset


async def _tried(conn: asyncpg.Connection, warning_id: int) -> bool:
    return bool(
        await conn.fetchval(
            """SELECT attempts >= 1 AND state = 'pending' FROM svc.area_delivery
               WHERE warning_id = $1 AND channel = 'area_sms'""",
            warning_id,
        )
    )


def _async(check):  # type: ignore[no-untyped-def]
    async def wrapped() -> bool:
        return bool(check())

    return wrapped


async def test_an_expiry_takes_back_an_older_version_a_downgrade_did_not_replace_there(conn, db_url) -> None:
    """v1 orange went to an operator used for orange and red only; v2, downgraded to yellow, did not: when v2
    expires, v1's task is stopped all the same."""
    units = await region_units(conn, "wuhai")
    populations = {code: u.population for code, u in units.items()}
    ctx = dataclasses.replace(
        CTX_AREA,
        area_targets=(
            AreaTarget("area_sms", "china-mobile", frozenset({"orange", "red"})),
            AreaTarget("cell_broadcast", "cbc", LEVELS),
        ),
    )
    async with OperatorGatewaySimulator("china_mobile", populations, token=TOKEN, rate_per_s=10.0) as gateway, \
            CbcSimulator() as cbc, _dispatching(db_url, gateway.urls, [cbc.url]):  # fmt: skip
        v1 = await issue(conn, level="orange", areas=(DISTRICTS[1],), ctx=ctx)
        await wait_until(lambda: _settled(conn, v1.warning_id), 10, "v1 put out")
        await successor(conn, v1.warning_id, {"level": "yellow"}, ctx=ctx)
        await wait_until(lambda: _settled(conn, v1.warning_id), 10, "v2 put out")
        assert [r["msg_type"] for r in await _deliveries(conn, v1.warning_id, "area_sms")] == ["Alert"]
        later = datetime.now(UTC) + timedelta(days=3)
        assert v1.warning_id in await ws.expire_due(conn, ctx, now=later)
        await wait_until(lambda: _settled(conn, v1.warning_id), 10, "the expiry put out")
        (task_id,) = gateway.tasks
        sms = await _deliveries(conn, v1.warning_id, "area_sms")
        assert [(r["version"], r["msg_type"], r["state"]) for r in sms] == [
            (1, "Alert", "done"),
            (2, "Expire", "done"),
        ]
        assert gateway.tasks[task_id].cancelled_at is not None
        # the CBC had both versions: the expiry deleted the message in force there
        cb = await _deliveries(conn, v1.warning_id, "cell_broadcast")
        assert [r["msg_type"] for r in cb] == ["Alert", "Update", "Expire"] and not cbc.messages


class _RaisingOnce:
    """A real CBC adapter that raises once from `put_out` (an adapter bug, or a peer's answer it did not
    expect): the dispatcher must log it, run its loop again and put the warning out."""

    def __init__(self, inner: CbcChannel) -> None:
        self.inner = inner
        self.name = inner.name
        self.raised = False

    async def put_out(self, alert):  # type: ignore[no-untyped-def]
        if not self.raised:
            self.raised = True
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "a peer's answer")
        return await self.inner.put_out(alert)

    def evidence(self):  # type: ignore[no-untyped-def]
        return self.inner.evidence()

    def health(self):  # type: ignore[no-untyped-def]
        return self.inner.health()

    async def close(self) -> None:
        await self.inner.close()


async def test_an_adapter_that_raises_does_not_stop_its_target(conn, db_url) -> None:
    async with CbcSimulator() as cbc:
        pool = await asyncpg.create_pool(db_url, min_size=1, max_size=4)
        flaky = _RaisingOnce(CbcChannel("cbc", [cbc.url], connect_timeout_s=0.5, request_timeout_s=1.0))
        ctx = dataclasses.replace(CTX, area_targets=(AreaTarget("cell_broadcast", "cbc", LEVELS),))
        dispatcher = AreaDispatcher(pool, db_url, {("cell_broadcast", "cbc"): flaky}, OPTIONS)
        stop = asyncio.Event()
        task = asyncio.create_task(dispatcher.run(stop))
        try:
            v = await issue(conn, level="red", areas=(DISTRICTS[0],), ctx=ctx)
            # the lease runs out (5 s), the claim returns to the queue, the restarted loop puts it out
            await wait_until(lambda: _settled(conn, v.warning_id), 20, "put out after the loop ran again")
        finally:
            stop.set()
            await task
            await pool.close()
        assert flaky.raised and dispatcher.counters.loop_failures == {"sender cell_broadcast cbc": 1}
        assert len(cbc.accepted) == 1 and not task.exception()
