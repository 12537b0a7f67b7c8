"""The service's database: its schemas' migrations, in the order they are applied.

Connections, the embedded PostgreSQL and the migration runner are the risk database's
(`risk_zoning.io.database`); the service adds its own numbered migrations (`warnings_svc/migrations/`).
"""

from __future__ import annotations

from risk_zoning.io.database import RISK_MIGRATIONS, MigrationSource

SERVICE_MIGRATIONS = MigrationSource("service", "warnings_svc")
# Every schema the service needs, in the order they are applied.
MIGRATIONS: tuple[MigrationSource, ...] = (RISK_MIGRATIONS, SERVICE_MIGRATIONS)
