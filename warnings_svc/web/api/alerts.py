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
  ``If-None-Match`` and, without it, ``If-Modified-Since`` (RFC 9110 precedence). Each answer is rendered
  once per change and kept whole with its headers (`warnings_svc.web.public_cache`): a hit, or a 304 on a
  hit, reads neither the database nor a renderer. Lists and single alerts
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
import os
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

from aiohttp import web
from pydantic import Field

from warnings_svc.documents.speech import speech_available, synthesise
from warnings_svc.documents.texts import load_texts
from warnings_svc.lifecycle.public_alerts import FEED_WINDOW, PublicAlert, PublicAlerts, parse_alert_id
from warnings_svc.web.api.alert_documents import (
    AlertLinks,
    atom_feed,
    cap_time,
    feature_body,
    feature_collection_body,
    feature_json,
    gbt_document_name,
)
from warnings_svc.web.api.alert_filters import (
    ActiveAlertsQuery,
    bad_parameter,
    echo_parameter,
    event_names,
    parse_filter,
    refuse_unknown_parameters,
)
from warnings_svc.web.appkeys import POOL, SETTINGS
from warnings_svc.web.negotiation import ATOM, CAP, GEOJSON, JSON, negotiate
from warnings_svc.web.operations import RequestModel, media_reply, operation
from warnings_svc.web.problems import ApiProblem
from warnings_svc.web.public_cache import PUBLIC_CACHE, WARNINGS_AND_RISK, Render, Rendered, http_date

LIST_CACHE = "public, max-age=60"


DOCUMENT_CACHE = "public, max-age=86400, immutable"


LIST_OFFERS = (GEOJSON, JSON, ATOM)


ALERT_OFFERS = (GEOJSON, JSON, CAP)


class AlertPath(RequestModel):
    id: str = Field(description="{warning_id}-{version}, e.g. 12-1", pattern=r"^[1-9]\d*-[1-9]\d*$")


PUBLIC_ALERTS = web.AppKey("public_alerts", PublicAlerts)


def rendered_document(
    body: bytes,
    content_type: str,
    *,
    last_modified: datetime | None,
    cache_control: str,
    vary: bool = False,
    headers: Mapping[str, str] | None = None,
    valid_until: datetime | None = None,
    depends_on: frozenset[str] = WARNINGS_AND_RISK,
) -> Rendered:
    """A public answer with the headers every one carries: a strong ETag (a hash of the body),
    Cache-Control, CORS for any origin, nosniff, Last-Modified and (`vary`) ``Vary: Accept``."""
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    out = {
        "ETag": etag,
        "Cache-Control": cache_control,
        "Access-Control-Allow-Origin": "*",
        "X-Content-Type-Options": "nosniff",
        **(headers or {}),
    }
    if last_modified is not None:
        out["Last-Modified"] = http_date(last_modified)
    if vary:
        out["Vary"] = "Accept"
    return Rendered(
        body,
        content_type,
        out,
        etag=etag,
        last_modified=last_modified,
        valid_until=valid_until,
        depends_on=depends_on,
    )


@lru_cache(maxsize=256)  # Accept headers repeat; a client making them up only churns this small table
def _negotiated(accept: str | None, offers: tuple[str, ...]) -> str:
    return negotiate(accept, offers)


def alert_links(request: web.Request) -> AlertLinks:
    """The read side's absolute URLs: under ``[warnings] public_url`` when set, else the request's origin."""
    public_url = request.app[SETTINGS].warnings.public_url
    if public_url:
        return AlertLinks(public_url.rstrip("/"))
    try:
        return AlertLinks(str(request.url.origin()))
    except ValueError as e:
        raise bad_parameter("Host", "the Host header is not a host name") from e


def _origin(request: web.Request) -> tuple[str, str] | None:
    """What `alert_links` reads from the request, for a cache key: nothing when ``public_url`` is set."""
    return None if request.app[SETTINGS].warnings.public_url else (request.scheme, request.host)


def _json_type(media: str) -> str:
    return f"{media}; charset=utf-8" if media == JSON else media


def _alert_key(request: web.Request) -> tuple[int, int]:
    raw = request.match_info["id"]
    key = parse_alert_id(raw)
    if key is None:
        raise ApiProblem(404, "not_found", f"no public alert {echo_parameter(raw)}; ids look like 12-1", "id")
    return key


def _not_found(key: tuple[int, int]) -> ApiProblem:
    return ApiProblem(404, "not_found", f"no public alert {key[0]}-{key[1]}", "id")


async def _cached(request: web.Request, route: str, key: Hashable, render: Render) -> web.Response:
    """The answer from the cache of rendered public answers (`web.public_cache`), rendered on a miss."""
    rendered = await request.app[PUBLIC_CACHE].answer((route, key), render, route=route)
    return rendered.response(request)


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
    media = _negotiated(request.headers.get("Accept"), LIST_OFFERS)
    # the raw target names the filters and the query string the Atom feed's own URL repeats
    key = (request.raw_path, media, _origin(request))
    return await _cached(request, "alerts_active", key, lambda: _render_active(request, media))


async def _render_active(request: web.Request, media: str) -> Rendered:
    public = request.app[PUBLIC_ALERTS]
    links = alert_links(request)
    now = datetime.now(UTC)
    async with request.app[POOL].acquire() as conn:
        areas = await public.areas(conn)
        chosen = parse_filter(request.query, areas, public.events)
        alerts = [a for a in await public.active(conn, now) if chosen.admits(a, areas)]
        modified = await public.last_change(conn, now, areas, None)
        next_change = await public.next_change(conn, now, None)
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
        # each feature's geometry spliced in as JSON text made once per outline: a re-render after a
        # warning changes then serialises the properties, not thousands of coordinates again
        features = [
            feature_json(a, areas.geometry_json(a.areas, a.polygons), links, reference_ids) for a in alerts
        ]
        body = feature_collection_body(title, cap_time(modified), features)
        content_type = _json_type(media)
    return rendered_document(
        body,
        content_type,
        last_modified=modified,
        cache_control=LIST_CACHE,
        vary=True,
        valid_until=next_change,
    )


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
    media = _negotiated(request.headers.get("Accept"), ALERT_OFFERS)
    if media == CAP:  # this URL's answer changes (replacedBy), so not cached as immutable
        return await _cap_document(request, key, cache_control=LIST_CACHE, vary=True)
    return await _cached(
        request, "alert", (key, media, _origin(request)), lambda: _render_alert(request, key, media)
    )


async def _render_alert(request: web.Request, key: tuple[int, int], media: str) -> Rendered:
    public = request.app[PUBLIC_ALERTS]
    links = alert_links(request)
    async with request.app[POOL].acquire() as conn:
        alert = await public.one(conn, *key)
        if alert is None:
            raise _not_found(key)
        areas = await public.areas(conn)
        reference_ids = await public.reference_ids(conn, [alert])
        replaced_by = await public.successor(conn, alert)
    feature = feature_json(
        alert, areas.geometry_json(alert.areas, alert.polygons), links, reference_ids, replaced_by
    )
    modified = max([alert.sent, areas.created_at] + ([replaced_by[1]] if replaced_by else []))
    now = datetime.now(UTC)
    return rendered_document(
        feature_body(feature),
        _json_type(media),
        last_modified=min(modified, now),
        cache_control=LIST_CACHE,
        vary=True,
        valid_until=modified if modified > now else None,  # Last-Modified is never in the future
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
    async def render() -> Rendered:
        alert, document = await _stored_document(request, key, "cap")
        return rendered_document(
            document,
            f"{CAP}; charset=utf-8",
            last_modified=alert.sent,
            cache_control=cache_control,
            vary=vary,
            depends_on=frozenset(),  # stored when the message was approved, never changed
        )

    return await _cached(request, "alert_cap", (key, cache_control, vary), render)


@operation(
    "The message's GB/T 35965.1 document as issued, under its national file name (immutable)",
    path=AlertPath,
    responses={200: media_reply("GB/T 35965.1", "application/xml"), 304: _CACHED},
    problems=(400, 404),
)
async def alert_gbt(request: web.Request) -> web.Response:
    """The stored GB/T 35965.1 document of a public message, under its national file name."""
    refuse_unknown_parameters(request.query, frozenset())
    key = _alert_key(request)

    async def render() -> Rendered:
        alert, document = await _stored_document(request, key, "gbt")
        return rendered_document(
            document,
            "application/xml; charset=utf-8",
            last_modified=alert.sent,
            cache_control=DOCUMENT_CACHE,
            headers={"Content-Disposition": f'inline; filename="{gbt_document_name(alert)}"'},
            depends_on=frozenset(),  # stored when the message was approved, never changed
        )

    return await _cached(request, "alert_gbt", key, render)


@operation(
    "The message's broadcast script as Mandarin speech (WAV, made offline with espeak-ng on first request; "
    "404 naming the reason where speech cannot be made here)",
    path=AlertPath,
    responses={200: media_reply("WAV audio", "audio/wav"), 304: _CACHED},
    problems=(400, 404),
)
async def alert_audio(request: web.Request) -> web.Response:
    """The broadcast script spoken: what loudspeakers and the emergency broadcast platform play."""
    refuse_unknown_parameters(request.query, frozenset())
    key = _alert_key(request)

    async def render() -> Rendered:
        alert, script = await _stored_document(request, key, "broadcast")
        wav = await _spoken(request.app, key, script.decode())
        return rendered_document(
            wav,
            "audio/wav",
            last_modified=alert.sent,
            cache_control=DOCUMENT_CACHE,
            vary=False,
            depends_on=frozenset(),  # the script was stored when the message was approved, never changed
        )

    return await _cached(request, "alert_audio", key, render)


AUDIO_LOCK = web.AppKey("audio_lock", asyncio.Lock)


async def _spoken(app: web.Application, key: tuple[int, int], script: str) -> bytes:
    """The script's WAV, made once per message into ``data_dir/audio`` (kept across restarts, shared by the
    web workers); one synthesis at a time, so that many first requests, or a hostile client, cost one."""
    path = app[SETTINGS].data_dir / "audio" / f"{key[0]}-{key[1]}.wav"
    if path.exists():
        return await asyncio.to_thread(path.read_bytes)
    async with app[AUDIO_LOCK]:
        if path.exists():  # made while this request waited
            return await asyncio.to_thread(path.read_bytes)
        speech = await synthesise(script)
        if speech is None:
            _, why = await asyncio.to_thread(speech_available)
            raise ApiProblem(
                404, "no_audio", f"no audio for alert {key[0]}-{key[1]} here: {why or 'speech failed'}"
            )
        await asyncio.to_thread(_write_atomically, path, speech.wav)
        return speech.wav


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.part")
    partial.write_bytes(data)
    partial.replace(path)


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
    return await _cached(request, "alerts_feed", _origin(request), lambda: _render_feed(request))


async def _render_feed(request: web.Request) -> Rendered:
    public = request.app[PUBLIC_ALERTS]
    links = alert_links(request)
    now = datetime.now(UTC)
    async with request.app[POOL].acquire() as conn:
        areas = await public.areas(conn)
        alerts = await public.feed(conn, now)
        modified = await public.last_change(conn, now, areas, FEED_WINDOW)
        next_change = await public.next_change(conn, now, FEED_WINDOW)
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
    return rendered_document(
        body,
        f"{ATOM}; charset=utf-8",
        last_modified=modified,
        cache_control=LIST_CACHE,
        valid_until=next_change,
    )


def setup_alerts(app: web.Application) -> None:
    """Register the public read side: ``/api/v1/alerts/...`` and ``/feeds/alerts.atom``."""
    app[PUBLIC_ALERTS] = PublicAlerts(app[SETTINGS].region, event_names(load_texts()))
    app.router.add_get("/api/v1/alerts/active", active_alerts, name="alerts_active")
    app.router.add_get("/api/v1/alerts/{id}.cap", alert_cap, name="alert_cap")
    app.router.add_get("/api/v1/alerts/{id}.gbt.xml", alert_gbt, name="alert_gbt")
    app.router.add_get("/api/v1/alerts/{id}.wav", alert_audio, name="alert_audio")
    app[AUDIO_LOCK] = asyncio.Lock()
    app.router.add_get("/api/v1/alerts/{id}", one_alert, name="alert")
    app.router.add_get("/feeds/alerts.atom", alerts_feed, name="alerts_feed")
