"""The broadcast platform channel against the loopback platform SIMULATOR: real HTTP on 127.0.0.1, no mocks."""

from __future__ import annotations

import asyncio
import doctest
import io
import math
import struct
import wave
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aiohttp import web

from channels.area import AlertArea, AlertTexts, AreaAlert, AreaChannel, Evidence, EvidenceKind
from channels.base import FailureKind, HealthState, SendOutcome
from channels.broadcast_platform import client
from channels.broadcast_platform.client import (
    BroadcastPlatformChannel,
    BroadcastPlatformSettings,
    broadcast_body,
)
from tests.factories_area import wuhai_alert
from tests.ports import free_port
from warnings_svc.demo.peers.broadcast_platform import SERVER_HEADER, BroadcastPlatformSimulator, Fault
from warnings_svc.documents.speech import synthesise

HAIBOWAN, WUDA = "150302000000", "150304000000"
TERMINALS = {HAIBOWAN: 6, WUDA: 4}
TOKEN = "simulator-token"
SCRIPT = "各位居民请注意！乌海市气象台发布高温橙色预警。预计明天最高气温将升至三十七摄氏度以上。"


def area_alert(**changes: object) -> AreaAlert:
    """An orange heat warning for two districts of Wuhai, as the dispatcher would hand it over."""
    onset = datetime.now(UTC).replace(microsecond=0)
    return wuhai_alert(
        **{
            "key": "41-1/broadcast_platform/wuhai",
            "identifier": "15030041600000_20260709160000",
            "warning_id": 41,
            "onset": onset,
            "expires": onset + timedelta(hours=24),
            "areas": (AlertArea(HAIBOWAN, "海勃湾区", 320000), AlertArea(WUDA, "乌达区", 130000)),
            "texts": AlertTexts(
                headline="乌海市气象台发布高温橙色预警",
                sms="高温橙色预警",
                broadcast=SCRIPT,
                led="高温橙色预警",
            ),
            "update_number": 0,
        }
        | changes
    )


def tone_wav(seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A 440 Hz tone as a WAV file, for when espeak-ng is not installed."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(
            b"".join(
                struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
                for i in range(int(seconds * rate))
            )
        )
    return buffer.getvalue()


@pytest.fixture(scope="module")
async def audio_url() -> AsyncIterator[str]:
    """A small HTTP server on 127.0.0.1 serving the spoken script (or a tone) at /warning.wav, and a file that
    is not a WAV at /not-audio.wav."""
    spoken = await synthesise(SCRIPT)
    wav = spoken.wav if spoken is not None else tone_wav()

    async def serve_wav(request: web.Request) -> web.Response:
        return web.Response(body=wav, content_type="audio/wav")

    async def serve_text(request: web.Request) -> web.Response:
        return web.Response(text="not a wave file", content_type="audio/wav")

    app = web.Application()
    app.router.add_get("/warning.wav", serve_wav)
    app.router.add_get("/not-audio.wav", serve_text)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/warning.wav"
    await runner.cleanup()


def settings(*routes: str, **changes: object) -> BroadcastPlatformSettings:
    base = BroadcastPlatformSettings(
        routes=routes, token=TOKEN, poll_interval_s=0.02, request_timeout_s=2.0, connect_timeout_s=1.0
    )
    return replace(base, **changes)  # type: ignore[arg-type]


async def evidence_until_final(
    channel: BroadcastPlatformChannel, areas: int, *, limit_s: float = 5.0
) -> dict[str, Evidence]:
    """The channel's latest evidence per area, collected until every area's report is final."""
    latest: dict[str, Evidence] = {}

    async def collect() -> None:
        async for batch in channel.evidence():
            for report in batch:
                latest[report.area] = report
            if len(latest) == areas and all(r.final for r in latest.values()):
                return

    await asyncio.wait_for(collect(), limit_s)
    return latest


async def test_an_alert_with_audio_is_broadcast_and_evidence_comes_until_every_terminal_played(
    audio_url: str,
) -> None:
    async with BroadcastPlatformSimulator(TERMINALS, token=TOKEN) as sim:
        channel = BroadcastPlatformChannel(settings(sim.url))
        assert isinstance(channel, AreaChannel)
        alert = area_alert(audio_url=audio_url)
        result = await channel.put_out(alert)
        assert result.outcome is SendOutcome.ACCEPTED, result.reason
        assert result.route == sim.url and result.failure is None

        held = sim.broadcasts[result.remote_id]
        assert held.key == alert.key
        assert held.request.msg_type == "create" and held.request.severity == 2
        assert held.request.areas == [HAIBOWAN, WUDA] and held.request.script == SCRIPT
        assert held.request.language == "zho" and held.request.led_text == "高温橙色预警"
        assert held.audio_bytes > 1000 and held.audio_duration_s > 0.5  # the simulator fetched a real WAV

        latest = await evidence_until_final(channel, areas=2)
        await channel.close()
    for code, terminals in TERMINALS.items():
        report = latest[code]
        assert report.kind is EvidenceKind.AIRING and report.measured
        assert (report.targeted, report.delivered, report.final) == (terminals, terminals, True)
        assert report.remote_id == result.remote_id and report.key == alert.key
        assert report.identifier == alert.identifier
    assert held.state == "completed"


async def test_a_retried_alert_gets_the_broadcast_made_the_first_time() -> None:
    async with BroadcastPlatformSimulator(TERMINALS, token=TOKEN) as sim:
        channel = BroadcastPlatformChannel(settings(sim.url))
        alert = area_alert()  # one alert, sent twice: built twice, its onset could fall in another second
        first = await channel.put_out(alert)
        again = await channel.put_out(alert)
        await channel.close()
        assert first.remote_id == again.remote_id
        assert len(sim.broadcasts) == 1


async def test_terminals_that_fail_are_reported_and_the_area_is_still_final() -> None:
    async with BroadcastPlatformSimulator({HAIBOWAN: 20}, token=TOKEN, failure_share=0.5, seed=3) as sim:
        channel = BroadcastPlatformChannel(settings(sim.url))
        result = await channel.put_out(area_alert(areas=(AlertArea(HAIBOWAN, "海勃湾区", 320000),)))
        latest = await evidence_until_final(channel, areas=1)
        await channel.close()
    report = latest[HAIBOWAN]
    failed = int(report.detail["failed"])
    assert report.final and report.targeted == 20
    assert 0 < failed < 20 and report.delivered == 20 - failed
    assert sim.broadcasts[result.remote_id].areas[HAIBOWAN].failed == failed


async def test_an_update_replaces_the_broadcast_and_a_cancel_stops_it() -> None:
    # slow playing, so the first broadcast is still on air when the Update comes
    async with BroadcastPlatformSimulator(TERMINALS, token=TOKEN, play_interval_s=0.5) as sim:
        channel = BroadcastPlatformChannel(settings(sim.url))
        alert = await channel.put_out(area_alert())
        update = await channel.put_out(
            area_alert(
                key="41-2/broadcast_platform/wuhai",
                identifier="15030041600000_20260709180000",
                version=2,
                msg_type="Update",
                level="red",
                previous_remote_id=alert.remote_id,
                update_number=1,
            )
        )
        assert update.outcome is SendOutcome.ACCEPTED, update.reason
        assert update.remote_id != alert.remote_id
        assert sim.broadcasts[alert.remote_id].state == "superseded"
        new = sim.broadcasts[update.remote_id].request
        assert (new.msg_type, new.references, new.severity) == ("update", alert.remote_id, 1)

        cancel = await channel.put_out(
            area_alert(
                key="41-3/broadcast_platform/wuhai",
                identifier="15030041600000_20260709200000",
                version=3,
                msg_type="Cancel",
                previous_remote_id=update.remote_id,
                texts=AlertTexts(
                    headline="解除", sms="解除", broadcast="乌海市气象台解除高温预警。", led="高温预警解除"
                ),
            )
        )
        assert cancel.outcome is SendOutcome.ACCEPTED, cancel.reason
        stopped = sim.broadcasts[update.remote_id]
        assert stopped.state == "superseded"
        played_then = {code: a.played for code, a in stopped.areas.items()}
        await asyncio.sleep(0.6)  # a tick later nothing more of it has played
        assert {code: a.played for code, a in stopped.areas.items()} == played_then
        assert sim.broadcasts[cancel.remote_id].request.msg_type == "cancel"

        # stopping outright (DELETE) ends the cancellation notice too
        assert await channel.stop(cancel.remote_id)
        assert sim.broadcasts[cancel.remote_id].state == "stopped"
        await channel.close()


async def test_a_cancel_of_a_warning_that_never_reached_the_platform_sends_nothing() -> None:
    async with BroadcastPlatformSimulator(TERMINALS, token=TOKEN) as sim:
        channel = BroadcastPlatformChannel(settings(sim.url))
        result = await channel.put_out(area_alert(msg_type="Cancel", previous_remote_id=""))
        await channel.close()
        assert result.outcome is SendOutcome.ACCEPTED and result.remote_id == ""
        assert sim.requests == []


async def test_a_failing_route_fails_over_and_the_good_one_is_tried_first_next_time() -> None:
    async with (
        BroadcastPlatformSimulator(TERMINALS, token=TOKEN) as broken,
        BroadcastPlatformSimulator(TERMINALS, token=TOKEN) as good,
    ):
        broken.script(Fault.FAIL, times=5)
        channel = BroadcastPlatformChannel(settings(broken.url, good.url))
        first = await channel.put_out(area_alert())
        assert first.outcome is SendOutcome.ACCEPTED and first.route == good.url
        assert broken.requests == [("POST", "/v1/broadcasts", 500)]
        assert channel.health().state is HealthState.DEGRADED

        second = await channel.put_out(area_alert(key="42-1/broadcast_platform/wuhai"))
        assert second.route == good.url
        assert len(broken.requests) == 1  # the last known-good route went first

        # a dropped connection and a slow answer count as the route failing too
        channel_b = BroadcastPlatformChannel(settings(broken.url, good.url, request_timeout_s=0.3))
        broken._faults.clear()
        broken.script(Fault.DROP)
        dropped = await channel_b.put_out(area_alert(key="43-1/broadcast_platform/wuhai"))
        assert dropped.route == good.url, dropped.reason
        broken.script(Fault.SLOW, delay_s=1.0)
        channel_c = BroadcastPlatformChannel(settings(broken.url, good.url, request_timeout_s=0.3))
        slow = await channel_c.put_out(area_alert(key="44-1/broadcast_platform/wuhai"))
        assert slow.route == good.url, slow.reason
        for c in (channel, channel_b, channel_c):
            await c.close()


async def test_when_every_route_is_down_the_failure_is_temporary_with_each_reason() -> None:
    async with BroadcastPlatformSimulator(TERMINALS, token=TOKEN) as sim:
        sim.script(Fault.REFUSE, status=503, retry_after_s=7)
        nowhere = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        channel = BroadcastPlatformChannel(settings(nowhere, sim.url))
        result = await channel.put_out(area_alert())
        health = channel.health()
        await channel.close()
    assert result.outcome is SendOutcome.TEMPORARY_FAILURE
    assert result.failure is FailureKind.REMOTE_ERROR and result.failure.retryable
    assert nowhere in result.reason and "ClientConnectorError" in result.reason
    assert f"{sim.url}: HTTP 503" in result.reason
    assert result.retry_after_s == 7.0
    assert result.route == sim.url  # the route that failed last
    assert health.state is HealthState.DOWN and health.links_up == 0


async def test_throttling_is_temporary_and_not_failed_over() -> None:
    async with (
        BroadcastPlatformSimulator(TERMINALS, token=TOKEN) as first,
        BroadcastPlatformSimulator(TERMINALS, token=TOKEN) as second,
    ):
        first.script(Fault.REFUSE, status=429, retry_after_s=3)
        channel = BroadcastPlatformChannel(settings(first.url, second.url))
        result = await channel.put_out(area_alert())
        await channel.close()
        assert (result.outcome, result.failure, result.retry_after_s) == (
            SendOutcome.TEMPORARY_FAILURE,
            FailureKind.THROTTLED,
            3.0,
        )
        assert second.requests == [] and result.route == first.url


async def test_an_invalid_body_is_refused_with_422_and_the_failure_is_permanent(audio_url: str) -> None:
    async with BroadcastPlatformSimulator(TERMINALS, token=TOKEN) as sim:
        channel = BroadcastPlatformChannel(settings(sim.url))
        bad_area = await channel.put_out(area_alert(areas=(AlertArea("1503", "乌海", 1),)))
        not_wav = await channel.put_out(
            area_alert(
                key="45-1/broadcast_platform/wuhai", audio_url=audio_url.replace("warning", "not-audio")
            )
        )
        too_long = await channel.put_out(
            area_alert(
                key="46-1/broadcast_platform/wuhai",
                texts=AlertTexts(headline="h", sms="s", broadcast="预" * 2001, led="l"),
            )
        )
        await channel.close()
        for result in (bad_area, not_wav, too_long):
            assert result.outcome is SendOutcome.PERMANENT_FAILURE
            assert result.failure is FailureKind.REFUSED and result.reason.startswith("HTTP 422")
        assert "not a WAV" in not_wav.reason
        assert [status for _, _, status in sim.requests] == [422, 422, 422]
        assert sim.broadcasts == {}


async def test_the_simulator_checks_every_field_and_says_what_it_is() -> None:
    body = broadcast_body(area_alert())
    async with BroadcastPlatformSimulator(TERMINALS, token=TOKEN) as sim, aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": "k"}
        cases = {
            "extra field": {**body, "colour": "orange"},
            "no offset": {**body, "start": "2026-07-09T08:00:00"},
            "ends before it starts": {**body, "end": body["start"]},
            "repeated area": {**body, "areas": [HAIBOWAN, HAIBOWAN]},
            "update without references": {**body, "msg_type": "update"},
            "severity 5": {**body, "severity": 5},
            "string priority": {**body, "priority": "1"},
        }
        for case, bad in cases.items():
            async with http.post(sim.url + "/v1/broadcasts", json=bad, headers=headers) as response:
                assert response.status == 422, case
                assert response.content_type == "application/problem+json"
                assert "SIMULATOR" in response.headers["Server"] == SERVER_HEADER
        async with http.post(
            sim.url + "/v1/broadcasts", json=body, headers={"Idempotency-Key": "k"}
        ) as response:
            assert response.status == 401
        async with http.post(sim.url + "/v1/broadcasts", json=body, headers=headers) as response:
            assert response.status == 201
        async with http.post(
            sim.url + "/v1/broadcasts", json={**body, "script": "另一段"}, headers=headers
        ) as response:
            assert response.status == 409  # the same key with another body
        async with http.get(sim.url + "/v1/broadcasts/sim-999", headers=headers) as response:
            assert response.status == 404


def test_the_client_examples_hold() -> None:
    result = doctest.testmod(client)
    assert result.attempted >= 6 and result.failed == 0
