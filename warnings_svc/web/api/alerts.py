"""The public read side: issued warnings in the style of the US NWS alerts API, as GeoJSON, Atom and CAP.

Routes (public, no login):

- ``GET /api/v1/alerts/active``: the warnings in force, filtered by ``area``, ``point``, ``event``,
  ``severity``, ``urgency``, ``certainty`` and ``status``: a GeoJSON FeatureCollection, or with ``Accept:
  application/atom+xml`` the same alerts as an Atom feed shaped like ``/feeds/alerts.atom``.
- ``GET /api/v1/alerts/{id}``: one message, ``{warning_id}-{version}``, as a GeoJSON Feature (its CAP by
  ``Accept: application/cap+xml``); superseded, cancelled and expired messages stay retrievable.
- ``GET /api/v1/alerts/{id}.cap`` and ``.gbt.xml``: the CAP 1.2 and GB/T 35965.1 documents exactly as they
  were stored when the message was approved (byte for byte, never rendered again).
- ``GET /feeds/alerts.atom``: Atom 1.0 of the warnings in force plus every message sent in the last
  `FEED_WINDOW` (so an Update or a Cancel shows up); each entry links to its CAP document.

What is public: a version that was issued (it has an identifier and a stored CAP document), that is not
an exercise (neither the version's flag nor its warning's), and whose stored CAP says ``<status>Actual
</status>``: flags and document are checked independently, so an exercise reaches the public only if all
are wrong at once. Drafts and versions pending approval, returned or discarded have no identifier and are
never visible. "In force" (active) is: the issued version of a warning (not the superseded ones), not a
Cancel, with ``expires`` (to the second, as the CAP says) after now; a warning whose onset is still ahead
is active, as at the NWS.

Decisions:

- **Parameters** are checked strictly (the NWS lesson: a silently ignored parameter reads as "no alerts"):
  an unknown parameter, an empty or malformed value, an area that is not in the region or a status other
  than ``actual`` is a 400 problem document whose ``field`` names the parameter. Lists are comma-separated
  or repeated parameters; values within one parameter are alternatives, parameters combine with AND.
- **area** takes 6-, 9- or 12-digit admin codes. A warning matches when one of its areas and the asked
  area overlap in the city > district > town tree: the same unit, a unit inside the asked one (a town
  warning matches its district's code) or a unit containing it (a district warning matches the code of
  any of its towns, since it covers them). So ``area=<my town>`` answers "is any warning over me?".
- **point** ``lat,lon`` (WGS84 degrees) matches when the point lies in (or on the edge of) one of the
  warning's area outlines or CAP polygons.
- **event** is a hazard name (``heat``) or a CAP event text in either language (``高温``, ``Heat``),
  case-insensitive; anything else is refused with the list of events.
- **Content negotiation**: q-values are honoured, more specific media ranges first; the list offers
  GeoJSON (``application/geo+json``, also served as ``application/json`` to a client that asks only for
  that) and Atom; a single alert GeoJSON and CAP. When nothing offered is acceptable the default (GeoJSON)
  is served rather than a 406: RFC 9110 allows it, and a client with an odd ``Accept`` then still sees the
  alerts instead of an error that could read as "no alerts". ``Vary: Accept`` is always sent.
- **Caching**: a strong ``ETag`` (a hash of the body) and ``Last-Modified`` on every answer, with 304 for
  ``If-None-Match`` and, without it, ``If-Modified-Since`` (RFC 9110 precedence). Lists and single alerts
  are ``public, max-age=60``; the stored documents never change: ``max-age=86400, immutable``.
  Last-Modified of a list is the last moment its content could have changed: the newest message sent, the
  latest expiry already passed, (feed) the latest entry that aged out of the window, and the current risk
  database version (the outlines come from it).
- **URLs** are absolute: from ``[warnings] public_url`` when set (as the CAP ``<web>`` is), else from the
  request's scheme and host. Atom entry ids are tag URIs of the CAP sender and identifier, so they do not
  depend on the host name the feed was fetched from.
- **Escaping**: the Atom feed is built with lxml (every text escaped by the serialiser); the JSON escapes
  ``<``, ``>`` and ``&`` as ``\\u003c`` ... so no forecaster text can become markup, even if a browser
  sniffed it; every answer carries ``X-Content-Type-Options: nosniff``.
- Public data: every answer allows any origin (``Access-Control-Allow-Origin: *``), as the NWS API does.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Literal

import asyncpg
import shapely
from aiohttp import web
from lxml import etree
from multidict import MultiMapping
from pydantic import Field
from shapely.geometry import Point, Polygon, mapping

from risk_zoning import BEIJING
from risk_zoning.store import UnitRecord, current_version, load_current
from risk_zoning.unit_tree import geocode, same_or_nested
from warnings_svc.documents.cap import CAP_NAMESPACE
from warnings_svc.documents.gbt import gbt_file_name
from warnings_svc.documents.message import Issuer, WarningMessage
from warnings_svc.documents.texts import TextsConfig, load_texts
from warnings_svc.vocabulary import HAZARD_LEVELS
from warnings_svc.web.appkeys import POOL, SETTINGS
from warnings_svc.web.operations import RequestModel, media_reply, operation
from warnings_svc.web.problems import ApiProblem

log = logging.getLogger(__name__)

FEED_WINDOW = timedelta(hours=24)  # the feed keeps every message sent within this long
LIST_CACHE = "public, max-age=60"
DOCUMENT_CACHE = "public, max-age=86400, immutable"
GEOJSON = "application/geo+json"
JSON = "application/json"
ATOM = "application/atom+xml"
CAP = "application/cap+xml"
ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
GEOCODE_KEY = "GB2260"  # the geocode scheme's key in GeoJSON properties (NWS writes "UGC")
MAX_PARAMETER_ECHO = 40  # characters of a refused value quoted back in a problem detail
GEOMETRY_DECIMALS = 6
CACHE_ENTRIES = 512  # parsed CAP documents and outlines kept per process

SEVERITIES: tuple[str, ...] = ("Extreme", "Severe", "Moderate", "Minor")
URGENCIES: tuple[str, ...] = ("Immediate", "Expected", "Future", "Past", "Unknown")
CERTAINTIES: tuple[str, ...] = ("Observed", "Likely", "Possible", "Unlikely", "Unknown")
NOT_PUBLIC_STATUSES: tuple[str, ...] = ("exercise", "test", "system", "draft")


def _listed(description: str) -> Any:
    return Field(
        default_factory=list, description=description, json_schema_extra={"style": "form", "explode": False}
    )


class ActiveAlertsQuery(RequestModel):
    """The filters of ``/api/v1/alerts/active`` (see the module's docstring); `parse_filter` reads them."""

    area: list[str] = _listed(
        "6-, 9- or 12-digit admin codes; a warning matches when one of its areas is the same unit, inside it "
        "or contains it"
    )
    point: str | None = Field(
        None,
        description="latitude,longitude (WGS84); inside an area outline or CAP polygon",
        pattern=r"^-?\d+(\.\d+)?,-?\d+(\.\d+)?$",
    )
    event: list[str] = _listed("hazard (heat, rainstorm, frost, sandstorm) or CAP event text")
    severity: list[Literal[SEVERITIES]] = _listed("CAP severity")  # type: ignore[valid-type]
    urgency: list[Literal[URGENCIES]] = _listed("CAP urgency")  # type: ignore[valid-type]
    certainty: list[Literal[CERTAINTIES]] = _listed("CAP certainty")  # type: ignore[valid-type]
    status: list[Literal["actual"]] = _listed("only actual: exercises and tests are never public")


class AlertPath(RequestModel):
    id: str = Field(description="{warning_id}-{version}, e.g. 12-1", pattern=r"^[1-9]\d*-[1-9]\d*$")


ACTIVE_PARAMETERS: frozenset[str] = frozenset(ActiveAlertsQuery.model_fields)
_ALERT_ID = re.compile(r"^([1-9]\d{0,17})-([1-9]\d{0,8})$")
_TAG_AUTHORITY = re.compile(r"^(?:[A-Za-z0-9._%+-]+@)?[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")
_NS = {"c": CAP_NAMESPACE}


def _bad(parameter: str, problem: str) -> ApiProblem:
    """A 400 problem naming the parameter (``field``), detail ``parameter: problem``."""
    return ApiProblem(400, "invalid_parameter", problem, parameter)


def _echo(value: str) -> str:
    return repr(value if len(value) <= MAX_PARAMETER_ECHO else value[:MAX_PARAMETER_ECHO] + "...")


# ---------------------------------------------------------------------------------------------- CAP documents


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


# ---------------------------------------------------------------------------------------------- alerts


@dataclass(frozen=True)
class PublicAlert:
    """One issued, public message: a version of a warning and what its CAP document says."""

    warning_id: int
    version: int
    hazard: str
    level: str
    areas: tuple[str, ...]
    polygons: tuple[str, ...]
    status: str  # the version's lifecycle status: issued, updated, cancelled or expired
    msg_type: str
    sent: datetime
    onset: datetime
    expires: datetime
    cap: CapSummary

    @property
    def id(self) -> str:
        """``{warning_id}-{version}``, the alert's id in URLs."""
        return f"{self.warning_id}-{self.version}"


def parse_alert_id(raw: str) -> tuple[int, int] | None:
    """``(warning_id, version)`` of an alert id such as ``12-3``; None when it is not one."""
    match = _ALERT_ID.match(raw)
    return None if match is None else (int(match.group(1)), int(match.group(2)))


def cap_polygon(text: str) -> Polygon | None:
    """A CAP polygon (``lat,lon lat,lon ...``) as a shapely polygon in (lon, lat); None when unusable."""
    try:
        points = [(float(lon), float(lat)) for lat, lon in (pair.split(",") for pair in text.split())]
        polygon = Polygon(points)
    except (ValueError, TypeError):
        return None
    if polygon.is_empty or polygon.area == 0:
        return None
    return polygon if polygon.is_valid else shapely.make_valid(polygon)


class RegionAreas:
    """The region's assessment units of one risk database version: their containment tree and outlines."""

    def __init__(self, version_id: int, created_at: datetime, units: Iterable[UnitRecord]) -> None:
        self.version_id = version_id
        self.created_at = created_at
        self.units: dict[str, UnitRecord] = {u.code: u for u in units}
        self._outlines: dict[tuple[tuple[str, ...], tuple[str, ...], bool], shapely.Geometry] = {}

    def __contains__(self, code: object) -> bool:
        return code in self.units

    def overlap(self, a: str, b: str) -> bool:
        """Whether two units share ground: the same unit, or one inside the other."""
        return same_or_nested(a, b, self.units)

    def geometry(self, areas: Sequence[str], polygons: Sequence[str]) -> shapely.Geometry:
        """What a message covers on the map: its CAP polygons when it has any, else its areas' outlines."""
        return self._cached(tuple(areas), tuple(polygons), False)

    def footprint(self, areas: Sequence[str], polygons: Sequence[str]) -> shapely.Geometry:
        """Where a message applies: its areas' outlines and its CAP polygons together (prepared)."""
        return self._cached(tuple(areas), tuple(polygons), True)

    def _cached(self, areas: tuple[str, ...], polygons: tuple[str, ...], both: bool) -> shapely.Geometry:
        key = (areas, polygons, both)
        found = self._outlines.get(key)
        if found is None:
            shapes = [p for p in map(cap_polygon, polygons) if p is not None]
            if both or not shapes:
                shapes += [self.units[c].shape() for c in areas if c in self.units]
            found = shapely.union_all(shapes) if shapes else shapely.Polygon()
            shapely.prepare(found)
            if len(self._outlines) >= CACHE_ENTRIES:
                self._outlines.clear()
            self._outlines[key] = found
        return found


class PublicAlerts:
    """The repository of the public read side: issued, non-exercise messages and the region's areas."""

    def __init__(self, region: str, events: Mapping[str, str]) -> None:
        self.region = region
        self.events = events  # lower-case event text or hazard name -> hazard
        self._areas: RegionAreas | None = None
        self._loading = asyncio.Lock()
        self._caps: dict[str, CapSummary] = {}

    async def areas(self, conn: asyncpg.Connection) -> RegionAreas:
        """The current risk database's units, reloaded only when the current version changes."""
        version = await current_version(conn, self.region)
        if self._areas is not None and self._areas.version_id == version:
            return self._areas
        async with self._loading:
            if self._areas is None or self._areas.version_id != version:
                db = await load_current(conn, self.region, arrays=False)  # DatabaseError when none
                self._areas = RegionAreas(db.version_id, db.created_at, db.units)
            return self._areas

    async def active(self, conn: asyncpg.Connection, now: datetime) -> list[PublicAlert]:
        """The messages in force: each warning's issued version, not a Cancel, not expired; newest first."""
        return self._alerts(await conn.fetch(_ACTIVE_SQL, now))

    async def feed(self, conn: asyncpg.Connection, now: datetime) -> list[PublicAlert]:
        """The messages in force and every message sent within `FEED_WINDOW`; newest first."""
        return self._alerts(await conn.fetch(_FEED_SQL, now, FEED_WINDOW))

    async def one(self, conn: asyncpg.Connection, warning_id: int, version: int) -> PublicAlert | None:
        """One public message, whatever became of it later; None when there is no such public message."""
        row = await conn.fetchrow(_ONE_SQL, warning_id, version)
        found = self._alerts([] if row is None else [row])
        return found[0] if found else None

    async def document(
        self, conn: asyncpg.Connection, warning_id: int, version: int, kind: str
    ) -> tuple[PublicAlert, bytes] | None:
        """A public message and its stored ``cap`` or ``gbt`` document."""
        row = await conn.fetchrow(_DOCUMENT_SQL[kind], warning_id, version)
        found = self._alerts([] if row is None else [row])
        if not found or row["document"] is None:
            return None
        return found[0], bytes(row["document"])

    async def successor(self, conn: asyncpg.Connection, alert: PublicAlert) -> tuple[str, datetime] | None:
        """The id and send time of the message that replaced this one (its Update or Cancel), if any."""
        row = await conn.fetchrow(_SUCCESSOR_SQL, alert.warning_id, alert.version)
        return None if row is None else (f"{row['warning_id']}-{row['version']}", row["sent"])

    async def reference_ids(self, conn: asyncpg.Connection, alerts: Sequence[PublicAlert]) -> dict[str, str]:
        """CAP identifier -> alert id of every public message the alerts reference."""
        wanted = sorted({r.identifier for a in alerts for r in a.cap.references})
        if not wanted:
            return {}
        rows = await conn.fetch(_REFERENCES_SQL, wanted)
        return {r["identifier"]: f"{r['warning_id']}-{r['version']}" for r in rows}

    async def last_change(
        self, conn: asyncpg.Connection, now: datetime, areas: RegionAreas, window: timedelta | None
    ) -> datetime:
        """The last moment a list could have changed, to the second and never after ``now``: the newest
        message sent, the latest expiry passed, (with ``window``) the latest message aged out of the feed,
        and the risk database version the outlines come from."""
        changed = await conn.fetchval(_LAST_CHANGE_SQL, now, window)
        moments = [m for m in (changed, areas.created_at) if m is not None]
        return min(max(moments), now).replace(microsecond=0)

    def _alerts(self, rows: Sequence[asyncpg.Record]) -> list[PublicAlert]:
        out = []
        for row in rows:
            cap = self._cap(row["identifier"], bytes(row["cap_xml"]))
            if cap is None or cap.status != "Actual":
                # the row says public but its document does not: never show it, and say so loudly
                log.error(
                    "a public-looking version has a non-Actual or unreadable CAP; withheld",
                    extra={"warning_id": row["warning_id"], "version": row["version"]},
                )
                continue
            out.append(
                PublicAlert(
                    warning_id=row["warning_id"],
                    version=row["version"],
                    hazard=row["hazard"],
                    level=row["level"],
                    areas=tuple(row["areas"]),
                    polygons=tuple(row["polygons"]),
                    status=row["status"],
                    msg_type=row["msg_type"],
                    sent=row["sent"],
                    onset=row["onset"],
                    expires=row["expires"],
                    cap=cap,
                )
            )
        return out

    def _cap(self, identifier: str, xml: bytes) -> CapSummary | None:
        found = self._caps.get(identifier)
        if found is None:
            try:
                found = read_cap(xml)
            except (etree.XMLSyntaxError, ValueError):
                return None
            if len(self._caps) >= CACHE_ENTRIES:
                self._caps.clear()
            self._caps[identifier] = found
        return found


PUBLIC_ALERTS = web.AppKey("public_alerts", PublicAlerts)

# Public: issued (identifier set), the version and its warning not an exercise.
_PUBLIC = "v.identifier IS NOT NULL AND NOT v.exercise AND NOT w.exercise"
_ACTIVE = "v.status = 'issued' AND v.msg_type <> 'Cancel' AND date_trunc('second', v.expires) > $1"
_COLUMNS = """v.warning_id, v.version, v.hazard, v.level, v.areas, v.polygons, v.status, v.msg_type,
              v.identifier, v.sent, v.onset, v.expires, v.cap_xml"""
_FROM = "svc.warning_version v JOIN svc.warning w ON w.id = v.warning_id"
_ACTIVE_SQL = (
    f"SELECT {_COLUMNS} FROM {_FROM} WHERE {_PUBLIC} AND {_ACTIVE} ORDER BY v.sent DESC, v.warning_id"
)
_FEED_SQL = f"""SELECT {_COLUMNS} FROM {_FROM}
                WHERE {_PUBLIC} AND (({_ACTIVE}) OR v.sent > $1 - $2::interval)
                ORDER BY v.sent DESC, v.warning_id"""
_ONE_SQL = f"SELECT {_COLUMNS} FROM {_FROM} WHERE {_PUBLIC} AND v.warning_id = $1 AND v.version = $2"
_DOCUMENT_SQL = {
    kind: f"SELECT {_COLUMNS}, v.{column} AS document FROM {_FROM} "
    f"WHERE {_PUBLIC} AND v.warning_id = $1 AND v.version = $2"
    for kind, column in (("cap", "cap_xml"), ("gbt", "gbt_xml"))
}
_SUCCESSOR_SQL = f"""SELECT v.warning_id, v.version, v.sent FROM {_FROM}
                     WHERE {_PUBLIC} AND v.warning_id = $1 AND v.version > $2 ORDER BY v.version LIMIT 1"""
_REFERENCES_SQL = (
    f"SELECT v.identifier, v.warning_id, v.version FROM {_FROM} WHERE {_PUBLIC} AND v.identifier = ANY($1)"
)
_LAST_CHANGE_SQL = f"""SELECT greatest(
        max(v.sent),
        max(date_trunc('second', v.expires))
            FILTER (WHERE v.msg_type <> 'Cancel' AND date_trunc('second', v.expires) <= $1),
        max(v.sent + $2::interval) FILTER (WHERE $2::interval IS NOT NULL AND v.sent + $2::interval <= $1))
    FROM {_FROM} WHERE {_PUBLIC}"""


# ---------------------------------------------------------------------------------------------- filters


@dataclass(frozen=True)
class AlertFilter:
    """The filters of ``/api/v1/alerts/active``: alternatives within one, all of them together."""

    areas: tuple[str, ...] = ()  # 12-digit unit codes
    point: tuple[float, float] | None = None  # latitude, longitude
    hazards: frozenset[str] = frozenset()
    severities: frozenset[str] = frozenset()
    urgencies: frozenset[str] = frozenset()
    certainties: frozenset[str] = frozenset()

    def admits(self, alert: PublicAlert, areas: RegionAreas) -> bool:
        """Whether the alert passes every filter given."""
        info = alert.cap.primary
        if self.hazards and alert.hazard not in self.hazards:
            return False
        if self.severities and info.severity not in self.severities:
            return False
        if self.urgencies and info.urgency not in self.urgencies:
            return False
        if self.certainties and info.certainty not in self.certainties:
            return False
        if self.areas and not any(areas.overlap(a, q) for a in alert.areas for q in self.areas):
            return False
        if self.point is not None:
            lat, lon = self.point
            return bool(areas.footprint(alert.areas, alert.polygons).covers(Point(lon, lat)))
        return True


def event_names(texts: TextsConfig) -> dict[str, str]:
    """Lower-case hazard names and CAP event texts (every language) -> hazard."""
    out = {hazard: hazard for hazard in HAZARD_LEVELS}
    for hazard, config in texts.hazards.items():
        for name in config.name.values():
            out[name.casefold()] = hazard
    return out


def refuse_unknown_parameters(query: MultiMapping[str], allowed: frozenset[str]) -> None:
    """400 naming the first parameter the resource does not take."""
    for name in query:
        if name not in allowed:
            takes = f"this resource takes {', '.join(sorted(allowed))}" if allowed else "it takes none"
            raise _bad(name[:MAX_PARAMETER_ECHO], f"unknown parameter; {takes}")


def _values(query: MultiMapping[str], name: str) -> list[str]:
    values = [v.strip() for raw in query.getall(name, []) for v in raw.split(",")]
    if any(not v for v in values):
        raise _bad(name, "empty value (give one or more comma-separated values, or leave the parameter out)")
    return values


def _enum(query: MultiMapping[str], name: str, known: Sequence[str]) -> frozenset[str]:
    by_lower = {k.lower(): k for k in known}
    out = set()
    for value in _values(query, name):
        if value.lower() not in by_lower:
            raise _bad(name, f"unknown value {_echo(value)}; use one or more of {', '.join(known)}")
        out.add(by_lower[value.lower()])
    return frozenset(out)


def parse_point(raw: str) -> tuple[float, float]:
    """``lat,lon`` in WGS84 degrees -> (lat, lon); `ApiProblem` naming ``point`` otherwise."""
    parts = raw.split(",")
    example = "'latitude,longitude' in decimal degrees, e.g. 39.67,106.82"
    if len(parts) != 2:
        raise _bad("point", f"expected {example} (got {_echo(raw)})")
    try:
        lat, lon = (float(p.strip()) for p in parts)
    except ValueError:
        raise _bad("point", f"expected {example} (got {_echo(raw)})") from None
    if not (math.isfinite(lat) and math.isfinite(lon)) or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise _bad("point", f"{_echo(raw)} is outside latitude -90..90, longitude -180..180")
    return lat, lon


def parse_filter(query: MultiMapping[str], areas: RegionAreas, events: Mapping[str, str]) -> AlertFilter:
    """The filters of ``/api/v1/alerts/active``; a 400 `ApiProblem` naming the parameter at fault."""
    refuse_unknown_parameters(query, ACTIVE_PARAMETERS)
    for status in _values(query, "status"):
        if status.lower() in NOT_PUBLIC_STATUSES:
            raise _bad(
                "status",
                f"{_echo(status)} messages are never published here; the public API carries Actual messages "
                "only (status=actual, the default)",
            )
        if status.lower() != "actual":
            raise _bad("status", f"unknown status {_echo(status)}; the public API carries actual only")
    codes = []
    for code in _values(query, "area"):
        full = geocode(code)
        if full is None:
            raise _bad("area", f"{_echo(code)} is not a 6-, 9- or 12-digit admin code")
        if full not in areas:
            raise _bad("area", f"{code} is not an area of this region")
        codes.append(full)
    points = query.getall("point", [])
    if len(points) > 1:
        raise _bad("point", "give one point")
    hazards = set()
    for event in _values(query, "event"):
        hazard = events.get(event.casefold())
        if hazard is None:
            known = ", ".join(sorted(set(events) - set(HAZARD_LEVELS)))
            raise _bad(
                "event",
                f"unknown event {_echo(event)}; use a hazard ({', '.join(HAZARD_LEVELS)}) or an event "
                f"text ({known})",
            )
        hazards.add(hazard)
    return AlertFilter(
        areas=tuple(dict.fromkeys(codes)),
        point=parse_point(points[0].strip()) if points else None,
        hazards=frozenset(hazards),
        severities=_enum(query, "severity", SEVERITIES),
        urgencies=_enum(query, "urgency", URGENCIES),
        certainties=_enum(query, "certainty", CERTAINTIES),
    )


# ---------------------------------------------------------------------------------------------- negotiation


def _media_ranges(accept: str) -> list[tuple[str, str, float]]:
    ranges = []
    for item in accept.split(","):
        fields = [f.strip() for f in item.split(";")]
        kind = fields[0].lower()
        if "/" not in kind:
            continue
        main, sub = (p.strip() for p in kind.split("/", 1))
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:
            ranges.append((main, sub, q))
    return ranges


def negotiate(accept: str | None, offers: Sequence[str]) -> str:
    """The offer the client prefers by ``Accept`` (RFC 9110 12.5.1), the first offer on a tie, when there is
    no ``Accept`` or when nothing offered is acceptable.

    >>> negotiate("application/atom+xml;q=0.9, application/geo+json;q=0.5", (GEOJSON, ATOM))
    'application/atom+xml'
    >>> negotiate("text/html", (GEOJSON, ATOM))
    'application/geo+json'
    """
    if not accept or not accept.strip():
        return offers[0]
    ranges = _media_ranges(accept)
    best, best_q = offers[0], 0.0
    for offer in offers:
        main, sub = offer.split("/", 1)
        # the most specific range that matches decides the offer's quality
        matching = [
            (2 if (m, s) == (main, sub) else 1 if m == main and s == "*" else 0, q)
            for m, s, q in ranges
            if (m, s) in ((main, sub), (main, "*"), ("*", "*"))
        ]
        if matching:
            q = max(matching)[1]
            if q > best_q:
                best, best_q = offer, q
    return best


# ---------------------------------------------------------------------------------------------- documents


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


def geojson_geometry(geometry: shapely.Geometry) -> dict[str, Any] | None:
    """A GeoJSON MultiPolygon (coordinates to 6 decimals), None when there is nothing to draw."""
    if geometry is None or geometry.is_empty:
        return None
    polygons = [g for g in shapely.get_parts(geometry) if g.geom_type in ("Polygon", "MultiPolygon")]
    parts = [p for g in polygons for p in shapely.get_parts(g)]
    if not parts:
        return None
    coordinates = mapping(shapely.MultiPolygon(parts))["coordinates"]
    return {"type": "MultiPolygon", "coordinates": _rounded(coordinates)}


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, GEOMETRY_DECIMALS)
    return [_rounded(v) for v in value]


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
    return {"id": links.alert(alert.id), "type": "Feature", "geometry": geometry, "properties": properties}


def json_body(document: Mapping[str, Any]) -> bytes:
    """UTF-8 JSON with ``<``, ``>`` and ``&`` escaped (they occur only inside strings), so no text in it can
    ever be read as markup."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
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


# ---------------------------------------------------------------------------------------------- HTTP


def not_modified(
    if_none_match: str | None, if_modified_since: datetime | None, etag: str, last_modified: datetime | None
) -> bool:
    """Whether a GET may be answered 304 (RFC 9110 13.2.2): ``If-None-Match`` decides when present (weak
    comparison); otherwise ``If-Modified-Since`` against ``Last-Modified``, to the second."""
    if if_none_match is not None:
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or etag in tags
    if if_modified_since is not None and last_modified is not None:
        return last_modified.replace(microsecond=0) <= if_modified_since
    return False


def _answer(
    request: web.Request,
    body: bytes,
    content_type: str,
    *,
    last_modified: datetime | None,
    cache_control: str,
    vary: bool = False,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    out = {
        "ETag": etag,
        "Cache-Control": cache_control,
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
        **(headers or {}),
    }
    if last_modified is not None:
        out["Last-Modified"] = format_datetime(last_modified.astimezone(UTC), usegmt=True)
    if vary:
        out["Vary"] = "Accept"
    if not_modified(request.headers.get("If-None-Match"), request.if_modified_since, etag, last_modified):
        return web.Response(status=304, headers=out)
    return web.Response(body=body, headers=out | {"Content-Type": content_type})


def _links(request: web.Request) -> AlertLinks:
    public_url = request.app[SETTINGS].warnings.public_url
    if public_url:
        return AlertLinks(public_url.rstrip("/"))
    try:
        return AlertLinks(str(request.url.origin()))
    except ValueError as e:
        raise _bad("Host", "the Host header is not a host name") from e


def _json_type(media: str) -> str:
    return f"{media}; charset=utf-8" if media == JSON else media


def _alert_key(request: web.Request) -> tuple[int, int]:
    raw = request.match_info["id"]
    key = parse_alert_id(raw)
    if key is None:
        raise ApiProblem(404, "not_found", f"no public alert {_echo(raw)}; ids look like 12-1", "id")
    return key


def _not_found(key: tuple[int, int]) -> ApiProblem:
    return ApiProblem(404, "not_found", f"no public alert {key[0]}-{key[1]}", "id")


def _now() -> datetime:
    return datetime.now(UTC)


_CACHED = media_reply("Not modified (ETag / Last-Modified)")


@operation(
    "Warnings in force (public): GeoJSON FeatureCollection, or Atom with Accept: application/atom+xml. "
    "Unknown parameters and bad values are 400 problems.",
    query=ActiveAlertsQuery,
    responses={
        200: media_reply("Active alerts", GEOJSON, JSON, ATOM, schema={"type": ["object", "string"]}),
        304: _CACHED,
    },
    problems=(400, 503),
)
async def active_alerts(request: web.Request) -> web.Response:
    """The alerts in force, filtered; GeoJSON, or Atom by ``Accept``."""
    public = request.app[PUBLIC_ALERTS]
    media = negotiate(request.headers.get("Accept"), (GEOJSON, JSON, ATOM))
    links = _links(request)
    now = _now()
    async with request.app[POOL].acquire() as conn:
        areas = await public.areas(conn)
        chosen = parse_filter(request.query, areas, public.events)
        alerts = [a for a in await public.active(conn, now) if chosen.admits(a, areas)]
        modified = await public.last_change(conn, now, areas, None)
        reference_ids = await public.reference_ids(conn, alerts) if media != ATOM else {}
    warnings = request.app[SETTINGS].warnings
    title = f"{warnings.issuer_name}生效预警 / {warnings.issuer_name_en}: active warnings"
    if media == ATOM:
        url = links.active + (f"?{request.query_string}" if request.query_string else "")
        body = atom_feed(
            alerts,
            links,
            feed_id=url,
            self_url=url,
            title=title,
            author=warnings.issuer_name,
            updated=modified,
        )
        content_type = f"{ATOM}; charset=utf-8"
    else:
        collection = {
            "type": "FeatureCollection",
            "title": title,
            "updated": cap_time(modified),
            "features": [
                alert_feature(a, geojson_geometry(areas.geometry(a.areas, a.polygons)), links, reference_ids)
                for a in alerts
            ],
        }
        body, content_type = json_body(collection), _json_type(media)
    return _answer(request, body, content_type, last_modified=modified, cache_control=LIST_CACHE, vary=True)


@operation(
    "One public message (also superseded, cancelled or expired ones): GeoJSON Feature, or its CAP with "
    "Accept: application/cap+xml",
    path=AlertPath,
    responses={200: media_reply("Alert", GEOJSON, CAP, schema={"type": ["object", "string"]}), 304: _CACHED},
    problems=(400, 404),
)
async def one_alert(request: web.Request) -> web.Response:
    """One public message as a GeoJSON Feature, or its CAP document by ``Accept``."""
    refuse_unknown_parameters(request.query, frozenset())
    key = _alert_key(request)
    media = negotiate(request.headers.get("Accept"), (GEOJSON, JSON, CAP))
    if media == CAP:  # this URL's answer changes (replacedBy), so not cached as immutable
        return await _cap_document(request, key, cache_control=LIST_CACHE, vary=True)
    public = request.app[PUBLIC_ALERTS]
    links = _links(request)
    async with request.app[POOL].acquire() as conn:
        alert = await public.one(conn, *key)
        if alert is None:
            raise _not_found(key)
        areas = await public.areas(conn)
        reference_ids = await public.reference_ids(conn, [alert])
        replaced_by = await public.successor(conn, alert)
    feature = alert_feature(
        alert,
        geojson_geometry(areas.geometry(alert.areas, alert.polygons)),
        links,
        reference_ids,
        replaced_by,
    )
    modified = max([alert.sent, areas.created_at] + ([replaced_by[1]] if replaced_by else []))
    return _answer(
        request,
        json_body(feature),
        _json_type(media),
        last_modified=min(modified, _now()),
        cache_control=LIST_CACHE,
        vary=True,
    )


@operation(
    "The message's OASIS CAP 1.2 document as issued (immutable)",
    path=AlertPath,
    responses={200: media_reply("CAP 1.2", CAP), 304: _CACHED},
    problems=(400, 404),
)
async def alert_cap(request: web.Request) -> web.Response:
    """The stored CAP 1.2 document of a public message, byte for byte."""
    refuse_unknown_parameters(request.query, frozenset())
    return await _cap_document(request, _alert_key(request), cache_control=DOCUMENT_CACHE, vary=False)


async def _cap_document(
    request: web.Request, key: tuple[int, int], *, cache_control: str, vary: bool
) -> web.Response:
    alert, document = await _stored_document(request, key, "cap")
    return _answer(
        request,
        document,
        f"{CAP}; charset=utf-8",
        last_modified=alert.sent,
        cache_control=cache_control,
        vary=vary,
    )


@operation(
    "The message's GB/T 35965.1 document as issued, under its national file name (immutable)",
    path=AlertPath,
    responses={200: media_reply("GB/T 35965.1", "application/xml"), 304: _CACHED},
    problems=(400, 404),
)
async def alert_gbt(request: web.Request) -> web.Response:
    """The stored GB/T 35965.1 document of a public message, under its national file name."""
    refuse_unknown_parameters(request.query, frozenset())
    alert, document = await _stored_document(request, _alert_key(request), "gbt")
    return _answer(
        request,
        document,
        "application/xml; charset=utf-8",
        last_modified=alert.sent,
        cache_control=DOCUMENT_CACHE,
        headers={"Content-Disposition": f'inline; filename="{gbt_document_name(alert)}"'},
    )


async def _stored_document(
    request: web.Request, key: tuple[int, int], kind: str
) -> tuple[PublicAlert, bytes]:
    """A public message and its stored ``cap`` or ``gbt`` document; 404 when there is no such message."""
    async with request.app[POOL].acquire() as conn:
        found = await request.app[PUBLIC_ALERTS].document(conn, *key, kind)
    if found is None:
        raise _not_found(key)
    return found


@operation(
    "Atom 1.0 feed: warnings in force and every message of the last 24 h (Updates, Cancels); entries link "
    "to the CAP",
    responses={200: media_reply("Atom feed", ATOM), 304: _CACHED},
    problems=(400,),
)
async def alerts_feed(request: web.Request) -> web.Response:
    """Atom 1.0: the alerts in force and every message sent within `FEED_WINDOW`."""
    refuse_unknown_parameters(request.query, frozenset())
    public = request.app[PUBLIC_ALERTS]
    links = _links(request)
    now = _now()
    async with request.app[POOL].acquire() as conn:
        areas = await public.areas(conn)
        alerts = await public.feed(conn, now)
        modified = await public.last_change(conn, now, areas, FEED_WINDOW)
    warnings = request.app[SETTINGS].warnings
    body = atom_feed(
        alerts,
        links,
        feed_id=links.feed,
        self_url=links.feed,
        title=f"{warnings.issuer_name}气象预警 / {warnings.issuer_name_en}: weather warnings",
        author=warnings.issuer_name,
        updated=modified,
    )
    return _answer(request, body, f"{ATOM}; charset=utf-8", last_modified=modified, cache_control=LIST_CACHE)


def setup_alerts(app: web.Application) -> None:
    """Register the public read side: ``/api/v1/alerts/...`` and ``/feeds/alerts.atom``."""
    app[PUBLIC_ALERTS] = PublicAlerts(app[SETTINGS].region, event_names(load_texts()))
    app.router.add_get("/api/v1/alerts/active", active_alerts, name="alerts_active")
    app.router.add_get("/api/v1/alerts/{id}.cap", alert_cap, name="alert_cap")
    app.router.add_get("/api/v1/alerts/{id}.gbt.xml", alert_gbt, name="alert_gbt")
    app.router.add_get("/api/v1/alerts/{id}", one_alert, name="alert")
    app.router.add_get("/feeds/alerts.atom", alerts_feed, name="alerts_feed")
