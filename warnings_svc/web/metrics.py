"""Prometheus metrics of the service, in a registry of its own (never the process-wide default one)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Request latencies of a small console and API: a few milliseconds up to a cold map render.
HTTP_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """The service's metrics; one instance per application, so tests and several apps never share counts."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route=route, method=method, status=str(status)).inc()
        self.http_request_duration.labels(route=route).observe(seconds)

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
