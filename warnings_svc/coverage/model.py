"""Public coverage of a warning, from evidence of reach alone: pure computation, no I/O.

    coverage(warning, area, t) = people reached by time t / resident population of the warned area

The warned areas are cut into their smallest units (towns; a unit with no smaller ones is its own). Each piece
of evidence says how many people one channel reached in one area by a time; it stands for the same share of
every warned unit inside that area (an operator's district-wide figure is spread evenly over its towns). Per
unit and channel the shares add up, capped at 1. People identified by name (registered SMS recipients) come
already counted once across the channels that know them, and form one more channel. The channels then combine
per unit under the overlap model, which every figure states:

- ``independent`` (the default): 1 - prod(1 - c_i), as if reaching someone on one channel said nothing about
  another;
- ``maximum``: the best channel alone (complete overlap, a lower bound);
- ``sum``: the channels added up, capped at 1 (no overlap, an upper bound).

Evidence is measured (receipts, handsets delivered, playback acknowledged), estimated (audience share, cell
broadcast) or reported (relayers' counts). The figure from measured evidence alone is given beside the whole.
Units and districts aggregate by population: reached / population over the units inside them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import numpy as np

Basis = Literal["measured", "estimated", "reported"]
Overlap = Literal["independent", "maximum", "sum"]
IDENTIFIED = (
    "identified"  # the channel name of people counted by name, once across the channels that know them
)

OVERLAP_FORMULAS: Mapping[Overlap, str] = {
    "independent": "1 - prod(1 - c_i) over channels (independent channels)",
    "maximum": "max(c_i) over channels (complete overlap: a lower bound)",
    "sum": "min(1, sum(c_i)) over channels (no overlap: an upper bound)",
}


@dataclass(frozen=True, slots=True)
class Area:
    """An administrative unit of the region: the city, a district or a town, with its resident population."""

    code: str
    level: str
    population: int
    parent: str | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class Reach:
    """People one channel reached in one area by `at`, and on what evidence. `channel` is ``identified`` for
    people counted by name (then `people` are distinct persons)."""

    channel: str
    area: str
    people: float
    basis: Basis
    at: datetime


@dataclass(frozen=True, slots=True)
class AreaFigure:
    code: str
    level: str
    population: int
    reached: int
    coverage: float
    measured: float


@dataclass(frozen=True, slots=True)
class ChannelFigure:
    channel: str
    basis: tuple[Basis, ...]
    people: int  # in the warned units, capped at each unit's population
    share: float  # of the warned population, this channel alone


@dataclass(frozen=True, slots=True)
class Coverage:
    """A warning's coverage at one time."""

    at: datetime
    population: int
    reached: int
    public: float  # 0-1, every kind of evidence
    measured: float  # 0-1, from measured evidence alone
    overlap: Overlap
    by_channel: tuple[ChannelFigure, ...]
    by_area: tuple[AreaFigure, ...]  # the warned districts (or whatever was warned), then their units
    outside: int = 0  # pieces of evidence for areas outside the warned ones (not counted)
    notes: tuple[str, ...] = field(default=())

    def method(self) -> dict[str, Any]:
        return {
            "formula": "people reached by time t / resident population of the warned areas",
            "overlap": self.overlap,
            "overlap_formula": OVERLAP_FORMULAS[self.overlap],
            "identified": "people identified by name (SMS receipts) count once, as one channel",
            "spread": "an area's figure stands for the same share of every warned unit inside it",
            "measured": "receipts, handsets delivered, playback acknowledged",
            "estimated": "audience share, cell broadcast",
            "reported": "relayers' counts",
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "population": self.population,
            "reached": self.reached,
            "public": round(self.public, 4),
            "measured": round(self.measured, 4),
            "estimated_or_reported": round(self.public - self.measured, 4),
            "by_channel": {
                c.channel: {"people": c.people, "share": round(c.share, 4), "basis": list(c.basis)}
                for c in self.by_channel
            },
            "by_area": {
                a.code: {
                    "level": a.level,
                    "population": a.population,
                    "reached": a.reached,
                    "coverage": round(a.coverage, 4),
                    "measured": round(a.measured, 4),
                }
                for a in self.by_area
            },
            "method": self.method(),
            "outside": self.outside,
        }


class Region:
    """The units of a region, with each one's smallest units below it."""

    def __init__(self, areas: Iterable[Area]) -> None:
        self.areas: dict[str, Area] = {a.code: a for a in areas}
        children: dict[str, list[str]] = {}
        for a in self.areas.values():
            if a.parent is not None and a.parent in self.areas:
                children.setdefault(a.parent, []).append(a.code)
        self._children = children
        self._leaves: dict[str, tuple[str, ...]] = {}

    def leaves(self, code: str) -> tuple[str, ...]:
        """The smallest units inside `code` (itself when it has none); () for a code not in the region."""
        if code not in self.areas:
            return ()
        found = self._leaves.get(code)
        if found is None:
            kids = self._children.get(code)
            found = tuple(leaf for k in sorted(kids) for leaf in self.leaves(k)) if kids else (code,)
            self._leaves[code] = found
        return found


class Evidence:
    """The evidence of one warning laid out on its warned units, ready to be evaluated at any time."""

    def __init__(self, region: Region, warned: Sequence[str], reach: Sequence[Reach]) -> None:
        self.region = region
        self.warned = tuple(dict.fromkeys(c for c in warned if c in region.areas))
        leaves = list(dict.fromkeys(leaf for c in self.warned for leaf in region.leaves(c)))
        self.leaves = leaves
        index = {code: i for i, code in enumerate(leaves)}
        self.population = np.array([region.areas[c].population for c in leaves], dtype=np.float64)
        groups: dict[tuple[str, Basis], int] = {}
        rows: list[int] = []
        cols: list[int] = []
        shares: list[float] = []
        times: list[float] = []
        outside = 0
        for r in reach:
            area = region.areas.get(r.area)
            inside = [index[leaf] for leaf in region.leaves(r.area) if leaf in index] if area else []
            if not inside or area is None or area.population <= 0:
                outside += 1
                continue
            g = groups.setdefault((r.channel, r.basis), len(groups))
            share = max(0.0, r.people) / area.population
            stamp = r.at.timestamp()
            for i in inside:
                rows.append(g)
                cols.append(i)
                shares.append(share)
                times.append(stamp)
        self.groups = list(groups)
        self.outside = outside
        self._group = np.array(rows, dtype=np.int64)
        self._leaf = np.array(cols, dtype=np.int64)
        self._share = np.array(shares, dtype=np.float64)
        self._time = np.array(times, dtype=np.float64)

    def times(self) -> np.ndarray:
        """The distinct times at which evidence arrived, in order (POSIX seconds)."""
        return np.unique(self._time)

    def at(self, when: datetime, overlap: Overlap = "independent") -> Coverage:
        """The coverage from the evidence that had arrived by `when`."""
        channels, measured_only = self._channel_shares(when.timestamp())
        combined = _combine(channels, overlap, len(self.leaves))
        combined_measured = _combine(measured_only, overlap, len(self.leaves))
        pop = self.population
        total = float(pop.sum())
        reached = combined * pop
        reached_measured = combined_measured * pop
        by_channel = []
        names = sorted({name for name, _ in self.groups})
        for name in names:
            bases = tuple(sorted({b for n, b in self.groups if n == name}))
            people = float((channels[name] * pop).sum()) if name in channels else 0.0
            by_channel.append(
                ChannelFigure(name, bases, round(people), people / total if total else 0.0)  # type: ignore[arg-type]
            )
        index = {code: i for i, code in enumerate(self.leaves)}
        by_area = []
        shown = list(self.warned) + [leaf for leaf in self.leaves if leaf not in self.warned]
        for code in shown:
            idx = [index[leaf] for leaf in self.region.leaves(code) if leaf in index]
            p = float(pop[idx].sum())
            got = float(reached[idx].sum())
            got_measured = float(reached_measured[idx].sum())
            a = self.region.areas[code]
            by_area.append(
                AreaFigure(
                    code, a.level, round(p), round(got), got / p if p else 0.0, got_measured / p if p else 0.0
                )
            )
        return Coverage(
            at=when,
            population=round(total),
            reached=round(float(reached.sum())),
            public=float(reached.sum()) / total if total else 0.0,
            measured=float(reached_measured.sum()) / total if total else 0.0,
            overlap=overlap,
            by_channel=tuple(by_channel),
            by_area=tuple(by_area),
            outside=self.outside,
        )

    def first_reaching(self, target: float, overlap: Overlap = "independent") -> float | None:
        """The first evidence time (POSIX seconds) by which the public coverage reached `target`; None when it
        has not. Coverage only grows with time, so a binary search over the evidence times finds it."""
        times = self.times()
        if not len(times) or self._public(float(times[-1]), overlap) < target:
            return None
        lo, hi = 0, len(times) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self._public(float(times[mid]), overlap) >= target:
                hi = mid
            else:
                lo = mid + 1
        return float(times[lo])

    def _public(self, stamp: float, overlap: Overlap) -> float:
        channels, _ = self._channel_shares(stamp)
        total = float(self.population.sum())
        return (
            float((_combine(channels, overlap, len(self.leaves)) * self.population).sum()) / total
            if total
            else 0.0
        )

    def _channel_shares(self, stamp: float) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per channel, the share of each unit reached by `stamp` (capped at 1): with every kind of evidence,
        and with measured evidence alone."""
        n = len(self.leaves)
        per_group = np.zeros((len(self.groups), n), dtype=np.float64)
        if len(self._time):
            keep = self._time <= stamp
            np.add.at(per_group, (self._group[keep], self._leaf[keep]), self._share[keep])
        every: dict[str, np.ndarray] = {}
        measured: dict[str, np.ndarray] = {}
        for g, (name, basis) in enumerate(self.groups):
            every[name] = every.get(name, np.zeros(n)) + per_group[g]
            if basis == "measured":
                measured[name] = measured.get(name, np.zeros(n)) + per_group[g]
        return (
            {k: np.minimum(v, 1.0) for k, v in every.items()},
            {k: np.minimum(v, 1.0) for k, v in measured.items()},
        )


def _combine(channels: Mapping[str, np.ndarray], overlap: Overlap, units: int) -> np.ndarray:
    """Each unit's share reached by any channel, under the overlap model."""
    shares = list(channels.values())
    if not shares:
        return np.zeros(units)
    stacked = np.vstack(shares)
    if overlap == "maximum":
        return stacked.max(axis=0)
    if overlap == "sum":
        return np.minimum(stacked.sum(axis=0), 1.0)
    return 1.0 - np.prod(1.0 - stacked, axis=0)
