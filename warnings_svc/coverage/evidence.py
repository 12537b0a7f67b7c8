"""The evidence of reach of one warning, read from the database and turned into people per channel and area
(`warnings_svc.coverage.model.Reach`), and the warning's coverage computed from it.

What each kind of evidence counts as (docs/coverage.md):

- registered SMS: each person whose SMS was reported delivered to the handset, once, in the first of their
  registered areas inside the warned ones (measured, identified);
- operator area SMS: handsets delivered / handsets per person (measured);
- cell broadcast: the CBC's estimate of people (estimated);
- loudspeakers and displays over MQTT: the population served by each terminal that acknowledged playback,
  at the time it played (measured);
- the emergency broadcast platform: the share of an area's terminals that played x its population x the
  platform's audience share (measured: the platform counts terminals that confirmed playback);
- radio and TV: population x audience share once airing is confirmed (estimated);
- relayers (再传播): the people they reported passing the warning on to (reported).

Evidence of every issued version of the warning counts, against the areas of its latest issued version; where
several versions (or rounds of escalation) brought evidence from the same target and area, the largest figure
counts (they reached the same people). A Cancel's messages count for nothing. A peer's time is believed only up
to when its report arrived here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from warnings_svc.coverage.model import Area, Coverage, Evidence, Reach, Region
from warnings_svc.settings import CoverageSettings, DispatchSettings

OPERATIONAL_MINUTES = (10, 30)  # the figures kept for every warning: coverage 10 and 30 minutes after issue


@dataclass(frozen=True, slots=True)
class WarningFacts:
    """What coverage needs to know of a warning: its latest issued version and when it was first issued."""

    warning_id: int
    version: int
    hazard: str
    level: str
    status: str
    areas: tuple[str, ...]
    issued_at: datetime  # the first issued version's sending time: minutes are counted from it
    expires: datetime
    exercise: bool


@dataclass(frozen=True, slots=True)
class Measurement:
    """A warning's coverage now, with the evidence behind it (to evaluate at other times)."""

    warning: WarningFacts
    evidence: Evidence
    now: Coverage
    target: float
    reached_target_at: datetime | None

    def at_minutes(self, minutes: float) -> Coverage:
        """The coverage `minutes` after issue; while that time is still to come, the figure so far (which
        `is_complete` tells apart)."""
        when = min(self.warning.issued_at + timedelta(minutes=minutes), self.now.at)
        return self.evidence.at(when, self.now.overlap)

    def is_complete(self, minutes: float) -> bool:
        """Whether `minutes` after issue has passed, so that figure can no longer grow."""
        return self.warning.issued_at + timedelta(minutes=minutes) <= self.now.at

    def minutes_to_target(self) -> float | None:
        if self.reached_target_at is None:
            return None
        return max(0.0, (self.reached_target_at - self.warning.issued_at).total_seconds() / 60)

    def as_json(self) -> dict[str, object]:
        """The figures the smoke run, the API and the snapshots give."""
        figures = self.now.as_json()
        minutes = self.minutes_to_target()
        return {
            "warning_id": self.warning.warning_id,
            "version": self.warning.version,
            "target": self.target,
            "public": figures["public"],
            "measured": figures["measured"],
            "estimated_or_reported": figures["estimated_or_reported"],
            # the figures 10 and 30 minutes after issue; before then, the figure so far (`*_complete` false)
            "at_10_min": round(self.at_minutes(10).public, 4),
            "at_10_min_complete": self.is_complete(10),
            "at_30_min": round(self.at_minutes(30).public, 4),
            "at_30_min_complete": self.is_complete(30),
            "minutes_to_target": None if minutes is None else round(minutes, 2),
            "met": self.now.public >= self.target,
            "population": figures["population"],
            "reached": figures["reached"],
            "by_channel": figures["by_channel"],
            "by_area": figures["by_area"],
            "method": figures["method"],
            "at": figures["at"],
            "issued_at": self.warning.issued_at.isoformat(),
        }


def region_of(units: Mapping[str, object]) -> Region:
    """The coverage model's region from the risk database's units (`risk_zoning.store.region_units`)."""
    return Region(
        Area(u.code, u.level, int(u.population), u.parent, u.name)  # type: ignore[attr-defined]
        for u in units.values()
    )


def handsets_per_person(coverage: CoverageSettings, dispatch: DispatchSettings) -> float:
    """Handsets per resident, all operators together: the operators' own figures added up when each of them
    gives one, else the coverage setting."""
    own = [t.handsets_per_person for t in dispatch.area_sms]
    if own and all(h is not None for h in own):
        return float(sum(h for h in own if h is not None))
    return coverage.handsets_per_person


async def warning_facts(conn: asyncpg.Connection, warning_id: int) -> WarningFacts | None:
    """The warning's latest issued version (None when no version of it was ever issued)."""
    row = await conn.fetchrow(
        """SELECT v.warning_id, v.version, v.hazard, v.level, v.status, v.areas, v.expires, v.exercise,
                  (SELECT min(f.sent) FROM svc.warning_version f
                   WHERE f.warning_id = v.warning_id AND f.sent IS NOT NULL) AS issued_at
           FROM svc.warning_version v
           WHERE v.warning_id = $1 AND v.sent IS NOT NULL AND v.msg_type IN ('Alert', 'Update')
           ORDER BY v.version DESC LIMIT 1""",
        warning_id,
    )
    if row is None:
        return None
    return WarningFacts(
        warning_id=row["warning_id"],
        version=row["version"],
        hazard=row["hazard"],
        level=row["level"],
        status=row["status"],
        areas=tuple(row["areas"]),
        issued_at=row["issued_at"],
        expires=row["expires"],
        exercise=row["exercise"],
    )


async def reach_of(
    conn: asyncpg.Connection,
    warning: WarningFacts,
    region: Region,
    *,
    handsets_per_person: float,
    platform_audience_share: float,
) -> list[Reach]:
    """Every piece of evidence of the warning, as people reached per channel and area."""
    inside = sorted({c for a in warning.areas for c in _within(region, a)})
    reach: list[Reach] = []
    # people identified by name: once each, at the first time one of their SMS was reported delivered
    rows = await conn.fetch(
        """WITH first AS (
               SELECT d.recipient_id, min(coalesce(d.final_at, d.done_at, d.sent_at, d.created_at)) AS at
               FROM svc.delivery d
               JOIN svc.warning_version v USING (warning_id, version)
               WHERE d.warning_id = $1 AND d.channel = 'sms' AND d.state = 'delivered'
                 AND v.msg_type IN ('Alert', 'Update')  -- a Cancel's SMS warns nobody
               GROUP BY d.recipient_id)
           SELECT p.area, date_trunc('second', f.at) AS at, count(*) AS people
           FROM first f JOIN svc.recipient r ON r.id = f.recipient_id
           CROSS JOIN LATERAL (SELECT a AS area FROM unnest(r.areas) AS a WHERE a = ANY($2::text[]) LIMIT 1) p
           GROUP BY 1, 2""",
        warning.warning_id,
        inside,
    )
    reach += [Reach("sms", r["area"], float(r["people"]), "measured", r["at"]) for r in rows]
    # loudspeakers and displays: each terminal at the time it first played (a peer's clock is believed only
    # as far as the time its word arrived here: evidence counts from when it had arrived)
    rows = await conn.fetch(
        """WITH first AS (  -- a terminal's people once, however many versions it played
               SELECT DISTINCT ON (terminal_id) terminal_id, least(played_at, received_at) AS at
               FROM svc.terminal_ack WHERE warning_id = $1 ORDER BY terminal_id, least(played_at, received_at))
           SELECT t.area, date_trunc('second', f.at) AS at, sum(t.population_served)::bigint AS people
           FROM first f JOIN svc.terminal t USING (terminal_id) GROUP BY 1, 2""",
        warning.warning_id,
    )
    reach += [Reach("mqtt", r["area"], float(r["people"]), "measured", r["at"]) for r in rows]
    # what the other peers reported: the largest figure per target and area over the versions and the rounds of escalation
    rows = await conn.fetch(
        """SELECT DISTINCT ON (channel, target, area, kind) channel, target, area, kind, measured, targeted,
                  delivered, people, coalesce(reported_at, updated_at) AS at
           FROM svc.reach_evidence
           WHERE warning_id = $1 AND channel <> 'mqtt'
           ORDER BY channel, target, area, kind, coalesce(people, delivered) DESC""",
        warning.warning_id,
    )
    for r in rows:
        area = region.areas.get(r["area"])
        basis = "measured" if r["measured"] else "estimated"
        if r["kind"] == "handsets":
            people = r["delivered"] / handsets_per_person
        elif r["kind"] == "airing" and r["people"] is None:
            share = r["delivered"] / r["targeted"] if r["targeted"] else 0.0
            people = share * (area.population if area else 0) * platform_audience_share
        else:
            people = r["people"] if r["people"] is not None else r["delivered"]
        reach.append(Reach(r["channel"], r["area"], float(people), basis, r["at"]))  # type: ignore[arg-type]
    rows = await conn.fetch(
        """SELECT area, reported_at, people FROM svc.relay_report WHERE warning_id = $1""",
        warning.warning_id,
    )
    reach += [Reach("relayers", r["area"], float(r["people"]), "reported", r["reported_at"]) for r in rows]
    return reach


async def measure(
    conn: asyncpg.Connection,
    warning_id: int,
    region: Region,
    coverage: CoverageSettings,
    dispatch: DispatchSettings,
    *,
    now: datetime | None = None,
) -> Measurement | None:
    """The warning's coverage now (or at `now`), from its evidence; None when it was never issued."""
    warning = await warning_facts(conn, warning_id)
    if warning is None:
        return None
    reach = await reach_of(
        conn,
        warning,
        region,
        handsets_per_person=handsets_per_person(coverage, dispatch),
        platform_audience_share=coverage.platform_audience_share,
    )
    evidence = Evidence(region, warning.areas, reach)
    when = now or datetime.now(UTC)
    figure = evidence.at(when, coverage.overlap)
    first = evidence.first_reaching(coverage.target, coverage.overlap)
    reached = None if first is None else datetime.fromtimestamp(first, UTC)
    if reached is not None and reached > when:
        reached = None
    return Measurement(warning, evidence, figure, coverage.target, reached)


def _within(region: Region, code: str) -> set[str]:
    """`code` and every unit inside it."""
    found = {code}
    for leaf in region.leaves(code):
        node: str | None = leaf
        while node is not None and node not in found:
            found.add(node)
            parent = region.areas[node].parent
            node = parent if parent in region.areas else None
    return found
