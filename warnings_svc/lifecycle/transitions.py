"""The warning lifecycle: who may move a version of a warning from which status to which, and when.

Every status change goes through `apply`, which looks the change up in one table (`TRANSITIONS`), checks
the actor's role in another (`PERMISSIONS`), runs the guards that belong to the action (`REASON_REQUIRED`,
the two-person rule of `ApprovalPolicy`, the clock) and returns the new state together with an audit-ready
`TransitionRecord` (who, role, action, from, to, when, reason). Nothing here reads a clock, a database or
the network: the caller passes ``now`` and stores what comes back.

One warning (``id``) is a chain of versions. Version 1 is an Alert; every later version is an Update or a
Cancel that lists every earlier version in ``references``. A version's statuses::

                   +-- edit (withdraws) ---+
                   v                       |
    new_draft -> draft --submit--> pending_approval --approve--> issued --expire (clock)--> expired
                 ^ ^ |                |         ^                  |
                 | +-+ edit    return_for_edit  | submit           +--update--> updated   (Update approved)
                 |                    v         |                  |
                 +---- edit ------ returned ----+                  +--cancel--> cancelled (Cancel approved)

    draft | pending_approval | returned --discard--> discarded (kept; never issued, never public)

Statuses ``issued``, ``updated``, ``cancelled``, ``expired`` are immutable: ``edit`` and ``discard`` are
refused with ``immutable``; a correction goes out as an Update (`next_version`), a withdrawal as a Cancel
(`cancel_message`). Both start as drafts of version n+1 and are submitted and approved like an Alert; the
version they replace stays ``issued`` (and public) until that approval, which is made with ``apply(successor,
Action.approve, ..., replaces=old)`` and returns both transitions at once (`Transition.superseded`), so no
state exists where the new version is issued and the old one is not superseded. ``update`` and ``cancel`` are
therefore never applied on their own (``successor_required``).

Permissions (`PERMISSIONS`; ``edit`` also covers creating a version: `new_draft`, `next_version`,
`cancel_message`)::

    action            forecaster  approver  operations  department  admin
    edit / create         x          x
    submit                x          x
    discard               x          x
    approve                          x
    return_for_edit                  x
    update, cancel                   x       (the approver of the successor supersedes the old version)
    expire                                       x                    x   (the clock runs as `CLOCK`)

Department users receive and acknowledge warnings and never write one; operations run dissemination and
the clock; admins manage users, not warnings, so a stolen admin token cannot issue.

Decisions where the issue is silent:

- Discarding keeps the version as ``discarded`` (never deleted), so ids, references and the audit trail stay
  whole; only never-issued versions can be discarded.
- Editing a ``pending_approval`` version withdraws it to ``draft``; editing a ``returned`` one also makes it a
  ``draft`` again (its ``return_reason`` stays visible); a returned version may be resubmitted unchanged.
- Two-person rule: the approver must not be anyone who created or edited the version (``editors``, not only
  the last editor: otherwise a trivial last edit by a colleague would let the main author approve). For a
  successor, the rule applies when the new *or* the replaced level is a two-person level, so a red
  warning cannot be downgraded or cancelled by one person.
- Submitting or approving at or after ``expires`` is refused (``expired``); superseding a version whose
  ``expires`` has passed is refused too (issue a new warning instead). ``expire`` before ``expires`` is
  refused (``too_early``).
- ``reason`` is the free text of any action: required for ``return_for_edit``, recorded as
  ``approval_comment`` on approval, kept in the record otherwise.
- Exercise versions (``exercise=True``) keep the flag through every version and change; `is_public` is
  false for them, so dissemination sends them to designated test recipients only.
- Error codes: ``not_allowed``, ``immutable``, ``role``, ``self_approval``, ``reason_required``, ``expired``,
  ``too_early``, ``successor_required``, ``not_successor``, ``invalid``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from warnings_svc.forecast.criteria import SEVERITY
from warnings_svc.vocabulary import HAZARD_LEVELS, MsgType, Status


class WarningStatus(StrEnum):
    """Where one version of a warning stands."""

    draft = "draft"
    pending_approval = "pending_approval"
    returned = "returned"  # sent back for edit with a reason
    issued = "issued"
    updated = "updated"  # superseded by an approved Update
    cancelled = "cancelled"  # withdrawn by an approved Cancel
    expired = "expired"
    discarded = "discarded"  # a never-issued version abandoned; kept for the record


class Action(StrEnum):
    """What a person (or the clock) does to a version."""

    edit = "edit"
    submit = "submit"
    approve = "approve"
    return_for_edit = "return_for_edit"
    update = "update"
    cancel = "cancel"
    expire = "expire"
    discard = "discard"


class Role(StrEnum):
    """What a user may do; one role per user."""

    forecaster = "forecaster"
    approver = "approver"  # chief forecaster
    operations = "operations"
    department = "department"
    admin = "admin"


TRANSITIONS: Mapping[tuple[WarningStatus, Action], WarningStatus] = {
    (WarningStatus.draft, Action.edit): WarningStatus.draft,
    (WarningStatus.pending_approval, Action.edit): WarningStatus.draft,
    (WarningStatus.returned, Action.edit): WarningStatus.draft,
    (WarningStatus.draft, Action.submit): WarningStatus.pending_approval,
    (WarningStatus.returned, Action.submit): WarningStatus.pending_approval,
    (WarningStatus.pending_approval, Action.approve): WarningStatus.issued,
    (WarningStatus.pending_approval, Action.return_for_edit): WarningStatus.returned,
    (WarningStatus.issued, Action.update): WarningStatus.updated,
    (WarningStatus.issued, Action.cancel): WarningStatus.cancelled,
    (WarningStatus.issued, Action.expire): WarningStatus.expired,
    (WarningStatus.draft, Action.discard): WarningStatus.discarded,
    (WarningStatus.pending_approval, Action.discard): WarningStatus.discarded,
    (WarningStatus.returned, Action.discard): WarningStatus.discarded,
}

PERMISSIONS: Mapping[Action, frozenset[Role]] = {
    Action.edit: frozenset({Role.forecaster, Role.approver}),
    Action.submit: frozenset({Role.forecaster, Role.approver}),
    Action.discard: frozenset({Role.forecaster, Role.approver}),
    Action.approve: frozenset({Role.approver}),
    Action.return_for_edit: frozenset({Role.approver}),
    Action.update: frozenset({Role.approver}),
    Action.cancel: frozenset({Role.approver}),
    Action.expire: frozenset({Role.operations, Role.admin}),
}

IMMUTABLE: frozenset[WarningStatus] = frozenset(
    {WarningStatus.issued, WarningStatus.updated, WarningStatus.cancelled, WarningStatus.expired}
)
PUBLISHED: frozenset[WarningStatus] = IMMUTABLE  # every status a version can only reach by being issued
REASON_REQUIRED: frozenset[Action] = frozenset({Action.return_for_edit})
SUPERSEDING: Mapping[MsgType, Action] = {"Update": Action.update, "Cancel": Action.cancel}
EDITABLE_FIELDS: frozenset[str] = frozenset({"level", "onset", "expires"})


class LifecycleError(Exception):
    """A refused change; ``code`` is machine-readable, the message one line for a person."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(" ".join(message.split()))
        self.code = code


@dataclass(frozen=True)
class Actor:
    """Who acts, with the role they hold at that moment."""

    name: str
    role: Role


CLOCK = Actor("clock", Role.operations)  # expires issued versions; never a person's account


@dataclass(frozen=True)
class ApprovalPolicy:
    """Which levels need a second person to approve (default orange and red)."""

    two_person_levels: frozenset[str] = frozenset({"orange", "red"})

    def __post_init__(self) -> None:
        levels = frozenset(self.two_person_levels)
        if unknown := levels - set(SEVERITY):
            raise LifecycleError("invalid", f"unknown levels in two_person_levels: {sorted(unknown)}")
        object.__setattr__(self, "two_person_levels", levels)

    @classmethod
    def every_level(cls) -> ApprovalPolicy:
        """Nobody approves their own warning, whatever its level."""
        return cls(frozenset(SEVERITY))


@dataclass(frozen=True)
class WarningState:
    """The lifecycle facts of one version of a warning (its texts and areas live with the message).

    ``editors`` lists everyone who created or edited this version, in order; ``references`` the
    ``version_id`` of every earlier version, oldest first, except that the version an Update or Cancel
    replaces is always the last (after a discarded draft of a successor, the next one skips its number).
    """

    id: str
    version: int
    status: WarningStatus
    hazard: str
    level: str
    created_by: str
    last_edited_by: str
    onset: datetime
    expires: datetime
    exercise: bool = False
    approved_by: str = ""
    approved_at: datetime | None = None
    approval_comment: str = ""
    references: tuple[str, ...] = ()
    msg_type: MsgType = "Alert"
    editors: tuple[str, ...] = ()
    return_reason: str = ""

    def __post_init__(self) -> None:
        if self.version < 1:
            raise LifecycleError("invalid", f"version must be 1 or more, not {self.version}")
        for name in ("onset", "expires", "approved_at"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise LifecycleError("invalid", f"{name} must be timezone-aware")
        if self.expires <= self.onset:
            raise LifecycleError("invalid", "expires must be after onset")
        if (self.msg_type == "Alert") != (self.version == 1) or len(self.references) != self.version - 1:
            raise LifecycleError(
                "invalid",
                f"version {self.version} is an {self.msg_type} with {len(self.references)} references",
            )

    @property
    def version_id(self) -> str:
        """The identity of this version, as later versions reference it: ``"42/3"``."""
        return f"{self.id}/{self.version}"

    @property
    def cap_status(self) -> Status:
        """CAP ``status`` of this version's message."""
        return "Exercise" if self.exercise else "Actual"


@dataclass(frozen=True)
class TransitionRecord:
    """What the audit log needs about one status change."""

    subject: str  # "warning:42"
    version: int
    actor: str
    role: Role
    action: Action
    from_status: WarningStatus
    to_status: WarningStatus
    at: datetime
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields (time as UTC ISO 8601)."""
        return {
            "subject": self.subject,
            "version": self.version,
            "actor": self.actor,
            "role": str(self.role),
            "action": str(self.action),
            "from": str(self.from_status),
            "to": str(self.to_status),
            "at": _iso(self.at),
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Transition:
    """The result of `apply`: the version before and after, the record, and the version it superseded."""

    before: WarningState
    state: WarningState
    record: TransitionRecord
    superseded: Transition | None = None  # approving an Update/Cancel also moves the replaced version

    def all(self) -> Iterator[Transition]:
        """This transition, then the one it caused (store and audit them in one transaction)."""
        yield self
        if self.superseded is not None:
            yield from self.superseded.all()

    def audit_fields(self) -> dict[str, Any]:
        """Keyword arguments for `warnings_svc.lifecycle.audit.chain`: before/after states, the record in ``after``."""
        return {
            "at": self.record.at,
            "actor": self.record.actor,
            "action": str(self.record.action),
            "subject": self.record.subject,
            "before": state_as_dict(self.before),
            "after": state_as_dict(self.state) | {"transition": self.record.as_dict()},
        }


# ---------------------------------------------------------------------------------------------- the one function


def apply(
    state: WarningState,
    action: Action,
    actor: Actor,
    *,
    now: datetime,
    reason: str = "",
    policy: ApprovalPolicy = ApprovalPolicy(),  # frozen, so one shared default is safe
    changes: Mapping[str, Any] | None = None,
    replaces: WarningState | None = None,
) -> Transition:
    """Move ``state`` by ``action``, or raise `LifecycleError`.

    ``changes`` (``edit`` only) sets any of `EDITABLE_FIELDS`; an edit without changes records that the
    caller changed content kept elsewhere (texts, areas). ``replaces`` (``approve`` of an Update or Cancel
    only) is the issued version it supersedes; the returned transition's ``superseded`` moves that one to
    ``updated`` or ``cancelled``.

    Example: ``apply(v2, Action.approve, Actor("li", Role.approver), now=now, reason="ok", replaces=v1)``
    returns ``v2`` issued (approved by li at ``now``) with ``superseded`` moving ``v1`` to ``updated``.
    """
    return _apply(state, action, actor, now, reason, policy, changes, replaces, successor=None)


def _apply(
    state: WarningState,
    action: Action,
    actor: Actor,
    now: datetime,
    reason: str,
    policy: ApprovalPolicy,
    changes: Mapping[str, Any] | None,
    replaces: WarningState | None,
    successor: WarningState | None,
) -> Transition:
    """`apply`, and with ``successor`` (from approving it) the update or cancel of the version it replaces."""
    if now.utcoffset() is None:
        raise LifecycleError("invalid", "now must be timezone-aware")
    try:
        action = Action(action)
    except ValueError as e:
        raise LifecycleError("invalid", f"unknown action {action!r}") from e
    target = TRANSITIONS.get((state.status, action))
    if target is None:
        if state.status in IMMUTABLE and action in (Action.edit, Action.discard):
            raise LifecycleError(
                "immutable",
                f"version {state.version_id} is {state.status} and cannot be changed: "
                "corrections go out as an Update, withdrawals as a Cancel",
            )
        raise LifecycleError("not_allowed", f"cannot {action} a version that is {state.status}")
    _check_role(actor, action)
    if action in SUPERSEDING.values() and successor is None:
        raise LifecycleError(
            "successor_required",
            f"{action} takes effect when the version replacing {state.version_id} is approved: "
            "apply(successor, Action.approve, ..., replaces=this version)",
        )
    reason = reason.strip()
    if action in REASON_REQUIRED and not reason:
        raise LifecycleError("reason_required", f"{action} needs a reason")
    if changes and action is not Action.edit:
        raise LifecycleError("invalid", f"changes are only accepted with edit, not {action}")
    if replaces is not None and action is not Action.approve:
        raise LifecycleError("invalid", f"replaces is only accepted with approve, not {action}")

    fields: dict[str, Any] = {"status": target}
    superseded: Transition | None = None
    if action is Action.edit:
        fields |= _validated_changes(state, changes or {})
        fields |= {"last_edited_by": actor.name, "editors": _with(state.editors, actor.name)}
    elif action is Action.submit:
        _check_not_expired(state, now, "submit")
    elif action is Action.approve:
        _check_not_expired(state, now, "approve")
        _check_two_person(state, actor, policy, replaces)
        fields |= {"approved_by": actor.name, "approved_at": now, "approval_comment": reason}
        if state.msg_type != "Alert":
            superseded = _supersede(state, replaces, actor, now, policy)
        elif replaces is not None:
            raise LifecycleError(
                "not_successor", f"version {state.version_id} is an Alert and replaces nothing"
            )
    elif action is Action.return_for_edit:
        fields["return_reason"] = reason
    elif action in SUPERSEDING.values():
        _check_not_expired(state, now, f"{action} (issue a new warning instead)")
    elif action is Action.expire and now < state.expires:
        raise LifecycleError("too_early", f"version {state.version_id} expires at {_iso(state.expires)}")

    new = dataclasses.replace(state, **fields)
    record = TransitionRecord(
        subject=f"warning:{state.id}",
        version=state.version,
        actor=actor.name,
        role=actor.role,
        action=action,
        from_status=state.status,
        to_status=target,
        at=now,
        reason=reason,
    )
    return Transition(before=state, state=new, record=record, superseded=superseded)


def _supersede(
    successor: WarningState, old: WarningState | None, actor: Actor, now: datetime, policy: ApprovalPolicy
) -> Transition:
    """The transition of the version an approved Update or Cancel replaces."""
    if old is None:
        raise LifecycleError(
            "successor_required",
            f"version {successor.version_id} is an {successor.msg_type}: approve it with replaces=the version it replaces",
        )
    if (
        old.id != successor.id
        or successor.version <= old.version  # later versions may lie between: discarded drafts
        or successor.references[-1:] != (old.version_id,)
        or old.exercise != successor.exercise
    ):
        raise LifecycleError(
            "not_successor", f"version {successor.version_id} does not directly replace {old.version_id}"
        )
    reason = f"replaced by the {successor.msg_type} of version {successor.version}"
    return _apply(old, SUPERSEDING[successor.msg_type], actor, now, reason, policy, None, None, successor)


def _check_role(actor: Actor, action: Action) -> None:
    if actor.role not in PERMISSIONS[action]:
        raise LifecycleError("role", f"{actor.role} users may not {action} a warning")


def _check_not_expired(state: WarningState, now: datetime, what: str) -> None:
    if now >= state.expires:
        raise LifecycleError(
            "expired", f"version {state.version_id} expired at {_iso(state.expires)}: cannot {what}"
        )


def second_person_levels(
    state: WarningState, actor_name: str, policy: ApprovalPolicy, replaces: WarningState | None
) -> frozenset[str]:
    """The two-person levels that keep `actor_name` from approving `state` because they created or edited
    it (the new level and, for an Update or Cancel, the replaced one); empty when they may approve."""
    levels = {state.level} | ({replaces.level} if replaces is not None else set())
    authors = {state.created_by, state.last_edited_by, *state.editors}
    return frozenset(levels & policy.two_person_levels) if actor_name in authors else frozenset()


def _check_two_person(
    state: WarningState, actor: Actor, policy: ApprovalPolicy, replaces: WarningState | None
) -> None:
    if second_person_levels(state, actor.name, policy, replaces):
        levels = {state.level} | ({replaces.level} if replaces is not None else set())
        raise LifecycleError(
            "self_approval",
            f"{actor.name} created or edited version {state.version_id} ({'/'.join(sorted(levels))}): "
            "a second person must approve it",
        )


# ---------------------------------------------------------------------------------------------- new versions


def new_draft(
    *,
    id: str,
    hazard: str,
    level: str,
    onset: datetime,
    expires: datetime,
    actor: Actor,
    exercise: bool = False,
) -> WarningState:
    """Version 1 of a new warning, as a draft written by ``actor`` (audit it as a ``create``)."""
    _check_role(actor, Action.edit)
    if hazard not in HAZARD_LEVELS:
        raise LifecycleError("invalid", f"unknown hazard {hazard!r}; known: {', '.join(HAZARD_LEVELS)}")
    state = WarningState(
        id=id,
        version=1,
        status=WarningStatus.draft,
        hazard=hazard,
        level=level,
        created_by=actor.name,
        last_edited_by=actor.name,
        onset=onset,
        expires=expires,
        exercise=exercise,
        editors=(actor.name,),
    )
    _validated_changes(state, {"level": level})
    return state


def next_version(issued: WarningState, changes: Mapping[str, Any], *, actor: Actor) -> WarningState:
    """The draft of an Update to ``issued``: version n+1, referencing it, to be submitted and approved.

    ``issued`` stays issued (and public) until this draft is approved with ``replaces=issued``.
    """
    return _successor(issued, "Update", changes, actor)


def cancel_message(issued: WarningState, *, actor: Actor) -> WarningState:
    """The draft of a Cancel of ``issued``: version n+1, referencing it, same hazard, level and times.

    Approving it (``replaces=issued``) issues the Cancel message and moves ``issued`` to ``cancelled``.
    """
    return _successor(issued, "Cancel", {}, actor)


def _successor(
    issued: WarningState, msg_type: MsgType, changes: Mapping[str, Any], actor: Actor
) -> WarningState:
    _check_role(actor, Action.edit)
    if issued.status is not WarningStatus.issued:
        raise LifecycleError(
            "not_allowed", f"only an issued version can be replaced; {issued.version_id} is {issued.status}"
        )
    draft = dataclasses.replace(
        issued,
        version=issued.version + 1,
        status=WarningStatus.draft,
        msg_type=msg_type,
        created_by=actor.name,
        last_edited_by=actor.name,
        editors=(actor.name,),
        approved_by="",
        approved_at=None,
        approval_comment="",
        return_reason="",
        references=(*issued.references, issued.version_id),
    )
    return dataclasses.replace(draft, **_validated_changes(draft, changes))


def _validated_changes(state: WarningState, changes: Mapping[str, Any]) -> dict[str, Any]:
    if unknown := set(changes) - EDITABLE_FIELDS:
        raise LifecycleError(
            "invalid",
            f"cannot change {', '.join(sorted(unknown))}; editable: {', '.join(sorted(EDITABLE_FIELDS))}",
        )
    if changes and state.msg_type == "Cancel":
        raise LifecycleError("invalid", "a Cancel keeps the level and times of the version it cancels")
    level = changes.get("level", state.level)
    if level not in HAZARD_LEVELS.get(state.hazard, SEVERITY):
        raise LifecycleError("invalid", f"{state.hazard} has no {level!r} level")
    dataclasses.replace(state, **changes)  # runs the time checks of WarningState
    return dict(changes)


# ---------------------------------------------------------------------------------------------- reading


def is_public(state: WarningState) -> bool:
    """Whether this version belongs to the public: issued (now or before) and not an exercise.

    Exercise versions go to designated test recipients only, whatever their status.
    """
    return not state.exercise and state.status in PUBLISHED


def state_as_dict(state: WarningState) -> dict[str, Any]:
    """JSON-ready fields of a version (times as UTC ISO 8601), for audit ``before``/``after``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(state):
        value = getattr(state, f.name)
        if isinstance(value, datetime):
            value = _iso(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, StrEnum):
            value = str(value)
        out[f.name] = value
    return out


def _with(names: Iterable[str], name: str) -> tuple[str, ...]:
    names = tuple(names)
    return names if name in names else (*names, name)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds")
