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


def test_what_a_lost_database_said_stays_in_the_log_not_in_the_answer() -> None:
    # asyncpg's internal states and socket paths mean nothing to a client (seen in a 503's detail before)
    from aiohttp.test_utils import make_mocked_request

    from warnings_svc.web.middleware import DATABASE_UNAVAILABLE_DETAIL, REQUEST_ID, error_answer

    request = make_mocked_request("POST", "/api/v1/warnings", headers={"Accept": "application/problem+json"})
    request[REQUEST_ID] = "r1"
    error = asyncpg.InterfaceError("cannot call Transaction.__aexit__(): the underlying connection is closed")
    response = error_answer(request, error)
    assert response.status == 503
    body = response.body.decode()
    assert DATABASE_UNAVAILABLE_DETAIL in body and "__aexit__" not in body


def test_a_failed_idempotency_bookkeeping_counts_a_broken_connection_as_a_lost_database() -> None:
    # an answer already written must not become a 503 because the key's bookkeeping met a dead connection
    from warnings_svc.web.idempotency import DATABASE_LOST

    assert issubclass(asyncpg.InterfaceError, DATABASE_LOST) and issubclass(
        asyncpg.InternalClientError, DATABASE_LOST
    )
