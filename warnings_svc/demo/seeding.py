"""The demo's data: a synthetic forecast run dropped into the inbox, as a forecasting centre would deliver it,
and the synthetic registry of departments (`departments.csv`, labelled as such in its first line)."""

from __future__ import annotations

import logging
import tempfile
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import asyncpg

from warnings_svc.demo.scenarios import write_scenario
from warnings_svc.dissemination.partners.registry import DEMO_SOURCE, ImportReport, import_csv
from warnings_svc.forecast.runs import COMPLETE_MARKER

log = logging.getLogger(__name__)

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
    # whole: scored at the first poll, not after the inbox's settling time
    (staging / COMPLETE_MARKER).touch()
    target = inbox / f"demo-{DEMO_SCENARIO}-{cycle:%Y%m%d%H}"
    staging.rename(target)  # one rename: the watcher never sees half a run
    return target


async def seed_demo_departments(pool: asyncpg.Pool, region: str) -> ImportReport | None:
    """Register the synthetic departments of Wuhai's city and three districts (`departments.csv`, source
    `DEMO_SOURCE`, which the console labels as demo data) unless the registry holds any already; the import's
    report, or None when nothing was done. Another region knows none of their areas: every row is rejected,
    which is logged."""
    async with pool.acquire() as conn:
        if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM svc.department)"):
            return None
        data = (resources.files("warnings_svc.demo") / "departments.csv").read_bytes()
        report = await import_csv(conn, data, region, origin=DEMO_SOURCE)
    if report.rejected:
        log.warning(
            "demo departments rejected", extra={"region": region, "rejected_rows": report.rejected_rows}
        )
    return report
