"""The operations panel's pictures, pure: coverage over time against the target as inline SVG (no chart
library, no script), and the region map's units coloured by coverage (for `_map.html`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from warnings_svc.web.console.map import RegionView

PLOT_WIDTH = 420.0
PLOT_HEIGHT = 180.0
PLOT_MARGIN = {"left": 38.0, "right": 10.0, "top": 10.0, "bottom": 26.0}
MIN_SPAN_MIN = 30.0  # the time axis spans at least half an hour, so the first minutes are not a smear

# coverage bands for the map, lowest first: (lower bound, colour); under the lowest: no evidence yet
COVERAGE_BANDS: tuple[tuple[float, str], ...] = (
    (0.0, "#fde0dd"),
    (0.5, "#fa9fb5"),
    (0.8, "#c994c7"),
    (0.95, "#31a354"),
)


@dataclass(frozen=True)
class Point:
    """One figure of the plot: minutes after issue, public coverage (0-1), measured part (0-1)."""

    minutes: float
    public: float
    measured: float


def _ticks(top: float, step: float) -> list[float]:
    n = int(top // step)
    return [i * step for i in range(n + 1)]


def coverage_plot(points: Sequence[Point], target: float) -> dict[str, Any]:
    """What the plot template draws: the public and measured coverage as polylines over minutes after issue,
    the target as a dashed line, axis ticks, and the last point.

    >>> p = coverage_plot([Point(0, 0, 0), Point(30, 0.5, 0.4)], 0.95)
    >>> p["public"], p["target_y"]
    ('38.0,154.0 410.0,82.0', 17.2)
    """
    left, right, top, bottom = (PLOT_MARGIN[k] for k in ("left", "right", "top", "bottom"))
    inner_w = PLOT_WIDTH - left - right
    inner_h = PLOT_HEIGHT - top - bottom
    ordered = sorted(points, key=lambda p: p.minutes)
    span = max([MIN_SPAN_MIN, *(p.minutes for p in ordered)])

    def x(minutes: float) -> float:
        return round(left + inner_w * minutes / span, 1)

    def y(share: float) -> float:
        return round(top + inner_h * (1 - max(0.0, min(1.0, share))), 1)

    step = next(s for s in (5, 10, 15, 30, 60, 120, 240, 480, 960) if span / s <= 8)
    last = ordered[-1] if ordered else None
    return {
        "width": PLOT_WIDTH,
        "height": PLOT_HEIGHT,
        "left": left,
        "right": PLOT_WIDTH - right,
        "top": top,
        "bottom": PLOT_HEIGHT - bottom,
        "public": " ".join(f"{x(p.minutes)},{y(p.public)}" for p in ordered),
        "measured": " ".join(f"{x(p.minutes)},{y(p.measured)}" for p in ordered),
        "target_y": y(target),
        "target_label": f"{target:.0%}",
        "x_ticks": [{"x": x(m), "label": f"{m:g}"} for m in _ticks(span, step)],
        "y_ticks": [{"y": y(s), "label": f"{s:.0%}"} for s in (0.0, 0.25, 0.5, 0.75, 1.0)],
        "last": None
        if last is None
        else {"x": x(last.minutes), "y": y(last.public), "label": f"{last.public:.1%}"},
        "points": len(ordered),
    }


def coverage_colour(share: float | None) -> str | None:
    """The map's fill of a unit with this coverage (None: no figure for it)."""
    if share is None:
        return None
    colour = COVERAGE_BANDS[0][1]
    for bound, band_colour in COVERAGE_BANDS:
        if share >= bound:
            colour = band_colour
    return colour


def coverage_map(
    view: RegionView, lang: str, by_area: Mapping[str, float], *, band_names: Sequence[str]
) -> dict[str, Any]:
    """The region map (`_map.html`'s shape) with each district and town of the warned area filled by its
    coverage; the legend names the bands (`band_names`, one per `COVERAGE_BANDS` entry, in order)."""

    def shape(code: str) -> dict[str, Any]:
        share = by_area.get(code)
        name = view.name(code, lang)
        return {
            "code": code,
            "d": view.paths[code],
            "fill": coverage_colour(share),
            "title": name if share is None else f"{name} · {share:.1%}",
        }

    districts = [u for u in view.ordered if u.level == "district"]
    towns = [u for u in view.ordered if u.level == "town"]
    return {
        "width": view.projection.width,
        "height": view.projection.height,
        "districts": [shape(u.code) for u in districts],
        "towns": [shape(u.code) for u in towns],
        "labels": [
            {
                "x": view.label_points[u.code][0],
                "y": view.label_points[u.code][1],
                "text": view.name(u.code, lang),
            }
            for u in districts
        ],
        "outlines": [],
        "selectable": False,
        "outline_legend": [],
        "legend": [
            {"colour": colour, "name": name}
            for (_, colour), name in zip(COVERAGE_BANDS, band_names, strict=True)
        ],
    }
