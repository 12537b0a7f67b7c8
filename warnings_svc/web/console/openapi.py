"""The console pages in the service's OpenAPI description (`web.openapi` reads `OPENAPI_PATHS`)."""

from __future__ import annotations

from typing import Any

from warnings_svc.web.auth import LANGUAGES
from warnings_svc.web.events import OPENAPI_PATHS as EVENTS_OPENAPI_PATHS

_HTML = {"text/html": {"schema": {"type": "string"}}}
_LANG = {
    "name": "lang",
    "in": "query",
    "schema": {"type": "string", "enum": list(LANGUAGES), "default": "zh"},
    "description": "Interface language (remembered in a cookie)",
}

OPENAPI_PATHS: dict[str, Any] = {
    "/console/": {
        "get": {
            "summary": "Forecaster console: map of warnings in force and open proposals, proposals, warnings by "
            "status (HTML; login required)",
            "parameters": [_LANG],
            "security": [{"session": []}],
            "responses": {
                "200": {"description": "The console", "content": _HTML},
                "303": {"description": "Not logged in: on to /console/login?next=..."},
            },
        }
    },
    "/console/warnings/{id}": {
        "get": {
            "summary": "One warning in the console: latest version, impact preview, edit form, actions, history "
            "(HTML; login required)",
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}},
                _LANG,
            ],
            "security": [{"session": []}],
            "responses": {
                "200": {"description": "The warning page", "content": _HTML},
                "303": {"description": "Not logged in: on to /console/login?next=..."},
                "404": {"description": "No such warning", "content": _HTML},
            },
        }
    },
    "/console/acknowledgements": {
        "get": {
            "summary": "The duty officer's call list: acknowledgements overdue after every step, with the numbers "
            "of each duty chain (HTML; login required)",
            "parameters": [_LANG],
            "security": [{"session": []}],
            "responses": {
                "200": {"description": "The call list", "content": _HTML},
                "303": {"description": "Not logged in: on to /console/login?next=..."},
            },
        }
    },
    **EVENTS_OPENAPI_PATHS,
}
