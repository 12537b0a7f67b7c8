"""Recipients: the people warnings reach by SMS, imported from CSV, and which of them a warning selects.

Pure checks of one CSV row (`check_phone`, `check_row`, by the pydantic model `RecipientCsvRow`), the reach of
a warning's areas in the unit tree (`reach`, `relevant_areas`) and the alert-fatigue rule (`needs_message`)
sit apart from the repository functions on an asyncpg connection (`import_csv`, `opt_out`,
`select_recipients`, `count_recipients`).

Decisions where the issue is silent:

- Phones are Chinese mobile numbers only, stored in E.164 (``+8613912345678``): 11 national digits
  ``1[3-9]…``, or with ``+86``, ``0086`` or ``86`` before them; spaces, dashes, dots and brackets are
  ignored, full-width digits folded. A landline (``0473-…``) is rejected as unable to receive SMS.
- Areas are units of the region (6-, 9- or 12-digit codes, padded to 12 digits). A warning reaches a person
  when one of its areas and one of theirs share ground, both ways (`reach`): a town's relayer is reached by
  a warning for the district around the town, and a district's responsible person by a warning for one
  town inside it; two neighbouring districts do not reach each other.
- Import is one transaction for the accepted rows; rejected rows are reported (line, column, value, reason;
  every problem of a row) and skipped, never half-written. A later row with a phone already seen in the
  file is rejected ("same phone as line N"). Re-importing updates by phone; a row that changes nothing is
  counted as unchanged and keeps its ``updated_at``.
- Consent: a public subscriber needs ``consent`` = yes or the row is rejected. People in a duty role
  (responsible person, relayer, village head, department) with the consent column empty are registered on
  the basis of their duty (``consent_basis`` = duty); ``consent`` = no keeps them registered and never
  texted. A consent time without an offset is Beijing time; none given: the time of the import (kept on
  re-import while consent stands).
- Opt-out keeps the row (``opted_out_at``) and excludes it from every selection; a re-import does not undo
  it.
- Exercise warnings select only designated test recipients (``test_recipient``); real warnings select them
  too, like anyone else.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict, TypeVar, cast

import asyncpg
from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from risk_zoning import BEIJING, HAZARD_NAMES, HAZARDS
from risk_zoning.store import UnitRecord, region_units
from risk_zoning.unit_tree import ancestors, geocode, same_or_nested
from warnings_svc.dissemination import csv_files
from warnings_svc.documents.texts import LANGUAGES

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 80
MAX_GROUP_CHARS = 80

REQUIRED_COLUMNS: tuple[str, ...] = ("name", "phone", "areas", "roles")
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "language",
    "hazards",
    "consent",
    "consent_at",
    "test_recipient",
    "groups",
)
COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS

_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_PHONE_NOISE = re.compile(r"[\s\-().]")
_LIST_SEPARATORS = re.compile(r"[;|,、，；\s]+")
_T = TypeVar("_T")


class RecipientRole(StrEnum):
    """Why a person is registered; all but the public subscriber are duties."""

    responsible_person = "responsible_person"
    relayer = "relayer"  # 气象信息员: passes warnings on in a village or a neighbourhood
    village_head = "village_head"
    public_subscriber = "public_subscriber"
    department = "department"


DUTY_ROLES: frozenset[RecipientRole] = frozenset(RecipientRole) - {RecipientRole.public_subscriber}

_ROLE_ALIASES: Mapping[str, RecipientRole] = {
    "责任人": RecipientRole.responsible_person,
    "气象信息员": RecipientRole.relayer,
    "信息员": RecipientRole.relayer,
    "村长": RecipientRole.village_head,
    "村委会主任": RecipientRole.village_head,
    "嘎查达": RecipientRole.village_head,
    "公众": RecipientRole.public_subscriber,
    "部门": RecipientRole.department,
}
_HAZARD_ALIASES: Mapping[str, str] = {name: hazard for hazard, name in HAZARD_NAMES["zh"].items()}
_LANGUAGE_ALIASES: Mapping[str, str] = {
    "zh-cn": "zh-CN",
    "zh": "zh-CN",
    "中文": "zh-CN",
    "en": "en",
    "english": "en",
}
_TRUE: frozenset[str] = frozenset({"yes", "y", "true", "1", "是", "同意"})
_FALSE: frozenset[str] = frozenset({"no", "n", "false", "0", "否", "不同意"})


# ---------------------------------------------------------------------------------------------- errors


class RecipientError(Exception):
    """A recipient operation that cannot be done as asked (unreadable file, bad phone ...); one line."""


class RowError(RecipientError):
    """A CSV row that cannot be registered; `problems` holds (column, value, reason) for each of its faults."""

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{column}: {reason}" for column, _, reason in problems))


# ---------------------------------------------------------------------------------------------- values


@dataclass(frozen=True)
class RecipientRow:
    """One checked CSV row, ready to write. `consent_at` None: the time of the import."""

    name: str
    phone: str
    language: str
    areas: tuple[str, ...]
    roles: tuple[str, ...]
    hazards: tuple[str, ...]
    consent: bool
    consent_basis: str | None
    consent_at: datetime | None
    test_recipient: bool
    groups: tuple[str, ...]


@dataclass(frozen=True)
class Rejection:
    """Why a CSV row was not imported: its line (the header is line 1), the column, the value, the reason."""

    line: int
    column: str
    value: str
    reason: str


@dataclass(frozen=True)
class ImportReport:
    """What an import did. `opted_out`: rows of the file whose person had opted out (kept out)."""

    inserted: int
    updated: int
    unchanged: int
    opted_out: int
    rejected_rows: int
    rejected: list[Rejection]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Recipient:
    """A person a warning selects."""

    id: int
    name: str
    phone: str
    language: str
    areas: tuple[str, ...]
    roles: tuple[str, ...]
    hazards: tuple[str, ...]
    test_recipient: bool


# ---------------------------------------------------------------------------------------------- one row


def check_phone(raw: str) -> str:
    """The E.164 form of a Chinese mobile number, else `RecipientError` saying why.

    >>> check_phone("139 1234 5678"), check_phone("0086-13912345678")
    ('+8613912345678', '+8613912345678')
    """
    text = _PHONE_NOISE.sub("", unicodedata.normalize("NFKC", raw))
    if not text:
        raise RecipientError("a phone number is required")
    international = text.startswith(("+", "00"))
    digits = text[1:] if text.startswith("+") else text[2:] if text.startswith("00") else text
    if not re.fullmatch(r"[0-9]+", digits):
        raise RecipientError(f"phone {raw[:40]!r} has characters other than digits")
    if international:
        if not digits.startswith("86"):
            raise RecipientError("only Chinese mobile numbers (+86 1[3-9]…) can be registered")
        national = digits[2:]
    elif len(digits) == 13 and digits.startswith("86"):
        national = digits[2:]
    else:
        national = digits
    if _MOBILE.fullmatch(national):
        return "+86" + national
    if national.startswith("0") or (international and national[:1] in "23456789" and len(national) >= 9):
        raise RecipientError("a landline cannot receive SMS; give a mobile number (11 digits, 1[3-9]…)")
    if 7 <= len(national) <= 8 and national[0] != "1":
        raise RecipientError("a local landline number cannot receive SMS; give a mobile number")
    raise RecipientError("not a Chinese mobile number (11 digits starting 13 to 19)")


def full_code(code: str) -> str:
    """A 6-, 9- or 12-digit admin code as its 12-digit geocode, else `RecipientError`."""
    code = unicodedata.normalize("NFKC", code).strip()
    full = geocode(code)
    if full is None:
        raise RecipientError(f"area {code[:20]!r} is not a 6-, 9- or 12-digit admin code")
    return full


def _items(value: str) -> list[str]:
    return [v for v in _LIST_SEPARATORS.split(unicodedata.normalize("NFKC", value).strip()) if v]


def _flag(value: str) -> bool | None:
    text = value.strip().lower()
    if not text:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RecipientError("is yes or no (also true/false, 1/0, 是/否)")


def _instant(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise RecipientError("is an ISO 8601 date or time (2026-03-01 or 2026-03-01T09:30+08:00)") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=BEIJING)


# The check of one column: its text (stripped) in, its value out, else `RecipientError` with the reason the
# import report gives. The fields of `RecipientCsvRow` run them.


def _name(text: str) -> str:
    text = " ".join(text.split())
    if not text:
        raise RecipientError("a name is required")
    if len(text) > MAX_NAME_CHARS:
        raise RecipientError(f"longer than {MAX_NAME_CHARS} characters")
    return text


def _language(text: str) -> str:
    if not text:
        return "zh-CN"
    if text.lower() not in _LANGUAGE_ALIASES:
        raise RecipientError(f"unknown language {text[:20]!r}; languages: {', '.join(LANGUAGES)}")
    return _LANGUAGE_ALIASES[text.lower()]


def _areas(text: str, units: Mapping[str, UnitRecord]) -> tuple[str, ...]:
    codes = _items(text)
    if not codes:
        raise RecipientError("at least one area (admin code) is required")
    out = []
    for code in codes:
        full = full_code(code)
        if full not in units:
            raise RecipientError(f"area {code} is not a unit of this region")
        out.append(full)
    return tuple(sorted(set(out)))


def _roles(text: str) -> tuple[str, ...]:
    items = _items(text)
    if not items:
        raise RecipientError(f"at least one role is required; roles: {', '.join(RecipientRole)}")
    out = set()
    for item in items:
        role = _ROLE_ALIASES.get(item) or (item.lower() if item.lower() in set(RecipientRole) else None)
        if role is None:
            raise RecipientError(f"unknown role {item[:30]!r}; roles: {', '.join(RecipientRole)}")
        out.add(str(role))
    return tuple(sorted(out))


def _hazards(text: str) -> tuple[str, ...]:
    out = set()
    for item in _items(text):
        hazard = _HAZARD_ALIASES.get(item, item.lower())
        if hazard not in HAZARDS:
            raise RecipientError(f"unknown hazard {item[:30]!r}; hazards: {', '.join(HAZARDS)} (empty: all)")
        out.add(hazard)
    return tuple(sorted(out))


def _groups(text: str) -> tuple[str, ...]:
    items = [g for g in (s.strip() for s in re.split(r"[;|]", text)) if g]
    for g in items:
        if len(g) > MAX_GROUP_CHARS:
            raise RecipientError(f"a group name is longer than {MAX_GROUP_CHARS} characters")
    return tuple(sorted(set(items)))


def _consent_at(text: str, now: datetime) -> datetime | None:
    if not text:
        return None
    when = _instant(text)
    if when > now + timedelta(minutes=5):
        raise RecipientError("lies in the future")
    return when


def _checked(check: Callable[..., _T], *args: Any) -> _T:
    """`check(*args)`, its `RecipientError` as the `ValueError` pydantic reports (with the same message)."""
    try:
        return check(*args)
    except RecipientError as e:
        raise ValueError(str(e)) from None


def _consent_rules(roles: Collection[str] | None, consent: bool | None, dated: bool) -> list[tuple[str, str]]:
    """(column, reason) for each rule between the consent columns and the roles the row breaks. `roles`
    None: the roles column is faulty; `consent` None: the column is empty; `dated`: a valid consent time."""
    rules = []
    if consent is not True and roles is not None and RecipientRole.public_subscriber in roles:
        rules.append(("consent", "a public subscriber needs consent = yes"))
    if consent is False and dated:
        rules.append(("consent_at", "a consent time is given but consent is no"))
    return rules


def _consent_rules_of_cells(cells: Mapping[str, str], now: datetime) -> list[tuple[str, str]]:
    """`_consent_rules` of a row some column of which is faulty: none when the consent cannot be read."""
    try:
        consent = _flag(cells["consent"])
    except RecipientError:
        return []
    if consent is True:
        return []
    try:
        roles: tuple[str, ...] | None = _roles(cells["roles"])
    except RecipientError:
        roles = None
    try:
        dated = _consent_at(cells["consent_at"], now) is not None
    except RecipientError:
        dated = False
    return _consent_rules(roles, consent, dated)


class RowContext(TypedDict):
    """What checking a CSV row needs besides the row: the region's units by 12-digit geocode (a row's areas
    are among them) and the time of the import (consent given after it is refused)."""

    units: Mapping[str, UnitRecord]
    now: datetime


def _context(info: ValidationInfo) -> RowContext:
    context = info.context
    if not isinstance(context, dict) or not {"units", "now"} <= context.keys():
        raise TypeError("a recipients CSV row is validated with context={'units': ..., 'now': ...}")
    return cast(RowContext, context)


CONSENT_RULE = "consent_rule"  # the pydantic error type of a rule between the consent columns and the roles


class RecipientCsvRow(BaseModel):
    """One recipients CSV row, checked: each field is a column (same name), whose validator turns the
    column's text into its value or fails with the reason an import report gives. Absent columns are empty.

    Validate with a `RowContext`, ``RecipientCsvRow.model_validate(cells, context={"units": ..., "now": ...})``;
    `check_row` does, and turns a `ValidationError` into a `RowError`. The rules between columns (a public
    subscriber needs consent, a consent time needs consent) are checked after the columns even when some of
    them failed (a wrap model validator, error type `CONSENT_RULE`), so that one reading reports every fault
    of a row, the columns' in column order and then the rules'.

    `consent` None: the column is empty (a duty role's consent rests on the duty, `recipient_row`).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    phone: str
    language: str
    areas: tuple[str, ...]
    roles: tuple[str, ...]
    hazards: tuple[str, ...]
    consent: bool | None
    consent_at: datetime | None
    test_recipient: bool
    groups: tuple[str, ...]

    @model_validator(mode="wrap")
    @classmethod
    def _check_consent_rules(
        cls, data: Any, handler: ModelWrapValidatorHandler[RecipientCsvRow], info: ValidationInfo
    ) -> RecipientCsvRow:
        # A wrap validator, not an "after" one: pydantic runs no "after" model validator once a field
        # failed, and a row's consent rules are reported along with its faulty columns.
        if not isinstance(data, Mapping):
            return handler(data)
        cells = {column: (data.get(column) or "").strip() for column in COLUMNS}
        try:
            row = handler(cells)
        except ValidationError as e:
            # the columns the rules read are read again (only a faulty row pays for it): a faulty one
            # counts as absent, as in `_consent_rules`
            rules = _consent_rules_of_cells(cells, _context(info)["now"])
            if not rules:
                raise
            raise ValidationError.from_exception_data(
                e.title, [*map(_raised_again, e.errors()), *_rule_errors(rules, cells)]
            ) from None
        rules = _consent_rules(row.roles, row.consent, row.consent_at is not None)
        if rules:
            raise ValidationError.from_exception_data(cls.__name__, _rule_errors(rules, cells))
        return row

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, text: str) -> str:
        return _checked(_name, text)

    @field_validator("phone", mode="before")
    @classmethod
    def _check_phone(cls, text: str) -> str:
        return _checked(check_phone, text)

    @field_validator("language", mode="before")
    @classmethod
    def _check_language(cls, text: str) -> str:
        return _checked(_language, text)

    @field_validator("areas", mode="before")
    @classmethod
    def _check_areas(cls, text: str, info: ValidationInfo) -> tuple[str, ...]:
        return _checked(_areas, text, _context(info)["units"])

    @field_validator("roles", mode="before")
    @classmethod
    def _check_roles(cls, text: str) -> tuple[str, ...]:
        return _checked(_roles, text)

    @field_validator("hazards", mode="before")
    @classmethod
    def _check_hazards(cls, text: str) -> tuple[str, ...]:
        return _checked(_hazards, text)

    @field_validator("consent", mode="before")
    @classmethod
    def _check_consent(cls, text: str) -> bool | None:
        return _checked(_flag, text)

    @field_validator("consent_at", mode="before")
    @classmethod
    def _check_consent_at(cls, text: str, info: ValidationInfo) -> datetime | None:
        return _checked(_consent_at, text, _context(info)["now"])

    @field_validator("test_recipient", mode="before")
    @classmethod
    def _check_test_recipient(cls, text: str) -> bool:
        return _checked(_flag, text) is True

    @field_validator("groups", mode="before")
    @classmethod
    def _check_groups(cls, text: str) -> tuple[str, ...]:
        return _checked(_groups, text)

    def recipient_row(self) -> RecipientRow:
        """The row as registered: an empty consent column of a duty role is consent on the basis of the
        duty (``consent_basis`` = duty), a consent time is kept only with consent."""
        consent = self.consent is not False
        return RecipientRow(
            name=self.name,
            phone=self.phone,
            language=self.language,
            areas=self.areas,
            roles=self.roles,
            hazards=self.hazards,
            consent=consent,
            consent_basis="explicit" if self.consent else "duty" if consent else None,
            consent_at=self.consent_at if consent else None,
            test_recipient=self.test_recipient,
            groups=self.groups,
        )


def _raised_again(error: ErrorDetails) -> InitErrorDetails:
    details: InitErrorDetails = {"type": error["type"], "loc": error["loc"], "input": error["input"]}
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details


def _rule_errors(rules: list[tuple[str, str]], cells: Mapping[str, str]) -> list[InitErrorDetails]:
    return [
        {"type": PydanticCustomError(CONSENT_RULE, reason), "loc": (column,), "input": cells[column]}
        for column, reason in rules
    ]


def check_row(fields: Mapping[str, str], units: Mapping[str, UnitRecord], *, now: datetime) -> RecipientRow:
    """One CSV row (column -> text; absent columns are empty) as a `RecipientRow`, else `RowError` naming
    every faulty column with its (stripped) text and the reason. `units`: the region's units by 12-digit
    geocode; `now`: to refuse future consent. The checks are `RecipientCsvRow`'s.

    >>> units = {"150302000000": UnitRecord("150302000000", 0, "海勃湾区", "Haibowan", "district", None, 0,
    ...                                     0.0, "official", "official", {})}
    >>> now = datetime(2026, 7, 9, 8, tzinfo=BEIJING)
    >>> row = check_row({"name": "王芳", "phone": "139 1234 5678", "areas": "150302", "roles": "气象信息员"},
    ...                 units, now=now)
    >>> row.phone, row.areas, row.roles, row.consent, row.consent_basis
    ('+8613912345678', ('150302000000',), ('relayer',), True, 'duty')
    >>> try:
    ...     check_row({"name": "李强", "phone": "0473-2001234", "areas": "150302", "roles": "公众"}, units, now=now)
    ... except RowError as e:
    ...     e.problems  # doctest: +NORMALIZE_WHITESPACE
    [('phone', '0473-2001234', 'a landline cannot receive SMS; give a mobile number (11 digits, 1[3-9]…)'),
     ('consent', '', 'a public subscriber needs consent = yes')]
    """
    try:
        row = RecipientCsvRow.model_validate(fields, context=RowContext(units=units, now=now))
    except ValidationError as e:
        raise RowError([_problem(error, fields) for error in e.errors(include_url=False)]) from None
    return row.recipient_row()


def _problem(error: ErrorDetails, fields: Mapping[str, str]) -> tuple[str, str, str]:
    """A pydantic error of a `RecipientCsvRow` as (column, value, reason): a column's check says why in the
    `ValueError` it raised (pydantic's message prefixes "Value error, "), a rule in its own message."""
    column = str(error["loc"][0]) if error["loc"] else ""
    ctx = error.get("ctx") or {}
    reason = str(ctx["error"]) if error["type"] == "value_error" and "error" in ctx else error["msg"]
    return column, (fields.get(column) or "").strip(), reason


# ---------------------------------------------------------------------------------------------- the file


def read_csv_text(path: Path) -> str:
    """The text of a CSV file in UTF-8 (a BOM is fine), else `RecipientError` in one line (`csv_files`)."""
    return csv_files.read_csv_text(path, RecipientError)


def decode_csv(data: bytes, name: str = "CSV") -> str:
    """Bytes of a CSV file as text: UTF-8 with or without a BOM; `RecipientError` for anything else."""
    return csv_files.decode_csv(data, name, RecipientError)


def parse_csv(text: str, name: str = "CSV") -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the rows of recipients CSV text, each row with its first line number; blank rows are
    skipped. `RecipientError` when the text is empty, has no recognised header (required: name, phone,
    areas, roles), names an unknown or repeated column, or is not CSV at all. A row with more fields than the
    header comes back with the extra fields under ``""``, to be rejected."""
    return csv_files.parse_rows(
        text, name, kind="recipients", columns=COLUMNS, required=REQUIRED_COLUMNS, error=RecipientError
    )


def check_rows(
    rows: Iterable[tuple[int, Mapping[str, str]]], units: Mapping[str, UnitRecord], *, now: datetime
) -> tuple[list[RecipientRow], list[Rejection]]:
    """The accepted rows and every problem of the rejected ones; a later row repeating a phone is rejected."""
    accepted: list[RecipientRow] = []
    rejected: list[Rejection] = []
    seen: dict[str, int] = {}
    for line, fields in rows:
        try:
            if fields.get(""):
                raise RowError([("", fields[""], "more fields than the header has columns")])
            row = check_row(fields, units, now=now)
        except RowError as e:
            rejected.extend(Rejection(line, column, value, reason) for column, value, reason in e.problems)
            continue
        if row.phone in seen:
            rejected.append(
                Rejection(line, "phone", fields["phone"], f"same phone as line {seen[row.phone]}")
            )
            continue
        seen[row.phone] = line
        accepted.append(row)
    return accepted, rejected


# ---------------------------------------------------------------------------------------------- import

_IMPORT_COLUMNS = (
    "name",
    "phone",
    "language",
    "areas",
    "roles",
    "hazards",
    "consent",
    "consent_basis",
    "consent_at",
    "test_recipient",
    "groups",
)


async def import_csv(
    conn: asyncpg.Connection, source: Path | str | bytes, region: str, *, origin: str | None = None
) -> ImportReport:
    """Register or update the recipients of a CSV (a `Path`, the file's bytes, or its text) for `region`.

    Accepted rows are written in one transaction with one COPY and one upsert by phone; rejected rows are
    reported and skipped. `RecipientError` (nothing written) when the file cannot be read or has not the
    recipients header. `origin` is stored as the rows' ``source`` (default ``csv:<file name>``).
    """
    if isinstance(source, Path):
        name = str(source)
        text = read_csv_text(source)
        origin = origin or f"csv:{source.name}"
    elif isinstance(source, bytes):
        name, text = "CSV", decode_csv(source)
    else:
        name, text = "CSV", source
    header, rows = parse_csv(text, name)
    units = await region_units(conn, region)
    now = await conn.fetchval("SELECT now()")
    accepted, rejected = check_rows(rows, units, now=now)
    counts = await _write(conn, accepted, origin or "csv", groups="groups" in header)
    report = ImportReport(
        inserted=counts["inserted"],
        updated=counts["updated"],
        unchanged=len(accepted) - counts["inserted"] - counts["updated"],
        opted_out=counts["opted_out"],
        rejected_rows=len({r.line for r in rejected}),
        rejected=rejected,
    )
    log.info(
        "recipients imported",
        extra={k: v for k, v in report.to_json().items() if k != "rejected"} | {"origin": origin or "csv"},
    )
    return report


async def _write(
    conn: asyncpg.Connection, rows: Sequence[RecipientRow], origin: str, *, groups: bool
) -> dict:
    if not rows:
        return {"inserted": 0, "updated": 0, "opted_out": 0}
    async with conn.transaction():
        await conn.execute(
            """CREATE TEMP TABLE recipient_import (
                   name text, phone text PRIMARY KEY, language text, areas text[], roles text[], hazards text[],
                   consent boolean, consent_basis text, consent_at timestamptz, test_recipient boolean,
                   groups text[]) ON COMMIT DROP"""
        )
        await conn.copy_records_to_table(
            "recipient_import",
            records=[
                (
                    r.name,
                    r.phone,
                    r.language,
                    list(r.areas),
                    list(r.roles),
                    list(r.hazards),
                    r.consent,
                    r.consent_basis,
                    r.consent_at,
                    r.test_recipient,
                    list(r.groups),
                )
                for r in rows
            ],
            columns=_IMPORT_COLUMNS,
        )
        # Consent that stands keeps the time it was given; new consent without a time is dated now.
        await conn.execute(
            """UPDATE recipient_import i SET consent_at = coalesce(r.consent_at, now())
               FROM svc.recipient r
               WHERE r.phone = i.phone AND i.consent AND i.consent_at IS NULL AND r.consent
                 AND r.consent_basis = i.consent_basis"""
        )
        await conn.execute(
            "UPDATE recipient_import SET consent_at = now() WHERE consent AND consent_at IS NULL"
        )
        counts = await conn.fetchrow(
            """WITH existing AS (SELECT r.phone FROM svc.recipient r JOIN recipient_import i USING (phone)),
               written AS (
                   INSERT INTO svc.recipient AS r (name, phone, language, areas, roles, hazards, consent,
                                                  consent_basis, consent_at, test_recipient, source)
                   SELECT name, phone, language, areas, roles, hazards, consent, consent_basis, consent_at,
                          test_recipient, $1
                   FROM recipient_import
                   ON CONFLICT (phone) DO UPDATE SET
                       name = EXCLUDED.name, language = EXCLUDED.language, areas = EXCLUDED.areas,
                       roles = EXCLUDED.roles, hazards = EXCLUDED.hazards, consent = EXCLUDED.consent,
                       consent_basis = EXCLUDED.consent_basis, consent_at = EXCLUDED.consent_at,
                       test_recipient = EXCLUDED.test_recipient, source = EXCLUDED.source, updated_at = now()
                   WHERE (r.name, r.language, r.areas, r.roles, r.hazards, r.consent, r.consent_basis,
                          r.consent_at, r.test_recipient)
                         IS DISTINCT FROM
                         (EXCLUDED.name, EXCLUDED.language, EXCLUDED.areas, EXCLUDED.roles, EXCLUDED.hazards,
                          EXCLUDED.consent, EXCLUDED.consent_basis, EXCLUDED.consent_at, EXCLUDED.test_recipient)
                   RETURNING phone)
               SELECT count(*) FILTER (WHERE phone NOT IN (SELECT phone FROM existing)) AS inserted,
                      count(*) FILTER (WHERE phone IN (SELECT phone FROM existing)) AS updated,
                      (SELECT count(*) FROM svc.recipient r JOIN recipient_import i USING (phone)
                       WHERE r.opted_out_at IS NOT NULL) AS opted_out
               FROM written""",
            origin,
        )
        if groups:
            await _write_groups(conn)
    return dict(counts)


async def _write_groups(conn: asyncpg.Connection) -> None:
    """Memberships of the imported people become exactly the file's ``groups`` column."""
    await conn.execute(
        """INSERT INTO svc.recipient_group (name)
           SELECT DISTINCT g FROM recipient_import, unnest(groups) g ON CONFLICT (name) DO NOTHING"""
    )
    await conn.execute(
        """DELETE FROM svc.recipient_group_member m USING svc.recipient r, recipient_import i
           WHERE m.recipient_id = r.id AND r.phone = i.phone"""
    )
    await conn.execute(
        """INSERT INTO svc.recipient_group_member (group_id, recipient_id)
           SELECT g.id, r.id FROM recipient_import i JOIN svc.recipient r USING (phone)
           CROSS JOIN LATERAL unnest(i.groups) AS n(name) JOIN svc.recipient_group g ON g.name = n.name"""
    )


async def opt_out(conn: asyncpg.Connection, phone: str) -> datetime | None:
    """Stop texting the person with this phone (any accepted form); when they opted out (the first time, if
    they did before), or None when no one has this phone. `RecipientError` for a phone that is not valid."""
    return await conn.fetchval(
        """UPDATE svc.recipient SET opted_out_at = coalesce(opted_out_at, now()),
               updated_at = CASE WHEN opted_out_at IS NULL THEN now() ELSE updated_at END
           WHERE phone = $1 RETURNING opted_out_at""",
        check_phone(phone),
    )


# ---------------------------------------------------------------------------------------------- targeting


def reach(areas: Iterable[str], units: Mapping[str, UnitRecord]) -> list[str]:
    """Every unit whose registered people a warning for `areas` reaches: the areas, the units around them
    and the units inside them, sorted: a warning for district 150302 reaches the city 150300 and the towns
    of 150302, never district 150303. `RecipientError` for a code that is not 6, 9 or 12 digits.
    """
    codes = {full_code(a) for a in areas}
    out = set(codes)
    for code in codes:
        out.update(ancestors(code, units))
    for code in units:
        if any(a in codes for a in ancestors(code, units)):
            out.add(code)
    return sorted(out)


def relevant_areas(
    warning_areas: Iterable[str], recipient_areas: Collection[str], units: Mapping[str, UnitRecord]
) -> tuple[str, ...]:
    """The warning's areas that share ground with one of the person's (sorted): what `needs_message` compares."""
    return tuple(
        sorted(
            {
                a
                for a in map(full_code, warning_areas)
                if any(same_or_nested(a, r, units) for r in recipient_areas)
            }
        )
    )


def selection(hazard: str | None, exercise: bool, reached: list[str] | None) -> tuple[str, list[Any]]:
    """The WHERE clause over svc.recipient and its arguments ($1, $2, ...) that select the people a warning of
    `hazard` reaching the units `reached` is sent to; shared by `select_recipients`, `count_recipients` and the
    dispatcher's fan-out (`warnings_svc.dissemination.expansion`)."""
    where = ["consent", "opted_out_at IS NULL"]
    args: list[Any] = []
    if hazard is not None:
        if hazard not in HAZARDS:
            raise RecipientError(f"unknown hazard {hazard!r}; hazards: {', '.join(HAZARDS)}")
        args.append(hazard)
        where.append(f"(cardinality(hazards) = 0 OR ${len(args)} = ANY (hazards))")
    if reached is not None:
        args.append(reached)
        where.append(f"areas && ${len(args)}::text[]")  # the GIN index recipient_areas
    if exercise:
        where.append("test_recipient")
    return " AND ".join(where), args


async def select_recipients(
    conn: asyncpg.Connection,
    areas: Iterable[str],
    hazard: str,
    *,
    units: Mapping[str, UnitRecord],
    exercise: bool = False,
) -> list[Recipient]:
    """The people a warning of `hazard` for `areas` reaches, by id: registered for a unit in `reach`,
    interested in the hazard (or in all), consented and not opted out; for an exercise only test recipients.
    `units`: the region's units (`risk_zoning.store.region_units`)."""
    where, args = selection(hazard, exercise, reach(areas, units))
    rows = await conn.fetch(
        f"""SELECT id, name, phone, language, areas, roles, hazards, test_recipient FROM svc.recipient
            WHERE {where} ORDER BY id""",
        *args,
    )
    return [
        Recipient(
            r["id"],
            r["name"],
            r["phone"],
            r["language"],
            tuple(r["areas"]),
            tuple(r["roles"]),
            tuple(r["hazards"]),
            r["test_recipient"],
        )
        for r in rows
    ]


async def count_recipients(
    conn: asyncpg.Connection,
    *,
    areas: Iterable[str] | None = None,
    hazard: str | None = None,
    units: Mapping[str, UnitRecord] | None = None,
    exercise: bool = False,
) -> int:
    """How many people `select_recipients` would select; without `areas` anywhere in the region, without
    `hazard` whatever the hazard. Counting by area needs `units`."""
    if areas is not None and units is None:
        raise RecipientError("counting by area needs the region's units")
    reached = reach(areas, units) if areas is not None and units is not None else None
    where, args = selection(hazard, exercise, reached)
    return await conn.fetchval(f"SELECT count(*) FROM svc.recipient WHERE {where}", *args)


# ---------------------------------------------------------------------------------------------- fatigue


def needs_message(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> bool:
    """Whether a person must be texted about a new version of a warning, given what they were last sent
    about it (`previous`, None: nothing) and what the new version means for them (`current`).

    Both hold ``msg_type`` (Alert, Update or Cancel), ``level``, ``areas`` (the warning's areas relevant
    to the person, `relevant_areas`), ``onset`` and ``expires`` (datetimes or ISO 8601 strings).

    - A Cancel reaches those who were sent the warning while it concerned them, and not told since that it
      no longer does (an Update that dropped their areas) nor cancelled already.
    - Someone never sent the warning gets an Alert or an Update when it covers one of their areas.
    - An Update is sent again only when the level, the areas relevant to the person (an Update that drops
      their areas tells them so, once) or the onset or expiry changed; a new text, another person's area or
      a new polygon alone texts no one twice, and someone already told the warning left their areas hears
      no more of it unless it comes back to them.

    >>> was = {"msg_type": "Alert", "level": "orange", "areas": ["150302000000"],
    ...        "onset": "2026-07-09T11:00+08:00", "expires": "2026-07-10T14:00+08:00"}
    >>> needs_message(was, was | {"msg_type": "Update"}), needs_message(was, was | {"level": "red"})
    (False, True)
    """
    if current["msg_type"] == "Cancel":
        return previous is not None and previous["msg_type"] != "Cancel" and bool(previous["areas"])
    if previous is None:
        return bool(current["areas"])
    if previous["msg_type"] == "Cancel" or not (previous["areas"] or current["areas"]):
        return False
    return (
        previous["level"] != current["level"]
        or set(previous["areas"]) != set(current["areas"])
        or _when(previous["onset"]) != _when(current["onset"])
        or _when(previous["expires"]) != _when(current["expires"])
    )


def _when(value: datetime | str) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
