"""The HTTP answer for each domain error, in one table. (Handlers refuse with `problems.ApiProblem`.)"""

from __future__ import annotations

import asyncpg
from aiohttp.http_exceptions import BadHttpMessage

from risk_zoning.errors import DatabaseError, RiskZoningError
from warnings_svc.forecast.runs import (
    RejectedRun,
    ScoringUnavailable,
)
from warnings_svc.web.accounts import AccountError, LoginFailed, RateLimited
from warnings_svc.web.auth import (
    CsrfRejected,
    Forbidden,
    Unauthenticated,
)
from warnings_svc.web.problems import ApiProblem, Problem

# Domain errors -> HTTP answers, in one place. The first class in an exception's MRO found here wins.
PROBLEMS: dict[type[BaseException], Problem] = {
    Unauthenticated: Problem(401, "unauthenticated", "Not logged in"),
    CsrfRejected: Problem(403, "csrf_rejected", "Cross-site or unverified request refused"),
    Forbidden: Problem(403, "forbidden", "Not allowed"),
    RateLimited: Problem(429, "too_many_logins", "Too many failed logins"),
    LoginFailed: Problem(401, "login_failed", "Wrong user name or password"),
    AccountError: Problem(400, "invalid_account", "Invalid account"),
    RejectedRun: Problem(422, "unusable_forecast", "Unusable forecast run"),
    # a request body aiohttp could not parse (a multipart part's headers) wherever a handler read it
    BadHttpMessage: Problem(400, "bad_request", "Bad request"),
    ScoringUnavailable: Problem(503, "scoring_unavailable", "Scoring unavailable"),
    DatabaseError: Problem(503, "risk_database_unavailable", "Risk database unavailable"),
    RiskZoningError: Problem(500, "risk_database_error", "Risk database error"),
    asyncpg.PostgresError: Problem(503, "database_unavailable", "Database unavailable"),
    asyncpg.InterfaceError: Problem(503, "database_unavailable", "Database unavailable"),
    # asyncpg's state when the server died in the middle of an operation
    asyncpg.InternalClientError: Problem(503, "database_unavailable", "Database unavailable"),
    ConnectionError: Problem(503, "database_unavailable", "Database unavailable"),
}
INTERNAL_ERROR = Problem(500, "internal_error", "Internal server error")
# PostgreSQL errors that say nothing of its availability: a value it refuses (SQLSTATE class 22: a NUL in a
# text, a date out of its range) got past the request's checks. A bug here, logged as one, never a 503.
NOT_AN_OUTAGE: tuple[type[BaseException], ...] = (asyncpg.DataError,)


def problem_for(error: BaseException) -> Problem | None:
    """The answer to an error: its own (`ApiProblem`) or the first class of its MRO in `PROBLEMS`; None for
    an error no table knows (or `NOT_AN_OUTAGE`), which the middleware logs and answers as a 500."""
    if isinstance(error, ApiProblem):
        return error.problem
    if isinstance(error, NOT_AN_OUTAGE):
        return None
    for cls in type(error).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return None


def one_line(error: BaseException) -> str:
    """The error's text on one line."""
    return " ".join(str(error).split())
