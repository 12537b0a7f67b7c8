"""The partner dispatcher: sends every partner delivery (subscriptions' webhooks, emails, MQTT topics and SMS;
acknowledgement calls) and stores each attempt.

One `PartnerDispatcher` runs, until stopped, a listener (LISTEN on `outbox.PARTNER_DISPATCH_CHANNEL`, polling
besides), a lease reaper, and per channel a sender: claim up to `concurrency` ready deliveries, attempt them
all at once through the channel's adapter, and store every attempt and its effect in one transaction.

What a result does (`judge`):

- accepted: delivered;
- a failure with time left before the warning expires: the next attempt on the retry schedule (Standard
  Webhooks': at once, 5 s, 5 min, 30 min, 2 h, ...; the last step repeats), later when the peer asked
  (Retry-After); a peer that asked to slow down (429, 502, 503, 504) holds back every waiting delivery of
  that subscription until then;
- a failure with no time left: dead, with the reason; a refusal for good (a webhook's 410): dead, and the
  subscription disabled, so nothing more is sent to an endpoint that said it is gone.

Adapters never touch the database; a lost database is waited out (`worker.OutboxWorker`), and a result
already known is stored once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import os
import socket
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from channels.base import FailureKind, HealthState, SendOutcome
from channels.email.client import EmailChannel
from channels.mqtt.partners import MqttPartnerChannel
from channels.partner import KeepsALink, PartnerChannel, PartnerMessage, PartnerResult
from channels.smpp.esme import SmsChannel
from channels.smpp.partner import SmsPartnerChannel
from channels.webhooks.client import WebhookChannel
from warnings_svc.dissemination.dispatcher import smpp_settings
from warnings_svc.dissemination.first_attempts import FirstAttempts, earliest
from warnings_svc.dissemination.partners import inbound, outbox
from warnings_svc.dissemination.partners.outbox import AttemptRecord, IssuedDocument, PartnerClaim
from warnings_svc.dissemination.partners.states import PartnerDeliveryEvent as Event
from warnings_svc.dissemination.worker import DATABASE_ERRORS, OutboxWorker
from warnings_svc.settings import WEBHOOK_SCHEDULE_S, Settings
from warnings_svc.timeliness import timeliness_on

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 86_400.0
RECORD_EVERY_S = 0.02  # finished attempts are stored together at most this often
RECORD_BATCH = 500
GIVE_BACK_S = 5.0  # how long a stopping sender tries to return its unsent claims
DOCUMENTS_KEPT = 64  # issued versions whose documents a dispatcher keeps in memory
PARTNER_SMS_ENDPOINT = "partners"  # the partner dispatcher's own SMS bind, as messages from phones name it


@dataclass(frozen=True)
class PartnerDispatchOptions:
    """How the partner dispatcher works (from `[partners]` and `[dispatch]`)."""

    schedule_s: tuple[float, ...] = WEBHOOK_SCHEDULE_S
    concurrency: int = 64
    lease_s: float = 60.0  # several attempts (`claim_window`): `options_from_settings` keeps it so
    poll_s: float = 1.0
    attempt_s: float = 15.0  # the longest one attempt may take (the webhook timeout)


def claim_window(concurrency: int, lease_s: float, attempt_s: float) -> int:
    """How many deliveries a sender without a limit of its own holds at once, in flight and waiting for a
    slot: as many rounds of `concurrency` as fit in a lease with one round to spare, since a delivery that
    waits behind k full rounds of attempts that all time out is sent after k x `attempt_s`, and its lease
    must still hold when its own attempt ends; at least two rounds, so that no slot waits for the database,
    and at most eight.

    >>> claim_window(64, 60.0, 15.0), claim_window(64, 120.0, 15.0), claim_window(64, 20.0, 15.0)
    (192, 448, 128)
    """
    rounds = int(lease_s // attempt_s) - 1 if attempt_s > 0 else 2
    return concurrency * min(max(rounds, 2), 8)


def refill_threshold(window: int, concurrency: int) -> int:
    """How many of a sender's `window` must be free before it claims again: once no more than one round of
    `concurrency` waits beyond the attempts in flight, so that this round keeps every slot busy while the
    claim is under way (10-25 ms when the database shares a busy machine; half a round ran dry, see
    bench/LOG.md), and at least a quarter of the window, so that claims come in batches.

    >>> refill_threshold(192, 64), refill_threshold(128, 64), refill_threshold(448, 64), refill_threshold(4, 4)
    (64, 32, 320, 1)
    """
    return max(1, window // 4, window - 2 * concurrency)


def next_attempt_at(
    attempts: int,
    schedule_s: Sequence[float],
    now: datetime,
    give_up_at: datetime,
    retry_after_s: float | None = None,
) -> datetime | None:
    """When to try again after `attempts` failed attempts, or None when that would be after `give_up_at`.

    >>> t = datetime(2026, 7, 1, tzinfo=UTC)
    >>> next_attempt_at(1, (0, 5, 300), t, t + timedelta(hours=1)) - t
    datetime.timedelta(seconds=5)
    >>> next_attempt_at(9, (0, 5, 300), t, t + timedelta(hours=1)) - t  # the last step repeats
    datetime.timedelta(seconds=300)
    >>> next_attempt_at(1, (0, 5, 300), t, t + timedelta(seconds=2)) is None
    True
    """
    delay = float(schedule_s[min(attempts, len(schedule_s) - 1)])
    if retry_after_s is not None and retry_after_s >= 0:
        delay = max(delay, min(retry_after_s, MAX_RETRY_AFTER_S))
    at = now + timedelta(seconds=delay)
    return None if at > give_up_at else at


def judge(
    claim: PartnerClaim,
    result: PartnerResult,
    *,
    started_at: datetime,
    now: datetime,
    schedule_s: Sequence[float],
) -> AttemptRecord:
    """What one attempt's result does to its delivery (see the module's docstring)."""
    outcome = {
        SendOutcome.ACCEPTED: "delivered",
        SendOutcome.TEMPORARY_FAILURE: "temporary_failure",
        SendOutcome.PERMANENT_FAILURE: "permanent_failure",
    }[result.outcome]
    record = partial(
        AttemptRecord,
        delivery_id=claim.id,
        attempt=claim.attempts,
        started_at=started_at,
        manual=claim.manual,
        latency_ms=result.latency_ms,
        outcome=outcome,
        status=result.status,
        error=" ".join(result.error.split())[:500] if result.error else "",
    )
    if result.outcome is SendOutcome.ACCEPTED:
        return record(event=Event.accept)
    if result.outcome is SendOutcome.PERMANENT_FAILURE:
        gone = claim.subscription_id if result.disable and claim.subscription_id is not None else None
        return record(event=Event.refuse, disable_subscription=gone)
    at = next_attempt_at(claim.attempts, schedule_s, now, claim.give_up_at, result.retry_after_s)
    if at is None:
        return record(event=Event.give_up, error=_expired(result.error))
    slow = None
    if result.failure is FailureKind.THROTTLED and claim.subscription_id is not None:
        slow = (claim.subscription_id, at)
    return record(event=Event.retry, next_attempt_at=at, slow_subscription_until=slow)


def _expired(error: str) -> str:
    return f"{' '.join(error.split())[:400]}; no attempt left before the warning expires"


def message_of(claim: PartnerClaim, document: IssuedDocument, timestamp: int) -> PartnerMessage:
    """The message an attempt sends: the version's JSON document and CAP document as issued, and the text for
    people (an acknowledgement call's own, the SMS text on the SMS channel, else the document's)."""
    if claim.call is not None:
        subject, text = str(claim.call.get("subject", "")), str(claim.call.get("text", ""))
        body = _body(json.dumps(claim.call.get("payload") or {}, ensure_ascii=False))
    else:
        subject = document.subject
        text = document.sms_text if claim.channel == "sms" else document.text
        body = _body(document.payload_json)
    identifier = document.identifier or claim.message_id
    return PartnerMessage(
        message_id=claim.message_id,
        address=claim.address,
        body=body,
        cap_xml=document.cap_xml,
        subject=subject,
        text=text,
        timestamp=timestamp,
        secrets=claim.secrets,
        cap_filename=f"{identifier.replace(':', '_').replace('/', '_')[:100]}.cap.xml",
    )


@functools.lru_cache(maxsize=64)
def _body(payload_json: str) -> bytes:
    """The body every partner gets of one version: the stored document, written compactly (once per version,
    not once per delivery)."""
    return json.dumps(json.loads(payload_json), ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class PartnerMetrics:
    """The partner dispatcher's metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "warnings_partner_attempts",
            "Partner delivery attempts, by channel and outcome (delivered, retry, dead).",
            ["channel", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "warnings_partner_attempt_seconds",
            "How long a partner delivery attempt took, by channel.",
            ["channel"],
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=registry,
        )
        self.up = Gauge(
            "warnings_partner_channel_up",
            "Whether a partner channel is usable (1) or not (0), as its adapter last saw it.",
            ["channel"],
            registry=registry,
        )
        self.timeliness = timeliness_on(registry)


@dataclass
class PartnerCounters:
    """What the dispatcher did, per channel (for the demo's summary and tests)."""

    delivered: dict[str, int] = field(default_factory=dict)
    retried: dict[str, int] = field(default_factory=dict)
    dead: dict[str, int] = field(default_factory=dict)
    stored: dict[str, int] = field(default_factory=dict)  # attempts whose results are in the database
    claims: dict[str, int] = field(default_factory=dict)  # claiming statements run (each a round trip)
    leases_lost: dict[str, int] = field(default_factory=dict)
    loop_failures: dict[str, int] = field(default_factory=dict)

    def add(self, which: dict[str, int], channel: str, n: int = 1) -> None:
        which[channel] = which.get(channel, 0) + n


_COUNTED = {Event.accept: "delivered", Event.retry: "retried", Event.give_up: "dead", Event.refuse: "dead"}


def _has_own_limit(adapter: PartnerChannel) -> bool:
    """Whether the adapter sends only so many messages at once (`parallel`, see `channels.partner`)."""
    limit = getattr(adapter, "parallel", None)
    return isinstance(limit, int) and limit > 0


class PartnerDispatcher(OutboxWorker):
    """Serves the partner outbox for the given channels (name -> adapter)."""

    notify_channel = outbox.PARTNER_DISPATCH_CHANNEL
    log_prefix = "partner dispatch"
    schema_table = "svc.partner_delivery"

    def __init__(
        self,
        pool: asyncpg.Pool,
        database_url: str,
        channels: Mapping[str, PartnerChannel],
        options: PartnerDispatchOptions | None = None,
        *,
        metrics: PartnerMetrics | None = None,
    ) -> None:
        self.options = options or PartnerDispatchOptions()
        super().__init__(pool, database_url, self.options.poll_s)
        self.channels = dict(channels)
        self.metrics = metrics
        self._first_attempts = None if metrics is None else FirstAttempts(metrics.timeliness)
        self.owner = f"partner-{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.counters = PartnerCounters()
        self.loop_failures = self.counters.loop_failures
        self._wake = {name: asyncio.Event() for name in self.channels}
        self._documents: OrderedDict[tuple[int, int], IssuedDocument] = OrderedDict()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set; then close the adapters."""
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "listener": partial(self._listen, stop),
            "lease reaper": partial(self._reap, stop),
        }
        for name, adapter in self.channels.items():
            loops[f"sender {name}"] = partial(self._send, stop, name, adapter)
        for name, adapter in self.channels.items():
            if isinstance(adapter, SmsPartnerChannel):  # replies to calls may come back on this bind too
                loops[f"inbound {name}"] = partial(
                    inbound.store_inbound, self.pool, PARTNER_SMS_ENDPOINT, adapter.sms
                )
        for adapter in self.channels.values():
            if isinstance(adapter, KeepsALink):  # its link comes up now, not on the first message
                adapter.start()
        try:
            await self._run_loops(loops, stop)
        finally:
            for adapter in self.channels.values():
                try:
                    await adapter.close()
                except Exception as e:  # closing is best effort: the process is going anyway
                    log.warning("partner dispatch: closing %s: %s", adapter.name, type(e).__name__)

    def concurrency_of(self, name: str) -> int:
        """Attempts in flight at once on a channel: the configured concurrency, but no more than the adapter
        itself runs at once (a mail server's few connections), so that no claimed delivery queues inside
        the adapter past its lease."""
        adapter = self.channels[name]
        if _has_own_limit(adapter):
            return min(self.options.concurrency, int(adapter.parallel))  # type: ignore[attr-defined]
        return self.options.concurrency

    def health(self) -> dict[str, tuple[bool, str]]:
        """Each channel: whether it is usable, and why not."""
        out = {}
        for name, adapter in self.channels.items():
            h = adapter.health()
            up = h.state is not HealthState.DOWN
            if self.metrics is not None:
                self.metrics.up.labels(name).set(int(up))
            out[name] = (up, h.detail or h.state.value)
        return out

    async def _send(self, stop: asyncio.Event, name: str, adapter: PartnerChannel) -> None:
        """Keep the channel's concurrency of attempts in flight, claim as slots free (in batches), and store
        results in batches as they come.

        A channel whose adapter sends without a limit of its own (webhooks, MQTT) claims ahead as many rounds
        as its lease covers (`claim_window`), so that no slot waits for the database. A channel whose adapter
        has a limit of its own (a mail server's few connections, SMPP windows) claims no more than it sends at
        once: nothing queues inside the adapter past its lease. When stopped, the attempts under way finish
        and are stored; what waits for a slot goes back to the queue at once (`release_partner_claims`), for
        this or another dispatcher."""
        wake = self._wake[name]
        o = self.options
        concurrency = self.concurrency_of(name)
        own_limit = _has_own_limit(adapter)
        window = concurrency if own_limit else claim_window(concurrency, o.lease_s, o.attempt_s)
        refill_at = refill_threshold(window, concurrency)
        queue: deque[tuple[PartnerClaim, IssuedDocument]] = deque()  # claimed, waiting for a sender
        held = 0  # claimed and not yet finished: waiting or under way
        done: list[AttemptRecord] = []
        version_of: dict[int, tuple[int, int]] = {}  # delivery id -> (warning id, version), until stored
        work = asyncio.Event()  # set when the queue has claims (and when the senders are to end)
        closing = asyncio.Event()  # set when the senders are to end once the queue is empty
        slot_freed = asyncio.Event()
        results = asyncio.Event()  # set when a result is ready to be stored (and when the sender ends)
        idle = asyncio.Event()  # set while nothing is claimed and unfinished: what is done can be stored now
        ending = asyncio.Event()  # set once this sender ends: its recorder stores what is left and ends too
        recorder = asyncio.create_task(self._record(name, done, results, idle, ending, version_of))

        async def sender() -> None:
            # one of `concurrency` long-lived senders: a task per delivery cost more than the posting itself
            nonlocal held
            while True:
                if not queue:
                    if closing.is_set():
                        return
                    work.clear()
                    await work.wait()
                    continue
                claim, document = queue.popleft()
                try:
                    record = await self._attempt(name, adapter, claim, document)
                except Exception as e:  # a bug, not the partner's failure: the lease brings the delivery back
                    log.error("partner dispatch: an attempt on %s failed: %s", name, type(e).__name__)
                else:
                    version_of[record.delivery_id] = (claim.warning_id, claim.version)
                    done.append(record)
                    results.set()
                finally:
                    held -= 1
                    slot_freed.set()
                    if not held:
                        idle.set()

        senders = [asyncio.create_task(sender()) for _ in range(concurrency)]
        try:
            while not stop.is_set():
                free = window - held
                if held and free < refill_at:  # claim in batches, not one by one
                    slot_freed.clear()
                    await slot_freed.wait()
                    continue
                # cleared before the claim, not after: a NOTIFY (or a freed slot) that comes while the claim is
                # under way is then not lost, and an empty claim is followed by another at once
                wake.clear()
                slot_freed.clear()
                claimed = await self._db(
                    f"claim for {name}",
                    stop,
                    partial(
                        outbox.claim_partner, channel=name, owner=self.owner, lease_s=o.lease_s, limit=free
                    ),
                )
                if claimed is None:
                    break
                self.counters.add(self.counters.claims, name)
                documents = await self._documents_for(claimed)
                if claimed:
                    idle.clear()
                    held += len(claimed)
                    queue.extend((c, documents[c.warning_id, c.version]) for c in claimed)
                    work.set()
                else:
                    # nothing ready: claim again when told (a NOTIFY, a lease reaped, a retry this sender stored
                    # falling due), else at the next poll; not each time an attempt ends, which at the end of a
                    # fan-out was a claim per finished attempt, all empty
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), o.poll_s)
        finally:
            # the attempts under way finish (each bounded by the adapter's timeout) and are stored; the claims
            # still waiting for a slot are given back rather than sent after the stop
            unsent = [claim.id for claim, _ in queue]
            queue.clear()
            held -= len(unsent)
            if not held:
                idle.set()
            closing.set()
            work.set()
            if unsent:
                await self._give_back(name, unsent)
            await asyncio.gather(*senders, return_exceptions=True)
            ending.set()
            results.set()
            await recorder

    async def _give_back(self, name: str, ids: list[int]) -> None:
        """Return claimed, unsent deliveries to the queue, trying once (a stopping process does not wait for a
        lost database: their lease brings them back then)."""
        try:
            async with asyncio.timeout(GIVE_BACK_S), self.pool.acquire() as conn:
                await outbox.release_partner_claims(conn, self.owner, ids)
        except DATABASE_ERRORS as e:
            log.warning("partner dispatch: %d %s deliveries claimed and not sent are left to their lease (%s)",
                        len(ids), name, type(e).__name__)  # fmt: skip

    async def _documents_for(self, claimed: list[PartnerClaim]) -> dict[tuple[int, int], IssuedDocument]:
        """The issued documents of the claimed deliveries' versions: read once per version and kept (they
        never change), the most recent `DOCUMENTS_KEPT`."""
        found = {}
        for key in {(c.warning_id, c.version) for c in claimed}:
            document = self._documents.get(key)
            if document is None:
                document = await self._db(
                    "issued documents",
                    None,
                    partial(outbox.issued_document, warning_id=key[0], version=key[1]),
                )
                assert document is not None  # waited for while the database is away
                self._documents[key] = document
                while len(self._documents) > DOCUMENTS_KEPT:
                    self._documents.popitem(last=False)
            found[key] = document
        return found

    async def _record(
        self,
        name: str,
        done: list[AttemptRecord],
        results: asyncio.Event,
        idle: asyncio.Event,
        ending: asyncio.Event,
        version_of: dict[int, tuple[int, int]],
    ) -> None:
        """Store finished attempts in batches, until `ending` is set and nothing is left: while attempts are
        under way, what finished within `RECORD_EVERY_S` of the first result goes in one transaction; once none
        is (`idle`), at once."""
        while True:
            if not done:
                if ending.is_set():
                    return
                results.clear()
                await results.wait()
                continue
            if not idle.is_set() and not ending.is_set() and len(done) < RECORD_BATCH:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(idle.wait(), RECORD_EVERY_S)
            batch = done[:RECORD_BATCH]
            del done[: len(batch)]
            kept = await self._db(
                f"results for {name}",
                None,
                partial(outbox.record_partner_results, owner=self.owner, records=batch),
            )
            if kept is not None:
                self.counters.add(self.counters.stored, name, kept)
            if kept:
                self._wake_for_retries(name, batch)
            if kept is not None and kept < len(batch):
                self.counters.add(self.counters.leases_lost, name, len(batch) - kept)
                log.warning("partner dispatch: %d %s deliveries took longer than their lease",
                            len(batch) - kept, name)  # fmt: skip
            attempts = earliest((version_of.pop(r.delivery_id), r.started_at) for r in batch)
            if kept is not None and self._first_attempts is not None:
                await self._first_attempts.record_quietly(self.pool, f"partner_{name}", attempts)

    def _wake_for_retries(self, name: str, stored: Sequence[AttemptRecord]) -> None:
        """Wake the sender when the earliest retry just stored falls due, if that is before its next poll."""
        due = [r.next_attempt_at for r in stored if r.event is Event.retry and r.next_attempt_at is not None]
        if due:
            delay = (min(due) - datetime.now(UTC)).total_seconds()
            if delay < self.options.poll_s:
                asyncio.get_running_loop().call_later(max(0.0, delay), self._wake[name].set)

    async def _attempt(
        self, name: str, adapter: PartnerChannel, claim: PartnerClaim, document: IssuedDocument
    ) -> AttemptRecord:
        started_at = datetime.now(UTC)
        began = time.monotonic()
        try:
            result = await adapter.deliver(message_of(claim, document, int(time.time())))
        except Exception as e:  # an adapter must not raise; if one does, the attempt failed for now
            log.error("partner dispatch: the %s adapter raised %s", name, type(e).__name__)
            result = PartnerResult(
                SendOutcome.TEMPORARY_FAILURE,
                round((time.monotonic() - began) * 1000),
                error=f"the adapter failed ({type(e).__name__})",
                failure=FailureKind.REMOTE_ERROR,
            )
        record = judge(
            claim, result, started_at=started_at, now=datetime.now(UTC), schedule_s=self.options.schedule_s
        )
        counted = _COUNTED[record.event]
        self.counters.add(getattr(self.counters, counted), name)
        if self.metrics is not None:
            self.metrics.attempts.labels(name, counted).inc()
            self.metrics.latency.labels(name).observe(result.latency_ms / 1000)
        if record.event in (Event.give_up, Event.refuse):
            log.warning("partner dispatch: %s to %s is dead: %s", claim.message_id, name, record.error[:200])
        return record

    async def _reap(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(max(1.0, self.options.lease_s / 3))
            self.health()  # refreshes the channels' gauges
            await self._db("waiting deliveries", stop, outbox.settle_waiting)
            n = await self._db("lease reaper", stop, outbox.reclaim_partner_leases)
            if n:
                log.warning("partner dispatch: %d deliveries' leases expired; sent again", n)
                self._wake_all()


def partner_channels_from_settings(settings: Settings) -> dict[str, PartnerChannel]:
    """An adapter for every partner channel the configuration allows: webhooks always; email with
    `[partners.smtp]`; MQTT topics with `[partners] mqtt_broker`; SMS with an SMS endpoint (its own bind,
    without receipts, on the first `[[dispatch.sms]]` endpoint)."""
    p = settings.partners
    found: dict[str, PartnerChannel] = {
        "webhook": WebhookChannel(allow_private=p.allow_private, timeout_s=p.webhook_timeout_s)
    }
    if p.smtp is not None:
        found["email"] = EmailChannel(
            host=p.smtp.host, port=p.smtp.port, sender=p.smtp.sender, username=p.smtp.username,
            password=p.smtp.password(), starttls=p.smtp.starttls, timeout_s=p.smtp.timeout_s,
        )  # fmt: skip
    if p.mqtt_broker is not None:
        broker = next(m for m in settings.dispatch.mqtt if m.name == p.mqtt_broker)
        found["mqtt"] = MqttPartnerChannel(
            broker.url, p.mqtt_topic_prefix, client_id="",  # a clean session: several dispatchers may publish
            username=broker.username, password=broker.password(), publish_timeout_s=broker.publish_timeout_s,
        )  # fmt: skip
    if settings.dispatch.sms:
        smpp = dataclasses.replace(smpp_settings(settings.dispatch.sms[0]), binds=1, registered_delivery=0)
        if settings.acknowledgements.reply_number:  # the number responsible people reply to
            smpp = dataclasses.replace(smpp, source_addr=settings.acknowledgements.reply_number)
        found["sms"] = SmsPartnerChannel(SmsChannel(smpp))
    return found


def options_from_settings(settings: Settings) -> PartnerDispatchOptions:
    """The partner dispatcher's options from `[partners]` and `[dispatch]`."""
    # the longest attempt of a channel that claims ahead (no limit of its own): a webhook, or an MQTT publish
    # that may first wait for its link
    attempt_s = max(
        [settings.partners.webhook_timeout_s]
        + [2 * m.publish_timeout_s for m in settings.dispatch.mqtt if m.name == settings.partners.mqtt_broker]
    )
    return PartnerDispatchOptions(
        schedule_s=tuple(settings.partners.retry_schedule_s),
        concurrency=settings.partners.concurrency,
        # a lease outlasts several attempts (see `claim_window`), and an email's several SMTP commands
        lease_s=max(
            settings.dispatch.lease_s,
            attempt_s * 4,
            (settings.partners.smtp.timeout_s * 6) if settings.partners.smtp else 0.0,
        ),
        poll_s=settings.dispatch.poll_s,
        attempt_s=attempt_s,
    )
