"""The hazard kernels tile by tile on a Dask cluster, with results identical to `hazards.evaluate_all`.

Every cell is computed from its own time series (see `warnings_svc.forecast.hazards`), so the grid is cut in
lat/lon tiles only, each keeping the whole time axis and every member, and each tile runs the same fused
kernel through ``xr.map_blocks(evaluate_tile, ...)``. The floats, onsets and ends are the same as
`evaluate_all` on the whole grid, bit for bit: a worker runs the serial kernel (`hazards` keeps the
parallel one for the main thread of the importing process), which the tests hold equal to the parallel one.

Where it runs: an existing `distributed.Client`; else a scheduler address (``tcp://host:8786``, many
hosts); else a `LocalCluster` made for the call (2 worker processes with 1 thread each, on 127.0.0.1,
dashboard off) and closed after it. Workers are spawned processes; they load the kernels from numba's
on-disk cache (``cache=True``) on their first task instead of compiling them, and keep them for the
process's life, so a long-lived cluster pays that once per worker.

Inputs may be numpy-backed or Dask-backed (e.g. ``open_dataset(..., chunks={})``). Numpy-backed tiles
are sent from this process straight to the workers, every variable of a tile to one worker; Dask-backed
ones are rechunked and the workers read their own tiles. On one host, numpy-backed inputs make this slower
than `evaluate_all` (the bytes cross process boundaries; see bench/LOG.md): the tiled path is for grids
read by the workers or bigger than one machine. The observed branch is not tiled: score it with
`evaluate_all` (observation grids are small).

The service's settings (``[scoring]``, `warnings_svc.settings.ScoringSettings`) come here as one `DaskScoring`
(`warnings_svc.forecast.runs.dask_scoring`): ``dask_scheduler`` -> `scheduler` (unset: scored in-process,
not here), ``tile`` -> `tile`, ``dask_connect_timeout_s`` -> `connect_timeout`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from risk_zoning import HAZARDS
from warnings_svc.forecast.criteria import Criteria
from warnings_svc.forecast.hazards import (
    HazardError,
    HazardInputError,
    HazardResult,
    MissingInputError,
    evaluate,
    evaluate_tile,
    tile_template,
)

if TYPE_CHECKING:
    import distributed

__all__ = ["DEFAULT_TILE", "DaskScoring", "SchedulerError", "evaluate_all_tiled", "local_cluster"]

log = logging.getLogger(__name__)

DEFAULT_TILE = 256  # cells per tile side: 72 h x 256 x 256 float32 is 19 MB per variable and member
CONNECT_TIMEOUT_S = 10.0
_LOOPBACK = "127.0.0.1"
_GATES = ("wind_gust", "wind_speed", "dust_concentration")  # sandstorm drivers, as named in the evidence


class SchedulerError(HazardError):
    """The Dask scheduler cannot be reached or the cluster cannot start; `str()` is one line."""


@dataclass(frozen=True)
class DaskScoring:
    """Score the forecast branch tile by tile on the Dask scheduler at `scheduler` (``[scoring]
    dask_scheduler``, `tile`, `dask_connect_timeout_s`)."""

    scheduler: str
    tile: int = DEFAULT_TILE
    connect_timeout_s: float = CONNECT_TIMEOUT_S


def evaluate_all_tiled(
    data: Mapping[str, xr.DataArray],
    criteria: Criteria,
    *,
    reference_time: np.datetime64 | datetime | str,
    hazards: Sequence[str] = HAZARDS,
    tile: int = DEFAULT_TILE,
    scheduler: str | None = None,
    client: distributed.Client | None = None,
    n_workers: int = 2,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> dict[str, HazardResult]:
    """`hazards.evaluate_all` (forecast branch) computed in `tile` x `tile` cell tiles on a Dask cluster.

    The result is identical to ``evaluate_all(data, criteria, reference_time=..., hazards=...)``: same
    probabilities, onsets, ends, names, attributes, coordinates and evidence. The evidence and every input
    check come from `evaluate` run locally on the grid's first cell, so a bad input fails here, in one line,
    before anything is sent to the cluster; hazards without usable inputs are left out (logged), as there.

    Cluster: `client` if given (left open); else `scheduler`, an address such as ``tcp://10.0.0.5:8786``
    (connected for the call, `SchedulerError` if nothing answers within `connect_timeout` seconds); else a
    `LocalCluster` of `n_workers` processes with one thread each on 127.0.0.1, closed after the call.

    >>> out = evaluate_all_tiled(data, criteria, reference_time="2024-07-01T12:00", tile=256)  # doctest: +SKIP
    >>> out["rainstorm"].probability.sel(level="orange")  # doctest: +SKIP
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be a whole number of cells >= 1 (got {tile!r})")
    probes: dict[str, tuple[HazardResult, dict[str, xr.DataArray]]] = {}
    corner = {k: _corner(v) for k, v in data.items() if v is not None}
    for hazard in hazards:
        try:
            probe = evaluate(hazard, corner, criteria, reference_time=reference_time, parallel=False)
        except MissingInputError as e:
            log.info("hazard not assessed", extra={"hazard": hazard, "reason": str(e)})
            continue
        probes[hazard] = (probe, _aligned_inputs(data, probe))
    computed: dict[str, xr.Dataset] = {}
    # a suppressed hazard is zero everywhere: nothing to compute
    todo = {hazard: inputs for hazard, (probe, inputs) in probes.items() if probe.suppressed is None}
    if todo:
        with _connected(client, scheduler, n_workers, connect_timeout) as c:
            tiled = _tiled_arrays(c, [da for inputs in todo.values() for da in inputs.values()], tile)
            lazy = []
            for hazard, inputs in todo.items():
                grid = xr.Dataset({name: da.copy(data=tiled[_key(da)]) for name, da in inputs.items()})
                template = tile_template(grid, hazard, criteria)
                kwargs = {"hazard": hazard, "criteria": criteria, "reference_time": reference_time}
                lazy.append(xr.map_blocks(evaluate_tile, grid, kwargs=kwargs, template=template))
            try:
                done = c.compute(lazy, sync=True)
            except (OSError, CancelledError, _killed_worker()) as e:
                raise SchedulerError(f"dask cluster failed while scoring ({_one_line(e)})") from e
            computed = dict(zip(todo, done, strict=True))
    return {
        hazard: _whole_grid(probe, next(iter(inputs.values())), computed.get(hazard))
        for hazard, (probe, inputs) in probes.items()
    }


# ---------------------------------------------------------------------------------------------- inputs


def _corner(da: xr.DataArray) -> xr.DataArray:
    if not isinstance(da, xr.DataArray) or not {"lat", "lon"} <= set(map(str, da.dims)):
        return da  # evaluate says what is wrong with it
    return da.isel(lat=slice(0, 1), lon=slice(0, 1))


def _used_quantities(probe: HazardResult) -> list[str]:
    """The variables `evaluate` used for the probe: the hazard's variable, then the sandstorm drivers."""
    used = [str(probe.evidence["variable"]["quantity"])]
    drivers = probe.evidence.get("dust_raised_by", {})
    used += [q for q in _GATES if isinstance(drivers.get(q), dict)]
    return used


def _aligned_inputs(data: Mapping[str, xr.DataArray], probe: HazardResult) -> dict[str, xr.DataArray]:
    """The variables the hazard uses, main one first, all on the main variable's coordinates.

    The drivers of the sandstorm criterion are put on the visibility's valid times (as `evaluate` does) and
    lat/lon coordinates (after the same check), so that putting them in one Dataset joins nothing.
    """
    main_name, *others = _used_quantities(probe)
    main = data[main_name]
    coords: dict[str, Any] = {str(d): main[d].values for d in main.dims if d in main.coords}
    out = {main_name: _bare(main, coords)}
    for name in others:
        da = data[name]
        _check_same_grid(main, da, main_name, name)
        if not np.array_equal(da["time"].values, main["time"].values):
            da = da.reindex(time=main["time"].values)
        if "member" in da.dims and "member" in coords and da.sizes["member"] != main.sizes["member"]:
            raise HazardInputError(
                f"forecast {name} has {da.sizes['member']} members, {main_name} {main.sizes['member']}"
            )
        out[name] = _bare(da, coords)
    return out


def _tiled_arrays(client: distributed.Client, arrays: Sequence[xr.DataArray], tile: int) -> dict[int, Any]:
    """Each array as a Dask array of lat/lon tiles (whole time axis and members), keyed by `_key`.

    Dask-backed arrays are rechunked, so the workers read their own tiles. Numpy-backed ones are cut here
    and sent straight to the workers (every variable of a tile to the same worker, tiles dealt round the
    workers), rather than carried inside the task graph through the scheduler.
    """
    import dask.array as dsa

    out: dict[int, Any] = {}
    local: dict[int, xr.DataArray] = {}
    for da in arrays:
        if isinstance(da.variable.data, np.ndarray):
            local[_key(da)] = da
        else:
            out[_key(da)] = da.chunk(
                {d: (tile if d in ("lat", "lon") else -1) for d in da.dims}
            ).variable.data
    if not local:
        return out
    workers: list[str | None] = sorted(client.scheduler_info()["workers"]) or [None]
    by_grid: dict[tuple[int, int], list[int]] = {}
    for k, da in local.items():
        by_grid.setdefault((da.sizes["lat"], da.sizes["lon"]), []).append(k)
    for (ny, nx), keys in by_grid.items():
        rows = [slice(i, min(i + tile, ny)) for i in range(0, ny, tile)]
        cols = [slice(j, min(j + tile, nx)) for j in range(0, nx, tile)]
        blocks: dict[int, list[list[Any]]] = {k: [[None] * len(cols) for _ in rows] for k in keys}
        for n, (i, j) in enumerate((i, j) for i in range(len(rows)) for j in range(len(cols))):
            pieces = [local[k].isel(lat=rows[i], lon=cols[j]).values for k in keys]
            worker = workers[n % len(workers)]
            futures = client.scatter(pieces, workers=None if worker is None else [worker], hash=False)
            for k, piece, future in zip(keys, pieces, futures, strict=True):
                blocks[k][i][j] = dsa.from_delayed(future, shape=piece.shape, dtype=piece.dtype)
        for k in keys:
            out[k] = dsa.block(blocks[k])  # nested lists join along the last two axes: lat, lon
    return out


def _key(da: xr.DataArray) -> int:
    # variables shared by hazards (frost and heat on one 2 m temperature) are sent to the workers once
    return id(da.variable.data)


def _bare(da: xr.DataArray, coords: Mapping[str, Any]) -> xr.DataArray:
    """`da` with only its dimension coordinates, taken from the main variable (attrs kept: units, methods)."""
    return xr.DataArray(
        da.variable.data,
        dims=da.dims,
        coords={str(d): coords[str(d)] for d in da.dims if str(d) in coords},
        attrs=dict(da.attrs),
        name=da.name,
    )


def _check_same_grid(main: xr.DataArray, other: xr.DataArray, main_name: str, name: str) -> None:
    # the rule of `hazards`: coordinates computed in different ways differ in the last bits
    a_lat, a_lon = np.asarray(main["lat"].values), np.asarray(main["lon"].values)
    b_lat, b_lon = np.asarray(other["lat"].values), np.asarray(other["lon"].values)
    same = a_lat.shape == b_lat.shape and a_lon.shape == b_lon.shape
    if not (
        same and np.allclose(a_lat, b_lat, rtol=0, atol=1e-6) and np.allclose(a_lon, b_lon, rtol=0, atol=1e-6)
    ):
        raise HazardInputError(
            f"forecast {name} is not on the same lat/lon grid as {main_name} "
            f"({b_lat.size}x{b_lon.size} vs {a_lat.size}x{a_lon.size} cells)"
        )


# ---------------------------------------------------------------------------------------------- output


def _whole_grid(probe: HazardResult, main: xr.DataArray, computed: xr.Dataset | None) -> HazardResult:
    """The probe's result on the whole grid of `main`, with the tiles' values (zeros when suppressed)."""
    shape = (len(probe.levels), main.sizes["lat"], main.sizes["lon"])
    coords = {"level": list(probe.levels), "lat": main["lat"].values, "lon": main["lon"].values}
    if computed is None:
        prob = np.zeros(shape, np.float32)
        onset = np.full(shape, np.datetime64("NaT", "ns"))
        end = onset.copy()
    else:
        prob, onset, end = (
            computed[v].transpose("level", "lat", "lon").values for v in ("probability", "onset", "end")
        )

    def like(template: xr.DataArray, values: np.ndarray) -> xr.DataArray:
        return xr.DataArray(
            values, dims=template.dims, coords=coords, name=template.name, attrs=template.attrs
        )

    return HazardResult(
        hazard=probe.hazard,
        levels=probe.levels,
        probability=like(probe.probability, prob.astype(np.float32, copy=False)),
        onset=like(probe.onset, onset.astype("datetime64[ns]", copy=False)),
        end=like(probe.end, end.astype("datetime64[ns]", copy=False)),
        branch=probe.branch,
        suppressed=probe.suppressed,
        evidence=probe.evidence,
    )


# ---------------------------------------------------------------------------------------------- cluster


@contextmanager
def _connected(
    client: distributed.Client | None, scheduler: str | None, n_workers: int, timeout: float
) -> Iterator[distributed.Client]:
    """The given client, a client of the scheduler at `scheduler`, or one of a local cluster made here."""
    if client is not None:
        yield client
        return
    from distributed import Client  # imported on use: scoring without Dask never loads it

    if scheduler is not None:
        try:
            c = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, ValueError, TypeError) as e:
            raise SchedulerError(
                f"dask scheduler {scheduler}: cannot connect within {timeout:g} s ({_one_line(e)})"
            ) from e
        with c:
            yield c
        return
    try:
        cluster = local_cluster(n_workers)
    except (OSError, RuntimeError) as e:
        raise SchedulerError(f"local dask cluster: cannot start ({_one_line(e)})") from e
    with cluster, Client(cluster, set_as_default=False) as c:
        yield c


def local_cluster(n_workers: int = 2) -> distributed.LocalCluster:
    """The local cluster `evaluate_all_tiled` makes: `n_workers` spawned processes with one thread each, all
    on 127.0.0.1, no dashboard (the scheduler's health endpoint takes a free loopback port, not 8787)."""
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host=_LOOPBACK,
        dashboard_address=None,
        scheduler_kwargs={"dashboard": False, "dashboard_address": f"{_LOOPBACK}:0"},
    )


def _killed_worker() -> type[Exception]:
    from distributed import KilledWorker

    return KilledWorker


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__
