"""The operations panel's coverage plot and map colours (pure)."""

from __future__ import annotations

import pytest

from warnings_svc.web.console.plot import (
    COVERAGE_BANDS,
    PLOT_HEIGHT,
    PLOT_MARGIN,
    Point,
    coverage_colour,
    coverage_plot,
)


def test_the_plot_puts_the_target_line_and_the_points_where_their_shares_are() -> None:
    plot = coverage_plot([Point(10, 0.5, 0.25), Point(0, 0, 0)], 0.95)
    inner = PLOT_HEIGHT - PLOT_MARGIN["top"] - PLOT_MARGIN["bottom"]
    assert plot["target_y"] == round(PLOT_MARGIN["top"] + inner * 0.05, 1)
    xs_ys = [tuple(map(float, p.split(","))) for p in plot["public"].split()]
    assert [x for x, _ in xs_ys] == sorted(x for x, _ in xs_ys)  # in time order, whatever the input's
    assert xs_ys[1][1] == round(PLOT_MARGIN["top"] + inner * 0.5, 1)
    assert plot["last"]["label"] == "50.0%" and plot["points"] == 2


def test_the_time_axis_spans_at_least_half_an_hour_and_grows_with_the_series() -> None:
    assert coverage_plot([], 0.95)["x_ticks"][-1]["label"] == "30"
    assert coverage_plot([], 0.95)["last"] is None
    long = coverage_plot([Point(0, 0, 0), Point(180, 0.97, 0.9)], 0.95)
    assert float(long["x_ticks"][-1]["label"]) == 180 and len(long["x_ticks"]) <= 9


@pytest.mark.parametrize(
    ("share", "band"), [(None, None), (0.0, 0), (0.49, 0), (0.5, 1), (0.94, 2), (0.95, 3), (1.0, 3)]
)
def test_a_unit_is_coloured_by_its_coverage_band(share: float | None, band: int | None) -> None:
    assert coverage_colour(share) == (None if band is None else COVERAGE_BANDS[band][1])
