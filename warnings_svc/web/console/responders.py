"""The responder registry: departments, the duty posts of each city or district, and which posts a warning
calls. Read from ``config/responders.toml`` (synthetic demo data, labelled as such on the page)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from risk_zoning.io.tomlfile import read_toml
from risk_zoning.store import UnitRecord
from risk_zoning.unit_tree import ancestors, geocode_ancestors
from warnings_svc.vocabulary import LEVELS

Hazard = Literal["heat", "rainstorm", "frost", "sandstorm"]
Level = Literal["blue", "yellow", "orange", "red"]
Geocode = Annotated[str, StringConstraints(pattern=r"^\d{12}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Department(_Model):
    """A department, the hazards it responds to and the lowest level that calls it."""

    name: Text
    name_en: Text
    hazards: Annotated[tuple[Hazard, ...], Field(min_length=1)]
    min_level: Level = "blue"

    def responds_to(self, hazard: str, level: str) -> bool:
        return hazard in self.hazards and LEVELS.index(level) >= LEVELS.index(self.min_level)


class Contact(_Model):
    """A duty post of a department for one unit (never a named person in the demo data)."""

    department: Text
    post: Text
    post_en: Text
    phone: Text


class UnitContacts(_Model):
    name: Text
    name_en: Text
    contacts: tuple[Contact, ...]


class Responders(_Model):
    """The responder registry: departments, and the posts of each city or district."""

    synthetic: bool
    note: str = ""
    departments: dict[str, Department]
    units: dict[Geocode, UnitContacts]

    @model_validator(mode="after")
    def _known_departments(self) -> Responders:
        for code, unit in self.units.items():
            for i, contact in enumerate(unit.contacts):
                if contact.department not in self.departments:
                    known = ", ".join(sorted(self.departments))
                    raise ValueError(
                        f"units.{code}.contacts.{i}.department: unknown department {contact.department!r}; "
                        f"known: {known}"
                    )
        return self


class ResponderError(Exception):
    """An unusable responder registry; `str()` is one line naming the file and the key at fault."""

    def __init__(self, source: str | Path, problem: str) -> None:
        super().__init__(f"{source}: {problem}")


def default_responders_path() -> Path:
    """The packaged demo registry."""
    return Path(str(resources.files("warnings_svc") / "config" / "responders.toml"))


def load_responders(path: Path | None = None) -> Responders:
    """The registry in `path` (default: the packaged demo data), validated; `ResponderError` in one line."""
    path = path or default_responders_path()
    raw = read_toml(path, ResponderError)
    try:
        return Responders.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        problem = "missing" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
        raise ResponderError(path, f"{where}: {problem}" if where else problem) from e


@dataclass(frozen=True)
class Call:
    """One post to be called for a warning."""

    unit: str
    department: str
    post: str
    phone: str


def responders_for(
    registry: Responders,
    hazard: str,
    level: str,
    areas: Iterable[str],
    units: Mapping[str, UnitRecord],
    lang: str,
) -> list[Call]:
    """The posts a warning calls: of every registry unit that is one of the areas, inside one, or around one,
    whose department responds to the hazard at this level; in registry order, each post once.

    >>> reg = Responders.model_validate({"synthetic": True, "departments": {"e": {"name": "应急管理局",
    ...     "name_en": "EMB", "hazards": ["heat"]}}, "units": {"150302000000": {"name": "海勃湾区",
    ...     "name_en": "Haibowan", "contacts": [{"department": "e", "post": "值班员", "post_en": "duty officer",
    ...     "phone": "0"}]}}})
    >>> [c.department for c in responders_for(reg, "heat", "yellow", ["150302001000"], {}, "zh")]
    ['应急管理局']
    """
    named = set(areas)
    around = {a for code in named for a in _ancestors(code, units)}  # units an area lies in
    calls: list[Call] = []
    for code, unit in registry.units.items():
        if code not in named and code not in around and not named & set(_ancestors(code, units)):
            continue
        for c in unit.contacts:
            dept = registry.departments[c.department]
            if dept.responds_to(hazard, level):
                calls.append(
                    Call(
                        unit=unit.name if lang == "zh" else unit.name_en,
                        department=dept.name if lang == "zh" else dept.name_en,
                        post=c.post if lang == "zh" else c.post_en,
                        phone=c.phone,
                    )
                )
    return list(dict.fromkeys(calls))


def _ancestors(code: str, units: Mapping[str, UnitRecord]) -> list[str]:
    """The units around `code`, nearest first: from the unit tree, or from the geocode's digits when the risk
    database does not know the code (the responders file may name one it does not have)."""
    return ancestors(code, units) if code in units else geocode_ancestors(code)
