"""SMS as a partner channel: one text to one phone through the SMS channel's binds (a subscription on the
SMS channel, an acknowledgement call to a duty contact)."""

from __future__ import annotations

import time

from channels.base import Health, OutboundMessage, SendOutcome
from channels.partner import PartnerMessage, PartnerResult
from channels.smpp.esme import SmsChannel


class SmsPartnerChannel:
    """`channels.partner.PartnerChannel` over an `SmsChannel`; the caller starts and owns the binds."""

    name = "sms"

    def __init__(self, sms: SmsChannel) -> None:
        self.sms = sms
        self.parallel = sms.settings.window * sms.settings.binds  # submits in flight at once
        self._started = False

    def start(self) -> None:
        """Bring the binds up in the background (a send waits for them a while)."""
        if not self._started:
            self._started = True
            for bind in self.sms.binds:
                bind.start()

    async def deliver(self, message: PartnerMessage) -> PartnerResult:
        started = time.monotonic()
        self.start()
        [result] = await self.sms.send_batch(
            [
                OutboundMessage(
                    key=message.message_id, address=message.address, text=message.text, want_receipt=False
                )
            ]
        )
        latency_ms = round((time.monotonic() - started) * 1000)
        if result.outcome is SendOutcome.ACCEPTED:
            return PartnerResult(SendOutcome.ACCEPTED, latency_ms)
        return PartnerResult(
            result.outcome,
            latency_ms,
            error=result.reason,
            failure=result.failure,
            retry_after_s=result.retry_after_s,
        )

    def health(self) -> Health:
        return self.sms.health()

    async def close(self) -> None:
        await self.sms.close()
