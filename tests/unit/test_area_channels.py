"""The pure parts of the area channels: terminals' acknowledgements as evidence, what a peer's report may be,
the area delivery state table, retry waits, what an expiry puts out."""

from __future__ import annotations

import json
import math
import random
from datetime import UTC, datetime

import pytest

from channels.area import AlertArea, AlertTexts, Evidence, EvidenceKind
from channels.mqtt.terminals import parse_ack
from warnings_svc.dissemination.area_dispatch import AreaDispatchOptions, retry_delay
from warnings_svc.dissemination.area_outbox import ENDED, alert_content, alert_of, evidence_problem, peer_text
from warnings_svc.dissemination.area_states import (
    AREA_FINAL_STATES,
    AreaDeliveryState,
    AreaDeliveryStateError,
    area_transition,
)


def _ack(
    identifier: object = "15030041600000_20260701040000", played_at: object = "2026-07-01T12:00:05+08:00"
) -> bytes:
    return json.dumps({"identifier": identifier, "played_at": played_at}).encode()


def test_a_terminals_acknowledgement_is_measured_playback_evidence() -> None:
    e = parse_ack("wuhai/ack/ls-150304011000-01", _ack(), "wuhai")
    assert (e.kind, e.measured, e.terminal_id, e.delivered) == (
        EvidenceKind.PLAYBACK,
        True,
        "ls-150304011000-01",
        1,
    )
    assert e.at == datetime(2026, 7, 1, 4, 0, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("topic", "payload", "says"),
    [
        ("wuhai/alerts/150304011000", _ack(), "not an acknowledgement topic"),
        ("wuhai/ack/bad id", _ack(), "bad terminal id"),
        ("wuhai/ack/t1", b"\xff" * 10, "not JSON"),
        ("wuhai/ack/t1", b"[1]", "not a JSON object"),
        ("wuhai/ack/t1", b"x" * 2000, "bytes"),
        ("wuhai/ack/t1", _ack(identifier=""), "identifier"),
        ("wuhai/ack/t1", _ack(identifier=7), "identifier"),
        ("wuhai/ack/t1", _ack(identifier="a\u0000b"), "control characters"),
        ("wuhai/ack/t1", _ack(played_at="2026-07-01T12:00:05"), "offset"),
        ("wuhai/ack/t1", _ack(played_at="yesterday"), "ISO 8601"),
        ("wuhai/ack/t1", _ack(played_at="0001-01-01T00:00:00+01:00"), "not a time"),
    ],
)
def test_an_acknowledgement_that_is_not_one_is_refused_in_one_line(
    topic: str, payload: bytes, says: str
) -> None:
    with pytest.raises(ValueError, match=says) as refused:
        parse_ack(topic, payload, "wuhai")
    assert "\n" not in str(refused.value)


def _evidence(**changes: object) -> Evidence:
    base: dict[str, object] = {"key": "1-1/area_sms/x", "remote_id": "t", "kind": EvidenceKind.HANDSETS,
                               "area": "150302000000", "measured": True, "targeted": 10, "delivered": 9}  # fmt: skip
    return Evidence(**(base | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({}, ""),
        ({"area": ""}, ""),
        ({"area": "1503"}, "12-digit"),
        ({"area": "１５０３０２０００００"}, "12-digit"),
        ({"delivered": -1}, "count"),
        ({"targeted": 10**13}, "count"),
        ({"detail": {"people": "many"}}, "people"),
        ({"detail": {"note": "a\u0000b"}}, "NUL"),
        ({"remote_id": "\ud800"}, "NUL"),
    ],
)
def test_what_a_peer_reports_is_checked_before_it_is_stored(changes: dict[str, object], says: str) -> None:
    problem = evidence_problem(_evidence(**changes))
    assert (says in problem) if says else problem == ""


def test_a_peers_words_are_stored_without_what_postgresql_refuses() -> None:
    assert peer_text("bad\x00answer\ud800", 100) == "badanswer"
    assert len(peer_text("x" * 5000, 500)) == 500


def test_the_area_delivery_states_follow_one_table() -> None:
    assert area_transition("pending", "claim") is AreaDeliveryState.sending
    assert area_transition("sending", "skip") is AreaDeliveryState.done
    assert area_transition("sending", "retry") is AreaDeliveryState.pending
    assert {AreaDeliveryState.done, AreaDeliveryState.dead, AreaDeliveryState.dropped} == AREA_FINAL_STATES
    for state, event in (("done", "claim"), ("dropped", "accept"), ("pending", "accept"), ("sending", "fly")):
        with pytest.raises(AreaDeliveryStateError):
            area_transition(state, event)


def test_a_peers_retry_hint_is_capped_and_a_senseless_one_ignored() -> None:
    options = AreaDispatchOptions(retry_base_s=1.0, retry_cap_s=60.0)
    assert retry_delay(86_400.0, 1, options, random.Random(1)) == 60.0
    assert retry_delay(2.5, 1, options, random.Random(1)) == 2.5
    for senseless in (math.inf, math.nan, -5.0, None):
        assert 0.0 <= retry_delay(senseless, 3, options, random.Random(1)) <= 4.0  # backoff: up to 1 x 2^2


def test_an_expiry_goes_out_as_a_cancel_that_says_the_warning_ended() -> None:
    content = alert_content(
        identifier="15030041600000_20260701040000", warning_id=12, version=2, status="Actual", hazard="sandstorm",
        level="orange", severity="Severe", urgency="Expected", onset=datetime(2026, 7, 1, tzinfo=UTC),
        expires=datetime(2026, 7, 2, tzinfo=UTC), areas=[AlertArea("150302000000", "海勃湾区", 300_000)],
        texts=AlertTexts(headline="乌海市气象台发布沙尘暴橙色预警", sms="短信", broadcast="广播稿", led="显示屏"),
    )  # fmt: skip
    alert = alert_of(
        content, key="12-2/mqtt/t/expire", msg_type="Expire", previous_remote_id="x", update_number=0
    )
    assert (alert.msg_type, alert.expired) == ("Cancel", True)
    assert alert.texts.headline == "乌海市气象台发布沙尘暴橙色预警" + ENDED and alert.texts.broadcast == ""
    again = alert_of(content, key="12-2/mqtt/t", msg_type="Update", previous_remote_id="x", update_number=1)
    assert (again.msg_type, again.expired, again.texts.broadcast) == ("Update", False, "广播稿")
