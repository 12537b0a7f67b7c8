"""A client of a cell broadcast centre's ECBE REST interface (Osmocom osmo-cbc) behind `AreaChannel`: CbcChannel.

What the interface is (read from osmocom/osmo-cbc: ``cbc.schema.json``, ``smscb.schema.json``,
``src/rest_api.c``, ``src/rest_it_op.c``, ``src/smscb_message_fsm.c``): ``POST {base}/api/ecbe/v1/message``
creates a message from a JSON ``cbc_message``, answered 201 once the cells' controllers acknowledged it, 400
with a one-line reason when the body is wrong, 409 when a message with the same ``message_id`` exists (the
CBC keys its messages by message_id alone), 500 when its state machine fails; ``DELETE
{base}/api/ecbe/v1/message/{message_id}`` deletes one (200, or 404 when there is none). There is no replace
(the upstream code marks it as still to do) and no status query.

So here:

- an Alert is one POST; an Update is a DELETE of the earlier message and a POST of the new text with the
  update number one more (handsets show a message again only when its serial number changed); a Cancel is a
  DELETE. A 404 to a DELETE is success: the message is gone, maybe by an earlier attempt whose answer was
  lost.
- ``remote_id`` is ``"{message_id}:{serial_number}"`` in decimal, e.g. ``"4372:21186"`` (message identifier
  4372, serial number 0x52C2: PLMN-wide, message code 300, update 2): everything a later Update or Cancel
  needs, so they work after a restart (`parse_remote_id`).
- Each target has routes (base URLs: a primary and a secondary CBC, or proxies in front of one). The last
  route that answered is tried first; a connection error, a timeout or a 5xx goes on to the next; a 4xx is
  the CBC's refusal and final (400 `INVALID`, others `REFUSED`); when every route failed the alert fails for
  now with each route's reason.
- As GOV.UK Emergency Alerts does, an Update or Cancel to a target goes only once the target answered the
  previous message: put_outs to one channel go one at a time (a lock). An Update or Cancel that names a
  message this process never sent (it restarted) is still sent.
- Cell broadcast has no receipts: once the CBC took an Alert or Update, the channel reports per area an
  estimate of the people reached (population x ``reach_share``), ``measured=False``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp

from channels.area import AreaAlert, AreaSendResult, Evidence, EvidenceKind
from channels.base import FailureKind, Health, HealthState, SendOutcome
from channels.cbs.pages import (
    Alphabet,
    CbsEncodingError,
    GeoScope,
    SerialNumber,
    message_identifier,
    split_pages,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

API_PATH = "/api/ecbe/v1/message"
# UK national test of Emergency Alerts, 23 April 2023: the government expected the alert to reach about 90 %
# of mobile phones, and afterwards told Parliament that about 7 % of compatible devices did not get it
# (switched off, in flight mode, opted out, or on Three's network). A handset is not a person (children,
# people without a phone), so 0.90 is an estimate of people reached, to be replaced by an operator's figure.
DEFAULT_REACH_SHARE = 0.90
# TS 48.049 (CBSP) counts the repetition period in CBCH cycles of about 1.883 s (1-4095); used to turn the
# time left until expiry into a number of broadcasts, so the cells stop on their own at expiry.
REPETITION_UNIT_S = 1.883
MAX_BROADCASTS = 65_535  # num_of_bcast is 16 bits; 0 would mean "until deleted"
RECENT_KEYS = 4_096  # keys of accepted alerts remembered, so a repeated put_out answers as the first did
HIGH_PRIORITY_LEVELS = frozenset({"red", "orange"})
DEFAULT_LANGUAGES: Mapping[Alphabet, str] = {Alphabet.GSM7: "en", Alphabet.UCS2: "zh"}


class RoutesFailed(Exception):
    """Every route of the target failed for now; ``failures`` has (route, kind, reason) for each."""

    def __init__(self, failures: list[tuple[str, FailureKind, str]]) -> None:
        super().__init__("; ".join(f"{route}: {reason}" for route, _, reason in failures))
        self.failures = failures

    @property
    def kind(self) -> FailureKind:
        """The kind to report: a timeout first (the CBC may have the message), then a CBC's own error, else
        no link."""
        kinds = {kind for _, kind, _ in self.failures}
        for kind in (FailureKind.TIMEOUT, FailureKind.THROTTLED, FailureKind.REMOTE_ERROR):
            if kind in kinds:
                return kind
        return FailureKind.LINK_DOWN


@dataclass(frozen=True, slots=True)
class CbcReply:
    """A route's HTTP answer that is final for this request (2xx or 4xx)."""

    status: int
    text: str
    route: str


@dataclass(slots=True)
class RouteState:
    """What the channel knows of one route from its recent requests."""

    url: str
    answering: bool | None = None  # None: not tried yet
    last_error: str = ""
    last_at: float = 0.0
    answers: int = 0
    failures: int = 0


def format_remote_id(message_id: int, serial: SerialNumber) -> str:
    """The remote id of a CBC message: ``"{message_id}:{serial_number}"``, both decimal.

    >>> format_remote_id(4372, SerialNumber(GeoScope.PLMN, 300, 2))
    '4372:21186'
    """
    return f"{message_id}:{serial.encode()}"


def parse_remote_id(remote_id: str) -> tuple[int, SerialNumber]:
    """The message identifier and serial number in a remote id made by `format_remote_id`.

    >>> parse_remote_id("4372:21186")
    (4372, SerialNumber(geo_scope=<GeoScope.PLMN: 1>, message_code=300, update_number=2))
    """
    message_id, sep, serial = remote_id.partition(":")
    if not sep or not message_id.isdigit() or not serial.isdigit() or int(message_id) > 0xFFFF:
        raise ValueError(f"{remote_id!r} is not a CBC remote id (message_id:serial_number)")
    return int(message_id), SerialNumber.decode(int(serial))


def category_of(level: str) -> str:
    """The ECBE category: red and orange warnings go before others (``high_priority``), the rest ``normal``."""
    return "high_priority" if level in HIGH_PRIORITY_LEVELS else "normal"


def broadcasts_until(expires: datetime, now: datetime, repetition_period: int) -> int:
    """How many broadcasts, one every ``repetition_period`` CBCH cycles, cover the time until expiry (at least
    one, at most 65,535).

    >>> from datetime import timedelta
    >>> t = datetime(2026, 7, 1, tzinfo=UTC)
    >>> broadcasts_until(t + timedelta(hours=6), t, 32)  # 21,600 s / (32 x 1.883 s) = 358.5
    359
    """
    left_s = (expires - now).total_seconds()
    return max(1, min(MAX_BROADCASTS, math.ceil(left_s / (repetition_period * REPETITION_UNIT_S))))


def ecbe_message(
    *,
    cbe_name: str,
    category: str,
    repetition_period: int,
    num_of_bcast: int,
    message_id: int,
    serial: SerialNumber,
    text: str,
    alphabet: Alphabet,
    language: str,
) -> dict[str, Any]:
    """The JSON body of an ECBE POST, in the shape osmo-cbc's parser reads (src/rest_api.c): the serial
    number and the payload each wrapped in the name of the variant used (``serial_nr_decoded``,
    ``payload_decoded``), the whole PLMN as scope (the only scope it accepts). The CBC encodes the text
    into pages itself, from ``character_set``; ``language`` goes into its DCS.
    """
    payload: dict[str, Any] = {"character_set": alphabet.value, "data_utf8": text}
    if language:
        payload["language"] = language
    return {
        "cbe_name": cbe_name,
        "category": category,
        "repetition_period": repetition_period,
        "num_of_bcast": num_of_bcast,
        "scope": {"scope_plmn": {}},
        "smscb_message": {
            "serial_nr": {
                "serial_nr_decoded": {
                    "geo_scope": serial.geo_scope.ecbe_name,
                    "msg_code": serial.message_code,
                    "update_nr": serial.update_number,
                }
            },
            "message_id": message_id,
            "payload": {"payload_decoded": payload},
        },
    }


class CbcChannel:
    """An `AreaChannel` to one cell broadcast centre over its ECBE REST interface, over one or more routes.

    ``msg_code`` fixes the serial number's message code; by default it is the warning id modulo 1024, so two
    warnings that share a message identifier still differ for the handsets. ``message_ids`` maps a warning
    level to a message identifier (default `DEFAULT_LEVEL_MESSAGE_IDS`; Exercise and Test always go as 4381
    and 4380). ``num_of_bcast`` None broadcasts until the warning expires (`broadcasts_until`).
    """

    def __init__(
        self,
        name: str,
        routes: Sequence[str],
        *,
        cbe_name: str = "wuhai-warnings",
        connect_timeout_s: float = 3.0,
        request_timeout_s: float = 15.0,
        repetition_period: int = 32,
        num_of_bcast: int | None = None,
        msg_code: int | None = None,
        geo_scope: GeoScope = GeoScope.PLMN,
        message_ids: Mapping[str, int] | None = None,
        languages: Mapping[Alphabet, str] | None = None,
        reach_share: float = DEFAULT_REACH_SHARE,
    ) -> None:
        if not routes:
            raise ValueError("a CBC target needs at least one route")
        if not 1 <= repetition_period <= 4095:
            raise ValueError(f"repetition_period {repetition_period} is not in 1-4095")
        if num_of_bcast is not None and not 0 <= num_of_bcast <= MAX_BROADCASTS:
            raise ValueError(f"num_of_bcast {num_of_bcast} is not in 0-65535")
        if msg_code is not None and not 0 <= msg_code <= 0x3FF:
            raise ValueError(f"msg_code {msg_code} is not in 0-1023")
        if not 0.0 <= reach_share <= 1.0:
            raise ValueError(f"reach_share {reach_share} is not a share")
        self.name = name
        self.cbe_name = cbe_name
        self.repetition_period = repetition_period
        self.num_of_bcast = num_of_bcast
        self.msg_code = msg_code
        self.geo_scope = geo_scope
        self.message_ids = message_ids
        self.languages = DEFAULT_LANGUAGES if languages is None else languages
        self.reach_share = reach_share
        self._routes = [RouteState(url.rstrip("/")) for url in routes]
        self._preferred = 0  # index of the last route that answered
        self._timeout = aiohttp.ClientTimeout(total=request_timeout_s, sock_connect=connect_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()  # one put_out at a time: an Update waits for its Alert's answer
        self._evidence: asyncio.Queue[list[Evidence] | None] = asyncio.Queue()
        self._accepted: OrderedDict[str, AreaSendResult] = OrderedDict()  # key -> result, recent
        self._maybe_sent: OrderedDict[str, str] = (
            OrderedDict()
        )  # key -> remote_id of a POST whose answer was lost
        self._known: OrderedDict[str, str] = OrderedDict()  # remote ids this process put there -> key
        self._closed = False
        self.counters = {"put_outs": 0, "accepted": 0, "failed": 0, "route_failures": 0}

    # ------------------------------------------------------------------------------------------ sending

    async def put_out(self, alert: AreaAlert) -> AreaSendResult:
        """Create (Alert), replace (Update) or delete (Cancel) the alert's message at the CBC; never raises
        for the CBC's failure: that is the result."""
        async with self._lock:
            if self._closed:
                return self._failed(alert, FailureKind.CLOSED, "channel closed", "")
            self.counters["put_outs"] += 1
            earlier = self._accepted.get(alert.key)
            if earlier is not None:  # a repeated attempt: answer as the first one was answered
                return earlier
            try:
                if alert.msg_type == "Cancel":
                    result = await self._cancel(alert)
                else:
                    result = await self._broadcast(alert)
            except RoutesFailed as e:
                self.counters["route_failures"] += len(e.failures)
                self.counters["failed"] += 1
                return self._failed(alert, e.kind, str(e), e.failures[-1][0])
            if result.outcome is SendOutcome.ACCEPTED:
                self.counters["accepted"] += 1
                self._remember(self._accepted, alert.key, result)
                if alert.msg_type != "Cancel":
                    self._remember(self._known, result.remote_id, alert.key)
                    self._emit_evidence(alert, result.remote_id)
            else:
                self.counters["failed"] += 1
            log.info(
                "cbc put_out",
                extra={
                    "channel": self.name,
                    "key": alert.key,
                    "msg_type": alert.msg_type,
                    "outcome": result.outcome.value,
                    "remote_id": result.remote_id,
                    "route": result.route,
                    "reason": result.reason,
                },
            )
            return result

    def _previous(self, alert: AreaAlert) -> tuple[int, SerialNumber] | None:
        """The message the Update or Cancel replaces, from ``previous_remote_id`` (None when there is none);
        ValueError when it is not a CBC remote id (see `parse_remote_id`)."""
        if not alert.previous_remote_id:
            return None
        if alert.previous_remote_id not in self._known:
            # a restart since, or another process sent it: the id says all that is needed, so go on
            log.info(
                "cbc previous message not sent by this process",
                extra={"channel": self.name, "key": alert.key, "remote_id": alert.previous_remote_id},
            )
        return parse_remote_id(alert.previous_remote_id)

    async def _broadcast(self, alert: AreaAlert) -> AreaSendResult:
        """POST an Alert, or an Update after deleting the message it replaces."""
        now = datetime.now(UTC)
        if alert.expires <= now:
            return self._failed(alert, FailureKind.INVALID, f"expired at {alert.expires.isoformat()}", "")
        text = alert.texts.description or alert.texts.sms
        try:
            pages = split_pages(text)  # the CBC would refuse more than 15 pages: say so before sending
            message_id = message_identifier(
                status=alert.status,
                level=alert.level,
                severity=alert.severity,
                urgency=alert.urgency,
                level_ids=self.message_ids,
            )
            previous = self._previous(alert) if alert.msg_type == "Update" else None
        except (CbsEncodingError, ValueError) as e:
            return self._failed(alert, FailureKind.INVALID, str(e), "")
        if previous is not None:
            serial = previous[1].next_update()
            deleted = await self._delete(alert, previous[0])
            if deleted is not None:
                return deleted
        else:
            code = alert.warning_id % 1024 if self.msg_code is None else self.msg_code
            serial = SerialNumber(self.geo_scope, code, alert.update_number % 16)
        remote_id = format_remote_id(message_id, serial)
        body = ecbe_message(
            cbe_name=self.cbe_name,
            category=category_of(alert.level),
            repetition_period=self.repetition_period,
            num_of_bcast=(
                broadcasts_until(alert.expires, now, self.repetition_period)
                if self.num_of_bcast is None
                else self.num_of_bcast
            ),
            message_id=message_id,
            serial=serial,
            text=text,
            alphabet=pages.alphabet,
            language=self.languages.get(pages.alphabet, ""),
        )
        try:
            reply = await self._request("POST", API_PATH, body)
        except RoutesFailed:
            # a timeout or a dropped connection may hide a message the CBC took: a retry's 409 is then ours
            self._remember(self._maybe_sent, alert.key, remote_id)
            raise
        if 200 <= reply.status < 300:
            self._maybe_sent.pop(alert.key, None)
            return AreaSendResult(alert.key, SendOutcome.ACCEPTED, remote_id=remote_id, route=reply.route)
        if reply.status == 409 and self._maybe_sent.get(alert.key) == remote_id:
            # the earlier attempt's POST went through but its answer was lost: this message is that one
            self._maybe_sent.pop(alert.key, None)
            return AreaSendResult(
                alert.key,
                SendOutcome.ACCEPTED,
                remote_id=remote_id,
                route=reply.route,
                reason="409 on a retry after a lost answer: the earlier attempt's message",
            )
        return self._refused(alert, reply, remote_id)

    async def _cancel(self, alert: AreaAlert) -> AreaSendResult:
        """DELETE the message the Cancel names; a Cancel for a message that never reached the target has
        nothing to do."""
        try:
            previous = self._previous(alert)
        except ValueError as e:
            return self._failed(alert, FailureKind.INVALID, str(e), "")
        if previous is None:
            return AreaSendResult(
                alert.key,
                SendOutcome.ACCEPTED,
                reason="nothing to cancel: no earlier message reached this CBC",
            )
        failed = await self._delete(alert, previous[0])
        if failed is not None:
            return failed
        self._known.pop(alert.previous_remote_id, None)
        return AreaSendResult(
            alert.key,
            SendOutcome.ACCEPTED,
            remote_id=alert.previous_remote_id,
            route=self._routes[self._preferred].url,
        )

    async def _delete(self, alert: AreaAlert, message_id: int) -> AreaSendResult | None:
        """DELETE a message; None when it is gone (deleted now, or already: 404), else the refusal."""
        reply = await self._request("DELETE", f"{API_PATH}/{message_id}", None)
        if 200 <= reply.status < 300 or reply.status == 404:
            return None
        return self._refused(alert, reply, alert.previous_remote_id)

    def _refused(self, alert: AreaAlert, reply: CbcReply, remote_id: str) -> AreaSendResult:
        """A CBC's 4xx: for good; 400 means the body is wrong (`INVALID`), any other a refusal."""
        kind = FailureKind.INVALID if reply.status == 400 else FailureKind.REFUSED
        return AreaSendResult(
            alert.key,
            SendOutcome.PERMANENT_FAILURE,
            remote_id=remote_id,
            route=reply.route,
            reason=f"HTTP {reply.status}: {reply.text.strip()[:200]}",
            failure=kind,
        )

    @staticmethod
    def _failed(alert: AreaAlert, kind: FailureKind, reason: str, route: str) -> AreaSendResult:
        outcome = SendOutcome.TEMPORARY_FAILURE if kind.retryable else SendOutcome.PERMANENT_FAILURE
        return AreaSendResult(alert.key, outcome, route=route, reason=reason, failure=kind)

    @staticmethod
    def _remember(table: OrderedDict[str, T], key: str, value: T) -> None:
        table[key] = value
        if len(table) > RECENT_KEYS:
            table.popitem(last=False)

    # ------------------------------------------------------------------------------------------ routes

    async def _request(self, method: str, path: str, body: dict[str, Any] | None) -> CbcReply:
        """Send one request over the routes, the last one that answered first; the first 2xx or 4xx answer
        is the reply. Raises RoutesFailed when every route failed (no connection, timeout, 5xx, 429)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        failures: list[tuple[str, FailureKind, str]] = []
        n = len(self._routes)
        for step in range(n):
            index = (self._preferred + step) % n
            route = self._routes[index]
            kind: FailureKind | None = None
            try:
                async with self._session.request(method, route.url + path, json=body) as response:
                    text = await response.text()
                    status = response.status
            except TimeoutError:
                kind, reason = FailureKind.TIMEOUT, "no answer in time"
            except aiohttp.ClientError as e:
                kind, reason = FailureKind.LINK_DOWN, f"{type(e).__name__}: {e}"
            else:
                if status >= 500:
                    kind, reason = FailureKind.REMOTE_ERROR, f"HTTP {status}: {text.strip()[:200]}"
                elif status == 429:
                    kind, reason = FailureKind.THROTTLED, f"HTTP 429: {text.strip()[:200]}"
            route.last_at = time.monotonic()
            if kind is None:
                route.answering, route.last_error = True, ""
                route.answers += 1
                self._preferred = index
                return CbcReply(status, text, route.url)
            route.answering, route.last_error = False, reason
            route.failures += 1
            failures.append((route.url, kind, reason))
            log.warning(
                "cbc route failed",
                extra={"channel": self.name, "route": route.url, "failure": kind.value, "reason": reason},
            )
        raise RoutesFailed(failures)

    # ------------------------------------------------------------------------------------------ evidence

    def _emit_evidence(self, alert: AreaAlert, remote_id: str) -> None:
        """One estimate per area of the people the broadcast reaches: no receipts exist for cell broadcast."""
        at = datetime.now(UTC)
        share = str(self.reach_share)
        batch = [
            Evidence(
                key=alert.key,
                remote_id=remote_id,
                kind=EvidenceKind.BROADCAST,
                area=area.code,
                measured=False,
                targeted=area.population,
                delivered=round(area.population * self.reach_share),
                identifier=alert.identifier,
                at=at,
                final=True,
                detail={"reach_share": share, "basis": "estimate: population x reach_share"},
            )
            for area in alert.areas
        ]
        if batch:
            self._evidence.put_nowait(batch)

    async def evidence(self) -> AsyncIterator[list[Evidence]]:
        """Estimates of reach in batches (one per accepted Alert or Update), until the channel is closed."""
        while True:
            batch = await self._evidence.get()
            if batch is None:
                self._evidence.put_nowait(None)  # a later consumer ends too
                return
            yield batch

    # ------------------------------------------------------------------------------------------ state

    def health(self) -> Health:
        """Up when every route answered its last request (or has not been tried), degraded when some did,
        down when none did."""
        up = sum(r.answering is not False for r in self._routes)
        total = len(self._routes)
        state = HealthState.UP if up == total else HealthState.DEGRADED if up else HealthState.DOWN
        failing = "; ".join(f"{r.url}: {r.last_error}" for r in self._routes if r.answering is False)
        detail = f"{up}/{total} routes answering, preferred {self._routes[self._preferred].url}"
        if failing:
            detail += f"; failing {failing}"
        return Health(state, detail, up, total, 1 if self._lock.locked() else 0, dict(self.counters))

    @property
    def preferred_route(self) -> str:
        """The route the next request tries first (the last that answered)."""
        return self._routes[self._preferred].url

    async def close(self) -> None:
        """Close the HTTP session and end `evidence()`; later put_outs fail with `CLOSED`."""
        self._closed = True
        self._evidence.put_nowait(None)
        if self._session is not None:
            await self._session.close()
            self._session = None
