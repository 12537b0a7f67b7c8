"""The regular latitude/longitude grid a region is assessed on, and which cells each unit covers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class RegularGrid:
    """A north-up grid of square cells in degrees, rows ordered south to north.

    Cell (row j, column i) spans longitudes ``lon_min + i*step .. + step`` and latitudes
    ``lat_min + j*step .. + step``; arrays laid on the grid have shape ``(ny, nx)``.

    >>> g = RegularGrid(lon_min=106.6, lat_min=39.0, step=0.5, nx=2, ny=2)
    >>> g.lon.tolist(), g.lat.tolist()
    ([106.85, 107.35], [39.25, 39.75])
    """

    lon_min: float
    lat_min: float
    step: float
    nx: int
    ny: int

    def __post_init__(self) -> None:
        if not (self.step > 0 and self.nx > 0 and self.ny > 0):
            raise ValueError(f"grid needs a positive step and size, got step={self.step} {self.ny}x{self.nx}")

    @classmethod
    def covering(
        cls, bounds: tuple[float, float, float, float], step: float, margin_cells: int = 1
    ) -> RegularGrid:
        """The grid aligned on multiples of `step` that covers `bounds` (minx, miny, maxx, maxy) plus a margin."""
        minx, miny, maxx, maxy = bounds
        lon0 = (math.floor(minx / step + 1e-9) - margin_cells) * step
        lat0 = (math.floor(miny / step + 1e-9) - margin_cells) * step
        nx = math.ceil((maxx - lon0) / step - 1e-9) + margin_cells
        ny = math.ceil((maxy - lat0) / step - 1e-9) + margin_cells
        return cls(lon_min=round(lon0, 9), lat_min=round(lat0, 9), step=step, nx=nx, ny=ny)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.ny, self.nx)

    @property
    def size(self) -> int:
        return self.ny * self.nx

    @property
    def lon(self) -> np.ndarray:
        """Cell-centre longitudes, west to east."""
        return self.lon_min + (np.arange(self.nx) + 0.5) * self.step

    @property
    def lat(self) -> np.ndarray:
        """Cell-centre latitudes, south to north."""
        return self.lat_min + (np.arange(self.ny) + 0.5) * self.step

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (
            self.lon_min,
            self.lat_min,
            self.lon_min + self.nx * self.step,
            self.lat_min + self.ny * self.step,
        )

    def cell_area_km2(self) -> np.ndarray:
        """Area of each cell on the sphere, shape (ny, nx)."""
        lat_s = np.radians(self.lat_min + np.arange(self.ny) * self.step)
        lat_n = lat_s + math.radians(self.step)
        row = EARTH_RADIUS_KM**2 * math.radians(self.step) * (np.sin(lat_n) - np.sin(lat_s))
        return np.repeat(row[:, None], self.nx, axis=1)

    def cell_boxes(self) -> np.ndarray:
        """Shapely boxes of every cell in flat (row-major) order."""
        lon_w = self.lon_min + np.arange(self.nx) * self.step
        lat_s = self.lat_min + np.arange(self.ny) * self.step
        xx, yy = np.meshgrid(lon_w, lat_s)
        return cast(
            np.ndarray, shapely.box(xx.ravel(), yy.ravel(), xx.ravel() + self.step, yy.ravel() + self.step)
        )

    def flat_index(self, lon: np.ndarray | float, lat: np.ndarray | float) -> np.ndarray:
        """Flat cell index of points; -1 outside the grid."""
        lon_a, lat_a = np.asarray(lon, dtype=float), np.asarray(lat, dtype=float)
        i = np.floor((lon_a - self.lon_min) / self.step).astype(np.int64)
        j = np.floor((lat_a - self.lat_min) / self.step).astype(np.int64)
        inside = (i >= 0) & (i < self.nx) & (j >= 0) & (j < self.ny)
        return np.where(inside, j * self.nx + i, -1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "lon_min": self.lon_min,
            "lat_min": self.lat_min,
            "step": self.step,
            "nx": self.nx,
            "ny": self.ny,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegularGrid:
        return cls(
            lon_min=float(d["lon_min"]),
            lat_min=float(d["lat_min"]),
            step=float(d["step"]),
            nx=int(d["nx"]),
            ny=int(d["ny"]),
        )


@dataclass(frozen=True)
class CellCover:
    """Which part of which cell lies in which unit: parallel arrays, one entry per (cell, unit) overlap.

    `fraction` is the share of the cell's area inside the unit (1.0 for interior cells). A cell on a border
    appears once per unit it touches, so sums over a partition of units reproduce the whole.
    """

    cell: np.ndarray  # int64 flat cell index
    unit: np.ndarray  # int32 index into the unit list the cover was computed for
    fraction: np.ndarray  # float64 in (0, 1]


def cell_cover(grid: RegularGrid, geometries: list[BaseGeometry], min_fraction: float = 1e-9) -> CellCover:
    """Area fractions of grid cells inside each geometry (planar in degrees: exact enough inside one cell).

    Interior cells are found with a prepared `contains` test; only cells on a boundary are intersected.
    """
    boxes = grid.cell_boxes()
    cells: list[np.ndarray] = []
    units: list[np.ndarray] = []
    fracs: list[np.ndarray] = []
    cell_area = grid.step * grid.step
    tree = shapely.STRtree(boxes)
    for k, geom in enumerate(geometries):
        candidates = tree.query(geom)
        if candidates.size == 0:
            continue
        shapely.prepare(geom)
        inside = shapely.contains_properly(geom, boxes[candidates])
        edge = candidates[~inside]
        edge_frac = shapely.area(shapely.intersection(boxes[edge], geom)) / cell_area
        keep = edge_frac > min_fraction
        c = np.concatenate([candidates[inside], edge[keep]])
        f = np.concatenate([np.ones(int(inside.sum())), np.minimum(edge_frac[keep], 1.0)])
        order = np.argsort(c, kind="stable")
        cells.append(c[order].astype(np.int64))
        fracs.append(f[order])
        units.append(np.full(c.size, k, dtype=np.int32))
    if not cells:
        empty = np.zeros(0)
        return CellCover(empty.astype(np.int64), empty.astype(np.int32), empty)
    return CellCover(np.concatenate(cells), np.concatenate(units), np.concatenate(fracs))
