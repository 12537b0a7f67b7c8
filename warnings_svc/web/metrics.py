"""Prometheus metrics of the service, in a registry of its own (never the process-wide default one)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from warnings_svc.timeliness import Timeliness, timeliness_on

# Request latencies of a small console and API: a few milliseconds up to a cold map render.
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class PublicCacheCounters:
    """One route's counters of the public answer cache (`web.public_cache`)."""

    hits: Counter
    rendered: Counter
    joined: Counter
    bypassed: Counter


class ServiceMetrics:
    """The service's metrics; one instance per application, so tests and several apps never share counts."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._public_cache_routes: dict[str, PublicCacheCounters] = {}
        self.http_requests = Counter(
            "warnings_http_requests_total",
            "HTTP requests answered, by route pattern, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_request_duration = Histogram(
            "warnings_http_request_duration_seconds",
            "Time to answer an HTTP request, by route pattern.",
            ["route"],
            buckets=HTTP_DURATION_BUCKETS,
            registry=self.registry,
        )
        self.risk_database_version = Gauge(
            "warnings_risk_database_version",
            "Id of the region's current risk database version, as last seen by this process.",
            ["region"],
            registry=self.registry,
        )
        self.inbox_faults = Gauge(
            "warnings_inbox_faults",
            "Inbox entries that cannot be moved to archive/ or quarantine/ now (left in the inbox, unscored).",
            registry=self.registry,
        )
        self.inbox_move_failures = Counter(
            "warnings_inbox_move_failures_total",
            "Inbox entries found unmovable, each counted once, by where it was to go (archive, quarantine).",
            ["destination"],
            registry=self.registry,
        )
        self.risk_database_build_timestamp = Gauge(
            "warnings_risk_database_build_timestamp_seconds",
            "When the region's current risk database version was built (Unix time).",
            ["region"],
            registry=self.registry,
        )

        self.database_up = Gauge(
            "warnings_database_up",
            "1 while the service's PostgreSQL is up as last seen by the database watch, 0 while it is lost.",
            registry=self.registry,
        )
        self.database_recoveries = Counter(
            "warnings_database_recoveries_total",
            "Times the database came back after a loss: `restarted` (the embedded server, by this process) or "
            "`reconnected` (an external database that returned by itself).",
            ["how"],
            registry=self.registry,
        )
        self.public_cache_hits = Counter(
            "warnings_public_cache_hits_total",
            "Public answers served from the cache of rendered answers, by route.",
            ["route"],
            registry=self.registry,
        )
        self.public_cache_misses = Counter(
            "warnings_public_cache_misses_total",
            "Public answers not in the cache, by route and kind: render (this request rendered it), joined "
            "(waited for a render under way), bypass (the event listener was down: rendered, not kept).",
            ["route", "kind"],
            registry=self.registry,
        )
        self.public_cache_invalidations = Counter(
            "warnings_public_cache_invalidations_total",
            "Invalidations of the cache of public answers, by reason: warning (a change event), resync (the "
            "event listener reconnected), risk_database (a new version), time (an entry's answer went stale by "
            "time, counted per entry).",
            ["reason"],
            registry=self.registry,
        )
        self.public_cache_evictions = Counter(
            "warnings_public_cache_evictions_total",
            "Public answers evicted from the cache to keep it within its bounds (least recently used first).",
            registry=self.registry,
        )
        self.public_cache_entries = Gauge(
            "warnings_public_cache_entries", "Public answers in the cache.", registry=self.registry
        )
        self.public_cache_bytes = Gauge(
            "warnings_public_cache_bytes",
            "Bytes of the public answers in the cache (bodies and headers).",
            registry=self.registry,
        )
        self.acknowledgements_overdue = Gauge(
            "warnings_acknowledgements_overdue",
            "Acknowledgement requests of warnings in force whose first deadline passed unacknowledged (as the "
            "acknowledgement loop last counted them).",
            registry=self.registry,
        )
        # shared with the dispatchers that run inside this process (they observe on the same registry)
        self.timeliness: Timeliness = timeliness_on(self.registry)

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        # The labelled children are looked up once per label set, not at every request: `labels()` takes a
        # lock and builds its key each time, a measurable part of a cached answer's cost. The table holds
        # one pair per label set the metrics themselves already hold.
        children = self._request_children.get((route, method, status))
        if children is None:
            children = (
                self.http_requests.labels(route=route, method=method, status=str(status)),
                self.http_request_duration.labels(route=route),
            )
            self._request_children[(route, method, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def public_cache_counters(self, route: str) -> PublicCacheCounters:
        """The public answer cache's counters of one route, labelled once."""
        found = self._public_cache_routes.get(route)
        if found is None:
            found = PublicCacheCounters(
                hits=self.public_cache_hits.labels(route=route),
                rendered=self.public_cache_misses.labels(route=route, kind="render"),
                joined=self.public_cache_misses.labels(route=route, kind="joined"),
                bypassed=self.public_cache_misses.labels(route=route, kind="bypass"),
            )
            self._public_cache_routes[route] = found
        return found

    def observe_risk_database(self, region: str, version_id: int, built_at_unix: float) -> None:
        self.risk_database_version.labels(region=region).set(version_id)
        self.risk_database_build_timestamp.labels(region=region).set(built_at_unix)

    def observe_inbox(self, stuck_entries: Callable[[], int]) -> None:
        """Report the inbox's stuck entries as they are at each scrape."""
        self.inbox_faults.set_function(stuck_entries)

    def count_inbox_move_failure(self, destination: str) -> None:
        self.inbox_move_failures.labels(destination=destination).inc()

    def exposition(self) -> bytes:
        """The text format Prometheus scrapes."""
        return generate_latest(self.registry)
