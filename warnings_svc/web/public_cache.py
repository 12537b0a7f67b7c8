"""Public answers rendered once per change, not once per request: a per-process cache of finished answers.

The public read side (``/api/v1/alerts/...``, ``/feeds/alerts.atom``) and the first page for anonymous readers
are the same bytes for everybody who asks the same way, and they change only when a warning does, when the
region's risk database is rebuilt, or when time passes a moment that matters (an expiry, a message ageing out
of the feed). Each answer is therefore kept whole, with its ETag, Last-Modified and every header computed once,
under a key naming everything its renderer reads (the request target, the negotiated media type, the origin
its links are built from); a hit, and a 304 for a matching ``If-None-Match``, touch neither the database nor a
renderer.

When an entry goes:

- **A warning changes**: every writer announces it on ``svc_events`` in its transaction (`warnings_svc.notify`);
  `EventHub` calls `PublicCache.on_event` and every answer built from warnings goes. A change shows once the
  listener has heard it, normally milliseconds after the commit (each worker process hears it on its own);
  the answers say ``max-age=60`` to every other cache anyway.
- **The listener was lost**: while `EventHub` is not listening, a change could go unheard, so the cache is
  bypassed (every request renders, nothing is kept); on reconnect the hub's ``resync`` empties the cache.
- **Time**: a renderer says until when its answer holds (`Rendered.valid_until`: the earliest future expiry,
  onset, send time or feed-window end among the versions it read); the entry is dropped once that passes,
  though no NOTIFY is ever sent for it.
- **The risk database is rebuilt**: its current version is checked every `RISK_CHECK_SECONDS` (a rebuild is
  another process and sends no event); the answers that show outlines or the risk tables go.
- **Bounds**: at most `MAX_ENTRIES` entries and `MAX_BYTES` of bodies, least recently used out first, so
  query strings made up by a client cannot grow memory without limit.

A stored version's CAP and GB/T documents never change and depend on nothing above: they stay until evicted
(or a resync). Concurrent misses for one key share one render (single-flight); a render that overlapped an
invalidation it depends on is answered to its waiters but not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime

import asyncpg
from aiohttp import web

from risk_zoning.store import current_version
from warnings_svc.web.appkeys import METRICS, POOL, SETTINGS
from warnings_svc.web.events import EVENT_HUB, RESYNC, Event
from warnings_svc.web.metrics import ServiceMetrics

log = logging.getLogger(__name__)

MAX_ENTRIES = 1024
MAX_BYTES = 32 * 2**20  # of bodies; one entry larger than a quarter of it is served but not kept
RISK_CHECK_SECONDS = 5.0  # how soon a rebuilt risk database shows on the cached answers

# What an answer is built from; an answer goes when one of these changes.
WARNINGS = "warnings"
RISK_VERSION = "risk_database"
WARNINGS_AND_RISK = frozenset({WARNINGS, RISK_VERSION})
RISK_ONLY = frozenset({RISK_VERSION})
_EVERYTHING = "everything"  # a resync: whatever was heard or not


def not_modified(
    if_none_match: str | None, if_modified_since: datetime | None, etag: str, last_modified: datetime | None
) -> bool:
    """Whether a GET may be answered 304 (RFC 9110 13.2.2): ``If-None-Match`` decides when present (weak
    comparison); otherwise ``If-Modified-Since`` against ``Last-Modified``, to the second."""
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if if_modified_since is not None and last_modified is not None:
        return last_modified.replace(microsecond=0) <= if_modified_since
    return False


class Rendered:
    """One finished answer: its body and every header, computed once, and what it depends on.

    `headers` are those a 304 carries too (ETag, Cache-Control, CORS ...); `etag` and `last_modified` (when
    given) make it answer conditional requests. `valid_until` is the moment it stops being right by time
    alone; `depends_on` names what else changes it (`WARNINGS`, `RISK_VERSION`; nothing for a stored
    document).
    """

    __slots__ = (
        "_full",
        "body",
        "content_type",
        "depends_on",
        "etag",
        "headers",
        "last_modified",
        "valid_until",
    )

    def __init__(
        self,
        body: bytes,
        content_type: str,
        headers: Mapping[str, str],
        *,
        etag: str | None = None,
        last_modified: datetime | None = None,
        valid_until: datetime | None = None,
        depends_on: frozenset[str] = WARNINGS_AND_RISK,
    ) -> None:
        self.body = body
        self.content_type = content_type
        self.headers = dict(headers)
        self.etag = etag
        self.last_modified = last_modified
        self.valid_until = valid_until
        self.depends_on = depends_on
        self._full = self.headers | {"Content-Type": content_type}

    def response(self, request: web.Request) -> web.Response:
        """The answer to this request: 304 when its validators match, else the whole body."""
        if self.etag is not None:
            headers = request.headers
            if_none_match = headers.get("If-None-Match")
            if (if_none_match is not None or "If-Modified-Since" in headers) and not_modified(
                if_none_match, request.if_modified_since, self.etag, self.last_modified
            ):
                return web.Response(status=304, headers=self.headers)
        return web.Response(body=self.body, headers=self._full)


def http_date(moment: datetime) -> str:
    """An HTTP date (``Last-Modified``)."""
    return format_datetime(moment.astimezone(UTC), usegmt=True)


Render = Callable[[], Awaitable[Rendered]]


class _Entry:
    __slots__ = ("expires_at", "rendered", "size")

    def __init__(self, rendered: Rendered) -> None:
        self.rendered = rendered
        self.size = len(rendered.body) + sum(len(k) + len(v) for k, v in rendered.headers.items())
        self.expires_at = None if rendered.valid_until is None else rendered.valid_until.timestamp()


class PublicCache:
    """Rendered public answers by key, least recently used out first; see the module's docstring.

    `ready` says whether changes can be heard right now (the event listener is up); while it says no, every
    request renders and nothing is kept. `clock` is POSIX time (tests give their own).
    """

    def __init__(
        self,
        metrics: ServiceMetrics,
        *,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._metrics = metrics
        self._clock = clock
        self._ready: Callable[[], bool] = lambda: False
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._bytes = 0
        self._inflight: dict[Hashable, asyncio.Future[Rendered]] = {}
        # bumped at every invalidation; a render that saw an older count of what it depends on is not kept
        self._epochs: dict[str, int] = {WARNINGS: 0, RISK_VERSION: 0, _EVERYTHING: 0}
        metrics.public_cache_entries.set_function(lambda: len(self._entries))
        metrics.public_cache_bytes.set_function(lambda: self._bytes)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """Bytes of the kept answers (bodies and headers)."""
        return self._bytes

    def follow(self, ready: Callable[[], bool]) -> None:
        """Keep answers only while `ready()` (the listener hears every change); the cache starts empty."""
        self._ready = ready

    async def answer(self, key: Hashable, render: Render, *, route: str) -> Rendered:
        """The answer kept under `key`, or `render`'s (kept when it may be); one render per key at a time."""
        counters = self._metrics.public_cache_counters(route)
        if not self._ready():
            counters.bypassed.inc()
            return await render()
        entry = self._entries.get(key)
        if entry is not None:
            if entry.expires_at is None or self._clock() < entry.expires_at:
                self._entries.move_to_end(key)
                counters.hits.inc()
                return entry.rendered
            self._drop(key)
            self._metrics.public_cache_invalidations.labels(reason="time").inc()
        flight = self._inflight.get(key)
        if flight is None:
            counters.rendered.inc()
            # what it may read is as of now, not as of when the task first runs
            flight = asyncio.ensure_future(self._fill(key, render, dict(self._epochs)))
            self._inflight[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, done))
        else:
            counters.joined.inc()
        # shielded: a client that goes away must not cancel a render others are waiting for
        return await asyncio.shield(flight)

    async def _fill(self, key: Hashable, render: Render, seen: Mapping[str, int]) -> Rendered:
        rendered = await render()
        current = self._epochs
        if (
            self._ready()
            and seen[_EVERYTHING] == current[_EVERYTHING]
            and all(seen[d] == current[d] for d in rendered.depends_on)
            and (rendered.valid_until is None or self._clock() < rendered.valid_until.timestamp())
        ):
            self._store(key, _Entry(rendered))
        return rendered

    def _landed(self, key: Hashable, flight: asyncio.Future[Rendered]) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]
        if not flight.cancelled():
            flight.exception()  # retrieved: the waiters were given it (or all went away)

    def _store(self, key: Hashable, entry: _Entry) -> None:
        if entry.size > self.max_bytes // 4:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = entry
        self._bytes += entry.size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)
            self._metrics.public_cache_evictions.inc()

    def _drop(self, key: Hashable) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size

    def invalidate(self, dependency: str, reason: str) -> None:
        """Drop every answer built from `dependency` (`WARNINGS`, `RISK_VERSION`); renders under way that read
        it are not kept, and later requests do not wait for them."""
        self._epochs[dependency] += 1
        for key in [k for k, e in self._entries.items() if dependency in e.rendered.depends_on]:
            self._drop(key)
        self._inflight.clear()
        self._metrics.public_cache_invalidations.labels(reason=reason).inc()

    def invalidate_all(self, reason: str) -> None:
        """Drop everything (the listener was lost: any change may have gone unheard)."""
        self._epochs[_EVERYTHING] += 1
        self._entries.clear()
        self._bytes = 0
        self._inflight.clear()
        self._metrics.public_cache_invalidations.labels(reason=reason).inc()

    def on_event(self, event: Event) -> None:
        """An event from `EventHub`: a warning changed, or (``resync``) events may have been missed."""
        if event.name == RESYNC:
            self.invalidate_all(RESYNC)
        elif event.name == "warning":
            self.invalidate(WARNINGS, "warning")

    async def watch_risk_database(self, pool: asyncpg.Pool, region: str, every: float) -> None:
        """Invalidate the answers built from the risk database when its current version changes."""
        seen: int | None = None
        while True:
            try:
                async with pool.acquire() as conn:
                    version = await current_version(conn, region)
                if seen is not None and version != seen:
                    self.invalidate(RISK_VERSION, "risk_database")
                seen = version
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the loop's boundary: the database may be restarting
                log.debug("risk database version not checked", extra={"reason": str(e)})
            await asyncio.sleep(every)


# ---------------------------------------------------------------------------------------------- the app

PUBLIC_CACHE = web.AppKey("public_cache", PublicCache)


async def _follow_changes(app: web.Application) -> AsyncIterator[None]:
    cache, hub = app[PUBLIC_CACHE], app[EVENT_HUB]
    stop_watching = hub.watch(cache.on_event)
    cache.follow(lambda: hub.listening)
    task = asyncio.create_task(
        cache.watch_risk_database(app[POOL], app[SETTINGS].region, RISK_CHECK_SECONDS),
        name="public-cache-risk-version",
    )
    yield
    cache.follow(lambda: False)
    stop_watching()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def setup_public_cache(app: web.Application) -> None:
    """The cache of public answers, following the event hub (so after `add_background_tasks`)."""
    app[PUBLIC_CACHE] = PublicCache(app[METRICS])
    app.cleanup_ctx.append(_follow_changes)
