"""China's national warning profile (GB/T 35965.1-2018, the 12379 release system): document and file name.

The standard's own XML schema is not at hand (it is not published openly). This module follows the
profile table of the warning-criteria reference (section 4) and the element set and order seen in
documents exchanged with the 12379 system (a provincial message, ``41000041600000_20200205105119``, and a
county platform's channel to the national system): a root ``<alert>`` *without* a namespace (the profile
is CAP-derived, not CAP), CAP element names where the profile keeps them, and every element always
written in the same order, empty when it has no value, as those documents do. `validate_gbt` checks
exactly this structure and the value formats; it is not a validation against the official schema.

Element order (``*`` repeats)::

    alert: identifier sender senderCode sendTime status msgType scope
           code(method*(methodName message)) secClassification note references
           info(language eventType urgency severity certainty effective onset expires
                senderName headline description instruction web
                area(areaDesc polygon* circle geocode))

Values, and the decisions where the profile table is silent:

- **identifier** ``senderCode_YYYYMMDDhhmmss``, the send time in Beijing time (the optional ``_N``
  serial for two messages of one sender in one second is never written: the service sends at most one
  message per second and sender). **sendTime**, and effective/onset/expires, as
  ``YYYY-MM-DD hh:mm:ss+08:00``; effective is the send time.
- **sender** the issuing organisation's full name; **senderName** the person who signed
  (`Issuer.signed_by`), or the organisation's name when nobody is named (one of the documents seen does so).
- **status** Actual or Test; the profile has no Exercise, and an exercise must never pass for a real
  warning, so Exercise is written as Test.
- **references** the identifier of the warning's *first* issue (the earliest reference), derived from its
  send time like any identifier; empty for an Alert.
- **code** one ``<method>`` per channel given, in the order SMS, SPEAKER, TV, BROADCAST, LED, WEB, PHONE,
  FAX; the per-method audience fields of the 12379 platform (``audienceGrp``, ``audenceprt``) are not
  written: they address that platform's subscriber groups, which this service does not know.
- **severity** Red/Orange/Yellow/Blue; **urgency** and **certainty** Unknown, as the profile says.
- **headline** ``<sender>发布<event><colour>预警[级别]`` (`gbt_headline`); a Cancel replaces 发布 by 解除 and
  keeps the rest, level label included (the reference's "cancel: 解除", and what the 12379 channel code
  seen does): ``乌海市气象台解除高温橙色预警[Ⅱ级/严重]``. Level labels use the Roman-numeral characters
  of the reference (``Ⅳ`` U+2163 ...); the documents seen write ASCII ``IV``.
- **areaDesc** the area names and **geocode** their 12-digit codes, each comma-separated, in the same
  order; **polygon** the CAP polygons (the profile keeps CAP's form), or one empty element.
- **file name** ``senderCode_sendTime_eventType_SEVERITY_STATUS.XML``; STATUS is the message type in
  capitals (ALERT, UPDATE, CANCEL): the reference's example writes ALERT, which is no status value, and
  the channel code seen puts msgType there (`gbt_file_name`).

>>> from datetime import datetime, timezone
>>> from warnings_svc.documents.message import Area, Issuer, WarningMessage
>>> msg = WarningMessage(
...     identifier="x", msg_type="Alert", status="Actual", hazard="heat", level="orange",
...     areas=(Area("150302000000", "海勃湾区", "Haibowan"),), sent=datetime(2017, 7, 9, 8, tzinfo=timezone.utc),
...     onset=datetime(2017, 7, 10, 3, tzinfo=timezone.utc), expires=datetime(2017, 7, 10, 12, tzinfo=timezone.utc),
...     issuer=Issuer("wuhai@weather.example.cn", "15030041600000", "乌海市气象台", "Wuhai"),
... )
>>> gbt_identifier(msg), gbt_headline(msg)
('15030041600000_20170709160000', '乌海市气象台发布高温橙色预警[Ⅱ级/严重]')
>>> gbt_file_name(msg)
'15030041600000_20170709160000_11B09_ORANGE_ALERT.XML'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from lxml import etree

from risk_zoning import BEIJING, HAZARD_NAMES
from warnings_svc.documents.message import Reference, WarningMessage
from warnings_svc.vocabulary import HAZARD_EVENT_CODES, HAZARD_LEVELS, LEVEL_NAMES

METHOD_NAMES: tuple[str, ...] = ("SMS", "SPEAKER", "TV", "BROADCAST", "LED", "WEB", "PHONE", "FAX")
SEVERITY: dict[str, str] = {"blue": "Blue", "yellow": "Yellow", "orange": "Orange", "red": "Red"}
LEVEL_LABELS: dict[str, str] = {
    "blue": "[Ⅳ级/一般]",
    "yellow": "[Ⅲ级/较重]",
    "orange": "[Ⅱ级/严重]",
    "red": "[Ⅰ级/特别严重]",
}
COLOUR_NAMES: dict[str, str] = {level: zh for level, (zh, _) in LEVEL_NAMES.items()}
EVENT_NAMES: dict[str, str] = HAZARD_NAMES["zh"]

_ALERT_ORDER = (
    "identifier",
    "sender",
    "senderCode",
    "sendTime",
    "status",
    "msgType",
    "scope",
    "code",
    "secClassification",
    "note",
    "references",
    "info",
)
_INFO_ORDER = (
    "language",
    "eventType",
    "urgency",
    "severity",
    "certainty",
    "effective",
    "onset",
    "expires",
    "senderName",
    "headline",
    "description",
    "instruction",
    "web",
    "area",
)
_SENDER_CODE = re.compile(r"^\d{14}$")
_IDENTIFIER = re.compile(r"^(\d{14})_(\d{14})(_\d)?$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\+08:00$")
_EVENT_TYPE = re.compile(r"^\d{2}[A-Z]\d{2}$")
_GEOCODES = re.compile(r"^\d{12}(,\d{12})*$")
_HEADLINE = re.compile(
    r"^(?P<sender>.+?)(?P<verb>发布|解除)(?P<event>.+?)(?P<colour>蓝色|黄色|橙色|红色)预警"
    r"(?P<label>\[[ⅠⅡⅢⅣ]级/(一般|较重|严重|特别严重)\])$"
)
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


class GbtError(Exception):
    """A message or document that does not fit the GB/T 35965.1 profile; one line naming the element."""

    def __init__(self, element: str, problem: str) -> None:
        self.element = element
        self.problem = " ".join(problem.split())
        super().__init__(f"{element}: {self.problem}")


@dataclass(frozen=True)
class GbtTexts:
    """The Chinese texts of a GB/T document: the description, optional guidance, and one text per channel.

    `channels` maps a method name (`METHOD_NAMES`: SMS, SPEAKER, TV, BROADCAST, LED, WEB, PHONE, FAX) to the
    exact text that channel sends; only the channels given are written.
    """

    description: str
    channels: Mapping[str, str]
    instruction: str = ""


# ---------------------------------------------------------------------------------------------- values


def gbt_time(moment: datetime) -> str:
    """The profile's extended date-time: Beijing time, a space between date and time, ``+08:00``.

    >>> gbt_time(datetime(2017, 7, 9, 8, 0, tzinfo=timezone.utc))
    '2017-07-09 16:00:00+08:00'
    """
    return _beijing(moment).strftime("%Y-%m-%d %H:%M:%S+08:00")


def gbt_identifier(msg: WarningMessage) -> str:
    """``senderCode_YYYYMMDDhhmmss``: the issuer's 14-digit code and the send time in Beijing time."""
    return _identifier(msg.issuer.sender_code, msg.sent)


def gbt_headline(msg: WarningMessage) -> str:
    """``<sender>发布<event><colour>预警[级别]``, 解除 instead of 发布 for a Cancel.

    >>> from types import SimpleNamespace as N
    >>> gbt_headline(N(msg_type="Cancel", hazard="heat", level="red", issuer=N(name="乌海市气象台")))
    '乌海市气象台解除高温红色预警[Ⅰ级/特别严重]'
    """
    _check_hazard_level(msg.hazard, msg.level)
    verb = "解除" if msg.msg_type == "Cancel" else "发布"
    return f"{msg.issuer.name}{verb}{EVENT_NAMES[msg.hazard]}{COLOUR_NAMES[msg.level]}预警{LEVEL_LABELS[msg.level]}"


def gbt_file_name(msg: WarningMessage) -> str:
    """``senderCode_sendTime_eventType_SEVERITY_MSGTYPE.XML``, e.g. ``..._11B09_ORANGE_ALERT.XML``."""
    _check_hazard_level(msg.hazard, msg.level)
    return (
        f"{gbt_identifier(msg)}_{HAZARD_EVENT_CODES[msg.hazard]}_{SEVERITY[msg.level].upper()}"
        f"_{msg.msg_type.upper()}.XML"
    )


def first_issue(msg: WarningMessage) -> Reference:
    """The earliest message `msg` references: the warning's first issue."""
    if not msg.references:
        raise GbtError("references", f"an {msg.msg_type} must reference the warning's first issue")
    return min(msg.references, key=lambda r: r.sent)


def _identifier(sender_code: str, sent: datetime) -> str:
    if not _SENDER_CODE.match(sender_code):
        raise GbtError("senderCode", f"{sender_code!r} is not a 14-digit sender code")
    return f"{sender_code}_{_beijing(sent).strftime('%Y%m%d%H%M%S')}"


def _beijing(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise GbtError("sendTime", f"time {moment.isoformat()} has no time zone")
    return moment.astimezone(BEIJING)


def _check_hazard_level(hazard: str, level: str) -> None:
    if hazard not in HAZARD_EVENT_CODES:
        raise GbtError("eventType", f"unknown hazard {hazard!r}")
    if level not in HAZARD_LEVELS[hazard]:
        raise GbtError("severity", f"{hazard} has no {level!r} level")


# ---------------------------------------------------------------------------------------------- render


def render_gbt(msg: WarningMessage, texts: GbtTexts) -> bytes:
    """The GB/T 35965.1 document of `msg` (UTF-8 bytes), structured as the module docstring lists.

    Raises `GbtError` for what the profile cannot carry: an unknown hazard, level or channel, a missing
    text, a sender code that is not 14 digits, an Update or Cancel without references, an Alert with
    references, expiry not after sending, an area code that is not 12 digits.
    """
    _check_message(msg)
    channels = _ordered_channels(texts.channels)
    if not texts.description.strip():
        raise GbtError("description", "is empty")
    references = gbt_reference(msg)

    alert = etree.Element("alert")
    _add(alert, "identifier", gbt_identifier(msg))
    _add(alert, "sender", msg.issuer.name)
    _add(alert, "senderCode", msg.issuer.sender_code)
    _add(alert, "sendTime", gbt_time(msg.sent))
    _add(alert, "status", "Actual" if msg.status == "Actual" else "Test")
    _add(alert, "msgType", msg.msg_type)
    _add(alert, "scope", "Public")
    code = _add(alert, "code")
    for name, message in channels:
        method = _add(code, "method")
        _add(method, "methodName", name)
        _add(method, "message", message)
    _add(alert, "secClassification", "None")
    _add(alert, "note", msg.note.strip() or None)
    _add(alert, "references", references)

    info = _add(alert, "info")
    _add(info, "language", "zh-CN")
    _add(info, "eventType", HAZARD_EVENT_CODES[msg.hazard])
    _add(info, "urgency", "Unknown")
    _add(info, "severity", SEVERITY[msg.level])
    _add(info, "certainty", "Unknown")
    _add(info, "effective", gbt_time(msg.sent))
    _add(info, "onset", gbt_time(msg.onset))
    _add(info, "expires", gbt_time(msg.expires))
    _add(info, "senderName", msg.issuer.signed_by.strip() or msg.issuer.name)
    _add(info, "headline", gbt_headline(msg))
    _add(info, "description", texts.description)
    _add(info, "instruction", texts.instruction.strip() or None)
    _add(info, "web", None)
    area = _add(info, "area")
    _add(area, "areaDesc", ",".join(a.name for a in msg.areas))
    for polygon in msg.polygons or (None,):
        _add(area, "polygon", " ".join(polygon.split()) if polygon else None)
    _add(area, "circle", None)
    _add(area, "geocode", ",".join(a.code for a in msg.areas))
    return _XML_DECLARATION + etree.tostring(alert, encoding="UTF-8", pretty_print=True)


def gbt_reference(msg: WarningMessage) -> str | None:
    """The `references` value: the first issue's identifier for an Update or Cancel, None for an Alert."""
    if msg.msg_type == "Alert":
        return None
    first = first_issue(msg)
    if first.sender != msg.issuer.sender:
        raise GbtError("references", f"the first issue was sent by {first.sender}, not by this issuer")
    return _identifier(msg.issuer.sender_code, first.sent)


def _check_message(msg: WarningMessage) -> None:
    _check_hazard_level(msg.hazard, msg.level)
    _identifier(msg.issuer.sender_code, msg.sent)
    if not msg.issuer.name.strip():
        raise GbtError("sender", "the issuing organisation has no name")
    if msg.msg_type not in ("Alert", "Update", "Cancel"):
        raise GbtError("msgType", f"unknown message type {msg.msg_type!r}")
    if msg.msg_type == "Alert" and msg.references:
        raise GbtError("references", "an Alert references no earlier message (use Update or Cancel)")
    if _beijing(msg.expires) <= _beijing(msg.sent):
        raise GbtError("expires", f"{gbt_time(msg.expires)} is not after sendTime {gbt_time(msg.sent)}")
    if not msg.areas:
        raise GbtError("area", "the message has no area")
    for a in msg.areas:
        if not re.fullmatch(r"\d{12}", a.code):
            raise GbtError("geocode", f"{a.code!r} is not a 12-digit administrative division code")
        if not a.name.strip() or "," in a.name:
            raise GbtError("areaDesc", f"area {a.code} needs a name without commas (got {a.name!r})")


def _ordered_channels(channels: Mapping[str, str]) -> list[tuple[str, str]]:
    unknown = sorted(set(channels) - set(METHOD_NAMES))
    if unknown:
        raise GbtError(
            "methodName", f"unknown channel(s) {', '.join(unknown)}; known: {', '.join(METHOD_NAMES)}"
        )
    if not channels:
        raise GbtError("code", "no channel texts: at least one method is needed")
    for name, message in channels.items():
        if not message.strip():
            raise GbtError("message", f"the {name} text is empty")
    return [(name, channels[name]) for name in METHOD_NAMES if name in channels]


def _add(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, name)
    if text is not None:
        try:
            element.text = text
        except ValueError as e:
            raise GbtError(name, f"text cannot be written in XML: {e}") from e
    return element


# ---------------------------------------------------------------------------------------------- validate


def validate_gbt(xml: bytes) -> None:
    """Check `xml` has the structure and value formats of the module docstring; `GbtError` if not.

    Checked: root ``<alert>`` without namespace; the children of alert, info and area in order; each
    ``<method>`` a known methodName with a text, no channel twice; identifier ``senderCode_14 digits``
    starting with senderCode; times ``YYYY-MM-DD hh:mm:ss+08:00``; status, msgType, severity from their
    sets; references an identifier for Update and Cancel and empty for Alert; eventType like ``11B09``;
    headline of the profile's form, its verb matching msgType and its colour the severity; geocode
    comma-separated 12-digit codes, as many as the names in areaDesc.
    """
    try:
        root = etree.fromstring(xml, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False))
    except etree.XMLSyntaxError as e:
        raise GbtError("alert", f"not well-formed XML: {e}") from e
    if root.tag != "alert":
        raise GbtError("alert", f"the root element is {root.tag!r}, not 'alert' without namespace")
    alert = _children(root, "alert", _ALERT_ORDER)
    info = _children(alert["info"], "info", _INFO_ORDER)
    area_children = [c.tag for c in info["area"]]
    polygons = area_children.count("polygon")
    expected_area = ["areaDesc"] + ["polygon"] * max(polygons, 1) + ["circle", "geocode"]
    if area_children != expected_area:
        raise GbtError("area", f"children {area_children}, expected areaDesc, polygon..., circle, geocode")
    area = {c.tag: c for c in info["area"]}

    sender_code = _text(alert, "senderCode", _SENDER_CODE)
    identifier = _text(alert, "identifier", _IDENTIFIER)
    if not identifier.startswith(sender_code + "_"):
        raise GbtError("identifier", f"{identifier} does not start with senderCode {sender_code}")
    _text(alert, "sender")
    _text(alert, "sendTime", _TIME)
    _choice(alert, "status", ("Actual", "Test"))
    msg_type = _choice(alert, "msgType", ("Alert", "Update", "Cancel"))
    _choice(alert, "scope", ("Public",))
    _check_methods(alert["code"])
    references = (alert["references"].text or "").strip()
    if msg_type == "Alert" and references:
        raise GbtError("references", "must be empty for an Alert")
    if msg_type != "Alert" and not _IDENTIFIER.match(references):
        raise GbtError("references", f"an {msg_type} needs the first issue's identifier (got {references!r})")

    _choice(info, "language", ("zh-CN",))
    _text(info, "eventType", _EVENT_TYPE)
    _choice(info, "urgency", ("Immediate", "Expected", "Future", "Past", "Unknown"))
    severity = _choice(info, "severity", ("Red", "Orange", "Yellow", "Blue", "Unknown"))
    _choice(info, "certainty", ("Observed", "Likely", "Possible", "Unlikely", "Unknown"))
    for name in ("effective", "onset", "expires"):
        _text(info, name, _TIME)
    _text(info, "senderName")
    headline = _text(info, "headline", _HEADLINE)
    _text(info, "description")
    _check_headline(headline, msg_type, severity)

    names = _text(area, "areaDesc").split(",")
    codes = _text(area, "geocode", _GEOCODES).split(",")
    if len(names) != len(codes):
        raise GbtError("geocode", f"{len(codes)} codes for {len(names)} names in areaDesc")


def _children(parent: etree._Element, name: str, order: tuple[str, ...]) -> dict[str, etree._Element]:
    tags = [c.tag for c in parent if isinstance(c.tag, str)]
    if tags != list(order):
        missing = [t for t in order if t not in tags]
        detail = f"missing {', '.join(missing)}" if missing else f"order {tags}, expected {list(order)}"
        raise GbtError(name, detail)
    return {c.tag: c for c in parent if isinstance(c.tag, str)}


def _text(parent: Mapping[str, etree._Element], name: str, pattern: re.Pattern[str] | None = None) -> str:
    value = (parent[name].text or "").strip()
    if not value:
        raise GbtError(name, "is empty")
    if pattern is not None and not pattern.match(value):
        raise GbtError(name, f"{value!r} does not have the profile's form")
    return value


def _choice(parent: Mapping[str, etree._Element], name: str, allowed: tuple[str, ...]) -> str:
    value = (parent[name].text or "").strip()
    if value not in allowed:
        raise GbtError(name, f"{value!r} is not one of {', '.join(allowed)}")
    return value


def _check_methods(code: etree._Element) -> None:
    seen: set[str] = set()
    methods = list(code)
    if not methods or any(m.tag != "method" for m in methods):
        raise GbtError("code", "needs one or more <method> children and nothing else")
    for method in methods:
        if [c.tag for c in method] != ["methodName", "message"]:
            raise GbtError("method", "needs methodName then message")
        fields = {c.tag: c for c in method}
        name = _choice(fields, "methodName", METHOD_NAMES)
        if name in seen:
            raise GbtError("methodName", f"{name} appears twice")
        seen.add(name)
        _text(fields, "message")


def _check_headline(headline: str, msg_type: str, severity: str) -> None:
    match = _HEADLINE.match(headline)
    assert match is not None  # checked by _text
    if (match["verb"] == "解除") != (msg_type == "Cancel"):
        raise GbtError("headline", f"{match['verb']} does not fit msgType {msg_type}")
    colour = {v: k for k, v in COLOUR_NAMES.items()}[match["colour"]]
    if SEVERITY[colour] != severity or LEVEL_LABELS[colour] != match["label"]:
        raise GbtError(
            "headline",
            f"colour and level label {match['colour']}{match['label']} do not fit severity {severity}",
        )
