"""The operator area SMS protocol as pure functions: the client's bodies, the simulator's models and figures."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from pydantic import ValidationError

from channels.area_sms.client import RouteFailure, combine_failures
from channels.area_sms.protocol import (
    ProtocolError,
    TaskState,
    alert_problem,
    failure_of_status,
    parse_task,
    task_body,
    text_problem,
)
from channels.base import FailureKind
from tests.factories_area import HAIBOWAN_POLYGON, TEXT_ALERT, area_alert
from warnings_svc.demo.peers.operator_gateway import (
    OPERATOR_SHARES,
    TaskIn,
    figures_after,
    handsets_in,
    polygon_problem,
)


def good_body() -> dict[str, Any]:
    """A valid create body, as the client builds it."""
    return task_body(area_alert())


def test_the_clients_body_carries_the_alert_and_the_simulators_model_accepts_it() -> None:
    alert = area_alert()
    body = task_body(alert)
    assert body == {
        "identifier": alert.identifier,
        "msg_type": "Alert",
        "text": TEXT_ALERT,
        "areas": [
            {"code": "150302000000", "name": "海勃湾区", "polygons": [HAIBOWAN_POLYGON]},
            {"code": "150303000000", "name": "海南区", "polygons": []},
            {"code": "150304000000", "name": "乌达区", "polygons": []},
        ],
        "valid_from": alert.onset.isoformat(),
        "valid_until": alert.expires.isoformat(),
        "priority": 1,
        "status": "Actual",
    }
    assert body["valid_from"].endswith("+08:00")
    parsed = TaskIn.model_validate_json(json.dumps(body), strict=True)
    assert parsed.valid_until == alert.expires


def test_an_update_body_says_update() -> None:
    body = task_body(area_alert(msg_type="Update", previous_remote_id="t-1"))
    assert body["msg_type"] == "Update"
    assert TaskIn.model_validate_json(json.dumps(body), strict=True).msg_type == "Update"


BAD_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("an extra field", {"colour": "orange"}),
    ("a text of 71 characters", {"text": "热" * 71}),
    ("an empty text", {"text": ""}),
    ("a character outside UCS2", {"text": "高温预警🔥"}),
    ("an 11-digit area code", {"areas": [{"code": "15030200000", "name": "海勃湾区", "polygons": []}]}),
    ("no areas", {"areas": []}),
    (
        "an area with an extra field",
        {"areas": [{"code": "150302000000", "name": "x", "polygons": [], "pop": 1}]},
    ),
    (
        "an unclosed polygon",
        {"areas": [{"code": "150302000000", "name": "x", "polygons": ["1,1 1,2 2,2 2,1"]}]},
    ),
    (
        "a polygon out of range",
        {"areas": [{"code": "150302000000", "name": "x", "polygons": ["91,1 1,2 2,2 91,1"]}]},
    ),
    (
        "an area twice",
        {"areas": [{"code": "150302000000", "name": "x"}, {"code": "150302000000", "name": "y"}]},
    ),
    ("a time without offset", {"valid_from": "2017-07-11T16:00:00"}),
    ("validity ending before it starts", {"valid_until": "2000-01-01T00:00:00+08:00"}),
    ("a priority as a string", {"priority": "1"}),
    ("a priority of 4", {"priority": 4}),
    ("a CAP status it does not take", {"status": "Draft"}),
    ("a Cancel posted", {"msg_type": "Cancel"}),
    ("an identifier with a space", {"identifier": "urn oid"}),
]


@pytest.mark.parametrize(("why", "change"), BAD_BODIES, ids=[why for why, _ in BAD_BODIES])
def test_the_simulators_model_refuses_a_body_with(why: str, change: dict[str, Any]) -> None:
    body = good_body() | change
    with pytest.raises(ValidationError):
        TaskIn.model_validate_json(json.dumps(body), strict=True)


@pytest.mark.parametrize("name", list(good_body()))
def test_a_body_missing_a_field_is_refused(name: str) -> None:
    body = good_body()
    del body[name]
    with pytest.raises(ValidationError):
        TaskIn.model_validate_json(json.dumps(body), strict=True)


def test_seventy_ucs2_characters_fit_and_seventy_one_do_not() -> None:
    assert text_problem("热" * 70) == ""
    assert "71 characters" in text_problem("热" * 71)
    assert "UCS2" in text_problem("🔥")
    assert text_problem("") == "text is empty"


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"texts": dataclasses.replace(area_alert().texts, sms="热" * 71)}, "71 characters"),
        ({"areas": ()}, "no areas"),
        ({"key": "has space"}, "Idempotency-Key"),
        ({"msg_type": "Cancel"}, "names no task"),
    ],
)
def test_an_alert_no_operator_could_take_is_found_before_any_request(
    change: dict[str, Any], words: str
) -> None:
    assert words in alert_problem(dataclasses.replace(area_alert(), **change))


def test_a_sound_alert_has_no_problem() -> None:
    assert alert_problem(area_alert()) == ""
    assert alert_problem(area_alert(msg_type="Cancel", previous_remote_id="t-1")) == ""


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, None),
        (201, None),
        (400, FailureKind.INVALID),
        (401, FailureKind.REFUSED),
        (403, FailureKind.REFUSED),
        (404, FailureKind.REFUSED),
        (409, FailureKind.REFUSED),
        (413, FailureKind.INVALID),
        (422, FailureKind.INVALID),
        (429, FailureKind.THROTTLED),
        (500, FailureKind.REMOTE_ERROR),
        (503, FailureKind.REMOTE_ERROR),
    ],
)
def test_each_status_has_its_failure_kind(status: int, kind: FailureKind | None) -> None:
    assert failure_of_status(status) is kind


def test_only_throttling_and_server_errors_are_retryable() -> None:
    retryable = {s for s in range(400, 600) if (k := failure_of_status(s)) is not None and k.retryable}
    assert retryable == {429} | set(range(500, 600))


def test_when_every_route_failed_the_reason_names_each_and_the_kind_is_the_most_specific() -> None:
    kind, reason, retry = combine_failures(
        [
            RouteFailure("http://a", FailureKind.LINK_DOWN, "connection refused"),
            RouteFailure("http://b", FailureKind.THROTTLED, "429 Too many requests", 7.0),
        ]
    )
    assert kind is FailureKind.THROTTLED
    assert reason == "http://a: connection refused; http://b: 429 Too many requests"
    assert retry == 7.0
    assert combine_failures([RouteFailure("http://a", FailureKind.TIMEOUT, "t")])[0] is FailureKind.TIMEOUT


TASK = {
    "task_id": "t-1",
    "state": "sending",
    "revision": 2,
    "areas": [{"code": "150302000000", "targeted": 10, "sent": 8, "delivered": 7, "unreachable": 1}],
    "updated_at": "2017-07-11T16:00:00+08:00",
}


def test_a_task_document_is_read() -> None:
    task = parse_task(TASK)
    assert (task.task_id, task.state, task.revision) == ("t-1", TaskState.SENDING, 2)
    assert task.areas[0].delivered == 7
    assert task.updated_at is not None and task.updated_at.utcoffset() is not None
    assert not task.state.is_final and TaskState.CANCELLED.is_final


@pytest.mark.parametrize(
    "change",
    [
        {"state": "finished"},
        {"task_id": ""},
        {"task_id": "../other"},
        {"areas": [{"code": "150302000000", "targeted": 10, "sent": 11, "delivered": 7, "unreachable": 0}]},
        {"areas": [{"code": "150302000000", "targeted": 10, "sent": 8, "delivered": 8, "unreachable": 1}]},
        {"areas": [{"code": "150302000000", "targeted": -1, "sent": 0, "delivered": 0}]},
        {"areas": [{"code": "150302000000", "targeted": True, "sent": 0, "delivered": 0}]},
        {"updated_at": "yesterday"},
    ],
)
def test_a_task_document_off_the_protocol_is_an_error(change: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        parse_task(TASK | change)


def test_handsets_are_population_times_handsets_per_person_times_share() -> None:
    assert handsets_in(341_000, 1.2, 0.5) == 204_600
    assert (
        handsets_in(341_000, 1.271, OPERATOR_SHARES["china_mobile"]) == 243_098
    )  # 341000 x 1.271 x 1004/1790
    assert 0.98 < sum(OPERATOR_SHARES.values()) < 1.0  # the rest is China Broadnet and resellers


def test_delivery_figures_grow_with_time_and_end_done() -> None:
    targeted = {"150302000000": 1000, "150303000000": 500}
    state, figures = figures_after(targeted, 0.0, 1000.0, 0.1)
    assert state is TaskState.QUEUED and all(f.sent == 0 for f in figures)
    state, figures = figures_after(targeted, 0.75, 1000.0, 0.1)
    assert state is TaskState.SENDING
    assert [f.sent for f in figures] == [500, 250]
    assert all(f.delivered + f.unreachable == f.sent <= f.targeted for f in figures)
    state, figures = figures_after(targeted, 2.0, 1000.0, 0.1)
    assert state is TaskState.DONE
    assert [(f.sent, f.delivered, f.unreachable) for f in figures] == [(1000, 900, 100), (500, 450, 50)]


def test_an_area_without_handsets_is_done_at_once() -> None:
    state, figures = figures_after({"150302000000": 0}, 0.0, 1000.0, 0.1)
    assert state is TaskState.DONE and figures[0].targeted == 0


@pytest.mark.parametrize(
    ("polygon", "ok"),
    [
        (HAIBOWAN_POLYGON, True),
        ("39.6,106.75 39.8,106.75 39.6,106.75", False),  # three points
        ("39.6,106.75 39.8,106.75 39.8,106.9 39.6,106.91", False),  # not closed
        ("39.6;106.75 39.8,106.75 39.8,106.9 39.6;106.75", False),  # not lat,lon
        ("39.6,181 39.8,106.75 39.8,106.9 39.6,181", False),  # longitude out of range
    ],
)
def test_a_polygon_is_a_closed_cap_ring(polygon: str, ok: bool) -> None:
    assert (polygon_problem(polygon) == "") is ok
