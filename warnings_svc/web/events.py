"""Live events: one LISTEN connection on ``svc_events`` fanned out to the console's server-sent event streams.

Every change of a warning, proposal or forecast run sends ``pg_notify('svc_events', json)`` in the transaction
that makes it (`lifecycle.store`, `forecast.ingest`), so an event is never seen for something that was rolled
back. `EventHub` keeps one dedicated connection listening (not one per browser), reconnects with backoff when
it is lost, and hands each event to every watcher (in-process caches: `EventHub.watch`) and to every
subscriber's bounded queue; `stream_events` writes a subscriber's queue to ``GET /api/v1/events`` as
``text/event-stream``.

Decisions where the issue is silent:

- Events that happen while the listener is reconnecting are lost, so after a reconnect every subscriber gets
  one ``resync`` event and refreshes everything it shows (the console's JavaScript does the same when its
  EventSource reconnects).
- A subscriber whose queue is full (a client that does not read) is dropped: its stream ends and the
  browser's EventSource reconnects and refreshes. One slow client never holds back the others or grows
  memory; a write that blocks longer than `WRITE_TIMEOUT_SECONDS` ends the stream too.
- Only the payload's ``kind`` is trusted for the event name (``warning``, ``proposal``, ``run``); anything
  else on the channel is logged and skipped. The data is the notification's JSON, re-serialised.
- Streams end when the application shuts down (``on_shutdown``), before aiohttp waits for open requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from warnings_svc.notify import EVENTS_CHANNEL
from warnings_svc.web.appkeys import METRICS, POOL, SETTINGS
from warnings_svc.web.auth import require_user
from warnings_svc.web.health import BACKGROUND_LOOPS
from warnings_svc.web.operations import media_reply, operation

log = logging.getLogger(__name__)

KINDS: frozenset[str] = frozenset({"warning", "proposal", "run"})
RESYNC = "resync"  # after a lost listener: refresh everything
HEARTBEAT_SECONDS = 15.0  # a comment line keeps proxies from closing an idle stream
QUEUE_SIZE = 64  # events waiting per subscriber before it counts as too slow and is dropped
WRITE_TIMEOUT_SECONDS = 10.0
PING_SECONDS = 30.0  # how often the listening connection is checked (a dead TCP peer can stay silent)
PING_TIMEOUT_SECONDS = 10.0
RECONNECT_MIN_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 30.0
CLIENT_RETRY_MS = 3000  # the EventSource's reconnection delay, sent as `retry:`
HEARTBEAT = b": heartbeat\n\n"

Connect = Callable[[], Awaitable[asyncpg.Connection]]
Release = Callable[[asyncpg.Connection], Awaitable[None]]


class Event:
    """One event as a stream sends it: its name and its JSON data."""

    __slots__ = ("data", "name")

    def __init__(self, name: str, data: dict[str, Any]) -> None:
        self.name = name
        self.data = data

    def encode(self) -> bytes:
        """The event in the ``text/event-stream`` format (the JSON is one line, so one ``data:`` line)."""
        return f"event: {self.name}\ndata: {json.dumps(self.data, ensure_ascii=False)}\n\n".encode()


_END = object()  # put into a queue: the stream ends


def parse_notification(payload: str) -> Event | None:
    """The event a ``svc_events`` notification announces, or None when it is not one this service sends.

    >>> parse_notification('{"kind": "warning", "id": 7, "status": "issued"}').name
    'warning'
    >>> parse_notification('{"kind": "other"}') is None, parse_notification("not json") is None
    (True, True)
    """
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(data, dict) or data.get("kind") not in KINDS:
        return None
    return Event(data["kind"], data)


class Subscription:
    """One stream's queue of events; `dropped` once it fell too far behind."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue(maxsize=size)
        self.dropped = False

    def offer(self, event: Event) -> bool:
        """Queue the event; False (and the stream told to end) when the queue is full."""
        if self.dropped:
            return False
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.end()
            self.dropped = True
            return False
        return True

    def end(self) -> None:
        """Tell the stream to end after what it has already been given (or at once when the queue is full)."""
        while True:
            try:
                self.queue.put_nowait(_END)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()  # make room: a dropped client refreshes everything anyway


class EventMetrics:
    """Live-refresh metrics, in the application's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.streams = Gauge("warnings_event_streams", "Open server-sent event streams.", registry=registry)
        self.events = Counter(
            "warnings_events_total",
            "Events received from the database, by kind.",
            ["kind"],
            registry=registry,
        )
        self.dropped = Counter(
            "warnings_event_streams_dropped_total",
            "Event streams ended because the client did not keep up.",
            registry=registry,
        )
        self.reconnects = Counter(
            "warnings_event_listener_reconnects_total",
            "Times the listening database connection was (re)established after a loss.",
            registry=registry,
        )


class EventHub:
    """One listening connection, many subscribers.

    ``connect`` opens the connection to listen on and ``release`` gives it back (closes it, or returns it
    to a pool); both are called again after every loss.
    """

    def __init__(
        self,
        connect: Connect,
        release: Release,
        metrics: EventMetrics,
        *,
        queue_size: int = QUEUE_SIZE,
        ping_seconds: float = PING_SECONDS,
    ) -> None:
        self._connect = connect
        self._release = release
        self._metrics = metrics
        self._queue_size = queue_size
        self._ping_seconds = ping_seconds
        self._subscribers: set[Subscription] = set()
        self._watchers: list[Callable[[Event], None]] = []
        self._listening = asyncio.Event()
        self._retry = asyncio.Event()  # set: try to connect again now
        self._closed = False

    @property
    def listening(self) -> bool:
        """Whether the database connection is up and listening right now."""
        return self._listening.is_set()

    async def wait_listening(self, timeout: float) -> bool:
        """Wait until the connection listens (tests, start-up); False after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._listening.wait()
        except TimeoutError:
            return False
        return True

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        """A subscription for the duration of the ``with`` block."""
        sub = Subscription(self._queue_size)
        if self._closed:
            sub.end()
        self._subscribers.add(sub)
        self._metrics.streams.inc()
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            self._metrics.streams.dec()

    def watch(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        """Call `callback` with every event (``resync`` included) as it arrives, before any stream sees it; the
        function returned stops that. For in-process caches: a callback must be quick."""
        self._watchers.append(callback)
        return lambda: self._watchers.remove(callback)

    def publish(self, event: Event) -> None:
        """Give `event` to every watcher, then to every subscriber; those too far behind are dropped."""
        for watcher in list(self._watchers):
            try:
                watcher(event)
            except Exception:  # one broken watcher must not cost the streams their events
                log.exception("an event watcher failed", extra={"event": event.name})
        for sub in list(self._subscribers):
            if not sub.offer(event):
                self._subscribers.discard(sub)
                self._metrics.dropped.inc()
                log.info("event stream dropped: the client is not keeping up", extra={"event": event.name})

    def end_streams(self) -> None:
        """End every open stream and refuse new ones (the application is shutting down)."""
        self._closed = True
        for sub in list(self._subscribers):
            sub.end()

    def _on_notification(self, conn: object, pid: int, channel: str, payload: str) -> None:
        event = parse_notification(payload)
        if event is None:
            log.warning("ignored a notification on %s that is not an event", channel)
            return
        self._metrics.events.labels(kind=event.name).inc()
        self.publish(event)

    def retry_now(self) -> None:
        """Cut the wait before the next connection attempt short (the database is known to be back)."""
        self._retry.set()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._retry.wait()
        self._retry.clear()

    async def run(self) -> None:
        """Listen until cancelled, reconnecting with backoff whenever the connection is lost.

        One line is logged when the connection is lost and one when it is back; the attempts in between
        are quiet (debug), however long the database stays away."""
        delay = RECONNECT_MIN_SECONDS
        connected_before = False
        failing = False
        while True:
            try:
                conn = await self._connect()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the loop's boundary: the database may be starting or restarting
                if not failing:
                    log.warning("event listener cannot connect; retrying", extra={"reason": one_line(e)})
                else:
                    log.debug("event listener cannot connect; retrying", extra={"reason": one_line(e)})
                failing = True
                await self._pause(delay)
                delay = min(2 * delay, RECONNECT_MAX_SECONDS)
                continue
            try:
                await conn.add_listener(EVENTS_CHANNEL, self._on_notification)
                self._listening.set()
                delay = RECONNECT_MIN_SECONDS
                failing = False
                self._retry.clear()
                if connected_before:
                    self._metrics.reconnects.inc()
                    log.info("event listener reconnected")
                    self.publish(Event(RESYNC, {"kind": RESYNC}))  # whatever happened meanwhile is lost
                connected_before = True
                await self._watch(conn)
                log.warning("event listener lost its connection; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("event listener failed; reconnecting", extra={"reason": one_line(e)})
            finally:
                self._listening.clear()
                await self._let_go(conn)
            failing = True
            await self._pause(delay)
            delay = min(2 * delay, RECONNECT_MAX_SECONDS)

    async def _watch(self, conn: asyncpg.Connection) -> None:
        """Return when the connection is lost: closed by the server, or no longer answering a ping."""
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        while not lost.is_set() and not conn.is_closed():
            with contextlib.suppress(TimeoutError):  # quiet for a while: ping below
                async with asyncio.timeout(self._ping_seconds):
                    await lost.wait()
                return
            async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                await conn.fetchval("SELECT 1")

    async def _let_go(self, conn: asyncpg.Connection) -> None:
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.remove_listener(EVENTS_CHANNEL, self._on_notification)
        try:
            await self._release(conn)
        except Exception:  # a broken connection may refuse a clean goodbye
            conn.terminate()


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# ---------------------------------------------------------------------------------------------- the app

EVENT_HUB = web.AppKey("event_hub", EventHub)


def setup_events(app: web.Application) -> None:
    """`GET /api/v1/events`; the hub behind it runs in the background (`event_hub`, started by
    `web.background.add_background_tasks`)."""
    app.router.add_get("/api/v1/events", stream_events, name="events")


async def event_hub(app: web.Application, *, database_url: str | None) -> AsyncIterator[None]:
    """The hub, started and stopped with the application. It listens on a connection of its own to
    `database_url` (or the settings' ``database_url``); an app given neither holds one connection of its pool
    instead."""
    url = database_url or app[SETTINGS].database_url
    pool = app[POOL]
    if url is not None:
        connect: Connect = lambda: asyncpg.connect(url)  # noqa: E731
        release: Release = lambda conn: conn.close(timeout=5)  # noqa: E731
    else:
        connect, release = pool.acquire, pool.release
    hub = EventHub(connect, release, EventMetrics(app[METRICS].registry))
    app[EVENT_HUB] = hub
    task = asyncio.create_task(hub.run(), name="event-listener")
    if BACKGROUND_LOOPS in app:
        app[BACKGROUND_LOOPS].watch("event-listener", task)
    yield
    hub.end_streams()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def end_event_streams(app: web.Application) -> None:
    """On shutdown, before the cleanup: end every open stream so the server need not wait for them."""
    if EVENT_HUB in app:
        app[EVENT_HUB].end_streams()


@operation(
    "Live changes as server-sent events (text/event-stream): `event: warning|proposal|run` with the change as "
    "JSON data ({kind, id, action, status, ...}); `event: resync` when events may have been missed (refresh "
    "everything); a comment line every 15 s",
    responses={
        200: media_reply(
            "The event stream (open until the client or the service ends it)", "text/event-stream"
        )
    },
    problems=(401, 403),
    security=("session", "bearer"),
)
async def stream_events(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/events: changes to warnings, proposals and runs as server-sent events, until the client
    goes away, falls behind, or the service stops."""
    require_user(request, scope="read")
    hub = request.app[EVENT_HUB]
    response = event_stream_response()
    await response.prepare(request)
    with hub.subscribe() as sub:
        if not await write_chunk(response, stream_preamble(hub)):
            return response
        async for item in events_of(sub):
            chunk = HEARTBEAT if item is None else item.encode()
            if not await write_chunk(response, chunk):
                break
    return response


def event_stream_response(**headers: str) -> web.StreamResponse:
    """An unprepared ``text/event-stream`` answer that no cache or proxy holds back, with `headers`."""
    return web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
            **headers,
        }
    )


def stream_preamble(hub: EventHub) -> bytes:
    """What a stream starts with: the client's reconnection delay and whether the hub listens yet."""
    return f"retry: {CLIENT_RETRY_MS}\n: {'listening' if hub.listening else 'connecting'}\n\n".encode()


async def events_of(sub: Subscription, heartbeat: float = HEARTBEAT_SECONDS) -> AsyncIterator[Event | None]:
    """A subscription's events as they come, and None after each `heartbeat` seconds without one (time for a
    `HEARTBEAT`); ends when the stream is told to end (dropped as too slow, or the service stops)."""
    while True:
        try:
            async with asyncio.timeout(heartbeat):
                item = await sub.queue.get()
        except TimeoutError:
            yield None
            continue
        if item is _END:
            return
        assert isinstance(item, Event)
        yield item


async def write_chunk(response: web.StreamResponse, chunk: bytes) -> bool:
    """Write to an open stream; False when the client is gone or has not read for `WRITE_TIMEOUT_SECONDS`."""
    try:
        async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
            await response.write(chunk)
    except (TimeoutError, ConnectionError):
        return False
    return True


# Described by `stream_events`' operation; kept (empty) for the console, which merges it into its own paths.
OPENAPI_PATHS: dict[str, Any] = {}
