"""Warnings in the database: every action of the lifecycle as one transaction.

Each function here takes a connection, locks the warning's row, asks
`warnings_svc.lifecycle.transitions.apply` whether the action is allowed, and then, in the same transaction,
writes the version(s), refreshes the warning's public face (`svc.warning`, which scoring diffs new runs
against), appends the audit entry and sends a ``svc_events`` notification (`warnings_svc.notify`) that the
console turns into a live refresh. Either all of that happens or none of it does.

Issuing (the approval of a version) also renders the message: channel texts in Chinese and English from the
templates, the CAP 1.2 document (schema-validated, signed when a key is configured) and the GB/T 35965.1
document; they are stored with the version and never rendered again, so what the public fetches later is
byte for byte what was approved.

Content that is not lifecycle state (areas, polygons, the forecaster's own texts, a note) lives in
`Content`. Areas are the risk database's 12-digit unit geocodes (``150302000000`` district,
``150304011000`` town); the 6- and 9-digit admin codes are accepted and padded.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import shapely

from channels.area import AlertArea, AlertTexts
from risk_zoning.store import RiskDatabase, UnitRecord, region_units
from risk_zoning.unit_tree import geocode, inside_any
from warnings_svc.dissemination import area_outbox, outbox
from warnings_svc.dissemination.area_outbox import AreaTarget
from warnings_svc.dissemination.partners import acknowledgements as acks
from warnings_svc.dissemination.partners import outbox as partner_outbox
from warnings_svc.documents.cap import (
    SEVERITY,
    CapError,
    CapTexts,
    check_polygons,
    derive_urgency,
    render_cap,
    sign_cap,
    validate_cap,
)
from warnings_svc.documents.gbt import GbtTexts, gbt_identifier, render_gbt
from warnings_svc.documents.message import Area, Issuer, Reference, WarningMessage
from warnings_svc.documents.texts import (
    DEFAULT_BUDGETS,
    LANGUAGES,
    Budgets,
    WarningTexts,
    check_budgets,
    clean_text,
    render_texts,
)
from warnings_svc.lifecycle import acknowledgement_steps, audit_log
from warnings_svc.lifecycle.transitions import (
    CLOCK,
    Action,
    Actor,
    ApprovalPolicy,
    LifecycleError,
    Transition,
    WarningState,
    WarningStatus,
    apply,
    cancel_message,
    new_draft,
    next_version,
    state_as_dict,
)
from warnings_svc.notify import notify
from warnings_svc.settings import AcknowledgementSettings, Settings, SettingsError, WarningSettings
from warnings_svc.timeliness import Timeliness

PRIMARY_LANGUAGE = "zh-CN"
TEXT_FIELDS: frozenset[str] = frozenset({"headline", "description", "instruction"})
CONTENT_FIELDS: frozenset[str] = frozenset({"areas", "polygons", "texts", "note", "area_targets"})
LIFECYCLE_FIELDS: frozenset[str] = frozenset({"level", "onset", "expires"})
MAX_NOTE_CHARS = 500
MAX_TEXT_CHARS = 2000
# How far from now a warning's onset and expiry may lie, either way: a warning is about the coming days (or
# an event under way), so a time years away is a typing error, and the far ends of the calendar are not
# even times PostgreSQL or the CAP document can hold (year 1 and 9999 became -infinity and infinity).
TIME_WINDOW_YEARS = 3
TIME_WINDOW = timedelta(days=366 * TIME_WINDOW_YEARS)
# Characters refused in any text rather than silently dropped: PostgreSQL text cannot hold NUL, and a lone
# surrogate is no character at all (it cannot be encoded as UTF-8).
_NUL = "\x00"

# svc.warning.status, the public face, after a version reaches each status (None: unchanged)
_FACE_STATUS: Mapping[WarningStatus, str] = {
    WarningStatus.issued: "issued",
    WarningStatus.cancelled: "cancelled",
    WarningStatus.expired: "expired",
}


class StoreError(Exception):
    """A refused request about stored warnings; ``code`` is machine-readable, ``field`` names the input."""

    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.code = code
        self.field = field


@dataclass(frozen=True)
class Content:
    """What a version says besides its lifecycle state."""

    areas: tuple[str, ...]
    polygons: tuple[str, ...] = ()
    probability: float | None = None
    exposed_population: int | None = None
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # {"zh-CN": {"headline": ...}}
    note: str = ""
    proposal_id: int | None = None
    # the targets of the area channels chosen for this version ("channel/target"); None: the level's defaults
    area_targets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Version:
    """One stored version of a warning."""

    state: WarningState
    content: Content
    identifier: str | None = None
    sent: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def warning_id(self) -> int:
        return int(self.state.id)

    def to_json(self) -> dict[str, Any]:
        """The version as the API shows it (times in UTC ISO 8601; documents by link, not inline)."""
        out = state_as_dict(self.state)
        out["id"] = self.warning_id
        out["areas"] = list(self.content.areas)
        out["polygons"] = list(self.content.polygons)
        out["probability"] = self.content.probability
        out["exposed_population"] = self.content.exposed_population
        out["texts"] = self.content.texts
        out["note"] = self.content.note
        out["proposal_id"] = self.content.proposal_id
        out["area_targets"] = None if self.content.area_targets is None else list(self.content.area_targets)
        out["identifier"] = self.identifier
        out["sent"] = None if self.sent is None else self.sent.astimezone(UTC).isoformat()
        return out


@dataclass(frozen=True)
class Issuing:
    """Everything issuing needs from configuration, read once: the issuer, the approval rule, the keys."""

    region: str
    issuer: WarningSettings
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    # the most points a CAP polygon may have: the budget the forecast's own polygons are drawn within
    max_polygon_points: int = 100
    signing: tuple[bytes, bytes] | None = None  # (key PEM, certificate PEM)
    audit_key: bytes | None = None
    channels: tuple[str, ...] = ("sms",)  # what an issued version fans out on (the outbox)
    # the targets of the area channels an issued version is put out to (the area outbox)
    area_targets: tuple[AreaTarget, ...] = ()
    budgets: Budgets = DEFAULT_BUDGETS
    # acknowledgement deadlines (叫应): the levels that need them, the steps of the escalation
    acknowledgements: AcknowledgementSettings = field(default_factory=AcknowledgementSettings)

    @classmethod
    def from_settings(cls, settings: Settings) -> Issuing:
        """Read the key files named in ``[warnings]``; a missing or unreadable one is a `SettingsError`."""
        w = settings.warnings
        signing = None
        if w.signing_key_file is not None and w.signing_cert_file is not None:
            signing = (
                _read_secret(w.signing_key_file, "signing_key_file"),
                _read_secret(w.signing_cert_file, "signing_cert_file"),
            )
        handsets = {("area_sms", a.name): a.handsets_per_person for a in settings.dispatch.area_sms}
        audit_key = None
        if w.audit_key_file is not None:
            audit_key = _read_secret(w.audit_key_file, "audit_key_file")
            if len(audit_key) < 32:
                raise SettingsError(w.audit_key_file, "warnings.audit_key_file: needs at least 32 bytes")
        return cls(
            region=settings.region,
            issuer=w,
            policy=ApprovalPolicy(frozenset(w.two_person_levels)),
            max_polygon_points=settings.scoring.max_vertices,
            signing=signing,
            audit_key=audit_key,
            channels=tuple(settings.dispatch.channels),
            area_targets=tuple(
                AreaTarget(channel, name, frozenset(levels), handsets.get((channel, name)))
                for channel, name, levels in settings.dispatch.area_targets()
            ),
            budgets=dataclasses.replace(DEFAULT_BUDGETS, sms_full_segments=w.sms_segments),
            acknowledgements=settings.acknowledgements,
        )


def _read_secret(path: Path, name: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise SettingsError(path, f"warnings.{name}: {e.strerror or e}") from e


# ---------------------------------------------------------------------------------------------- units


async def region_units_of(
    conn: asyncpg.Connection, ctx: Issuing, risk: RiskDatabase | None
) -> dict[str, UnitRecord]:
    """The region's units by geocode: those of ``risk`` (the caller's copy of the current risk database, as
    the web app holds it) when it is still the current version -- one small query instead of reading the whole
    risk database -- and read afresh when there is none or a newer version has been built since."""
    if risk is not None and risk.region == ctx.region:
        current = await conn.fetchval(
            "SELECT version_id FROM risk.current_version WHERE region = $1", ctx.region
        )
        if current == risk.version_id:
            return {u.code: u for u in risk.units}
    return await region_units(conn, ctx.region)


# ---------------------------------------------------------------------------------------------- creating


async def create(
    conn: asyncpg.Connection,
    ctx: Issuing,
    actor: Actor,
    *,
    hazard: str,
    level: str,
    onset: datetime,
    expires: datetime,
    content: Content,
    exercise: bool = False,
    now: datetime,
    risk: RiskDatabase | None = None,
) -> Version:
    """A new warning: version 1, a draft by ``actor``; ``risk``: see `region_units_of`."""
    units = await region_units_of(conn, ctx, risk)
    content = _checked_content(content, units, ctx)
    _check_times({"onset": onset, "expires": expires}, now)
    checked = new_draft(  # every check before anything is written; the id comes from the insert
        id="0", hazard=hazard, level=level, onset=onset, expires=expires, actor=actor, exercise=exercise
    )
    async with conn.transaction():
        warning_id = await conn.fetchval(
            """INSERT INTO svc.warning (hazard, level, areas, onset, expires, status, exercise)
               VALUES ($1, $2, $3, $4, $5, 'draft', $6) RETURNING id""",
            hazard,
            level,
            list(content.areas),
            onset,
            expires,
            exercise,
        )
        state = dataclasses.replace(checked, id=str(warning_id))
        version = Version(state, content)
        stored = await _insert_version(conn, version)
        await _audit(conn, ctx, now, actor.name, "create", state, None, version)
        await _notify(conn, state, "create")
    return stored


async def draft_from_proposal(
    conn: asyncpg.Connection,
    ctx: Issuing,
    actor: Actor,
    proposal_id: int,
    *,
    now: datetime,
    exercise: bool = False,
    risk: RiskDatabase | None = None,
) -> Version:
    """The draft a proposal asks for: a new warning, or an Update or Cancel of the live one it names.

    The proposal is marked accepted in the same transaction, so two forecasters cannot both draft it.
    """
    async with conn.transaction():
        row = await conn.fetchrow("SELECT * FROM svc.proposal WHERE id = $1 FOR UPDATE", proposal_id)
        if row is None:
            raise StoreError("not_found", f"no proposal {proposal_id}", "proposal")
        if row["status"] != "open":
            raise StoreError("conflict", f"proposal {proposal_id} is {row['status']}, not open", "proposal")
        doc = json.loads(row["document"])
        action = row["action"]
        content = Content(
            areas=tuple(row["areas"]),
            polygons=tuple(doc.get("polygons") or ()),
            probability=float(row["probability"]),
            exposed_population=int(row["exposed_population"]),
            proposal_id=proposal_id,
        )
        if action == "unchanged":
            raise StoreError("conflict", f"proposal {proposal_id} changes nothing", "proposal")
        if action == "new" or row["replaces"] is None:
            version = await create(
                conn,
                ctx,
                actor,
                hazard=row["hazard"],
                level=row["level"],
                onset=row["onset"],
                expires=row["expires"],
                content=content,
                exercise=exercise,
                now=now,
                risk=risk,
            )
        elif action == "cancel":
            version = await start_cancel(
                conn, ctx, actor, int(row["replaces"]), note="", now=now, proposal_id=proposal_id, risk=risk
            )
        else:
            changes = {
                "level": row["level"],
                "onset": row["onset"],
                "expires": row["expires"],
                "areas": list(row["areas"]),
                "polygons": list(content.polygons),
            }
            version = await start_update(
                conn, ctx, actor, int(row["replaces"]), changes, now=now, proposal_id=proposal_id, risk=risk
            )
        await conn.execute("UPDATE svc.proposal SET status = 'accepted' WHERE id = $1", proposal_id)
        await notify(
            conn, {"kind": "proposal", "id": proposal_id, "action": "accepted", "status": "accepted"}
        )
    return version


async def start_update(
    conn: asyncpg.Connection,
    ctx: Issuing,
    actor: Actor,
    warning_id: int,
    changes: Mapping[str, Any],
    *,
    now: datetime,
    proposal_id: int | None = None,
    risk: RiskDatabase | None = None,
) -> Version:
    """The draft of an Update of the issued warning: version n+1 with ``changes`` (lifecycle and content)."""
    return await _start_successor(conn, ctx, actor, warning_id, "Update", changes, now, proposal_id, risk)


async def start_cancel(
    conn: asyncpg.Connection,
    ctx: Issuing,
    actor: Actor,
    warning_id: int,
    *,
    note: str,
    now: datetime,
    proposal_id: int | None = None,
    risk: RiskDatabase | None = None,
) -> Version:
    """The draft of a Cancel of the issued warning; ``note`` says why (it goes into the CAP ``note``)."""
    return await _start_successor(
        conn, ctx, actor, warning_id, "Cancel", {"note": note}, now, proposal_id, risk
    )


async def _start_successor(
    conn: asyncpg.Connection,
    ctx: Issuing,
    actor: Actor,
    warning_id: int,
    kind: str,
    changes: Mapping[str, Any],
    now: datetime,
    proposal_id: int | None,
    risk: RiskDatabase | None,
) -> Version:
    lifecycle_changes, content_changes = _split_changes(changes)
    units = await region_units_of(conn, ctx, risk)
    _check_times(lifecycle_changes, now)
    content_changes = _checked_changes(content_changes, units, ctx)
    async with conn.transaction():
        latest = await _latest_for_update(conn, warning_id)
        # after a discarded Update or Cancel draft, the issued version is still the one to replace
        base = latest
        if latest.state.status is WarningStatus.discarded and latest.state.version > 1:
            base = await _issued(conn, warning_id) or latest
        if base.state.msg_type == "Cancel" and base.state.status is WarningStatus.issued:
            raise StoreError(
                "conflict", f"warning {warning_id} is cancelled; issue a new warning instead", "id"
            )
        if kind == "Update":
            state = next_version(base.state, lifecycle_changes, actor=actor)
        else:
            state = cancel_message(base.state, actor=actor)
        if base is not latest:
            # numbered after the discarded drafts, which it references like every earlier version; the version
            # it replaces stays the last reference, as the lifecycle checks on approval
            earlier = [
                f"{warning_id}/{n}" for n in range(1, latest.state.version + 1) if n != base.state.version
            ]
            state = dataclasses.replace(
                state, version=latest.state.version + 1, references=(*earlier, base.state.version_id)
            )
        content = _changed_content(base.content, content_changes, units, ctx)
        content = dataclasses.replace(content, proposal_id=proposal_id, texts={})
        version = Version(state, content)
        stored = await _insert_version(conn, version)
        await _audit(conn, ctx, now, actor.name, f"draft_{kind.lower()}", state, latest, version)
        await _notify(conn, state, f"draft_{kind.lower()}")
    return stored


# ---------------------------------------------------------------------------------------------- acting


async def edit(
    conn: asyncpg.Connection,
    ctx: Issuing,
    actor: Actor,
    warning_id: int,
    changes: Mapping[str, Any],
    *,
    now: datetime,
    risk: RiskDatabase | None = None,
) -> Version:
    """Change the latest version (a draft, pending or returned one): level, times, areas, polygons, texts, note."""
    if not changes:
        raise StoreError("invalid", "nothing to change", "changes")
    lifecycle_changes, content_changes = _split_changes(changes)
    units = await region_units_of(conn, ctx, risk)
    _check_times(lifecycle_changes, now)
    content_changes = _checked_changes(content_changes, units, ctx)
    async with conn.transaction():
        latest = await _latest_for_update(conn, warning_id)
        transition = apply(
            latest.state, Action.edit, actor, now=now, changes=lifecycle_changes, policy=ctx.policy
        )
        if latest.state.msg_type == "Cancel" and set(content_changes) - {"note"}:
            raise StoreError("invalid", "a Cancel keeps the areas of the version it cancels", "areas")
        content = _changed_content(latest.content, content_changes, units, ctx)
        version = dataclasses.replace(latest, state=transition.state, content=content)
        stored = await _update_version(conn, version)
        await _face(conn, version)
        await _audit(conn, ctx, now, actor.name, "edit", transition.state, latest, version, transition)
        await _notify(conn, transition.state, "edit")
    return stored


async def act(
    conn: asyncpg.Connection,
    ctx: Issuing,
    actor: Actor,
    warning_id: int,
    action: Action,
    *,
    now: datetime,
    reason: str = "",
    risk: RiskDatabase | None = None,
    timeliness: Timeliness | None = None,
) -> Version:
    """Submit, approve (which issues), return for edit, or discard the latest version of a warning; an
    approval is observed on `timeliness` once committed."""
    if action not in (Action.submit, Action.approve, Action.return_for_edit, Action.discard):
        raise StoreError("invalid", f"{action} is not done this way", "action")
    reason = _clean(reason, "comment" if action is Action.approve else "reason", MAX_NOTE_CHARS)
    units = await region_units_of(conn, ctx, risk)
    proposal_written_at = None
    async with conn.transaction():
        latest = await _latest_for_update(conn, warning_id)
        replaced = None
        if action is Action.approve and latest.state.msg_type != "Alert":
            replaced = await _issued(conn, warning_id)
            if replaced is None:
                raise StoreError(
                    "conflict",
                    f"warning {warning_id} is no longer in force (expired); issue a new warning",
                    "id",
                )
        if action in (Action.submit, Action.approve):
            # a version stored before its polygons were checked is refused here, not by the renderer
            _checked_polygons(latest.content.polygons, ctx)
            problems = _budget_problems(ctx, latest, units, now)
            if problems:
                raise StoreError("budget", f"texts over budget: {'; '.join(problems)}", "texts")
        transition = apply(
            latest.state,
            action,
            actor,
            now=now,
            reason=reason,
            policy=ctx.policy,
            replaces=None if replaced is None else replaced.state,
        )
        version = dataclasses.replace(latest, state=transition.state)
        if action is Action.approve:
            version, stored, content, document = await _issue(conn, ctx, version, replaced, units, now)
            if version.content.proposal_id is not None:
                proposal_written_at = await conn.fetchval(
                    "SELECT created_at FROM svc.proposal WHERE id = $1", version.content.proposal_id
                )
            # the outbox: issued and promised to every channel in one transaction, or neither
            await outbox.write_fanouts(
                conn, version.warning_id, version.state.version, version.state.level, ctx.channels
            )
            if content is not None:
                await area_outbox.write_area_deliveries(
                    conn, version.warning_id, version.state.version, version.state.msg_type,
                    version.state.level, area_targets_of(ctx, version), content,
                )  # fmt: skip
            await partner_outbox.write_partner_deliveries(
                conn, warning_id=version.warning_id, version=version.state.version,
                msg_type=version.state.msg_type, hazard=version.state.hazard, level=version.state.level,
                areas=version.content.areas, units=units, document=document, give_up_at=version.state.expires,
            )  # fmt: skip
            # acknowledgement deadlines (叫应): the requests and first calls, or a Cancel closing them
            facts = acks.IssuedFacts(
                version.warning_id, version.state.version, version.state.msg_type, str(version.state.status),
                version.state.hazard, version.state.level, tuple(version.content.areas), version.state.expires,
                document.subject,
            )  # fmt: skip
            await acknowledgement_steps.request_acknowledgements(
                conn, ctx, version.warning_id, version.state.version, units, actor=actor.name, now=now,
                facts=facts,
            )  # fmt: skip
        else:
            stored = await _update_version(conn, version)
        await _face(conn, version)
        await _audit(conn, ctx, now, actor.name, str(action), transition.state, latest, version, transition)
        if transition.superseded is not None and replaced is not None:
            old = dataclasses.replace(replaced, state=transition.superseded.state)
            await _update_version(conn, old)
            await _audit(
                conn, ctx, now, actor.name, str(transition.superseded.record.action), old.state, replaced, old,
                transition.superseded,
            )  # fmt: skip
        await _notify(conn, transition.state, str(action))
    issued = stored.state
    if action is Action.approve and timeliness is not None and issued.approved_at and stored.sent:
        timeliness.observe_issue(
            hazard=issued.hazard, level=issued.level, msg_type=issued.msg_type, approved_at=issued.approved_at,
            sent=stored.sent, onset=issued.onset, proposal_written_at=proposal_written_at,
        )  # fmt: skip
    return stored


async def expire_due(conn: asyncpg.Connection, ctx: Issuing, *, now: datetime) -> list[int]:
    """Move every issued version whose ``expires`` has passed to expired (the clock acts); their ids."""
    ids = await conn.fetch(
        """SELECT warning_id FROM svc.warning_version WHERE status = 'issued' AND expires <= $1
           ORDER BY warning_id""",
        now,
    )
    done = []
    for (warning_id,) in ids:
        async with conn.transaction():
            latest = await _issued_for_update(conn, warning_id)
            if latest is None or latest.state.expires > now:
                continue
            transition = apply(latest.state, Action.expire, CLOCK, now=now, policy=ctx.policy)
            version = dataclasses.replace(latest, state=transition.state)
            await _update_version(conn, version)
            await _face(conn, version)
            await _audit(conn, ctx, now, CLOCK.name, "expire", transition.state, latest, version, transition)
            if ctx.area_targets:  # take back what the version left at the targets of the area channels
                await area_outbox.write_expiries(conn, [(version.warning_id, version.state.version)])
            await _notify(conn, transition.state, "expire")
        done.append(warning_id)
    return done


# ---------------------------------------------------------------------------------------------- reading


async def versions(conn: asyncpg.Connection, warning_id: int) -> list[Version]:
    """Every version of a warning, oldest first; `StoreError` ``not_found`` when there is none."""
    rows = await conn.fetch(
        "SELECT * FROM svc.warning_version WHERE warning_id = $1 ORDER BY version", warning_id
    )
    if not rows:
        raise StoreError("not_found", f"no warning {warning_id}", "id")
    return [version_from_row(r) for r in rows]


async def latest_versions(
    conn: asyncpg.Connection, *, statuses: Sequence[str] | None = None, limit: int = 200
) -> list[Version]:
    """The latest version of each warning (optionally only those in ``statuses``), newest first."""
    rows = await conn.fetch(
        """SELECT v.* FROM svc.warning w
           JOIN svc.warning_version v ON v.warning_id = w.id AND v.version = w.current_version
           WHERE $1::text[] IS NULL OR v.status = ANY($1::text[])
           ORDER BY v.updated_at DESC LIMIT $2""",
        None if statuses is None else list(statuses),
        limit,
    )
    return [version_from_row(r) for r in rows]


@dataclass(frozen=True)
class Face:
    """What a warning shows the public: the version in force's level, areas and times (``svc.warning``)."""

    status: str
    level: str
    areas: tuple[str, ...]
    onset: datetime
    expires: datetime


async def versions_at_work(conn: asyncpg.Connection, *, limit: int) -> list[tuple[Version, Face]]:
    """The latest version of every warning being prepared (draft, pending approval, returned) or in force
    (issued, not yet expired), with the warning's public face; most recently updated first, at most `limit`."""
    rows = await conn.fetch(
        """SELECT v.*, w.status AS face_status, w.level AS face_level, w.areas AS face_areas,
                  w.onset AS face_onset, w.expires AS face_expires
           FROM svc.warning w
           JOIN svc.warning_version v ON v.warning_id = w.id AND v.version = w.current_version
           WHERE v.status IN ('draft', 'pending_approval', 'returned')
              OR (w.status = 'issued' AND w.expires > now())
           ORDER BY v.updated_at DESC LIMIT $1""",
        limit,
    )
    return [
        (
            version_from_row(r),
            Face(
                r["face_status"], r["face_level"], tuple(r["face_areas"]), r["face_onset"], r["face_expires"]
            ),
        )
        for r in rows
    ]


async def rendered_texts(conn: asyncpg.Connection, warning_id: int, version: int) -> dict[str, Any] | None:
    """The channel texts a version went out with (stored when it was issued), by language; None before."""
    raw = await conn.fetchval(
        "SELECT rendered FROM svc.warning_version WHERE warning_id = $1 AND version = $2", warning_id, version
    )
    return json.loads(raw) if raw else None


# what `version_from_row` reads: writes return these instead of the version being read back after commit
_VERSION_COLUMNS = """warning_id, version, msg_type, status, hazard, level, created_by, last_edited_by, onset,
    expires, exercise, approved_by, approved_at, approval_comment, "references", editors, return_reason, areas,
    polygons, probability, exposed_population, texts, note, proposal_id, area_targets, identifier, sent, created_at,
    updated_at"""


def version_from_row(row: asyncpg.Record) -> Version:
    """A `Version` from a ``svc.warning_version`` row."""
    state = WarningState(
        id=str(row["warning_id"]),
        version=row["version"],
        status=WarningStatus(row["status"]),
        hazard=row["hazard"],
        level=row["level"],
        created_by=row["created_by"],
        last_edited_by=row["last_edited_by"],
        onset=row["onset"],
        expires=row["expires"],
        exercise=row["exercise"],
        approved_by=row["approved_by"],
        approved_at=row["approved_at"],
        approval_comment=row["approval_comment"],
        references=tuple(row["references"]),
        msg_type=row["msg_type"],
        editors=tuple(row["editors"]),
        return_reason=row["return_reason"],
    )
    content = Content(
        areas=tuple(row["areas"]),
        polygons=tuple(row["polygons"]),
        probability=None if row["probability"] is None else round(float(row["probability"]), 4),
        exposed_population=row["exposed_population"],
        texts=json.loads(row["texts"]),
        note=row["note"],
        proposal_id=row["proposal_id"],
        # (get: a row read by a migration's test, before migration 13, has no such column)
        area_targets=None if row.get("area_targets") is None else tuple(row["area_targets"]),
    )
    return Version(state, content, row["identifier"], row["sent"], row["created_at"], row["updated_at"])


# ---------------------------------------------------------------------------------------------- messages


def message_of(
    ctx: Issuing,
    version: Version,
    units: Mapping[str, UnitRecord],
    *,
    sent: datetime,
    references: Sequence[Version] = (),
) -> WarningMessage:
    """The `WarningMessage` a version becomes when it is sent at ``sent``."""
    w = ctx.issuer
    issuer = Issuer(
        w.sender, w.sender_code, w.issuer_name, w.issuer_name_en, signed_by=version.state.approved_by
    )
    areas = tuple(_area(units, code) for code in version.content.areas)
    msg = WarningMessage(
        identifier="",
        msg_type=version.state.msg_type,
        status="Exercise" if version.state.exercise else "Actual",
        hazard=version.state.hazard,
        level=version.state.level,
        areas=areas,
        sent=sent,
        onset=version.state.onset,
        expires=version.state.expires,
        issuer=issuer,
        polygons=version.content.polygons,
        probability=version.content.probability,
        references=tuple(
            Reference(w.sender, r.identifier, r.sent) for r in references if r.identifier and r.sent
        ),
        exposed_population=version.content.exposed_population,
        note=version.content.note,
    )
    return dataclasses.replace(msg, identifier=gbt_identifier(msg))


def texts_of(
    msg: WarningMessage, content: Content, lang: str, *, now: datetime, budgets: Budgets = DEFAULT_BUDGETS
) -> WarningTexts:
    """The rendered texts of a message in one language, within `budgets`, with the forecaster's own headline,
    description and instruction where given."""
    texts = render_texts(msg, lang=lang, now=now, budgets=budgets)
    own = content.texts.get(lang, {})
    overrides: dict[str, Any] = {k: v for k, v in own.items() if k in TEXT_FIELDS and v}
    return dataclasses.replace(texts, **overrides)


def preview(
    ctx: Issuing, version: Version, units: Mapping[str, UnitRecord], *, now: datetime
) -> dict[str, Any]:
    """What the version would say if it were issued now: texts per language and budget problems."""
    msg = message_of(ctx, version, units, sent=now)
    out: dict[str, Any] = {}
    for lang in LANGUAGES:
        texts = texts_of(msg, version.content, lang, now=now, budgets=ctx.budgets)
        out[lang] = {
            "headline": texts.headline,
            "description": texts.description,
            "instruction": texts.instruction,
            "area_desc": texts.area_desc,
            "sms_short": texts.sms_short,
            "sms_full": texts.sms_full,
            "sms_full_segments": texts.sms_full_segments,
            "broadcast": texts.broadcast,
            "cell_broadcast": texts.cell_broadcast,
            "cell_broadcast_pages": texts.cell_broadcast_pages,
            "budget_problems": [str(p) for p in check_budgets(texts, ctx.budgets)],
        }
    return out


def _budget_problems(
    ctx: Issuing, version: Version, units: Mapping[str, UnitRecord], now: datetime
) -> list[str]:
    # Only the primary language blocks: the public is reached in Chinese, and an English text pushed over
    # its budget by a Chinese place name or note must not hold back a warning (the preview still shows it).
    msg = message_of(ctx, version, units, sent=now)
    texts = texts_of(msg, version.content, PRIMARY_LANGUAGE, now=now, budgets=ctx.budgets)
    return [str(p) for p in check_budgets(texts, ctx.budgets)]


async def _issue(
    conn: asyncpg.Connection,
    ctx: Issuing,
    version: Version,
    replaced: Version | None,
    units: Mapping[str, UnitRecord],
    now: datetime,
) -> tuple[Version, Version, dict[str, Any] | None, partner_outbox.PartnerDocument]:
    """Render, validate (and sign) the documents of an approved version and store it issued: the version as
    given with its identifier and send time, as now stored, what the area channels put out (None when none
    is configured), and what partners get."""
    sent = await _send_time(conn, now)
    earlier = [] if replaced is None else await _issued_chain(conn, version)
    msg = message_of(ctx, version, units, sent=sent, references=earlier)
    texts = {lang: texts_of(msg, version.content, lang, now=sent, budgets=ctx.budgets) for lang in LANGUAGES}
    cap_texts: dict[str, CapTexts] = {
        lang: CapTexts(t.headline, t.description, t.instruction, t.area_desc, t.event)
        for lang, t in texts.items()
    }
    web = None
    if ctx.issuer.public_url:
        web = (
            f"{ctx.issuer.public_url.rstrip('/')}/api/v1/alerts/{version.warning_id}-{version.state.version}"
        )
    try:
        cap = render_cap(msg, cap_texts, web=web, contact=ctx.issuer.contact)
    except CapError as e:  # the transaction rolls back: nothing of the approval is written
        field = "polygons" if e.element == "polygon" else e.element
        raise StoreError("invalid", f"the CAP document cannot be written: {e}", field) from e
    if ctx.signing is not None:
        cap = sign_cap(cap, *ctx.signing)
    validate_cap(cap)
    zh = texts["zh-CN"]
    gbt = render_gbt(msg, GbtTexts(zh.description, zh.channels, zh.instruction))
    rendered = {lang: _texts_json(t) for lang, t in texts.items()}
    issued = dataclasses.replace(version, identifier=msg.identifier, sent=sent)
    row = await conn.fetchrow(
        """UPDATE svc.warning_version SET status = $3, approved_by = $4, approved_at = $5, approval_comment = $6,
                  identifier = $7, sent = $8, cap_xml = $9, gbt_xml = $10, rendered = $11::jsonb, updated_at = now()
           WHERE warning_id = $1 AND version = $2 RETURNING """
        + _VERSION_COLUMNS,
        version.warning_id,
        version.state.version,
        str(version.state.status),
        version.state.approved_by,
        version.state.approved_at,
        version.state.approval_comment,
        msg.identifier,
        sent,
        cap,
        gbt,
        json.dumps(rendered, ensure_ascii=False),
    )
    content = None
    if ctx.area_targets:
        content = area_outbox.alert_content(
            identifier=msg.identifier,
            warning_id=version.warning_id,
            version=version.state.version,
            status=msg.status,
            hazard=msg.hazard,
            level=msg.level,
            severity=SEVERITY[msg.level],
            urgency=derive_urgency(msg),
            onset=msg.onset,
            expires=msg.expires,
            areas=alert_areas(version.content.areas, version.content.polygons, units),
            texts=AlertTexts(
                headline=zh.headline,
                sms=zh.sms_short,
                broadcast=zh.broadcast,
                led=zh.channels.get("LED", zh.sms_short),
                description=zh.cell_broadcast,
            ),
            cap_url=f"{web}.cap" if web else "",
            audio_url=f"{web}.wav" if web else "",
            area_units=[
                code
                for code in units
                if code in version.content.areas or inside_any(code, version.content.areas, units)
            ],
        )
    document = partner_outbox.document_of(
        identifier=msg.identifier, warning_id=version.warning_id, version=version.state.version, sent=sent,
        status=msg.status, msg_type=msg.msg_type, hazard=msg.hazard, level=msg.level,
        severity=SEVERITY[msg.level], urgency=derive_urgency(msg),
        areas=[(code, units[code].name if code in units else code) for code in version.content.areas],
        onset=msg.onset, expires=msg.expires, headline=zh.headline, description=zh.description,
        instruction=zh.instruction, sms_text=zh.sms_full, cap_xml=cap.decode("utf-8"), web=web or "",
    )  # fmt: skip
    return issued, version_from_row(row), content, document


def alert_areas(
    codes: Sequence[str], polygons: Sequence[str], units: Mapping[str, UnitRecord]
) -> tuple[AlertArea, ...]:
    """The areas as the area channels need them: name, population, and the warning's polygons that touch
    each (an operator picks its cells from these)."""
    shapes = [(p, _polygon_shape(p)) for p in polygons]
    out = []
    for code in codes:
        unit = units.get(code)
        if unit is None:
            out.append(AlertArea(code, code, 0))
            continue
        outline = unit.shape()
        touching = tuple(p for p, shape in shapes if shape is not None and shape.intersects(outline))
        out.append(AlertArea(code, unit.name, unit.population, touching))
    return tuple(out)


def _polygon_shape(polygon: str) -> shapely.Geometry | None:
    """A CAP polygon ("lat,lon lat,lon ...") as a shapely polygon (x = lon), None when it is not one."""
    try:
        points = [tuple(float(v) for v in pair.split(","))[::-1] for pair in polygon.split()]
        return shapely.Polygon(points)
    except (ValueError, shapely.errors.GEOSException):
        return None


def _texts_json(t: WarningTexts) -> dict[str, Any]:
    return {
        "event": t.event,
        "headline": t.headline,
        "description": t.description,
        "instruction": t.instruction,
        "area_desc": t.area_desc,
        "sms_short": t.sms_short,
        "sms_full": t.sms_full,
        "broadcast": t.broadcast,
        "cell_broadcast": t.cell_broadcast,
        "channels": t.channels,
    }


async def _send_time(conn: asyncpg.Connection, now: datetime) -> datetime:
    """``now`` to the second, and later than every message sent so far: the identifier is the sender code and
    the send time to the second, so at most one message per second (serialised by the audit lock)."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", audit_log.AUDIT_LOCK)
    last = await conn.fetchval("SELECT max(sent) FROM svc.warning_version")
    sent = now.astimezone(UTC).replace(microsecond=0)
    if last is not None and sent <= last:
        sent = last + timedelta(seconds=1)
    return sent


async def _issued_chain(conn: asyncpg.Connection, version: Version) -> list[Version]:
    rows = await conn.fetch(
        """SELECT * FROM svc.warning_version WHERE warning_id = $1 AND version < $2 AND identifier IS NOT NULL
           ORDER BY version""",
        version.warning_id,
        version.state.version,
    )
    return [version_from_row(r) for r in rows]


# ---------------------------------------------------------------------------------------------- rows


async def _insert_version(conn: asyncpg.Connection, v: Version) -> Version:
    """Store a new version and make it the warning's current one; the version as stored."""
    s, c = v.state, v.content
    row = await conn.fetchrow(
        """INSERT INTO svc.warning_version (warning_id, version, msg_type, status, hazard, level, areas, polygons,
                  onset, expires, probability, exposed_population, texts, note, exercise, created_by,
                  last_edited_by, editors, "references", proposal_id, area_targets)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14, $15, $16, $17, $18, $19, $20,
                   $21)
           RETURNING """
        + _VERSION_COLUMNS,
        int(s.id),
        s.version,
        s.msg_type,
        str(s.status),
        s.hazard,
        s.level,
        list(c.areas),
        list(c.polygons),
        s.onset,
        s.expires,
        c.probability,
        c.exposed_population,
        json.dumps(c.texts, ensure_ascii=False),
        c.note,
        s.exercise,
        s.created_by,
        s.last_edited_by,
        list(s.editors),
        list(s.references),
        c.proposal_id,
        None if c.area_targets is None else list(c.area_targets),
    )
    await conn.execute(
        "UPDATE svc.warning SET current_version = $2, updated_at = now() WHERE id = $1", int(s.id), s.version
    )
    return version_from_row(row)


async def _update_version(conn: asyncpg.Connection, v: Version) -> Version:
    """Store a changed version; the version as stored (the warning's row is locked, so it stays so until
    the transaction ends)."""
    s, c = v.state, v.content
    row = await conn.fetchrow(
        """UPDATE svc.warning_version SET status = $3, level = $4, onset = $5, expires = $6, areas = $7,
                  polygons = $8, texts = $9::jsonb, note = $10, last_edited_by = $11, editors = $12,
                  approved_by = $13, approved_at = $14, approval_comment = $15, return_reason = $16,
                  area_targets = $17, updated_at = now()
           WHERE warning_id = $1 AND version = $2 RETURNING """
        + _VERSION_COLUMNS,
        int(s.id),
        s.version,
        str(s.status),
        s.level,
        s.onset,
        s.expires,
        list(c.areas),
        list(c.polygons),
        json.dumps(c.texts, ensure_ascii=False),
        c.note,
        s.last_edited_by,
        list(s.editors),
        s.approved_by,
        s.approved_at,
        s.approval_comment,
        s.return_reason,
        None if c.area_targets is None else list(c.area_targets),
    )
    return version_from_row(row)


async def _face(conn: asyncpg.Connection, v: Version) -> None:
    """Refresh ``svc.warning``: the issued version's facts once there is one, the draft's before that."""
    s = v.state
    status = _FACE_STATUS.get(s.status)
    if status is not None and s.msg_type == "Cancel":
        status = "cancelled"  # an issued (or lapsed) Cancel message: the warning is withdrawn
    # One statement: a successor being drafted ($8 false) leaves the public face on the issued version.
    await conn.execute(
        """UPDATE svc.warning SET hazard = $2, level = $3, areas = $4, onset = $5, expires = $6, status = $7,
                  updated_at = now()
           WHERE id = $1 AND ($8 OR NOT EXISTS (SELECT 1 FROM svc.warning_version
                                                WHERE warning_id = $1 AND identifier IS NOT NULL))""",
        int(s.id),
        s.hazard,
        s.level,
        list(v.content.areas),
        s.onset,
        s.expires,
        status or str(s.status),
        status is not None,
    )


async def _latest_for_update(conn: asyncpg.Connection, warning_id: int) -> Version:
    current = await conn.fetchval(
        "SELECT current_version FROM svc.warning WHERE id = $1 FOR UPDATE", warning_id
    )
    if current is None:
        raise StoreError("not_found", f"no warning {warning_id}", "id")
    return await _version(conn, warning_id, current, lock=False)


async def _issued_for_update(conn: asyncpg.Connection, warning_id: int) -> Version | None:
    await conn.execute("SELECT 1 FROM svc.warning WHERE id = $1 FOR UPDATE", warning_id)
    return await _issued(conn, warning_id)


async def _issued(conn: asyncpg.Connection, warning_id: int) -> Version | None:
    """The version in force (at most one per warning); call with the warning's row locked."""
    row = await conn.fetchrow(
        "SELECT * FROM svc.warning_version WHERE warning_id = $1 AND status = 'issued'", warning_id
    )
    return None if row is None else version_from_row(row)


async def _version(conn: asyncpg.Connection, warning_id: int, number: int, *, lock: bool) -> Version:
    row = await conn.fetchrow(
        "SELECT * FROM svc.warning_version WHERE warning_id = $1 AND version = $2"
        + (" FOR UPDATE" if lock else ""),
        warning_id,
        number,
    )
    if row is None:
        raise StoreError("not_found", f"no version {number} of warning {warning_id}", "id")
    return version_from_row(row)


async def _audit(
    conn: asyncpg.Connection,
    ctx: Issuing,
    now: datetime,
    actor: str,
    action: str,
    state: WarningState,
    before: Version | None,
    after: Version,
    transition: Transition | None = None,
) -> None:
    def dump(v: Version | None) -> dict[str, Any] | None:
        return (
            None
            if v is None
            else {k: v for k, v in v.to_json().items() if k != "texts"} | {"texts": v.content.texts}
        )

    after_json = dump(after) or {}
    if transition is not None:
        after_json["transition"] = transition.record.as_dict()
    await audit_log.append(
        conn,
        at=now,
        actor=actor,
        action=action,
        subject=f"warning:{state.id}",
        before=dump(before),
        after=after_json,
        key=ctx.audit_key,
    )


async def _notify(conn: asyncpg.Connection, state: WarningState, action: str) -> None:
    event = {"kind": "warning", "id": int(state.id), "version": state.version, "action": action}
    await notify(conn, event | {"status": str(state.status)})


# ---------------------------------------------------------------------------------------------- validation


def impact(
    version: Version, units: Mapping[str, UnitRecord], proposal: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Who the version reaches: population per area (areas inside another listed area are not counted twice)
    and, when it came from a proposal, the exposed population and vulnerable groups the scoring found."""
    codes = set(version.content.areas)
    areas = [units[c] for c in version.content.areas if c in units]
    counted = [u for u in areas if not inside_any(u.code, codes, units)]
    vulnerable: dict[str, float] = {}
    exposed = version.content.exposed_population
    for item in (proposal or {}).get("impacts", []):
        if item.get("code") in codes:
            for group, people in (item.get("vulnerable") or {}).items():
                vulnerable[group] = vulnerable.get(group, 0.0) + float(people)
    return {
        "population": sum(u.population for u in counted),
        "exposed_population": exposed,
        "areas": [
            {
                "code": u.code,
                "name": u.name,
                "name_en": u.name_en,
                "level": u.level,
                "population": u.population,
            }
            for u in areas
        ],
        "vulnerable": {k: round(v) for k, v in sorted(vulnerable.items())},
    }


def unit_code(code: str, units: Mapping[str, UnitRecord]) -> str:
    """The 12-digit geocode of an area given as one or as its 6- or 9-digit admin code."""
    full = geocode(code)
    if full is None:
        raise StoreError("invalid", f"area {code!r} is not a 6, 9 or 12-digit admin code", "areas")
    if full not in units:
        raise StoreError("invalid", f"area {code} is not a unit of this region", "areas")
    return full


def _area(units: Mapping[str, UnitRecord], code: str) -> Area:
    u = units[code]
    return Area(code, u.name, u.name_en)


def _checked_content(content: Content, units: Mapping[str, UnitRecord], ctx: Issuing) -> Content:
    areas = _checked_areas(content.areas, units)
    texts = _checked_texts(content.texts)
    note = _clean(content.note, "note", MAX_NOTE_CHARS)
    polygons = _checked_polygons(content.polygons, ctx)
    if content.probability is not None and not 0 <= content.probability <= 1:
        raise StoreError("invalid", "probability is between 0 and 1", "probability")
    targets = None if content.area_targets is None else _checked_area_targets(content.area_targets, ctx)
    return dataclasses.replace(
        content, areas=areas, texts=texts, note=note, polygons=polygons, area_targets=targets
    )


def _checked_area_targets(targets: Any, ctx: Issuing) -> tuple[str, ...]:
    """The chosen targets of the area channels ("channel/target"), each one configured, none twice; an empty
    list is a choice too (none of them)."""
    if isinstance(targets, str) or not isinstance(targets, Sequence):
        raise StoreError("invalid", 'area_targets is a list of "channel/target"', "area_targets")
    known = {f"{t.channel}/{t.name}" for t in ctx.area_targets}
    unknown = [str(t)[:60] for t in targets if t not in known]
    if unknown:
        configured = ", ".join(sorted(known)) or "none"
        raise StoreError(
            "invalid", f"no such target: {', '.join(unknown[:5])} (configured: {configured})", "area_targets"
        )
    return tuple(dict.fromkeys(targets))


def area_targets_of(ctx: Issuing, version: Version) -> list[AreaTarget]:
    """The targets a version goes to when approved: those chosen for it, else those whose levels include its
    level; a Cancel goes to every target (whatever of the warning is out there is taken back)."""
    if version.state.msg_type == "Cancel":
        return list(ctx.area_targets)
    chosen = version.content.area_targets
    if chosen is None:
        return [t for t in ctx.area_targets if version.state.level in t.levels]
    return [t for t in ctx.area_targets if f"{t.channel}/{t.name}" in chosen]


def _checked_changes(
    changes: Mapping[str, Any], units: Mapping[str, UnitRecord], ctx: Issuing
) -> dict[str, Any]:
    """The content changes given, each checked on its own: refused before the transaction starts, not after
    it wrote something (the whole content is checked again once the version is known)."""
    checks: Mapping[str, Any] = {
        "areas": lambda v: _checked_areas(v, units),
        "polygons": lambda v: _checked_polygons(v, ctx),
        "texts": _checked_texts,
        "note": lambda v: _clean(v, "note", MAX_NOTE_CHARS),
        "area_targets": lambda v: _checked_area_targets(v, ctx),
    }
    return {k: checks[k](v) if k in checks else v for k, v in changes.items()}


def _checked_areas(areas: Any, units: Mapping[str, UnitRecord]) -> tuple[str, ...]:
    if isinstance(areas, str) or not isinstance(areas, Sequence) or not areas:
        raise StoreError("invalid", "a warning needs at least one area", "areas")
    return tuple(dict.fromkeys(unit_code(a, units) for a in areas))


def _checked_polygons(polygons: Any, ctx: Issuing) -> tuple[str, ...]:
    """CAP polygons as the CAP document will carry them (`documents.cap.check_polygons`), within the point
    budget; an empty list is no polygon (the areas' outlines stand)."""
    if isinstance(polygons, str) or not isinstance(polygons, Sequence):
        raise StoreError("invalid", "polygons is a list of CAP polygons ('lat,lon lat,lon ...')", "polygons")
    try:
        check_polygons(polygons, max_points=ctx.max_polygon_points)
    except CapError as e:
        raise StoreError("invalid", e.problem, "polygons") from e
    return tuple(polygons)


def _check_times(times: Mapping[str, Any], now: datetime) -> None:
    """Refuse an onset or expiry that is not a time with a time zone within `TIME_WINDOW` of `now`, and an
    expiry not after the onset when both are given."""
    earliest, latest = now - TIME_WINDOW, now + TIME_WINDOW
    for name in ("onset", "expires"):
        value = times.get(name)
        if name not in times:
            continue
        if not isinstance(value, datetime) or value.utcoffset() is None:
            raise StoreError("invalid", "must be a date and time with a time zone", name)
        try:
            in_window = earliest <= value.astimezone(UTC) <= latest
        except OverflowError:  # year 1 at +14:00 is before the first day Python can hold in UTC
            in_window = False
        if not in_window:
            raise StoreError(
                "invalid",
                f"{value.isoformat()} is more than {TIME_WINDOW_YEARS} years from now "
                f"(allowed: {earliest:%Y-%m-%d} to {latest:%Y-%m-%d})",
                name,
            )
    if "onset" in times and "expires" in times and times["expires"] <= times["onset"]:
        raise StoreError("invalid", "expires must be after onset", "expires")


def _checked_texts(texts: Any) -> dict[str, dict[str, str]]:
    if not isinstance(texts, Mapping):
        raise StoreError("invalid", "texts is an object keyed by language (zh-CN, en)", "texts")
    out: dict[str, dict[str, str]] = {}
    for lang, fields in texts.items():
        if lang not in LANGUAGES:
            raise StoreError(
                "invalid", f"texts: unknown language {lang!r}; known: {', '.join(LANGUAGES)}", "texts"
            )
        if not isinstance(fields, Mapping) or set(fields) - TEXT_FIELDS:
            raise StoreError(
                "invalid", f"texts.{lang} has only {', '.join(sorted(TEXT_FIELDS))}", f"texts.{lang}"
            )
        out[lang] = {k: _clean(v, f"texts.{lang}.{k}", MAX_TEXT_CHARS) for k, v in fields.items() if v}
    return out


def _clean(value: Any, name: str, limit: int) -> str:
    if not isinstance(value, str):
        raise StoreError("invalid", f"{name} must be text", name)
    if _NUL in value:
        raise StoreError("invalid", "contains a NUL character, which no text may hold", name)
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise StoreError(
            "invalid", "contains a lone surrogate (half of a UTF-16 pair, not a character)", name
        )
    value = (
        clean_text(value) if "\n" not in value else "\n".join(clean_text(line) for line in value.splitlines())
    )
    if len(value) > limit:
        raise StoreError("invalid", f"{name} is longer than {limit} characters", name)
    return value


def _split_changes(changes: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    unknown = set(changes) - LIFECYCLE_FIELDS - CONTENT_FIELDS
    if unknown:
        known = ", ".join(sorted(LIFECYCLE_FIELDS | CONTENT_FIELDS))
        raise StoreError(
            "invalid", f"cannot change {', '.join(sorted(unknown))}; changeable: {known}", sorted(unknown)[0]
        )
    return (
        {k: v for k, v in changes.items() if k in LIFECYCLE_FIELDS},
        {k: v for k, v in changes.items() if k in CONTENT_FIELDS},
    )


def _changed_content(
    content: Content, changes: Mapping[str, Any], units: Mapping[str, UnitRecord], ctx: Issuing
) -> Content:
    fields: dict[str, Any] = {
        k: tuple(v) if k in ("areas", "polygons", "area_targets") else v for k, v in changes.items()
    }
    updated = dataclasses.replace(content, **fields)
    if "areas" in changes and "polygons" not in changes and set(updated.areas) != set(content.areas):
        updated = dataclasses.replace(updated, polygons=())  # the old outline no longer matches the areas
    return _checked_content(updated, units, ctx)


__all__ = [
    "Content",
    "Issuing",
    "LifecycleError",
    "StoreError",
    "Version",
    "act",
    "create",
    "draft_from_proposal",
    "edit",
    "expire_due",
    "impact",
    "latest_versions",
    "message_of",
    "preview",
    "start_cancel",
    "start_update",
    "texts_of",
    "unit_code",
    "version_from_row",
    "versions",
]
