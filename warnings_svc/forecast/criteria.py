"""Warning criteria as configuration: the packaged national defaults merged with a region's override, checked.

The file format is described at the top of ``warnings_svc/config/criteria.toml``. Thresholds carry units in
the file and are converted to the canonical units (degC, mm, m, m s-1, hours) here, at load; the data are
never converted to the thresholds' units. The one exception is the dust threshold: dust fields keep their
source units, so `SandstormCriteria.dust_ge` keeps its units and is converted into the field's units when it
is used.

>>> c = load_criteria()
>>> [(lv.name, lv.comparison, lv.threshold, lv.window_h) for lv in c.rainstorm.levels()]
[('blue', 'ge', 50.0, 12.0), ('yellow', 'ge', 50.0, 6.0), ('orange', 'ge', 50.0, 3.0), ('red', 'ge', 100.0, 3.0)]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, cast, get_args, get_origin

import cf_units
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from risk_zoning import HAZARDS
from risk_zoning.io.tomlfile import read_toml
from warnings_svc.vocabulary import LEVELS

SEVERITY: tuple[str, ...] = LEVELS
Comparison = Literal["ge", "gt", "le", "lt"]
UPPER: tuple[Comparison, ...] = ("ge", "gt")  # the hazard is a high value
LOWER: tuple[Comparison, ...] = ("le", "lt")  # the hazard is a low value
SYMBOL: dict[str, str] = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


class CriteriaError(Exception):
    """Unusable criteria; `str()` is one line naming the file and the key at fault."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


def default_criteria_path() -> Path:
    """The packaged national defaults (CMA 2007)."""
    return Path(str(resources.files("warnings_svc") / "config" / "criteria.toml"))


# ---------------------------------------------------------------------------------------------- units


def _round(value: float) -> float:
    # cf_units arithmetic leaves 95 degF = 35.000000000000036 degC; 12 significant digits are plenty
    return float(f"{value:.12g}")


def _split(value: Any, example: str) -> tuple[float, cf_units.Unit, str]:
    if not isinstance(value, str):
        raise ValueError(f"needs a number with units as a string, e.g. '{example}' (got {value!r})")
    parts = value.strip().split(maxsplit=1)
    if len(parts) != 2:
        raise ValueError(f"needs a number with units, e.g. '{example}' (got {value!r})")
    try:
        number = float(parts[0])
    except ValueError:
        raise ValueError(f"'{parts[0]}' is not a number (in {value!r})") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError(f"needs a finite number (got {value!r})")
    try:
        unit = cf_units.Unit(parts[1])
    except ValueError:
        raise ValueError(f"units '{parts[1]}' are not UDUNITS units (in {value!r})") from None
    if unit.is_time_reference():
        raise ValueError(f"units '{parts[1]}' are a time reference, not a duration (in {value!r})")
    return number, unit, parts[1]


def _in_units(canonical: str, example: str) -> BeforeValidator:
    def convert(value: Any) -> float:
        number, unit, text = _split(value, example)
        if not unit.is_convertible(cf_units.Unit(canonical)):
            raise ValueError(f"units '{text}' cannot be converted to {canonical}")
        return _round(float(unit.convert(number, canonical)))

    return BeforeValidator(convert)


def _temperature_difference(value: Any) -> float:
    number, unit, text = _split(value, "2 degC")
    if not unit.is_convertible(cf_units.Unit("K")):
        raise ValueError(f"units '{text}' are not a temperature")
    # a difference converts by scale only: 2 degC of difference is 2 K, not 275.15 K
    return _round(float(unit.convert(number, "K")) - float(unit.convert(0.0, "K")))


def _amount_with_units(value: Any) -> str:
    number, _, text = _split(value, "2000 ug m-3")
    return f"{number:g} {text}"


Celsius = Annotated[float, _in_units("degC", "35 degC")]
Millimetres = Annotated[float, _in_units("mm", "50 mm")]
Metres = Annotated[float, _in_units("m", "1000 m")]
MetresPerSecond = Annotated[float, _in_units("m s-1", "10 m s-1")]
Hours = Annotated[float, _in_units("h", "24 h"), Field(gt=0)]
SignedHours = Annotated[float, _in_units("h", "8 h"), Field(ge=-12, le=14)]
KelvinDifference = Annotated[float, BeforeValidator(_temperature_difference)]
AmountWithUnits = Annotated[str, BeforeValidator(_amount_with_units)]
Months = Annotated[tuple[Annotated[int, Field(strict=True, ge=1, le=12)], ...], Field(min_length=1)]


def format_amount(value: float, units: str) -> str:
    """A canonical value as the file would write it: ``format_amount(50.0, "mm") == "50 mm"``."""
    return f"{value:g} {units}"


# ---------------------------------------------------------------------------------------------- models


class _KeyedError(ValueError):
    """A validation problem that belongs to a key below the model raising it (e.g. ``orange.ge``)."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        super().__init__(f"{key}: {problem}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class LevelCriterion:
    """One level of one hazard, resolved: canonical numbers, the hazard's defaults filled in."""

    name: str
    comparison: Comparison
    threshold: float
    units: str
    within_h: float
    window_h: float | None = None
    consecutive_days: int | None = None

    def describe(self) -> dict[str, Any]:
        """The level as evidence: thresholds with units, e.g. ``{"ge": "50 mm", "window": "6 h", ...}``."""
        out: dict[str, Any] = {self.comparison: format_amount(self.threshold, self.units)}
        if self.window_h is not None:
            out["window"] = format_amount(self.window_h, "h")
        if self.consecutive_days is not None:
            out["consecutive_days"] = self.consecutive_days
        out["within"] = format_amount(self.within_h, "h")
        return out


@dataclass(frozen=True)
class ObservedCriterion:
    """The observed branch of a hazard, resolved."""

    lookback_h: float
    continue_within_h: float
    comparison: Comparison
    threshold: float
    units: str
    window_h: float | None = None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "lookback": format_amount(self.lookback_h, "h"),
            "continue_within": format_amount(self.continue_within_h, "h"),
            f"continue_{self.comparison}": format_amount(self.threshold, self.units),
        }
        if self.window_h is not None:
            out["continue_window"] = format_amount(self.window_h, "h")
        return out


def _one_comparison(model: BaseModel, allowed: tuple[str, ...], prefix: str = "") -> tuple[str, float]:
    given = [(c, getattr(model, prefix + c)) for c in allowed if getattr(model, prefix + c) is not None]
    if len(given) != 1:
        keys = " or ".join(prefix + c for c in allowed)
        raise ValueError(f"needs exactly one of {keys}" + (f" (got {len(given)})" if given else ""))
    return given[0]


class _LevelBase(_Model):
    within: Hours | None = None
    allowed: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _exactly_one_comparison(self) -> _LevelBase:
        _one_comparison(self, self.allowed)
        return self

    def comparison(self) -> tuple[Comparison, float]:
        c, v = _one_comparison(self, self.allowed)
        return c, v  # type: ignore[return-value]


class HeatLevel(_LevelBase):
    """A heat level: daily-maximum temperature at or above a threshold, on consecutive days or at any step."""

    ge: Celsius | None = None
    gt: Celsius | None = None
    consecutive_days: Annotated[int, Field(strict=True, ge=1, le=30)] | None = None
    allowed: ClassVar[tuple[str, ...]] = UPPER


class RainstormLevel(_LevelBase):
    """A rainstorm level: the accumulation in a running window at or above a threshold."""

    ge: Millimetres | None = None
    gt: Millimetres | None = None
    window: Hours
    allowed: ClassVar[tuple[str, ...]] = UPPER


class FrostLevel(_LevelBase):
    """A frost level: ground-surface minimum temperature at or below a threshold."""

    le: Celsius | None = None
    lt: Celsius | None = None
    allowed: ClassVar[tuple[str, ...]] = LOWER


class SandstormLevel(_LevelBase):
    """A sandstorm level: visibility below a threshold while dust is raised (see `SandstormCriteria`)."""

    le: Metres | None = None
    lt: Metres | None = None
    allowed: ClassVar[tuple[str, ...]] = LOWER


class _ObservedBase(_Model):
    lookback: Hours
    continue_within: Hours
    allowed: ClassVar[tuple[str, ...]] = ()

    @model_validator(mode="after")
    def _exactly_one_continuation(self) -> _ObservedBase:
        _one_comparison(self, self.allowed, "continue_")
        return self


class HeatObserved(_ObservedBase):
    continue_ge: Celsius | None = None
    continue_gt: Celsius | None = None
    allowed: ClassVar[tuple[str, ...]] = UPPER


class RainstormObserved(_ObservedBase):
    continue_ge: Millimetres | None = None
    continue_gt: Millimetres | None = None
    continue_window: Hours
    allowed: ClassVar[tuple[str, ...]] = UPPER


class FrostObserved(_ObservedBase):
    continue_le: Celsius | None = None
    continue_lt: Celsius | None = None
    allowed: ClassVar[tuple[str, ...]] = LOWER


class SandstormObserved(_ObservedBase):
    continue_le: Metres | None = None
    continue_lt: Metres | None = None
    allowed: ClassVar[tuple[str, ...]] = LOWER


class _HazardBase(_Model):
    source: Annotated[str, Field(strict=True, min_length=1)]
    months: Months
    within: Hours | None = None  # default horizon of the levels
    units: ClassVar[str] = ""

    @model_validator(mode="after")
    def _levels_complete_and_monotone(self) -> _HazardBase:
        present = [(name, getattr(self, name)) for name in SEVERITY if getattr(self, name, None) is not None]
        if not present:
            raise ValueError("needs at least one level (blue, yellow, orange or red)")
        for name, level in present:
            if level.within is None and self.within is None:
                raise _KeyedError(f"{name}.within", "missing (and the hazard has no default `within`)")
        for (weak_name, weak), (strong_name, strong) in pairwise(present):
            _, wv = weak.comparison()
            sc, sv = strong.comparison()
            weaker = sv < wv if sc in UPPER else sv > wv
            if weaker:
                raise _KeyedError(
                    f"{strong_name}.{sc}",
                    f"{strong_name} threshold {format_amount(sv, self.units)} is weaker than "
                    f"{weak_name}'s {format_amount(wv, self.units)}",
                )
            if hasattr(strong, "window") and strong.window > weak.window:
                raise _KeyedError(
                    f"{strong_name}.window",
                    f"{strong_name} window {strong.window:g} h is longer (weaker) than {weak_name}'s "
                    f"{weak.window:g} h",
                )
        return self

    def levels(self) -> tuple[LevelCriterion, ...]:
        """The configured levels, weakest first, with the hazard's defaults filled in."""
        out = []
        for name in SEVERITY:
            level = getattr(self, name, None)
            if level is None:
                continue
            comparison, threshold = level.comparison()
            within = level.within if level.within is not None else self.within
            assert within is not None  # checked by the validator
            out.append(
                LevelCriterion(
                    name=name,
                    comparison=comparison,
                    threshold=threshold,
                    units=self.units,
                    within_h=within,
                    window_h=getattr(level, "window", None),
                    consecutive_days=getattr(level, "consecutive_days", None),
                )
            )
        return tuple(out)

    def observed_criterion(self) -> ObservedCriterion:
        """The observed branch, resolved."""
        obs = self.observed  # type: ignore[attr-defined]
        comparison, threshold = _one_comparison(obs, obs.allowed, "continue_")
        return ObservedCriterion(
            lookback_h=obs.lookback,
            continue_within_h=obs.continue_within,
            comparison=comparison,  # type: ignore[arg-type]
            threshold=threshold,
            units=self.units,
            window_h=getattr(obs, "continue_window", None),
        )


class HeatCriteria(_HazardBase):
    """高温 heat: daily maximum 2 m temperature; days are local calendar days (see `Calendar`)."""

    min_day_coverage: Hours
    observed: HeatObserved
    blue: HeatLevel | None = None
    yellow: HeatLevel | None = None
    orange: HeatLevel | None = None
    red: HeatLevel | None = None
    units: ClassVar[str] = "degC"


class RainstormCriteria(_HazardBase):
    """暴雨 rainstorm: precipitation accumulated in running windows."""

    observed: RainstormObserved
    blue: RainstormLevel | None = None
    yellow: RainstormLevel | None = None
    orange: RainstormLevel | None = None
    red: RainstormLevel | None = None
    units: ClassVar[str] = "mm"


class FrostCriteria(_HazardBase):
    """霜冻 frost: ground-surface (0 cm) minimum temperature, in the growing season only."""

    air_to_ground_offset: KelvinDifference
    observed: FrostObserved
    blue: FrostLevel | None = None
    yellow: FrostLevel | None = None
    orange: FrostLevel | None = None
    red: FrostLevel | None = None
    units: ClassVar[str] = "degC"


class SandstormCriteria(_HazardBase):
    """沙尘暴 sandstorm: visibility below the level's threshold where gust, wind or dust shows raised dust."""

    gust_ge: MetresPerSecond | None = None
    wind_ge: MetresPerSecond | None = None
    dust_ge: AmountWithUnits | None = None
    observed: SandstormObserved
    blue: SandstormLevel | None = None
    yellow: SandstormLevel | None = None
    orange: SandstormLevel | None = None
    red: SandstormLevel | None = None
    units: ClassVar[str] = "m"

    @model_validator(mode="after")
    def _needs_a_dust_condition(self) -> SandstormCriteria:
        if self.gust_ge is None and self.wind_ge is None and self.dust_ge is None:
            raise ValueError(
                "needs gust_ge, wind_ge or dust_ge: low visibility without raised dust is fog, not a sandstorm"
            )
        return self


class Calendar(_Model):
    """Local time for calendar days and months: Beijing time is UTC+8."""

    utc_offset: SignedHours


class Criteria(_Model):
    """All warning criteria; build it with `load_criteria`."""

    calendar: Calendar
    heat: HeatCriteria
    rainstorm: RainstormCriteria
    frost: FrostCriteria
    sandstorm: SandstormCriteria
    files: tuple[str, ...] = ()  # the files merged, defaults first (set by load_criteria)

    def hazard(self, name: str) -> HeatCriteria | RainstormCriteria | FrostCriteria | SandstormCriteria:
        """The criteria of one hazard by name."""
        if name not in HAZARDS:
            raise ValueError(f"unknown hazard '{name}'; known: {', '.join(HAZARDS)}")
        return cast(
            "HeatCriteria | RainstormCriteria | FrostCriteria | SandstormCriteria", getattr(self, name)
        )


# ---------------------------------------------------------------------------------------------- loading


def load_criteria(override: Path | None = None) -> Criteria:
    """The packaged national criteria with a region's override file merged over them, validated.

    The override may hold any subset of keys: tables merge key by key, values (and arrays such as
    ``months``) replace. A region may add a level the defaults lack by giving all its keys. Every problem
    (unreadable or malformed TOML, an unknown hazard, level or key, a value without units or in the wrong
    units, thresholds that weaken from one level to the next) raises `CriteriaError` naming the file and the
    key, in one line. The defaults are validated on their own first, so a problem that appears only after
    merging is the override's.

    >>> import tempfile
    >>> with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
    ...     _ = f.write('[rainstorm.blue]\\nge = "40 mm"\\n')
    >>> load_criteria(Path(f.name)).rainstorm.levels()[0].threshold
    40.0
    """
    default_path = default_criteria_path()
    raw = read_toml(default_path, CriteriaError)
    criteria = _validate(raw, default_path)
    files = [str(default_path)]
    if override is not None:
        override = Path(override)
        extra = read_toml(override, CriteriaError)
        if "files" in extra:
            raise CriteriaError(
                override, f"files: unknown key; known keys here: {', '.join(_known_keys(()))}"
            )
        criteria = _validate(_merge(raw, extra), override)
        files.append(str(override))
    return criteria.model_copy(update={"files": tuple(files)})


def _validate(raw: Mapping[str, Any], source: Path) -> Criteria:
    try:
        return Criteria.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = tuple(str(x) for x in err["loc"])
        error = (err.get("ctx") or {}).get("error")
        if isinstance(error, _KeyedError):
            loc = (*loc, *error.key.split("."))
            problem = str(error).split(": ", 1)[1]
        elif err["type"] == "extra_forbidden":
            problem = f"unknown key; known keys here: {', '.join(_known_keys(loc[:-1]))}"
        elif err["type"] == "missing":
            problem = "missing"
        else:
            problem = err["msg"].removeprefix("Value error, ")
        where = ".".join(loc) or "(top level)"
        raise CriteriaError(source, " ".join(f"{where}: {problem}".split())) from e


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _known_keys(loc: tuple[str, ...]) -> list[str]:
    model: Any = Criteria
    for key in loc:
        field = (
            model.model_fields.get(key) if isinstance(model, type) and issubclass(model, BaseModel) else None
        )
        if field is None:
            return []
        model = _model_of(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [k for k in model.model_fields if k != "files"]
    return []


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is not None:
        for arg in get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None
