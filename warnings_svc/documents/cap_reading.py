"""Reading a stored CAP 1.2 document back: the parts the public alerts show (pure; lxml, no network)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lxml import etree

from warnings_svc.documents.cap import CAP_NAMESPACE

_NS = {"c": CAP_NAMESPACE}


@dataclass(frozen=True)
class CapReference:
    sender: str
    identifier: str
    sent: str


@dataclass(frozen=True)
class CapInfo:
    """What the public read side shows of one ``<info>`` block (one language)."""

    language: str
    category: str
    event: str
    response_type: str
    urgency: str
    severity: str
    certainty: str
    event_codes: Mapping[str, tuple[str, ...]]
    onset: str
    expires: str
    sender_name: str
    headline: str
    description: str
    instruction: str
    area_desc: str


@dataclass(frozen=True)
class CapSummary:
    """The facts of a stored CAP 1.2 document, read once (the document never changes)."""

    identifier: str
    sender: str
    sent: str
    status: str
    msg_type: str
    note: str
    references: tuple[CapReference, ...]
    infos: tuple[CapInfo, ...]
    geocodes: tuple[str, ...]

    @property
    def primary(self) -> CapInfo:
        """The first ``<info>``: Chinese, as `warnings_svc.documents.cap` orders them."""
        return self.infos[0]

    def info(self, language: str) -> CapInfo | None:
        """The first ``<info>`` whose language starts with ``language`` (``en`` finds ``en-US``)."""
        wanted = language.lower()
        return next((i for i in self.infos if i.language.lower().startswith(wanted)), None)


def _cap_parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def read_cap(xml: bytes) -> CapSummary:
    """The facts of a CAP 1.2 document as the alerts API shows them.

    ``references`` (``sender,identifier,sent`` triples) are split; geocodes are those of the first
    ``<info>``'s areas (every language lists the same areas).
    """
    root = etree.fromstring(xml, _cap_parser())

    def text(element: etree._Element, path: str) -> str:
        return (element.findtext(path, default="", namespaces=_NS) or "").strip()

    references = []
    for triple in text(root, "c:references").split():
        parts = triple.split(",")
        if len(parts) == 3:
            references.append(CapReference(*parts))
    infos = []
    for info in root.findall("c:info", _NS):
        codes: dict[str, list[str]] = {}
        for code in info.findall("c:eventCode", _NS):
            codes.setdefault(text(code, "c:valueName"), []).append(text(code, "c:value"))
        infos.append(
            CapInfo(
                language=text(info, "c:language") or "en-US",
                category=text(info, "c:category"),
                event=text(info, "c:event"),
                response_type=text(info, "c:responseType"),
                urgency=text(info, "c:urgency"),
                severity=text(info, "c:severity"),
                certainty=text(info, "c:certainty"),
                event_codes={k: tuple(v) for k, v in codes.items()},
                onset=text(info, "c:onset"),
                expires=text(info, "c:expires"),
                sender_name=text(info, "c:senderName"),
                headline=text(info, "c:headline"),
                description=text(info, "c:description"),
                instruction=text(info, "c:instruction"),
                area_desc=text(info, "c:area/c:areaDesc"),
            )
        )
    if not infos:
        raise ValueError("the CAP document has no <info>")
    first = root.find("c:info", _NS)
    geocodes = tuple(text(g, "c:value") for g in first.findall("c:area/c:geocode", _NS))
    return CapSummary(
        identifier=text(root, "c:identifier"),
        sender=text(root, "c:sender"),
        sent=text(root, "c:sent"),
        status=text(root, "c:status"),
        msg_type=text(root, "c:msgType"),
        note=text(root, "c:note"),
        references=tuple(references),
        infos=tuple(infos),
        geocodes=geocodes,
    )
