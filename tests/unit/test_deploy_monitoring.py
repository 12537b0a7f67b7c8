"""deploy/: the Prometheus configuration, alert rules and their unit tests through Debian's promtool, the
Grafana dashboard and its provisioning, and the systemd units (systemd-analyze verify)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.factories_app import warnings_svc_command
from tests.monitoring_names import DASHBOARD, DEPLOY, dashboard_expressions, metric_names, rule_expressions

PROMTOOL = Path("/usr/bin/promtool")
PROMETHEUS = DEPLOY / "prometheus"
SYSTEMD = DEPLOY / "systemd"


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    """Run Debian's promtool (installed by scripts/install-debian-peers; a test fails without it)."""
    if not PROMTOOL.exists():
        pytest.fail("promtool is not installed: run scripts/install-debian-peers", pytrace=False)
    return subprocess.run(
        [str(PROMTOOL), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_prometheus_configuration_passes_promtool_check_config() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_the_alert_rules_pass_promtool_check_rules() -> None:
    done = promtool("check", "rules", "rules/warnings.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_and_stays_quiet_in_the_promtool_unit_tests() -> None:
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    done = promtool("test", "rules", *(str(t.relative_to(PROMETHEUS)) for t in tests))
    assert done.returncode == 0, done.stdout + done.stderr
    alerts = {name for name, _ in rule_expressions()}
    assert alerts == {
        "WarningCoverageBelowTarget", "DeliveryQueueTooOld", "CircuitOpenTooLong", "AcknowledgementsOverdue",
        "DeadLetters", "InboxFault", "DatabaseDown", "ServiceDown",
    }  # fmt: skip
    for alert in alerts:  # each is evaluated firing (some exp_labels) and quiet (an empty exp_alerts)
        cases = [
            case
            for t in tests
            for test in yaml.safe_load(t.read_text(encoding="utf-8"))["tests"]
            for case in test.get("alert_rule_test", [])
            if case["alertname"] == alert
        ]
        assert any(c["exp_alerts"] for c in cases), f"{alert} never shown firing"
        assert any(not c["exp_alerts"] for c in cases), f"{alert} never shown quiet"


def test_promtool_refuses_a_unit_test_whose_alert_does_not_fire(tmp_path: Path) -> None:
    # the unit tests above can fail: an alert expected where the series say nothing is wrong
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(PROMETHEUS / "rules" / "warnings.yml", rules / "warnings.yml")
    (tmp_path / "wrong.yml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["rules/warnings.yml"],
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": [{"series": "warnings_inbox_faults", "values": "0x10"}],
                        "alert_rule_test": [
                            {
                                "eval_time": "10m",
                                "alertname": "InboxFault",
                                "exp_alerts": [{"exp_labels": {}}],
                            }
                        ],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    done = promtool("test", "rules", "wrong.yml", cwd=tmp_path)
    assert done.returncode == 1 and "FAILED" in done.stdout + done.stderr


def test_the_dashboard_is_provisioned_and_every_panel_asks_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "warnings-svc"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    queries = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    for panel in queries:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["description"], panel["title"]
    kinds = {p["type"] for p in queries}
    assert {"timeseries", "heatmap", "stat", "state-timeline", "bargauge"} <= kinds
    for title, expr in dashboard_expressions():
        assert metric_names(expr), f"{title}: {expr} names no metric"
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "warnings-svc.yml").read_text(encoding="utf-8")
    )
    assert provider["providers"][0]["type"] == "file"
    assert provider["providers"][0]["options"]["path"].endswith("/warnings-svc")
    datasources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )
    assert datasources["datasources"][0]["type"] == "prometheus"


def test_metric_names_are_read_from_an_expression_without_functions_labels_or_ranges() -> None:
    expr = (
        "histogram_quantile(0.9, sum by (le, level) (rate(warnings_lead_time_seconds_bucket[6h]))) or "
        'label_replace(sum by (channel) (increase(warnings_partner_attempts_total{outcome="dead"}[15m])), '
        '"channel", "partner_$1", "channel", "(.*)") > 0 or up{job=~"warnings-svc"} == 0'
    )
    assert metric_names(expr) == {
        "warnings_lead_time_seconds_bucket",
        "warnings_partner_attempts_total",
        "up",
    }


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on this machine (systemd's own tool; nothing to install here)")
    # the units name the installed command; verify needs it to exist, so point them at this checkout's
    command = Path(warnings_svc_command()[0])
    if command.name != "warnings-svc":
        pytest.skip("no warnings-svc console script in this environment (pip install -e .)")
    for unit in SYSTEMD.glob("*.service"):
        text = unit.read_text(encoding="utf-8").replace(
            "/opt/warnings-svc/venv/bin/warnings-svc", str(command)
        )
        (tmp_path / unit.name).write_text(text, encoding="utf-8")
    (tmp_path / "warnings-svc-dispatch@9101.service").symlink_to(tmp_path / "warnings-svc-dispatch@.service")
    done = subprocess.run(
        [analyze, "verify", str(tmp_path / "warnings-svc.service"), str(tmp_path / "warnings-svc-dispatch@9101.service")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    dispatch = (SYSTEMD / "warnings-svc-dispatch@.service").read_text(encoding="utf-8")
    assert "dispatch --config /etc/warnings-svc/config.toml --metrics-port %i" in dispatch
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "CapabilityBoundingSet=", "PrivateTmp=yes"):
        assert option in dispatch and option in (SYSTEMD / "warnings-svc.service").read_text(encoding="utf-8")
