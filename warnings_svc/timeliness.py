"""Timeliness of the warning chain as Prometheus histograms: forecast run to proposal, proposal to approval,
approval to each channel's first send attempt, and lead time (issue to onset).

One set per registry (`timeliness_on`): the service, its embedded dispatchers and a `warnings-svc dispatch`
process each observe on the registry they expose, and dispatchers sharing a registry share the histograms.
Labels are hazard and level (and channel for the first attempt) only: never an id.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from datetime import datetime

from prometheus_client import CollectorRegistry, Histogram

# A run is scored within seconds to minutes; a big ensemble on a busy machine may take most of an hour.
GRID_TO_PROPOSAL_BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
# A forecaster and an approver act within minutes when the weather presses, hours when it does not.
PROPOSAL_TO_APPROVAL_BUCKETS = (60.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0)
# Channels start within a second of approval; a channel whose circuit is open may wait for minutes.
APPROVAL_TO_FIRST_DELIVERY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Lead time: 0 for an event already under way, up to a day or two for a forecast one.
LEAD_TIME_BUCKETS = (0.0, 900.0, 1800.0, 3600.0, 7200.0, 10800.0, 21600.0, 43200.0, 86400.0, 172800.0)


class Timeliness:
    """The timeliness histograms on one registry (use `timeliness_on`, which makes one per registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.grid_to_proposal = Histogram(
            "warnings_grid_to_proposal_seconds",
            "From a forecast run's arrival (its files' newest modification time in the inbox, or the upload) "
            "to its proposals written, per proposal, by hazard and level.",
            ["hazard", "level"],
            buckets=GRID_TO_PROPOSAL_BUCKETS,
            registry=registry,
        )
        self.proposal_to_approval = Histogram(
            "warnings_proposal_to_approval_seconds",
            "From a proposal written to the approval of the warning version drafted from it, by hazard and "
            "level.",
            ["hazard", "level"],
            buckets=PROPOSAL_TO_APPROVAL_BUCKETS,
            registry=registry,
        )
        self.approval_to_first_delivery = Histogram(
            "warnings_approval_to_first_delivery_seconds",
            "From a version's approval to the first send attempt on each channel (observed once per version "
            "and channel, whichever dispatcher made it), by hazard, level and channel.",
            ["hazard", "level", "channel"],
            buckets=APPROVAL_TO_FIRST_DELIVERY_BUCKETS,
            registry=registry,
        )
        self.lead_time = Histogram(
            "warnings_lead_time_seconds",
            "From a version's issue to its onset, observed at issue (0 when the event is already under way), "
            "by hazard and level; Cancel messages are not observed.",
            ["hazard", "level"],
            buckets=LEAD_TIME_BUCKETS,
            registry=registry,
        )

    def observe_proposals(
        self, arrived_at: datetime, written_at: datetime, proposals: Iterable[tuple[str, str]]
    ) -> None:
        """One observation per (hazard, level) of the proposals a run wrote."""
        seconds = max(0.0, (written_at - arrived_at).total_seconds())
        for hazard, level in proposals:
            self.grid_to_proposal.labels(hazard, level).observe(seconds)

    def observe_issue(
        self,
        *,
        hazard: str,
        level: str,
        msg_type: str,
        approved_at: datetime,
        sent: datetime,
        onset: datetime,
        proposal_written_at: datetime | None,
    ) -> None:
        """What an approval tells: the time since its proposal (when drafted from one) and the lead time."""
        if proposal_written_at is not None:
            waited = max(0.0, (approved_at - proposal_written_at).total_seconds())
            self.proposal_to_approval.labels(hazard, level).observe(waited)
        if msg_type != "Cancel":
            self.lead_time.labels(hazard, level).observe(max(0.0, (onset - sent).total_seconds()))

    def observe_first_attempt(
        self, hazard: str, level: str, channel: str, approved_at: datetime, attempted_at: datetime
    ) -> None:
        seconds = max(0.0, (attempted_at - approved_at).total_seconds())
        self.approval_to_first_delivery.labels(hazard, level, channel).observe(seconds)


_ON_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, Timeliness] = weakref.WeakKeyDictionary()


def timeliness_on(registry: CollectorRegistry) -> Timeliness:
    """The timeliness histograms of `registry`, registered on it the first time it is asked for."""
    found = _ON_REGISTRY.get(registry)
    if found is None:
        found = _ON_REGISTRY[registry] = Timeliness(registry)
    return found
