"""The hazard kernels tile by tile on a real Dask LocalCluster (spawned worker processes on 127.0.0.1)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import xarray as xr

from risk_zoning import HAZARDS
from tests.factories_forecast import REFERENCE, random_field
from tests.ports import free_port
from warnings_svc.forecast.criteria import Criteria, load_criteria
from warnings_svc.forecast.hazards import HazardInputError, HazardResult, evaluate_all
from warnings_svc.forecast.tiled import SchedulerError, evaluate_all_tiled, local_cluster

distributed = pytest.importorskip("distributed")

HOURS, NY, NX, MEMBERS = 48, 300, 300, 5


@pytest.fixture(scope="module")
def criteria() -> Criteria:
    return load_criteria()


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with local_cluster(n_workers=2) as cluster, distributed.Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="module")
def grid() -> dict[str, xr.DataArray]:
    """48 h x 300 x 300 for the four hazards, sandstorm as a 5-member ensemble, with some missing values."""
    rng = np.random.default_rng(11)
    size = {"ny": NY, "nx": NX}
    data = {
        "precipitation": random_field(rng, "precipitation", HOURS, **size),
        "air_temperature_max": random_field(rng, "air_temperature_max", HOURS, scale=3, offset=35, **size),
        "ground_temperature_min": random_field(rng, "ground_temperature_min", HOURS, scale=3, **size),
        "visibility": random_field(rng, "visibility", HOURS, members=MEMBERS, scale=600, offset=900, **size),
        "wind_gust": random_field(rng, "wind_gust", HOURS, members=MEMBERS, scale=4, offset=9, **size),
    }
    data["precipitation"].values[5, 10:40, 20:30] = np.nan  # a gap: windows over it are missing
    data["precipitation"].values[:, 200:210, 0:5] = np.nan  # cells without data: no probability
    data["visibility"].values[:, 2, 100:120, :] = np.nan  # one member missing on a band of cells
    return data


def assert_same_results(got: dict[str, HazardResult], expected: dict[str, HazardResult]) -> None:
    assert got.keys() == expected.keys()
    for hazard, want in expected.items():
        have = got[hazard]
        for name in ("probability", "onset", "end"):
            # bit for bit, NaN and NaT in the same cells
            np.testing.assert_array_equal(getattr(have, name).values, getattr(want, name).values)
            xr.testing.assert_identical(getattr(have, name), getattr(want, name))
        assert (have.levels, have.branch, have.suppressed) == (want.levels, want.branch, want.suppressed)
        assert have.evidence == want.evidence


@pytest.mark.slow
@pytest.mark.parametrize("tile", [100, 128], ids=["tile-divides-the-grid", "tile-does-not-divide-the-grid"])
def test_a_local_cluster_gives_exactly_what_evaluate_all_gives_on_the_whole_grid(
    client: distributed.Client, grid: dict[str, xr.DataArray], criteria: Criteria, tile: int
) -> None:
    expected = evaluate_all(grid, criteria, reference_time=REFERENCE)
    got = evaluate_all_tiled(grid, criteria, reference_time=REFERENCE, tile=tile, client=client)
    assert_same_results(got, expected)
    sandstorm = got["sandstorm"].probability.values
    assert ((sandstorm > 0) & (sandstorm < 1)).any()  # the ensemble gives fractions, not just 0 and 1
    assert np.isnan(got["rainstorm"].probability.values).any()  # cells without data
    assert not np.isnat(got["heat"].onset.values).all() and np.isnat(got["heat"].onset.values).any()


@pytest.mark.slow
def test_without_a_client_a_local_cluster_is_made_for_the_call_and_closed(criteria: Criteria) -> None:
    rng = np.random.default_rng(3)
    data = {"precipitation": random_field(rng, "precipitation", 24, ny=40, nx=30)}
    expected = evaluate_all(data, criteria, reference_time=REFERENCE)
    got = evaluate_all_tiled(data, criteria, reference_time=REFERENCE, tile=16)
    assert_same_results(got, expected)
    assert list(got) == ["rainstorm"]  # hazards without inputs are left out, as evaluate_all does


def test_a_scheduler_address_nothing_listens_on_is_one_line_within_the_timeout(
    grid: dict[str, xr.DataArray], criteria: Criteria
) -> None:
    address = f"tcp://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(SchedulerError) as e:
        evaluate_all_tiled(grid, criteria, reference_time=REFERENCE, scheduler=address, connect_timeout=2)
    assert time.monotonic() - start < 15
    assert "\n" not in str(e.value)
    assert str(e.value).startswith(f"dask scheduler {address}: cannot connect within 2 s")


def test_bad_inputs_fail_here_before_any_cluster_is_contacted(
    grid: dict[str, xr.DataArray], criteria: Criteria
) -> None:
    data = {**grid, "wind_gust": grid["wind_gust"].isel(lon=slice(0, 299))}
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    with pytest.raises(HazardInputError, match="wind_gust is not on the same lat/lon grid as visibility"):
        evaluate_all_tiled(data, criteria, reference_time=REFERENCE, scheduler=nowhere, connect_timeout=2)


def test_a_hazard_outside_its_season_is_zero_everywhere_without_a_cluster(
    grid: dict[str, xr.DataArray], criteria: Criteria
) -> None:
    january = np.datetime64("2024-01-10T00:00", "ns")
    data = {k: v.assign_coords(time=v["time"] - REFERENCE + january) for k, v in grid.items()}
    expected = evaluate_all(data, criteria, reference_time=january, hazards=["frost"])
    nowhere = f"tcp://127.0.0.1:{free_port()}"  # frost is suppressed: nothing is sent anywhere
    got = evaluate_all_tiled(data, criteria, reference_time=january, hazards=["frost"], scheduler=nowhere)
    assert got["frost"].suppressed
    assert_same_results(got, expected)


def test_a_tile_must_be_at_least_one_cell(grid: dict[str, xr.DataArray], criteria: Criteria) -> None:
    with pytest.raises(ValueError, match="tile must be a whole number of cells >= 1"):
        evaluate_all_tiled(grid, criteria, reference_time=REFERENCE, hazards=HAZARDS, tile=0)
