"""HTTP problem documents (RFC 9457): the one shape every refusal takes, and the one error that raises it.

Every 4xx answer is a problem document with ``code`` (machine-readable, snake_case) and, whenever a field is
at fault, ``field`` (its JSON path: ``areas``, ``texts.zh-CN.headline``, ``areas.0``). Handlers refuse by
raising `ApiProblem`; request models refuse through `problem_from_validation`; domain errors raised below the
web layer are mapped once, in `warnings_svc.web.errors.PROBLEMS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

PROBLEM_TYPE_PREFIX = "urn:warnings-svc:problem:"


@dataclass(frozen=True)
class Problem:
    """What kind of refusal an answer is: status, machine-readable ``code`` and a short title."""

    status: int
    code: str
    title: str
    type_uri: str | None = None  # None: the URN of the code

    @property
    def type(self) -> str:
        return self.type_uri or PROBLEM_TYPE_PREFIX + self.code.replace("_", "-")


TITLES: dict[int, str] = {
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
    """A refusal decided where it is raised: status, ``code`` and the field at fault go into the problem
    document; its detail is ``field: message`` when a field is named, else the message (one line)."""

    def __init__(
        self, status: int, code: str, message: str, field: str | None = None, *, title: str | None = None
    ) -> None:
        text = " ".join(message.split())
        super().__init__(f"{field}: {text}" if field else text)
        self.problem = Problem(status, code, title or TITLES.get(status, "Refused"))
        self.field = field

    @property
    def problem_fields(self) -> dict[str, Any]:
        """The keys this refusal adds to the problem document."""
        return {"code": self.problem.code} | ({"field": self.field} if self.field else {})


def json_path(location: tuple[int | str, ...]) -> str:
    """A pydantic error location as the field's dotted JSON path (``texts.zh-CN``, ``areas.0``)."""
    return ".".join(str(part) for part in location)


def problem_from_validation(error: ValidationError, status: int, *, whole: str = "body") -> ApiProblem:
    """The first fault of a request model as a refusal naming its field (``whole`` when the model as a
    whole is at fault), with pydantic's message as a one-line detail."""
    first = error.errors(include_url=False)[0]
    location = tuple(first["loc"])
    field = (json_path(location[:1]) if whole == "query" else json_path(location)) or whole
    message = first["msg"].removeprefix("Value error, ")  # a validator's own sentence
    if first["type"] == "extra_forbidden":
        message = "unknown field" if whole == "body" else "unknown parameter"
    elif first["type"] == "missing":
        message = "is required"
    return ApiProblem(status, "invalid" if status == 422 else "invalid_parameter", message, field)
