"""The escalation ladder's states: the transition table, the one function applying it, the rungs in order, and
the migration's states held to the table."""

from __future__ import annotations

import doctest
import itertools
from importlib import resources

import pytest

import warnings_svc.coverage.escalation as escalation_module
from warnings_svc.coverage.escalation import (
    ESCALATION_TRANSITIONS,
    EscalationError,
    EscalationEvent,
    EscalationState,
    escalation_transition,
    next_rung,
)

# written out once more by hand, from the issue: proposed -> applied | declined | stopped; an apply that finds
# nothing to do ends skipped
EXPECTED = {
    ("proposed", "apply"): "applied",
    ("proposed", "skip"): "skipped",
    ("proposed", "decline"): "declined",
    ("proposed", "stop"): "stopped",
}


def test_the_table_is_the_documented_one_and_every_other_move_is_refused() -> None:
    assert {(str(s), str(e)): str(t) for (s, e), t in ESCALATION_TRANSITIONS.items()} == EXPECTED
    for state, event in itertools.product(EscalationState, EscalationEvent):
        if (str(state), str(event)) in EXPECTED:
            assert escalation_transition(state, event) == EXPECTED[(str(state), str(event))]
        else:
            with pytest.raises(EscalationError) as refused:
                escalation_transition(state, event)
            assert refused.value.code == "conflict" and "only a proposed one" in str(refused.value)


def test_only_proposed_leads_anywhere_and_every_state_is_one_the_database_accepts() -> None:
    assert {s for s, _ in ESCALATION_TRANSITIONS} == {EscalationState.proposed}
    migration = resources.files("warnings_svc").joinpath("migrations/0016_coverage.sql").read_text("utf-8")
    declared = migration[migration.index("state          text") :].split("\n")[0]
    for state in EscalationState:
        assert f"'{state}'" in declared


def test_each_miss_takes_the_next_rung_and_the_ladder_ends() -> None:
    ladder = ("area_sms_again", "cell_broadcast", "loudspeakers_again", "more_relayers")
    assert [next_rung(ladder, n) for n in range(5)] == [
        (1, "area_sms_again"), (2, "cell_broadcast"), (3, "loudspeakers_again"), (4, "more_relayers"), None,
    ]  # fmt: skip
    assert next_rung((), 0) is None


def test_the_examples_in_the_docstrings_hold() -> None:
    assert doctest.testmod(escalation_module).failed == 0


def test_the_default_checkpoints_reach_every_rung_of_the_default_ladders() -> None:
    from warnings_svc.settings import CoverageSettings

    settings = CoverageSettings()
    for level, ladder in settings.escalation.ladders.items():
        checkpoints = settings.checkpoints_min[level]
        assert len(checkpoints) >= len(ladder), level  # one rung per checkpoint missed
        assert list(checkpoints) == sorted(set(checkpoints))
