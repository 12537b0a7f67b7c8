"""What the monitoring tests compare deploy/ against: the metric names in PromQL expressions, and the names of
the coverage metrics of the shared contract (registered by the coverage watch, not by every test app)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "warnings-svc.json"
RULES = DEPLOY / "prometheus" / "rules" / "warnings.yml"

# The coverage metrics of the contract (docs/monitoring.md), registered on every app by the coverage API.
COVERAGE_METRICS = frozenset(
    {
        "warnings_coverage_ratio",
        "warnings_coverage_below_target",
        "warnings_coverage_checkpoints_total",
        "warnings_escalation_steps_total",
        "warnings_approval_to_target_coverage_seconds_bucket",
        "warnings_approval_to_target_coverage_seconds_count",
        "warnings_approval_to_target_coverage_seconds_sum",
        "warnings_coverage_snapshot_seconds_bucket",
    }
)
# Prometheus's own series, which no exposition carries.
PROMETHEUS_SERIES = frozenset({"up"})

_WORDS = re.compile(r'"(?:[^"\\]|\\.)*"|\[[^\]]*\]|\b[a-zA-Z_:][a-zA-Z0-9_:]*\b')
_NOT_METRICS = frozenset(
    {
        # PromQL functions, aggregations and keywords
        "sum", "max", "min", "avg", "count", "rate", "increase", "histogram_quantile", "label_replace",
        "by", "without", "or", "and", "unless", "on", "ignoring", "group_left", "group_right", "bool",
        "delta", "abs", "clamp_min", "absent", "offset",
        # the labels the expressions group and match by
        "le", "level", "channel", "state", "endpoint", "outcome", "action", "job", "to", "warning",
    }
)  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: every identifier outside strings and range brackets that is
    not a function, keyword or grouping label, and not followed by `(` or `=`."""
    names = set()
    for m in _WORDS.finditer(expr):
        word = m.group(0)
        if word.startswith(('"', "[")) or word in _NOT_METRICS:
            continue
        rest = expr[m.end() :].lstrip()
        if rest.startswith("(") or (rest.startswith(("=", "!=", "=~", "!~")) and not rest.startswith("==")):
            continue
        names.add(word)
    return names


def dashboard_expressions() -> Iterator[tuple[str, str]]:
    """(panel title, expression) of every query of the dashboard."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def rule_expressions() -> Iterator[tuple[str, str]]:
    """(alert name, expression) of every alert rule."""
    document: dict[str, Any] = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in document["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


def exposed_names(exposition: str) -> set[str]:
    """The sample names of a /metrics text, with those of every family it declares (a labelled family
    with no series yet has only its HELP and TYPE lines)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            if kind == "counter":  # the client library names a counter's family with its _total
                family = family.removesuffix("_total")
            suffixes = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum"),
                        "counter": ("_total",)}.get(kind, ("",))  # fmt: skip
            names |= {family + suffix for suffix in suffixes}
        elif line and not line.startswith("#"):
            names.add(line.split("{")[0].split(" ")[0])
    return names
