"""The public read side's repository: issued, non-exercise warning versions, their stored documents and the
area outlines they cover, with per-process caches of parsed CAP documents and outlines.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg
import shapely
from lxml import etree
from shapely.geometry import Polygon

from risk_zoning.store import UnitRecord, current_version, load_current
from risk_zoning.unit_tree import same_or_nested
from warnings_svc.documents.cap_reading import CapSummary, read_cap
from warnings_svc.documents.geojson import geometry_json

log = logging.getLogger(__name__)

FEED_WINDOW = timedelta(hours=24)  # the feed keeps every message sent within this long


CACHE_ENTRIES = 512  # parsed CAP documents and outlines kept per process


GEOMETRY_JSON_BYTES = 16 * 2**20  # of GeoJSON texts kept per process (a whole-city outline is ~10 kB)


_ALERT_ID = re.compile(r"^([1-9]\d{0,17})-([1-9]\d{0,8})$")


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
        self._geometry_json: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
        self._geometry_json_bytes = 0

    def __contains__(self, code: object) -> bool:
        return code in self.units

    def overlap(self, a: str, b: str) -> bool:
        """Whether two units share ground: the same unit, or one inside the other."""
        return same_or_nested(a, b, self.units)

    def geometry(self, areas: Sequence[str], polygons: Sequence[str]) -> shapely.Geometry:
        """What a message covers on the map: its CAP polygons when it has any, else its areas' outlines."""
        return self._cached(tuple(areas), tuple(polygons), False)

    def geometry_json(self, areas: Sequence[str], polygons: Sequence[str]) -> str:
        """`geometry` as the GeoJSON text the public answers embed (``null`` when nothing to draw), made once
        per message area and risk database version: rounding and serialising thousands of outline
        coordinates would otherwise be most of every re-render of the lists after a warning changes. Kept
        per instance, so a new risk database version (a new `RegionAreas`) starts afresh; bounded by
        `CACHE_ENTRIES` and `GEOMETRY_JSON_BYTES` (emptied when full, as the outlines are)."""
        key = (tuple(areas), tuple(polygons))
        found = self._geometry_json.get(key)
        if found is None:
            found = geometry_json(self.geometry(areas, polygons))
            if (
                len(self._geometry_json) >= CACHE_ENTRIES
                or self._geometry_json_bytes + len(found) > GEOMETRY_JSON_BYTES
            ):
                self._geometry_json.clear()
                self._geometry_json_bytes = 0
            self._geometry_json[key] = found
            self._geometry_json_bytes += len(found)
        return found

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
        """A public message and its stored ``cap`` or ``gbt`` document, or its ``broadcast`` script (UTF-8)."""
        row = await conn.fetchrow(_DOCUMENT_SQL[kind], warning_id, version)
        found = self._alerts([] if row is None else [row])
        if not found or row["document"] is None:
            return None
        return found[0], bytes(row["document"])

    async def sent_after(
        self,
        conn: asyncpg.Connection,
        after: tuple[datetime, int, int] | None,
        *,
        not_before: datetime,
        limit: int,
    ) -> list[PublicAlert]:
        """The public messages sent after `after` (a (sent, warning_id, version) key; None: any) and not before
        `not_before`: the newest `limit` of them, oldest first (the order a stream replays them in)."""
        rows = await conn.fetch(_SENT_AFTER_SQL, *(after or (None, None, None)), not_before, limit)
        return self._alerts(list(reversed(rows)))

    async def newest_sent(self, conn: asyncpg.Connection) -> tuple[datetime, int, int] | None:
        """The (sent, warning_id, version) key of the newest public message; None when there is none."""
        row = await conn.fetchrow(_NEWEST_SENT_SQL)
        return None if row is None else (row["sent"], row["warning_id"], row["version"])

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

    async def next_change(
        self, conn: asyncpg.Connection, now: datetime, window: timedelta | None
    ) -> datetime | None:
        """The next moment after ``now`` at which a list (and its `last_change`) changes by time alone, with no
        write: the earliest future expiry (to the second, as "in force" compares it), onset or send time of
        any public version, and (with ``window``) the moment a message ages out of the feed. None when
        nothing is ahead. Onset changes nothing shown today; it is counted so that nothing shown later is
        left stale by it."""
        found: datetime | None = await conn.fetchval(_NEXT_CHANGE_SQL, now, window)
        return found

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
    kind: f"SELECT {_COLUMNS}, {column} AS document FROM {_FROM} "
    f"WHERE {_PUBLIC} AND v.warning_id = $1 AND v.version = $2"
    for kind, column in (
        ("cap", "v.cap_xml"),
        ("gbt", "v.gbt_xml"),
        # the Chinese broadcast script as issued (what loudspeakers and radio read out)
        ("broadcast", "convert_to(v.rendered -> 'zh-CN' ->> 'broadcast', 'UTF8')"),
    )
}


_SUCCESSOR_SQL = f"""SELECT v.warning_id, v.version, v.sent FROM {_FROM}
                     WHERE {_PUBLIC} AND v.warning_id = $1 AND v.version > $2 ORDER BY v.version LIMIT 1"""


# Send times are unique and increase in commit order (`lifecycle.store` takes them under the audit lock, held
# until commit), so (sent, warning_id, version) orders the public messages as they became visible.
_SENT_AFTER_SQL = f"""SELECT {_COLUMNS} FROM {_FROM}
                      WHERE {_PUBLIC} AND ($1::timestamptz IS NULL
                            OR (v.sent, v.warning_id, v.version) > ($1::timestamptz, $2::bigint, $3::int))
                        AND v.sent >= $4
                      ORDER BY v.sent DESC, v.warning_id DESC, v.version DESC LIMIT $5"""


_NEWEST_SENT_SQL = f"""SELECT v.sent, v.warning_id, v.version FROM {_FROM} WHERE {_PUBLIC}
                       ORDER BY v.sent DESC, v.warning_id DESC, v.version DESC LIMIT 1"""


_REFERENCES_SQL = (
    f"SELECT v.identifier, v.warning_id, v.version FROM {_FROM} WHERE {_PUBLIC} AND v.identifier = ANY($1)"
)


_LAST_CHANGE_SQL = f"""SELECT greatest(
        max(v.sent),
        max(date_trunc('second', v.expires))
            FILTER (WHERE v.msg_type <> 'Cancel' AND date_trunc('second', v.expires) <= $1),
        max(v.sent + $2::interval) FILTER (WHERE $2::interval IS NOT NULL AND v.sent + $2::interval <= $1))
    FROM {_FROM} WHERE {_PUBLIC}"""


_NEXT_CHANGE_SQL = f"""SELECT least(
        min(date_trunc('second', v.expires)) FILTER (WHERE date_trunc('second', v.expires) > $1),
        min(v.onset) FILTER (WHERE v.onset > $1),
        min(v.sent) FILTER (WHERE v.sent > $1),
        min(v.sent + $2::interval) FILTER (WHERE $2::interval IS NOT NULL AND v.sent + $2::interval > $1))
    FROM {_FROM} WHERE {_PUBLIC}"""
