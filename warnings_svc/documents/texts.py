"""Warning texts for every channel and language, rendered from jinja2 templates and checked against budgets.

The data (hazard names, level words, criteria wording, the defensive guidance of CMA Order No. 16) is in
``warnings_svc/config/texts.toml``; the sentence structure is in ``templates/texts/{lang}/{channel}.j2``;
this module picks the words, formats times and numbers, and keeps every text within its channel's budget.

Conventions where the national texts are silent:

- Headlines follow GB/T 35965.1 usage: ``乌海市气象台发布高温橙色预警[Ⅱ级/严重]``; an Update says ``更新``
  and carries the label of the level now in force; a Cancel says ``解除`` and carries no label.
- Times: Chinese texts in Beijing time, ``7月9日16时`` (``16时30分`` when the minutes are not zero);
  English ``16:00 9 July (UTC+8)``. The year is added when it differs from ``now``'s. ``now`` (default: the
  message's ``sent``) also decides the spoken day names of the broadcast script (今天, 明天 / today, tomorrow).
- The observed branch ("已达…并可能持续") is used for ``observed`` and ``forecast+observed`` messages.
- Channels with a budget try richer versions first and keep the first that fits (all area names before a
  summary; the full guidance before its one-sentence ``brief``); when none fits, the leanest is returned
  and `check_budgets` reports it.
- `summarise_areas` gives ``area_desc``: the names joined if short enough, else per county ("海勃湾区、
  乌达区部分地区"; a whole jurisdiction is named as such, "乌海市"), else "乌海市部分地区".
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import jinja2
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from channels.sms.encoding import (
    GSM7_BASIC_TABLE,
    GSM7_EXTENSION_TABLE,
    PART_LIMIT,
    SINGLE_LIMIT,
    segment_count,
    sms_coding,
)
from risk_zoning.errors import RegionDataError
from risk_zoning.io.tomlfile import read_toml
from risk_zoning.region import RegionFile, builtin_regions, load_region_file
from warnings_svc.documents.message import Area, Issuer, WarningMessage
from warnings_svc.documents.wording import (
    TextsError,
    beijing_time,
    en_clock,
    en_ordinal,
    en_spoken_time,
    en_time,
    spoken_en,
    spoken_zh,
    zh_spoken_time,
    zh_time,
)
from warnings_svc.vocabulary import HAZARD_LEVELS

logger = logging.getLogger(__name__)

Lang = Literal["zh-CN", "en"]
LANGUAGES: tuple[Lang, ...] = ("zh-CN", "en")
LANGUAGE_ALIASES: dict[str, Lang] = {"zh-CN": "zh-CN", "zh": "zh-CN", "zh-Hans": "zh-CN", "en": "en"}
# GB/T 35965.1 code/method names -> the text each one carries
CHANNELS: tuple[str, ...] = ("SMS", "SPEAKER", "BROADCAST", "LED", "WEB", "TV")


# ---------------------------------------------------------------------------------------------- encodings

# The alphabet, limits and splitting are the SMS channel's (channels.sms.encoding): the budgets checked here
# are then exactly the parts the channel sends.
GSM7_BASIC = frozenset(GSM7_BASIC_TABLE) - {"\x1b"}  # 0x1B is the escape, not a character
GSM7_EXTENSION = frozenset(GSM7_EXTENSION_TABLE)
SMS_SINGLE = SINGLE_LIMIT  # characters in a message of one segment
SMS_PART = PART_LIMIT  # per segment of a concatenated message (6-octet UDH)
CBS_PAGE = {"GSM-7": 93, "UCS2": 41}  # per cell-broadcast page (82 octets, 3GPP TS 23.041)


def sms_encoding(text: str) -> Literal["GSM-7", "UCS2"]:
    """GSM-7 when every character is in the GSM 03.38 alphabet or its extension table, else UCS2.

    >>> sms_encoding("Heat warning"), sms_encoding("高温预警"), sms_encoding("37 °C")
    ('GSM-7', 'UCS2', 'UCS2')
    """
    return "GSM-7" if sms_coding(text) == "GSM-7" else "UCS2"


def sms_length(text: str) -> int:
    """Length in the unit the encoding counts: septets for GSM-7 (extension characters take two), UTF-16
    code units for UCS2 (a character outside the BMP, such as an emoji, takes two).

    >>> sms_length("[ok]"), sms_length("预警"), sms_length("预警🌡")
    (6, 2, 4)
    """
    if sms_encoding(text) == "GSM-7":
        return sum(2 if c in GSM7_EXTENSION else 1 for c in text)
    return len(text.encode("utf-16-le")) // 2


def sms_segments(text: str) -> int:
    """SMS segments the text needs: one up to 70 UCS2 (160 GSM-7) characters, else about ceil(n / 67)
    (ceil(n / 153)), one more when a character outside the BMP would straddle two parts; empty text needs
    none. The same split the SMS channel sends (`channels.sms.encoding.segment_count`).

    >>> sms_segments("预" * 70), sms_segments("预" * 71), sms_segments("预" * 134), sms_segments("预" * 135)
    (1, 2, 2, 3)
    >>> sms_segments("a" * 160), sms_segments("a" * 161)
    (1, 2)
    """
    return segment_count(text)


def cbs_pages(text: str) -> int:
    """Cell-broadcast pages the text needs: 93 GSM-7 or 41 UCS2 characters a page; empty text needs none.

    >>> cbs_pages("预" * 41), cbs_pages("预" * 42), cbs_pages("a" * 93), cbs_pages("a" * 94)
    (1, 2, 1, 2)
    """
    return math.ceil(sms_length(text) / CBS_PAGE[sms_encoding(text)])


# ---------------------------------------------------------------------------------------------- budgets


@dataclass(frozen=True)
class Budgets:
    """Length limits of the rendered texts; every limit is an inclusive maximum."""

    headline_chars: int = 140  # Google's CAP ingest rule
    area_desc_chars: int = 49  # Google's CAP ingest rule: areaDesc under 50 characters
    sms_short_segments: int = 1  # one SMS: 70 UCS2 or 160 GSM-7 characters
    sms_full_segments: int = 3
    # the broadcast script, read twice: about 3 min 20 s at a slow 180 Chinese characters a minute; English
    # takes about 3.5 characters for one Chinese character at the same pace
    broadcast_chars: int = 600
    broadcast_chars_en: int = 2000
    cell_broadcast_pages: int = 15  # 3GPP TS 23.041

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"Budgets.{name} must be a positive integer (got {value!r})")

    def broadcast_limit(self, lang: str) -> int:
        """The broadcast budget of a language: ``broadcast_chars_en`` for English, else ``broadcast_chars``."""
        return self.broadcast_chars_en if lang == "en" else self.broadcast_chars


DEFAULT_BUDGETS = Budgets()


@dataclass(frozen=True)
class BudgetProblem:
    """One text over its budget, e.g. ``sms_full: 4 segments, at most 3 allowed (210 UCS2 characters)``."""

    field: str  # the WarningTexts field
    unit: str  # characters | segments | pages
    limit: int
    actual: int
    detail: str = ""

    def __str__(self) -> str:
        more = f" ({self.detail})" if self.detail else ""
        return f"{self.field}: {self.actual} {self.unit}, at most {self.limit} allowed{more}"


# ---------------------------------------------------------------------------------------------- plain text

# a line break asked for by a template ({{ br }}); data cannot hold it, clean_text removes control characters
_BREAK = "\x1e"


def clean_text(value: str) -> str:
    """One line of plain text: control and format characters removed, any white space made one space.

    >>> clean_text(" 海勃湾区\\n\\u200b(测试)\\x07 ")
    '海勃湾区 (测试)'
    """
    kept = []
    for ch in value:
        if ch.isspace():
            kept.append(" ")
        elif unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            kept.append(ch)
    return " ".join("".join(kept).split())


def _line(value: str) -> str:
    text = clean_text(value)
    if not text:
        raise ValueError("must not be empty")
    return text


Line = Annotated[str, AfterValidator(_line)]


def _layout(raw: str, lang: Lang) -> str:
    """Template output to text: the lines of a template are joined (no separator in Chinese, a space in
    English); ``{{ br }}`` starts a new line."""
    joiner = "" if lang == "zh-CN" else " "
    paragraphs = []
    for block in raw.split(_BREAK):
        text = joiner.join(part.strip() for part in block.splitlines() if part.strip())
        if lang == "en":
            text = re.sub(r"\s+(?=[.,;:!?])", "", " ".join(text.split()))
        if text:
            paragraphs.append(text)
    return "\n".join(paragraphs)


_GSM_FRIENDLY = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "–": "-", "—": "-", "…": "..."})


def _gsm_friendly(text: str) -> str:
    """English for SMS and cell broadcast: a degree sign or curly quote would switch the text to UCS2."""
    return re.sub(r"\s?°C", "C", text).translate(_GSM_FRIENDLY)


# ---------------------------------------------------------------------------------------------- configuration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


MsgTypeKey = Literal["Alert", "Update", "Cancel"]


def _separator(value: str) -> str:
    if not value or any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
        raise ValueError("must be non-empty plain text")
    return value


def _part_of(value: str) -> str:
    value = _line(value)
    rest = value.replace("{name}", "", 1)
    if "{name}" not in value or "{" in rest or "}" in rest:
        raise ValueError("must contain {name} once and no other braces")
    return value


class Phrases(_Strict):
    verb: dict[MsgTypeKey, Line]  # headline verb: 发布 / 更新 / 解除
    participle: dict[MsgTypeKey, Line]  # English "issued by"; in Chinese the verb again
    list_separator: Annotated[str, AfterValidator(_separator)]
    part_of: Annotated[str, AfterValidator(_part_of)]  # "{name}部分地区"

    @model_validator(mode="after")
    def _every_msg_type(self) -> Phrases:
        for name in ("verb", "participle"):
            missing = {"Alert", "Update", "Cancel"} - set(getattr(self, name))
            if missing:
                raise ValueError(f"{name} needs {', '.join(sorted(missing))}")
        return self


class LevelWords(_Strict):
    colour: Line
    label: Line
    impact: Line
    spoken: Line


class LevelTexts(_Strict):
    forecast: Line
    observed: Line
    guidance: tuple[Line, ...] = Field(min_length=1)
    brief: Line
    core: Line


class HazardTexts(_Strict):
    source: Line
    name: dict[Lang, Line]
    levels: dict[str, dict[Lang, LevelTexts]]


class TextsConfig(_Strict):
    """The schema of ``texts.toml``: every hazard and level of `HAZARD_LEVELS` in every language."""

    phrases: dict[Lang, Phrases]
    levels: dict[str, dict[Lang, LevelWords]]
    hazards: dict[str, HazardTexts]

    @model_validator(mode="after")
    def _complete(self) -> TextsConfig:
        def langs(where: str, table: Mapping[Lang, Any]) -> None:
            missing = [lang for lang in LANGUAGES if lang not in table]
            if missing:
                raise ValueError(f"{where}: no {', '.join(missing)} texts")

        langs("phrases", self.phrases)
        for level, words in self.levels.items():
            langs(f"levels.{level}", words)
        for hazard, levels in HAZARD_LEVELS.items():
            if hazard not in self.hazards:
                raise ValueError(f"hazards.{hazard}: missing")
            hz = self.hazards[hazard]
            langs(f"hazards.{hazard}.name", hz.name)
            for level in levels:
                if level not in hz.levels:
                    raise ValueError(f"hazards.{hazard}.levels.{level}: missing")
        for hazard, hz in self.hazards.items():
            for level, texts in hz.levels.items():
                if level not in self.levels:
                    raise ValueError(f"hazards.{hazard}.levels.{level}: no [levels.{level}] words")
                langs(f"hazards.{hazard}.levels.{level}", texts)
        return self


def default_texts_path() -> Path:
    """The packaged texts (national guidance, CMA 2007)."""
    return Path(str(resources.files("warnings_svc") / "config" / "texts.toml"))


def load_texts(path: Path | None = None) -> TextsConfig:
    """Read and validate a texts file (default: the packaged one); problems raise `TextsError` naming the key."""
    path = path or default_texts_path()
    raw = read_toml(path, lambda p, problem: TextsError(f"{p}: {problem}"))
    try:
        return TextsConfig.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "(top level)"
        raise TextsError(f"{path}: {where}: {err['msg'].removeprefix('Value error, ')}") from e


@cache
def _packaged_texts() -> TextsConfig:
    return load_texts()


# ---------------------------------------------------------------------------------------------- places


@dataclass(frozen=True)
class Places:
    """The issuer's jurisdiction and its counties, to summarise area lists too long to name one by one."""

    jurisdiction: Area  # e.g. Area("150300000000", "乌海市", "Wuhai")
    counties: tuple[Area, ...] = ()  # 12-digit codes ending in 000000
    towns: Mapping[str, frozenset[str]] = field(default_factory=dict)  # county code (6 digits) -> town codes

    @classmethod
    def from_region_file(cls, cfg: RegionFile) -> Places:
        """The places of a region's ``region.toml``."""
        r = cfg.region
        towns: dict[str, set[str]] = {}
        for t in cfg.town:
            towns.setdefault(t.district, set()).add(t.code)
        return cls(
            jurisdiction=Area(f"{r.code}000000", r.name, r.name_en),
            counties=tuple(Area(f"{d.code}000000", d.name, d.name_en) for d in cfg.district),
            towns={k: frozenset(v) for k, v in towns.items()},
        )


@cache
def _builtin_places() -> dict[str, Places]:
    found: dict[str, Places] = {}
    for folder in sorted(builtin_regions().iterdir()):
        if not (folder / "region.toml").is_file():
            continue
        try:
            cfg = load_region_file(folder / "region.toml")
        except RegionDataError as e:
            logger.warning("region skipped for area names", extra={"region": folder.name, "error": str(e)})
            continue
        found[cfg.region.code[:4]] = Places.from_region_file(cfg)
    return found


_ISSUER_SUFFIXES = ("气象台", "气象局", " Meteorological Observatory", " Meteorological Bureau")


def places_for(msg: WarningMessage) -> Places:
    """The built-in region whose city code the message's areas share; failing that, a jurisdiction named
    after the issuer without its suffix (乌海市气象台 -> 乌海市) and no counties."""
    prefixes = {a.code[:4] for a in msg.areas}
    if len(prefixes) == 1 and (places := _builtin_places().get(prefixes.pop())):
        return places
    return Places(jurisdiction=_issuer_area(msg.issuer))


def _issuer_area(issuer: Issuer) -> Area:
    def strip(name: str) -> str:
        name = clean_text(name)
        for suffix in _ISSUER_SUFFIXES:
            if name.endswith(suffix) and len(name) > len(suffix):
                return name.removesuffix(suffix)
        return name

    return Area("", strip(issuer.name), strip(issuer.name_en))


def _area_name(area: Area, lang: Lang) -> str:
    name = clean_text(area.name_en) if lang == "en" else ""
    return name or clean_text(area.name)


def summarise_areas(
    areas: Iterable[Area], *, lang: Lang, places: Places, phrases: Phrases, max_chars: int
) -> str:
    """The area description, at most ``max_chars`` characters when it can be.

    1. The names joined (``海勃湾区、乌达区``) when that fits.
    2. Else per county, in order of first mention: a county named itself, or all of whose towns (as the
       region lists them) are named, by its name; a county partly named as ``<county>部分地区`` / ``parts of
       <county>``; when every county of the jurisdiction is whole, the jurisdiction's name (``乌海市``).
       Only when every county is known and the result fits.
    3. Else ``<jurisdiction>部分地区`` / ``parts of <jurisdiction>``.

    >>> p = Places(Area("150300000000", "乌海市", "Wuhai"), (Area("150302000000", "海勃湾区", "Haibowan"),))
    >>> ph = _packaged_texts().phrases["zh-CN"]
    >>> summarise_areas([Area("150302001000", "新华街道", "Xinhua")] * 9, lang="zh-CN", places=p, phrases=ph, max_chars=20)
    '海勃湾区部分地区'
    """
    areas = [a for a in areas if _area_name(a, lang)]
    joined = phrases.list_separator.join(_area_name(a, lang) for a in areas)
    if len(joined) <= max_chars:
        return joined
    city = places.jurisdiction
    city_name = _area_name(city, lang)
    if city.code and any(a.code == city.code for a in areas):
        return city_name
    counties = {c.code[:6]: c for c in places.counties}
    named: dict[str, set[str]] = {}
    for a in areas:
        named.setdefault(a.code[:6], set()).add(a.code)
    if counties and set(named) <= set(counties):
        parts, whole = [], set()
        for county, codes in named.items():
            towns = places.towns.get(county, frozenset())
            if counties[county].code in codes or (towns and towns <= codes):
                whole.add(county)
                parts.append(_area_name(counties[county], lang))
            else:
                parts.append(phrases.part_of.format(name=_area_name(counties[county], lang)))
        if whole == set(counties):
            return city_name
        text = phrases.list_separator.join(parts)
        if len(text) <= max_chars:
            return text
    return phrases.part_of.format(name=city_name)


def _prose_list(names: list[str], lang: Lang, separator: str) -> str:
    if lang == "en" and len(names) > 1:
        return ", ".join(names[:-1]) + " and " + names[-1]
    return separator.join(names)


# ---------------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class WarningTexts:
    """The texts of one message in one language.

    ``channels`` holds the GB/T 35965.1 per-method texts: SMS the full SMS, SPEAKER and BROADCAST the spoken
    script, LED the one-segment text without the SMS signature, WEB headline + description + guidance a line
    each, TV the description with the brief guidance.
    """

    lang: Lang
    event: str
    headline: str
    description: str
    instruction: str
    area_desc: str
    sms_short: str
    sms_full: str
    broadcast: str
    cell_broadcast: str
    channels: dict[str, str]

    @property
    def sms_full_segments(self) -> int:
        """SMS segments of ``sms_full``."""
        return sms_segments(self.sms_full)

    @property
    def cell_broadcast_pages(self) -> int:
        """Cell-broadcast pages of ``cell_broadcast``."""
        return cbs_pages(self.cell_broadcast)


def _templates_root() -> Path:
    return Path(str(resources.files("warnings_svc") / "templates" / "texts"))


@cache
def _environment() -> jinja2.Environment:
    # plain text: no escaping; the data is cleaned of control characters before it reaches a template
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(_templates_root()),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        # a line break after a block tag is kept: _layout joins lines (with a space in English)
        trim_blocks=False,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
    )


def _render(name: str, lang: Lang, context: Mapping[str, Any]) -> str:
    template = _environment().get_template(f"{lang}/{name}.j2")
    return _layout(template.render(context), lang)


def _first_fitting(
    name: str,
    lang: Lang,
    context: Mapping[str, Any],
    variants: Iterable[Mapping[str, Any]],
    fits: Callable[[str], bool],
    finish: Callable[[str], str] = lambda text: text,
) -> str:
    text = ""
    for variant in variants:
        text = finish(_render(name, lang, {**context, **variant}))
        if fits(text):
            return text
    return text


def _population(n: int | None, lang: Lang) -> str:
    if n is None or n < 0:
        return ""
    if lang == "zh-CN":
        if n >= 10_000:
            return f"约{n / 10_000:.1f}".removesuffix(".0") + "万人"
        return f"约{round(n, -2) if n >= 1000 else n}人"
    rounded = round(n, 3 - len(str(n))) if n >= 1000 else n
    return f"about {rounded:,} {'person' if n == 1 else 'people'}"


def _sentence(text: str, lang: Lang) -> str:
    """Free text (a note) cleaned and ended with a full stop when it has none."""
    text = clean_text(text)
    if text and text[-1] not in "。！？.!?":
        text += "。" if lang == "zh-CN" else "."
    return text


def _language(lang: str) -> Lang:
    try:
        return LANGUAGE_ALIASES[lang]
    except KeyError:
        raise TextsError(f"no texts in language {lang!r}; known: {', '.join(LANGUAGES)}") from None


def _context(
    msg: WarningMessage, language: Lang, now: datetime, cfg: TextsConfig, where: Places, budgets: Budgets
) -> dict[str, Any]:
    """The template variables of one message: words from the configuration, cleaned data, time formatters."""
    hazard = cfg.hazards.get(msg.hazard)
    if hazard is None or msg.level not in hazard.levels:
        raise TextsError(f"no texts for hazard {msg.hazard!r} at level {msg.level!r}")
    words = cfg.levels[msg.level][language]
    wording = hazard.levels[msg.level][language]
    phrases = cfg.phrases[language]
    names = [_area_name(a, language) for a in msg.areas if _area_name(a, language)]
    if not names:
        raise TextsError(f"message {msg.identifier} names no areas")
    observed = msg.branch != "forecast"  # forecast+observed: the threshold is already reached somewhere
    written = zh_time if language == "zh-CN" else en_time
    spoken = zh_spoken_time if language == "zh-CN" else en_spoken_time
    return {
        "msg_type": msg.msg_type,
        "observed": observed,
        "issuer": _area_name(Area("", msg.issuer.name, msg.issuer.name_en), language),
        "event": hazard.name[language],
        "verb": phrases.verb[msg.msg_type],
        "participle": phrases.participle[msg.msg_type],
        "colour": words.colour,
        "label": words.label,
        "impact": words.impact,
        "spoken_label": words.spoken,
        "criterion": wording.observed if observed else wording.forecast,
        "guidance": list(wording.guidance),
        "brief": wording.brief,
        "core": wording.core,
        "sent": msg.sent,
        "onset": msg.onset,
        "expires": msg.expires,
        "onset_later": msg.onset > msg.sent,
        "areas": _prose_list(names, language, phrases.list_separator),
        "area_desc": summarise_areas(
            msg.areas, lang=language, places=where, phrases=phrases, max_chars=budgets.area_desc_chars
        ),
        "area_wide": phrases.part_of.format(name=_area_name(where.jurisdiction, language)),
        "population": _population(msg.exposed_population, language),
        "note": _sentence(msg.note, language),
        "br": _BREAK,
        "ordinal": en_ordinal,
        "written": lambda dt: written(dt, now),
        "clock": lambda dt: en_clock(dt, now),
        "spoken_time": lambda dt: spoken(dt, now),
    }


def render_texts(
    msg: WarningMessage,
    *,
    lang: str,
    now: datetime | None = None,
    budgets: Budgets = DEFAULT_BUDGETS,
    config: TextsConfig | None = None,
    places: Places | None = None,
) -> WarningTexts:
    """All texts of one message in one language (``zh-CN`` or ``en``), each within ``budgets`` when it can be.

    ``now`` (default ``msg.sent``) decides the broadcast's day words and when a year is written; ``config``
    defaults to the packaged ``texts.toml``; ``places`` to the built-in region of the message's areas.
    Raises `TextsError` for an unknown language, hazard or level, a message without areas or a naive time.
    """
    language = _language(lang)
    now = msg.sent if now is None else now
    for dt in (msg.sent, msg.onset, msg.expires, now):
        beijing_time(dt)
    ctx = _context(msg, language, now, config or _packaged_texts(), places or places_for(msg), budgets)
    areas, area_desc, area_wide = ctx["areas"], ctx["area_desc"], ctx["area_wide"]
    # richer first: every name before the summary, the full guidance before its brief
    rich = [
        {"area": areas, "full": True},
        {"area": areas, "full": False},
        {"area": area_desc, "full": True},
        {"area": area_desc, "full": False},
        {"area": area_wide, "full": False},
    ]
    # the criterion and the SMS signature before the bare signal, area and core instruction
    short = [
        {"area": area, "detail": detail, "signature": signature}
        for area, detail, signature in (
            (area_desc, True, True),
            (area_desc, False, True),
            (area_wide, False, True),
            (area_desc, False, False),
            (area_wide, False, False),
        )
    ]
    sms: Callable[[str], str] = _gsm_friendly if language == "en" else (lambda text: text)
    spoken: Callable[[str], str] = spoken_en if language == "en" else spoken_zh

    def segments_within(limit: int) -> Callable[[str], bool]:
        return lambda text: sms_segments(text) <= limit

    def render(
        name: str,
        variants: Iterable[Mapping[str, Any]],
        fits: Callable[[str], bool],
        finish: Callable[[str], str] = sms,
    ) -> str:
        return _first_fitting(name, language, ctx, variants, fits, finish)

    one_segment = segments_within(budgets.sms_short_segments)
    sms_short = render("sms_short", short, one_segment)
    sms_full = render("sms_full", rich, segments_within(budgets.sms_full_segments))
    broadcast = render("broadcast", rich, lambda t: len(t) <= budgets.broadcast_limit(language), spoken)
    cell_broadcast = render("cell_broadcast", rich, lambda t: cbs_pages(t) <= budgets.cell_broadcast_pages)
    return WarningTexts(
        lang=language,
        event=ctx["event"],
        headline=_render("headline", language, ctx),
        description=_render("description", language, {**ctx, "area": areas}),
        instruction=_render("instruction", language, ctx),
        area_desc=area_desc,
        sms_short=sms_short,
        sms_full=sms_full,
        broadcast=broadcast,
        cell_broadcast=cell_broadcast,
        channels={
            "SMS": sms_full,
            "SPEAKER": broadcast,
            "BROADCAST": broadcast,
            "LED": render("led", short, one_segment),
            "WEB": _render("web", language, {**ctx, "area": areas, "full": True}),
            "TV": _render("tv", language, {**ctx, "area": areas, "full": False}),
        },
    )


def check_budgets(texts: WarningTexts, budgets: Budgets = DEFAULT_BUDGETS) -> list[BudgetProblem]:
    """Every text over its budget, for the console to show before approval; empty when all fit.

    Headline and area_desc count characters (code points), the broadcast script characters, SMS texts
    segments (`sms_segments`), the cell-broadcast text pages (`cbs_pages`).
    """

    def encoded(text: str) -> str:
        return f"{sms_length(text)} {sms_encoding(text)} characters"

    measured = [
        ("headline", "characters", len(texts.headline), budgets.headline_chars, ""),
        ("area_desc", "characters", len(texts.area_desc), budgets.area_desc_chars, ""),
        (
            "sms_short",
            "segments",
            sms_segments(texts.sms_short),
            budgets.sms_short_segments,
            encoded(texts.sms_short),
        ),
        (
            "sms_full",
            "segments",
            sms_segments(texts.sms_full),
            budgets.sms_full_segments,
            encoded(texts.sms_full),
        ),
        ("broadcast", "characters", len(texts.broadcast), budgets.broadcast_limit(texts.lang), ""),
        (
            "cell_broadcast",
            "pages",
            cbs_pages(texts.cell_broadcast),
            budgets.cell_broadcast_pages,
            encoded(texts.cell_broadcast),
        ),
    ]
    return [
        BudgetProblem(name, unit, limit, actual, detail)
        for name, unit, actual, limit, detail in measured
        if actual > limit
    ]
