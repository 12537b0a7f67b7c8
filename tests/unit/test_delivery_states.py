"""A delivery's states: the transition table, the one function applying it, and the outbox's SQL held to it."""

from __future__ import annotations

import doctest
import itertools
import re
from importlib import resources

import pytest

import warnings_svc.dissemination.delivery_states as delivery_states_module
from channels.base import ReceiptState
from warnings_svc.dissemination import outbox
from warnings_svc.dissemination.delivery_states import (
    FINAL_STATES,
    TOLD_STATES,
    TRANSITIONS,
    DeliveryEvent,
    DeliveryState,
    DeliveryStateError,
    transition,
)

# The table written out once more, by hand, from the outbox's documented life of a delivery (migration 6)
EXPECTED = {
    ("pending", "claim"): "sending",
    ("pending", "drop"): "dropped",
    ("sending", "release"): "pending",
    ("sending", "reclaim"): "pending",
    ("sending", "retry"): "pending",
    ("sending", "accept"): "sent",
    ("sending", "give_up"): "dead",
    ("sending", "refuse"): "dead",
    ("sending", "receipt_delivered"): "delivered",
    ("sending", "receipt_accepted"): "accepted",
    ("sending", "receipt_failed"): "failed",
    ("sent", "receipt_delivered"): "delivered",
    ("sent", "receipt_accepted"): "accepted",
    ("sent", "receipt_failed"): "failed",
}
FORBIDDEN = [pair for pair in itertools.product(DeliveryState, DeliveryEvent) if pair not in TRANSITIONS]


def test_doctests() -> None:
    assert doctest.testmod(delivery_states_module).failed == 0


def test_the_table_is_the_documented_life_of_a_delivery() -> None:
    assert {(str(s), str(e)): str(t) for (s, e), t in TRANSITIONS.items()} == EXPECTED


@pytest.mark.parametrize(("state", "event"), list(TRANSITIONS), ids=lambda x: str(x))
def test_every_allowed_transition_moves_the_delivery_to_the_state_of_the_table(
    state: DeliveryState, event: DeliveryEvent
) -> None:
    assert transition(state, event) is TRANSITIONS[state, event]
    assert transition(str(state), str(event)) is TRANSITIONS[state, event]  # text from the database


@pytest.mark.parametrize(("state", "event"), FORBIDDEN, ids=lambda x: str(x))
def test_every_other_transition_is_refused_with_a_typed_error(
    state: DeliveryState, event: DeliveryEvent
) -> None:
    with pytest.raises(DeliveryStateError) as refused:
        transition(state, event)
    assert (refused.value.state, refused.value.event) == (state, event)


@pytest.mark.parametrize(("state", "event"), [("queued", "claim"), ("pending", "send"), ("", "")])
def test_an_unknown_state_or_event_is_refused_with_the_same_error(state: str, event: str) -> None:
    with pytest.raises(DeliveryStateError, match=f"that is {state} cannot {event}"):
        transition(state, event)


def test_the_final_states_are_those_nothing_moves_a_delivery_out_of() -> None:
    assert {"delivered", "accepted", "failed", "dead", "dropped"} == FINAL_STATES
    assert not {state for state, _ in TRANSITIONS} & FINAL_STATES


def test_every_state_can_be_reached_from_pending() -> None:
    reached, frontier = {DeliveryState.pending}, [DeliveryState.pending]
    while frontier:
        state = frontier.pop()
        for (origin, _), target in TRANSITIONS.items():
            if origin is state and target not in reached:
                reached.add(target)
                frontier.append(target)
    assert reached == set(DeliveryState)


def test_the_outbox_spells_its_state_lists_from_the_enum_in_its_order() -> None:
    assert outbox.STATES == (
        "pending",
        "sending",
        "sent",
        "delivered",
        "accepted",
        "failed",
        "dead",
        "dropped",
    )
    assert outbox.FINAL_STATES == ("delivered", "accepted", "failed", "dead", "dropped")
    assert outbox.TOLD_STATES == ("sending", "sent", "delivered", "accepted")
    assert set(outbox.TOLD_STATES) == TOLD_STATES


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        ([ReceiptState.DELIVERED, ReceiptState.DELIVERED], "delivered"),
        ([ReceiptState.DELIVERED, ReceiptState.ACCEPTED], "accepted"),
        ([ReceiptState.DELIVERED, ReceiptState.EXPIRED], "failed"),
        ([ReceiptState.FAILED, None], "failed"),
        ([ReceiptState.DELIVERED, ReceiptState.EN_ROUTE], None),
        ([], None),
    ],
)
def test_a_delivery_is_settled_in_a_state_the_table_reaches_from_sent(
    parts: list[ReceiptState | None], expected: str | None
) -> None:
    settled = outbox.settled_state(parts)
    assert settled == expected
    assert settled is None or settled in {
        TRANSITIONS[DeliveryState.sent, e] for e in DeliveryEvent if (DeliveryState.sent, e) in TRANSITIONS
    }


# --- the SQL held to the table ------------------------------------------------------------------------

# the states a statement moves deliveries out of: `d.state = 'x'` (`d.queued` is state 'pending', migration 8)
FROM_STATE = re.compile(r"\bd\.state = '(\w+)'")
# the states it writes: `SET state = 'x'`, or `THEN 'x'` / `ELSE 'x'` in the CASE that computes the state
TO_STATE = re.compile(r"(?:\bSET state =|\bTHEN|\bELSE) '(\w+)'")
# the states a statement taking its new state from a parameter tells apart: `r.state = 'x'`, `r.state IN (...)`
PARAMETER_STATES = re.compile(r"\br\.state (?:= '(\w+)'|IN \(([^)]*)\))")


def states_moved_from(sql: str) -> set[str]:
    return set(FROM_STATE.findall(sql)) | ({"pending"} if re.search(r"WHERE d\.queued\b", sql) else set())


@pytest.mark.parametrize("name", sorted(outbox.STATEMENT_TRANSITIONS))
def test_each_statement_moves_deliveries_only_as_it_says_and_the_table_allows(name: str) -> None:
    sql = getattr(outbox, name)
    declared = outbox.STATEMENT_TRANSITIONS[name]
    targets = {str(transition(state, event)) for state, event in declared}  # raises if the table forbids one
    assert states_moved_from(sql) == {str(state) for state, _ in declared}
    if re.search(r"\bSET state = r\.state\b", sql):  # the new states come from record_results
        spelled = {
            state.strip(" '")
            for one, many in PARAMETER_STATES.findall(sql)
            for state in ([one] if one else many.split(","))
        }
        assert spelled and spelled <= targets
    else:
        assert set(TO_STATE.findall(sql)) == targets


def test_every_statement_of_the_outbox_that_writes_a_delivery_state_is_held_to_the_table() -> None:
    writing = {
        name
        for name, value in vars(outbox).items()
        if isinstance(value, str) and re.search(r"UPDATE svc\.delivery d\s+SET\b.*\bstate =", value, re.S)
    }
    assert writing == set(outbox.STATEMENT_TRANSITIONS)


def test_the_sql_helper_patterns_see_what_they_should() -> None:
    """The patterns above, on statements written for the purpose (so a pattern that matches nothing fails)."""
    assert states_moved_from("UPDATE svc.delivery d SET x = 1 WHERE d.queued AND d.state = 'sent'") == {
        "pending",
        "sent",
    }
    assert set(TO_STATE.findall("SET state = 'a', b = CASE WHEN x THEN 'not' END")) == {"a", "not"}
    assert set(TO_STATE.findall("state = CASE WHEN ready.live THEN 'b' ELSE 'c' END")) == {"b", "c"}


def test_the_tables_check_constraint_lists_exactly_the_states_of_the_enum() -> None:
    sql = "".join(
        f.read_text(encoding="utf-8")
        for f in sorted(
            resources.files("warnings_svc").joinpath("migrations").iterdir(), key=lambda f: f.name
        )
        if f.name.endswith(".sql")
    )
    table = re.search(r"CREATE TABLE svc\.delivery \((.*?)\n\);", sql, re.S)
    assert table is not None
    check = re.search(r"\bstate\s+text NOT NULL DEFAULT '(\w+)'\s+CHECK \(state IN \(([^)]*)\)\)", table[1])
    assert check is not None
    assert check[1] == "pending"
    assert {s.strip(" '\n") for s in check[2].split(",")} == set(DeliveryState)
    # no later migration changes which states a delivery may have
    assert not re.search(r"ALTER TABLE svc\.delivery\s[^;]*\bstate\b[^;]*\bCHECK \(state IN", sql)
