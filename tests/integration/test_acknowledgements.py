"""Acknowledgement deadlines (叫应), escalation, and messages from phones (replies and relayers' reports),
against the embedded PostgreSQL and the real loopback SMSC."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from channels.smpp.esme import SmppSettings, SmsChannel
from risk_zoning.store import region_units
from tests.factories_acks import (
    add_department,
    add_relayer,
    audit_actions,
    audit_of_request,
    calls_of,
    quick_ctx,
    request_of,
)
from tests.factories_dispatch import (
    dispatch_settings,
    expand_all,
    issue,
    running_dispatcher,
    successor,
    wait_until,
)
from tests.peers.smsc_fixture import SmscPeer
from warnings_svc.dissemination.partners import acknowledgements as acks
from warnings_svc.dissemination.partners import inbound
from warnings_svc.lifecycle import acknowledgement_steps as steps


@pytest.fixture
async def conn(built_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(built_url)
    yield c
    await c.close()


@pytest.fixture
async def units(conn: asyncpg.Connection) -> dict:
    return await region_units(conn, "wuhai")


def _code_and_link(text: str) -> tuple[str, str]:
    match = re.search(r"回复 (\d{4,8}) 确认，或打开 (\S+)$", text)
    assert match, text
    return match.group(1), match.group(2)


async def test_issuing_a_red_warning_asks_each_department_and_queues_the_first_calls(
    conn: asyncpg.Connection,
) -> None:
    ctx = quick_ctx()
    department = await add_department(conn)
    v = await issue(conn, level="red", ctx=ctx)
    request = await request_of(conn, v.warning_id, department["id"])
    assert (request["state"], request["step"], request["version"]) == ("waiting", 0, 1)
    assert request["deadline"] > datetime.now(UTC) + timedelta(minutes=9)
    calls = await calls_of(conn, request["id"])
    duty = department["people"]["duty"]
    assert [(c["channel"], c["address"]) for c in calls] == [("sms", duty["phone"]), ("email", duty["email"])]
    assert [c["message_id"] for c in calls] == [
        f"ack-{request['id']}-1-0-sms",
        f"ack-{request['id']}-1-0-email",
    ]
    assert {c["give_up_at"] for c in calls} == {v.state.expires}
    body = json.loads(calls[0]["body"])
    assert body["text"].startswith("【乌海市气象台】请确认收到：")
    code, link = _code_and_link(body["text"])
    assert code == request["code"]
    assert link.startswith("https://warnings.example.cn/ack/")
    token = link.rsplit("/", 1)[1]
    # only the token's SHA-256 is stored
    assert acks.token_hash(token) == bytes(request["token_hash"])
    assert token.encode() not in bytes(request["token_hash"])
    assert "acknowledgement_call" in await audit_actions(conn, v.warning_id)


async def test_a_yellow_warning_asks_nobody(conn: asyncpg.Connection) -> None:
    department = await add_department(conn)
    v = await issue(conn, level="yellow", ctx=quick_ctx())
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM svc.ack_request WHERE warning_id = $1 AND department_id = $2",
            v.warning_id,
            department["id"],
        )
        == 0
    )


async def _run_store_loop(url: str, channel: SmsChannel) -> tuple[asyncpg.Pool, asyncio.Task[None]]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    return pool, asyncio.create_task(inbound.store_inbound(pool, "smsc", channel))


async def _inbound_outcome(conn: asyncpg.Connection, source: str, n: int = 1) -> list[str]:
    async def stored() -> bool:
        return await conn.fetchval("SELECT count(*) FROM svc.inbound_sms WHERE source = $1", source) >= n

    await wait_until(stored, 5, f"{n} message(s) from {source} stored")
    rows = await conn.fetch(
        "SELECT outcome, handled_at FROM svc.inbound_sms WHERE source = $1 ORDER BY id", source
    )
    return [r["outcome"] for r in rows]


async def test_sms_replies_acknowledge_once_and_the_rest_is_only_noted(
    conn: asyncpg.Connection, built_url: str, smsc: SmscPeer, units: dict
) -> None:
    ctx = quick_ctx()
    department = await add_department(conn)
    v = await issue(conn, level="red", ctx=ctx)
    request = await request_of(conn, v.warning_id, department["id"])
    deputy = department["people"]["deputy"]["phone"]
    channel = SmsChannel(
        SmppSettings(smsc.host, smsc.port, smsc.system_id, smsc.password, reconnect_min_s=0.05)
    )
    assert await channel.start(wait_s=3)
    pool, task = await _run_store_loop(built_url, channel)
    try:
        # the deputy answers from a bare mobile number (as SMSCs give it), the code in a sentence
        smsc.send_mo(deputy.removeprefix("+86"), f"收到{request['code']}，马上落实")
        await _inbound_outcome(conn, deputy.removeprefix("+86"))
        await wait_until(lambda: _acked(smsc, 1), 5, "the SMSC's message answered")
        await steps.run_once(conn, ctx, units, now=datetime.now(UTC))
        acknowledged = await request_of(conn, v.warning_id, department["id"])
        assert (acknowledged["state"], acknowledged["via"]) == ("acknowledged", "sms")
        assert acknowledged["acknowledged_by"].startswith("deputy-")
        # the same reply again, a reply from an unknown number, and words without a code
        smsc.send_mo(deputy, f"确认 {request['code']}")
        smsc.send_mo("+8613000000001", request["code"])
        smsc.send_mo(deputy, "好的")
        await _inbound_outcome(conn, deputy, 2)
        await _inbound_outcome(conn, "+8613000000001")
        await steps.run_once(conn, ctx, units, now=datetime.now(UTC))
        assert await _inbound_outcome(conn, deputy, 2) == [
            f"duplicate: request {request['id']} was acknowledged before",
            "not understood",
        ]
        assert await _inbound_outcome(conn, "+8613000000001") == ["unknown number"]
        again = await request_of(conn, v.warning_id, department["id"])
        assert again["acknowledged_at"] == acknowledged["acknowledged_at"]  # nothing changed
        assert (await audit_of_request(conn, request["id"])).count("acknowledged") == 1
    finally:
        await channel.close()
        await asyncio.wait_for(task, 5)
        await pool.close()


async def _acked(smsc: SmscPeer, n: int) -> bool:
    return smsc.counters()["mo_acked"] >= n


async def test_escalation_calls_again_then_the_deputy_skips_a_vacant_leader_and_ends_on_the_call_list(
    conn: asyncpg.Connection,
) -> None:
    ctx = quick_ctx(minutes=1)
    department = await add_department(conn, ranks={"duty": False, "deputy": True})  # no leader
    v = await issue(conn, level="orange", ctx=ctx)
    request = await request_of(conn, v.warning_id, department["id"])
    now = datetime.now(UTC)
    assert [
        c
        for c in await acks.escalate_due(conn, now, ctx.acknowledgements, issuer="x")
        if c.request_id == request["id"]
    ] == []

    seen = []
    for minute in (2, 4, 6, 8):
        calls = await steps.escalate(conn, ctx, now=now + timedelta(minutes=minute))
        seen += [
            (c.step_name, c.state, c.person.split(" ")[-1]) for c in calls if c.request_id == request["id"]
        ]
    assert seen == [
        ("again", "waiting", "(duty)"),
        ("deputy", "waiting", "(deputy)"),
        ("leader", "skipped", ""),
        ("call_list", "calling", ""),
    ]
    final = await request_of(conn, v.warning_id, department["id"])
    assert (final["state"], final["step"]) == ("calling", 4)
    addresses = [(c["channel"], c["address"], c["message_id"]) for c in await calls_of(conn, request["id"])]
    people = department["people"]
    rid = request["id"]
    assert addresses == [
        ("sms", people["duty"]["phone"], f"ack-{rid}-1-0-sms"),
        ("sms", people["duty"]["phone"], f"ack-{rid}-1-1-sms"),
        ("sms", people["deputy"]["phone"], f"ack-{rid}-1-2-sms"),
        ("email", people["deputy"]["email"], f"ack-{rid}-1-2-email"),
    ]
    assert await audit_of_request(conn, rid) == ["acknowledgement_call"] + ["acknowledgement_escalated"] * 4
    # the duty officer's call list shows the whole chain; a call that reached nobody keeps it there
    listed = await acks.requests_of(conn, now=now, steps=ctx.acknowledgements.steps, calling_only=True)
    mine = [r for r in listed if r.id == rid]
    assert [p.rank for p in mine[0].people] == ["duty", "deputy"]
    result = await steps.record_call(
        conn, ctx, rid, reached=False, note="无人接听", actor="duty-officer", now=now
    )
    assert result.outcome is acks.AckOutcome.noted
    assert (await request_of(conn, v.warning_id, department["id"]))["state"] == "calling"
    result = await steps.record_call(
        conn, ctx, rid, reached=True, note="副职已确认", actor="duty-officer", now=now
    )
    assert result.outcome is acks.AckOutcome.acknowledged
    done = await request_of(conn, v.warning_id, department["id"])
    assert (done["state"], done["via"], done["call_outcome"]) == ("acknowledged", "call", "副职已确认")
    assert (await audit_of_request(conn, rid))[-2:] == ["acknowledgement_call_outcome", "acknowledged"]


async def test_a_cancelled_or_expired_warning_closes_its_requests_and_later_acknowledgements_change_nothing(
    conn: asyncpg.Connection, units: dict
) -> None:
    ctx = quick_ctx()
    department = await add_department(conn)
    cancelled = await issue(conn, level="red", ctx=ctx)
    await successor(conn, cancelled.warning_id, None, ctx=ctx)
    request = await request_of(conn, cancelled.warning_id, department["id"])
    assert request["state"] == "closed"
    result = await steps.acknowledge(
        conn, ctx, request["id"], by="x", via="console", actor="x", now=datetime.now(UTC)
    )
    assert result.outcome is acks.AckOutcome.not_in_force

    expiring = await issue(conn, level="red", ctx=ctx, hours=1)
    request = await request_of(conn, expiring.warning_id, department["id"])
    later = expiring.state.expires + timedelta(minutes=1)
    await conn.execute(
        "INSERT INTO svc.inbound_sms (endpoint, source, text) VALUES ('smsc', $1, $2)",
        department["people"]["duty"]["phone"],
        request["code"],
    )
    await steps.run_once(conn, ctx, units, now=later)
    outcome = await conn.fetchval(
        "SELECT outcome FROM svc.inbound_sms WHERE source = $1 ORDER BY id DESC LIMIT 1",
        department["people"]["duty"]["phone"],
    )
    assert outcome.startswith("not in force")
    assert (await request_of(conn, expiring.warning_id, department["id"]))["state"] == "closed"


async def test_an_update_keeps_acknowledgements_and_calls_again_who_had_not(conn: asyncpg.Connection) -> None:
    ctx = quick_ctx()
    answered = await add_department(conn)
    silent = await add_department(conn)
    v = await issue(conn, level="red", ctx=ctx)
    first = await request_of(conn, v.warning_id, answered["id"])
    await steps.acknowledge(
        conn, ctx, first["id"], by="console user", via="console", actor="wang", now=datetime.now(UTC)
    )
    await successor(conn, v.warning_id, {"level": "red", "note": "更新"}, ctx=ctx)
    kept = await request_of(conn, v.warning_id, answered["id"])
    assert (kept["state"], kept["version"], kept["via"]) == ("acknowledged", 1, "console")
    recalled = await request_of(conn, v.warning_id, silent["id"])
    assert (recalled["state"], recalled["version"], recalled["step"]) == ("waiting", 2, 0)
    assert [c["message_id"].split("-", 2)[2] for c in await calls_of(conn, recalled["id"])] == [
        "1-0-sms", "1-0-email", "2-0-sms", "2-0-email",
    ]  # fmt: skip


async def test_one_time_links_acknowledge_once(conn: asyncpg.Connection) -> None:
    ctx = quick_ctx()
    department = await add_department(conn)
    v = await issue(conn, level="red", ctx=ctx)
    request = await request_of(conn, v.warning_id, department["id"])
    _, link = _code_and_link(json.loads((await calls_of(conn, request["id"]))[0]["body"])["text"])
    token = link.rsplit("/", 1)[1]
    now = datetime.now(UTC)
    assert (await acks.lookup_token(conn, token, now=now)).state is acks.TokenState.open
    assert (await acks.lookup_token(conn, "nope", now=now)).state is acks.TokenState.unknown
    found, result = await steps.acknowledge_link(conn, ctx, token, actor="link", now=now)
    assert result.outcome is acks.AckOutcome.acknowledged
    assert (await request_of(conn, v.warning_id, department["id"]))["via"] == "link"
    found, result = await steps.acknowledge_link(conn, ctx, token, actor="link", now=now)
    assert found.state is acks.TokenState.used


async def test_relayers_report_by_sms_capped_by_whom_they_serve(
    conn: asyncpg.Connection, built_url: str, smsc: SmscPeer, units: dict
) -> None:
    ctx = quick_ctx()
    relayer = await add_relayer(conn, serves=100)
    other = await add_relayer(conn, serves=None)
    await expand_all(conn)  # the module's earlier warnings first: this one is the latest told to them
    v = await issue(conn, level="yellow", ctx=ctx)
    await expand_all(conn)  # the warning is told to them (svc.delivery)
    now = datetime.now(UTC)
    for phone, text in ((relayer["phone"], "已传达 120"), (other["phone"], "已转发35人")):
        await conn.execute(
            "INSERT INTO svc.inbound_sms (endpoint, source, text) VALUES ('smsc', $1, $2)", phone, text
        )
    await steps.run_once(conn, ctx, units, now=now)
    rows = {
        r["recipient_id"]: (r["reported"], r["people"], r["via"], r["area"])
        for r in await conn.fetch("SELECT * FROM svc.relay_report WHERE warning_id = $1", v.warning_id)
    }
    assert rows[relayer["id"]] == (120, 100, "sms", "150302000000")
    assert rows[other["id"]] == (35, 35, "sms", "150302000000")  # capped by Haibowan's population, far above
    # a later report replaces the earlier one
    await conn.execute(
        "INSERT INTO svc.inbound_sms (endpoint, source, text) VALUES ('smsc', $1, '已传达80')",
        relayer["phone"],
    )
    await steps.run_once(conn, ctx, units, now=now)
    assert (
        await conn.fetchval(
            "SELECT people FROM svc.relay_report WHERE warning_id = $1 AND recipient_id = $2",
            v.warning_id,
            relayer["id"],
        )
        == 80
    )
    assert "relay_report" in await audit_actions(conn, v.warning_id)


async def test_the_dispatcher_stores_messages_from_phones_before_answering_them(
    conn: asyncpg.Connection, built_url: str, smsc: SmscPeer
) -> None:
    async def bound() -> bool:
        return smsc.state()["bound_sessions"] >= 1

    async with running_dispatcher(built_url, dispatch_settings(smsc)):
        await wait_until(bound, 5, "the dispatcher bound")
        smsc.send_mo("13912345678", "确认 9876")
        assert await _inbound_outcome(conn, "13912345678") == [""]  # stored, not handled yet
        await wait_until(lambda: _acked(smsc, 1), 5, "the SMSC's message answered once stored")
    row = await conn.fetchrow(
        "SELECT endpoint, destination, text FROM svc.inbound_sms WHERE source = '13912345678'"
    )
    assert dict(row) == {"endpoint": "smsc", "destination": "12121", "text": "确认 9876"}
