"""Forecast runs: ingest of grids, warning criteria, hazard levels, scoring into proposals, polygons."""
