"""The service's database: its schemas' migrations, in the order they are applied.

Connections, the embedded PostgreSQL and the migration runner are the risk database's
(`risk_zoning.io.database`); the service adds its own numbered migrations (`warnings_svc/migrations/`).
"""

from __future__ import annotations

import asyncpg

from risk_zoning.io.database import RISK_MIGRATIONS, MigrationSource

SERVICE_MIGRATIONS = MigrationSource("service", "warnings_svc")
# Every schema the service needs, in the order they are applied.
MIGRATIONS: tuple[MigrationSource, ...] = (RISK_MIGRATIONS, SERVICE_MIGRATIONS)

# What a database call raises while the server is away (stopped, restarting, killed): background loops log
# one line when these start and one when they stop, not a traceback per try (`web.database_watch`).
DATABASE_UNREACHABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InternalClientError,  # the server died in the middle of an operation
)
# What a periodic check in a background loop survives (the coverage watch, the expiry clock, the
# acknowledgement deadlines): any error from the database or the connection to it, a server killed
# mid-statement included (InternalClientError). The next tick tries again.
DATABASE_FAILURES: tuple[type[Exception], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
