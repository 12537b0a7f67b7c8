"""Maps of risk grades and layers with unit outlines, rendered to PNG with matplotlib (no tiles, no network)."""

from __future__ import annotations

import io
import logging
import math
from contextlib import AbstractContextManager
from functools import cache
from typing import Any

import numpy as np
import shapely
from matplotlib import font_manager, rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from risk_zoning import GRADE_COLOURS, GRADE_NAMES_EN, GRADE_NAMES_ZH, HAZARD_NAMES
from risk_zoning.store import RiskDatabase

log = logging.getLogger(__name__)

CJK_FONTS = (
    "Noto Sans CJK SC",
    "Source Han Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
)

CJK_FILE_HINTS = ("wqy", "notosanscjk", "noto-cjk", "sourcehansans", "simhei", "msyh", "pingfang")


@cache
def cjk_font() -> str | None:
    """The first installed font that has Chinese glyphs, or None (then maps fall back to English labels)."""
    for attempt in range(2):
        installed = {f.name for f in font_manager.fontManager.ttflist}
        for name in CJK_FONTS:
            if name in installed:
                return name
        if attempt == 0:
            # matplotlib's font cache predates fonts installed since; register any CJK font files on disk.
            for path in font_manager.findSystemFonts():
                if any(tag in path.lower() for tag in CJK_FILE_HINTS):
                    font_manager.fontManager.addfont(path)
    log.warning("no CJK font installed (e.g. Debian fonts-wqy-microhei); maps use English labels")
    return None


def _language(lang: str) -> str:
    return "zh" if lang == "zh" and cjk_font() else "en"


def _new_figure(db: RiskDatabase, width_in: float) -> tuple[Figure, float]:
    lon0, lat0, lon1, lat1 = db.grid.bounds
    aspect = 1.0 / math.cos(math.radians((lat0 + lat1) / 2))
    height = width_in * (lat1 - lat0) * aspect / (lon1 - lon0) + 0.9
    return Figure(figsize=(width_in, height), dpi=110), aspect


def _extent(db: RiskDatabase) -> tuple[float, float, float, float]:
    """imshow's (left, right, bottom, top), not shapely's (minx, miny, maxx, maxy)."""
    lon0, lat0, lon1, lat1 = db.grid.bounds
    return (lon0, lon1, lat0, lat1)


def _outlines(ax: Axes, db: RiskDatabase, lang: str, label_level: str = "district") -> None:
    for level, colour, width, style in (
        ("town", "#555555", 0.5, (0, (3, 2))),
        ("district", "#111111", 1.3, "-"),
    ):
        for u in db.units_at(level):
            geom = u.shape()
            for poly in getattr(geom, "geoms", [geom]):
                x, y = poly.exterior.xy
                ax.plot(x, y, color=colour, linewidth=width, linestyle=style)
            if level == label_level:
                p = shapely.point_on_surface(geom)
                ax.annotate(
                    u.name if lang == "zh" else u.name_en,
                    (p.x, p.y),
                    ha="center",
                    fontsize=8,
                    bbox={"boxstyle": "round,pad=0.2", "fc": "white", "alpha": 0.7, "lw": 0},
                )


def _finish(fig: Figure, ax: Axes, db: RiskDatabase, aspect: float, title: str) -> bytes:
    lon0, lat0, lon1, lat1 = db.grid.bounds
    ax.set_xlim(lon0, lon1)
    ax.set_ylim(lat0, lat1)
    ax.set_aspect(aspect)
    ax.set_title(title, fontsize=11)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("lon °E", fontsize=7)
    ax.set_ylabel("lat °N", fontsize=7)
    buf = io.BytesIO()
    FigureCanvasAgg(fig)
    fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.08)
    return buf.getvalue()


def _fonts() -> AbstractContextManager[None]:
    """Text settings for one rendering; Chinese glyphs need a CJK font first in the list."""
    font = cjk_font()
    return rc_context({"font.sans-serif": [font, "DejaVu Sans"] if font else ["DejaVu Sans"]})


def render_risk_map(db: RiskDatabase, hazard: str, *, lang: str = "zh") -> bytes:
    """PNG of the five risk grades of `hazard` per cell, with district and (approximate) town outlines."""
    with _fonts():
        return _risk_map(db, hazard, lang)


def _risk_map(db: RiskDatabase, hazard: str, lang: str) -> bytes:
    lang = _language(lang)
    grades = db.arrays[f"grade_{hazard}"].data.astype(float)
    grades[grades == 0] = np.nan
    fig, aspect = _new_figure(db, 5.2)
    ax = fig.add_subplot()
    cmap = ListedColormap(GRADE_COLOURS)
    ax.imshow(
        grades,
        origin="lower",
        extent=_extent(db),
        cmap=cmap,
        norm=BoundaryNorm(np.arange(0.5, 6.5), 5),
        interpolation="nearest",
    )
    _outlines(ax, db, lang)
    names = GRADE_NAMES_ZH if lang == "zh" else GRADE_NAMES_EN
    handles = [Patch(color=GRADE_COLOURS[g - 1], label=names[g]) for g in range(5, 0, -1)]
    ax.legend(
        handles=handles,
        loc="lower right",
        fontsize=7,
        title="风险等级" if lang == "zh" else "Risk grade",
        title_fontsize=8,
        framealpha=0.85,
    )
    name = db.region_name if lang == "zh" else db.unit(db.region_code + "000000").name_en
    title = (
        f"{name} {HAZARD_NAMES['zh'][hazard]}灾害风险等级"
        if lang == "zh"
        else f"{name}: {HAZARD_NAMES['en'][hazard].lower()} risk grade"
    )
    return _finish(fig, ax, db, aspect, title)


def render_layer_map(db: RiskDatabase, layer: str, *, lang: str = "zh") -> bytes:
    """PNG of any stored layer (population, exposure, hazard ...) with a colour bar and unit outlines."""
    with _fonts():
        return _layer_map(db, layer, lang)


def _layer_map(db: RiskDatabase, layer: str, lang: str) -> bytes:
    lang = _language(lang)
    stored = db.arrays[layer]
    data = stored.data.astype(float)
    if stored.kind == "population":
        data = np.where(data > 0, data, np.nan)
    fig, aspect = _new_figure(db, 5.6)
    ax = fig.add_subplot()
    im = ax.imshow(data, origin="lower", extent=_extent(db), cmap="magma_r", interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.6, label=stored.units)
    _outlines(ax, db, lang)
    synthetic = " (synthetic)" if stored.provenance.get("synthetic") else ""
    return _finish(fig, ax, db, aspect, f"{layer}{synthetic}")


def render_category_panels(
    db: RiskDatabase,
    panels: dict[str, np.ndarray],
    colours: tuple[str, ...],
    labels: tuple[str, ...],
    *,
    title: str,
    lang: str = "zh",
) -> bytes:
    """PNG with one map per panel of categories 1..len(colours) per cell (0 = none, left blank), sharing a
    legend; district and town outlines on each. Used for forecast warning levels per hazard."""
    with _fonts():
        lang = _language(lang)
        n = max(len(panels), 1)
        lon0, lat0, lon1, lat1 = db.grid.bounds
        aspect = 1.0 / math.cos(math.radians((lat0 + lat1) / 2))
        panel_height = 3.4 * (lat1 - lat0) * aspect / (lon1 - lon0)
        fig = Figure(figsize=(3.4 * n, panel_height + 1.2), dpi=110)
        cmap = ListedColormap(colours)
        norm = BoundaryNorm(np.arange(0.5, len(colours) + 1.5), len(colours))
        for i, (name, grid) in enumerate(panels.items(), start=1):
            ax = fig.add_subplot(1, n, i)
            data = grid.astype(float)
            data[data == 0] = np.nan
            ax.imshow(data, origin="lower", extent=_extent(db), cmap=cmap, norm=norm, interpolation="nearest")
            _outlines(ax, db, lang)
            ax.set_xlim(lon0, lon1)
            ax.set_ylim(lat0, lat1)
            ax.set_aspect(aspect)
            ax.set_title(name, fontsize=10)
            ax.tick_params(labelsize=6)
        handles = [Patch(color=c, label=lab) for c, lab in zip(colours, labels, strict=True)]
        fig.legend(handles=handles, loc="lower center", ncol=len(colours), fontsize=8, frameon=False)
        fig.suptitle(title, fontsize=11)
        buf = io.BytesIO()
        FigureCanvasAgg(fig)
        fig.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.1)
        return buf.getvalue()


def render_shapes_map(
    db: RiskDatabase, shapes: list[tuple[dict[str, Any], str, str]], *, title: str, lang: str = "zh"
) -> bytes:
    """PNG of GeoJSON shapes (geometry, fill colour, legend label), drawn over district and town outlines."""
    with _fonts():
        lang = _language(lang)
        fig, aspect = _new_figure(db, 5.2)
        ax = fig.add_subplot()
        seen: dict[str, str] = {}
        for geometry, colour, label in shapes:
            geom = shapely.geometry.shape(geometry)
            for poly in getattr(geom, "geoms", [geom]):
                x, y = poly.exterior.xy
                ax.fill(x, y, facecolor=colour, edgecolor=colour, alpha=0.55, linewidth=1.2)
            seen.setdefault(label, colour)
        _outlines(ax, db, lang)
        if seen:
            ax.legend(
                handles=[Patch(color=c, label=lab) for lab, c in seen.items()], loc="lower right", fontsize=7
            )
        return _finish(fig, ax, db, aspect, title)
