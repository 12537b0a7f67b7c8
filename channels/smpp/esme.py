"""An asyncio SMPP v3.4 ESME (transceiver binds) behind the channel interface: SmsChannel.

Codec choice: a small hand-written codec (channels/smpp/pdu.py) rather than a library. An ESME that sends
needs nine PDUs; smpplib (LGPL) ties its PDU classes to a blocking socket client and builds PDUs through
per-field Python objects, too slow for thousands of segments a second; aiosmpplib is asyncio but owns its
own queue (2,500), does not resend throttled messages and splits only above 254 octets, so the parts that
matter here (windowing, throttling, segmentation) would be fought rather than used. The codec is tested
against an independent implementation, node-smpp, in tests/integration/test_smpp_*.py.

Each SmppBind keeps one transceiver bind up: connect, bind, a window of outstanding submit_sm matched by
sequence_number, enquire_link keep-alive, reconnect with capped exponential backoff and jitter, clean unbind.
ESME_RTHROTTLED / ESME_RMSGQFUL pause the bind (doubling pause, reset by a success) and are reported as a
temporary failure, never dropped. Receipts (deliver_sm, esm_class 0x04) go to one queue with a handle to
acknowledge them, and deliver_sm_resp is written only once the consumer has handled them (it acknowledges the
batch): a crash before that loses nothing, since the SMSC sends unacknowledged receipts again. Messages from
phones (any other deliver_sm, channels/smpp/mobile.py) are queued the same way on a bounded queue: when it is
full the deliver_sm is answered ESME_RX_T_APPN at once, and the SMSC sends it again later. The channel
remembers the key of each recently submitted part's message and gives it to the part's receipt, so a
dispatcher can store a receipt together with its message's results when it beats them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from channels.base import (
    FailureKind,
    Health,
    HealthState,
    OutboundMessage,
    Receipt,
    ReceiptBatch,
    SendOutcome,
    SendResult,
)
from channels.smpp import pdu as p
from channels.smpp.mobile import InboundBatch, InboundSms, inbound_of
from channels.smpp.receipts import is_receipt, parse_receipt
from channels.sms.encoding import SegmentMethod, SmsEncodingError, SmsPart, split_text

log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SmppSettings:
    """One SMSC endpoint and how to talk to it."""

    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    source_addr: str = "12121"
    binds: int = 1
    window: int = 10  # outstanding submit_sm per bind
    segment_method: SegmentMethod = SegmentMethod.UDH
    registered_delivery: int = 1
    enquire_link_interval_s: float = 30.0
    response_timeout_s: float = 10.0
    connect_timeout_s: float = 5.0
    connect_wait_s: float = 5.0  # how long a send waits for a bind that is down before failing temporarily
    reconnect_min_s: float = 0.2
    reconnect_max_s: float = 30.0
    throttle_pause_min_s: float = 0.05
    throttle_pause_max_s: float = 5.0
    unbind_timeout_s: float = 2.0
    inbound_queue: int = 1000  # messages from phones held unanswered until stored; beyond, the SMSC resends


MAX_PART_THROTTLES = 50  # throttled answers to one later part before the message is given back
WRITE_BUFFER_HIGH = 256 * 1024  # bytes queued on the socket before a sender waits for it to drain
# Parts whose message key a receipt can still be given: a dispatcher only needs the key while the message's
# results wait to be stored (a few batches), and 65,536 ids take about 15 MB.
RECENT_KEYS = 65_536


def _time_out(future: asyncio.Future[p.Pdu]) -> None:
    if not future.done():
        future.set_exception(TimeoutError("no response in time"))


class SmppError(Exception):
    """Base of the SMPP adapter's errors."""


class LinkDown(SmppError):
    """The bind is not up (or went down with the request in flight): a temporary failure."""


class BindRefused(SmppError):
    """The SMSC refused the bind (wrong system_id or password)."""


@dataclass(frozen=True, slots=True)
class ReceiptAck:
    """How to acknowledge one receipt later: its deliver_sm's sequence_number on one link of one bind.

    ``link`` is the bind's link generation when the receipt arrived: a sequence_number means nothing on a later
    link, so an ack for a link that has since dropped is skipped (the SMSC sends the receipt again instead).
    """

    bind: SmppBind
    link: int
    sequence_number: int

    def ack(self) -> bool:
        """Write deliver_sm_resp (ESME_ROK) if the receipt's link is still up; whether it was written."""
        return self.bind.ack_receipt(self.link, self.sequence_number)


QueuedReceipt = tuple[Receipt, ReceiptAck]
QueuedInbound = tuple[InboundSms, ReceiptAck]


def remember_key(sent_keys: OrderedDict[str, str], message_id: str, key: str) -> None:
    """Remember which message a submitted part belongs to (the latest RECENT_KEYS parts)."""
    sent_keys[message_id] = key
    if len(sent_keys) > RECENT_KEYS:
        sent_keys.popitem(last=False)


def _ack_all(handles: Sequence[ReceiptAck]) -> None:
    for handle in handles:
        handle.ack()


def failure_of_status(status: int) -> FailureKind:
    """The kind of failure a submit_sm_resp's error command_status reports: throttling and a full queue are
    `THROTTLED`, the other temporary statuses (`pdu.TEMPORARY_STATUSES`) `REMOTE_ERROR`, any other `REFUSED`
    (for good: a bad address, a refused message)."""
    if status in p.THROTTLING_STATUSES:
        return FailureKind.THROTTLED
    if status in p.TEMPORARY_STATUSES:
        return FailureKind.REMOTE_ERROR
    return FailureKind.REFUSED


def failure_of_error(error: BaseException) -> FailureKind:
    """The kind of failure an error raised while submitting means: no answer in time is `TIMEOUT`; a link
    that is not bound (never bound, bind refused) or went down, and a connection error, `LINK_DOWN`."""
    if isinstance(error, TimeoutError):
        return FailureKind.TIMEOUT
    return FailureKind.LINK_DOWN


class SmppBind:
    """One transceiver bind, kept up until closed. Sends submit_sm within a window; routes receipts."""

    def __init__(
        self,
        settings: SmppSettings,
        receipts: asyncio.Queue[QueuedReceipt],
        name: str = "bind-0",
        sent_keys: OrderedDict[str, str] | None = None,
        inbound: asyncio.Queue[QueuedInbound] | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self._receipts = receipts
        # messages from phones; None: answered at once and dropped (a bind used without a channel)
        self._inbound = inbound
        self._sent_keys = sent_keys  # message id -> key of recent submits (the channel's), for receipts
        self._link = 0  # generation of the link, one more on every bind
        self._window = asyncio.Semaphore(settings.window)
        self._pending: dict[int, asyncio.Future[p.Pdu]] = {}
        # sequence_number -> message key of a submit_sm awaiting its answer
        self._submit_keys: dict[int, str] = {}
        self._sequence = itertools.count(1)
        self._bound = asyncio.Event()
        self._closing = False
        self._writer: asyncio.StreamWriter | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._paused_until = 0.0
        self._throttle_pause = 0.0
        self.counters = {
            "binds": 0,
            "submits": 0,
            "throttled": 0,
            "receipts": 0,
            "receipts_acked": 0,
            "inbound": 0,
            "inbound_refused": 0,
            "disconnects": 0,
        }

    @property
    def is_bound(self) -> bool:
        """Whether the bind is up now."""
        return self._bound.is_set()

    @property
    def in_flight(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._pending)

    def start(self) -> None:
        """Start keeping the bind up (returns at once)."""
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise(), name=f"smpp-{self.name}")

    async def wait_bound(self, timeout_s: float) -> bool:
        """Wait until bound, at most timeout_s; whether it is."""
        if self._bound.is_set():  # the common case, without a timer per submit
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._bound.wait(), timeout_s)
        return self.is_bound

    # ------------------------------------------------------------------------------------------ the link

    async def _supervise(self) -> None:
        """Connect, bind and read until the link drops; then back off and do it again, until closed."""
        delay = self.settings.reconnect_min_s
        while not self._closing:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(self.settings.host, self.settings.port),
                    self.settings.connect_timeout_s,
                )
            except (OSError, TimeoutError) as e:
                log.warning(
                    "smpp connect failed", extra={"channel": "sms", "bind": self.name, "error": str(e)}
                )
            else:
                try:
                    await self._bind(reader, writer)
                    delay = self.settings.reconnect_min_s
                    await self._run(reader, writer)
                except (OSError, TimeoutError, SmppError, p.PduError) as e:
                    log.warning(
                        "smpp link lost", extra={"channel": "sms", "bind": self.name, "error": str(e)}
                    )
                finally:
                    self._drop_link(writer)
            if self._closing:
                break
            # full jitter: a fleet of binds does not reconnect in step
            await asyncio.sleep(random.uniform(self.settings.reconnect_min_s, delay))
            delay = min(delay * 2, self.settings.reconnect_max_s)

    async def _bind(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        s = self.settings
        writer.write(
            p.encode_pdu(
                p.BIND_TRANSCEIVER, 1, p.bind_transceiver_body(s.system_id, s.password, s.system_type)
            )
        )
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(p.HEADER.size), s.response_timeout_s)
        length, command_id, status, _ = p.HEADER.unpack(header)
        if length > p.MAX_PDU_LENGTH or length < p.HEADER.size:
            raise p.PduError(f"command_length {length} out of range")
        await asyncio.wait_for(reader.readexactly(length - p.HEADER.size), s.response_timeout_s)
        if command_id not in (p.BIND_TRANSCEIVER_RESP, p.GENERIC_NACK) or status != p.ESME_ROK:
            raise BindRefused(f"bind_transceiver answered {command_id:#x} {p.status_name(status)}")
        self._sequence = itertools.count(2)
        self._link += 1
        self._writer = writer
        self._paused_until = 0.0
        self._throttle_pause = 0.0
        self.counters["binds"] += 1
        self._bound.set()
        log.info("smpp bound", extra={"channel": "sms", "bind": self.name})

    async def _run(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read PDUs until the link ends; keep it alive with enquire_link meanwhile."""
        keepalive = asyncio.create_task(self._keep_alive())
        pdus = p.PduReader()
        try:
            while True:
                data = await reader.read(65_536)
                if not data:
                    raise LinkDown("the SMSC closed the connection")
                pdus.feed(data)
                for pdu in pdus.pdus():
                    self._handle(pdu, writer)
        finally:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive

    def _handle(self, pdu: p.Pdu, writer: asyncio.StreamWriter) -> None:
        if pdu.command_id & p.RESPONSE_BIT:
            future = self._pending.pop(pdu.sequence_number, None)
            key = self._submit_keys.pop(pdu.sequence_number, None)
            if key is not None and pdu.command_status == p.ESME_ROK and self._sent_keys is not None:
                # remembered now, not when the sender resumes: the part's receipt may be in the same read
                remember_key(self._sent_keys, p.decode_message_id(pdu.body), key)
            if future is not None and not future.done():
                future.set_result(pdu)
            return
        if pdu.command_id == p.DELIVER_SM:
            self._handle_deliver_sm(pdu, writer)
        elif pdu.command_id == p.ENQUIRE_LINK:
            writer.write(p.encode_pdu(p.ENQUIRE_LINK_RESP, pdu.sequence_number))
        elif pdu.command_id == p.UNBIND:
            writer.write(p.encode_pdu(p.UNBIND_RESP, pdu.sequence_number))
            raise LinkDown("the SMSC unbound")
        else:
            writer.write(p.encode_pdu(p.GENERIC_NACK, pdu.sequence_number, b"", p.ESME_RINVCMDID))

    def _handle_deliver_sm(self, pdu: p.Pdu, writer: asyncio.StreamWriter) -> None:
        """Queue a receipt or a message from a phone unanswered (the consumer acknowledges it once stored);
        refuse one for now (ESME_RX_T_APPN: the SMSC resends) when it cannot be read or the queue is full."""
        status = p.ESME_ROK
        try:
            message = p.decode_short_message(pdu.body)
            if is_receipt(message):
                receipt = parse_receipt(message, datetime.now(UTC), self._sent_keys)
                if receipt is not None:
                    self._receipts.put_nowait((receipt, ReceiptAck(self, self._link, pdu.sequence_number)))
                    self.counters["receipts"] += 1
                    return
            elif self._inbound is not None:
                inbound = inbound_of(message, datetime.now(UTC))
                try:
                    self._inbound.put_nowait((inbound, ReceiptAck(self, self._link, pdu.sequence_number)))
                except asyncio.QueueFull:
                    status = p.ESME_RX_T_APPN
                    self.counters["inbound_refused"] += 1
                else:
                    self.counters["inbound"] += 1
                    return
        except p.PduError:
            status = p.ESME_RX_T_APPN  # the SMSC will send it again
        writer.write(p.encode_pdu(p.DELIVER_SM_RESP, pdu.sequence_number, b"\x00", status))

    def ack_receipt(self, link: int, sequence_number: int) -> bool:
        """Answer a queued receipt's deliver_sm with ESME_ROK, unless its link has gone; whether it was."""
        writer = self._writer
        if writer is None or link != self._link or writer.is_closing():
            return False  # that link's sequence numbers are void: the SMSC resends on the new one
        writer.write(p.encode_pdu(p.DELIVER_SM_RESP, sequence_number, b"\x00", p.ESME_ROK))
        self.counters["receipts_acked"] += 1
        return True

    async def _keep_alive(self) -> None:
        """enquire_link every interval; no answer in time means the link is dead: abort it."""
        while True:
            await asyncio.sleep(self.settings.enquire_link_interval_s)
            try:
                await self._request(p.ENQUIRE_LINK, b"")
            except (TimeoutError, LinkDown, OSError):
                log.warning("smpp enquire_link unanswered", extra={"channel": "sms", "bind": self.name})
                if self._writer is not None:
                    self._writer.transport.abort()
                return

    def _drop_link(self, writer: asyncio.StreamWriter) -> None:
        was_bound = self._bound.is_set()
        self._bound.clear()
        self._writer = None
        writer.transport.abort()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(LinkDown("the link went down with the request in flight"))
        if was_bound:
            self.counters["disconnects"] += 1

    async def _request(self, command_id: int, body: bytes, key: str = "") -> p.Pdu:
        """Send one request and wait for its response (at most response_timeout_s)."""
        writer = self._writer
        if writer is None or not self._bound.is_set():
            raise LinkDown("not bound")
        sequence = next(self._sequence)
        if sequence > 0x7FFFFFFF:
            self._sequence = itertools.count(2)
            sequence = 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[p.Pdu] = loop.create_future()
        self._pending[sequence] = future
        if key:
            self._submit_keys[sequence] = key
        # one timer handle, not asyncio.wait_for's task per request: thousands of requests a second
        timer = loop.call_later(self.settings.response_timeout_s, _time_out, future)
        try:
            writer.write(p.encode_pdu(command_id, sequence, body))
            if writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
                await writer.drain()
            return await future
        finally:
            timer.cancel()
            self._pending.pop(sequence, None)
            if key:
                self._submit_keys.pop(sequence, None)

    # ------------------------------------------------------------------------------------------ sending

    async def submit(self, destination: str, part: SmsPart, key: str = "") -> tuple[int, str]:
        """Send one submit_sm within the window; (command_status, message_id). Raises LinkDown or
        TimeoutError when no answer came (a temporary failure: the SMSC may or may not have it). The part's
        receipt will carry `key` (its message's) while the channel remembers it."""
        if not await self.wait_bound(self.settings.connect_wait_s):
            raise LinkDown("not bound")
        body = p.submit_sm_body(
            self.settings.source_addr,
            destination,
            part.short_message,
            data_coding=part.data_coding,
            esm_class=part.esm_class,
            registered_delivery=self.settings.registered_delivery,
            tlvs=part.tlvs,
        )
        async with self._window:
            pause = self._paused_until - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            response = await self._request(p.SUBMIT_SM, body, key)
        self.counters["submits"] += 1
        if response.command_status in p.THROTTLING_STATUSES:
            self._slow_down()
        elif response.command_status == p.ESME_ROK:
            self._throttle_pause = 0.0
        return response.command_status, p.decode_message_id(response.body)

    def _slow_down(self) -> None:
        """Pause this bind's sends, twice as long as last time (capped)."""
        s = self.settings
        self.counters["throttled"] += 1
        self._throttle_pause = min(
            max(self._throttle_pause * 2, s.throttle_pause_min_s), s.throttle_pause_max_s
        )
        self._paused_until = max(self._paused_until, time.monotonic() + self._throttle_pause)

    @property
    def throttle_pause_s(self) -> float:
        """The pause the bind applies after its latest throttling response (0 when not throttled)."""
        return self._throttle_pause

    async def close(self) -> None:
        """Let in-flight requests finish (bounded), unbind cleanly, close the socket, stop reconnecting."""
        self._closing = True
        deadline = time.monotonic() + self.settings.unbind_timeout_s
        while self._pending and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.is_bound:
            with contextlib.suppress(TimeoutError, LinkDown, OSError):
                await asyncio.wait_for(self._request(p.UNBIND, b""), self.settings.unbind_timeout_s)
            if self._writer is not None:
                self._writer.close()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor


class SmsChannel:
    """SMS over SMPP v3.4: the channel interface over one or more transceiver binds to one SMSC."""

    name = "sms"

    def __init__(self, settings: SmppSettings) -> None:
        self.settings = settings
        self._receipts: asyncio.Queue[QueuedReceipt] = asyncio.Queue()
        self._inbound: asyncio.Queue[QueuedInbound] = asyncio.Queue(maxsize=max(1, settings.inbound_queue))
        # message id -> message key of the latest RECENT_KEYS parts submitted (oldest first), for receipts
        self._sent_keys: OrderedDict[str, str] = OrderedDict()
        self._binds = [
            SmppBind(settings, self._receipts, f"bind-{i}", self._sent_keys, self._inbound)
            for i in range(settings.binds)
        ]
        self._next_bind = itertools.cycle(range(settings.binds))
        self._reference = itertools.count(random.randrange(0x10000))
        self._closed = False

    @property
    def binds(self) -> list[SmppBind]:
        """The binds, for health and tests."""
        return self._binds

    async def start(self, wait_s: float | None = None) -> bool:
        """Start every bind; wait (at most wait_s, default connect_wait_s) until all are bound."""
        for bind in self._binds:
            bind.start()
        timeout = self.settings.connect_wait_s if wait_s is None else wait_s
        results = await asyncio.gather(*(b.wait_bound(timeout) for b in self._binds))
        return all(results)

    def _pick_bind(self) -> SmppBind:
        """Round robin over the bound binds (any bind when none is: it waits for its link)."""
        for _ in range(len(self._binds)):
            bind = self._binds[next(self._next_bind)]
            if bind.is_bound:
                return bind
        return self._binds[next(self._next_bind)]

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send every message (its parts in order, on one bind); one result per message, same order."""
        return list(await asyncio.gather(*(self._send_one(m) for m in messages)))

    async def _send_one(self, message: OutboundMessage) -> SendResult:
        if self._closed:
            return SendResult(
                message.key,
                SendOutcome.TEMPORARY_FAILURE,
                reason="channel closed",
                failure=FailureKind.CLOSED,
            )
        try:
            parts = split_text(message.text, self.settings.segment_method, next(self._reference))
        except SmsEncodingError as e:
            return SendResult(
                message.key, SendOutcome.PERMANENT_FAILURE, reason=str(e), failure=FailureKind.INVALID
            )
        bind = self._pick_bind()
        remote_ids: list[str] = []
        for part in parts:
            throttled = 0
            while True:
                try:
                    status, message_id = await bind.submit(message.address, part, message.key)
                except (LinkDown, TimeoutError, OSError) as e:
                    failure = failure_of_error(e)
                    reason = "timeout" if failure is FailureKind.TIMEOUT else "link down"
                    return SendResult(
                        message.key, SendOutcome.TEMPORARY_FAILURE, tuple(remote_ids), reason, failure=failure
                    )
                # A later part throttled is resent in place (the bind waits out its pause first): giving the
                # message back would resend its earlier parts under a new reference, a broken duplicate.
                if status in p.THROTTLING_STATUSES and remote_ids and throttled < MAX_PART_THROTTLES:
                    throttled += 1
                    continue
                break
            if status != p.ESME_ROK:
                outcome = (
                    SendOutcome.TEMPORARY_FAILURE
                    if status in p.TEMPORARY_STATUSES
                    else SendOutcome.PERMANENT_FAILURE
                )
                retry = bind.throttle_pause_s if status in p.THROTTLING_STATUSES else None
                return SendResult(
                    message.key,
                    outcome,
                    tuple(remote_ids),
                    p.status_name(status),
                    retry,
                    failure_of_status(status),
                )
            remote_ids.append(message_id)
        return SendResult(message.key, SendOutcome.ACCEPTED, tuple(remote_ids))

    async def receipts(self, max_batch: int = 1000, linger_s: float = 0.0) -> AsyncIterator[ReceiptBatch]:
        """Batches of what is queued (1 to max_batch receipts), until the channel is closed and the queue drained;
        with `linger_s`, a batch not full waits that long once for more (fewer, larger writes downstream).

        A batch's deliver_sm are answered when the consumer calls its ``ack()`` (see Channel.receipts); a batch
        never acknowledged, or acknowledged after its link dropped, is left for the SMSC to resend.
        """
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        while not (self._closed and self._receipts.empty()):
            queued = await self._take_queued(max_batch)
            if not queued:
                continue
            if linger_s > 0 and len(queued) < max_batch:
                await asyncio.sleep(linger_s)
                while len(queued) < max_batch and not self._receipts.empty():
                    queued.append(self._receipts.get_nowait())
            yield ReceiptBatch((receipt for receipt, _ in queued), partial(_ack_all, [h for _, h in queued]))

    async def inbound(self, max_batch: int = 100, linger_s: float = 0.0) -> AsyncIterator[InboundBatch]:
        """Batches of the messages from phones queued (1 to max_batch), until the channel is closed and the
        queue drained; like `receipts`, a batch's deliver_sm are answered when the consumer calls ``ack()``
        (after storing it), and a batch never acknowledged is left for the SMSC to resend."""
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        while not (self._closed and self._inbound.empty()):
            queued = await _take(self._inbound, max_batch)
            if not queued:
                continue
            if linger_s > 0 and len(queued) < max_batch:
                await asyncio.sleep(linger_s)
                while len(queued) < max_batch and not self._inbound.empty():
                    queued.append(self._inbound.get_nowait())
            yield InboundBatch((m for m, _ in queued), partial(_ack_all, [h for _, h in queued]))

    async def _take_queued(self, max_batch: int) -> list[QueuedReceipt]:
        """Wait (at most 0.5 s, so a close is noticed) for one queued receipt, then take what else is queued."""
        return await _take(self._receipts, max_batch)

    def health(self) -> Health:
        """Up when every bind is bound, degraded when some are, down when none is."""
        up = sum(b.is_bound for b in self._binds)
        state = HealthState.UP if up == len(self._binds) else HealthState.DEGRADED if up else HealthState.DOWN
        counters: dict[str, int] = {}
        for bind in self._binds:
            for key, value in bind.counters.items():
                counters[key] = counters.get(key, 0) + value
        in_flight = sum(b.in_flight for b in self._binds)
        return Health(state, f"{up}/{len(self._binds)} binds up", up, len(self._binds), in_flight, counters)

    async def close(self) -> None:
        """Unbind every bind cleanly."""
        self._closed = True
        await asyncio.gather(*(b.close() for b in self._binds))


async def _take(queue: asyncio.Queue[_T], max_batch: int) -> list[_T]:
    """Wait (at most 0.5 s, so a close is noticed) for one queued item, then take what else is queued."""
    try:
        queued = [await asyncio.wait_for(queue.get(), 0.5)]
    except TimeoutError:
        return []
    while len(queued) < max_batch and not queue.empty():
        queued.append(queue.get_nowait())
    return queued
