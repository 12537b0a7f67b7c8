"""The operator area SMS protocol as pure data: paths, limits, task states, request bodies, progress reading.

No public specification of the operators' interface exists, so this project defines one
(docs/channels/operator-area-sms.md). Client and loopback simulator share these names and limits only; the
simulator validates bodies with its own pydantic models, so a client that builds a wrong body is caught.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from channels.area import AreaAlert
from channels.base import FailureKind

TASKS_PATH = "/v1/area-tasks"
TEXT_MAX_CHARS = 70  # one SMS segment in UCS2: the operators send one segment, never a concatenated one
IDENTIFIER_MAX_CHARS = 200
IDEMPOTENCY_KEY_MAX_CHARS = 200
AREA_NAME_MAX_CHARS = 100
MAX_AREAS = 200  # Wuhai has 26 towns and sub-districts; a whole province's counties still fit
MAX_POLYGONS_PER_AREA = 20
MAX_POLYGON_POINTS = 1000
MAX_BODY_BYTES = 1024 * 1024
AREA_CODE = re.compile(r"^[0-9]{12}$")
# CAP 1.2 identifier: no spaces, commas or restricted characters (& <)
IDENTIFIER = re.compile(r"^[^\s,&<]+$")
# printable ASCII without spaces: it travels in a header
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]+$")
# an operator's task id goes into paths unescaped: URL-safe characters only (RFC 3986 unreserved)
TASK_ID = re.compile(r"^[A-Za-z0-9._~-]{1,200}$")
STATUSES = ("Actual", "Exercise", "Test")


class TaskState(StrEnum):
    """States of an operator's area task. `done`, `cancelled` and `failed` are final for a revision; an Update
    of a `done` task starts a new revision and the task is `queued` again."""

    QUEUED = "queued"
    SENDING = "sending"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        """Whether the operator will send no more for the task's current revision."""
        return self in (TaskState.DONE, TaskState.CANCELLED, TaskState.FAILED)


class ProtocolError(ValueError):
    """An answer from the operator that does not follow the protocol (missing field, wrong type)."""


def task_path(task_id: str) -> str:
    """The path of one task (GET progress, DELETE cancel)."""
    return f"{TASKS_PATH}/{task_id}"


def update_path(task_id: str) -> str:
    """The path that puts a new revision on a task."""
    return f"{TASKS_PATH}/{task_id}/update"


def is_ucs2(text: str) -> bool:
    """Whether every character fits one UCS2 code unit (the Basic Multilingual Plane), and none is NUL."""
    return all(0 < ord(c) <= 0xFFFF for c in text)


def text_problem(text: str) -> str:
    """Why a text cannot be sent as one area SMS segment ("" when it can).

    >>> text_problem("乌海市气象台发布高温橙色预警")
    ''
    >>> text_problem("x" * 71)
    'text has 71 characters, at most 70 fit one UCS2 segment'
    """
    if not text:
        return "text is empty"
    if len(text) > TEXT_MAX_CHARS:
        return f"text has {len(text)} characters, at most {TEXT_MAX_CHARS} fit one UCS2 segment"
    if not is_ucs2(text):
        return "text has a character outside UCS2 (or a NUL)"
    return ""


def task_body(alert: AreaAlert) -> dict[str, Any]:
    """The JSON body of a create (`POST /v1/area-tasks`) or update (`POST .../update`) for one alert.

    Built from the alert alone, so every attempt (and every route) sends the same body under the same
    Idempotency-Key. Datetimes keep their offset (the protocol refuses naive times).
    """
    return {
        "identifier": alert.identifier,
        "msg_type": "Update" if alert.msg_type == "Update" else "Alert",
        "text": alert.texts.sms,
        "areas": [
            {"code": area.code, "name": area.name, "polygons": list(area.polygons)} for area in alert.areas
        ],
        "valid_from": alert.onset.isoformat(),
        "valid_until": alert.expires.isoformat(),
        "priority": alert.priority,
        "status": alert.status,
    }


def alert_problem(alert: AreaAlert) -> str:
    """Why an alert cannot be put out as an area task at all ("" when it can): checked before any request,
    so an alert that no operator could take is a permanent failure at once rather than a 422 per route."""
    if alert.msg_type == "Cancel":
        return "" if alert.previous_remote_id else "a Cancel names no task (previous_remote_id is empty)"
    if problem := text_problem(alert.texts.sms):
        return problem
    if not alert.areas:
        return "no areas"
    if len(alert.areas) > MAX_AREAS:
        return f"{len(alert.areas)} areas, at most {MAX_AREAS}"
    if bad := [a.code for a in alert.areas if not AREA_CODE.match(a.code)]:
        return f"area codes are not 12 digits: {', '.join(bad[:5])}"
    if alert.onset.tzinfo is None or alert.expires.tzinfo is None:
        return "onset and expires need an offset"
    if alert.expires <= alert.onset:
        return "expires is not after onset"
    if not IDEMPOTENCY_KEY.match(alert.key) or len(alert.key) > IDEMPOTENCY_KEY_MAX_CHARS:
        return "the key cannot be an Idempotency-Key (printable ASCII without spaces, at most 200)"
    return ""


def failure_of_status(status: int) -> FailureKind | None:
    """The kind of failure an HTTP status means, or None for success (2xx).

    429 is `THROTTLED`, 5xx `REMOTE_ERROR` (both temporary: another route may take it, or a later try);
    401 and 403 `REFUSED`, 404 and 409 `REFUSED` (the task is unknown or in a state that forbids it); 400,
    413, 422 and any other 4xx `INVALID` (the body itself is wrong: retrying it unchanged cannot help).
    """
    if 200 <= status < 300:
        return None
    if status == 429:
        return FailureKind.THROTTLED
    if status >= 500:
        return FailureKind.REMOTE_ERROR
    if status in (401, 403, 404, 409):
        return FailureKind.REFUSED
    return FailureKind.INVALID


@dataclass(frozen=True, slots=True)
class AreaProgress:
    """One area of a task's progress: handsets targeted, sent, delivered and unreachable so far."""

    code: str
    targeted: int
    sent: int
    delivered: int
    unreachable: int


@dataclass(frozen=True, slots=True)
class TaskProgress:
    """A task as the operator reports it (the answer of every call)."""

    task_id: str
    state: TaskState
    revision: int
    areas: tuple[AreaProgress, ...]
    updated_at: datetime | None


def _count(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError(f"{what} is not a count: {value!r}")
    return value


def parse_task(document: object) -> TaskProgress:
    """Read a task document; raises ProtocolError when it does not follow the protocol.

    Counts must be non-negative integers with delivered + unreachable <= sent <= targeted; the state one of
    `TaskState`. ``updated_at`` is optional on reading (None when absent) so that progress is not lost over it.
    """
    if not isinstance(document, dict):
        raise ProtocolError("the task is not a JSON object")
    task_id = document.get("task_id")
    if not isinstance(task_id, str) or not TASK_ID.match(task_id):
        raise ProtocolError(f"task_id is missing or not 1-200 URL-safe characters: {task_id!r}"[:200])
    try:
        state = TaskState(str(document.get("state")))
    except ValueError as e:
        raise ProtocolError(f"unknown state {document.get('state')!r}") from e
    revision = _count(document.get("revision", 1), "revision")
    raw_areas = document.get("areas", [])
    if not isinstance(raw_areas, list):
        raise ProtocolError("areas is not a list")
    areas: list[AreaProgress] = []
    for raw in raw_areas:
        if not isinstance(raw, dict) or not isinstance(raw.get("code"), str):
            raise ProtocolError("an area has no code")
        area = AreaProgress(
            raw["code"],
            _count(raw.get("targeted"), "targeted"),
            _count(raw.get("sent"), "sent"),
            _count(raw.get("delivered"), "delivered"),
            _count(raw.get("unreachable", 0), "unreachable"),
        )
        if not area.delivered + area.unreachable <= area.sent <= area.targeted:
            raise ProtocolError(
                f"area {area.code}: counts out of order (delivered + unreachable <= sent <= targeted)"
            )
        areas.append(area)
    updated_at: datetime | None = None
    if isinstance(raw_updated := document.get("updated_at"), str):
        try:
            updated_at = datetime.fromisoformat(raw_updated)
        except ValueError as e:
            raise ProtocolError(f"updated_at is not ISO 8601: {raw_updated!r}") from e
    return TaskProgress(task_id, state, revision, tuple(areas), updated_at)
