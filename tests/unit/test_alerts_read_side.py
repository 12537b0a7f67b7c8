"""The public read side's pure parts: filters, content negotiation, conditional requests, documents."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import pytest
from lxml import etree
from multidict import MultiDict

from risk_zoning.store import UnitRecord
from tests.factories_messages import HEAT_ORANGE_ALERT, HEAT_RED_UPDATE, POLYGON
from warnings_svc.documents.cap import CapTexts, render_cap
from warnings_svc.documents.cap_reading import read_cap
from warnings_svc.documents.gbt import gbt_file_name
from warnings_svc.documents.geojson import geojson_geometry
from warnings_svc.documents.message import Area
from warnings_svc.documents.texts import load_texts
from warnings_svc.lifecycle import public_alerts
from warnings_svc.lifecycle.public_alerts import PublicAlert, RegionAreas, cap_polygon, parse_alert_id
from warnings_svc.web.api.alert_documents import (
    AlertLinks,
    alert_feature,
    atom_feed,
    feature_body,
    feature_collection_body,
    feature_json,
    gbt_document_name,
    json_body,
    tag_uri,
)
from warnings_svc.web.api.alert_filters import AlertFilter, event_names, parse_filter, parse_point
from warnings_svc.web.negotiation import ATOM, CAP, GEOJSON, JSON, negotiate
from warnings_svc.web.problems import ApiProblem
from warnings_svc.web.public_cache import not_modified

HOSTILE = "<script>alert(\"x\")</script> & 'q' ]]>"
EVENTS = event_names(load_texts())


def _square(x0: float, y0: float, size: float) -> dict:
    ring = [[x0, y0], [x0 + size, y0], [x0 + size, y0 + size], [x0, y0 + size], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring]}


def _unit(code: str, level: str, parent: str | None, geometry: dict) -> UnitRecord:
    return UnitRecord(code, 0, code, code, level, parent, 100, 1.0, "official", "official", geometry)


# city 0..2 x 0..1; district A (0..1) with town A1 (0..0.5); district B (1..2)
AREAS = RegionAreas(
    1,
    datetime(2026, 1, 1, tzinfo=UTC),
    [
        _unit("150300000000", "city", None, _square(0, 0, 2)),
        _unit("150302000000", "district", "150300000000", _square(0, 0, 1)),
        _unit("150302001000", "town", "150302000000", _square(0, 0, 0.5)),
        _unit("150303000000", "district", "150300000000", _square(1, 0, 1)),
    ],
)


def _alert(msg=HEAT_ORANGE_ALERT, areas=("150302001000",), polygons=(), texts=None) -> PublicAlert:
    msg = dataclasses.replace(msg, polygons=polygons, areas=tuple(Area(c, c, c) for c in areas))
    texts = texts or {
        "zh-CN": CapTexts("高温橙色预警", "描述", "防御", "海勃湾区", "高温"),
        "en-US": CapTexts("Heat orange warning", "Description", "", "Haibowan", "Heat"),
    }
    return PublicAlert(
        warning_id=7,
        version=1 if msg.msg_type == "Alert" else 2,
        hazard=msg.hazard,
        level=msg.level,
        areas=areas,
        polygons=polygons,
        status="issued",
        msg_type=msg.msg_type,
        sent=msg.sent,
        onset=msg.onset,
        expires=msg.expires,
        cap=read_cap(render_cap(msg, texts)),
    )


# ---------------------------------------------------------------------------------------------- filters


def _filter(query: str) -> AlertFilter:
    pairs = [tuple(p.split("=", 1)) for p in query.split("&") if p]
    return parse_filter(MultiDict(pairs), AREAS, EVENTS)


@pytest.mark.parametrize(
    ("query", "matches"),
    [
        ("area=150302", True),  # the district of the warning's town
        ("area=150302001", True),  # the town itself
        ("area=150300", True),  # the city
        ("area=150303", False),  # the other district
        ("area=150303,150302", True),
        ("point=0.25,0.25", True),  # lat, lon inside the town
        ("point=0.75,0.75", False),  # in the district, outside the town
        ("event=heat", True),
        ("event=高温", True),
        ("event=HEAT", True),
        ("event=rainstorm", False),
        ("severity=severe", True),
        ("severity=Extreme,Minor", False),
        ("urgency=Expected&certainty=Likely&status=Actual", True),
        ("urgency=Immediate", False),
    ],
)
def test_filters_match_a_town_heat_warning(query: str, matches: bool) -> None:
    assert _filter(query).admits(_alert(), AREAS) is matches


def test_a_district_warning_matches_the_codes_of_its_towns() -> None:
    alert = _alert(areas=("150302000000",))
    assert _filter("area=150302001").admits(alert, AREAS)
    assert not _filter("area=150303").admits(alert, AREAS)


def test_a_point_in_a_cap_polygon_outside_the_areas_matches() -> None:
    polygon = "0.6,1.6 0.6,1.8 0.8,1.8 0.8,1.6 0.6,1.6"  # lat,lon: inside district 150303
    alert = _alert(polygons=(polygon,))
    assert _filter("point=0.7,1.7").admits(alert, AREAS)
    assert not _filter("point=0.9,1.9").admits(alert, AREAS)


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("zone=150302", "zone"),
        ("area=", "area"),
        ("area=1503020", "area"),
        ("area=150399", "area"),
        ("area=abc", "area"),
        ("point=1", "point"),
        ("point=1,2,3", "point"),
        ("point=nan,1", "point"),
        ("point=91,0", "point"),
        ("point=1,2&point=3,4", "point"),
        ("event=tornado", "event"),
        ("severity=Unknown", "severity"),
        ("status=exercise", "status"),
        ("status=draft", "status"),
        ("status=maybe", "status"),
        ("certainty=", "certainty"),
    ],
)
def test_a_bad_parameter_is_a_400_naming_it(query: str, parameter: str) -> None:
    with pytest.raises(ApiProblem) as e:
        _filter(query)
    assert e.value.problem.status == 400
    assert e.value.problem_fields["field"] == parameter
    assert str(e.value).startswith(f"{parameter}: ")


def test_padded_area_codes_and_points() -> None:
    f = _filter("area=150302,150302000000&point=39.67, 106.82")
    assert f.areas == ("150302000000",) and f.point == (39.67, 106.82)
    assert parse_point("-33.5,151") == (-33.5, 151.0)


def test_region_areas_overlap_along_the_containment_tree() -> None:
    assert AREAS.overlap("150302001000", "150300000000")
    assert AREAS.overlap("150300000000", "150302001000")
    assert not AREAS.overlap("150302001000", "150303000000")


# ---------------------------------------------------------------------------------------------- negotiation


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, GEOJSON),
        ("", GEOJSON),
        ("*/*", GEOJSON),
        ("application/atom+xml", ATOM),
        ("application/atom+xml;q=0.9, application/geo+json;q=0.8", ATOM),
        ("application/atom+xml;q=0.5, */*", GEOJSON),
        ("application/*;q=0.9, application/atom+xml", ATOM),
        ("application/atom+xml;q=0, */*;q=0.1", GEOJSON),
        ("application/json", JSON),
        ("application/json, application/geo+json", GEOJSON),
        ("text/html", GEOJSON),  # nothing offered is acceptable: the default, not a 406
        ("application/atom+xml;q=abc", GEOJSON),
        ("garbage", GEOJSON),
    ],
)
def test_negotiation_honours_q_values_and_specificity(accept: str | None, chosen: str) -> None:
    assert negotiate(accept, (GEOJSON, JSON, ATOM)) == chosen


def test_a_single_alert_offers_cap() -> None:
    assert negotiate("application/cap+xml", (GEOJSON, JSON, CAP)) == CAP


# ---------------------------------------------------------------------------------------------- conditional


def test_not_modified_prefers_if_none_match() -> None:
    modified = datetime(2026, 7, 9, 8, 0, 0, 500, tzinfo=UTC)
    assert not_modified('"a"', None, '"a"', modified)
    assert not_modified('"b", W/"a"', None, '"a"', modified)
    assert not_modified("*", None, '"a"', modified)
    assert not not_modified('"b"', modified, '"a"', modified)  # If-None-Match decides
    assert not_modified(None, modified.replace(microsecond=0), '"a"', modified)
    assert not not_modified(None, modified - timedelta(seconds=1), '"a"', modified)
    assert not not_modified(None, None, '"a"', modified)


# ---------------------------------------------------------------------------------------------- documents


def test_parse_alert_ids() -> None:
    assert parse_alert_id("12-3") == (12, 3)
    for bad in ("12", "0-1", "12-0", "-1-2", "12-3.cap", "１２-3", "1" * 19 + "-1"):
        assert parse_alert_id(bad) is None


def test_read_cap_takes_the_facts_of_the_document() -> None:
    alert = _alert(HEAT_RED_UPDATE)
    cap = alert.cap
    assert cap.identifier == HEAT_RED_UPDATE.identifier and cap.msg_type == "Update"
    assert [r.identifier for r in cap.references] == [HEAT_ORANGE_ALERT.identifier]
    assert cap.primary.language == "zh-CN" and cap.info("en").language == "en-US"
    assert cap.primary.severity == "Extreme" and cap.geocodes == ("150302001000",)


def test_a_feature_has_the_nws_shape() -> None:
    alert = _alert(HEAT_RED_UPDATE)
    links = AlertLinks("https://w.example.cn")
    feature = alert_feature(alert, None, links, {HEAT_ORANGE_ALERT.identifier: "7-1"}, ("7-3", alert.sent))
    assert feature["id"] == "https://w.example.cn/api/v1/alerts/7-2"
    p = feature["properties"]
    assert p["references"][0]["id"] == "https://w.example.cn/api/v1/alerts/7-1"
    assert p["replacedBy"] == "https://w.example.cn/api/v1/alerts/7-3"
    assert p["eventCode"] == {"GB/T 35965.1": ["11B09"]} and p["geocode"] == {"GB2260": ["150302001000"]}
    assert p["en"]["instruction"] is None and p["instruction"] == "防御"


def test_geometry_is_a_multipolygon_of_the_cap_polygon_or_the_areas() -> None:
    own = geojson_geometry(AREAS.geometry(["150302000000", "150303000000"], []))
    assert own["type"] == "MultiPolygon"
    xs = [x for polygon in own["coordinates"] for x, _ in polygon[0]]
    assert (min(xs), max(xs)) == (0, 2)
    drawn = geojson_geometry(AREAS.geometry(["150302000000"], [POLYGON]))
    lons = [x for x, _ in drawn["coordinates"][0][0]]
    assert (min(lons), max(lons)) == (106.62, 107)  # lon, lat: the polygon, not the unit square
    assert geojson_geometry(AREAS.geometry(["999999999999"], [])) is None
    assert cap_polygon("not a polygon") is None


def test_spliced_features_are_byte_for_byte_the_plain_json_rendering() -> None:
    links = AlertLinks("https://w.example.cn")
    hostile = {"zh-CN": CapTexts(HOSTILE, f"描述 {HOSTILE}", "防御 & <b>", "海勃湾区", "高温")}
    alerts = [
        _alert(),
        _alert(HEAT_RED_UPDATE, areas=("150302000000", "150303000000"), texts=hostile),
        _alert(areas=("150302000000",), polygons=(POLYGON,)),
        _alert(areas=("999999999999",)),  # nothing to draw: "geometry": null
    ]
    references = {HEAT_ORANGE_ALERT.identifier: "7-1"}
    plain = [
        alert_feature(a, geojson_geometry(AREAS.geometry(a.areas, a.polygons)), links, references)
        for a in alerts
    ]
    spliced = [feature_json(a, AREAS.geometry_json(a.areas, a.polygons), links, references) for a in alerts]
    title, updated = f"生效预警 {HOSTILE}", "2026-01-01T08:00:00+08:00"
    assert feature_collection_body(title, updated, spliced) == json_body(
        {"type": "FeatureCollection", "title": title, "updated": updated, "features": plain}
    )
    replaced = ("7-3", alerts[1].sent)
    assert feature_body(
        feature_json(alerts[1], AREAS.geometry_json(alerts[1].areas, ()), links, references, replaced)
    ) == json_body(
        alert_feature(
            alerts[1], geojson_geometry(AREAS.geometry(alerts[1].areas, ())), links, references, replaced
        )
    )


def test_geometry_json_is_made_once_per_outline_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    areas = RegionAreas(2, datetime(2026, 1, 1, tzinfo=UTC), AREAS.units.values())
    first = areas.geometry_json(["150302000000"], [])
    assert areas.geometry_json(("150302000000",), ()) is first  # kept, not rendered again
    monkeypatch.setattr(public_alerts, "CACHE_ENTRIES", 2)
    areas.geometry_json(["150303000000"], [])
    areas.geometry_json(["150302001000"], [])  # a third outline: the full table is emptied first
    assert areas.geometry_json(["150302000000"], []) is not first
    assert len(areas._geometry_json) <= 2
    monkeypatch.setattr(public_alerts, "GEOMETRY_JSON_BYTES", len(first) + 1)
    areas.geometry_json(["150303000000"], [])
    assert areas._geometry_json_bytes <= len(first) + 1  # bounded by bytes too


def test_json_body_escapes_markup_characters() -> None:
    raw = json_body({"headline": HOSTILE})
    assert b"<" not in raw and b">" not in raw and b"&" not in raw
    assert json.loads(raw) == {"headline": HOSTILE}


def test_atom_escapes_every_text() -> None:
    texts = {"zh-CN": CapTexts(HOSTILE, f"描述 {HOSTILE}", "", "海勃湾区", "高温")}
    alert = _alert(texts=texts)
    raw = atom_feed(
        [alert],
        AlertLinks("https://w.example.cn"),
        feed_id="https://w.example.cn/feeds/alerts.atom",
        self_url="https://w.example.cn/feeds/alerts.atom?a=1&b=<2>",
        title=HOSTILE,
        author=HOSTILE,
        updated=alert.sent,
    )
    assert b"<script>" not in raw
    feed = etree.fromstring(raw)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert feed.findtext("a:title", namespaces=ns) == HOSTILE
    assert feed.findtext("a:entry/a:title", namespaces=ns) == HOSTILE
    assert feed.findtext("a:entry/a:summary", namespaces=ns) == f"描述 {HOSTILE}"
    assert feed.find("a:link[@rel='self']", namespaces=ns).get("href").endswith("b=<2>")


def test_entry_ids_are_tag_uris_of_the_cap_identifier() -> None:
    sent = HEAT_ORANGE_ALERT.sent
    assert tag_uri("wuhai@weather.example.cn", sent, "15030041600000_20170709160000") == (
        "tag:wuhai@weather.example.cn,2017-07-09:cap:15030041600000_20170709160000"
    )
    assert tag_uri("not a sender", sent, "x") is None


def test_gbt_document_name_is_the_national_file_name() -> None:
    alert = _alert()
    assert gbt_document_name(alert) == gbt_file_name(HEAT_ORANGE_ALERT)
    assert gbt_document_name(alert).endswith("_11B09_ORANGE_ALERT.XML")


def test_the_worked_examples_of_content_negotiation_hold() -> None:
    import doctest

    import warnings_svc.web.negotiation

    result = doctest.testmod(warnings_svc.web.negotiation)
    assert result.attempted > 0 and result.failed == 0
