"""`risk-zoning climatology` on real NetCDF files."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "risk_zoning.cli", "climatology", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_daily_tmax(path: Path, value: float) -> Path:
    t = pd.date_range("2021-01-01", "2021-12-31", freq="1D")
    lat, lon = np.arange(38.9, 40.1, 0.05), np.arange(106.4, 107.4, 0.05)
    data = np.full((t.size, lat.size, lon.size), 20.0, dtype="f4")
    data[180:190] = value  # ten consecutive hot days in July
    xr.Dataset(
        {
            "tasmax": (
                ("time", "lat", "lon"),
                data,
                {"units": "degC", "standard_name": "air_temperature", "cell_methods": "time: maximum"},
            )
        },
        coords={
            "time": t,
            "lat": ("lat", lat, {"units": "degrees_north"}),
            "lon": ("lon", lon, {"units": "degrees_east"}),
        },
    ).to_netcdf(path)
    return path


def test_climatology_writes_heat_indicators_on_the_region_grid(tmp_path: Path) -> None:
    src = write_daily_tmax(tmp_path / "tx.nc", 36.0)
    out = run(str(src), "--hazard", "heat", "-o", str(tmp_path / "clim.nc"))
    assert out.returncode == 0, out.stderr
    ds = xr.open_dataset(tmp_path / "clim.nc")
    assert ds.sizes == {"lat": 108, "lon": 67}
    np.testing.assert_allclose(ds["heat_days_ge35"].values, 10.0)
    np.testing.assert_allclose(ds["heat_processes"].values, 1.0)


def test_climatology_of_a_file_that_is_not_netcdf_fails_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nc"
    bad.write_text("not a grid")
    out = run(str(bad), "-o", str(tmp_path / "clim.nc"))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith(f"risk-zoning: {bad}")
    assert not (tmp_path / "clim.nc").exists()
