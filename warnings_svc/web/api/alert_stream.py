"""The public alert stream, ``GET /api/v1/alerts/stream``: every public message (Alert, Update, Cancel) as a
server-sent event, for partners who want push without running a server.

Each message is one ``event: alert`` with an ``id:`` and one ``data:`` line of JSON (`alert_event_data`).
What is public is what the alerts API shows (`lifecycle.public_alerts`): issued, not an exercise, its stored
CAP ``Actual``. No login; any origin may read it.

Decisions where the issue is silent:

- **The event id** is ``{sent}-{warning_id}-{version}`` with the send time in UTC to the second
  (``20261205T204751Z-12-2``). It comes from the database, so it survives restarts and is the same from every
  web worker. Send times are unique and increase in the order the messages were committed (the store takes
  them under the audit lock, held until commit), so the ids order the events totally, as they became
  visible; the two ids after the time only make the key unambiguous.
- **Replay**: with ``Last-Event-ID`` (the header, or ``?last_event_id=`` for clients that cannot set headers;
  the header wins) the messages sent after that id are sent first, oldest first, then live ones. The replay
  is bounded: messages of the last `REPLAY_WINDOW` (24 h, the Atom feed's window) and at most the newest
  `REPLAY_MAX` of them; when more were missed a comment line says so (the alerts API has them all). An id
  that is not of the form is a 400 problem naming ``Last-Event-ID``; an id of the form that names no message
  is a point in time and works. Without an id a client gets what is sent from now on.
- **Nothing lost between replay and live**: the stream subscribes to the event hub (`web.events`, the one
  listening connection the console's stream uses) before it reads the replay, then skips every live message
  whose id is not after the last one sent: notifications come in commit order, as the ids do, so that drops
  exactly the duplicates. Without an id, the newest message's key is read before subscribing and the
  replay from it catches what was committed in between. When the hub lost its connection (``resync``), the
  stream replays from its last id.
- **Live lookups**: a ``warning`` notification names a warning and version; the stream reads that version
  (public or not) once per notification however many streams are open (`AlertLookups`), and the JSON of a
  message once per base URL (`AlertEvents`: a message never changes once issued).
- Heartbeats, slow clients, bounded queues and the end at shutdown are the hub's (`web.events`): a client
  that does not read is dropped and reconnects with its ``Last-Event-ID``; so is one whose stream fails to
  read the database.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiohttp import web
from pydantic import Field

from risk_zoning.errors import DatabaseError
from warnings_svc.lifecycle.public_alerts import FEED_WINDOW, PublicAlert, PublicAlerts
from warnings_svc.web.api.alert_documents import AlertLinks, cap_time
from warnings_svc.web.api.alerts import PUBLIC_ALERTS, alert_links
from warnings_svc.web.appkeys import POOL
from warnings_svc.web.events import (
    EVENT_HUB,
    HEARTBEAT,
    RESYNC,
    Event,
    event_stream_response,
    events_of,
    stream_preamble,
    write_chunk,
)
from warnings_svc.web.operations import RequestModel, media_reply, operation, parse_query
from warnings_svc.web.problems import ApiProblem

REPLAY_WINDOW = FEED_WINDOW  # how far back a replay reaches
REPLAY_MAX = 100  # messages a replay sends at most (the newest)
LOOKUPS_KEPT = 256  # notifications whose lookups are shared among streams
EVENTS_KEPT = 512  # messages' JSON kept per process

Key = tuple[datetime, int, int]  # (sent, warning_id, version)

_EVENT_ID = re.compile(r"^(\d{8}T\d{6})(?:\.(\d{6}))?Z-([1-9]\d{0,17})-([1-9]\d{0,8})$")


def event_id(key: Key) -> str:
    """A message's event id.

    >>> event_id((datetime(2026, 12, 5, 20, 47, 51, tzinfo=UTC), 12, 2))
    '20261205T204751Z-12-2'
    """
    sent, warning_id, version = key
    sent = sent.astimezone(UTC)
    fraction = f".{sent.microsecond:06d}" if sent.microsecond else ""
    return f"{sent:%Y%m%dT%H%M%S}{fraction}Z-{warning_id}-{version}"


def parse_event_id(raw: str) -> Key | None:
    """The key an event id names; None when it is not an event id.

    >>> parse_event_id("20261205T204751Z-12-2")[1:]
    (12, 2)
    >>> parse_event_id("12-2") is None, parse_event_id("20261305T204751Z-12-2") is None
    (True, True)
    """
    match = _EVENT_ID.match(raw)
    if match is None:
        return None
    try:
        sent = datetime.strptime(match[1], "%Y%m%dT%H%M%S").replace(
            microsecond=int(match[2] or 0), tzinfo=UTC
        )
    except ValueError:
        return None
    return sent, int(match[3]), int(match[4])


def key_of(alert: PublicAlert) -> Key:
    return alert.sent, alert.warning_id, alert.version


def alert_event_data(alert: PublicAlert, links: AlertLinks, area_names: dict[str, str]) -> dict[str, Any]:
    """The JSON of one message's event: what a partner needs to act, and where the rest is."""
    info = alert.cap.primary
    return {
        "id": event_id(key_of(alert)),
        "alert_id": alert.id,
        "identifier": alert.cap.identifier,
        "warning_id": alert.warning_id,
        "version": alert.version,
        "sent": cap_time(alert.sent),
        "status": alert.cap.status,
        "msgType": alert.msg_type,
        "hazard": alert.hazard,
        "level": alert.level,
        "areas": [{"code": code, "name": area_names.get(code, "")} for code in alert.areas],
        "onset": cap_time(alert.onset),
        "expires": cap_time(alert.expires),
        "headline": info.headline,
        "cap_url": links.cap(alert.id),
        "web": links.alert(alert.id),
    }


def encode_alert(data: dict[str, Any]) -> bytes:
    """One ``event: alert`` with its id; the JSON is one line, so one ``data:`` line."""
    return f"id: {data['id']}\nevent: alert\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


class AlertEvents:
    """Each message's encoded event per base URL, made once (an issued message never changes)."""

    def __init__(self, public: PublicAlerts) -> None:
        self._public = public
        self._encoded: OrderedDict[tuple[str, str], bytes] = OrderedDict()

    def cached(self, alert: PublicAlert, links: AlertLinks) -> bytes | None:
        """The message's event when it was made before (no connection needed)."""
        return self._encoded.get((alert.id, links.base))

    async def encoded(self, conn: asyncpg.Connection, alert: PublicAlert, links: AlertLinks) -> bytes:
        """The message's event, made now if it was not before."""
        cache_key = (alert.id, links.base)
        found = self._encoded.get(cache_key)
        if found is None:
            found = encode_alert(alert_event_data(alert, links, await self._area_names(conn)))
            self._encoded[cache_key] = found
            while len(self._encoded) > EVENTS_KEPT:
                self._encoded.popitem(last=False)
        return found

    async def _area_names(self, conn: asyncpg.Connection) -> dict[str, str]:
        try:
            areas = await self._public.areas(conn)
        except DatabaseError:  # no risk database (yet): the codes alone still say where
            return {}
        return {code: unit.name for code, unit in areas.units.items()}


class AlertLookups:
    """The public message a ``warning`` notification names, read once however many streams ask: the first
    stream's lookup is shared by the others (the same `Event` object reaches every subscriber)."""

    def __init__(self) -> None:
        self._tasks: OrderedDict[Event, asyncio.Task[PublicAlert | None]] = OrderedDict()

    def lookup(
        self, event: Event, read: Callable[[int, int], Awaitable[PublicAlert | None]]
    ) -> asyncio.Future[PublicAlert | None]:
        task = self._tasks.get(event)
        if task is None:
            warning_id, version = event.data.get("id"), event.data.get("version")
            if not isinstance(warning_id, int) or not isinstance(version, int):
                done: asyncio.Future[PublicAlert | None] = asyncio.get_running_loop().create_future()
                done.set_result(None)
                return done
            task = asyncio.ensure_future(read(warning_id, version))
            self._tasks[event] = task
            while len(self._tasks) > LOOKUPS_KEPT:
                self._tasks.popitem(last=False)
        return asyncio.shield(task)  # one stream going away must not cancel the others' lookup


ALERT_EVENTS = web.AppKey("alert_events", AlertEvents)
ALERT_LOOKUPS = web.AppKey("alert_lookups", AlertLookups)


class AlertStreamQuery(RequestModel):
    last_event_id: str | None = Field(
        None,
        description="For clients that cannot set the Last-Event-ID header: the id of the last event received",
        max_length=80,
    )


def _last_event_id(request: web.Request) -> Key | None:
    query = parse_query(request, AlertStreamQuery)
    raw = request.headers.get("Last-Event-ID")
    field = "Last-Event-ID"
    if raw is None and query.last_event_id is not None:
        raw, field = query.last_event_id, "last_event_id"
    if raw is None:
        return None
    key = parse_event_id(raw.strip())
    if key is None:
        raise ApiProblem(
            400,
            "invalid_parameter",
            f"{raw[:40]!r} is not an event id of this stream (they look like 20261205T204751Z-12-2)",
            field,
        )
    return key


@operation(
    "Public alerts as server-sent events (text/event-stream): one `event: alert` per message issued (Alert, "
    "Update, Cancel) with `id: {sent}-{warning_id}-{version}` and JSON data {id, alert_id, identifier, "
    "warning_id, version, sent, status, msgType, hazard, level, areas [{code, name}], onset, expires, "
    "headline, cap_url, web}. With Last-Event-ID (header or ?last_event_id=) the messages after it are "
    "replayed first (those of the last 24 h, at most the newest 100); a comment line every 15 s.",
    query=AlertStreamQuery,
    responses={
        200: media_reply(
            "The event stream (open until the client or the service ends it)", "text/event-stream"
        )
    },
    problems=(400,),
)
async def alert_stream(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/alerts/stream: the public messages as server-sent events, replayed from Last-Event-ID."""
    after = _last_event_id(request)
    app = request.app
    public, hub, links = app[PUBLIC_ALERTS], app[EVENT_HUB], alert_links(request)
    if after is None:  # from now on: the newest message so far, read before subscribing (see the module)
        async with app[POOL].acquire() as conn:
            after = await public.newest_sent(conn)
    response = event_stream_response(**{"Access-Control-Allow-Origin": "*"})
    await response.prepare(request)
    stream = _Stream(request, response, links, after)
    with hub.subscribe() as sub:
        if not await write_chunk(response, stream_preamble(hub)) or not await stream.replay():
            return response
        async for event in events_of(sub):
            if event is None:
                sent = await write_chunk(response, HEARTBEAT)
            elif event.name == RESYNC:
                sent = await stream.replay()
            elif event.name == "warning":
                sent = await stream.live(event)
            else:
                continue
            if not sent:
                break
    return response


class _Stream:
    """One client's stream: the last message it was sent, and how to send it more."""

    def __init__(
        self, request: web.Request, response: web.StreamResponse, links: AlertLinks, last: Key | None
    ) -> None:
        self.app = request.app
        self.response = response
        self.links = links
        self.last = last

    async def replay(self) -> bool:
        """Send the messages after the last one sent (bounded); False when the stream should end."""
        now = datetime.now(UTC)
        try:
            async with self.app[POOL].acquire() as conn:
                found = await self.app[PUBLIC_ALERTS].sent_after(
                    conn, self.last, not_before=now - REPLAY_WINDOW, limit=REPLAY_MAX + 1
                )
                chunks = [await self.app[ALERT_EVENTS].encoded(conn, a, self.links) for a in found]
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            return False  # the client reconnects with its Last-Event-ID
        if len(found) > REPLAY_MAX:
            found, chunks = found[1:], chunks[1:]
            note = f": more messages were missed than a replay sends ({REPLAY_MAX}); see /api/v1/alerts\n\n"
            if not await write_chunk(self.response, note.encode()):
                return False
        elif self.last is not None and self.last[0] < now - REPLAY_WINDOW:
            hours = REPLAY_WINDOW.total_seconds() / 3600
            note = f": the last event id is older than a replay reaches ({hours:g} h); see /api/v1/alerts\n\n"
            if not await write_chunk(self.response, note.encode()):
                return False
        for alert, chunk in zip(found, chunks, strict=True):
            if not await write_chunk(self.response, chunk):
                return False
            self.last = key_of(alert)
        return True

    async def live(self, event: Event) -> bool:
        """Send the message a ``warning`` notification names, when it is public and new to this stream."""
        try:
            alert = await self.app[ALERT_LOOKUPS].lookup(event, self._read)
            if alert is None or (self.last is not None and key_of(alert) <= self.last):
                return True  # not public, or sent already (a later change to an old message)
            chunk = self.app[ALERT_EVENTS].cached(alert, self.links)
            if chunk is None:  # the first stream to send it makes it (the area names need the database)
                async with self.app[POOL].acquire() as conn:
                    chunk = await self.app[ALERT_EVENTS].encoded(conn, alert, self.links)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            return False
        if not await write_chunk(self.response, chunk):
            return False
        self.last = key_of(alert)
        return True

    async def _read(self, warning_id: int, version: int) -> PublicAlert | None:
        async with self.app[POOL].acquire() as conn:
            return await self.app[PUBLIC_ALERTS].one(conn, warning_id, version)


def setup_alert_stream(app: web.Application) -> None:
    """Register ``GET /api/v1/alerts/stream``; after `setup_alerts` (it reads the public alerts' repository),
    and its route goes ahead of ``/api/v1/alerts/{id}``."""
    app[ALERT_EVENTS] = AlertEvents(app[PUBLIC_ALERTS])
    app[ALERT_LOOKUPS] = AlertLookups()
    app.router.add_get("/api/v1/alerts/stream", alert_stream, name="alerts_stream")
