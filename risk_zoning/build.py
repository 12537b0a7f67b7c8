"""Building a region's risk database: load and validate the region, compute every layer, assess, store."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import shapely
import xarray as xr
from tqdm import tqdm

from risk_zoning import HAZARDS
from risk_zoning.assessment import assess_hazard, assess_units
from risk_zoning.errors import GridDataError, RegionDataError
from risk_zoning.features import load_features
from risk_zoning.grid import CellCover, cell_cover
from risk_zoning.io.database import RISK_MIGRATIONS, upgrade
from risk_zoning.layers import Layer, demo_climatology, demo_layers
from risk_zoning.population import (
    PopulationCore,
    PopulationSplit,
    population_from_raster,
    split_among_children,
    synthesize_population,
)
from risk_zoning.region import Region, Unit, load_region
from risk_zoning.store import StoredArray, write_version

log = logging.getLogger(__name__)

STEPS = ("region", "cell covers", "population", "layers", "climatology", *HAZARDS, "store")
INDICATOR_HAZARD_PREFIX = {"heat": "heat", "rain": "rainstorm", "frost": "frost", "sand": "sandstorm"}


class Progress:
    """A progress bar over the build steps (tqdm on stderr), or silence."""

    def __init__(self, enabled: bool) -> None:
        self._bar = tqdm(
            total=len(STEPS), unit="step", disable=None if enabled else True, leave=False, dynamic_ncols=True
        )

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        self._bar.set_description(name)
        yield
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


def _split_population(region: Region, cover: CellCover) -> tuple[PopulationSplit, dict[str, Any]]:
    cfg = region.config.population
    totals = [d.population for d in region.config.district]
    if cfg.source == "synthetic":
        features = load_features(region.path(region.config.features.file))
        corridor = None
        if cfg.corridor_role:
            lines = [f.geometry for f in features.by_role(cfg.corridor_role)]
            corridor = shapely.union_all(lines) if lines else None
        cores = [PopulationCore(c.lon, c.lat, c.weight, c.sigma_km) for c in cfg.cores]
        split = synthesize_population(
            region.grid, cover, totals, cores, corridor=corridor, rural_share=cfg.rural_share, seed=cfg.seed
        )
        meta = {
            "source": "synthetic",
            "synthetic": True,
            "year": cfg.year,
            "method": (synthesize_population.__doc__ or "").strip().split("\n\n")[0],
            "district_totals": dict(zip([d.code for d in region.config.district], totals, strict=True)),
            "seed": cfg.seed,
        }
    else:
        path = region.path(cfg.file or "")
        split = population_from_raster(
            path,
            region.grid,
            cover,
            variable=cfg.variable,
            band=cfg.band,
            scale_to=totals if cfg.scale_to_official else None,
        )
        meta = {
            "source": str(path),
            "synthetic": False,
            "year": cfg.year,
            "scaled_to_official": cfg.scale_to_official,
        }
    return split, meta


def _climatology_layers(region: Region, features: Any) -> dict[str, Layer]:
    cfg = region.config.climatology
    if cfg.source == "synthetic":
        return demo_climatology(region.grid, features, seed=region.config.population.seed)
    path = region.path(cfg.file or "")
    try:
        ds = xr.open_dataset(path, engine="netcdf4")
    except (OSError, ValueError) as e:
        raise GridDataError(path, f"cannot open climatology file: {e}") from e
    with ds:
        if ds.sizes.get("lat") != region.grid.ny or ds.sizes.get("lon") != region.grid.nx:
            raise GridDataError(path, f"climatology is not on the region grid {region.grid.shape}")
        out = {}
        for name, da in ds.data_vars.items():
            hazard = INDICATOR_HAZARD_PREFIX.get(str(name).split("_")[0])
            if hazard is None:
                continue
            out[str(name)] = Layer(
                name=str(name),
                kind="hazard",
                hazards=(hazard,),
                units=str(da.attrs.get("units", "1")),
                data=da.values.astype(np.float32),
                provenance={
                    "source": str(path),
                    "synthetic": False,
                    **{k: str(v) for k, v in da.attrs.items()},
                },
            )
        return out


def _unit_rows(
    units: tuple[Unit, ...] | list[Unit], people: np.ndarray, cover: CellCover, cell_area: np.ndarray
) -> list[dict[str, Any]]:
    area = np.bincount(cover.unit, weights=cover.fraction * cell_area[cover.cell], minlength=len(units))
    return [
        {
            "code": u.code,
            "idx": i,
            "name": u.name,
            "name_en": u.name_en,
            "level": u.level,
            "parent": u.parent,
            "population": int(people[i]),
            "area_km2": float(area[i]),
            "boundary": u.boundary,
            "code_status": u.code_status,
            "geometry": shapely.geometry.mapping(shapely.set_precision(u.geometry, 1e-6)),
        }
        for i, u in enumerate(units)
    ]


def _aligned_fraction(split: PopulationSplit, cover: CellCover) -> np.ndarray:
    """Area fraction of each (cell, unit) pair of the split; 0 for pairs the split added beyond the cover."""
    n_units = int(max(cover.unit.max(initial=0), split.unit.max(initial=0))) + 1
    key_cover = cover.cell * n_units + cover.unit
    key_split = split.cell * n_units + split.unit
    order = np.argsort(key_cover, kind="stable")
    at = np.minimum(np.searchsorted(key_cover, key_split, sorter=order), key_cover.size - 1)
    pos = order[at]
    return np.where(key_cover[pos] == key_split, cover.fraction[pos], 0.0)


def _cover_arrays(level: str, split: PopulationSplit, fraction: np.ndarray) -> list[StoredArray]:
    """Cover arrays of a level, aligned on the population split's (cell, unit) pairs."""
    prov = {"method": "area fraction of each grid cell inside each unit; people per (cell, unit) part"}
    return [
        StoredArray(f"cover_{level}_cell", "cover", None, "1", split.cell.astype(np.int32), prov),
        StoredArray(f"cover_{level}_unit", "cover", None, "1", split.unit.astype(np.int32), prov),
        StoredArray(f"cover_{level}_people", "cover", None, "people", split.people.astype(np.int64), prov),
        StoredArray(f"cover_{level}_fraction", "cover", None, "1", fraction.astype(np.float32), prov),
    ]


async def build_region(
    conn: asyncpg.Connection,
    region: str | Path = "wuhai",
    *,
    progress: bool = False,
    on_step: Callable[[str], None] | None = None,
) -> int:
    """Build a new version of the region's risk database and switch to it atomically; returns its id.

    All validation and computation happen before the single write transaction, so a failure leaves the
    current version untouched.
    """
    bar = Progress(progress)

    def step(name: str) -> AbstractContextManager[None]:
        if on_step:
            on_step(name)
        return bar.step(name)

    try:
        with step("region"):
            reg = load_region(region)
            grid = reg.grid
            features = load_features(reg.path(reg.config.features.file))
        with step("cell covers"):
            d_cover = cell_cover(grid, [u.geometry for u in reg.districts])
            t_cover = cell_cover(grid, [u.geometry for u in reg.towns])
            valid = np.zeros(grid.size, dtype=bool)
            valid[d_cover.cell] = True
            valid = valid.reshape(grid.shape)
        with step("population"):
            d_split, pop_meta = _split_population(reg, d_cover)
            t_split = split_among_children(d_split, t_cover, reg.town_district, grid=grid)
            population = d_split.to_grid(grid)
        with step("layers"):
            layers = demo_layers(
                grid,
                population,
                features,
                elderly_share_mean=reg.config.population.elderly_share,
                seed=reg.config.population.seed,
            )
        with step("climatology"):
            layers.update(_climatology_layers(reg, features))
        arrays = {name: layer.data for name, layer in layers.items()}
        d_frac, t_frac = _aligned_fraction(d_split, d_cover), _aligned_fraction(t_split, t_cover)
        cell_area = grid.cell_area_km2().ravel()
        d_people = d_split.per_unit(len(reg.districts))
        t_people = t_split.per_unit(len(reg.towns))
        unit_rows = (
            _unit_rows(
                [reg.city],
                np.array([d_people.sum()]),
                CellCover(d_cover.cell, np.zeros_like(d_cover.unit), d_cover.fraction),
                cell_area,
            )
            + _unit_rows(reg.districts, d_people, d_cover, cell_area)
            + _unit_rows(reg.towns, t_people, t_cover, cell_area)
        )
        stored = [
            StoredArray("population", "population", None, "people", population.astype(np.float32), pop_meta),
            *_cover_arrays("district", d_split, d_frac),
            *_cover_arrays("town", t_split, t_frac),
            *[
                StoredArray(
                    name,
                    layer.kind,
                    layer.hazards[0] if len(layer.hazards) == 1 else None,
                    layer.units,
                    layer.data.astype(np.float32),
                    {**layer.provenance, "hazards": list(layer.hazards)},
                )
                for name, layer in layers.items()
            ],
        ]
        assessments, unit_risk = [], []
        levels = [
            ([reg.city], np.zeros_like(d_split.unit), d_split, d_frac, 1),
            (reg.districts, d_split.unit, d_split, d_frac, len(reg.districts)),
            (reg.towns, t_split.unit, t_split, t_frac, len(reg.towns)),
        ]
        for hazard in HAZARDS:
            model = reg.config.hazards.get(hazard)
            with step(hazard):
                if model is None:
                    continue
                try:
                    result = assess_hazard(hazard, model, arrays, valid)
                except ValueError as e:
                    raise RegionDataError(reg.folder / "region.toml", str(e)) from e
                stored.append(
                    StoredArray(
                        f"risk_{hazard}", "risk", hazard, "1", result.risk_index, {"method": result.method}
                    )
                )
                stored.append(
                    StoredArray(
                        f"grade_{hazard}",
                        "grade",
                        hazard,
                        "1",
                        result.grades,
                        {"method": result.method, "breaks": result.breaks.tolist()},
                    )
                )
                assessments.append(
                    {
                        "hazard": hazard,
                        "method": result.method,
                        "breaks": result.breaks.tolist(),
                        "weights": {
                            "indicators": result.indicator_weights,
                            "components": result.component_weights,
                            "consistency_ratio": result.consistency_ratio,
                        },
                    }
                )
                for units, unit_idx, split, frac, n in levels:
                    ur = assess_units(result, split.cell, unit_idx, split.people, frac, n)
                    for i, u in enumerate(units):
                        unit_risk.append(
                            (
                                hazard,
                                u.code,
                                float(ur.index[i]),
                                int(ur.grade[i]),
                                [int(x) for x in ur.population_by_grade[i]],
                            )
                        )
        with step("store"):
            await upgrade(conn, [RISK_MIGRATIONS])
            config_text = (reg.folder / "region.toml").read_bytes()
            provenance = {
                "boundaries": {
                    "source": reg.config.boundaries.source,
                    "datum": reg.boundary_datum,
                    "converted_to": "WGS84" if reg.boundary_datum != "WGS84" else None,
                },
                "towns": "approximate: Voronoi partition of each district around configured seed points",
                "population": pop_meta,
                "climatology": reg.config.climatology.source,
                "features": str(reg.config.features.file),
                "region_config_sha256": hashlib.sha256(config_text).hexdigest(),
                "grid": {
                    "resolution_arcsec": reg.config.grid.resolution_arcsec,
                    "cells": grid.size,
                    "region_cells": int(valid.sum()),
                },
            }
            vid = await write_version(
                conn,
                region=reg.key,
                region_code=reg.code,
                region_name=reg.config.region.name,
                grid=grid,
                config=reg.config.model_dump(mode="json"),
                provenance=provenance,
                units=unit_rows,
                arrays=stored,
                assessments=assessments,
                unit_risk=unit_risk,
            )
    finally:
        bar.close()
    log.info("risk database built", extra={"region": str(region), "version_id": vid})
    return vid
