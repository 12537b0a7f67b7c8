"""Prometheus metrics of dissemination: deliveries by channel and state, queue depth and age, send latency,
circuit state. Registered on the service's registry when the dispatcher runs inside `serve`, on one of its
own in a `warnings-svc dispatch` process."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from channels.base import Receipt, SendResult
from warnings_svc.dissemination.outbox import STATES, ResultCounts
from warnings_svc.timeliness import timeliness_on

# A batch of hundreds of SMS over a few binds: tens of milliseconds to the SMSC's response timeout.
SEND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class DispatchMetrics:
    """The dispatcher's metrics on `registry` (a new one when None)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._channels: set[str] = set()  # channels whose deliveries have been counted
        r = self.registry
        self.deliveries = Gauge(
            "warnings_deliveries",
            "Deliveries by channel and state: all those pending or sending, and the others of versions still in "
            "force (refreshed every few seconds).",
            ["channel", "state"],
            registry=r,
        )
        self.queue_oldest = Gauge(
            "warnings_delivery_queue_oldest_seconds",
            "Age of the oldest delivery ready to send, by channel (0 when none is waiting).",
            ["channel"],
            registry=r,
        )
        self.outcomes = Counter(
            "warnings_send_outcomes_total",
            "Send attempts by channel, endpoint and outcome (accepted, temporary_failure, permanent_failure).",
            ["channel", "endpoint", "outcome"],
            registry=r,
        )
        self.transitions = Counter(
            "warnings_delivery_transitions_total",
            "Deliveries this dispatcher moved to sent, back to pending (retried) or to dead, by channel.",
            ["channel", "to"],
            registry=r,
        )
        self.send_seconds = Histogram(
            "warnings_send_batch_seconds",
            "Time for an endpoint to answer a whole batch, by endpoint.",
            ["endpoint"],
            buckets=SEND_BUCKETS,
            registry=r,
        )
        self.expanded = Counter(
            "warnings_deliveries_expanded_total",
            "Deliveries written by fan-out expansion, by channel.",
            ["channel"],
            registry=r,
        )
        self.receipts = Counter(
            "warnings_receipts_total",
            "Receipts stored, by endpoint and state.",
            ["endpoint", "state"],
            registry=r,
        )
        self.circuit_state = Gauge(
            "warnings_circuit_state",
            "Circuit breaker per endpoint: 0 closed, 1 half-open, 2 open.",
            ["endpoint"],
            registry=r,
        )
        self.circuit_opened = Gauge(
            "warnings_circuit_opened",
            "How many times the endpoint's circuit opened since this dispatcher started.",
            ["endpoint"],
            registry=r,
        )
        self.leases_expired = Counter(
            "warnings_delivery_leases_expired_total",
            "Deliveries returned to the queue because the dispatcher holding them stopped answering.",
            registry=r,
        )
        self.database_errors = Counter(
            "warnings_dispatch_database_errors_total",
            "Database calls of the dispatcher that failed and were retried, by what it was doing.",
            ["during"],
            registry=r,
        )
        # approval -> first delivery, observed where attempts are recorded (`first_attempts`)
        self.timeliness = timeliness_on(r)

    def observe_batch(
        self, channel: str, endpoint: str, results: Sequence[SendResult], counts: ResultCounts, seconds: float
    ) -> None:
        for outcome, n in Tally(str(r.outcome) for r in results).items():  # one labels() per outcome
            self.outcomes.labels(channel, endpoint, outcome).inc(n)
        self.transitions.labels(channel, "sent").inc(counts.sent)
        self.transitions.labels(channel, "pending").inc(counts.retried)
        self.transitions.labels(channel, "dead").inc(counts.dead)
        self.send_seconds.labels(endpoint).observe(seconds)

    def observe_receipts(self, endpoint: str, receipts: Iterable[Receipt]) -> None:
        for state, n in Tally(str(r.state) for r in receipts).items():
            self.receipts.labels(endpoint, state).inc(n)

    def observe_queue(self, stats: Iterable[Mapping[str, Any]]) -> None:
        # a channel seen before and absent now (its versions all expired) goes to zero, not stale figures
        seen: dict[str, dict[str, int]] = {channel: {} for channel in self._channels}
        oldest: dict[str, float] = {}
        for row in stats:
            seen.setdefault(row["channel"], {})[row["state"]] = row["n"]
            if row["oldest_s"] is not None:
                oldest[row["channel"]] = float(row["oldest_s"])
        self._channels |= seen.keys()
        for channel, states in seen.items():
            for state in STATES:
                self.deliveries.labels(channel, state).set(states.get(state, 0))
            self.queue_oldest.labels(channel).set(oldest.get(channel, 0.0))


async def serve_metrics(registry: CollectorRegistry, host: str, port: int) -> web.AppRunner:
    """Serve `registry` at http://host:port/metrics (a dispatcher process has no web service of its own)."""

    async def exposition(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", exposition)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
