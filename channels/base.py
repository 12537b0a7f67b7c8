"""The one small interface every channel adapter implements: send a batch, stream receipts, report health.

Adapters know protocols and encodings, never the database. The dispatcher owns retries, leases and state: an
adapter only says, per item, whether the remote end accepted it (with the remote id to correlate receipts),
refused it for now (retry later, never drop) or refused it for good.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable


class SendOutcome(StrEnum):
    """What became of one item of a batch."""

    ACCEPTED = "accepted"  # the remote end took it; remote_ids correlate later receipts
    TEMPORARY_FAILURE = "temporary_failure"  # throttled, queue full, link down: the dispatcher retries
    PERMANENT_FAILURE = "permanent_failure"  # bad number, refused content: retrying will not help


class FailureKind(StrEnum):
    """Why an item was not accepted, as the adapter judges it from its protocol: the dispatcher's circuit
    breaker reads this, never the wording of ``reason``. The adapter still decides the outcome (retry or not);
    `retryable` says which outcome each kind comes with."""

    LINK_DOWN = "link_down"  # no usable link to the remote end: not connected, bind refused, connection lost
    TIMEOUT = "timeout"  # no answer in time: the remote end may or may not have it
    CLOSED = "closed"  # the channel was closed on this side before the item went out
    THROTTLED = "throttled"  # the remote end asks to slow down (throttling, its queue full)
    REMOTE_ERROR = "remote_error"  # the remote end failed for now (a system error, a wrong link state)
    REFUSED = "refused"  # the remote end refused this item for good (bad number, refused content)
    INVALID = "invalid"  # the item cannot be sent as it is (its text cannot be encoded, or there is none)

    @property
    def retryable(self) -> bool:
        """Whether an item that failed so is worth sending again (a temporary failure)."""
        return self not in (FailureKind.REFUSED, FailureKind.INVALID)


class ReceiptState(StrEnum):
    """Final or interim state a receipt reports, across channels."""

    DELIVERED = "delivered"  # reached the handset / terminal
    ACCEPTED = "accepted"  # only taken by the network (e.g. SMSC ACCEPTD): not proof of delivery
    EN_ROUTE = "en_route"  # interim
    EXPIRED = "expired"
    FAILED = "failed"  # undeliverable, rejected, deleted
    UNKNOWN = "unknown"

    @property
    def is_final(self) -> bool:
        """Whether no later receipt is expected for the message."""
        return self is not ReceiptState.EN_ROUTE


class HealthState(StrEnum):
    """How usable a channel endpoint is right now."""

    UP = "up"
    DEGRADED = "degraded"  # some links down or throttled
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One item to send: the delivery's idempotency key, the address and the exact text.

    ``key`` is opaque to the adapter; it is returned in the result so the dispatcher can match them.
    """

    key: str
    address: str
    text: str
    want_receipt: bool = True


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one OutboundMessage.

    ``remote_ids`` are the ids the remote end gave (one per SMS segment, for example); ``reason`` is a short
    cause for a failure as the protocol words it (``"ESME_RTHROTTLED"``), for people and the stored record;
    ``failure`` its kind, for the dispatcher to act on (set exactly when the item was not accepted);
    ``retry_after_s`` a hint for temporary ones.
    A multi-part item is ACCEPTED only when every part was; otherwise the whole item fails and the parts
    already accepted are listed so a retry can be counted as a bounded duplicate.
    """

    key: str
    outcome: SendOutcome
    remote_ids: tuple[str, ...] = ()
    reason: str = ""
    retry_after_s: float | None = None
    failure: FailureKind | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A delivery receipt from the remote end, correlated by the id it gave at send time."""

    remote_id: str
    state: ReceiptState
    raw_state: str = ""  # the remote end's own word, e.g. "DELIVRD"
    error_code: str = ""
    done_at: datetime | None = None
    received_at: datetime | None = None
    # the key of the message it reports on, when the adapter that sent the message still remembers it: lets
    # a dispatcher store a receipt with its message's results when it beats them ("" when not known)
    key: str = ""


class ReceiptBatch(list[Receipt]):
    """A batch of receipts as `Channel.receipts` yields it; `ack()` acknowledges it to the remote end."""

    __slots__ = ("_ack",)

    def __init__(self, receipts: Iterable[Receipt], ack: Callable[[], object] = lambda: None) -> None:
        super().__init__(receipts)
        self._ack = ack

    def ack(self) -> None:
        """Tell the remote end these receipts are handled (stored), so it does not send them again."""
        self._ack()


@dataclass(frozen=True, slots=True)
class Health:
    """A snapshot of a channel's health for /healthz, metrics and the circuit breaker."""

    state: HealthState
    detail: str = ""
    links_up: int = 0
    links_total: int = 0
    in_flight: int = 0
    counters: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class Channel(Protocol):
    """What the dispatcher needs from every channel adapter."""

    name: str

    async def send_batch(self, messages: Sequence[OutboundMessage]) -> list[SendResult]:
        """Send every message; return one result per message, in the same order. Never raises for a
        per-item failure: those are results."""
        ...

    def receipts(self, max_batch: int = 1000, linger_s: float = 0.0) -> AsyncIterator[ReceiptBatch]:
        """Receipts in batches as they arrive, for as long as the channel is open.

        A batch holds whatever is queued right now: at least one receipt, at most ``max_batch``; with
        ``linger_s`` a batch that is not full waits that long once for more. A batch is acknowledged to the
        remote end only when the consumer calls its ``ack()``, so a consumer that persists a batch before
        acknowledging it never loses one: if it dies first, the remote end sends those receipts again.
        Batches may be acknowledged in any order, and the consumer may go on to the next batch before
        acknowledging one. Duplicates are therefore possible and the consumer must treat them idempotently.
        """
        ...

    def health(self) -> Health:
        """A snapshot of the channel's health; cheap, never blocks."""
        ...

    async def close(self) -> None:
        """Stop sending, finish or fail what is in flight, and let go of connections cleanly."""
        ...
