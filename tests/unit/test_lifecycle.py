"""The warning lifecycle: the transition table, permissions, the two-person rule, versions and exercises."""

from __future__ import annotations

import dataclasses
import itertools
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from warnings_svc.lifecycle.audit import AuditEntry, chain, verify
from warnings_svc.lifecycle.transitions import (
    CLOCK,
    IMMUTABLE,
    PERMISSIONS,
    SUPERSEDING,
    TRANSITIONS,
    Action,
    Actor,
    ApprovalPolicy,
    LifecycleError,
    Role,
    Transition,
    WarningState,
    WarningStatus,
    apply,
    cancel_message,
    is_public,
    new_draft,
    next_version,
)

NOW = datetime(2017, 7, 9, 8, tzinfo=UTC)
ONSET = NOW + timedelta(hours=3)
EXPIRES = NOW + timedelta(hours=12)
LATER = NOW + timedelta(hours=1)

WANG = Actor("wang", Role.forecaster)
LI = Actor("li", Role.approver)
ZHAO = Actor("zhao", Role.approver)
OPS = Actor("ops", Role.operations)
DEPT = Actor("water-bureau", Role.department)
ADMIN = Actor("root", Role.admin)
ACTORS = (WANG, LI, OPS, DEPT, ADMIN)


def draft(*, level: str = "yellow", by: Actor = WANG, exercise: bool = False) -> WarningState:
    """A rainstorm draft (rainstorm has all four levels), version 1."""
    return new_draft(
        id="42", hazard="rainstorm", level=level, onset=ONSET, expires=EXPIRES, actor=by, exercise=exercise
    )


def in_status(status: WarningStatus, **fields: Any) -> WarningState:
    """Version 1 written by wang, in any status."""
    return dataclasses.replace(draft(), status=status, **fields)


def issued(*, level: str = "yellow", exercise: bool = False) -> WarningState:
    """Version 1 written by wang and issued by li."""
    t = apply(draft(level=level, exercise=exercise), Action.submit, WANG, now=NOW)
    return apply(t.state, Action.approve, LI, now=NOW).state


def approved_successor(old: WarningState, new: WarningState, approver: Actor = ZHAO) -> Transition:
    """Submit a successor draft (by its author) and approve it, replacing ``old``."""
    pending = apply(new, Action.submit, WANG, now=LATER).state
    return apply(pending, Action.approve, approver, now=LATER, reason="checked", replaces=old)


def refused(code: str) -> pytest.RaisesExc[LifecycleError]:
    """Expect a refusal with this machine code."""
    return pytest.raises(LifecycleError, check=lambda e: e.code == code)


# ---------------------------------------------------------------------------------------------- the table


@pytest.mark.parametrize(("start", "action"), sorted(TRANSITIONS), ids=lambda v: str(v))
def test_every_transition_in_the_table_succeeds_for_a_permitted_actor(
    start: WarningStatus, action: Action
) -> None:
    expected = TRANSITIONS[(start, action)]
    if action in SUPERSEDING.values():
        old = issued()
        new = (
            next_version(old, {}, actor=WANG) if action is Action.update else cancel_message(old, actor=WANG)
        )
        t = approved_successor(old, new).superseded
        assert t is not None
        actor, now = ZHAO, LATER
    else:
        actor = Actor("someone", sorted(PERMISSIONS[action])[0])
        now = EXPIRES if action is Action.expire else NOW
        t = apply(in_status(start), action, actor, now=now, reason="because")
    assert t.state.status is expected
    assert (t.record.from_status, t.record.to_status, t.record.action) == (start, expected, action)
    assert (t.record.actor, t.record.role, t.record.at) == (actor.name, actor.role, now)
    assert t.record.subject == "warning:42"


NOT_IN_TABLE = [(s, a) for s, a in itertools.product(WarningStatus, Action) if (s, a) not in TRANSITIONS]


@pytest.mark.parametrize(("start", "action"), NOT_IN_TABLE, ids=lambda v: str(v))
def test_every_pair_outside_the_table_is_refused_as_not_allowed_or_immutable(
    start: WarningStatus, action: Action
) -> None:
    code = "immutable" if start in IMMUTABLE and action in (Action.edit, Action.discard) else "not_allowed"
    for actor in ACTORS:
        with refused(code):
            apply(in_status(start), action, actor, now=NOW, reason="because")


def test_the_table_reaches_every_status_and_every_action_is_permitted_to_someone() -> None:
    assert {WarningStatus.draft} | set(TRANSITIONS.values()) == set(WarningStatus)
    assert set(PERMISSIONS) == set(Action) == {a for _, a in TRANSITIONS}


# ---------------------------------------------------------------------------------------------- roles


@pytest.mark.parametrize("actor", [DEPT, OPS, ADMIN], ids=lambda a: str(a.role))
@pytest.mark.parametrize(
    ("status", "action"),
    [
        (WarningStatus.draft, Action.edit),
        (WarningStatus.draft, Action.submit),
        (WarningStatus.pending_approval, Action.approve),
        (WarningStatus.pending_approval, Action.return_for_edit),
        (WarningStatus.draft, Action.discard),
    ],
    ids=str,
)
def test_department_operations_and_admin_users_cannot_write_submit_or_issue(
    actor: Actor, status: WarningStatus, action: Action
) -> None:
    with refused("role"):
        apply(in_status(status), action, actor, now=NOW, reason="because")


@pytest.mark.parametrize("actor", [DEPT, OPS, ADMIN], ids=lambda a: str(a.role))
def test_department_operations_and_admin_users_cannot_create_a_warning_or_a_new_version(actor: Actor) -> None:
    with refused("role"):
        draft(by=actor)
    with refused("role"):
        next_version(issued(), {"level": "red"}, actor=actor)
    with refused("role"):
        cancel_message(issued(), actor=actor)


def test_a_forecaster_cannot_approve_or_return() -> None:
    pending = in_status(WarningStatus.pending_approval, created_by="other", editors=("other",))
    for action in (Action.approve, Action.return_for_edit):
        with refused("role"):
            apply(pending, action, WANG, now=NOW, reason="because")


@pytest.mark.parametrize("actor", [WANG, LI, DEPT], ids=lambda a: str(a.role))
def test_only_operations_and_admin_expire_and_only_at_or_after_expires(actor: Actor) -> None:
    with refused("role"):
        apply(issued(), Action.expire, actor, now=EXPIRES)
    with refused("too_early"):
        apply(issued(), Action.expire, CLOCK, now=EXPIRES - timedelta(microseconds=1))
    assert apply(issued(), Action.expire, ADMIN, now=EXPIRES).state.status is WarningStatus.expired


# ---------------------------------------------------------------------------------------------- two persons


@pytest.mark.parametrize(
    ("level", "policy", "allowed"),
    [
        ("blue", ApprovalPolicy(), True),
        ("yellow", ApprovalPolicy(), True),
        ("orange", ApprovalPolicy(), False),
        ("red", ApprovalPolicy(), False),
        *((lv, ApprovalPolicy.every_level(), False) for lv in ("blue", "yellow", "orange", "red")),
        ("red", ApprovalPolicy(frozenset()), True),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_an_approver_approves_their_own_warning_only_below_the_two_person_levels(
    level: str, policy: ApprovalPolicy, allowed: bool
) -> None:
    pending = apply(draft(level=level, by=LI), Action.submit, LI, now=NOW).state
    if allowed:
        t = apply(pending, Action.approve, LI, now=NOW, policy=policy)
        assert (t.state.status, t.state.approved_by) == (WarningStatus.issued, "li")
    else:
        with refused("self_approval"):
            apply(pending, Action.approve, LI, now=NOW, policy=policy)
        assert (
            apply(pending, Action.approve, ZHAO, now=NOW, policy=policy).state.status is WarningStatus.issued
        )


def test_an_approver_who_edited_a_red_draft_cannot_approve_it_even_after_a_later_edit_by_someone_else() -> (
    None
):
    edited = apply(draft(level="red"), Action.edit, LI, now=NOW).state
    edited = apply(edited, Action.edit, WANG, now=NOW).state
    pending = apply(edited, Action.submit, WANG, now=NOW).state
    assert pending.editors == ("wang", "li") and pending.last_edited_by == "wang"
    with refused("self_approval"):
        apply(pending, Action.approve, LI, now=NOW)


def test_an_approver_who_only_submitted_a_red_draft_may_approve_it() -> None:
    pending = apply(draft(level="red"), Action.submit, LI, now=NOW).state
    assert apply(pending, Action.approve, LI, now=NOW).state.approved_by == "li"


def test_approval_records_who_when_and_the_comment() -> None:
    pending = apply(draft(level="red"), Action.submit, WANG, now=NOW).state
    t = apply(pending, Action.approve, LI, now=LATER, reason="  matches the ensemble  ")
    assert (t.state.approved_by, t.state.approved_at, t.state.approval_comment) == (
        "li",
        LATER,
        "matches the ensemble",
    )
    assert t.record.reason == "matches the ensemble"


@pytest.mark.parametrize("new_level", ["yellow", "red"])
def test_one_person_can_neither_downgrade_nor_keep_a_red_warning_alone(new_level: str) -> None:
    old = issued(level="red")
    new = next_version(old, {"level": new_level}, actor=LI)
    pending = apply(new, Action.submit, LI, now=LATER).state
    with refused("self_approval"):
        apply(pending, Action.approve, LI, now=LATER, replaces=old)
    assert apply(pending, Action.approve, ZHAO, now=LATER, replaces=old).state.status is WarningStatus.issued


def test_one_person_cannot_cancel_a_red_warning_alone() -> None:
    old = issued(level="red")
    pending = apply(cancel_message(old, actor=LI), Action.submit, LI, now=LATER).state
    with refused("self_approval"):
        apply(pending, Action.approve, LI, now=LATER, replaces=old)


# ---------------------------------------------------------------------------------------------- guards


@pytest.mark.parametrize("status", sorted(IMMUTABLE))
def test_an_issued_or_later_version_cannot_be_edited_or_discarded(status: WarningStatus) -> None:
    for action in (Action.edit, Action.discard):
        with refused("immutable"):
            apply(
                in_status(status), action, LI, now=NOW, changes={"level": "red"} if action == "edit" else None
            )


@pytest.mark.parametrize("reason", ["", "   "])
def test_returning_without_a_reason_is_refused(reason: str) -> None:
    with refused("reason_required"):
        apply(in_status(WarningStatus.pending_approval), Action.return_for_edit, LI, now=NOW, reason=reason)


def test_a_returned_version_shows_its_reason_and_becomes_a_draft_again_when_edited() -> None:
    pending = in_status(WarningStatus.pending_approval)
    returned = apply(pending, Action.return_for_edit, LI, now=NOW, reason="areas miss Wuda").state
    assert (returned.status, returned.return_reason) == (WarningStatus.returned, "areas miss Wuda")
    edited = apply(returned, Action.edit, WANG, now=NOW).state
    assert (edited.status, edited.return_reason) == (WarningStatus.draft, "areas miss Wuda")


def test_editing_a_pending_version_withdraws_it_to_draft() -> None:
    t = apply(
        in_status(WarningStatus.pending_approval), Action.edit, WANG, now=NOW, changes={"level": "orange"}
    )
    assert (t.state.status, t.state.level) == (WarningStatus.draft, "orange")


@pytest.mark.parametrize("now", [EXPIRES, EXPIRES + timedelta(days=1)], ids=["at", "after"])
@pytest.mark.parametrize(
    ("status", "action"),
    [(WarningStatus.pending_approval, Action.approve), (WarningStatus.draft, Action.submit)],
    ids=str,
)
def test_submitting_or_approving_at_or_after_expires_is_refused(
    now: datetime, status: WarningStatus, action: Action
) -> None:
    with refused("expired"):
        apply(in_status(status), action, LI, now=now)


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"level": "purple"}, "invalid"),
        ({"hazard": "heat"}, "invalid"),
        ({"exercise": True}, "invalid"),
        ({"expires": ONSET}, "invalid"),
        ({"onset": datetime(2017, 7, 9, 12)}, "invalid"),  # naive
    ],
    ids=["unknown level", "hazard", "exercise flag", "expires before onset", "naive time"],
)
def test_edits_that_break_a_version_are_refused(changes: dict[str, object], code: str) -> None:
    with refused(code):
        apply(draft(), Action.edit, WANG, now=NOW, changes=changes)


def test_a_level_the_hazard_does_not_have_is_refused() -> None:
    with refused("invalid"):
        new_draft(id="1", hazard="frost", level="red", onset=ONSET, expires=EXPIRES, actor=WANG)
    with refused("invalid"):
        new_draft(id="1", hazard="hail", level="red", onset=ONSET, expires=EXPIRES, actor=WANG)


def test_changes_with_another_action_and_a_naive_now_are_refused() -> None:
    with refused("invalid"):
        apply(draft(), Action.submit, WANG, now=NOW, changes={"level": "red"})
    with refused("invalid"):
        apply(draft(), Action.submit, WANG, now=datetime(2017, 7, 9, 8))


def test_replaces_with_another_action_than_approve_is_refused() -> None:
    with refused("invalid"):
        apply(draft(), Action.submit, WANG, now=NOW, replaces=issued())


@pytest.mark.parametrize(
    "fields",
    [
        {"version": 0},
        {"approved_at": datetime(2017, 7, 9, 8)},
        {"expires": ONSET},
        {"msg_type": "Update"},
        {"version": 2},
        {"references": ("42/1",)},
    ],
    ids=[
        "version 0",
        "naive approval time",
        "expires at onset",
        "update of nothing",
        "alert v2",
        "alert refs",
    ],
)
def test_a_version_that_contradicts_itself_cannot_be_built(fields: dict[str, Any]) -> None:
    with refused("invalid"):
        dataclasses.replace(draft(), **fields)


def test_an_unknown_level_in_the_policy_is_refused() -> None:
    with refused("invalid"):
        ApprovalPolicy(frozenset({"purple"}))


def test_refusals_are_one_line() -> None:
    with pytest.raises(LifecycleError) as caught:
        apply(in_status(WarningStatus.issued), Action.edit, WANG, now=NOW)
    assert "\n" not in str(caught.value) and "Update" in str(caught.value)


# ---------------------------------------------------------------------------------------------- versions


def test_an_update_is_version_2_referencing_version_1_and_starts_as_a_draft() -> None:
    old = issued(level="orange")
    new = next_version(old, {"level": "red", "expires": EXPIRES + timedelta(hours=6)}, actor=WANG)
    assert (new.id, new.version, new.msg_type, new.status) == ("42", 2, "Update", WarningStatus.draft)
    assert new.references == ("42/1",) and new.level == "red"
    assert (new.created_by, new.editors, new.approved_by, new.approved_at) == ("wang", ("wang",), "", None)


def test_the_old_version_stays_issued_until_its_update_is_approved_then_becomes_updated() -> None:
    old = issued(level="orange")
    new = next_version(old, {"level": "red"}, actor=WANG)
    assert old.status is WarningStatus.issued and is_public(old)
    t = approved_successor(old, new)
    assert (t.state.status, t.state.approved_by) == (WarningStatus.issued, "zhao")
    assert t.superseded is not None
    assert (t.superseded.before, t.superseded.state.status) == (old, WarningStatus.updated)
    assert (
        t.superseded.record.actor == "zhao"
        and t.superseded.record.reason == "replaced by the Update of version 2"
    )
    assert [x.record.version for x in t.all()] == [2, 1]


def test_a_third_version_references_both_earlier_ones() -> None:
    v1 = issued()
    v2 = approved_successor(v1, next_version(v1, {"level": "orange"}, actor=WANG)).state
    v3 = next_version(v2, {"level": "red"}, actor=WANG)
    assert (v3.version, v3.references) == (3, ("42/1", "42/2"))
    with refused("not_successor"):
        approved_successor(v1, v3)


def test_an_update_or_cancel_cannot_be_applied_on_its_own() -> None:
    for action in SUPERSEDING.values():
        with refused("successor_required"):
            apply(issued(), action, ZHAO, now=LATER)


def test_approving_an_update_without_the_version_it_replaces_is_refused() -> None:
    old = issued()
    pending = apply(next_version(old, {}, actor=WANG), Action.submit, WANG, now=LATER).state
    with refused("successor_required"):
        apply(pending, Action.approve, ZHAO, now=LATER)
    with refused("not_successor"):
        apply(pending, Action.approve, ZHAO, now=LATER, replaces=dataclasses.replace(old, id="43"))
    with refused("not_successor"):
        alert = apply(draft(), Action.submit, WANG, now=NOW).state
        apply(alert, Action.approve, ZHAO, now=NOW, replaces=old)


def test_of_two_competing_updates_only_the_first_approved_supersedes() -> None:
    old = issued()
    first = next_version(old, {"level": "orange"}, actor=WANG)
    second = next_version(old, {"level": "red"}, actor=WANG)
    superseded = approved_successor(old, first).superseded
    assert superseded is not None
    with refused("not_allowed"):
        approved_successor(superseded.state, second)


def test_an_update_of_a_version_past_its_expiry_is_refused() -> None:
    old = issued()
    new = next_version(old, {"expires": EXPIRES + timedelta(hours=6)}, actor=WANG)
    pending = apply(new, Action.submit, WANG, now=EXPIRES).state
    with refused("expired"):
        apply(pending, Action.approve, ZHAO, now=EXPIRES, replaces=old)


def test_a_cancel_references_the_issued_version_and_cancels_it_when_approved() -> None:
    old = issued(level="orange")
    cancel = cancel_message(old, actor=WANG)
    assert (cancel.version, cancel.msg_type, cancel.references) == (2, "Cancel", ("42/1",))
    assert (cancel.level, cancel.onset, cancel.expires) == (old.level, old.onset, old.expires)
    with refused("invalid"):
        apply(cancel, Action.edit, WANG, now=NOW, changes={"level": "red"})
    t = approved_successor(old, cancel)
    assert t.state.status is WarningStatus.issued and t.superseded is not None
    assert t.superseded.state.status is WarningStatus.cancelled


@pytest.mark.parametrize("status", [s for s in WarningStatus if s is not WarningStatus.issued])
def test_only_an_issued_version_can_be_updated_or_cancelled(status: WarningStatus) -> None:
    with refused("not_allowed"):
        next_version(in_status(status), {}, actor=WANG)
    with refused("not_allowed"):
        cancel_message(in_status(status), actor=WANG)


def test_a_discarded_update_leaves_the_issued_version_alone() -> None:
    old = issued()
    t = apply(next_version(old, {}, actor=WANG), Action.discard, WANG, now=LATER, reason="not needed")
    assert t.state.status is WarningStatus.discarded and not is_public(t.state)
    assert old.status is WarningStatus.issued


# ---------------------------------------------------------------------------------------------- exercises


def test_an_exercise_keeps_its_flag_through_every_version_and_never_is_public() -> None:
    v1 = issued(exercise=True)
    v2 = approved_successor(v1, next_version(v1, {"level": "orange"}, actor=WANG))
    assert v2.superseded is not None
    v3 = approved_successor(v2.state, cancel_message(v2.state, actor=WANG))
    assert v3.superseded is not None
    versions = [v1, v2.state, v2.superseded.state, v3.state, v3.superseded.state]
    assert all(v.exercise and v.cap_status == "Exercise" for v in versions)
    assert not any(is_public(v) for v in versions)


@pytest.mark.parametrize("status", list(WarningStatus))
def test_a_real_version_is_public_once_issued_and_never_before(status: WarningStatus) -> None:
    assert is_public(in_status(status)) is (status in IMMUTABLE)
    assert in_status(status).cap_status == "Actual"


def test_an_update_of_a_real_warning_cannot_be_approved_as_an_exercise() -> None:
    old = issued()
    new = dataclasses.replace(next_version(old, {}, actor=WANG), exercise=True)
    with refused("not_successor"):
        approved_successor(old, new)


# ---------------------------------------------------------------------------------------------- audit


def test_every_transition_gives_json_ready_audit_fields_that_chain_and_verify() -> None:
    old = issued(level="red")
    t = approved_successor(old, next_version(old, {"level": "orange"}, actor=WANG))
    entries: list[AuditEntry] = []
    for x in t.all():
        entries.append(chain(entries[-1] if entries else None, **x.audit_fields()))
    assert verify(entries).ok and len(entries) == 2
    first = t.audit_fields()
    assert json.loads(json.dumps(first["after"]))["level"] == "orange"
    assert first["after"]["transition"] == {
        "subject": "warning:42",
        "version": 2,
        "actor": "zhao",
        "role": "approver",
        "action": "approve",
        "from": "pending_approval",
        "to": "issued",
        "at": "2017-07-09T09:00:00.000000+00:00",
        "reason": "checked",
    }
    assert (first["before"]["status"], first["after"]["status"]) == ("pending_approval", "issued")


def test_a_successor_numbered_after_a_discarded_draft_replaces_the_issued_version() -> None:
    v1 = issued()
    v3 = dataclasses.replace(
        next_version(v1, {"level": "red"}, actor=WANG), version=3, references=("42/2", "42/1")
    )
    t = approved_successor(v1, v3)
    assert t.superseded is not None and t.superseded.state.status is WarningStatus.updated
    with refused("not_successor"):  # the replaced version must be the last reference
        approved_successor(v1, dataclasses.replace(v3, references=("42/1", "42/2")))
