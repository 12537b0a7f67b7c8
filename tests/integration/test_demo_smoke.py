"""`warnings-svc demo --smoke`: the whole chain once, as other tools run it, against a real SMSC."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.factories_app import clean_environment, warnings_svc_command
from tests.ports import free_port


def smoke(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*warnings_svc_command(), "demo", "--smoke", *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        env=clean_environment(),
    )


def test_the_smoke_run_ingests_issues_dispatches_and_reports_in_json(smsc: Any) -> None:
    run = smoke("--smsc", f"127.0.0.1:{smsc.port}")
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["ok"] is True and "failed" not in summary
    assert summary["ingest"]["proposals"] and summary["warning"]["status"] == "issued"
    assert summary["warning"]["drafted_by"] != summary["warning"]["approved_by"]  # two people
    deliveries = summary["dispatch"]["deliveries"]
    delivered = deliveries["delivered"]
    assert delivered > 0 and delivered == sum(deliveries.values())
    assert summary["dispatch"]["receipts"] == summary["dispatch"]["segments"]
    assert summary["reach"] == {
        "people_sent_to": delivered,
        "delivered_to_handset": delivered,
        "share": 1.0,
    }
    # public coverage, by the production engine, from what the peers returned: every SMS receipt counts one
    # person; the area channels bring the warned districts past the target; the method is stated
    coverage = summary["coverage"]
    assert coverage["target"] == 0.95 and coverage["met"] is True
    assert coverage["target"] <= coverage["public"] <= 1 and coverage["measured"] <= coverage["public"]
    assert coverage["at_10_min"] == coverage["public"] and coverage["at_10_min_complete"] is False
    assert 0 <= coverage["minutes_to_target"] < 10
    assert coverage["by_channel"]["sms"] == {
        "people": delivered,
        "share": round(delivered / coverage["population"], 4),
        "basis": ["measured"],
    }
    assert coverage["by_channel"]["cell_broadcast"]["basis"] == ["estimated"]
    districts = {c for c, a in coverage["by_area"].items() if a["level"] == "district"}
    assert districts == set(summary["warning"]["areas"])
    assert coverage["population"] == sum(coverage["by_area"][c]["population"] for c in districts)
    assert coverage["method"]["overlap"] == "independent"
    # what the SMSC received: every person texted, all of their segments, once; and, on the partner
    # dispatcher's own bind, one acknowledgement call to each duty contact the warning calls
    accepted = smsc.accepted()
    per_phone = Counter(r["destination_addr"] for r in accepted if r["registered_delivery"] == 1)
    assert len(per_phone) == delivered
    assert sum(per_phone.values()) == summary["dispatch"]["segments"]
    calls = [r for r in accepted if r["registered_delivery"] == 0]
    assert len({r["destination_addr"] for r in calls}) == summary["departments"]["called"]
    assert all("请确认收到" in r["text"] for r in calls if not r["udh_hex"] or r["udh_hex"].endswith("01"))


def test_without_an_smsc_the_smoke_run_stops_after_approval_and_says_so() -> None:
    run = smoke()
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["ok"] is True and summary["warning"]["status"] == "issued"
    assert summary["dispatch"] == {"skipped": "no SMSC: give --smsc HOST:PORT (scripts/demo starts one)"}
    assert "reach" not in summary
    # the synthetic departments of the city and the three districts, and those the warning calls
    departments = summary["departments"]
    assert departments["registered"] >= 30 and departments["people"] > departments["registered"]
    assert "emergency" in departments["sectors"] and departments["called"] >= 1  # the city's bureau at least
    # the area channels need no SMSC: the demo's broker, simulated terminals, gateways, CBC and platform
    assert summary["terminals"]["simulated"] is True
    assert summary["terminals"]["connected"] == summary["terminals"]["registered"] > 100
    broadcast = summary["broadcast"]
    assert set(broadcast["deliveries"].values()) == {"done"}
    assert set(broadcast["deliveries"]) == {
        "mqtt terminals", "area_sms china-mobile", "area_sms china-telecom", "area_sms china-unicom",
        "cell_broadcast cbc", "broadcast_platform county-platform",
    }  # fmt: skip
    evidence = {e["channel"]: e for e in broadcast["evidence"]}
    assert set(evidence) == {"mqtt", "area_sms", "cell_broadcast", "broadcast_platform"}
    # measured where a peer counted, estimated for cell broadcast (no receipts exist)
    assert [c for c, e in evidence.items() if not e["measured"]] == ["cell_broadcast"]
    acks = broadcast["terminal_acknowledgements"]
    assert acks["stored"] == acks["expected"] > 100  # none lost on the way (they were, while it was sending)
    terminals = evidence["mqtt"]
    # every working terminal in the warned areas acknowledged (the broken ones are spread over the whole city)
    assert (
        terminals["targeted"] - summary["terminals"]["broken"]
        <= terminals["delivered"]
        < terminals["targeted"]
    )
    assert terminals["people"] > 0
    assert 0.9 < evidence["area_sms"]["delivered"] / evidence["area_sms"]["targeted"] < 1  # some unreachable
    assert evidence["broadcast_platform"]["delivered"] == evidence["broadcast_platform"]["targeted"] > 0
    # the demo's partners: every subscription the warning matched got it, each webhook's signature checked
    partners = summary["partners"]
    assert {c: set(states) for c, states in partners["deliveries"].items()} == {
        "webhook": {"delivered"}, "email": {"delivered"}, "mqtt": {"delivered"}
    }  # fmt: skip
    received = partners["received"]
    assert (
        received["webhooks"]
        == received["webhooks_verified"]
        == partners["deliveries"]["webhook"]["delivered"]
    )
    assert (
        received["emails_with_cap"]
        == partners["deliveries"]["email"]["delivered"] + received["calls_received"]
    )
    # the orange warning asks the departments it calls to acknowledge (叫应): the simulated duty contacts
    # answer four calls in five by SMS reply, the others wait to be escalated
    acks = summary["acknowledgements"]
    assert acks["requests"] == summary["departments"]["called"] == acks["calls_by_email"] > 0
    assert (
        acks["by_state"]["acknowledged"]
        == acks["acknowledged_via"]["sms"]
        == acks["replies_from_simulated_contacts"]
    )
    assert acks["by_state"]["waiting"] == acks["requests"] - acks["replies_from_simulated_contacts"] > 0


def test_without_the_simulated_peers_the_smoke_run_leaves_the_area_channels_out() -> None:
    run = smoke("--no-peers")
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["ok"] is True and summary["warning"]["status"] == "issued"
    assert "terminals" not in summary and "broadcast" not in summary
    # nothing was put out, so nobody is counted as reached
    assert summary["coverage"]["public"] == 0 and summary["coverage"]["met"] is False
    assert summary["coverage"]["minutes_to_target"] is None and summary["coverage"]["by_channel"] == {}
    assert "simulator" not in run.stderr.lower() and "amqtt" not in run.stderr


def test_an_unreachable_smsc_fails_the_dispatch_step_at_once_naming_it() -> None:
    port = free_port()  # nothing listens there
    started = time.monotonic()
    run = smoke("--smsc", f"127.0.0.1:{port}")
    assert run.returncode == 1, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["ok"] is False and summary["warning"]["status"] == "issued"
    assert summary["failed"]["step"] == "dispatch"
    assert summary["failed"]["error"].startswith(f"the SMSC demo-smsc at 127.0.0.1:{port} is unreachable: ")
    assert time.monotonic() - started < 90  # not the 120 s dispatch timeout


def test_the_smoke_run_refuses_a_data_folder_with_status_2(tmp_path: Any) -> None:
    run = smoke("--data-dir", str(tmp_path))
    assert run.returncode == 2
    assert run.stdout == ""
    assert run.stderr.strip() == (
        "warnings-svc: --smoke runs in a fresh temporary folder of its own: leave out --data-dir"
    )
    assert not any(tmp_path.iterdir())


def test_scripts_demo_smoke_prints_only_the_json_summary() -> None:
    """`./scripts/demo --smoke` as a tool runs it: the set-up (a venv check, the loopback SMSC it starts)
    writes to stderr, and its arguments go to the demo, not to pip as extras (which they once did)."""
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [str(root / "scripts" / "demo"), "--smoke"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=root,
        env=clean_environment(),
    )
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)  # the whole of stdout is one JSON object
    assert summary["ok"] is True
    assert "placeholder[--smoke]" not in run.stderr and "InvalidRequirement" not in run.stderr
