"""The interface of the partner channels: one message to one partner address (a webhook URL, an email address,
an MQTT topic) and what became of it.

A partner message is the same for every channel: the warning's JSON summary (`body`, the webhook's body), the
CAP document, and a Chinese text for people. Each adapter knows its protocol (Standard Webhooks signatures,
SMTP with the CAP attached, an MQTT publish) and judges its own failures; the partner dispatcher
(`warnings_svc.partners.dispatch`) owns retries, leases, the delivery log and state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from channels.base import FailureKind, Health, SendOutcome


@dataclass(frozen=True, slots=True)
class PartnerMessage:
    """One delivery's message.

    ``message_id`` is the idempotency key, stable across retries (the webhook-id, the email's Message-ID
    local part, the MQTT payload's ``message_id``). ``body`` is the UTF-8 JSON document every channel carries
    (for a webhook, exactly the bytes signed and posted). ``secrets`` are the webhook's signing secrets
    (``whsec_...``), the current first; during a rotation both sign. ``timestamp`` is the Unix time of this
    attempt (signed with the body)."""

    message_id: str
    address: str
    body: bytes
    cap_xml: str
    subject: str  # the headline, for an email subject
    text: str  # a Chinese text for people: an email's body
    timestamp: int
    secrets: tuple[str, ...] = ()
    cap_filename: str = "alert.cap.xml"


@dataclass(frozen=True, slots=True)
class PartnerResult:
    """What became of one attempt.

    ``status`` is the HTTP status or SMTP reply code when the peer answered; ``error`` a one-line cause as the
    protocol words it; ``failure`` is set exactly when the outcome is not ACCEPTED. ``disable`` asks that the
    subscription be disabled (a webhook answered 410 Gone); ``retry_after_s`` is the peer's own hint (429,
    502, 504, an SMTP 4xx), which the dispatcher takes when it is later than its schedule."""

    outcome: SendOutcome
    latency_ms: int
    status: int | None = None
    error: str = ""
    failure: FailureKind | None = None
    retry_after_s: float | None = None
    disable: bool = False


@runtime_checkable
class PartnerChannel(Protocol):
    """What the partner dispatcher needs from a webhook, email or MQTT partner adapter."""

    name: str  # webhook | email | mqtt | sms
    # (optional) `parallel: int`: how many messages the adapter sends at once, when it is fewer than the
    # dispatcher's concurrency (a mail server's few connections); the dispatcher claims no more than that

    async def deliver(self, message: PartnerMessage) -> PartnerResult:
        """Send one message; never raises for a failure of the peer (that is a result)."""
        ...

    def health(self) -> Health:
        """A snapshot of the channel's health; cheap, never blocks."""
        ...

    async def close(self) -> None:
        """Let go of connections."""
        ...


@runtime_checkable
class KeepsALink(Protocol):
    """A partner adapter that holds a link (an MQTT connection, SMPP binds): `start` brings it up in the
    background, so that its health says the truth before the first message."""

    def start(self) -> None: ...
