"""The API description served at /openapi.json."""

from __future__ import annotations

import json
import logging
from functools import partial
from typing import Any

from aiohttp import web

from risk_zoning import HAZARDS
from warnings_svc.web.api.alerts import OPENAPI_PATHS as ALERTS_OPENAPI_PATHS
from warnings_svc.web.api.runs import PROPOSAL_STATUSES
from warnings_svc.web.api.warnings import OPENAPI_PATHS as WARNINGS_OPENAPI_PATHS
from warnings_svc.web.auth import (
    LANGUAGES,
    OPENAPI_SECURITY_SCHEMES,
)
from warnings_svc.web.auth import OPENAPI_PATHS as AUTH_OPENAPI_PATHS
from warnings_svc.web.console import OPENAPI_PATHS as CONSOLE_OPENAPI_PATHS
from warnings_svc.web.middleware import PROBLEM_JSON

log = logging.getLogger(__name__)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(), dumps=partial(json.dumps, ensure_ascii=False))


# ---------------------------------------------------------------------------------------------- OpenAPI


def openapi_document() -> dict[str, Any]:
    """A hand-written OpenAPI 3.1 description of the routes above."""
    problem = {"$ref": "#/components/responses/Problem"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "warnings-svc",
            "version": "0.1.0",
            "description": "Meteorological disaster early warning: risk database, forecast runs and proposals, health, metrics.",
        },
        "paths": {
            "/healthz": {
                "get": {
                    "summary": "Liveness: the process answers",
                    "responses": {
                        "200": {
                            "description": "Alive",
                            "content": {
                                "application/json": {
                                    "schema": {"type": "object", "properties": {"status": {"const": "ok"}}}
                                }
                            },
                        }
                    },
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: database, migrations and the region's risk database",
                    "responses": {
                        "200": {
                            "description": "Ready",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}
                            },
                        },
                        "503": {
                            "description": "Not ready; `failed` names the checks",
                            "content": {
                                "application/json": {"schema": {"$ref": "#/components/schemas/Readiness"}}
                            },
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "Text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "First page: risk maps, assessment units, totals and provenance (HTML)",
                    "parameters": [{"$ref": "#/components/parameters/lang"}],
                    "responses": {
                        "200": {
                            "description": "HTML page",
                            "content": {"text/html": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/maps/risk/{hazard}.png": {
                "get": {
                    "summary": "Risk grade map of one hazard for the current risk database version",
                    "parameters": [
                        {
                            "name": "hazard",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string", "enum": list(HAZARDS)},
                        },
                        {"$ref": "#/components/parameters/lang"},
                    ],
                    "responses": {
                        "200": {
                            "description": "PNG image",
                            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        "304": {"description": "Not modified (ETag)"},
                        "400": problem,
                        "404": problem,
                        "503": problem,
                    },
                }
            },
            "/api/v1/risk/summary": {
                "get": {
                    "summary": "Summary of the current risk database (as `risk-zoning summary --json`)",
                    "responses": {
                        "200": {
                            "description": "Summary",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "503": problem,
                    },
                }
            },
            "/maps/proposals.png": {
                "get": {
                    "summary": "Map of the open warning proposals' polygons, coloured by level",
                    "parameters": [{"$ref": "#/components/parameters/lang"}],
                    "responses": {
                        "200": {
                            "description": "PNG image",
                            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                        },
                        "400": problem,
                        "503": problem,
                    },
                }
            },
            "/api/v1/runs": {
                "post": {
                    "summary": "Upload a forecast run (NetCDF files, multipart; or one file as the body with "
                    "?filename=); it is scored off the event loop and stored with its proposals",
                    "parameters": [{"name": "filename", "in": "query", "schema": {"type": "string"}}],
                    "requestBody": {
                        "content": {
                            "multipart/form-data": {"schema": {"type": "object"}},
                            "application/x-netcdf": {"schema": {"type": "string", "format": "binary"}},
                        }
                    },
                    "responses": {
                        "201": {
                            "description": "Scored and stored: run summary and proposals",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "200": {
                            "description": "The same run was stored before (same file contents)",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": problem,
                        "422": problem,
                        "503": problem,
                    },
                }
            },
            "/api/v1/runs/{id}": {
                "get": {
                    "summary": "A stored forecast run and the proposals scored from it",
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
                    ],
                    "responses": {
                        "200": {
                            "description": "Run",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": problem,
                        "404": problem,
                    },
                }
            },
            "/api/v1/proposals": {
                "get": {
                    "summary": "Warning proposals, newest first",
                    "parameters": [
                        {
                            "name": "status",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(PROPOSAL_STATUSES), "default": "open"},
                        },
                        {
                            "name": "hazard",
                            "in": "query",
                            "schema": {"type": "string", "enum": list(HAZARDS)},
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "Proposals",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "400": problem,
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
            **WARNINGS_OPENAPI_PATHS,
            **ALERTS_OPENAPI_PATHS,
            **AUTH_OPENAPI_PATHS,
            **CONSOLE_OPENAPI_PATHS,
        },
        "components": {
            "securitySchemes": OPENAPI_SECURITY_SCHEMES,
            "parameters": {
                "lang": {
                    "name": "lang",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": list(LANGUAGES), "default": "zh"},
                    "description": "Language of labels: Chinese (with English subtitles) or English",
                }
            },
            "schemas": {
                "Problem": {
                    "type": "object",
                    "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": {"type": "string", "format": "uri-reference"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "instance": {"type": "string"},
                    },
                },
                "Readiness": {
                    "type": "object",
                    "required": ["status", "failed", "checks"],
                    "properties": {
                        "status": {"enum": ["ok", "unavailable"]},
                        "failed": {"type": "array", "items": {"type": "string"}},
                        "checks": {
                            "type": "object",
                            "additionalProperties": {
                                "type": "object",
                                "properties": {"ok": {"type": "boolean"}, "detail": {"type": "string"}},
                            },
                        },
                    },
                },
            },
            "responses": {
                "Problem": {
                    "description": "Problem details (RFC 9457)",
                    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
            },
        },
    }
