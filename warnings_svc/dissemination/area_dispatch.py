"""The area dispatcher: puts issued versions out to the targets of the area channels (operators, CBCs, MQTT
brokers, platforms, broadcasters) and stores the evidence of reach they bring back.

One `AreaDispatcher` runs these asyncio tasks until stopped:

- a listener (LISTEN on `area_outbox.AREA_DISPATCH_CHANNEL`; every loop also polls, so a lost notification
  or a database restart costs at most `poll_s`);
- per target, a sender: claim the next ready delivery (`area_outbox.claim_area`: an Update or a Cancel waits
  for what it replaces), put it out through the adapter, store the outcome. A temporary failure comes back
  after exponential backoff with full jitter, until `max_attempts`; then, or on a permanent failure, the
  delivery is dead with the reason. A Cancel or expiry for a target that never got the warning is done
  without a call (nothing to take back);
- per target, an evidence writer: every batch the adapter reports is stored before the next is taken;
  terminals' acknowledgements go to `svc.terminal_ack` and the playback evidence of their areas;
- a reaper returning expired leases (a dispatcher that died mid-send) to the queue.

Database outages are waited out: every loop retries with capped backoff, and an outcome already known stays
in memory until it is stored. Adapters never touch the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import random
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge

from channels.area import AreaChannel, AreaSendResult, EvidenceKind
from channels.area_sms.client import OperatorAreaSmsChannel
from channels.base import HealthState, SendOutcome
from channels.broadcast_platform.client import BroadcastPlatformChannel, BroadcastPlatformSettings
from channels.broadcaster import BroadcasterChannel
from channels.cbs.ecbe import CbcChannel
from channels.mqtt.terminals import MqttTerminalsChannel
from warnings_svc.dissemination import area_outbox
from warnings_svc.dissemination.area_outbox import LEVEL_ORDER
from warnings_svc.dissemination.area_states import AreaDeliveryEvent as Event
from warnings_svc.dissemination.first_attempts import FirstAttempts
from warnings_svc.dissemination.keys import kept_secret
from warnings_svc.dissemination.policy import backoff_delay
from warnings_svc.dissemination.worker import OutboxWorker
from warnings_svc.settings import DispatchSettings, Settings
from warnings_svc.timeliness import timeliness_on

log = logging.getLogger(__name__)


@dataclass
class AreaDispatchOptions:
    """How hard to try (taken from `[dispatch]`)."""

    lease_s: float = 60.0
    max_attempts: int = 12
    retry_base_s: float = 1.0
    retry_cap_s: float = 60.0
    poll_s: float = 1.0

    @classmethod
    def from_settings(cls, settings: DispatchSettings) -> AreaDispatchOptions:
        return cls(
            lease_s=settings.lease_s,
            max_attempts=settings.max_attempts,
            retry_base_s=settings.retry_base_s,
            retry_cap_s=settings.retry_cap_s,
            poll_s=settings.poll_s,
        )


def airing_secret(data_dir: Path) -> bytes:
    """The secret of the broadcasters' confirmation links: made once (32 random bytes) in `data_dir/keys`, kept
    across restarts so links sent before one still work."""
    return kept_secret(data_dir, "airing-confirm.key")


def area_targets_from_settings(settings: Settings) -> dict[tuple[str, str], AreaChannel]:
    """An adapter for every configured target of the area channels, keyed by (channel, target name)."""
    targets: dict[tuple[str, str], AreaChannel] = {}
    dispatch = settings.dispatch
    if dispatch.radio_tv:
        secret = airing_secret(settings.data_dir)
        for r in dispatch.radio_tv:
            targets["radio_tv", r.name] = BroadcasterChannel(
                r.name, r.url, token=r.bearer(), secret=secret, confirm_base=settings.warnings.public_url or "",
                request_timeout_s=r.request_timeout_s,
            )  # fmt: skip
    for m in dispatch.mqtt:
        targets["mqtt", m.name] = MqttTerminalsChannel(
            m.name, m.url, m.topic_prefix, client_id=m.client_id, username=m.username, password=m.password(),
            publish_timeout_s=m.publish_timeout_s,
        )  # fmt: skip
    for a in dispatch.area_sms:
        targets["area_sms", a.name] = OperatorAreaSmsChannel(
            a.name,
            a.routes,
            a.bearer(),
            request_timeout_s=a.request_timeout_s,
            poll_interval_s=a.poll_interval_s,
        )
    for c in dispatch.cell_broadcast:
        targets["cell_broadcast", c.name] = CbcChannel(
            c.name,
            c.routes,
            cbe_name=c.cbe_name,
            request_timeout_s=c.request_timeout_s,
            reach_share=c.reach_share,
        )
    for p in dispatch.broadcast_platform:
        targets["broadcast_platform", p.name] = BroadcastPlatformChannel(
            BroadcastPlatformSettings(
                routes=p.routes,
                token=p.bearer(),
                name=p.name,
                request_timeout_s=p.request_timeout_s,
                poll_interval_s=p.poll_interval_s,
            )
        )
    return targets


class AreaMetrics:
    """The area dispatcher's metrics: what each target was given and what it made of it, its health, and the
    evidence it brought back."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.results = Counter(
            "warnings_area_deliveries",
            "Area deliveries put out, retried, given up or skipped (nothing to take back), by channel and target.",
            ["channel", "target", "outcome"],
            registry=registry,
        )
        self.evidence = Counter(
            "warnings_area_evidence",
            "Reports of reach stored (handsets, playback acknowledgements, airing), by channel and target.",
            ["channel", "target"],
            registry=registry,
        )
        self.up = Gauge(
            "warnings_area_target_up",
            "Whether a target of an area channel is reachable (1) or not (0), as its adapter last saw it.",
            ["channel", "target"],
            registry=registry,
        )
        self.timeliness = timeliness_on(registry)


@dataclass
class AreaCounters:
    """What the dispatcher did, per target (for metrics and the demo's summary)."""

    put_out: dict[str, int] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)
    dead: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    evidence: dict[str, int] = field(default_factory=dict)
    refused_evidence: dict[str, int] = field(default_factory=dict)
    leases_lost: dict[str, int] = field(default_factory=dict)
    loop_failures: dict[str, int] = field(default_factory=dict)

    def add(self, which: dict[str, int], target: str, n: int = 1) -> None:
        which[target] = which.get(target, 0) + n


def outcome_event(result: AreaSendResult, attempts: int, max_attempts: int) -> Event:
    """What an adapter's result does to the delivery: accept, retry (attempts left), give up or refuse.

    >>> from channels.base import FailureKind
    >>> r = AreaSendResult("k", SendOutcome.TEMPORARY_FAILURE, failure=FailureKind.LINK_DOWN)
    >>> outcome_event(r, 1, 3), outcome_event(r, 3, 3)
    (<AreaDeliveryEvent.retry: 'retry'>, <AreaDeliveryEvent.give_up: 'give_up'>)
    """
    if result.outcome is SendOutcome.ACCEPTED:
        return Event.accept
    if result.outcome is SendOutcome.PERMANENT_FAILURE:
        return Event.refuse
    return Event.retry if attempts < max_attempts else Event.give_up


def retry_delay(
    retry_after_s: float | None, attempts: int, options: AreaDispatchOptions, rng: random.Random
) -> float:
    """Seconds before the next attempt: the peer's own hint when it gave a sane one, never more than
    ``retry_cap_s`` (a peer asking for a day would hold back the Cancel queued behind); else backoff with jitter.

    >>> retry_delay(86_400.0, 1, AreaDispatchOptions(retry_cap_s=60.0), random.Random(1))
    60.0
    """
    if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s >= 0:
        return min(retry_after_s, options.retry_cap_s)
    return backoff_delay(attempts, base_s=options.retry_base_s, cap_s=options.retry_cap_s, rng=rng)


class AreaDispatcher(OutboxWorker):
    """Serves the area outbox for the given targets ((channel, target name) -> adapter)."""

    notify_channel = area_outbox.AREA_DISPATCH_CHANNEL
    log_prefix = "area dispatch"
    schema_table = "svc.area_delivery"

    def __init__(
        self,
        pool: asyncpg.Pool,
        database_url: str,
        targets: Mapping[tuple[str, str], AreaChannel],
        options: AreaDispatchOptions | None = None,
        *,
        rng: random.Random | None = None,
        metrics: AreaMetrics | None = None,
    ) -> None:
        super().__init__(pool, database_url, (options or AreaDispatchOptions()).poll_s)
        self.metrics = metrics
        self._first_attempts = None if metrics is None else FirstAttempts(metrics.timeliness)
        self.targets = dict(targets)
        self.options = options or AreaDispatchOptions()
        self.owner = f"area-{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.counters = AreaCounters()
        self._rng = rng or random.Random()
        self._wake = {key: asyncio.Event() for key in self.targets}
        self.loop_failures = self.counters.loop_failures

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; then close the adapters."""
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "listener": partial(self._listen, stop),
            "lease reaper": partial(self._reap, stop),
        }
        for (channel, target), adapter in self.targets.items():
            loops[f"sender {channel} {target}"] = partial(self._send, stop, channel, target, adapter)
            loops[f"evidence {channel} {target}"] = partial(self._collect, channel, target, adapter)
        try:
            await self._run_loops(loops, stop)
        finally:
            for adapter in self.targets.values():
                with contextlib.suppress(Exception):
                    await adapter.close()

    def health(self) -> dict[tuple[str, str], tuple[bool, str]]:
        """Each target: whether it is usable, and why not."""
        out = {}
        for key, adapter in self.targets.items():
            h = adapter.health()
            up = h.state is not HealthState.DOWN
            if self.metrics is not None:
                self.metrics.up.labels(*key).set(int(up))
            out[key] = (up, h.detail or h.state.value)
        return out

    def _count(self, channel: str, target: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.results.labels(channel, target, outcome).inc()

    async def _send(self, stop: asyncio.Event, channel: str, target: str, adapter: AreaChannel) -> None:
        wake = self._wake[channel, target]
        o = self.options
        while not stop.is_set():
            got = await self._db(
                f"claim for {target}",
                stop,
                lambda conn: area_outbox.claim_area(conn, channel, target, self.owner, o.lease_s),
            )
            if got is None:
                return
            claim, taken = got
            if claim is None:
                if not taken:
                    wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), o.poll_s)
                continue
            alert = claim.alert
            retry_in = 0.0
            result: AreaSendResult | None
            if claim.msg_type in ("Cancel", "Expire") and not alert.previous_remote_id:
                event, result, reason = Event.skip, None, area_outbox.NOTHING_OUT
                self.counters.add(self.counters.skipped, target)
                self._count(channel, target, "skipped")
            else:
                attempted_at = datetime.now(UTC)
                result = await adapter.put_out(alert)
                event, reason = outcome_event(result, claim.attempts, o.max_attempts), ""
                self._count(channel, target, str(event))
                if event is Event.accept:
                    self.counters.add(self.counters.put_out, target)
                elif event is Event.retry:
                    self.counters.add(self.counters.retried, target)
                    retry_in = retry_delay(result.retry_after_s, claim.attempts, o, self._rng)
                else:
                    self.counters.add(self.counters.dead, target)
                    log.warning("area dispatch: %s to %s is dead: %s", alert.key, target, result.reason)
            if channel == "mqtt" and event is Event.accept:
                await self._restore_retained(target, adapter, claim)
            record = partial(
                area_outbox.record_area_result, claim_id=claim.id, lease=self.owner, event=event, result=result,
                retry_in_s=retry_in, reason=reason,
            )  # fmt: skip
            try:
                kept = await self._db(f"result for {target}", None, record)  # stored even while stopping
            except (
                asyncpg.PostgresError
            ) as e:  # PostgreSQL refuses what the peer said: keep the outcome, not its words
                log.error("area dispatch: %s to %s: the peer's answer cannot be stored (%s)", alert.key, target,
                          type(e).__name__)  # fmt: skip
                record = partial(
                    record, result=None, reason=f"the peer's answer could not be stored ({type(e).__name__})"
                )
                kept = await self._db(f"result for {target}", None, record)
            if result is not None and self._first_attempts is not None:
                await self._first_attempts.record_quietly(
                    self.pool, channel, {(alert.warning_id, alert.version): attempted_at}
                )
            if not kept:
                self.counters.add(self.counters.leases_lost, target)
                log.warning("area dispatch: %s to %s took longer than its lease: another attempt may follow",
                            alert.key, target)  # fmt: skip

    async def _restore_retained(
        self, target: str, adapter: AreaChannel, claim: area_outbox.AreaClaim
    ) -> None:
        """Each area topic retains one message: after a warning was put out or taken back there, put back the
        other warnings in force on the topics they share with it, least severe first, so that a terminal
        coming online later gets the most severe one in force (never none while one is, never a lesser one
        over a greater). Terminals play a warning once per identifier, so a repeat is not heard twice."""
        alert = claim.alert
        taken_back = claim.msg_type in ("Cancel", "Expire")
        units = list(alert.area_units) or [a.code for a in alert.areas]
        others = await self._db(
            f"warnings in force on {target}",
            None,
            partial(area_outbox.others_in_force, target=target, warning_id=alert.warning_id, units=units),
        )
        mine = LEVEL_ORDER.index(alert.level)
        for content, msg_type, shared in others or ():
            if not taken_back and LEVEL_ORDER.index(content["level"]) <= mine:
                continue  # the new warning is at least as severe: it keeps the topic
            again = dataclasses.replace(
                area_outbox.alert_of(content, key=f"restore:{alert.key}", msg_type=msg_type, previous_remote_id="",
                                     update_number=0),
                area_units=tuple(shared),
            )  # fmt: skip
            result = await adapter.put_out(again)
            if result.outcome is not SendOutcome.ACCEPTED:
                log.warning("area dispatch: could not put %s back on %s: %s", content["identifier"], target,
                            result.reason)  # fmt: skip

    async def _collect(self, channel: str, target: str, adapter: AreaChannel) -> None:
        async for batch in adapter.evidence():
            acks = [e for e in batch if e.kind is EvidenceKind.PLAYBACK and e.terminal_id]
            others = [e for e in batch if not (e.kind is EvidenceKind.PLAYBACK and e.terminal_id)]
            stored = 0
            for what, part, store in (
                (
                    "acknowledgements",
                    acks,
                    partial(area_outbox.store_terminal_acks, target=target, acks=acks),
                ),
                (
                    "evidence",
                    others,
                    partial(area_outbox.store_evidence, channel=channel, target=target, batch=others),
                ),
            ):
                if not part:
                    continue
                try:
                    stored += (await self._db(f"{what} from {target}", None, store)) or 0
                except (
                    asyncpg.PostgresError
                ) as e:  # values PostgreSQL refuses: skipped, counted, never retried
                    self.counters.add(self.counters.refused_evidence, target, len(part))
                    log.warning("area dispatch: %d %s from %s refused by the database (%s)", len(part), what,
                                target, type(e).__name__)  # fmt: skip
            self.counters.add(self.counters.evidence, target, stored)
            if self.metrics is not None:
                self.metrics.evidence.labels(channel, target).inc(stored)

    async def _reap(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(max(1.0, self.options.lease_s / 3))
            self.health()  # refreshes the targets' gauges
            n = await self._db("lease reaper", stop, area_outbox.reclaim_area_leases)
            if n:
                log.warning("area dispatch: %d deliveries' leases expired; put out again", n)
                self._wake_all()
