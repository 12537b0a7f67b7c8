"""The operator area SMS client against the loopback operator gateway SIMULATOR over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from channels.area import Evidence, EvidenceKind
from channels.area_sms.client import OperatorAreaSmsChannel
from channels.area_sms.protocol import task_body
from channels.base import FailureKind, HealthState, SendOutcome
from tests.factories_area import POPULATIONS, TEXT_UPDATE, area_alert
from warnings_svc.demo.peers.operator_gateway import SERVER_HEADER, Fault, OperatorGatewaySimulator

TOKEN = "test-token"
HANDSETS_PER_PERSON = 1.2
SHARE = 0.5
UNREACHABLE = 0.05
# handsets the simulator derives per district: population x 1.2 x 0.5
EXPECTED_TARGETED = {"150302000000": 204_600, "150303000000": 56_820, "150304000000": 73_440}

ChannelFor = Callable[..., OperatorAreaSmsChannel]


def simulator(rate_per_s: float = 2_000_000.0, token: str = TOKEN) -> OperatorGatewaySimulator:
    """A two-route SIMULATOR of China Mobile with round figures, fast enough that a task ends in ~0.2 s."""
    return OperatorGatewaySimulator(
        "china_mobile",
        POPULATIONS,
        token=token,
        handsets_per_person=HANDSETS_PER_PERSON,
        operator_share=SHARE,
        rate_per_s=rate_per_s,
        unreachable_share=UNREACHABLE,
    )


@pytest.fixture
async def sim() -> AsyncIterator[OperatorGatewaySimulator]:
    async with simulator() as peer:
        yield peer


@pytest.fixture
async def channel_for() -> AsyncIterator[ChannelFor]:
    """Builds channels with short timeouts and polls (every wait bounded); closes them after the test."""
    opened: list[OperatorAreaSmsChannel] = []

    def build(peer: OperatorGatewaySimulator, **overrides: Any) -> OperatorAreaSmsChannel:
        options: dict[str, Any] = {
            "request_timeout_s": 1.0,
            "connect_timeout_s": 0.5,
            "poll_interval_s": 0.05,
            "poll_horizon_s": 10.0,
        } | overrides
        token = options.pop("token", TOKEN)
        channel = OperatorAreaSmsChannel("china_mobile", peer.urls, token, **options)
        opened.append(channel)
        return channel

    yield build
    for channel in opened:
        await channel.close()


async def collect(
    channel: OperatorAreaSmsChannel, until: Callable[[list[Evidence]], bool], timeout_s: float = 5.0
) -> list[Evidence]:
    """Evidence from the channel until `until` holds for all seen so far (a TimeoutError fails the test)."""
    seen: list[Evidence] = []
    async with asyncio.timeout(timeout_s):
        async for batch in channel.evidence():
            seen.extend(batch)
            if until(seen):
                break
    return seen


def finals(seen: list[Evidence]) -> dict[str, Evidence]:
    """The final Evidence per area."""
    return {e.area: e for e in seen if e.final}


def all_final(codes: tuple[str, ...] = tuple(POPULATIONS)) -> Callable[[list[Evidence]], bool]:
    return lambda seen: set(finals(seen)) >= set(codes)


async def test_an_alert_creates_a_task_whose_progress_ends_final_with_every_handset_counted(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim)
    alert = area_alert()
    result = await channel.put_out(alert)
    assert result.outcome is SendOutcome.ACCEPTED, result.reason
    assert result.remote_id in sim.tasks and result.route == sim.urls[0]
    assert sim.received[0].status == 201 and sim.received[0].idempotency_key == alert.key

    seen = await collect(channel, all_final())
    for code, evidence in finals(seen).items():
        targeted = EXPECTED_TARGETED[code]
        assert evidence.kind is EvidenceKind.HANDSETS and evidence.measured
        assert (evidence.key, evidence.remote_id) == (alert.key, result.remote_id)
        assert evidence.targeted == targeted
        assert evidence.sent == targeted
        assert evidence.delivered == targeted - math.floor(targeted * UNREACHABLE)
        assert evidence.detail["state"] == "done" and evidence.detail["revision"] == "1"
    assert all(e.delivered <= e.sent <= e.targeted for e in seen)
    await asyncio.sleep(0.15)  # polls would have happened by now
    assert channel.open_tasks == []
    assert channel.health().state is HealthState.UP


async def test_progress_is_reported_as_it_grows_before_it_is_final(channel_for: ChannelFor) -> None:
    async with simulator(rate_per_s=300_000.0) as peer:  # 334,860 handsets: about 1.1 s
        channel = channel_for(peer)
        assert (await channel.put_out(area_alert())).outcome is SendOutcome.ACCEPTED
        seen = await collect(channel, all_final())
    haibowan = [e for e in seen if e.area == "150302000000"]
    assert len(haibowan) >= 3 and not haibowan[0].final
    assert [e.delivered for e in haibowan] == sorted(e.delivered for e in haibowan)


async def test_an_update_puts_a_new_revision_on_the_same_task(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim)
    first = await channel.put_out(area_alert())
    await collect(channel, all_final())
    update = area_alert(
        "17-2/area_sms/china_mobile",
        msg_type="Update",
        previous_remote_id=first.remote_id,
        text=TEXT_UPDATE,
        codes=("150302000000",),
        version=2,
    )
    result = await channel.put_out(update)
    assert result.outcome is SendOutcome.ACCEPTED, result.reason
    assert result.remote_id == first.remote_id and len(sim.tasks) == 1
    task = sim.tasks[first.remote_id]
    assert task.revision.number == 2 and task.revision.request.text == TEXT_UPDATE
    assert sim.received[-1].path.endswith(f"/{first.remote_id}/update")

    seen = await collect(channel, all_final(("150302000000",)))
    final = finals(seen)["150302000000"]
    assert (final.key, final.detail["revision"]) == (update.key, "2")
    assert final.targeted == EXPECTED_TARGETED["150302000000"]


async def test_an_update_that_names_no_task_creates_one(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim)
    result = await channel.put_out(area_alert("17-2/area_sms/china_mobile", msg_type="Update", version=2))
    assert result.outcome is SendOutcome.ACCEPTED
    assert sim.received[-1].path == "/v1/area-tasks" and sim.received[-1].status == 201
    assert sim.tasks[result.remote_id].revision.request.msg_type == "Update"


async def test_a_cancel_stops_the_task_and_the_last_evidence_says_cancelled(channel_for: ChannelFor) -> None:
    async with simulator(rate_per_s=10_000.0) as peer:  # would take half a minute to finish
        channel = channel_for(peer)
        alert = area_alert()
        created = await channel.put_out(alert)
        await asyncio.sleep(0.1)
        cancel = area_alert(
            "17-2/area_sms/china_mobile", msg_type="Cancel", previous_remote_id=created.remote_id
        )
        result = await channel.put_out(cancel)
        assert result.outcome is SendOutcome.ACCEPTED and result.remote_id == created.remote_id
        assert peer.received[-1].method == "DELETE" and peer.received[-1].status == 200
        assert peer.tasks[created.remote_id].cancelled_at is not None

        seen = await collect(channel, all_final())
        for evidence in finals(seen).values():
            assert evidence.detail["state"] == "cancelled"
            assert evidence.key == alert.key  # the figures are the Alert's text's
            assert evidence.sent < evidence.targeted
        # cancelling again is harmless: the same task, still cancelled
        again = await channel.put_out(cancel)
        assert again.outcome is SendOutcome.ACCEPTED and peer.received[-1].status == 200
        # an Update of a cancelled task is refused for good
        update = area_alert(
            "17-3/area_sms/china_mobile", msg_type="Update", previous_remote_id=created.remote_id
        )
        refused = await channel.put_out(update)
        assert refused.outcome is SendOutcome.PERMANENT_FAILURE and refused.failure is FailureKind.REFUSED
        assert refused.reason.startswith("409")


async def test_a_repeated_key_gets_the_same_task(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim)
    alert = area_alert()
    first = await channel.put_out(alert)
    second = await channel.put_out(alert)
    assert second.outcome is SendOutcome.ACCEPTED and second.remote_id == first.remote_id
    assert len(sim.tasks) == 1
    assert [r.status for r in sim.received if r.method == "POST"] == [201, 200]


async def test_when_the_primary_route_is_down_the_secondary_takes_it_and_is_tried_first_next_time(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim)
    await sim.script(Fault.DROP, route=0)
    result = await channel.put_out(area_alert())
    assert result.outcome is SendOutcome.ACCEPTED, result.reason
    assert result.route == sim.urls[1]
    assert channel.route_order() == [1, 0]
    assert channel.health().state is HealthState.DEGRADED
    await sim.resume(0)
    before = len(sim.received)
    again = await channel.put_out(area_alert("18-1/area_sms/china_mobile"))
    assert again.route == sim.urls[1]
    assert {r.route for r in sim.received[before:] if r.method == "POST"} == {1}


@pytest.mark.parametrize(
    "fault",
    [
        {"fault": Fault.FAIL, "status": 503, "retry_after_s": 2},
        {"fault": Fault.FAIL, "status": 500},
        {"fault": Fault.REFUSE, "status": 429, "retry_after_s": 1},
        {"fault": Fault.SLOW, "delay_s": 2.0},  # longer than the client's 1 s timeout
    ],
    ids=["503", "500", "429", "slow"],
)
async def test_a_primary_that_fails_for_now_hands_over_to_the_secondary(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor, fault: dict[str, Any]
) -> None:
    channel = channel_for(sim)
    await sim.script(route=0, **fault)
    result = await channel.put_out(area_alert())
    assert result.outcome is SendOutcome.ACCEPTED, result.reason
    assert result.route == sim.urls[1]
    if fault["fault"] is Fault.SLOW:
        await asyncio.sleep(1.3)  # the slow primary acts on the request its client gave up on
        assert [(r.route, r.status) for r in sim.received if r.method == "POST"] == [(1, 201), (0, 200)]
    assert len(sim.tasks) == 1  # the Idempotency-Key holds across routes


async def test_when_every_route_is_down_the_failure_is_temporary_and_names_both(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim)
    await sim.script(Fault.DROP)
    result = await channel.put_out(area_alert())
    assert result.outcome is SendOutcome.TEMPORARY_FAILURE
    assert result.failure is FailureKind.LINK_DOWN and result.failure.retryable
    assert sim.urls[0] in result.reason and sim.urls[1] in result.reason
    assert channel.health().state is HealthState.DOWN
    assert sim.tasks == {}


async def test_every_route_failing_with_503_is_temporary_with_the_retry_hint(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim)
    await sim.script(Fault.FAIL, status=503, count=2, retry_after_s=3)
    result = await channel.put_out(area_alert())
    assert result.outcome is SendOutcome.TEMPORARY_FAILURE and result.failure is FailureKind.REMOTE_ERROR
    assert result.retry_after_s == 3.0
    assert result.reason.count("503 Unavailable") == 2  # (a port may hold 503 too)


async def test_a_wrong_token_is_refused_for_good_without_trying_the_other_route(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim, token="wrong")
    result = await channel.put_out(area_alert())
    assert result.outcome is SendOutcome.PERMANENT_FAILURE and result.failure is FailureKind.REFUSED
    assert result.reason.startswith("401")
    assert [r.status for r in sim.received] == [401]
    assert sim.tasks == {}


async def test_an_area_the_operator_does_not_know_is_invalid_for_good(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim)
    result = await channel.put_out(area_alert(codes=("150302000000", "150399000000")))
    assert result.outcome is SendOutcome.PERMANENT_FAILURE and result.failure is FailureKind.INVALID
    assert "150399000000" in result.reason and result.reason.startswith("422")
    assert sim.tasks == {}


async def test_a_late_reporter_brings_evidence_only_after_its_delay(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim)
    await sim.script(Fault.LATE, seconds=0.6)
    started = time.monotonic()
    assert (await channel.put_out(area_alert())).outcome is SendOutcome.ACCEPTED
    seen = await collect(channel, lambda seen: any(e.sent for e in seen))
    assert time.monotonic() - started >= 0.6
    # before that only the create answer's figures: handsets targeted, none sent
    assert all(e.sent == 0 and e.targeted > 0 for e in seen if not e.sent)
    assert seen[-1].delivered > 0  # the delivery went on meanwhile; only the report was late


async def test_a_task_never_reported_stops_being_polled_at_the_horizon_and_says_so(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim, poll_horizon_s=0.4)
    await sim.script(Fault.SILENT)
    started = time.monotonic()
    result = await channel.put_out(area_alert())
    seen = await collect(channel, all_final())
    assert time.monotonic() - started >= 0.4
    for code, last in finals(seen).items():
        assert last.remote_id == result.remote_id and "horizon" in last.detail["stopped"]
        assert (last.targeted, last.sent) == (EXPECTED_TARGETED[code], 0)  # the last report, none sent
    assert channel.open_tasks == []
    polls = sum(r.method == "GET" for r in sim.received)
    await asyncio.sleep(0.2)
    assert sum(r.method == "GET" for r in sim.received) == polls  # polling really stopped


BAD: list[tuple[str, dict[str, Any]]] = [
    ("extra field", {"colour": "orange"}),
    ("text too long", {"text": "热" * 71}),
    ("area code of 11 digits", {"areas": [{"code": "15030200000", "name": "海勃湾区", "polygons": []}]}),
    ("time without offset", {"valid_from": "2017-07-11T16:00:00"}),
    ("priority as a string", {"priority": "1"}),
]


@pytest.mark.parametrize(("why", "change"), BAD, ids=[why for why, _ in BAD])
async def test_the_simulator_refuses_a_bad_body_with_422_and_stores_nothing(
    sim: OperatorGatewaySimulator, why: str, change: dict[str, Any]
) -> None:
    body = task_body(area_alert()) | change
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k-1"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(sim.url + "/v1/area-tasks", json=body, headers=headers) as response,
    ):
        document = await response.json(content_type=None)
        assert response.status == 422
        assert response.headers["Server"] == SERVER_HEADER
        assert response.content_type == "application/problem+json"
    assert set(document) == {"title", "detail"} and "\n" not in document["detail"]
    assert sim.tasks == {}


@pytest.mark.parametrize(
    ("headers", "data", "status"),
    [
        ({"Idempotency-Key": "k-1"}, None, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, None, 400),
        ({"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k 1"}, None, 400),
        ({"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k-1"}, b"{not json", 400),
    ],
    ids=["no token", "no key", "key with a space", "not JSON"],
)
async def test_the_simulator_refuses_a_bad_request(
    sim: OperatorGatewaySimulator, headers: dict[str, str], data: bytes | None, status: int
) -> None:
    payload = data if data is not None else json.dumps(task_body(area_alert())).encode()
    async with (
        aiohttp.ClientSession() as session,
        session.post(sim.url + "/v1/area-tasks", data=payload, headers=headers) as response,
    ):
        assert response.status == status
        assert "title" in await response.json(content_type=None)
    assert sim.tasks == {}


async def test_a_key_reused_for_another_body_is_a_conflict(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim)
    await channel.put_out(area_alert())
    result = await channel.put_out(area_alert(text=TEXT_UPDATE))  # same key, another text
    assert result.outcome is SendOutcome.PERMANENT_FAILURE and result.reason.startswith("409")
    assert len(sim.tasks) == 1


async def test_a_closed_channel_puts_nothing_out(
    sim: OperatorGatewaySimulator, channel_for: ChannelFor
) -> None:
    channel = channel_for(sim)
    await channel.close()
    result = await channel.put_out(area_alert())
    assert result.outcome is SendOutcome.TEMPORARY_FAILURE and result.failure is FailureKind.CLOSED
    assert sim.received == []
