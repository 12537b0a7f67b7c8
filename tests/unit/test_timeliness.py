"""The timeliness histograms: what each observation records, and one set per registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from warnings_svc.dissemination.first_attempts import earliest
from warnings_svc.timeliness import timeliness_on

NOW = datetime(2026, 7, 1, 6, 0, tzinfo=UTC)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_one_set_per_registry_so_dispatchers_in_one_process_share_it() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    assert timeliness_on(first) is timeliness_on(first)
    assert timeliness_on(first) is not timeliness_on(second)


def test_a_run_observes_each_proposal_by_hazard_and_level() -> None:
    registry = CollectorRegistry()
    t = timeliness_on(registry)
    t.observe_proposals(
        NOW - timedelta(seconds=45), NOW, [("heat", "red"), ("heat", "red"), ("frost", "blue")]
    )
    assert sample(registry, "warnings_grid_to_proposal_seconds_count", hazard="heat", level="red") == 2
    assert sample(registry, "warnings_grid_to_proposal_seconds_sum", hazard="heat", level="red") == 90
    assert (
        sample(registry, "warnings_grid_to_proposal_seconds_bucket", hazard="frost", level="blue", le="30.0")
        == 0
    )
    assert (
        sample(registry, "warnings_grid_to_proposal_seconds_bucket", hazard="frost", level="blue", le="60.0")
        == 1
    )


def test_an_approval_observes_the_wait_since_its_proposal_and_the_lead_time() -> None:
    registry = CollectorRegistry()
    timeliness_on(registry).observe_issue(
        hazard="rainstorm", level="orange", msg_type="Alert", approved_at=NOW, sent=NOW,
        onset=NOW + timedelta(hours=3), proposal_written_at=NOW - timedelta(minutes=20),
    )  # fmt: skip
    assert (
        sample(registry, "warnings_proposal_to_approval_seconds_sum", hazard="rainstorm", level="orange")
        == 1200
    )
    assert sample(registry, "warnings_lead_time_seconds_sum", hazard="rainstorm", level="orange") == 10800


def test_a_warning_without_proposal_a_late_onset_and_a_cancel() -> None:
    registry = CollectorRegistry()
    t = timeliness_on(registry)
    # drafted by hand: no proposal wait; the event under way already: lead time 0, not negative
    t.observe_issue(
        hazard="heat", level="yellow", msg_type="Update", approved_at=NOW, sent=NOW,
        onset=NOW - timedelta(hours=1), proposal_written_at=None,
    )  # fmt: skip
    assert (
        sample(registry, "warnings_proposal_to_approval_seconds_count", hazard="heat", level="yellow") is None
    )
    assert sample(registry, "warnings_lead_time_seconds_bucket", hazard="heat", level="yellow", le="0.0") == 1
    # a Cancel has no onset ahead of it
    t.observe_issue(
        hazard="heat", level="yellow", msg_type="Cancel", approved_at=NOW, sent=NOW,
        onset=NOW + timedelta(hours=1), proposal_written_at=None,
    )  # fmt: skip
    assert sample(registry, "warnings_lead_time_seconds_count", hazard="heat", level="yellow") == 1


def test_a_first_attempt_is_labelled_by_channel() -> None:
    registry = CollectorRegistry()
    timeliness_on(registry).observe_first_attempt(
        "sandstorm", "red", "partner_webhook", NOW, NOW + timedelta(seconds=3)
    )
    assert (
        sample(registry, "warnings_approval_to_first_delivery_seconds_sum", hazard="sandstorm", level="red",
               channel="partner_webhook") == 3
    )  # fmt: skip


def test_the_earliest_attempt_of_each_version_is_kept() -> None:
    later = NOW + timedelta(seconds=5)
    assert earliest([((1, 1), later), ((1, 1), NOW), ((2, 1), later)]) == {(1, 1): NOW, (2, 1): later}
