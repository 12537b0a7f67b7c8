"""A web worker that is not the primary does not show the gauges of the loops that run in the primary alone:
with several workers a scrape lands on any of them, and a worker's zeros would flap the alerts."""

from __future__ import annotations

from pathlib import Path

from warnings_svc.settings import Settings
from warnings_svc.web.app import create_app
from warnings_svc.web.appkeys import METRICS

PRIMARY_ONLY = (
    "warnings_acknowledgements_overdue",
    "warnings_coverage_ratio",
    "warnings_coverage_below_target",
)


def exposition(tmp_path: Path, *, singletons: bool) -> str:
    settings = Settings(database_url="postgresql://nobody@localhost/none", data_dir=tmp_path)
    app = create_app(settings, None, singletons=singletons)  # type: ignore[arg-type]  # no request is served
    return app[METRICS].exposition().decode()


def test_the_primary_shows_the_gauges_of_its_loops_and_the_other_workers_do_not(tmp_path: Path) -> None:
    primary, worker = exposition(tmp_path, singletons=True), exposition(tmp_path, singletons=False)
    for name in PRIMARY_ONLY:
        assert f"# TYPE {name} gauge" in primary
        assert f"# TYPE {name} gauge" not in worker
    # what every worker counts itself stays: an escalation applied over HTTP in any of them
    assert "# TYPE warnings_escalation_steps_total counter" in worker
