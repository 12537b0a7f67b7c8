"""The filters of ``/api/v1/alerts/active`` (area, point, event, severity, urgency, certainty, status),
checked strictly: an unknown parameter or a malformed value is a 400 naming it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from multidict import MultiMapping
from pydantic import Field
from shapely.geometry import Point

from risk_zoning.unit_tree import geocode
from warnings_svc.documents.texts import TextsConfig
from warnings_svc.lifecycle.public_alerts import PublicAlert, RegionAreas
from warnings_svc.vocabulary import HAZARD_LEVELS
from warnings_svc.web.operations import RequestModel
from warnings_svc.web.problems import ApiProblem

MAX_PARAMETER_ECHO = 40  # characters of a refused value quoted back in a problem detail


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


ACTIVE_PARAMETERS: frozenset[str] = frozenset(ActiveAlertsQuery.model_fields)


def bad_parameter(parameter: str, problem: str) -> ApiProblem:
    """A 400 problem naming the parameter (``field``), detail ``parameter: problem``."""
    return ApiProblem(400, "invalid_parameter", problem, parameter)


def echo_parameter(value: str) -> str:
    """A parameter's value quoted for a detail, cut at MAX_PARAMETER_ECHO characters."""
    return repr(value if len(value) <= MAX_PARAMETER_ECHO else value[:MAX_PARAMETER_ECHO] + "...")


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
            raise bad_parameter(name[:MAX_PARAMETER_ECHO], f"unknown parameter; {takes}")


def _values(query: MultiMapping[str], name: str) -> list[str]:
    values = [v.strip() for raw in query.getall(name, []) for v in raw.split(",")]
    if any(not v for v in values):
        raise bad_parameter(
            name, "empty value (give one or more comma-separated values, or leave the parameter out)"
        )
    return values


def _enum(query: MultiMapping[str], name: str, known: Sequence[str]) -> frozenset[str]:
    by_lower = {k.lower(): k for k in known}
    out = set()
    for value in _values(query, name):
        if value.lower() not in by_lower:
            raise bad_parameter(
                name, f"unknown value {echo_parameter(value)}; use one or more of {', '.join(known)}"
            )
        out.add(by_lower[value.lower()])
    return frozenset(out)


def parse_point(raw: str) -> tuple[float, float]:
    """``lat,lon`` in WGS84 degrees -> (lat, lon); `ApiProblem` naming ``point`` otherwise."""
    parts = raw.split(",")
    example = "'latitude,longitude' in decimal degrees, e.g. 39.67,106.82"
    if len(parts) != 2:
        raise bad_parameter("point", f"expected {example} (got {echo_parameter(raw)})")
    try:
        lat, lon = (float(p.strip()) for p in parts)
    except ValueError:
        raise bad_parameter("point", f"expected {example} (got {echo_parameter(raw)})") from None
    if not (math.isfinite(lat) and math.isfinite(lon)) or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise bad_parameter(
            "point", f"{echo_parameter(raw)} is outside latitude -90..90, longitude -180..180"
        )
    return lat, lon


def parse_filter(query: MultiMapping[str], areas: RegionAreas, events: Mapping[str, str]) -> AlertFilter:
    """The filters of ``/api/v1/alerts/active``; a 400 `ApiProblem` naming the parameter at fault."""
    refuse_unknown_parameters(query, ACTIVE_PARAMETERS)
    for status in _values(query, "status"):
        if status.lower() in NOT_PUBLIC_STATUSES:
            raise bad_parameter(
                "status",
                f"{echo_parameter(status)} messages are never published here; the public API carries Actual messages "
                "only (status=actual, the default)",
            )
        if status.lower() != "actual":
            raise bad_parameter(
                "status", f"unknown status {echo_parameter(status)}; the public API carries actual only"
            )
    codes = []
    for code in _values(query, "area"):
        full = geocode(code)
        if full is None:
            raise bad_parameter("area", f"{echo_parameter(code)} is not a 6-, 9- or 12-digit admin code")
        if full not in areas:
            raise bad_parameter("area", f"{code} is not an area of this region")
        codes.append(full)
    points = query.getall("point", [])
    if len(points) > 1:
        raise bad_parameter("point", "give one point")
    hazards = set()
    for event in _values(query, "event"):
        hazard = events.get(event.casefold())
        if hazard is None:
            known = ", ".join(sorted(set(events) - set(HAZARD_LEVELS)))
            raise bad_parameter(
                "event",
                f"unknown event {echo_parameter(event)}; use a hazard ({', '.join(HAZARD_LEVELS)}) or an event "
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
