"""An operator's area SMS gateway behind the area channel interface: OperatorAreaSmsChannel (aiohttp).

One channel instance talks to one operator (China Mobile, China Unicom, China Telecom) over the project's own
HTTP JSON protocol (docs/channels/operator-area-sms.md; no public specification of the operators' interface
exists). An operator offers several routes (base URLs: primary, secondary) in front of one task store, so an
Idempotency-Key is honoured on every route and a request that timed out on one route can go to the next. As
GOV.UK Emergency Alerts do with their CBC routes, the last route that answered is tried first next time.

Progress comes from polling: a background task (started with the first task, ended when none is open) asks
each open task's progress every ``poll_interval_s`` and turns it into `Evidence` of handsets per area. A task
is polled until its progress is final (done, cancelled, failed) or until its horizon (the alert's expiry, at
most ``poll_horizon_s``): a last Evidence then says in ``detail`` that polling stopped without a final report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from channels.area import AreaAlert, AreaSendResult, Evidence, EvidenceKind
from channels.area_sms.protocol import (
    TASKS_PATH,
    ProtocolError,
    TaskProgress,
    TaskState,
    alert_problem,
    failure_of_status,
    parse_task,
    task_body,
    task_path,
    update_path,
)
from channels.base import FailureKind, Health, HealthState, SendOutcome

log = logging.getLogger(__name__)

USER_AGENT = "wuhai-warnings-area-sms/1"
REASON_MAX_CHARS = 300  # a problem's words kept in a result: enough for a person, small in the stored record
# when routes fail in different ways, the kind reported is the first of these present: the most specific
# hint for the dispatcher's circuit breaker (a throttle asks to wait; a remote error says the peer is there)
FAILURE_PRECEDENCE = (
    FailureKind.THROTTLED,
    FailureKind.REMOTE_ERROR,
    FailureKind.TIMEOUT,
    FailureKind.LINK_DOWN,
)
RECENT_TASK_KEYS = 10_000  # task id -> key of the version it sends, for Evidence after a Cancel


@dataclass(frozen=True, slots=True)
class RouteFailure:
    """Why one route did not take a request."""

    route: str
    kind: FailureKind
    reason: str
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class CallAnswer:
    """What a request over the routes came to: a route answered (``status`` with its JSON document), or every
    route failed for now (``failures``, one per route, and ``status`` 0)."""

    route: str
    status: int
    document: object = None
    reason: str = ""
    retry_after_s: float | None = None
    failures: tuple[RouteFailure, ...] = ()


@dataclass(slots=True)
class OpenTask:
    """A task being polled: the key of the version it sends, until when to poll, and what was last reported."""

    task_id: str
    key: str
    identifier: str
    deadline: float  # time.monotonic() after which polling stops without a final report
    revision: int = 0
    state: TaskState = TaskState.QUEUED
    last: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # area -> (targeted, sent, delivered)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After", "")
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare from an API, and a hint only


def _problem_words(status: int, document: object, fallback: str) -> str:
    """The problem document's title and detail in one line (or the HTTP reason), clipped."""
    words = fallback
    if isinstance(document, dict):
        title, detail = document.get("title", ""), document.get("detail", "")
        words = ": ".join(str(part) for part in (title, detail) if part) or fallback
    return f"{status} {words}"[:REASON_MAX_CHARS]


def combine_failures(failures: Sequence[RouteFailure]) -> tuple[FailureKind, str, float | None]:
    """One kind, reason and retry hint for a request every route failed: the kind by `FAILURE_PRECEDENCE`, the
    reason naming each route and its own reason, the shortest Retry-After any route gave."""
    kinds = {f.kind for f in failures}
    kind = next((k for k in FAILURE_PRECEDENCE if k in kinds), FailureKind.LINK_DOWN)
    reason = "; ".join(f"{f.route}: {f.reason}" for f in failures)
    hints = [f.retry_after_s for f in failures if f.retry_after_s is not None]
    return kind, reason, min(hints) if hints else None


class OperatorAreaSmsChannel:
    """Area SMS through one operator's gateway: the `AreaChannel` interface over the project's protocol.

    ``routes`` are the operator's base URLs, primary first (``["https://gw-a.example", "https://gw-b.example"]``);
    ``token`` the bearer token it issued. A request goes to the last route that answered, then to the others in
    the given order, on a connection error, a timeout, a 5xx or a 429; any other 4xx is final (the body is the
    same on every route). ``poll_interval_s`` paces progress polling; ``poll_horizon_s`` caps how long a task is
    polled without a final report (also capped by the alert's expiry); ``max_open_tasks`` bounds the tasks
    polled at once (the oldest is given up, with a last Evidence saying so).
    """

    def __init__(
        self,
        name: str,
        routes: Sequence[str],
        token: str,
        *,
        request_timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        poll_interval_s: float = 10.0,
        poll_horizon_s: float = 6 * 3600.0,
        max_open_tasks: int = 1000,
        poll_concurrency: int = 4,
    ) -> None:
        if not routes:
            raise ValueError("an operator needs at least one route")
        if poll_interval_s <= 0 or request_timeout_s <= 0 or max_open_tasks < 1 or poll_concurrency < 1:
            raise ValueError("intervals and timeouts must be positive, bounds at least 1")
        self.name = name
        self.routes = [route.rstrip("/") for route in routes]
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s, connect=connect_timeout_s)
        self.poll_interval_s = poll_interval_s
        self.poll_horizon_s = poll_horizon_s
        self.max_open_tasks = max_open_tasks
        self._poll_slots = asyncio.Semaphore(poll_concurrency)
        self._preferred = 0  # index of the last route that answered
        self._route_failing = [False] * len(self.routes)
        self._session: aiohttp.ClientSession | None = None
        self._open: OrderedDict[str, OpenTask] = OrderedDict()
        self._task_keys: OrderedDict[str, str] = OrderedDict()
        self._evidence: asyncio.Queue[list[Evidence]] = asyncio.Queue()
        self._poller: asyncio.Task[None] | None = None
        self._closed = False
        self._in_flight = 0
        self.counters = {
            "created": 0,
            "updated": 0,
            "cancelled": 0,
            "failovers": 0,
            "polls": 0,
            "poll_failures": 0,
            "horizon_stops": 0,
        }

    # ------------------------------------------------------------------------------------------ routes

    def route_order(self) -> list[int]:
        """Indexes of the routes in the order the next request tries them: last known-good first."""
        return [self._preferred] + [i for i in range(len(self.routes)) if i != self._preferred]

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None:
            # made on first use: a session belongs to the running loop, and the constructor may run outside one
            self._session = aiohttp.ClientSession(
                timeout=self._timeout,
                headers={"Authorization": f"Bearer {self._token}", "User-Agent": USER_AGENT},
                raise_for_status=False,
            )
        return self._session

    async def _call(self, method: str, path: str, body: dict[str, Any] | None, key: str) -> CallAnswer:
        """Send one request over the routes until one answers with anything but a temporary failure."""
        session = self._session_now()
        headers = {"Accept": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        failures: list[RouteFailure] = []
        self._in_flight += 1
        try:
            for index in self.route_order():
                route = self.routes[index]
                if failures:
                    self.counters["failovers"] += 1
                try:
                    async with session.request(method, route + path, json=body, headers=headers) as response:
                        status = response.status
                        retry_after = _retry_after(response.headers)
                        try:
                            document = await response.json(content_type=None)
                        except ValueError:
                            document = None
                        reason = response.reason or ""
                except TimeoutError:
                    failures.append(RouteFailure(route, FailureKind.TIMEOUT, "no answer in time"))
                    self._route_failing[index] = True
                    continue
                except aiohttp.ClientError as e:
                    failures.append(RouteFailure(route, FailureKind.LINK_DOWN, str(e) or type(e).__name__))
                    self._route_failing[index] = True
                    continue
                kind = failure_of_status(status)
                if kind is not None and kind.retryable:
                    failures.append(
                        RouteFailure(route, kind, _problem_words(status, document, reason), retry_after)
                    )
                    self._route_failing[index] = True
                    continue
                # the route answered (a success or a final refusal): it is known-good for the next request
                self._route_failing[index] = False
                self._preferred = index
                words = "" if kind is None else _problem_words(status, document, reason)
                return CallAnswer(route, status, document, words, retry_after)
        finally:
            self._in_flight -= 1
        return CallAnswer(failures[-1].route, 0, failures=tuple(failures))

    # ------------------------------------------------------------------------------------------ putting out

    async def put_out(self, alert: AreaAlert) -> AreaSendResult:
        """Create (Alert, or an Update that names no task), update (Update) or cancel (Cancel) the alert's task
        at the operator. Never raises for the operator's failure: that is the result."""
        if self._closed:
            return AreaSendResult(
                alert.key, SendOutcome.TEMPORARY_FAILURE, reason="channel closed", failure=FailureKind.CLOSED
            )
        if problem := alert_problem(alert):
            return AreaSendResult(
                alert.key, SendOutcome.PERMANENT_FAILURE, reason=problem, failure=FailureKind.INVALID
            )
        if alert.msg_type == "Cancel":
            method, path, body, counter = "DELETE", task_path(alert.previous_remote_id), None, "cancelled"
        elif alert.msg_type == "Update" and alert.previous_remote_id:
            method, path, body, counter = (
                "POST",
                update_path(alert.previous_remote_id),
                task_body(alert),
                "updated",
            )
        else:
            method, path, body, counter = "POST", TASKS_PATH, task_body(alert), "created"
        answer = await self._call(method, path, body, alert.key)
        if answer.failures:
            temporary, reason, retry_after = combine_failures(answer.failures)
            log.warning(
                "area sms: every route failed",
                extra={"channel": self.name, "key": alert.key, "failure": temporary.value, "reason": reason},
            )
            return AreaSendResult(
                alert.key, SendOutcome.TEMPORARY_FAILURE, "", answer.route, reason, temporary, retry_after
            )
        kind = failure_of_status(answer.status)
        if kind is not None:  # a final refusal: retrying the same request cannot help
            log.warning(
                "area sms: refused",
                extra={
                    "channel": self.name,
                    "key": alert.key,
                    "status": answer.status,
                    "reason": answer.reason,
                },
            )
            return AreaSendResult(
                alert.key, SendOutcome.PERMANENT_FAILURE, "", answer.route, answer.reason, kind
            )
        try:
            progress = parse_task(answer.document)
        except ProtocolError as e:
            # accepted, but the answer cannot be read: the same key on a retry returns the same task
            return AreaSendResult(
                alert.key,
                SendOutcome.TEMPORARY_FAILURE,
                "",
                answer.route,
                f"{answer.status} answer not per protocol: {e}",
                FailureKind.REMOTE_ERROR,
            )
        self.counters[counter] += 1
        self._track(alert, progress)
        log.info(
            "area sms: task %s",
            counter,
            extra={
                "channel": self.name,
                "key": alert.key,
                "task_id": progress.task_id,
                "route": answer.route,
            },
        )
        return AreaSendResult(alert.key, SendOutcome.ACCEPTED, progress.task_id, answer.route)

    def _track(self, alert: AreaAlert, progress: TaskProgress) -> None:
        """Poll the task from now on (again, for an Update or Cancel) and report what its answer says."""
        if alert.msg_type == "Cancel":
            # the figures are still those of the version that was being sent: keep its key
            key = self._task_keys.get(progress.task_id, alert.key)
        else:
            key = alert.key
            self._task_keys[progress.task_id] = key
            self._task_keys.move_to_end(progress.task_id)
            while len(self._task_keys) > RECENT_TASK_KEYS:
                self._task_keys.popitem(last=False)
        remaining = (alert.expires - datetime.now(UTC)).total_seconds()
        deadline = time.monotonic() + max(0.0, min(remaining, self.poll_horizon_s))
        task = self._open.pop(progress.task_id, None)
        if task is None or task.key != key or progress.revision != task.revision:
            task = OpenTask(progress.task_id, key, alert.identifier, deadline)
        else:
            task.deadline = max(task.deadline, deadline)
        self._open[progress.task_id] = task
        while len(self._open) > self.max_open_tasks:
            _, oldest = self._open.popitem(last=False)
            self._give_up(oldest, "too many open tasks: polling given up")
        self._observe(task, progress)
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll_while_open(), name=f"area-sms-poll-{self.name}")

    # ------------------------------------------------------------------------------------------ progress

    def _observe(self, task: OpenTask, progress: TaskProgress) -> None:
        """Queue Evidence for every area whose figures changed; stop polling a task whose progress is final."""
        if progress.revision < task.revision:
            return  # an answer about an older revision, overtaken
        if progress.revision > task.revision:
            task.last.clear()  # a new revision counts from zero
        task.revision, task.state = progress.revision, progress.state
        final = progress.state.is_final
        batch: list[Evidence] = []
        for area in progress.areas:
            figures = (area.targeted, area.sent, area.delivered)
            if task.last.get(area.code) == figures and not final:
                continue
            if figures == (0, 0, 0) and not final:
                continue  # nothing to say yet (a late reporter answers zeros)
            task.last[area.code] = figures
            batch.append(
                Evidence(
                    key=task.key,
                    remote_id=task.task_id,
                    kind=EvidenceKind.HANDSETS,
                    area=area.code,
                    measured=True,
                    targeted=area.targeted,
                    sent=area.sent,
                    delivered=area.delivered,
                    identifier=task.identifier,
                    at=progress.updated_at or datetime.now(UTC),
                    final=final,
                    detail={
                        "state": progress.state.value,
                        "revision": str(progress.revision),
                        "unreachable": str(area.unreachable),
                        "operator": self.name,
                    },
                )
            )
        if final:
            self._open.pop(task.task_id, None)
        if batch:
            self._evidence.put_nowait(batch)

    def _give_up(self, task: OpenTask, why: str) -> None:
        """Stop polling a task without a final report; a last Evidence per area (or for the task) says why.

        It is marked final because no later report will come through this channel, and measured because its
        figures are the operator's last report; ``detail["stopped"]`` tells a reader they are not the end.
        """
        self._open.pop(task.task_id, None)
        detail = {
            "state": task.state.value,
            "revision": str(task.revision),
            "stopped": why,
            "operator": self.name,
        }
        areas = task.last.items() or [("", (0, 0, 0))]
        self._evidence.put_nowait(
            [
                Evidence(
                    key=task.key,
                    remote_id=task.task_id,
                    kind=EvidenceKind.HANDSETS,
                    area=code,
                    measured=True,
                    targeted=targeted,
                    sent=sent,
                    delivered=delivered,
                    identifier=task.identifier,
                    at=datetime.now(UTC),
                    final=True,
                    detail=dict(detail),
                )
                for code, (targeted, sent, delivered) in areas
            ]
        )
        log.warning("area sms: %s", why, extra={"channel": self.name, "task_id": task.task_id})

    async def _poll_while_open(self) -> None:
        """Poll every open task each interval; end when none is open or the channel closes. Each round is
        bounded by ``max_open_tasks`` requests, each request by the timeouts."""
        while self._open and not self._closed:
            started = time.monotonic()
            try:
                tasks = list(self._open.values())
                await asyncio.gather(*(self._poll_one(task) for task in tasks))
            except Exception:  # the loop's boundary: record, carry on with the next round
                log.exception("area sms: polling round failed", extra={"channel": self.name})
            await asyncio.sleep(max(0.0, self.poll_interval_s - (time.monotonic() - started)))

    async def _poll_one(self, task: OpenTask) -> None:
        async with self._poll_slots:
            if self._closed or self._open.get(task.task_id) is not task:
                return
            self.counters["polls"] += 1
            answer = await self._call("GET", task_path(task.task_id), None, "")
            if self._open.get(task.task_id) is not task:
                return  # replaced by an Update or Cancel meanwhile; its own answer was observed
            if answer.failures or answer.status >= 300:
                self.counters["poll_failures"] += 1
                if answer.status == 404:
                    self._give_up(task, "the operator does not know the task")
                    return
            else:
                try:
                    self._observe(task, parse_task(answer.document))
                except ProtocolError as e:
                    self.counters["poll_failures"] += 1
                    log.warning(
                        "area sms: progress not per protocol",
                        extra={"channel": self.name, "task_id": task.task_id, "error": str(e)},
                    )
            if task.task_id in self._open and time.monotonic() >= task.deadline:
                self.counters["horizon_stops"] += 1
                self._give_up(task, "no final report by the polling horizon")

    async def evidence(self) -> AsyncIterator[list[Evidence]]:
        """Evidence in batches as progress changes, until the channel is closed and what is queued is drained.

        One batch is one task's answer: every area whose figures changed. Figures are cumulative within a
        task's revision (``detail["revision"]``); an Update starts a revision whose counts begin at zero.
        """
        while not (self._closed and self._evidence.empty()):
            try:
                batch = await asyncio.wait_for(self._evidence.get(), 0.5)  # wakes to notice a close
            except TimeoutError:
                continue
            yield batch

    @property
    def open_tasks(self) -> list[str]:
        """Ids of the tasks being polled, oldest first."""
        return list(self._open)

    # ------------------------------------------------------------------------------------------ health, close

    def health(self) -> Health:
        """Up when no route failed its latest request, degraded when some did, down when all did."""
        failing = sum(self._route_failing)
        total = len(self.routes)
        state = (
            HealthState.UP if not failing else HealthState.DOWN if failing == total else HealthState.DEGRADED
        )
        counters = self.counters | {"open_tasks": len(self._open)}
        detail = f"{total - failing}/{total} routes answering; preferred {self.routes[self._preferred]}"
        return Health(state, detail, total - failing, total, self._in_flight, counters)

    async def close(self) -> None:
        """Stop polling and let go of connections; tasks at the operator go on regardless."""
        self._closed = True
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        if self._session is not None:
            await self._session.close()
