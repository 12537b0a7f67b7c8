"""The table of domain errors' answers (`warnings_svc.web.errors`): 503 only when a dependency is down."""

from __future__ import annotations

import asyncpg
import pytest

from warnings_svc.web.errors import problem_for


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=type,
)
def test_a_database_that_cannot_be_reached_is_a_503(error: BaseException) -> None:
    problem = problem_for(error)
    assert problem is not None and (problem.status, problem.code) == (503, "database_unavailable")


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
        asyncpg.DatetimeFieldOverflowError("date/time field value out of range"),
        asyncpg.NumericValueOutOfRangeError("value out of range for type bigint"),
    ],
    ids=type,
)
def test_a_value_postgresql_refuses_is_no_outage_but_an_unhandled_error(error: BaseException) -> None:
    # answered 500 internal_error by the middleware, with the traceback logged; never "Database unavailable"
    assert problem_for(error) is None
