"""Errors a request can meet, and the HTTP answer for each domain error, in one table."""

from __future__ import annotations

import logging

import asyncpg

from risk_zoning import HAZARDS
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
from warnings_svc.web.problems import Problem

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------- errors


class RequestError(Exception):
    """The request cannot be answered as asked; names the parameter at fault."""

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {problem}")


class UnknownHazardError(RequestError):
    """The path names a hazard the risk database does not assess."""

    def __init__(self, hazard: str) -> None:
        super().__init__("hazard", f"unknown hazard {hazard!r}; known hazards: {', '.join(HAZARDS)}")


class NotFoundError(RequestError):
    """The path names something that does not exist."""


# Domain errors -> HTTP answers, in one place. The first class in an exception's MRO found here wins.
PROBLEMS: dict[type[BaseException], Problem] = {
    UnknownHazardError: Problem(404, "unknown-hazard", "Unknown hazard"),
    Unauthenticated: Problem(401, "unauthenticated", "Not logged in"),
    CsrfRejected: Problem(403, "csrf-rejected", "Cross-site or unverified request refused"),
    Forbidden: Problem(403, "forbidden", "Not allowed"),
    RateLimited: Problem(429, "too-many-logins", "Too many failed logins"),
    LoginFailed: Problem(401, "login-failed", "Wrong user name or password"),
    AccountError: Problem(400, "invalid-account", "Invalid account"),
    NotFoundError: Problem(404, "not-found", "Not found"),
    RejectedRun: Problem(422, "unusable-forecast", "Unusable forecast run"),
    ScoringUnavailable: Problem(503, "scoring-unavailable", "Scoring unavailable"),
    RequestError: Problem(400, "invalid-parameter", "Invalid parameter"),
    DatabaseError: Problem(503, "risk-database-unavailable", "Risk database unavailable"),
    RiskZoningError: Problem(500, "risk-database-error", "Risk database error"),
    asyncpg.PostgresError: Problem(503, "database-unavailable", "Database unavailable"),
    asyncpg.InterfaceError: Problem(503, "database-unavailable", "Database unavailable"),
    ConnectionError: Problem(503, "database-unavailable", "Database unavailable"),
}
INTERNAL_ERROR = Problem(500, "internal-error", "Internal server error")


def problem_for(error: BaseException) -> Problem | None:
    own = getattr(error, "problem", None)  # errors that know their answer (`problems.ApiProblem`)
    if isinstance(own, Problem):
        return own
    for cls in type(error).__mro__:
        if cls in PROBLEMS:
            return PROBLEMS[cls]
    return None


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split())
