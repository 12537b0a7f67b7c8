"""Cell broadcast encoding (pure): alphabet, pages, data coding scheme, serial number, message identifier.

Everything a CBS message is made of apart from its transport, per 3GPP TS 23.041 (the message) and TS 23.038
(the alphabet and the data coding scheme):

- a page carries 82 octets of content: 93 GSM-7 septets or 41 UCS2 characters; a message has at most 15
  pages (1,395 GSM-7 or 615 UCS2 characters);
- the data coding scheme (one octet, TS 23.038 section 5) says the alphabet and, optionally, the language;
- the serial number (16 bits) is the geographical scope (2 bits), the message code (10 bits) and the update
  number (4 bits); handsets show a message again only when its serial number changed;
- the message identifier (16 bits) says the class of warning; public warnings use the CMAS / EU-Alert family
  4370-4381.

>>> [len(p.text) for p in split_pages("高温预警" * 37 + "请防暑").pages]
[41, 41, 41, 28]
>>> SerialNumber(GeoScope.PLMN, message_code=300, update_number=2).encode()
21186
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from channels.sms.encoding import GSM7_BASIC_TABLE, GSM7_ESCAPE, GSM7_EXTENSION_TABLE, sms_coding

PAGE_OCTETS = 82  # content of one CBS page (TS 23.041 9.4.1.2.4; 88 octets less the 6-octet header)
MAX_PAGES = 15  # TS 23.041 9.4.1.2.1: the page parameter counts 1-15
GSM7_PAGE_SEPTETS = 93  # floor(82 * 8 / 7): the 5 bits left over are zero (TS 23.038 6.1.2.2)
UCS2_PAGE_UNITS = 41  # 82 / 2 UTF-16 code units
CR = 0x0D  # carriage return: the padding character, in GSM-7 (a septet) and in UCS2 (0x000D)
UCS2_PAD = b"\x00\x0d"

_GSM7_INDEX = {c: i for i, c in enumerate(GSM7_BASIC_TABLE) if i != GSM7_ESCAPE}


class CbsEncodingError(ValueError):
    """A text that cannot be broadcast as it is (empty, or more than 15 pages); one line."""


class Alphabet(StrEnum):
    """The character set of a CBS message; the values are the ECBE's ``character_set`` words."""

    GSM7 = "gsm"
    UCS2 = "ucs2"


def choose_alphabet(text: str) -> Alphabet:
    """GSM-7 when every character is in the GSM default alphabet or its extension table (each extension
    character costs two septets, the escape and itself), else UCS2. The same rule as SMS.

    >>> choose_alphabet("Heat warning [red]"), choose_alphabet("高温红色预警"), choose_alphabet("40 °C")
    (<Alphabet.GSM7: 'gsm'>, <Alphabet.UCS2: 'ucs2'>, <Alphabet.UCS2: 'ucs2'>)
    """
    return Alphabet.GSM7 if sms_coding(text) == "GSM-7" else Alphabet.UCS2


def gsm7_units(text: str) -> list[bytes]:
    """The text as indivisible runs of septet values: one per character, two (escape, value) for a character of
    the extension table. Raises CbsEncodingError for a character outside both tables.

    >>> gsm7_units("a€")
    [b'a', b'\\x1be']
    """
    units = []
    for c in text:
        if c in _GSM7_INDEX:
            units.append(bytes([_GSM7_INDEX[c]]))
        elif c in GSM7_EXTENSION_TABLE:
            units.append(bytes([GSM7_ESCAPE, GSM7_EXTENSION_TABLE[c]]))
        else:
            raise CbsEncodingError(f"character {c!r} is not in the GSM 7-bit default alphabet")
    return units


def pack_septets(septets: bytes) -> bytes:
    """Pack 7-bit values into octets, least significant bit first (TS 23.038 6.1.2.2): the first septet fills
    bits 0-6 of octet 1, the second starts at its bit 7, and so on; the bits after the last are zero.

    >>> pack_septets(bytes(_GSM7_INDEX[c] for c in "hellohello")).hex(" ").upper()
    'E8 32 9B FD 46 97 D9 EC 37'
    """
    acc = 0
    for i, septet in enumerate(septets):
        if septet > 0x7F:
            raise CbsEncodingError(f"value {septet:#x} at {i} is not a septet")
        acc |= septet << (7 * i)
    return acc.to_bytes(math.ceil(len(septets) * 7 / 8), "little")


def unpack_septets(octets: bytes, count: int) -> bytes:
    """The first ``count`` septets packed in octets (the inverse of pack_septets).

    >>> unpack_septets(bytes.fromhex("E8329BFD4697D9EC37"), 10) == bytes(_GSM7_INDEX[c] for c in "hellohello")
    True
    """
    if count * 7 > len(octets) * 8:
        raise CbsEncodingError(f"{len(octets)} octets hold fewer than {count} septets")
    acc = int.from_bytes(octets, "little")
    return bytes((acc >> (7 * i)) & 0x7F for i in range(count))


def gsm7_text(septets: bytes) -> str:
    """The characters that GSM-7 septet values stand for (escape sequences resolved).

    >>> gsm7_text(b"Hi \\x1be")
    'Hi €'
    """
    extension = {v: c for c, v in GSM7_EXTENSION_TABLE.items()}
    out, escaped = [], False
    for septet in septets:
        if escaped:
            out.append(extension.get(septet, " "))  # an unknown extension value shows as a space (6.2.1.1)
            escaped = False
        elif septet == GSM7_ESCAPE:
            escaped = True
        else:
            out.append(GSM7_BASIC_TABLE[septet])
    return "".join(out)


# TS 23.038 section 5: languages whose code lives in the DCS itself (GSM-7 only): coding group 0000 and 0010
DCS_GSM7_LANGUAGES: Mapping[str, int] = {
    "de": 0x00,
    "en": 0x01,
    "it": 0x02,
    "fr": 0x03,
    "es": 0x04,
    "nl": 0x05,
    "sv": 0x06,
    "da": 0x07,
    "pt": 0x08,
    "fi": 0x09,
    "no": 0x0A,
    "el": 0x0B,
    "tr": 0x0C,
    "hu": 0x0D,
    "pl": 0x0E,
    "cs": 0x20,
    "he": 0x21,
    "ar": 0x22,
    "ru": 0x23,
    "is": 0x24,
}
DCS_GSM7_UNSPECIFIED = 0x0F  # group 0000, language unspecified
DCS_GSM7_LANGUAGE_PREFIX = 0x10  # group 0001/0000: each page starts with "xx<CR>"
DCS_UCS2_LANGUAGE_PREFIX = 0x11  # group 0001/0001: each page starts with "xx" in two packed septets
DCS_UCS2 = 0x48  # group 01xx: uncompressed, no message class, bits 3-2 = 10 (UCS2)


def data_coding_scheme(alphabet: Alphabet, language: str = "") -> int:
    """The CBS data coding scheme octet (TS 23.038 section 5) for an alphabet and an ISO 639-1 language.

    GSM-7 with a language that has its own code (English, German, ... Russian) puts it in the octet; with any
    other language the pages start with the language and a CR (0x10); without one, "language unspecified"
    (0x0F). UCS2 without a language is the general data coding group, UCS2, no class (0x48); with one, 0x11
    and the pages start with the language in two packed GSM-7 characters.

    >>> [hex(data_coding_scheme(Alphabet.GSM7, lang)) for lang in ("", "en", "ru", "mn")]
    ['0xf', '0x1', '0x23', '0x10']
    >>> hex(data_coding_scheme(Alphabet.UCS2)), hex(data_coding_scheme(Alphabet.UCS2, "zh"))
    ('0x48', '0x11')
    """
    if language and (len(language) != 2 or not all(c in _GSM7_INDEX for c in language)):
        raise CbsEncodingError(f"language {language!r} is not a two-letter ISO 639-1 code")
    if alphabet is Alphabet.UCS2:
        return DCS_UCS2_LANGUAGE_PREFIX if language else DCS_UCS2
    if not language:
        return DCS_GSM7_UNSPECIFIED
    return DCS_GSM7_LANGUAGES.get(language, DCS_GSM7_LANGUAGE_PREFIX)


@dataclass(frozen=True, slots=True)
class CbsPage:
    """One page: its 82 octets of content (padded), the characters of the text it carries, and how many
    octets of the content are the text (and language prefix) before the padding, as CBSP and SBc-AP carry
    it next to the page."""

    content: bytes
    text: str
    used_octets: int


@dataclass(frozen=True, slots=True)
class CbsPages:
    """A text split into CBS pages, with the alphabet, the language and the DCS octet they go with."""

    alphabet: Alphabet
    language: str
    dcs: int
    pages: tuple[CbsPage, ...]

    @property
    def text(self) -> str:
        """The whole text back, as the handset shows it (without language prefix and padding)."""
        return "".join(p.text for p in self.pages)


def _greedy(units: list[bytes], budget: int) -> list[list[bytes]]:
    """Indivisible units packed into runs of at most ``budget`` octets/septets, in order. Never splits a unit,
    so an escape sequence or a surrogate pair stays on one page (a page may then hold one unit fewer)."""
    runs: list[list[bytes]] = [[]]
    used = 0
    for unit in units:
        if used + len(unit) > budget:
            runs.append([])
            used = 0
        runs[-1].append(unit)
        used += len(unit)
    return runs


def split_pages(text: str, language: str = "", alphabet: Alphabet | None = None) -> CbsPages:
    """Split a text into CBS pages of 82 octets, padded as TS 23.041 9.4.1.2.4 asks (with CR).

    GSM-7: up to 93 septets a page (90 after an "xx<CR>" language prefix), padded with CR septets to 93 and
    packed; the 5 bits after the 93rd septet are zero. UCS2: up to 41 UTF-16 code units a page (40 after a
    two-septet language prefix), padded with the UCS2 CR, 0x000D. A character is never cut: an escape
    sequence or a surrogate pair (emoji) that does not fit moves to the next page whole. A language prefix,
    when the DCS needs one, starts every page, since a handset may decode each page on its own.

    Raises CbsEncodingError (a ValueError) for an empty text or one that needs more than 15 pages.

    >>> pages = split_pages("x" * 94)
    >>> [len(p.text) for p in pages.pages], hex(pages.dcs), len(pages.pages[1].content)
    ([93, 1], '0xf', 82)
    >>> unpack_septets(pages.pages[1].content, 3).hex()  # "x", then CR padding
    '780d0d'
    """
    if not text:
        raise CbsEncodingError("empty text: nothing to broadcast")
    alphabet = alphabet or choose_alphabet(text)
    dcs = data_coding_scheme(alphabet, language)
    if alphabet is Alphabet.GSM7:
        prefix = (
            bytes(_GSM7_INDEX[c] for c in language) + bytes([CR]) if dcs == DCS_GSM7_LANGUAGE_PREFIX else b""
        )
        runs = _greedy(gsm7_units(text), GSM7_PAGE_SEPTETS - len(prefix))
    else:
        prefix = pack_septets(bytes(_GSM7_INDEX[c] for c in language)) if language else b""
        units = [c.encode("utf-16-be") for c in text]
        runs = _greedy(units, PAGE_OCTETS - len(prefix))
    if len(runs) > MAX_PAGES:
        raise CbsEncodingError(
            f"text of {len(text)} characters needs {len(runs)} CBS pages; at most {MAX_PAGES} fit "
            f"({MAX_PAGES * GSM7_PAGE_SEPTETS} GSM-7 septets or {MAX_PAGES * UCS2_PAGE_UNITS} UCS2 characters)"
        )
    pages = []
    for run in runs:
        body = prefix + b"".join(run)
        page_text = (
            gsm7_text(b"".join(run)) if alphabet is Alphabet.GSM7 else b"".join(run).decode("utf-16-be")
        )
        if alphabet is Alphabet.GSM7:
            used = math.ceil(len(body) * 7 / 8)
            content = pack_septets(body + bytes([CR]) * (GSM7_PAGE_SEPTETS - len(body)))
        else:
            used = len(body)
            content = body + UCS2_PAD * ((PAGE_OCTETS - len(body)) // 2)
        pages.append(CbsPage(content=content, text=page_text, used_octets=used))
    return CbsPages(alphabet=alphabet, language=language, dcs=dcs, pages=tuple(pages))


class GeoScope(IntEnum):
    """The geographical scope of a serial number (TS 23.041 9.4.1.2.1): the area over which a message code
    is unique, and whether the handset shows the message at once."""

    CELL_IMMEDIATE = 0  # cell wide, displayed immediately
    PLMN = 1  # the operator's whole network
    LOCATION_AREA = 2  # location / service / tracking area
    CELL_NORMAL = 3  # cell wide, normal display

    @property
    def ecbe_name(self) -> str:
        """The word the Osmocom CBC's ECBE interface uses for it (``geo_scope``)."""
        return ("cell_wide_immediate", "plmn_wide", "lac_sac_tac_wide", "cell_wide")[self.value]


@dataclass(frozen=True, slots=True)
class SerialNumber:
    """The 16-bit serial number of a CBS message (TS 23.041 9.4.1.2.1).

    Bits 15-14 are the geographical scope, 13-4 the message code (0-1023), 3-0 the update number (0-15).
    Worked example: PLMN-wide (1), message code 300, update 2 ->
    ``01 0100101100 0010`` = 0x4000 + (300 << 4 = 0x12C0) + 2 = 0x52C2 = 21186.

    >>> SerialNumber.decode(0x52C2)
    SerialNumber(geo_scope=<GeoScope.PLMN: 1>, message_code=300, update_number=2)
    >>> SerialNumber(GeoScope.CELL_IMMEDIATE, 5, 15).next_update().update_number
    0
    """

    geo_scope: GeoScope
    message_code: int
    update_number: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.message_code <= 0x3FF:
            raise CbsEncodingError(f"message code {self.message_code} is not in 0-1023")
        if not 0 <= self.update_number <= 0xF:
            raise CbsEncodingError(f"update number {self.update_number} is not in 0-15")

    def encode(self) -> int:
        """The serial number as the 16-bit integer sent on the air."""
        return (int(self.geo_scope) << 14) | (self.message_code << 4) | self.update_number

    @classmethod
    def decode(cls, value: int) -> SerialNumber:
        """The fields of a 16-bit serial number."""
        if not 0 <= value <= 0xFFFF:
            raise CbsEncodingError(f"serial number {value} is not 16 bits")
        return cls(GeoScope(value >> 14), (value >> 4) & 0x3FF, value & 0xF)

    def next_update(self) -> SerialNumber:
        """The same message with the update number one more, 15 wrapping to 0 (handsets compare for change,
        not order, so a wrap still shows the new text)."""
        return SerialNumber(self.geo_scope, self.message_code, (self.update_number + 1) % 16)


def increment_update_number(serial: int) -> int:
    """A 16-bit serial number with its update number incremented (15 -> 0), scope and code kept.

    >>> hex(increment_update_number(0x52C2)), hex(increment_update_number(0x52CF))
    ('0x52c3', '0x52c0')
    """
    return SerialNumber.decode(serial).next_update().encode()


# The CMAS / EU-Alert message identifiers (TS 23.041 table 9.4.1.2.2; Android's SmsCbConstants). Handsets
# group 4371-4372 as "extreme" alerts and 4373-4378 as "severe" ones (users may switch the latter off).
MSG_ID_PRESIDENTIAL = 4370
MSG_ID_EXTREME_IMMEDIATE_OBSERVED = 4371
MSG_ID_EXTREME_IMMEDIATE_LIKELY = 4372
MSG_ID_EXTREME_EXPECTED_OBSERVED = 4373
MSG_ID_EXTREME_EXPECTED_LIKELY = 4374
MSG_ID_SEVERE_IMMEDIATE_OBSERVED = 4375
MSG_ID_SEVERE_IMMEDIATE_LIKELY = 4376
MSG_ID_SEVERE_EXPECTED_OBSERVED = 4377
MSG_ID_SEVERE_EXPECTED_LIKELY = 4378
MSG_ID_AMBER = 4379
MSG_ID_MONTHLY_TEST = 4380
MSG_ID_EXERCISE = 4381

# CAP (severity, urgency, certainty) -> identifier, after the CMAS table above
CAP_MESSAGE_IDS: Mapping[tuple[str, str, str], int] = {
    ("Extreme", "Immediate", "Observed"): MSG_ID_EXTREME_IMMEDIATE_OBSERVED,
    ("Extreme", "Immediate", "Likely"): MSG_ID_EXTREME_IMMEDIATE_LIKELY,
    ("Extreme", "Expected", "Observed"): MSG_ID_EXTREME_EXPECTED_OBSERVED,
    ("Extreme", "Expected", "Likely"): MSG_ID_EXTREME_EXPECTED_LIKELY,
    ("Severe", "Immediate", "Observed"): MSG_ID_SEVERE_IMMEDIATE_OBSERVED,
    ("Severe", "Immediate", "Likely"): MSG_ID_SEVERE_IMMEDIATE_LIKELY,
    ("Severe", "Expected", "Observed"): MSG_ID_SEVERE_EXPECTED_OBSERVED,
    ("Severe", "Expected", "Likely"): MSG_ID_SEVERE_EXPECTED_LIKELY,
}

# The project's default for China's four warning levels. A meteorological warning is a forecast, so its CAP
# certainty is Likely; the levels step down through the classes: red extreme and immediate, orange extreme and
# expected, yellow severe and immediate, blue severe and expected (the lowest class of the family, which
# handsets let people switch off). An operator or a regulator may want another table: pass it.
DEFAULT_LEVEL_MESSAGE_IDS: Mapping[str, int] = {
    "red": MSG_ID_EXTREME_IMMEDIATE_LIKELY,
    "orange": MSG_ID_EXTREME_EXPECTED_LIKELY,
    "yellow": MSG_ID_SEVERE_IMMEDIATE_LIKELY,
    "blue": MSG_ID_SEVERE_EXPECTED_LIKELY,
}

# CAP status -> identifier, whatever the level: an exercise or a test must never look like a real warning
STATUS_MESSAGE_IDS: Mapping[str, int] = {"Exercise": MSG_ID_EXERCISE, "Test": MSG_ID_MONTHLY_TEST}


def message_identifier(
    *,
    status: str = "Actual",
    level: str = "",
    severity: str = "",
    urgency: str = "",
    certainty: str = "Likely",
    level_ids: Mapping[str, int] | None = None,
) -> int:
    """The CBS message identifier of a warning.

    In order: a CAP status Exercise gives 4381 and Test 4380 (always); a ``level`` found in ``level_ids``
    (``DEFAULT_LEVEL_MESSAGE_IDS`` unless another table is given) gives its entry; otherwise the CAP triple:
    severity Extreme or Severe (anything milder counts as Severe: the family has no lower class), urgency
    Immediate or else Expected, certainty Observed or else Likely, looked up in ``CAP_MESSAGE_IDS``.

    >>> message_identifier(level="red"), message_identifier(level="blue"), message_identifier(level="blue", status="Exercise")
    (4372, 4378, 4381)
    >>> message_identifier(severity="Extreme", urgency="Immediate", certainty="Observed")
    4371
    >>> message_identifier(level="red", level_ids={"red": 4370})
    4370
    """
    if status in STATUS_MESSAGE_IDS:
        return STATUS_MESSAGE_IDS[status]
    table = DEFAULT_LEVEL_MESSAGE_IDS if level_ids is None else level_ids
    if level in table:
        return table[level]
    if not severity:
        raise CbsEncodingError(f"no message identifier for level {level!r} and no CAP severity")
    key = (
        "Extreme" if severity == "Extreme" else "Severe",
        "Immediate" if urgency == "Immediate" else "Expected",
        "Observed" if certainty == "Observed" else "Likely",
    )
    return CAP_MESSAGE_IDS[key]
