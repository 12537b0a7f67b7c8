"""The public alerts as documents: GeoJSON features and collections, Atom feeds, JSON that no text can
turn into markup.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lxml import etree

from risk_zoning import BEIJING
from warnings_svc.documents.cap import CAP_NAMESPACE
from warnings_svc.documents.cap_reading import CapInfo
from warnings_svc.documents.gbt import gbt_file_name
from warnings_svc.documents.message import Issuer, WarningMessage
from warnings_svc.lifecycle.public_alerts import PublicAlert
from warnings_svc.web.negotiation import ATOM, CAP, GEOJSON

ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"


XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


GEOCODE_KEY = "GB2260"  # the geocode scheme's key in GeoJSON properties (NWS writes "UGC")


_TAG_AUTHORITY = re.compile(r"^(?:[A-Za-z0-9._%+-]+@)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


@dataclass(frozen=True)
class AlertLinks:
    """Absolute URLs of the read side under one base (``https://host[/prefix]``)."""

    base: str

    def alert(self, alert_id: str) -> str:
        return f"{self.base}/api/v1/alerts/{alert_id}"

    def cap(self, alert_id: str) -> str:
        return f"{self.alert(alert_id)}.cap"

    def gbt(self, alert_id: str) -> str:
        return f"{self.alert(alert_id)}.gbt.xml"

    @property
    def active(self) -> str:
        return f"{self.base}/api/v1/alerts/active"

    @property
    def feed(self) -> str:
        return f"{self.base}/feeds/alerts.atom"


def cap_time(moment: datetime) -> str:
    """Beijing time to the second with its offset, as the CAP documents write times."""
    return moment.astimezone(BEIJING).replace(microsecond=0).isoformat()


def _info_texts(info: CapInfo) -> dict[str, Any]:
    return {
        "language": info.language,
        "event": info.event,
        "senderName": info.sender_name,
        "headline": info.headline,
        "description": info.description,
        "instruction": info.instruction or None,
        "areaDesc": info.area_desc,
    }


def alert_feature(
    alert: PublicAlert,
    geometry: dict[str, Any] | None,
    links: AlertLinks,
    reference_ids: Mapping[str, str],
    replaced_by: tuple[str, datetime] | None = None,
) -> dict[str, Any]:
    """The alert as a GeoJSON Feature in the NWS alerts API's shape (Chinese first, English in ``en``)."""
    properties = _properties(alert, links, reference_ids, replaced_by)
    return {"id": links.alert(alert.id), "type": "Feature", "geometry": geometry, "properties": properties}


def feature_json(
    alert: PublicAlert,
    geometry: str,
    links: AlertLinks,
    reference_ids: Mapping[str, str],
    replaced_by: tuple[str, datetime] | None = None,
) -> str:
    """`alert_feature` as compact JSON text around a geometry already serialised (`RegionAreas.geometry_json`),
    character for character what ``json.dumps`` writes for `alert_feature`'s dict (markup not yet escaped:
    `feature_collection_body`, `feature_body`)."""
    properties = _properties(alert, links, reference_ids, replaced_by)
    return (
        f'{{"id":{_dumps(links.alert(alert.id))},"type":"Feature","geometry":{geometry},'
        f'"properties":{_dumps(properties)}}}'
    )


def feature_body(feature: str) -> bytes:
    """One `feature_json` as an answer: what `json_body` makes of `alert_feature`."""
    return _escaped(feature)


def feature_collection_body(title: str, updated: str, features: Sequence[str]) -> bytes:
    """A GeoJSON FeatureCollection of `feature_json` texts, as `json_body` writes the same collection built
    from `alert_feature` dicts: the features' texts are spliced in, not serialised again."""
    return _escaped(
        f'{{"type":"FeatureCollection","title":{_dumps(title)},"updated":{_dumps(updated)},'
        f'"features":[{",".join(features)}]}}'
    )


def _properties(
    alert: PublicAlert,
    links: AlertLinks,
    reference_ids: Mapping[str, str],
    replaced_by: tuple[str, datetime] | None,
) -> dict[str, Any]:
    cap, zh = alert.cap, alert.cap.primary
    properties: dict[str, Any] = {
        "id": alert.id,
        "identifier": cap.identifier,
        "sender": cap.sender,
        "senderName": zh.sender_name,
        "sent": cap.sent,
        "effective": cap.sent,  # in force from the moment it is sent (GB/T 35965.1: effective = sendTime)
        "onset": zh.onset,
        "expires": zh.expires,
        "status": cap.status,
        "messageType": cap.msg_type,
        "category": zh.category,
        "event": zh.event,
        "eventCode": {k: list(v) for k, v in zh.event_codes.items()},
        "hazard": alert.hazard,
        "level": alert.level,
        "severity": zh.severity,
        "urgency": zh.urgency,
        "certainty": zh.certainty,
        "response": zh.response_type,
        "headline": zh.headline,
        "description": zh.description,
        "instruction": zh.instruction or None,
        "areaDesc": zh.area_desc,
        "geocode": {GEOCODE_KEY: list(cap.geocodes)},
        "note": cap.note or None,
        "references": [
            {
                "id": links.alert(reference_ids[r.identifier]) if r.identifier in reference_ids else None,
                "identifier": r.identifier,
                "sender": r.sender,
                "sent": r.sent,
            }
            for r in cap.references
        ],
        "links": [
            {"rel": "alternate", "type": CAP, "title": "CAP 1.2", "href": links.cap(alert.id)},
            {
                "rel": "alternate",
                "type": "application/xml",
                "title": "GB/T 35965.1",
                "href": links.gbt(alert.id),
            },
        ],
    }
    en = cap.info("en")
    if en is not None:
        properties["en"] = _info_texts(en)
    if replaced_by is not None:
        properties["replacedBy"] = links.alert(replaced_by[0])
        properties["replacedAt"] = cap_time(replaced_by[1])
    return properties


def json_body(document: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON with ``<``, ``>`` and ``&`` escaped (they occur only inside strings), so no text in it can
    ever be read as markup."""
    return _escaped(_dumps(document))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _escaped(text: str) -> bytes:
    # character by character, so escaping spliced texts together equals escaping each
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026").encode()


def tag_uri(sender: str, sent: datetime, identifier: str) -> str | None:
    """A permanent Atom id for a CAP message (RFC 4151): ``tag:<sender>,<date sent>:cap:<identifier>``;
    None when the sender is not a domain name or e-mail address."""
    if not _TAG_AUTHORITY.match(sender) or not re.fullmatch(r"[A-Za-z0-9._~:@!$'()*+=-]+", identifier):
        return None
    return f"tag:{sender},{sent.astimezone(BEIJING):%Y-%m-%d}:cap:{identifier}"


def _atom(parent: etree._Element, name: str, text: str | None = None, **attributes: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{ATOM_NAMESPACE}}}{name}", attributes)
    if text is not None:
        element.text = text  # lxml escapes &, < and >
    return element


def _cap_element(parent: etree._Element, name: str, text: str) -> etree._Element:
    element = etree.SubElement(parent, f"{{{CAP_NAMESPACE}}}{name}")
    element.text = text
    return element


def atom_feed(
    alerts: Sequence[PublicAlert],
    links: AlertLinks,
    *,
    feed_id: str,
    self_url: str,
    title: str,
    author: str,
    updated: datetime,
) -> bytes:
    """An Atom 1.0 feed (RFC 4287) of the alerts, with the CAP facts of each entry in the CAP namespace as
    the NWS feeds carry them; each entry links to its CAP document (``rel=alternate``)."""
    feed = etree.Element(f"{{{ATOM_NAMESPACE}}}feed", nsmap={None: ATOM_NAMESPACE, "cap": CAP_NAMESPACE})
    feed.set(XML_LANG, "zh-CN")
    _atom(feed, "id", feed_id)
    _atom(feed, "title", title)
    _atom(feed, "updated", cap_time(updated))
    _atom(feed, "link", rel="self", type=ATOM, href=self_url)
    _atom(feed, "link", rel="alternate", type=GEOJSON, href=links.active)
    _atom(_atom(feed, "author"), "name", author)
    for alert in alerts:
        cap, zh = alert.cap, alert.cap.primary
        entry = _atom(feed, "entry")
        _atom(entry, "id", tag_uri(cap.sender, alert.sent, cap.identifier) or links.alert(alert.id))
        _atom(entry, "title", zh.headline)
        _atom(entry, "updated", cap.sent)
        _atom(entry, "published", cap.sent)
        _atom(entry, "summary", zh.description, type="text")
        _atom(entry, "category", term=zh.event, label=alert.hazard)
        _atom(entry, "link", rel="alternate", type=CAP, href=links.cap(alert.id))
        _atom(entry, "link", rel="alternate", type=GEOJSON, href=links.alert(alert.id))
        _atom(
            entry,
            "link",
            rel="related",
            type="application/xml",
            title="GB/T 35965.1",
            href=links.gbt(alert.id),
        )
        for name, value in (
            ("identifier", cap.identifier),
            ("sender", cap.sender),
            ("sent", cap.sent),
            ("status", cap.status),
            ("msgType", cap.msg_type),
            ("event", zh.event),
            ("urgency", zh.urgency),
            ("severity", zh.severity),
            ("certainty", zh.certainty),
            ("onset", zh.onset),
            ("expires", zh.expires),
            ("areaDesc", zh.area_desc),
        ):
            _cap_element(entry, name, value)
        for code in cap.geocodes:
            geocode = etree.SubElement(entry, f"{{{CAP_NAMESPACE}}}geocode")
            _cap_element(geocode, "valueName", "GB/T 2260")
            _cap_element(geocode, "value", code)
    return etree.tostring(feed, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def gbt_document_name(alert: PublicAlert) -> str:
    """The national file name of the message's GB/T 35965.1 document (`warnings_svc.documents.gbt.gbt_file_name`),
    from its stored identifier (sender code) and send time, so a later change of settings cannot rename it."""
    sender_code = alert.cap.identifier.split("_", 1)[0]
    msg = WarningMessage(
        identifier=alert.cap.identifier,
        msg_type=alert.msg_type,  # type: ignore[arg-type]
        status="Actual",
        hazard=alert.hazard,
        level=alert.level,
        areas=(),
        sent=alert.sent,
        onset=alert.onset,
        expires=alert.expires,
        issuer=Issuer(alert.cap.sender, sender_code, "", ""),
    )
    return gbt_file_name(msg)
