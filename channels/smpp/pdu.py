"""SMPP v3.4 PDU codec for the handful of PDUs an ESME transceiver needs (pure, no I/O).

bind_transceiver(_resp), submit_sm(_resp), deliver_sm(_resp), enquire_link(_resp), unbind(_resp) and
generic_nack. Every PDU is a 16-octet header (command_length, command_id, command_status, sequence_number,
big-endian) followed by a body of C-octet strings, integers and TLVs (tag, length, value).

>>> encode_pdu(ENQUIRE_LINK, 7).hex()
'00000010000000150000000000000007'
>>> reader = PduReader(); reader.feed(encode_pdu(ENQUIRE_LINK, 7) + b"\\x00\\x00")
>>> [(p.command_id, p.sequence_number) for p in reader.pdus()]
[(21, 7)]
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

GENERIC_NACK = 0x80000000
BIND_TRANSCEIVER = 0x00000009
BIND_TRANSCEIVER_RESP = 0x80000009
SUBMIT_SM = 0x00000004
SUBMIT_SM_RESP = 0x80000004
DELIVER_SM = 0x00000005
DELIVER_SM_RESP = 0x80000005
UNBIND = 0x00000006
UNBIND_RESP = 0x80000006
ENQUIRE_LINK = 0x00000015
ENQUIRE_LINK_RESP = 0x80000015
RESPONSE_BIT = 0x80000000

ESME_ROK = 0x00
ESME_RINVMSGLEN = 0x01
ESME_RINVCMDID = 0x03
ESME_RINVBNDSTS = 0x04
ESME_RALYBND = 0x05
ESME_RSYSERR = 0x08
ESME_RBINDFAIL = 0x0D
ESME_RINVPASWD = 0x0E
ESME_RINVSYSID = 0x0F
ESME_RMSGQFUL = 0x14
ESME_RINVDSTADR = 0x0B
ESME_RTHROTTLED = 0x58
ESME_RX_T_APPN = 0x64  # temporary application error (ESME receiver side)

STATUS_NAMES = {
    ESME_ROK: "ESME_ROK",
    ESME_RINVMSGLEN: "ESME_RINVMSGLEN",
    ESME_RINVCMDID: "ESME_RINVCMDID",
    ESME_RINVBNDSTS: "ESME_RINVBNDSTS",
    ESME_RALYBND: "ESME_RALYBND",
    ESME_RSYSERR: "ESME_RSYSERR",
    ESME_RINVDSTADR: "ESME_RINVDSTADR",
    ESME_RBINDFAIL: "ESME_RBINDFAIL",
    ESME_RINVPASWD: "ESME_RINVPASWD",
    ESME_RINVSYSID: "ESME_RINVSYSID",
    ESME_RMSGQFUL: "ESME_RMSGQFUL",
    ESME_RTHROTTLED: "ESME_RTHROTTLED",
}
# Statuses after which the same submit_sm may succeed later: back off and resend, never drop.
TEMPORARY_STATUSES = frozenset(
    {ESME_RMSGQFUL, ESME_RTHROTTLED, ESME_RSYSERR, ESME_RINVBNDSTS, ESME_RX_T_APPN}
)
THROTTLING_STATUSES = frozenset({ESME_RMSGQFUL, ESME_RTHROTTLED})

TAG_RECEIPTED_MESSAGE_ID = 0x001E
TAG_MESSAGE_STATE = 0x0427
TAG_NETWORK_ERROR_CODE = 0x0423

HEADER = struct.Struct(">IIII")
MAX_PDU_LENGTH = 65_536 + 1_024  # message_payload up to 64 KiB plus the fixed fields


class PduError(ValueError):
    """Octets that are not a well-formed SMPP PDU; one line."""


def status_name(status: int) -> str:
    """The ESME_R* name of a command_status, or its hex value."""
    return STATUS_NAMES.get(status, f"0x{status:08X}")


@dataclass(frozen=True, slots=True)
class Pdu:
    """A decoded PDU header with its raw body."""

    command_id: int
    command_status: int
    sequence_number: int
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ShortMessage:
    """The fields of a submit_sm or deliver_sm body that an ESME needs."""

    source_addr: str
    destination_addr: str
    esm_class: int
    registered_delivery: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes] = field(default_factory=dict)


def cstring(value: str | bytes) -> bytes:
    """A C-octet string: ASCII octets and a NUL."""
    raw = value.encode("ascii") if isinstance(value, str) else value
    return raw + b"\x00"


def encode_tlvs(tlvs: dict[int, bytes]) -> bytes:
    """TLVs as tag (2 octets), length (2 octets), value."""
    return b"".join(struct.pack(">HH", tag, len(value)) + value for tag, value in tlvs.items())


def encode_pdu(command_id: int, sequence_number: int, body: bytes = b"", command_status: int = 0) -> bytes:
    """Header and body as one PDU."""
    return HEADER.pack(HEADER.size + len(body), command_id, command_status, sequence_number) + body


def bind_transceiver_body(system_id: str, password: str, system_type: str = "") -> bytes:
    """Body of bind_transceiver, interface_version 3.4, no address range."""
    return cstring(system_id) + cstring(password) + cstring(system_type) + bytes([0x34, 0, 0]) + cstring("")


def submit_sm_body(
    source_addr: str,
    destination_addr: str,
    short_message: bytes,
    *,
    data_coding: int,
    esm_class: int = 0,
    registered_delivery: int = 1,
    tlvs: dict[int, bytes] | None = None,
    source_ton: int = 0,
    source_npi: int = 0,
    dest_ton: int = 1,
    dest_npi: int = 1,
    validity_period: str = "",
) -> bytes:
    """Body of submit_sm; short_message at most 254 octets (longer goes in message_payload)."""
    if len(short_message) > 254:
        raise PduError(f"short_message of {len(short_message)} octets: at most 254")
    return (
        cstring("")  # service_type
        + bytes([source_ton, source_npi])
        + cstring(source_addr)
        + bytes([dest_ton, dest_npi])
        + cstring(destination_addr)
        + bytes([esm_class, 0, 0])  # esm_class, protocol_id, priority_flag
        + cstring("")  # schedule_delivery_time
        + cstring(validity_period)
        + bytes([registered_delivery, 0, data_coding, 0, len(short_message)])
        + short_message
        + encode_tlvs(tlvs or {})
    )


class _Cursor:
    """Reads the fields of a PDU body in order."""

    __slots__ = ("body", "offset")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.offset = 0

    def cstring(self) -> bytes:
        end = self.body.find(b"\x00", self.offset)
        if end < 0:
            raise PduError("C-octet string without its NUL")
        value = self.body[self.offset : end]
        self.offset = end + 1
        return value

    def octet(self) -> int:
        if self.offset >= len(self.body):
            raise PduError("body ends inside the fixed fields")
        value = self.body[self.offset]
        self.offset += 1
        return value

    def octets(self, n: int) -> bytes:
        if self.offset + n > len(self.body):
            raise PduError("body ends inside a field")
        value = self.body[self.offset : self.offset + n]
        self.offset += n
        return value

    def tlvs(self) -> dict[int, bytes]:
        found: dict[int, bytes] = {}
        while self.offset + 4 <= len(self.body):
            tag, length = struct.unpack_from(">HH", self.body, self.offset)
            self.offset += 4
            found[tag] = self.octets(length)
        return found


def decode_short_message(body: bytes) -> ShortMessage:
    """The fields of a submit_sm or deliver_sm body."""
    c = _Cursor(body)
    c.cstring()  # service_type
    c.octet(), c.octet()
    source_addr = c.cstring().decode("latin-1")
    c.octet(), c.octet()
    destination_addr = c.cstring().decode("latin-1")
    esm_class = c.octet()
    c.octet(), c.octet()  # protocol_id, priority_flag
    c.cstring(), c.cstring()  # schedule_delivery_time, validity_period
    registered_delivery = c.octet()
    c.octet()  # replace_if_present_flag
    data_coding = c.octet()
    c.octet()  # sm_default_msg_id
    short_message = c.octets(c.octet())
    return ShortMessage(
        source_addr, destination_addr, esm_class, registered_delivery, data_coding, short_message, c.tlvs()
    )


def decode_message_id(body: bytes) -> str:
    """The message_id of a submit_sm_resp (empty when the body is, as after an error)."""
    if not body:
        return ""
    return _Cursor(body).cstring().decode("ascii", errors="replace")


class PduReader:
    """Cuts a byte stream into PDUs; keeps a partial PDU until the rest arrives."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        """Append octets read from the socket."""
        self._buffer += data

    def pdus(self) -> Iterator[Pdu]:
        """Every complete PDU buffered so far."""
        buffer = self._buffer
        offset = 0
        try:
            while len(buffer) - offset >= HEADER.size:
                length, command_id, status, sequence = HEADER.unpack_from(buffer, offset)
                if length < HEADER.size or length > MAX_PDU_LENGTH:
                    raise PduError(f"command_length {length} out of range")
                if len(buffer) - offset < length:
                    break
                body = bytes(buffer[offset + HEADER.size : offset + length])
                offset += length
                yield Pdu(command_id, status, sequence, body)
        finally:
            del buffer[:offset]
