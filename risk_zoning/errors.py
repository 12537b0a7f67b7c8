"""Errors of the risk-zoning package; each carries the file (or object) at fault and one line of explanation."""

from __future__ import annotations

from pathlib import Path


class RiskZoningError(Exception):
    """Base of every error this package raises on purpose."""


class RegionDataError(RiskZoningError):
    """Region data or configuration is unusable; `str()` is one line naming the source and the problem."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class GridDataError(RiskZoningError):
    """A gridded input (raster, NetCDF) cannot be used; names the file and the problem."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class DatabaseError(RiskZoningError):
    """The risk database is missing, unreachable or not built."""


class DataFolderUnusable(DatabaseError):
    """The embedded server's data folder is one PostgreSQL will never start on as it is (another major
    version's, not a data folder, the wrong owner or permissions): trying again cannot help, a person must."""
