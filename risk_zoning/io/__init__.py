"""Plumbing of the risk database: CF NetCDF grids, PostgreSQL connections and migrations, TOML files."""
