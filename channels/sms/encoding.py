"""SMS text encoding and segmentation (pure): GSM-7 or UCS2, and long texts split into parts.

A text that fits one SMS (160 GSM-7 septets or 70 UCS2 code units) goes as one submit_sm. A longer one is
split into parts of 153 septets or 67 code units, each carried one of three ways, as the carrier accepts:

- ``UDH``: a 6-octet user data header ``05 00 03 ref total seq`` in front of each part, esm_class 0x40;
- ``SAR``: the same parts without a header, numbered by the TLVs sar_msg_ref_num (0x020C),
  sar_total_segments (0x020E) and sar_segment_seqnum (0x020F);
- ``PAYLOAD``: the whole text in one submit_sm, in the message_payload TLV (0x0424); the SMSC splits it.

A part never ends inside a UTF-16 surrogate pair (an emoji) nor between the escape and the character of a
GSM-7 extension (``€``, ``[``...), so a part may hold one unit fewer than the limit; then, rarely, the text
needs one part more than ``ceil(n / 67)``.

>>> [len(p.short_message) for p in split_text("预" * 71, SegmentMethod.UDH, reference=7)]
[140, 14]
>>> split_text("预" * 71, SegmentMethod.UDH, reference=7)[1].short_message[:6].hex()
'050003070202'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from enum import StrEnum

# GSM 03.38 default alphabet, indexed by septet value (0x1B is the escape to the extension table)
GSM7_BASIC_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION_TABLE = {
    "\f": 0x0A,
    "^": 0x14,
    "{": 0x28,
    "}": 0x29,
    "\\": 0x2F,
    "[": 0x3C,
    "~": 0x3D,
    "]": 0x3E,
}
GSM7_EXTENSION_TABLE |= {"|": 0x40, "€": 0x65}
_GSM7_BASIC_INDEX = {c: i for i, c in enumerate(GSM7_BASIC_TABLE) if c != "\x1b"}
GSM7_ESCAPE = 0x1B

SINGLE_LIMIT = {"GSM-7": 160, "UCS2": 70}  # units in a message of one segment
PART_LIMIT = {"GSM-7": 153, "UCS2": 67}  # units per part of a concatenated message (6-octet UDH)
DATA_CODING = {"GSM-7": 0x00, "UCS2": 0x08}  # SMSC default alphabet (unpacked septets); UCS2
ESM_CLASS_UDHI = 0x40

TAG_SAR_MSG_REF_NUM = 0x020C
TAG_SAR_TOTAL_SEGMENTS = 0x020E
TAG_SAR_SEGMENT_SEQNUM = 0x020F
TAG_MESSAGE_PAYLOAD = 0x0424


class SmsEncodingError(ValueError):
    """A text that cannot be sent as SMS (empty, or too many parts); one line."""


class SegmentMethod(StrEnum):
    """How the parts of a long text are tied together (a carrier setting)."""

    UDH = "udh"
    SAR = "sar"
    PAYLOAD = "payload"


@dataclass(frozen=True, slots=True)
class SmsPart:
    """One submit_sm's worth of a text: the octets for short_message, esm_class, data_coding and TLVs.

    ``tlvs`` maps tag -> value octets (SAR numbering or message_payload).
    """

    short_message: bytes
    data_coding: int
    esm_class: int = 0
    tlvs: dict[int, bytes] = field(default_factory=dict)
    seq: int = 1
    total: int = 1


def sms_coding(text: str) -> str:
    """``"GSM-7"`` when every character is in the GSM 03.38 alphabet or its extension, else ``"UCS2"``.

    >>> sms_coding("Heat warning"), sms_coding("高温预警"), sms_coding("37 °C")
    ('GSM-7', 'UCS2', 'UCS2')
    """
    return "GSM-7" if all(c in _GSM7_BASIC_INDEX or c in GSM7_EXTENSION_TABLE for c in text) else "UCS2"


def _units(text: str, coding: str) -> list[bytes]:
    """The text as indivisible units: GSM-7 septets (escape + char stays together) or UTF-16 code units
    (a surrogate pair stays together); each unit's length in septets or code units is len(unit) // width."""
    if coding == "GSM-7":
        return [
            bytes([GSM7_ESCAPE, GSM7_EXTENSION_TABLE[c]])
            if c in GSM7_EXTENSION_TABLE
            else bytes([_GSM7_BASIC_INDEX[c]])
            for c in text
        ]
    return [c.encode("utf-16-be") for c in text]


def encode_text(text: str) -> tuple[bytes, int]:
    """The text as octets and the data_coding to send them with.

    >>> encode_text("Hi €")
    (b'Hi \\x1be', 0)
    >>> encode_text("预警")
    (b'\\x98\\x84\\x8bf', 8)
    """
    coding = sms_coding(text)
    return b"".join(_units(text, coding)), DATA_CODING[coding]


def _split_units(units: list[bytes], limit_octets: int) -> list[bytes]:
    """Greedy packing of indivisible units into parts of at most limit_octets octets."""
    parts: list[bytes] = []
    current = bytearray()
    for unit in units:
        if len(current) + len(unit) > limit_octets:
            parts.append(bytes(current))
            current = bytearray()
        current += unit
    if current:
        parts.append(bytes(current))
    return parts


def split_text(text: str, method: SegmentMethod = SegmentMethod.UDH, reference: int = 0) -> list[SmsPart]:
    """The submit_sm parts a text needs, each with its own octets, esm_class, data_coding and TLVs.

    ``reference`` ties the parts of one text together (8 bits for UDH, 16 for SAR); the caller allocates it.

    >>> [(p.seq, p.total, len(p.short_message)) for p in split_text("预" * 135, SegmentMethod.SAR, 300)]
    [(1, 3, 134), (2, 3, 134), (3, 3, 2)]
    >>> split_text("预" * 135, SegmentMethod.SAR, 300)[0].tlvs[TAG_SAR_MSG_REF_NUM].hex()
    '012c'
    """
    if not text:
        raise SmsEncodingError("empty text: nothing to send")
    data_coding, octets, chunks = _encoded(text)
    if not chunks:
        return [SmsPart(short_message=octets, data_coding=data_coding)]
    if method is SegmentMethod.PAYLOAD:
        return [SmsPart(short_message=b"", data_coding=data_coding, tlvs={TAG_MESSAGE_PAYLOAD: octets})]
    total = len(chunks)
    if total > 255:
        raise SmsEncodingError(f"text needs {total} parts; at most 255 can be tied together")
    parts = []
    for seq, chunk in enumerate(chunks, start=1):
        if method is SegmentMethod.UDH:
            udh = bytes([0x05, 0x00, 0x03, reference & 0xFF, total, seq])
            parts.append(SmsPart(udh + chunk, data_coding, ESM_CLASS_UDHI, {}, seq, total))
        else:
            tlvs = {
                TAG_SAR_MSG_REF_NUM: (reference & 0xFFFF).to_bytes(2, "big"),
                TAG_SAR_TOTAL_SEGMENTS: bytes([total]),
                TAG_SAR_SEGMENT_SEQNUM: bytes([seq]),
            }
            parts.append(SmsPart(chunk, data_coding, 0, tlvs, seq, total))
    return parts


@functools.lru_cache(maxsize=64)
def _encoded(text: str) -> tuple[int, bytes, tuple[bytes, ...]]:
    """(data_coding, the whole text's octets, its part octets or () when one SMS holds it). Cached: a warning
    sends the same few texts to every recipient, and only the part reference differs between them."""
    coding = sms_coding(text)
    width = 1 if coding == "GSM-7" else 2
    units = _units(text, coding)
    octets = b"".join(units)
    if len(octets) <= SINGLE_LIMIT[coding] * width:
        return DATA_CODING[coding], octets, ()
    return DATA_CODING[coding], octets, tuple(_split_units(units, PART_LIMIT[coding] * width))


def segment_count(text: str) -> int:
    """Parts the text needs on the air (whatever the method: message_payload is split by the SMSC the same
    way); empty text needs none.

    >>> segment_count("预" * 70), segment_count("预" * 71), segment_count("预" * 134), segment_count("预" * 135)
    (1, 2, 2, 3)
    """
    if not text:
        return 0
    parts = split_text(text, SegmentMethod.UDH)
    return len(parts)
