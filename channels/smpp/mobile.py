"""Messages from phones (mobile-originated deliver_sm, not receipts) decoded into `InboundSms`.

The text is decoded by data_coding: 0x08 UCS2 (UTF-16 big-endian), 0x00 the SMSC default alphabet (unpacked
GSM 03.38 septets, which agree with ASCII for digits and Latin letters: those are read as ASCII, the rest
through the GSM table), anything else latin-1. A message_payload TLV is read when short_message is empty.

Concatenated messages (UDHI set) are taken part by part, not reassembled: each part becomes its own
`InboundSms` with the user data header stripped. The replies this service asks for (a short code, "已传达
120") fit one SMS; holding parts unacknowledged until their siblings come would tie the SMSC's resends to a
message that may never be whole. A part that makes no sense alone is recorded as not understood.

>>> m = ShortMessage("8613900000001", "12121", 0, 0, 0x08, "收到1234".encode("utf-16-be"))
>>> inbound_of(m, datetime(2026, 1, 1, tzinfo=UTC)).text
'收到1234'
>>> inbound_of(ShortMessage("139", "12121", 0x40, 0, 0, bytes([5, 0, 3, 7, 2, 1]) + b"1234"),
...            datetime(2026, 1, 1, tzinfo=UTC)).text
'1234'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from channels.smpp.pdu import PduError, ShortMessage
from channels.sms.encoding import GSM7_BASIC_TABLE, GSM7_ESCAPE, GSM7_EXTENSION_TABLE, TAG_MESSAGE_PAYLOAD

ESM_CLASS_UDHI = 0x40
_GSM7_EXTENSION_CHARS = {septet: char for char, septet in GSM7_EXTENSION_TABLE.items()}
MAX_TEXT = 1000  # characters kept of one message (svc.inbound_sms.text)

__all__ = ["InboundBatch", "InboundSms", "decode_text", "inbound_of"]


@dataclass(frozen=True, slots=True)
class InboundSms:
    """One message a phone sent: who from, to which number, what it said, when it arrived."""

    source: str
    destination: str
    text: str
    received_at: datetime


class InboundBatch(list[InboundSms]):
    """A batch of messages from phones as `SmsChannel.inbound` yields it; `ack()` answers their deliver_sm."""

    __slots__ = ("_ack",)

    def __init__(self, messages: Iterable[InboundSms], ack: Callable[[], object] = lambda: None) -> None:
        super().__init__(messages)
        self._ack = ack

    def ack(self) -> None:
        """Tell the SMSC these messages are stored, so it does not send them again."""
        self._ack()


def _gsm_default(octets: bytes) -> str:
    chars: list[str] = []
    escaped = False
    for octet in octets:
        if escaped:
            chars.append(_GSM7_EXTENSION_CHARS.get(octet, " "))
            escaped = False
        elif octet == GSM7_ESCAPE:
            escaped = True
        elif 0x20 <= octet < 0x7F and (chr(octet).isalnum() or chr(octet) in " .,:;!?+-()/'\"#%&*=<>"):
            chars.append(chr(octet))
        elif octet < len(GSM7_BASIC_TABLE):
            chars.append(GSM7_BASIC_TABLE[octet])
        else:
            chars.append(chr(octet))
    return "".join(chars)


def decode_text(octets: bytes, data_coding: int) -> str:
    """The text of a message's user data (without its header) under `data_coding`.

    >>> decode_text(b"\\x00O\\x00K", 0x08), decode_text(b"OK 12", 0x00), decode_text(b"caf\\xe9", 0x03)
    ('OK', 'OK 12', 'café')
    """
    if data_coding == 0x08:
        return octets[: len(octets) - len(octets) % 2].decode("utf-16-be", errors="replace")
    if data_coding == 0x00:
        return _gsm_default(octets)
    return octets.decode("latin-1")


def inbound_of(message: ShortMessage, received_at: datetime | None = None) -> InboundSms:
    """The `InboundSms` a mobile-originated deliver_sm carries; PduError when its user data header is broken."""
    octets = message.short_message or message.tlvs.get(TAG_MESSAGE_PAYLOAD, b"")
    if message.esm_class & ESM_CLASS_UDHI and octets:
        header_length = octets[0] + 1
        if header_length > len(octets):
            raise PduError("user data header longer than the message")
        octets = octets[header_length:]
    text = decode_text(octets, message.data_coding).replace("\x00", "")
    return InboundSms(
        source=message.source_addr[:32],
        destination=message.destination_addr[:32],
        text=text[:MAX_TEXT],
        received_at=received_at or datetime.now(UTC),
    )
