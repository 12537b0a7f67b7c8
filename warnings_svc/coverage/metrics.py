"""The coverage watch's metrics, under the names the deploy rules use (docs/coverage.md), on the registry it is
given (the service's)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from warnings_svc.vocabulary import LEVELS

# approval -> target coverage: minutes at best, hours when it takes escalation
TO_TARGET_BUCKETS = (60.0, 180.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0)
# one warning's measurement: milliseconds for a town, well under a second for the whole city
SNAPSHOT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class CoverageMetrics:
    """Public coverage of the live warnings, their checkpoints, escalation steps and time to the target."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.ratio = Gauge(
            "warnings_coverage_ratio",
            "Public coverage (0-1) of each live warning, from evidence of reach; the series ends with the warning.",
            ["warning", "level"],
            registry=registry,
        )
        self.below_target = Gauge(
            "warnings_coverage_below_target",
            "Live warnings whose latest checkpoint found them below the coverage target and that have not met it since.",
            ["level"],
            registry=registry,
        )
        self.checkpoints = Counter(
            "warnings_coverage_checkpoints",
            "Checkpoints passed (minutes after issue, per level), by whether coverage met the target.",
            ["level", "outcome"],
            registry=registry,
        )
        self.steps = Counter(
            "warnings_escalation_steps",
            "Escalation steps, by action and the state each reached (proposed, applied, declined, skipped, stopped).",
            ["action", "state"],
            registry=registry,
        )
        self.approval_to_target = Histogram(
            "warnings_approval_to_target_coverage_seconds",
            "Time from a warning's approval to its public coverage first reaching the target.",
            ["hazard", "level"],
            buckets=TO_TARGET_BUCKETS,
            registry=registry,
        )
        self.snapshot_seconds = Histogram(
            "warnings_coverage_snapshot_seconds",
            "Time to measure one warning's coverage and store its snapshot.",
            buckets=SNAPSHOT_BUCKETS,
            registry=registry,
        )
        self._shown: dict[str, str] = {}  # warning id -> level, of the ratio series exported
        for level in LEVELS:
            self.below_target.labels(level).set(0)

    def count_step(self, action: str, state: str) -> None:
        self.steps.labels(action, state).inc()

    def show_live(self, ratios: Mapping[str, tuple[str, float]]) -> None:
        """The live warnings' coverage ({warning id: (level, ratio)}); series of warnings no longer live (or
        whose level changed) are removed."""
        for warning, level in list(self._shown.items()):
            if ratios.get(warning, ("",))[0] != level:
                self.ratio.remove(warning, level)
                del self._shown[warning]
        for warning, (level, ratio) in ratios.items():
            self.ratio.labels(warning, level).set(ratio)
            self._shown[warning] = level

    def show_below_target(self, levels: Iterable[str]) -> None:
        """The levels of the live warnings below target at their latest checkpoint (one entry each)."""
        counts = dict.fromkeys(LEVELS, 0)
        for level in levels:
            counts[level] = counts.get(level, 0) + 1
        for level, n in counts.items():
            self.below_target.labels(level).set(n)
