"""HTTP problem documents (RFC 9457): what an error answers, in one shape every route module can raise."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    status: int
    slug: str
    title: str


_TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Not logged in",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the current state",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
}


class ApiProblem(Exception):
    """An answer decided where the error is raised: status, a machine-readable ``code`` and the field at fault
    go into the problem document."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(" ".join(message.split()))
        self.problem = Problem(status, code.replace("_", "-"), _TITLES.get(status, "Refused"))
        self.problem_fields = {"code": code} | ({"field": field} if field else {})
