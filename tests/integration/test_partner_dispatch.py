"""The partner outbox and dispatcher against real webhook receivers on 127.0.0.1, every delivery verified with
the independent `standardwebhooks` package: what a partner gets, retries on the schedule and their bound (the
warning's expiry), 410 disabling the endpoint, 429 slowing it down, a secret rotation, a subscription paused
or changed while a warning is being sent, and a timeout."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest

from channels.email.client import EmailChannel
from channels.smpp.esme import SmppSettings, SmsChannel
from channels.smpp.partner import SmsPartnerChannel
from tests.factories_db import fresh_database
from tests.factories_dispatch import DISTRICTS, issue, successor, wait_until
from tests.factories_partners import (
    QUICK,
    WebhookReceiver,
    attempts,
    deliveries,
    running_partners,
    subscribe,
)
from warnings_svc.dissemination.partners import dispatch, outbox
from warnings_svc.dissemination.partners import subscriptions as subs
from warnings_svc.dissemination.partners.outbox import AttemptRecord
from warnings_svc.dissemination.partners.states import PartnerDeliveryEvent as Event


@pytest.fixture
async def db_url(pg_server_url: str) -> AsyncIterator[str]:
    async with fresh_database(pg_server_url, built=True) as url:
        yield url


async def _states(conn, subscription_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [r["state"] for r in await deliveries(conn, subscription_id)]


async def test_a_partner_gets_every_message_signed_with_the_cap_document_and_each_attempt_is_logged(
    conn, db_url
) -> None:
    async with WebhookReceiver() as receiver, running_partners(db_url):
        water, secret = await subscribe(
            conn, "webhook", receiver.url + "/water", hazards=["heat"], areas=[DISTRICTS[0]]
        )
        other, _ = await subscribe(conn, "webhook", receiver.url + "/rain", hazards=["rainstorm"])
        receiver.secrets = {"water": secret}
        assert secret.startswith("whsec_")
        v = await issue(conn, level="orange", areas=(DISTRICTS[0],))
        await wait_until(lambda: _has(receiver, "/water", 1), 10, "the Alert at the partner")
        await successor(conn, v.warning_id, {"level": "red"})
        await successor(conn, v.warning_id, None)
        await wait_until(lambda: _has(receiver, "/water", 3), 10, "the Update and the Cancel")
        got = receiver.at("/water")
        assert all(r.verified_with == ["water"] for r in got)
        assert [r.json()["msgType"] for r in got] == ["Alert", "Update", "Cancel"]
        first = got[0].json()
        assert (
            first["identifier"] == v.identifier and first["hazard"] == "heat" and first["level"] == "orange"
        )
        assert first["status"] == "Actual" and first["areas"][0]["code"] == DISTRICTS[0]
        assert first["headline"] and first["cap"].startswith("<?xml") and v.identifier in first["cap"]
        for key in ("onset", "expires", "cap_url"):
            assert key in first
        # the webhook-id is the delivery's idempotency key; the heat subscription alone got them
        rows = await deliveries(conn, water.id)
        assert [r["message_id"] for r in rows] == [r.headers["webhook-id"] for r in got]
        assert [r["state"] for r in rows] == ["delivered"] * 3
        assert await deliveries(conn, other.id) == [] and receiver.at("/rain") == []
        (attempt,) = await attempts(conn, rows[0]["id"])
        assert attempt["outcome"] == "delivered" and attempt["status"] == 204 and attempt["attempt"] == 1


async def _has(receiver: WebhookReceiver, path: str, n: int) -> bool:
    return len(receiver.at(path)) >= n


async def test_failures_are_retried_on_the_schedule_with_the_same_webhook_id_and_410_disables(
    conn, db_url
) -> None:
    async with WebhookReceiver() as receiver, running_partners(db_url):
        flaky, secret = await subscribe(conn, "webhook", receiver.url + "/flaky")
        gone, _ = await subscribe(conn, "webhook", receiver.url + "/gone")
        receiver.secrets = {"flaky": secret}
        receiver.script = {"/flaky": [500, 503, 200], "/gone": [410]}
        v = await issue(conn, level="orange", areas=(DISTRICTS[0],))
        await wait_until(lambda: _delivered(conn, flaky.id), 10, "delivered on the third attempt")
        got = receiver.at("/flaky")
        assert len(got) == 3 and len({r.headers["webhook-id"] for r in got}) == 1
        assert all(r.verified_with == ["flaky"] for r in got)  # each attempt signed afresh
        (row,) = await deliveries(conn, flaky.id)
        assert [(a["outcome"], a["status"]) for a in await attempts(conn, row["id"])] == [
            ("temporary_failure", 500), ("temporary_failure", 503), ("delivered", 200)
        ]  # fmt: skip
        # 410: dead at once, the subscription disabled, and nothing more written for it
        await wait_until(lambda: _state_is(conn, gone.id, ["dead"]), 10, "the 410 delivery dead")
        disabled = await subs.get(conn, gone.id)
        assert disabled is not None and disabled.state == "disabled" and "410" in disabled.reason
        await successor(conn, v.warning_id, {"level": "red"})
        await wait_until(lambda: _delivered(conn, flaky.id, 2), 10, "the Update to the live endpoint")
        assert len(receiver.at("/gone")) == 1 and await _states(conn, gone.id) == ["dead"]


async def _delivered(conn, subscription_id: int, n: int = 1) -> bool:  # type: ignore[no-untyped-def]
    return (await _states(conn, subscription_id)).count("delivered") >= n


async def _state_is(conn, subscription_id: int, expected: list[str]) -> bool:  # type: ignore[no-untyped-def]
    return await _states(conn, subscription_id) == expected


async def test_retries_stop_when_the_warning_would_have_expired(conn, db_url) -> None:
    # the next step of this schedule lies a day away, after the warning's expiry: no attempt is left
    options = dataclasses.replace(QUICK, schedule_s=(0, 86_400 * 2))
    async with WebhookReceiver() as receiver, running_partners(db_url, options=options):
        down, _ = await subscribe(conn, "webhook", receiver.url + "/down")
        receiver.script = {"/down": [500]}
        await issue(conn, level="orange", areas=(DISTRICTS[0],))
        await wait_until(lambda: _state_is(conn, down.id, ["dead"]), 10, "given up")
        (row,) = await deliveries(conn, down.id)
        assert "before the warning expires" in row["reason"] and row["last_status"] == 500


async def test_429_holds_back_the_endpoint_and_a_timeout_is_retried(conn, db_url) -> None:
    async with WebhookReceiver() as receiver, running_partners(db_url):
        busy, _ = await subscribe(conn, "webhook", receiver.url + "/busy")
        slow, _ = await subscribe(conn, "webhook", receiver.url + "/slow")
        receiver.script = {"/busy": [(429, {"Retry-After": "1"})], "/slow": [3.0]}
        started = datetime.now(UTC)
        await issue(conn, level="orange", areas=(DISTRICTS[0],))
        await wait_until(lambda: _delivered(conn, busy.id), 10, "delivered after Retry-After")
        got = receiver.at("/busy")
        assert len(got) == 2
        (row,) = await deliveries(conn, busy.id)
        first, second = await attempts(conn, row["id"])
        assert first["status"] == 429 and second["outcome"] == "delivered"
        assert datetime.now(UTC) - started >= timedelta(seconds=1)  # not before the endpoint asked
        # the slow endpoint: the attempt timed out (1 s) and the next one went through
        await wait_until(lambda: _delivered(conn, slow.id), 15, "delivered after a timeout")
        (row,) = await deliveries(conn, slow.id)
        first, *_ = await attempts(conn, row["id"])
        assert first["outcome"] == "temporary_failure" and first["status"] is None and first["error"]


async def test_a_rotated_secret_signs_beside_the_old_one(conn, db_url) -> None:
    async with WebhookReceiver() as receiver, running_partners(db_url):
        sub, old = await subscribe(conn, "webhook", receiver.url + "/hook")
        _, new = await subs.rotate(conn, sub.id, overlap_s=3600)
        receiver.secrets = {"old": old, "new": new}
        await issue(conn, level="orange", areas=(DISTRICTS[0],))
        await wait_until(lambda: _has(receiver, "/hook", 1), 10, "the delivery")
        assert receiver.at("/hook")[0].verified_with == ["old", "new"]
        # once the overlap is over, only the new secret signs
        await conn.execute(
            "UPDATE svc.subscription SET previous_until = now() - interval '1 s' WHERE id = $1", sub.id
        )
        assert await subs.signing_secrets(conn, sub.id) == (new,)


async def test_a_subscription_paused_or_moved_while_a_warning_is_sent(conn, db_url) -> None:
    async with WebhookReceiver() as receiver:
        paused, _ = await subscribe(conn, "webhook", receiver.url + "/paused")
        moved, _ = await subscribe(conn, "webhook", receiver.url + "/before")
        await issue(conn, level="orange", areas=(DISTRICTS[0],))  # written, not yet sent: no dispatcher
        await subs.change_state(conn, paused.id, "pause")
        units = {a: None for a in ()}  # the new address is checked as the API would
        spec = subs.check_spec("webhook", receiver.url + "/after", units=units)  # type: ignore[arg-type]
        await subs.update(conn, moved.id, spec)
        async with running_partners(db_url):
            await wait_until(lambda: _delivered(conn, moved.id), 10, "delivered to the new address")
            await wait_until(lambda: _state_is(conn, paused.id, ["dropped"]), 10, "dropped while paused")
        assert receiver.at("/before") == [] and len(receiver.at("/after")) == 1
        assert receiver.at("/paused") == []


async def test_email_and_sms_subscriptions_through_a_real_smtp_server_and_smsc(
    conn, db_url, smtp_server, smsc
) -> None:
    email = EmailChannel(smtp_server.host, smtp_server.port, "warnings@weather.example.cn", timeout_s=2.0)
    sms = SmsPartnerChannel(
        SmsChannel(SmppSettings(host=smsc.host, port=smsc.port, system_id=smsc.system_id, password=smsc.password,
                                registered_delivery=0, connect_wait_s=1.0))
    )  # fmt: skip
    smtp_server.stop()  # the mail server is down when the warning is issued, and comes back
    async with running_partners(db_url, {"email": email, "sms": sms}):
        mail, _ = await subscribe(conn, "email", "duty@water.example.org")
        phone, _ = await subscribe(conn, "sms", "13900001111")
        v = await issue(conn, level="orange", areas=(DISTRICTS[0],))
        await wait_until(lambda: _delivered(conn, phone.id), 10, "the SMS to the subscribed phone")
        await wait_until(lambda: _attempted(conn, mail.id), 10, "a failed attempt while the server is down")
        smtp_server.start()
        await wait_until(lambda: _delivered(conn, mail.id), 10, "the email once the server is back")
        # a reply from a phone on the partner dispatcher's own bind is stored, not left unanswered
        smsc.send_mo("+8613900001111", "收到 1234")
        await wait_until(lambda: _inbound(conn, "partners"), 10, "the reply stored")
    (got,) = smtp_server.messages()
    assert got.rcpt_tos == ("duty@water.example.org",)
    assert "预警" in str(got.email["Subject"])
    body = got.email.get_body(("plain",))
    assert body is not None and "预警" in body.get_content()
    (cap,) = [p for p in got.email.iter_attachments() if p.get_content_type() == "application/cap+xml"]
    assert v.identifier.encode() in cap.get_payload(decode=True)
    (row,) = await deliveries(conn, mail.id)
    first, *_ = await attempts(conn, row["id"])
    assert first["outcome"] == "temporary_failure"
    submitted = smsc.accepted()
    assert {s["destination_addr"] for s in submitted} == {"+8613900001111"}
    assert all(s["registered_delivery"] == 0 for s in submitted)  # no receipts asked for
    assert "预警" in "".join(s["text"] for s in submitted)


async def _inbound(conn, endpoint: str) -> bool:  # type: ignore[no-untyped-def]
    return bool(
        await conn.fetchval(
            "SELECT count(*) FROM svc.inbound_sms WHERE endpoint = $1 AND text = '收到 1234'", endpoint
        )
    )


async def _attempted(conn, subscription_id: int) -> bool:  # type: ignore[no-untyped-def]
    rows = await deliveries(conn, subscription_id)
    return bool(rows) and rows[0]["attempts"] >= 1 and rows[0]["state"] == "pending"


async def test_a_channel_slower_than_the_lease_sends_each_message_once(conn, db_url, smtp_server) -> None:
    # one connection to a mail server taking 1 s per message: six messages take six seconds, twice the
    # lease; none may be claimed before a connection is free, so none is sent twice
    for n in range(6):
        smtp_server.slow[f"duty{n}@water.example.org"] = 1.0
    email = EmailChannel(smtp_server.host, smtp_server.port, "warnings@weather.example.cn", connections=1)
    options = dataclasses.replace(QUICK, concurrency=16, lease_s=3)
    async with running_partners(db_url, {"email": email}, options) as dispatcher:
        subscribed = [(await subscribe(conn, "email", f"duty{n}@water.example.org"))[0] for n in range(6)]
        await issue(conn, level="orange", areas=(DISTRICTS[0],))
        for sub in subscribed:
            await wait_until(lambda sub=sub: _delivered(conn, sub.id), 20, "every email delivered")
        assert dispatcher.counters.leases_lost == {}
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages()) == [
        f"duty{n}@water.example.org" for n in range(6)
    ]


async def test_a_late_result_never_overwrites_a_newer_attempt(conn, db_url) -> None:
    sub, _ = await subscribe(conn, "webhook", "http://127.0.0.1:9/hook")
    await issue(conn, level="orange", areas=(DISTRICTS[0],))
    now = datetime.now(UTC)
    (first,) = await outbox.claim_partner(conn, "webhook", "me", 60, 10)
    await conn.execute(
        "UPDATE svc.partner_delivery SET lease_until = now() - interval '1 s' WHERE id = $1", first.id
    )
    assert await outbox.reclaim_partner_leases(conn) == 1
    (second,) = await outbox.claim_partner(conn, "webhook", "me", 60, 10)  # the same dispatcher, again
    assert second.attempts == first.attempts + 1
    record = partial(AttemptRecord, delivery_id=first.id, started_at=now, latency_ms=5, status=None, error="")
    late = record(attempt=first.attempts, outcome="temporary_failure", event=Event.retry, next_attempt_at=now)
    fresh = record(attempt=second.attempts, outcome="delivered", event=Event.accept, status=204)
    assert await outbox.record_partner_results(conn, "me", [late]) == 0  # kept in the log only
    assert await outbox.record_partner_results(conn, "me", [fresh]) == 1
    (row,) = await deliveries(conn, sub.id)
    assert row["state"] == "delivered" and row["attempts"] == 2
    assert [a["attempt"] for a in await attempts(conn, first.id)] == [1, 2]


async def test_a_partner_told_of_a_warning_hears_its_update_and_cancel_even_outside_its_filters(
    conn, db_url
) -> None:
    async with WebhookReceiver() as receiver, running_partners(db_url):
        sub, _ = await subscribe(
            conn, "webhook", receiver.url + "/d1", areas=[DISTRICTS[0]], levels=["orange"]
        )
        v = await issue(conn, level="orange", areas=(DISTRICTS[0],))
        # the Update moves the warning to another district and to red: no longer the partner's filters
        await successor(conn, v.warning_id, {"areas": [DISTRICTS[1]], "level": "red"})
        await successor(conn, v.warning_id, None)
        await wait_until(lambda: _has(receiver, "/d1", 3), 10, "the Alert, the Update and the Cancel")
    assert [r.json()["msgType"] for r in receiver.at("/d1")] == ["Alert", "Update", "Cancel"]
    assert await _states(conn, sub.id) == ["delivered"] * 3


async def test_a_subscription_moved_to_another_channel_takes_its_waiting_deliveries_along(
    conn, db_url, smtp_server
) -> None:
    sub, _ = await subscribe(conn, "webhook", "http://127.0.0.1:9/hook")
    await issue(conn, level="orange", areas=(DISTRICTS[0],))  # written, not sent: no dispatcher yet
    spec = subs.check_spec("email", "ops@water.example.org", units={})
    moved, secret = await subs.update(conn, sub.id, spec)
    assert moved.channel == "email" and secret == ""
    email = EmailChannel(smtp_server.host, smtp_server.port, "warnings@weather.example.cn")
    async with running_partners(db_url, {"email": email}):
        await wait_until(lambda: _delivered(conn, sub.id), 10, "delivered by email")
    (got,) = smtp_server.messages()
    assert got.rcpt_tos == ("ops@water.example.org",)


async def test_a_fault_in_one_attempt_leaves_the_others_sent_and_stored_and_its_delivery_leased(
    conn, db_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a bug (not a partner's failure) in judging one result: that sender carries on, the other deliveries
    # are sent and stored, and the broken one stays leased for the reaper to put back
    real_judge = dispatch.judge
    broken: list[int] = []

    def judge_but_once(claim, result, **kwargs):  # type: ignore[no-untyped-def]
        if not broken:
            broken.append(claim.id)
            raise KeyError("a bug")
        return real_judge(claim, result, **kwargs)

    monkeypatch.setattr(dispatch, "judge", judge_but_once)
    async with WebhookReceiver() as receiver:
        subscribed = [(await subscribe(conn, "webhook", f"{receiver.url}/p{n}"))[0] for n in range(5)]
        options = dataclasses.replace(QUICK, concurrency=2, lease_s=60)  # no reaper during the test
        async with running_partners(db_url, options=options) as dispatcher:
            await issue(conn, level="orange", areas=(DISTRICTS[0],))
            await wait_until(lambda: _stored(dispatcher, 4), 10, "four results stored")
        states = {s.id: await _states(conn, s.id) for s in subscribed}
    assert sorted(map(tuple, states.values())) == [("delivered",)] * 4 + [("sending",)]
    (row,) = await conn.fetch("SELECT id FROM svc.partner_delivery WHERE state = 'sending'")
    assert [row["id"]] == broken and dispatcher.counters.stored == {"webhook": 4}
    assert len(receiver.received) == 5  # it was sent: only its judgement failed


async def _stored(dispatcher: dispatch.PartnerDispatcher, n: int) -> bool:
    return dispatcher.counters.stored.get("webhook", 0) >= n


async def test_a_stopping_dispatcher_finishes_its_attempts_and_gives_back_what_it_claimed_ahead(
    conn, db_url
) -> None:
    # two slots, six claimed (three rounds fit in the lease): on stop the two under way finish and are
    # stored, the four waiting go back to the queue untried rather than being sent after the stop
    async with WebhookReceiver() as receiver:
        subscribed = [(await subscribe(conn, "webhook", f"{receiver.url}/p{n}"))[0] for n in range(6)]
        receiver.script = {f"/p{n}": [0.8] for n in range(6)}  # each answer takes 0.8 s
        options = dataclasses.replace(QUICK, concurrency=2, lease_s=4, attempt_s=1)
        assert dispatch.claim_window(2, 4, 1) == 6
        async with running_partners(db_url, options=options) as dispatcher:
            await issue(conn, level="orange", areas=(DISTRICTS[0],))
            await wait_until(lambda: _received(receiver, 2), 10, "two attempts under way")
            stopping = time.monotonic()
        stopped_in = time.monotonic() - stopping
        rows = [(await deliveries(conn, s.id))[0] for s in subscribed]
    assert len(receiver.received) == 2 and dispatcher.counters.stored == {"webhook": 2}
    assert sorted((r["state"], r["attempts"]) for r in rows) == [("delivered", 1)] * 2 + [("pending", 0)] * 4
    assert stopped_in < 1.5  # the two under way, not the four more after them


async def _received(receiver: WebhookReceiver, n: int) -> bool:
    return len(receiver.received) >= n


async def test_a_warning_issued_while_an_empty_claim_is_under_way_is_sent_at_once(
    conn, db_url, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the NOTIFY of a warning issued while the dispatcher's claim finds nothing must not be lost: the
    # dispatcher claims again at once, not at its next poll (3 s here)
    real_claim = outbox.claim_partner
    issued: list[float] = []

    async def claim_while_a_warning_is_issued(c, **kwargs):  # type: ignore[no-untyped-def]
        found = await real_claim(c, **kwargs)
        if not found and armed and not issued:
            await issue(c, level="orange", areas=(DISTRICTS[0],))  # its NOTIFY reaches the listener now
            issued.append(time.monotonic())
            await asyncio.sleep(0.3)
        return found

    monkeypatch.setattr(outbox, "claim_partner", claim_while_a_warning_is_issued)
    armed = False
    async with WebhookReceiver() as receiver:
        sub, _ = await subscribe(conn, "webhook", f"{receiver.url}/water")
        async with running_partners(db_url, options=dataclasses.replace(QUICK, poll_s=3.0)):
            await asyncio.sleep(0.5)  # the dispatcher listens and has found nothing
            armed = True
            await wait_until(lambda: _delivered(conn, sub.id), 10, "the delivery")
            took = time.monotonic() - issued[0]
    assert took < 1.5, f"sent {took:.1f} s after the warning was issued"


async def test_a_fan_out_claims_in_batches_and_a_retry_falling_due_is_claimed_without_waiting_for_a_poll(
    conn, db_url
) -> None:
    # twelve deliveries, four at a time, all claimed at once (the window); the answers take 0.1-0.65 s. Once
    # nothing is left to claim, the sender waits to be told (a NOTIFY, or a retry it stored falling due) or
    # for its poll (5 s here): it claimed again as each attempt ended, an empty claim for most of them. The first answer of one endpoint is a 500: its retry, due 0.2 s later on the schedule,
    # goes out then, not at the next poll.
    async with WebhookReceiver() as receiver:
        subscribed = [(await subscribe(conn, "webhook", f"{receiver.url}/p{n}"))[0] for n in range(12)]
        receiver.script = {f"/p{n}": [0.1 + 0.05 * n] for n in range(12)} | {"/p11": [500]}  # one by one
        options = dataclasses.replace(QUICK, concurrency=4, lease_s=60, attempt_s=15, poll_s=5)
        assert dispatch.claim_window(4, 60, 15) == 12
        async with running_partners(db_url, options=options) as dispatcher:
            await asyncio.sleep(0.3)  # listening, the first (empty) claim made
            before = dispatcher.counters.claims.get("webhook", 0)
            issued = time.monotonic()
            await issue(conn, level="orange", areas=(DISTRICTS[0],))
            await wait_until(lambda: _stored(dispatcher, 13), 10, "twelve deliveries and one retry stored")
            took = time.monotonic() - issued
            claims = dispatcher.counters.claims["webhook"] - before
        states = [(await deliveries(conn, s.id))[0]["state"] for s in subscribed]
    assert states == ["delivered"] * 12
    assert len(receiver.at("/p11")) == 2  # the 500, then the retry
    assert took < 2.5, f"the fan-out and its retry took {took:.1f} s (the poll is 5 s)"
    # the batch of twelve, an empty claim when the first four ended, the retry, and an empty claim after it
    assert claims <= 5, f"{claims} claims for twelve deliveries and one retry"
