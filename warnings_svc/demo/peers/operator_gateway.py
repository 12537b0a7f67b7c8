"""SIMULATOR of a mobile operator's area SMS gateway on 127.0.0.1, for the demo and the tests: not an operator.

It implements the project's protocol (docs/channels/operator-area-sms.md) and validates every request
completely (pydantic models, extra fields forbidden): a bad request gets the documented 4xx with a one-line
reason and changes nothing. It "delivers" at a configured rate to handsets it derives per area:

    handsets = population x handsets_per_person x operator_share

Public figures behind the defaults (national figures: no per-operator figures for Inner Mongolia or Wuhai
were found, so a real operator's counts per cell will differ):

- handsets_per_person 1.271: MIIT, 2024 communications industry statistical bulletin (2025-01): 1.790
  billion mobile phone subscriptions at the end of 2024, 127.1 per 100 people. Subscriptions, not people:
  a person with two SIMs counts twice, as the operator's area SMS reaches both.
- operator subscribers (share = subscribers / 1.790 billion): China Mobile 1,004 million (2024 annual
  results: "Customers (million) 1,004"), 0.561; China Telecom 425 million (2024 annual results), 0.237;
  China Unicom 340 million mobile subscribers (2024 interim results, 30 June 2024; the year-end figure was
  not at hand), 0.190. The remaining 1 % is China Broadnet and resellers.

Everything about it says SIMULATOR: its docstrings, every log line, the ``Server:`` header, its task ids.
It can be scripted (`Fault`): refuse (4xx), fail (5xx), slow answers, drop a route's link and resume it,
report late (progress frozen for N seconds after each revision starts) or never.

    async with OperatorGatewaySimulator("china_mobile", {"150302000000": 341_000}) as sim:
        sim.url, sim.urls, sim.tasks
        await sim.script(Fault.FAIL, status=503, route=0)
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from aiohttp import web
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from channels.area_sms.protocol import (
    AREA_CODE,
    AREA_NAME_MAX_CHARS,
    IDEMPOTENCY_KEY,
    IDEMPOTENCY_KEY_MAX_CHARS,
    IDENTIFIER,
    IDENTIFIER_MAX_CHARS,
    MAX_AREAS,
    MAX_BODY_BYTES,
    MAX_POLYGON_POINTS,
    MAX_POLYGONS_PER_AREA,
    TASKS_PATH,
    TEXT_MAX_CHARS,
    TaskState,
    is_ucs2,
)

log = logging.getLogger(__name__)

SERVER_HEADER = "operator-gateway-SIMULATOR/1 (loopback simulator, not an operator)"
NATIONAL_MOBILE_SUBSCRIPTIONS = 1_790_000_000  # MIIT 2024 bulletin, end of 2024
HANDSETS_PER_PERSON = 1.271  # MIIT 2024 bulletin: 127.1 mobile phone subscriptions per 100 people
OPERATOR_SUBSCRIBERS = {
    "china_mobile": 1_004_000_000,  # China Mobile 2024 annual results
    "china_telecom": 425_000_000,  # China Telecom 2024 annual results
    "china_unicom": 340_000_000,  # China Unicom 2024 interim results (30 June 2024)
}
OPERATOR_SHARES = {name: n / NATIONAL_MOBILE_SUBSCRIPTIONS for name, n in OPERATOR_SUBSCRIBERS.items()}
POINT = re.compile(r"^(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)$")


# ---------------------------------------------------------------------------------------------- request models


def polygon_problem(polygon: str) -> str:
    """Simulator: why a CAP polygon string is not acceptable ("" when it is): at least 4 "lat,lon" points separated by
    spaces, the first equal to the last, latitudes within +-90 and longitudes within +-180, at most
    MAX_POLYGON_POINTS points.

    >>> polygon_problem("39.6,106.8 39.7,106.8 39.7,106.9 39.6,106.8")
    ''
    """
    points = polygon.split()
    if not 4 <= len(points) <= MAX_POLYGON_POINTS:
        return f"a polygon has {len(points)} points, it needs 4 to {MAX_POLYGON_POINTS}"
    for point in points:
        match = POINT.match(point)
        if match is None:
            return f"polygon point {point[:40]!r} is not 'lat,lon'"
        lat, lon = float(match[1]), float(match[2])
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return f"polygon point {point} is out of range"
    if points[0] != points[-1]:
        return "a polygon is not closed (its first point differs from its last)"
    return ""


class AreaIn(BaseModel):
    """Simulator: one area of a task request."""

    model_config = ConfigDict(extra="forbid", strict=True)

    code: Annotated[str, StringConstraints(pattern=AREA_CODE.pattern)]
    name: Annotated[str, StringConstraints(min_length=1, max_length=AREA_NAME_MAX_CHARS)]
    polygons: Annotated[list[str], Field(max_length=MAX_POLYGONS_PER_AREA)] = []

    @field_validator("polygons")
    @classmethod
    def _polygons_are_cap(cls, polygons: list[str]) -> list[str]:
        for polygon in polygons:
            if problem := polygon_problem(polygon):
                raise ValueError(problem)
        return polygons


class TaskIn(BaseModel):
    """Simulator: the body of a create (`POST /v1/area-tasks`) or an update (`POST /v1/area-tasks/{id}/update`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    identifier: Annotated[
        str, StringConstraints(min_length=1, max_length=IDENTIFIER_MAX_CHARS, pattern=IDENTIFIER.pattern)
    ]
    msg_type: Literal["Alert", "Update"]
    text: Annotated[str, StringConstraints(min_length=1, max_length=TEXT_MAX_CHARS)]
    areas: Annotated[list[AreaIn], Field(min_length=1, max_length=MAX_AREAS)]
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    priority: Annotated[int, Field(ge=0, le=3)]
    status: Literal["Actual", "Exercise", "Test"]

    @field_validator("text")
    @classmethod
    def _text_is_ucs2(cls, text: str) -> str:
        if not is_ucs2(text):
            raise ValueError("text has a character outside UCS2 (or a NUL)")
        return text

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until is not after valid_from")
        codes = [area.code for area in self.areas]
        if len(set(codes)) != len(codes):
            raise ValueError("an area code appears twice")
        return self


def validation_reason(error: ValidationError) -> str:
    """Simulator: a pydantic error as one line: the first three problems, each with where it is."""
    parts = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    more = error.error_count() - len(parts)
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


# ---------------------------------------------------------------------------------------------- delivery model


@dataclass(frozen=True, slots=True)
class AreaFigures:
    """Simulator: handsets of one area at one moment of a revision."""

    code: str
    targeted: int
    sent: int
    delivered: int
    unreachable: int


def handsets_in(population: int, handsets_per_person: float, operator_share: float) -> int:
    """Simulator: handsets of one operator in an area, rounded to whole handsets.

    >>> handsets_in(1000, 1.2, 0.5)
    600
    """
    return round(population * handsets_per_person * operator_share)


def figures_after(
    targeted: Mapping[str, int], elapsed_s: float, rate_per_s: float, unreachable_share: float
) -> tuple[TaskState, list[AreaFigures]]:
    """Simulator: what a revision has done ``elapsed_s`` after it started: the handsets sent so far (all areas in step,
    ``rate_per_s`` in total), of which ``unreachable_share`` (rounded down) cannot be reached.

    >>> state, figures = figures_after({"150302000000": 100}, 0.5, 100.0, 0.1)
    >>> state.value, figures[0].sent, figures[0].delivered, figures[0].unreachable
    ('sending', 50, 45, 5)
    """
    total = sum(targeted.values())
    handled = min(float(total), max(0.0, elapsed_s) * rate_per_s)
    figures = []
    for code, area_targeted in targeted.items():
        if handled >= total:
            sent = area_targeted
        else:
            sent = min(area_targeted, math.floor(handled * area_targeted / total))
        unreachable = math.floor(sent * unreachable_share)
        figures.append(AreaFigures(code, area_targeted, sent, sent - unreachable, unreachable))
    if handled >= total:
        state = TaskState.DONE
    elif handled > 0:
        state = TaskState.SENDING
    else:
        state = TaskState.QUEUED
    return state, figures


@dataclass(slots=True)
class SimRevision:
    """Simulator: one revision of a simulated task: what was asked, when its sending started, whose handsets."""

    number: int
    request: TaskIn
    started: float  # time.monotonic()
    started_at: datetime  # the same moment on the wall clock, for updated_at
    targeted: dict[str, int]
    report_from: float  # time.monotonic() before which GET shows no progress (a late or silent reporter)


@dataclass(slots=True)
class SimTask:
    """Simulator: a simulated area task: its revisions (newest last) and, once cancelled, when."""

    task_id: str
    revisions: list[SimRevision]
    cancelled_at: float | None = None
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def revision(self) -> SimRevision:
        """Simulator: the revision being sent."""
        return self.revisions[-1]

    def figures(
        self, now: float, rate_per_s: float, unreachable_share: float
    ) -> tuple[TaskState, list[AreaFigures]]:
        """Simulator: the task's state and figures at ``now`` (monotonic); a cancelled task's stopped when it was."""
        rev = self.revision
        until = now if self.cancelled_at is None else self.cancelled_at
        state, figures = figures_after(rev.targeted, until - rev.started, rate_per_s, unreachable_share)
        if self.cancelled_at is not None:
            state = TaskState.CANCELLED
        return state, figures

    def state(self, now: float, rate_per_s: float, unreachable_share: float) -> TaskState:
        """Simulator: the task's state at ``now``."""
        return self.figures(now, rate_per_s, unreachable_share)[0]


# ---------------------------------------------------------------------------------------------- scripting


class Fault(StrEnum):
    """What the simulator can be told to do wrong."""

    REFUSE = "refuse"  # answer the next requests with a 4xx (status, default 403)
    FAIL = "fail"  # answer the next requests with a 5xx (status, default 503; Retry-After if given)
    SLOW = "slow"  # delay the next answers by delay_s
    DROP = "drop"  # close a route's connections and stop listening on it (for seconds, or until resume())
    LATE = "late"  # progress of revisions started from now frozen (queued, none sent) for `seconds`
    SILENT = "silent"  # progress of revisions started from now never reported (queued, none sent)


@dataclass(slots=True)
class ScriptedAnswer:
    """Simulator: a request-level fault waiting for matching requests."""

    fault: Fault
    remaining: int | None  # None: every matching request until cleared
    route: int | None
    method: str | None
    status: int
    delay_s: float
    retry_after_s: int | None


@dataclass(frozen=True, slots=True)
class Received:
    """One request the simulator answered: for tests to check what reached it."""

    route: int
    method: str
    path: str
    status: int
    idempotency_key: str


def problem(status: int, title: str, detail: str, retry_after_s: int | None = None) -> web.Response:
    """Simulator: a problem document (``{"title", "detail"}``) with its status and, for 429/503, Retry-After."""
    response = web.json_response(
        {"title": title, "detail": detail}, status=status, content_type="application/problem+json"
    )
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    413: "Body too large",
    422: "Invalid body",
    429: "Too many requests",
    500: "Internal error",
    502: "Bad gateway",
    503: "Unavailable",
    504: "Gateway timeout",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def listening_socket(host: str, port: int) -> socket.socket:
    """Simulator: a TCP socket listening on host:port (port 0: any free one); SO_REUSEADDR so a dropped route can listen
    on its port again at once."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class OperatorGatewaySimulator:
    """SIMULATOR of one operator's area SMS gateway with ``routes`` listening ports on 127.0.0.1 sharing one
    task store (as an operator's front doors share its system). Not an operator: every answer says so.

    ``populations`` maps 12-digit area codes to people; an area it does not know is refused (422), as an
    operator cannot map it to cells. ``rate_per_s`` is handsets sent per second per task; ``unreachable_share``
    the part sent that cannot be delivered (handsets off, out of coverage).
    """

    def __init__(
        self,
        name: str,
        populations: Mapping[str, int],
        *,
        token: str = "simulator-token",
        routes: int = 2,
        handsets_per_person: float = HANDSETS_PER_PERSON,
        operator_share: float | None = None,
        rate_per_s: float = 50_000.0,
        unreachable_share: float = 0.03,
        host: str = "127.0.0.1",
    ) -> None:
        if routes < 1 or rate_per_s <= 0 or not 0 <= unreachable_share <= 1:
            raise ValueError("routes >= 1, rate_per_s > 0 and 0 <= unreachable_share <= 1")
        if operator_share is None and name not in OPERATOR_SHARES:
            raise ValueError(f"no public share known for {name!r}: pass operator_share")
        self.name = name
        self.populations = dict(populations)
        self.token = token
        self.handsets_per_person = handsets_per_person
        self.operator_share = OPERATOR_SHARES[name] if operator_share is None else operator_share
        self.rate_per_s = rate_per_s
        self.unreachable_share = unreachable_share
        self.host = host
        self.tasks: dict[str, SimTask] = {}
        self.received: list[Received] = []
        # Idempotency-Key -> (task id, revision it made, fingerprint of the request)
        self._keys: dict[str, tuple[str, int, str]] = {}
        self._ids = itertools.count(1)
        self._scripted: list[ScriptedAnswer] = []
        self._late_s = 0.0
        self._silent = False
        self._route_count = routes
        self._ports: list[int] = []
        self._sites: list[web.SockSite | None] = []
        self._dropped: set[int] = set()
        self._transports: list[set[asyncio.Transport]] = [set() for _ in range(routes)]
        self._resumers: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------------------------------ lifetime

    def make_app(self) -> web.Application:
        """Simulator: the aiohttp application: the protocol's four routes behind the fault and label middlewares."""
        app = web.Application(middlewares=[self._faults], client_max_size=MAX_BODY_BYTES)
        app.router.add_post(TASKS_PATH, self._create)
        app.router.add_post(TASKS_PATH + "/{task_id}/update", self._update)
        app.router.add_get(TASKS_PATH + "/{task_id}", self._progress)
        app.router.add_delete(TASKS_PATH + "/{task_id}", self._cancel)
        app.on_response_prepare.append(self._label)
        return app

    async def __aenter__(self) -> Self:
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        for _ in range(self._route_count):
            sock = listening_socket(self.host, 0)
            self._ports.append(sock.getsockname()[1])
            site = web.SockSite(self._runner, sock)
            await site.start()
            self._sites.append(site)
        log.info("operator gateway SIMULATOR started", extra={"operator": self.name, "urls": self.urls})
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._resumers):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("operator gateway SIMULATOR stopped", extra={"operator": self.name})

    @property
    def urls(self) -> list[str]:
        """Simulator: the base URL of every route, primary first."""
        return [f"http://{self.host}:{port}" for port in self._ports]

    @property
    def url(self) -> str:
        """Simulator: the primary route's base URL."""
        return self.urls[0]

    def targeted_for(self, code: str) -> int:
        """Handsets this operator has in an area by the simulator's figures."""
        return handsets_in(self.populations[code], self.handsets_per_person, self.operator_share)

    # ------------------------------------------------------------------------------------------ scripting

    async def script(
        self,
        fault: Fault,
        *,
        count: int | None = 1,
        route: int | None = None,
        method: str | None = None,
        status: int | None = None,
        delay_s: float = 0.0,
        seconds: float | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        """Simulator: script a fault. REFUSE/FAIL/SLOW apply to the next ``count`` requests (None: all, until `clear`) on
        ``route`` (None: any) with ``method`` (None: any); DROP takes ``route`` (None: every route) down for
        ``seconds`` (None: until `resume`); LATE freezes progress for ``seconds`` after each revision starts;
        SILENT never reports progress."""
        if fault in (Fault.REFUSE, Fault.FAIL, Fault.SLOW):
            default = {Fault.REFUSE: 403, Fault.FAIL: 503, Fault.SLOW: 0}[fault]
            code = default if status is None else status
            if fault is Fault.REFUSE and not 400 <= code < 500:
                raise ValueError("a refusal is a 4xx")
            if fault is Fault.FAIL and not 500 <= code < 600:
                raise ValueError("a failure is a 5xx")
            self._scripted.append(ScriptedAnswer(fault, count, route, method, code, delay_s, retry_after_s))
        elif fault is Fault.DROP:
            for index in range(self._route_count) if route is None else [route]:
                await self._drop(index)
                if seconds is not None:
                    resumer = asyncio.create_task(self._resume_after(index, seconds))
                    self._resumers.add(resumer)
                    resumer.add_done_callback(self._resumers.discard)
        elif fault is Fault.LATE:
            self._late_s = seconds or 0.0
        elif fault is Fault.SILENT:
            self._silent = True
        log.info("operator gateway SIMULATOR scripted", extra={"operator": self.name, "fault": fault.value})

    def clear(self) -> None:
        """Simulator: forget every scripted answer, lateness and silence (dropped routes stay down until resumed)."""
        self._scripted.clear()
        self._late_s = 0.0
        self._silent = False

    async def _drop(self, index: int) -> None:
        site = self._sites[index]
        self._dropped.add(index)
        if site is not None:
            await site.stop()
            self._sites[index] = None
        for transport in list(self._transports[index]):
            transport.abort()
        self._transports[index].clear()
        log.info("operator gateway SIMULATOR dropped a route", extra={"operator": self.name, "route": index})

    async def _resume_after(self, index: int, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.resume(index)

    async def resume(self, route: int | None = None) -> None:
        """Simulator: listen again on a dropped route (every dropped route when None), on the same port."""
        assert self._runner is not None
        for index in sorted(self._dropped) if route is None else [route]:
            if self._sites[index] is None:
                site = web.SockSite(self._runner, listening_socket(self.host, self._ports[index]))
                await site.start()
                self._sites[index] = site
            self._dropped.discard(index)
            log.info(
                "operator gateway SIMULATOR resumed a route", extra={"operator": self.name, "route": index}
            )

    # ------------------------------------------------------------------------------------------ middleware

    async def _label(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = SERVER_HEADER

    def _route_of(self, request: web.Request) -> int:
        transport = request.transport
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        port = sockname[1] if isinstance(sockname, tuple) else -1
        return self._ports.index(port) if port in self._ports else 0

    @web.middleware
    async def _faults(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = self._route_of(request)
        transport = request.transport
        if route in self._dropped:
            if transport is not None:
                transport.abort()  # a kept-alive connection on a dropped route: the link is gone
            return web.Response(status=503)  # never reaches the client: its connection is aborted
        if transport is not None:
            if len(self._transports[route]) > 256:  # forget closed connections: the set stays small
                self._transports[route] = {t for t in self._transports[route] if not t.is_closing()}
            self._transports[route].add(transport)
        response: web.StreamResponse
        scripted = self._take_scripted(route, request.method)
        if scripted is not None and scripted.fault is Fault.SLOW:
            await (
                request.read()
            )  # taken in full first: a slow gateway still acts on a request its client gave up
            await asyncio.sleep(scripted.delay_s)
            response = await handler(request)
        elif scripted is not None:
            response = problem(
                scripted.status,
                TITLES.get(scripted.status, "Scripted"),
                f"scripted {scripted.fault.value} by the SIMULATOR",
                scripted.retry_after_s,
            )
        else:
            response = await handler(request)
        self.received.append(
            Received(
                route,
                request.method,
                request.path,
                response.status,
                request.headers.get("Idempotency-Key", ""),
            )
        )
        log.info(
            "operator gateway SIMULATOR answered",
            extra={
                "operator": self.name,
                "route": route,
                "method": request.method,
                "status": response.status,
            },
        )
        return response

    def _take_scripted(self, route: int, method: str) -> ScriptedAnswer | None:
        for scripted in self._scripted:
            if scripted.route not in (None, route) or scripted.method not in (None, method):
                continue
            if scripted.remaining is not None:
                scripted.remaining -= 1
                if scripted.remaining <= 0:
                    self._scripted.remove(scripted)
            return scripted
        return None

    # ------------------------------------------------------------------------------------------ handlers

    def _unauthorized(self, request: web.Request) -> web.Response | None:
        if request.headers.get("Authorization", "") != f"Bearer {self.token}":
            return problem(401, TITLES[401], "missing or wrong bearer token")
        return None

    def _idempotency_key(self, request: web.Request) -> tuple[str, web.Response | None]:
        key = request.headers.get("Idempotency-Key", "")
        if not key:
            return key, problem(400, TITLES[400], "the Idempotency-Key header is missing")
        if len(key) > IDEMPOTENCY_KEY_MAX_CHARS or not IDEMPOTENCY_KEY.match(key):
            return key, problem(
                400, TITLES[400], "the Idempotency-Key is not 1-200 printable ASCII characters"
            )
        return key, None

    async def _read_task(self, request: web.Request) -> tuple[TaskIn | None, web.Response | None]:
        """Simulator: the validated body, or the answer refusing it (400 not JSON, 413 too large, 422 invalid)."""
        if request.content_type != "application/json":
            return None, problem(400, TITLES[400], "the Content-Type is not application/json")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return None, problem(413, TITLES[413], f"the body is larger than {MAX_BODY_BYTES} bytes")
        try:
            json.loads(raw)
        except ValueError:
            return None, problem(400, TITLES[400], "the body is not JSON")
        try:
            body = TaskIn.model_validate_json(raw, strict=True)
        except ValidationError as e:
            return None, problem(422, TITLES[422], validation_reason(e))
        if unknown := [area.code for area in body.areas if area.code not in self.populations]:
            return None, problem(
                422, TITLES[422], f"areas unknown to this operator: {', '.join(unknown[:5])}"
            )
        return body, None

    def _new_revision(self, number: int, body: TaskIn) -> SimRevision:
        now = time.monotonic()
        report_from = math.inf if self._silent else now + self._late_s
        targeted = {area.code: self.targeted_for(area.code) for area in body.areas}
        return SimRevision(number, body, now, datetime.now(UTC), targeted, report_from)

    def _document(self, task: SimTask) -> dict[str, Any]:
        """Simulator: a task as the protocol shows it; a scripted late or silent reporter shows it as it started (queued,
        or cancelled, with none sent) in every answer until its revision's report_from."""
        now = time.monotonic()
        state, figures = task.figures(now, self.rate_per_s, self.unreachable_share)
        if now < task.revision.report_from:
            state = TaskState.CANCELLED if task.cancelled_at is not None else TaskState.QUEUED
            figures = [AreaFigures(f.code, f.targeted, 0, 0, 0) for f in figures]  # as when it started
        return {
            "task_id": task.task_id,
            "state": state.value,
            "revision": task.revision.number,
            "areas": [
                {
                    "code": f.code,
                    "targeted": f.targeted,
                    "sent": f.sent,
                    "delivered": f.delivered,
                    "unreachable": f.unreachable,
                }
                for f in figures
            ],
            "updated_at": self._updated_at(task, state, now).isoformat(),
        }

    def _updated_at(self, task: SimTask, state: TaskState, now: float) -> datetime:
        """Simulator: when the figures last changed: now while sending, when the revision ended once it is done."""
        rev = task.revision
        if state is TaskState.DONE:
            total = sum(rev.targeted.values())
            return rev.started_at + timedelta(seconds=total / self.rate_per_s)
        if state is TaskState.CANCELLED:
            return task.updated_at
        return rev.started_at + timedelta(seconds=max(0.0, now - rev.started))

    def _replay(self, key: str, fingerprint: str, operation: str) -> web.Response | None:
        """Simulator: the answer to a repeated Idempotency-Key: 200 with the task, or 409 when the request differs."""
        if key not in self._keys:
            return None
        task_id, _, seen = self._keys[key]
        if seen != f"{operation}:{fingerprint}":
            return problem(409, TITLES[409], "the Idempotency-Key was used for another request")
        return web.json_response(self._document(self.tasks[task_id]), status=200)

    async def _create(self, request: web.Request) -> web.Response:
        if refused := self._unauthorized(request):
            return refused
        key, refused = self._idempotency_key(request)
        if refused:
            return refused
        body, refused = await self._read_task(request)
        if refused:
            return refused
        assert body is not None
        fingerprint = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        if replay := self._replay(key, fingerprint, "create"):
            return replay
        task_id = f"{self.name}-sim-{next(self._ids):06d}"
        task = SimTask(task_id, [self._new_revision(1, body)])
        self.tasks[task_id] = task
        self._keys[key] = (task_id, 1, f"create:{fingerprint}")
        log.info(
            "operator gateway SIMULATOR created a task", extra={"operator": self.name, "task_id": task_id}
        )
        return web.json_response(self._document(task), status=201)

    async def _update(self, request: web.Request) -> web.Response:
        if refused := self._unauthorized(request):
            return refused
        key, refused = self._idempotency_key(request)
        if refused:
            return refused
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return problem(404, TITLES[404], "no such task")
        body, refused = await self._read_task(request)
        if refused:
            return refused
        assert body is not None
        if body.msg_type != "Update":
            return problem(422, TITLES[422], "msg_type: an update's msg_type is Update")
        fingerprint = hashlib.sha256(f"{task.task_id}:{body.model_dump_json()}".encode()).hexdigest()
        if replay := self._replay(key, fingerprint, "update"):
            return replay
        state = task.state(time.monotonic(), self.rate_per_s, self.unreachable_share)
        if state in (TaskState.CANCELLED, TaskState.FAILED):
            return problem(409, TITLES[409], f"the task is {state.value}: it cannot be updated")
        task.revisions.append(self._new_revision(task.revision.number + 1, body))
        task.updated_at = datetime.now(UTC)
        self._keys[key] = (task.task_id, task.revision.number, f"update:{fingerprint}")
        log.info(
            "operator gateway SIMULATOR updated a task",
            extra={"operator": self.name, "task_id": task.task_id, "revision": task.revision.number},
        )
        return web.json_response(self._document(task), status=200)

    async def _progress(self, request: web.Request) -> web.Response:
        if refused := self._unauthorized(request):
            return refused
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return problem(404, TITLES[404], "no such task")
        return web.json_response(self._document(task))

    async def _cancel(self, request: web.Request) -> web.Response:
        if refused := self._unauthorized(request):
            return refused
        task = self.tasks.get(request.match_info["task_id"])
        if task is None:
            return problem(404, TITLES[404], "no such task")
        now = time.monotonic()
        if task.state(now, self.rate_per_s, self.unreachable_share) in (TaskState.QUEUED, TaskState.SENDING):
            task.cancelled_at = now
            task.updated_at = datetime.now(UTC)
            log.info(
                "operator gateway SIMULATOR cancelled a task",
                extra={"operator": self.name, "task_id": task.task_id},
            )
        return web.json_response(self._document(task))
