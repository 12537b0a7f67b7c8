"""CbcChannel against the loopback CBC simulator over 127.0.0.1: real HTTP, the ECBE schema checked on every POST."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from channels.area import AlertArea, AlertTexts, AreaAlert, AreaChannel, EvidenceKind
from channels.base import FailureKind, HealthState, SendOutcome
from channels.cbs.ecbe import CbcChannel, parse_remote_id
from channels.cbs.pages import GeoScope, SerialNumber, split_pages
from tests.factories_area import wuhai_alert
from warnings_svc.demo.peers.cbc import SERVER_HEADER, CbcSimulator, body_problem, load_validator

WARNING_ZH = (
    "乌海市气象台发布高温橙色预警信号：预计未来24小时海勃湾区、乌达区最高气温将升至40℃以上，请注意防暑降温。"
)
AREAS = (
    AlertArea("150302000000", "海勃湾区", 321_000),
    AlertArea("150304000000", "乌达区", 145_555),
)


def chinese_text(n: int) -> str:
    """A Chinese warning text of exactly n characters."""
    return (WARNING_ZH * (n // len(WARNING_ZH) + 1))[:n]


def area_alert(**changes: Any) -> AreaAlert:
    """A red heat warning for two districts of Wuhai, version 1, with a 150-character description."""
    now = datetime.now(UTC)
    return wuhai_alert(
        **{
            "key": "7-1/cbs/cbc-a",
            "identifier": "urn:oid:2.49.0.1.156.0.2026.7.1",
            "warning_id": 7,
            "level": "red",
            "severity": "Extreme",
            "urgency": "Immediate",
            "onset": now,
            "expires": now + timedelta(hours=6),
            "areas": AREAS,
            "texts": AlertTexts(
                headline="高温红色预警",
                sms=chinese_text(70),
                broadcast="",
                led="",
                description=chinese_text(150),
            ),
            "priority": 3,
            "update_number": 0,
        }
        | changes
    )


def update_of(alert: AreaAlert, remote_id: str, version: int = 2, **changes: Any) -> AreaAlert:
    """The next version of a warning, naming what the target has."""
    return dataclasses.replace(
        alert,
        key=f"{alert.warning_id}-{version}/cbs/cbc-a",
        version=version,
        msg_type="Update",
        previous_remote_id=remote_id,
        update_number=version - 1,
        **changes,
    )


@pytest.fixture
async def sim() -> AsyncIterator[CbcSimulator]:
    async with CbcSimulator() as simulator:
        yield simulator


@pytest.fixture
async def second_sim() -> AsyncIterator[CbcSimulator]:
    async with CbcSimulator() as simulator:
        yield simulator


async def closed_url() -> str:
    """A loopback URL where nothing listens (a simulator started and stopped)."""
    async with CbcSimulator() as gone:
        url = gone.url
    return url


def post_bodies(sim: CbcSimulator) -> list[dict[str, Any]]:
    return [r.body for r in sim.received if r.method == "POST"]


async def test_an_alert_is_one_schema_valid_post_with_its_pages_character_set_and_serial(
    sim: CbcSimulator,
) -> None:
    channel = CbcChannel("cbc-a", [sim.url])
    assert isinstance(channel, AreaChannel)
    alert = area_alert()
    try:
        result = await channel.put_out(alert)
    finally:
        await channel.close()
    assert result.outcome is SendOutcome.ACCEPTED, result.reason
    assert result.route == sim.url
    [body] = sim.accepted
    assert body_problem(load_validator(), body) == ""
    message = body["smscb_message"]
    payload = message["payload"]["payload_decoded"]
    assert payload == {"character_set": "ucs2", "data_utf8": chinese_text(150), "language": "zh"}
    assert len(split_pages(payload["data_utf8"]).pages) == 4  # 41 + 41 + 41 + 27
    assert message["message_id"] == 4372  # red: extreme, immediate, likely
    assert message["serial_nr"] == {
        "serial_nr_decoded": {"geo_scope": "plmn_wide", "msg_code": 7, "update_nr": 0}
    }
    assert body["category"] == "high_priority"
    assert body["scope"] == {"scope_plmn": {}}
    assert body["cbe_name"] == "wuhai-warnings"
    # six hours at one broadcast every 32 x 1.883 s
    assert 355 <= body["num_of_bcast"] <= 359
    assert parse_remote_id(result.remote_id) == (4372, SerialNumber(GeoScope.PLMN, 7, 0))


async def test_a_gsm7_text_goes_as_gsm_and_a_blue_warning_as_normal(sim: CbcSimulator) -> None:
    channel = CbcChannel("cbc-a", [sim.url], num_of_bcast=0)
    alert = area_alert(level="blue", texts=AlertTexts("Heat", "Heat warning", "", "", "Heat warning {blue}"))
    try:
        result = await channel.put_out(alert)
    finally:
        await channel.close()
    assert result.outcome is SendOutcome.ACCEPTED, result.reason
    [body] = sim.accepted
    assert body["smscb_message"]["payload"]["payload_decoded"]["character_set"] == "gsm"
    assert body["smscb_message"]["message_id"] == 4378
    assert body["category"] == "normal" and body["num_of_bcast"] == 0


async def test_an_update_replaces_the_message_with_the_update_number_one_more(sim: CbcSimulator) -> None:
    channel = CbcChannel("cbc-a", [sim.url])
    alert = area_alert()
    try:
        first = await channel.put_out(alert)
        texts = dataclasses.replace(alert.texts, description=chinese_text(60))
        second = await channel.put_out(update_of(alert, first.remote_id, texts=texts))
    finally:
        await channel.close()
    assert second.outcome is SendOutcome.ACCEPTED, second.reason
    assert [r.method for r in sim.received] == ["POST", "DELETE", "POST"]
    assert sim.deleted == [4372]
    serials = [b["smscb_message"]["serial_nr"]["serial_nr_decoded"] for b in sim.accepted]
    assert [s["update_nr"] for s in serials] == [0, 1]
    assert serials[0]["msg_code"] == serials[1]["msg_code"] == 7
    assert parse_remote_id(second.remote_id) == (4372, SerialNumber(GeoScope.PLMN, 7, 1))
    assert list(sim.messages) == [4372]
    assert sim.messages[4372]["smscb_message"]["payload"]["payload_decoded"]["data_utf8"] == chinese_text(60)


async def test_the_update_number_wraps_from_15_to_0(sim: CbcSimulator) -> None:
    channel = CbcChannel("cbc-a", [sim.url])
    alert = area_alert(update_number=15)
    try:
        first = await channel.put_out(alert)
        second = await channel.put_out(update_of(alert, first.remote_id, version=17))
    finally:
        await channel.close()
    assert [parse_remote_id(r.remote_id)[1].update_number for r in (first, second)] == [15, 0]


async def test_a_cancel_deletes_the_message_it_names(sim: CbcSimulator) -> None:
    channel = CbcChannel("cbc-a", [sim.url])
    alert = area_alert(level="orange")
    try:
        first = await channel.put_out(alert)
        cancel = dataclasses.replace(
            alert, key="7-2/cbs/cbc-a", version=2, msg_type="Cancel", previous_remote_id=first.remote_id
        )
        result = await channel.put_out(cancel)
        again = await channel.put_out(dataclasses.replace(cancel, key="7-2/cbs/cbc-a-retry"))
    finally:
        await channel.close()
    assert result.outcome is SendOutcome.ACCEPTED, result.reason
    assert result.remote_id == first.remote_id
    assert sim.deleted == [4374, 4374]
    assert sim.messages == {}
    # the message is gone already (404): a repeated Cancel is still a success
    assert again.outcome is SendOutcome.ACCEPTED and sim.received[-1].status == 404


async def test_an_update_or_cancel_after_a_restart_is_still_sent(sim: CbcSimulator) -> None:
    alert = area_alert()
    before = CbcChannel("cbc-a", [sim.url])
    try:
        first = await before.put_out(alert)
    finally:
        await before.close()
    after = CbcChannel("cbc-a", [sim.url])  # a new process: it never saw first.remote_id
    try:
        result = await after.put_out(update_of(alert, first.remote_id))
    finally:
        await after.close()
    assert result.outcome is SendOutcome.ACCEPTED, result.reason
    assert sim.deleted == [4372]
    assert sim.accepted[-1]["smscb_message"]["serial_nr"]["serial_nr_decoded"]["update_nr"] == 1


@pytest.mark.parametrize("fault", ["down", "fail", "drop", "slow"])
async def test_when_the_primary_fails_the_secondary_takes_it_and_is_tried_first_next_time(
    sim: CbcSimulator, second_sim: CbcSimulator, fault: str
) -> None:
    primary = await closed_url() if fault == "down" else sim.url
    if fault == "slow":
        sim.script("slow", delay_s=1.0)
    elif fault != "down":
        sim.script("fail" if fault == "fail" else "drop")
    channel = CbcChannel("cbc-a", [primary, second_sim.url], request_timeout_s=0.4)
    alert = area_alert()
    try:
        first = await channel.put_out(alert)
        tried_on_primary = len(sim.received)
        second = await channel.put_out(update_of(alert, first.remote_id))
        health = channel.health()
    finally:
        await channel.close()
    assert first.outcome is SendOutcome.ACCEPTED, first.reason
    assert first.route == second_sim.url and second.route == second_sim.url
    assert [r.method for r in second_sim.received] == ["POST", "DELETE", "POST"]
    assert len(sim.received) == tried_on_primary  # the primary was not tried again
    assert health.state is HealthState.DEGRADED and health.links_up == 1 and health.links_total == 2


async def test_when_every_route_fails_the_alert_fails_for_now_with_each_routes_reason(
    sim: CbcSimulator, second_sim: CbcSimulator
) -> None:
    down = await closed_url()
    sim.script("fail", status=500)
    second_sim.script("slow", delay_s=1.0)
    channel = CbcChannel("cbc-a", [down, sim.url, second_sim.url], request_timeout_s=0.3)
    try:
        result = await channel.put_out(area_alert())
        health = channel.health()
    finally:
        await channel.close()
    assert result.outcome is SendOutcome.TEMPORARY_FAILURE
    assert result.failure is FailureKind.TIMEOUT  # one route may have the message
    assert result.failure.retryable
    assert f"{down}: ClientConnectorError" in result.reason
    assert f"{sim.url}: HTTP 500" in result.reason
    assert f"{second_sim.url}: no answer in time" in result.reason
    assert result.route == second_sim.url
    assert health.state is HealthState.DOWN and health.links_up == 0


async def test_routes_that_are_only_down_fail_as_link_down(sim: CbcSimulator) -> None:
    sim.script("drop")
    channel = CbcChannel("cbc-a", [await closed_url(), sim.url])
    try:
        result = await channel.put_out(area_alert())
    finally:
        await channel.close()
    assert result.outcome is SendOutcome.TEMPORARY_FAILURE and result.failure is FailureKind.LINK_DOWN
    assert result.reason.count("http://127.0.0.1:") == 2


@pytest.mark.parametrize(("status", "kind"), [(403, FailureKind.REFUSED), (400, FailureKind.INVALID)])
async def test_a_4xx_is_a_permanent_failure_and_no_other_route_is_tried(
    sim: CbcSimulator, second_sim: CbcSimulator, status: int, kind: FailureKind
) -> None:
    sim.script("refuse", status=status)
    channel = CbcChannel("cbc-a", [sim.url, second_sim.url])
    try:
        result = await channel.put_out(area_alert())
    finally:
        await channel.close()
    assert result.outcome is SendOutcome.PERMANENT_FAILURE
    assert result.failure is kind and not kind.retryable
    assert result.reason.startswith(f"HTTP {status}")
    assert result.route == sim.url
    assert second_sim.received == []


async def test_a_message_id_in_use_by_another_warning_is_refused(sim: CbcSimulator) -> None:
    channel = CbcChannel("cbc-a", [sim.url])
    try:
        await channel.put_out(area_alert())
        other = await channel.put_out(area_alert(key="8-1/cbs/cbc-a", warning_id=8, hazard="sandstorm"))
    finally:
        await channel.close()
    assert other.outcome is SendOutcome.PERMANENT_FAILURE and other.failure is FailureKind.REFUSED
    assert "409" in other.reason


async def test_a_retry_after_a_lost_answer_takes_the_cbcs_409_as_its_own_message(sim: CbcSimulator) -> None:
    sim.script("slow", delay_s=0.6, times=1)  # the CBC creates the message, but answers too late
    channel = CbcChannel("cbc-a", [sim.url], request_timeout_s=0.3)
    alert = area_alert()
    try:
        lost = await channel.put_out(alert)
        for _ in range(60):  # the slow handler finishes and stores the message (bounded wait)
            if sim.received:
                break
            await asyncio.sleep(0.05)
        retried = await channel.put_out(alert)
    finally:
        await channel.close()
    assert lost.outcome is SendOutcome.TEMPORARY_FAILURE and lost.failure is FailureKind.TIMEOUT
    assert list(sim.messages) == [4372]
    assert retried.outcome is SendOutcome.ACCEPTED, retried.reason
    assert [r.status for r in sim.received] == [201, 409]


async def test_a_repeated_put_out_of_an_accepted_alert_sends_nothing_again(sim: CbcSimulator) -> None:
    channel = CbcChannel("cbc-a", [sim.url])
    try:
        alert = area_alert()  # one alert, sent twice (built twice, its times would differ)
        first = await channel.put_out(alert)
        again = await channel.put_out(alert)
    finally:
        await channel.close()
    assert again == first and len(sim.received) == 1


async def test_an_update_waits_until_the_cbc_answered_the_alert(sim: CbcSimulator) -> None:
    sim.script("slow", delay_s=0.3, times=1)
    channel = CbcChannel("cbc-a", [sim.url])
    alert = area_alert()
    remote_id = "4372:" + str(SerialNumber(GeoScope.PLMN, 7, 0).encode())  # what the Alert will be given
    try:
        results = await asyncio.gather(channel.put_out(alert), channel.put_out(update_of(alert, remote_id)))
    finally:
        await channel.close()
    assert [r.outcome for r in results] == [SendOutcome.ACCEPTED, SendOutcome.ACCEPTED]
    assert [(r.method, r.status) for r in sim.received] == [("POST", 201), ("DELETE", 200), ("POST", 201)]
    # every request came in only after the one before was answered: without the lock the Update's DELETE
    # would reach the CBC while the Alert's slow POST was still waiting
    for earlier, later in zip(sim.received, sim.received[1:], strict=False):
        assert later.arrived_at >= earlier.answered_at
    assert sim.received[0].answered_at - sim.received[0].arrived_at >= 0.25  # the slow one was the Alert


async def test_evidence_is_an_estimate_per_area_once_the_cbc_took_the_alert(sim: CbcSimulator) -> None:
    channel = CbcChannel("cbc-a", [sim.url], reach_share=0.9)
    alert = area_alert()
    try:
        result = await channel.put_out(alert)
        stream = channel.evidence()
        batch = await asyncio.wait_for(anext(stream), 2.0)
    finally:
        await channel.close()
    assert [e.area for e in batch] == ["150302000000", "150304000000"]
    assert [(e.targeted, e.delivered) for e in batch] == [(321_000, 288_900), (145_555, 131_000)]
    for e in batch:
        assert e.kind is EvidenceKind.BROADCAST and e.measured is False and e.final is True
        assert e.key == alert.key and e.remote_id == result.remote_id
    # after close the stream ends
    assert await asyncio.wait_for(anext(stream, None), 2.0) is None


async def test_no_evidence_and_no_request_for_a_text_of_16_pages(sim: CbcSimulator) -> None:
    channel = CbcChannel("cbc-a", [sim.url])
    alert = area_alert(texts=AlertTexts("高温", "", "", "", chinese_text(616)))
    try:
        result = await channel.put_out(alert)
        stream = channel.evidence()
    finally:
        await channel.close()
    assert result.outcome is SendOutcome.PERMANENT_FAILURE and result.failure is FailureKind.INVALID
    assert "616 characters" in result.reason
    assert sim.received == []
    assert await asyncio.wait_for(anext(stream, None), 2.0) is None


async def test_the_simulator_refuses_an_invalid_body_with_one_line(sim: CbcSimulator) -> None:
    valid: dict[str, Any] = {
        "cbe_name": "by-hand",
        "repetition_period": 10,
        "scope": {"scope_plmn": {}},
        "smscb_message": {
            "serial_nr": {"serial_nr_encoded": 0x52C2},
            "message_id": 4380,
            "payload": {"payload_decoded": {"character_set": "gsm", "data_utf8": "test"}},
        },
    }
    no_cbe = {k: v for k, v in valid.items() if k != "cbe_name"}
    # the shape the published smscb.schema.json suggests, which osmo-cbc's parser does not read
    bare_serial = {**valid, "smscb_message": {**valid["smscb_message"], "serial_nr": 0x52C2}}
    too_long = {
        **valid,
        "smscb_message": {
            **valid["smscb_message"],
            "payload": {"payload_decoded": {"character_set": "gsm", "data_utf8": "x" * 1396}},
        },
    }
    answers = []
    async with aiohttp.ClientSession() as session:
        for body in (no_cbe, bare_serial, too_long, valid):
            async with session.post(sim.url + "/api/ecbe/v1/message", json=body) as response:
                answers.append((response.status, await response.text(), response.headers["Server"]))
        async with session.post(sim.url + "/api/ecbe/v1/message", data=b"{not json") as response:
            answers.append((response.status, await response.text(), response.headers["Server"]))
    assert [a[0] for a in answers] == [400, 400, 400, 201, 400]
    assert "cbe_name" in answers[0][1]
    assert "serial_nr" in answers[1][1]
    assert "16 CBS pages" in answers[2][1]
    assert all("\n" not in a[1] for a in answers)
    assert all(a[2] == SERVER_HEADER and "SIMULATOR" in a[2] for a in answers)
    assert sim.accepted == [valid]
