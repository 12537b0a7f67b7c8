"""An emergency broadcast platform behind the area channel interface: BroadcastPlatformChannel.

The platform (a county's 应急广播平台) takes a script, an optional audio file and a line for LED displays, and
plays them on the loudspeakers and displays of the areas named; it reports per area how many terminals it
addressed and how many played. The HTTP JSON interface is described in docs/channels/emergency-broadcast-platform.md;
its fields follow the emergency broadcast message of GY/T 385-2023 as far as public facts allow.

- Alert: ``POST /v1/broadcasts`` with ``msg_type`` create. Update and Cancel post ``update`` / ``cancel`` naming
  the broadcast they replace (``references``): the platform stops it and plays the new script (a Cancel's
  script announces the end of the warning, which villagers need to hear as much as the warning). An Update whose
  earlier version never reached the platform is sent as a create; a Cancel of one is not sent at all.
- Every POST carries the delivery's key as ``Idempotency-Key``: a retry after a lost answer gets the broadcast
  made the first time, never a second one.
- Routes (the platform's addresses, e.g. two front ends) are tried in turn, the last known-good first. A
  connection error, a timeout or a 5xx moves on to the next route; when every route failed the result is a
  temporary failure naming each route's reason. A 429 is the platform asking to slow down (temporary, with its
  Retry-After); any other 4xx is a permanent refusal (the body or the token is wrong: resending it will not help).
- `evidence` polls the open broadcasts (at most ``max_polls_per_round`` a round) and yields per area
  ``Evidence(kind=AIRING, measured=True, targeted=terminals, delivered=played)``; an area's report is final
  once every terminal has played or failed, or the broadcast is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from channels.area import AreaAlert, AreaSendResult, Evidence, EvidenceKind
from channels.base import FailureKind, Health, HealthState, SendOutcome

log = logging.getLogger(__name__)

# CAP msgType -> the platform's msg_type
MSG_TYPES = {"Alert": "create", "Update": "update", "Cancel": "cancel"}
# the warning level -> the platform's severity, China's four grades (Ⅰ级 particularly serious ... Ⅳ级 general)
SEVERITY_OF_LEVEL = {"red": 1, "orange": 2, "yellow": 3, "blue": 4}
# broadcast states after which nothing more plays
FINAL_STATES = frozenset({"completed", "stopped", "superseded"})
LANGUAGE = "zho"  # GB/T 4880.2 three-letter code, the kind GY/T 385-2023 cites for a message's language
MAX_REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class BroadcastPlatformSettings:
    """One platform and how to talk to it."""

    routes: tuple[str, ...]  # base URLs ("https://ebs.example.org"), tried in turn
    token: str  # bearer token the platform issued to this release system
    name: str = "broadcast_platform"
    repeat: int = 1  # plays per terminal; the Chinese script already says everything twice
    request_timeout_s: float = 10.0
    connect_timeout_s: float = 3.0
    poll_interval_s: float = 5.0
    max_polls_per_round: int = 200  # bounds one round of evidence polling
    # how long after a warning's expiry a broadcast is still polled; after that its last report stands
    poll_grace_s: float = 3600.0

    def __post_init__(self) -> None:
        if not self.routes:
            raise ValueError("BroadcastPlatformSettings.routes: at least one route")
        if not 1 <= self.repeat <= 10:
            raise ValueError("BroadcastPlatformSettings.repeat: 1 to 10")


def broadcast_body(alert: AreaAlert, *, repeat: int = 1, language: str = LANGUAGE) -> dict[str, Any]:
    """The JSON body of ``POST /v1/broadcasts`` for one alert: a pure function, so a retry sends the same body.

    >>> from channels.area import AlertArea, AlertTexts
    >>> a = AreaAlert(key="7-1/broadcast_platform/wuhai", identifier="15030041600000_20260709160000",
    ...     warning_id=7, version=1, msg_type="Alert", status="Actual", hazard="heat", level="orange",
    ...     severity="Severe", urgency="Expected", onset=datetime(2026, 7, 9, 8, tzinfo=UTC),
    ...     expires=datetime(2026, 7, 10, 8, tzinfo=UTC), areas=(AlertArea("150302000000", "海勃湾区", 300000),),
    ...     texts=AlertTexts(headline="h", sms="s", broadcast="各位居民请注意！", led="高温橙色预警"), priority=1)
    >>> body = broadcast_body(a)
    >>> body["msg_type"], body["severity"], body["areas"], body["start"], body["references"]
    ('create', 2, ['150302000000'], '2026-07-09T08:00:00+00:00', None)
    """
    msg_type = MSG_TYPES[alert.msg_type]
    references: str | None = alert.previous_remote_id or None
    if msg_type == "update" and references is None:
        msg_type = "create"  # the version it updates never reached the platform: this one is new there
    return {
        "ebm_id": alert.identifier,
        "msg_type": msg_type,
        "references": references if msg_type != "create" else None,
        "status": alert.status.lower(),
        "event_type": alert.hazard,
        "severity": SEVERITY_OF_LEVEL.get(alert.level, 4),
        "start": alert.onset.isoformat(),
        "end": alert.expires.isoformat(),
        "areas": [area.code for area in alert.areas],
        "language": language,
        "script": alert.texts.broadcast,
        "audio_url": alert.audio_url or None,
        "led_text": alert.texts.led,
        "priority": alert.priority,
        "repeat": repeat,
    }


def evidence_of_status(status: Mapping[str, Any], *, key: str = "") -> list[Evidence]:
    """Per-area evidence from a ``GET /v1/broadcasts/{id}`` answer.

    >>> ev = evidence_of_status({"broadcast_id": "b1", "ebm_id": "x", "state": "playing",
    ...     "areas": [{"code": "150302000000", "terminals": 4, "played": 3, "failed": 1}]})
    >>> ev[0].targeted, ev[0].delivered, ev[0].final, ev[0].detail["failed"]
    (4, 3, True, '1')
    """
    state = str(status["state"])
    over = state in FINAL_STATES
    now = datetime.now(UTC)
    evidence = []
    for area in status["areas"]:
        terminals, played, failed = int(area["terminals"]), int(area["played"]), int(area.get("failed", 0))
        evidence.append(
            Evidence(
                key=key,
                remote_id=str(status["broadcast_id"]),
                kind=EvidenceKind.AIRING,
                area=str(area["code"]),
                measured=True,  # the platform counts terminals that confirmed playback
                targeted=terminals,
                sent=played + failed,
                delivered=played,
                identifier=str(status.get("ebm_id", "")),
                at=now,
                final=over or played + failed >= terminals,
                detail={"state": state, "failed": str(failed)},
            )
        )
    return evidence


@dataclass(slots=True)
class _Route:
    """One address of the platform and what happened there last."""

    url: str
    up: bool | None = None  # None: not tried yet
    reason: str = ""
    at: float = 0.0


@dataclass(slots=True)
class _OpenBroadcast:
    """A broadcast this channel made and still polls."""

    key: str
    poll_until: datetime
    last: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # area -> (terminals, played, failed)


class _Attempt(Exception):
    """One route's failure: the kind and the words for the result."""

    def __init__(
        self, failure: FailureKind, reason: str, *, retry_after_s: float | None = None, route: str = ""
    ) -> None:
        super().__init__(reason)
        self.failure = failure
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.route = route


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date, or nothing: the dispatcher's own backoff applies


class BroadcastPlatformChannel:
    """`AreaChannel` for one emergency broadcast platform reached over HTTP JSON (see the module docstring)."""

    def __init__(self, settings: BroadcastPlatformSettings) -> None:
        self.settings = settings
        self.name = settings.name
        self._routes = [_Route(url.rstrip("/")) for url in settings.routes]
        self._preferred = 0  # index of the last route that answered
        self._open: dict[str, _OpenBroadcast] = {}
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._wake = asyncio.Event()
        self._counters = {"accepted": 0, "temporary": 0, "permanent": 0, "polls": 0, "poll_failures": 0}

    # ------------------------------------------------------------------------------------------- plumbing

    def _client(self) -> aiohttp.ClientSession:
        # made on first use, inside the running loop (aiohttp wants one)
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=self.settings.request_timeout_s, connect=self.settings.connect_timeout_s
                ),
                headers={"Authorization": f"Bearer {self.settings.token}", "Accept": "application/json"},
                raise_for_status=False,
            )
        return self._session

    def _route_order(self) -> list[_Route]:
        """The last known-good route first, then the others in their configured order."""
        first = self._routes[self._preferred]
        return [first, *(r for r in self._routes if r is not first)]

    def _mark(self, route: _Route, up: bool, reason: str = "") -> None:
        route.up, route.reason, route.at = up, reason, time.monotonic()
        if up:
            self._preferred = self._routes.index(route)

    async def _call(
        self,
        route: _Route,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One request on one route: (status, JSON body) for any HTTP answer below 500 (and 429 raised as
        throttling); a 5xx, timeout or connection error raises `_Attempt` so the caller tries another route."""
        try:
            async with self._client().request(
                method, route.url + path, json=json, headers=headers
            ) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    body = {}
                body = body if isinstance(body, dict) else {}
                if response.status >= 500:
                    raise _Attempt(
                        FailureKind.REMOTE_ERROR,
                        f"{route.url}: HTTP {response.status} {_words(body)}".strip(),
                        retry_after_s=_retry_after(response.headers),
                    )
                if response.status == 429:
                    raise _Attempt(
                        FailureKind.THROTTLED,
                        f"{route.url}: HTTP 429 {_words(body)}".strip(),
                        retry_after_s=_retry_after(response.headers),
                    )
                return response.status, body
        except TimeoutError as e:
            raise _Attempt(FailureKind.TIMEOUT, f"{route.url}: no answer in time") from e
        except aiohttp.ClientError as e:
            raise _Attempt(FailureKind.LINK_DOWN, f"{route.url}: {e.__class__.__name__} {e}".strip()) from e

    async def _request(
        self, method: str, path: str, *, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[_Route, int, dict[str, Any]]:
        """The request on the routes in turn until one answers; raises `_Attempt` with every route's reason
        when none did, or at once on throttling (the platform behind every route asked to slow down)."""
        reasons: list[str] = []
        last: _Attempt | None = None
        for route in self._route_order():
            try:
                status, body = await self._call(route, method, path, json=json, headers=headers)
            except _Attempt as attempt:
                attempt.route = route.url
                if attempt.failure is FailureKind.THROTTLED:
                    self._mark(route, True, attempt.reason)  # it answered: the route works
                    raise
                self._mark(route, False, attempt.reason)
                reasons.append(attempt.reason)
                last = attempt
                continue
            self._mark(route, True)
            return route, status, body
        assert last is not None  # there is at least one route
        raise _Attempt(last.failure, "; ".join(reasons), retry_after_s=last.retry_after_s, route=last.route)

    # --------------------------------------------------------------------------------------------- sending

    async def put_out(self, alert: AreaAlert) -> AreaSendResult:
        """Create, update or cancel the broadcast of this alert at the platform; never raises for the
        platform's failure."""
        if self._closed:
            return self._failed(alert, FailureKind.CLOSED, "the channel is closed", route="")
        if alert.msg_type == "Cancel" and not alert.previous_remote_id:
            # nothing of this warning plays there: announcing the end of a warning nobody heard would confuse
            return AreaSendResult(
                key=alert.key, outcome=SendOutcome.ACCEPTED, reason="nothing to cancel there"
            )
        if alert.expired:  # the warning ended: stop what still plays, announce nothing
            if await self.stop(alert.previous_remote_id):
                return AreaSendResult(
                    alert.key, SendOutcome.ACCEPTED, alert.previous_remote_id, reason="stopped"
                )
            return self._failed(
                alert, FailureKind.LINK_DOWN, "the platform did not confirm the stop", route=""
            )
        if not alert.texts.broadcast.strip():
            return self._failed(alert, FailureKind.INVALID, "no broadcast script", route="")
        body = broadcast_body(alert, repeat=self.settings.repeat)
        try:
            route, status, answer = await self._request(
                "POST", "/v1/broadcasts", json=body, headers={"Idempotency-Key": alert.key}
            )
        except _Attempt as attempt:
            self._counters["temporary"] += 1
            log.warning(
                "broadcast platform: not taken for now",
                extra={"channel": self.name, "key": alert.key, "reason": attempt.reason},
            )
            return AreaSendResult(
                key=alert.key,
                outcome=SendOutcome.TEMPORARY_FAILURE,
                route=attempt.route,  # the route that failed last
                reason=attempt.reason[:MAX_REASON_CHARS],
                failure=attempt.failure,
                retry_after_s=attempt.retry_after_s,
            )
        if status not in (200, 201) or not answer.get("broadcast_id"):
            return self._failed(
                alert, FailureKind.REFUSED, f"HTTP {status} {_words(answer)}".strip(), route.url
            )
        broadcast_id = str(answer["broadcast_id"])
        self._counters["accepted"] += 1
        if alert.previous_remote_id:
            self._open.pop(alert.previous_remote_id, None)  # the platform stopped it; its last report stands
        self._open[broadcast_id] = _OpenBroadcast(
            key=alert.key, poll_until=alert.expires + timedelta(seconds=self.settings.poll_grace_s)
        )
        self._wake.set()
        log.info(
            "broadcast platform: taken",
            extra={"channel": self.name, "key": alert.key, "broadcast_id": broadcast_id, "route": route.url},
        )
        return AreaSendResult(
            key=alert.key,
            outcome=SendOutcome.ACCEPTED,
            remote_id=broadcast_id,
            route=route.url,
            reason=str(answer.get("state", "")),
        )

    def _failed(self, alert: AreaAlert, failure: FailureKind, reason: str, route: str) -> AreaSendResult:
        self._counters["permanent" if not failure.retryable else "temporary"] += 1
        log.warning(
            "broadcast platform: refused", extra={"channel": self.name, "key": alert.key, "reason": reason}
        )
        outcome = SendOutcome.TEMPORARY_FAILURE if failure.retryable else SendOutcome.PERMANENT_FAILURE
        return AreaSendResult(
            key=alert.key, outcome=outcome, route=route, reason=reason[:MAX_REASON_CHARS], failure=failure
        )

    async def stop(self, broadcast_id: str) -> bool:
        """Stop a broadcast at once, without announcing anything (``DELETE``): for a broadcast sent in error.
        Whether the platform confirmed it stopped (or had already finished)."""
        try:
            _, status, _ = await self._request("DELETE", f"/v1/broadcasts/{broadcast_id}")
        except _Attempt:
            return False
        return status in (200, 204)

    async def check_routes(self) -> Health:
        """A link test: ``GET /v1/health`` on every route, so the next send starts on one that answers."""
        for route in self._routes:
            try:
                status, _ = await self._call(route, "GET", "/v1/health")
            except _Attempt as attempt:
                self._mark(route, False, attempt.reason)
                continue
            if status == 200:
                self._mark(route, True)
            else:
                self._mark(route, False, f"{route.url}: HTTP {status}")
        return self.health()

    # -------------------------------------------------------------------------------------------- evidence

    async def poll_once(self) -> list[Evidence]:
        """One round: the status of at most ``max_polls_per_round`` open broadcasts; evidence only for areas
        whose figures changed. Broadcasts that are over, unknown to the platform or past their grace are
        dropped from the round."""
        evidence: list[Evidence] = []
        now = datetime.now(UTC)
        for broadcast_id in list(self._open)[: self.settings.max_polls_per_round]:
            open_one = self._open[broadcast_id]
            if now > open_one.poll_until:
                del self._open[broadcast_id]
                continue
            self._counters["polls"] += 1
            try:
                _, status, answer = await self._request("GET", f"/v1/broadcasts/{broadcast_id}")
            except _Attempt as attempt:
                self._counters["poll_failures"] += 1
                log.info(
                    "broadcast platform: poll failed", extra={"channel": self.name, "reason": attempt.reason}
                )
                break  # every route is down: the next round tries again
            if status == 404:
                del self._open[broadcast_id]
                continue
            if status != 200:
                self._counters["poll_failures"] += 1
                continue
            try:
                reports = evidence_of_status(answer, key=open_one.key)
            except (KeyError, TypeError, ValueError):
                self._counters["poll_failures"] += 1
                log.warning("broadcast platform: a status it could not read", extra={"channel": self.name})
                continue
            for report in reports:
                figures = (report.targeted, report.delivered, report.sent)
                if open_one.last.get(report.area) != figures or report.final:
                    evidence.append(report)
                open_one.last[report.area] = figures
            if all(r.final for r in reports):  # also when it names no area: nothing more will come
                del self._open[broadcast_id]
        return evidence

    async def evidence(self) -> AsyncIterator[list[Evidence]]:
        """Evidence in batches while the channel is open: a round every ``poll_interval_s`` (sooner after a
        send), a batch whenever a round found something new. A final report of an area may come twice."""
        while not self._closed:
            batch = await self.poll_once()
            if batch:
                yield batch
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)

    # ---------------------------------------------------------------------------------------------- health

    def health(self) -> Health:
        """Up when every route that was tried answered, degraded when some did, down when none did."""
        tried = [r for r in self._routes if r.up is not None]
        up = sum(1 for r in self._routes if r.up is not False)
        if not tried or up == len(self._routes):
            state, detail = HealthState.UP, ""
        elif up:
            state, detail = HealthState.DEGRADED, "; ".join(r.reason for r in self._routes if r.up is False)
        else:
            state, detail = HealthState.DOWN, "; ".join(r.reason for r in self._routes)
        return Health(
            state=state,
            detail=detail[:MAX_REASON_CHARS],
            links_up=up,
            links_total=len(self._routes),
            in_flight=len(self._open),
            counters=dict(self._counters),
        )

    async def close(self) -> None:
        """Stop polling and let go of the HTTP connections; broadcasts already made go on playing."""
        self._closed = True
        self._wake.set()
        if self._session is not None:
            await self._session.close()


def _words(body: Mapping[str, Any]) -> str:
    """The platform's own words from a problem document: its title and detail."""
    parts = [str(body[k]) for k in ("title", "detail") if body.get(k)]
    return ": ".join(parts)[:MAX_REASON_CHARS]
