"""The demo's forecast: a synthetic run dropped into the inbox, as a forecasting centre would deliver it."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path

from warnings_svc.demo.scenarios import write_scenario

DEMO_SCENARIO = "sandstorm"  # assessed all year round, unlike frost; a 10-member ensemble shows probabilities


def seed_demo_forecast(root: Path, region: str, now: datetime | None = None) -> Path | None:
    """Drop a synthetic demo run (labelled so in its files) into the inbox, unless the inbox already holds
    something. The run starts at the latest 00/12 UTC cycle, so its proposals lie in the near future."""
    inbox = root / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    if any(inbox.iterdir()):
        return None
    now = now or datetime.now(UTC)
    cycle = now.replace(hour=0 if now.hour < 12 else 12, minute=0, second=0, microsecond=0)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=root))
    write_scenario(DEMO_SCENARIO, staging, region, reference_time=cycle, members=10, style="ecmwf")
    target = inbox / f"demo-{DEMO_SCENARIO}-{cycle:%Y%m%d%H}"
    staging.rename(target)  # one rename: the watcher never sees half a run
    return target
