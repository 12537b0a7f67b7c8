"""The service's one `Settings`: an optional TOML file, overridden by the environment, validated once."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from risk_zoning.db import default_data_dir
from risk_zoning.tomlfile import read_toml

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# Environment variable -> setting. The environment wins over the file.
ENVIRONMENT: dict[str, str] = {
    "DATABASE_URL": "database_url",
    "WARNINGS_SVC_DATA_DIR": "data_dir",
    "WARNINGS_SVC_HOST": "host",
    "WARNINGS_SVC_PORT": "port",
}


class SettingsError(Exception):
    """Unusable configuration; `str()` is one line naming the source (file or variable) and the problem."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}")


class ScoringSettings(BaseModel):
    """How forecast runs become proposals (table `[scoring]`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # A TOML file overriding any subset of the national criteria (warnings_svc/config/criteria.toml).
    criteria_file: Path | None = None
    # The admin level a warning's areas are named at: district by default, since town outlines are approximate.
    area_level: Literal["city", "district", "town"] = "district"
    min_probability: Annotated[float, Field(gt=0, le=1)] = 0.3
    min_fraction_exposed: Annotated[float, Field(ge=0, le=1)] = 0.05
    min_exposed_population: Annotated[int, Field(ge=0)] = 500
    max_vertices: Annotated[int, Field(ge=4, le=10_000)] = 100
    min_polygon_area_km2: Annotated[float, Field(ge=0)] = 1.0
    expiry_margin_h: Annotated[float, Field(ge=0, le=72)] = 0.0
    workers: Annotated[int, Field(ge=1, le=32)] = 1
    # A Dask scheduler ("tcp://host:8786") to score grids tile by tile on many hosts; None scores in-process.
    dask_scheduler: Annotated[str, Field(pattern=r"^(tcp|tls|inproc)://\S+$")] | None = None
    tile: Annotated[int, Field(ge=16, le=4096)] = 256  # cells per tile side on the Dask path
    inbox_poll_seconds: Annotated[float, Field(gt=0, le=3600)] = 5.0


class Settings(BaseModel):
    """Everything the service reads from its configuration. Unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # None: start an embedded PostgreSQL in `data_dir/postgres`.
    database_url: Annotated[str, Field(strict=True, min_length=1)] | None = None
    data_dir: Path = Field(default_factory=default_data_dir)
    host: Annotated[str, Field(strict=True, min_length=1)] = "127.0.0.1"
    port: Annotated[int, Field(strict=True, ge=1, le=65535)] = 8080
    region: Annotated[str, Field(strict=True, pattern=r"^[a-z][a-z0-9_-]*$")] = "wuhai"
    log_level: LogLevel = "INFO"
    scoring: ScoringSettings = Field(default_factory=ScoringSettings)

    @field_validator("data_dir", mode="after")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


def load_settings(
    path: str | Path | None, env: Mapping[str, str], overrides: Mapping[str, Any] | None = None
) -> Settings:
    """Settings from the TOML file at `path` (optional), then `env` (e.g. `os.environ`), then `overrides`.

    Later sources win. `overrides` are command-line options, keyed by setting name. A relative `data_dir` in
    the file is taken relative to the file's folder, so a config file and its data can move together. Every
    problem raises `SettingsError` naming the file, variable or option, and the field.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if path is not None:
        path = Path(path)
        for key, value in read_toml(path, SettingsError).items():
            if key not in Settings.model_fields:
                raise SettingsError(path, f"unknown key '{key}'{_did_you_mean(key)}")
            if key == "data_dir" and isinstance(value, str) and not Path(value).expanduser().is_absolute():
                value = str(path.parent / value)
            if key == "scoring" and isinstance(value, dict) and isinstance(value.get("criteria_file"), str):
                criteria = Path(value["criteria_file"]).expanduser()
                value = {
                    **value,
                    "criteria_file": str(criteria if criteria.is_absolute() else path.parent / criteria),
                }
            values[key] = value
            sources[key] = str(path)
    for variable, key in ENVIRONMENT.items():
        raw = env.get(variable)
        if raw is None or raw == "":
            continue
        values[key] = _from_environment(variable, key, raw)
        sources[key] = f"environment variable {variable}"
    for key, value in (overrides or {}).items():
        values[key] = value
        sources[key] = f"option --{key.replace('_', '-')}"
    try:
        return Settings.model_validate(values)
    except ValidationError as e:
        first = e.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        top = str(first["loc"][0]) if first["loc"] else ""
        source = sources.get(top, str(path) if path is not None else "settings")
        problem = first["msg"]
        if "input" in first and key != "database_url":  # a URL may carry a password: never echo it
            problem += f" (got {_shorten(repr(first['input']))})"
        raise SettingsError(source, f"{key}: {problem}" if key else problem) from e


def _from_environment(variable: str, key: str, raw: str) -> Any:
    """Environment values are text; convert the few that are not, naming the variable when that fails."""
    if key == "port":
        try:
            return int(raw)
        except ValueError as e:
            raise SettingsError(f"environment variable {variable}", f"port: not an integer ({raw!r})") from e
    return raw


def _shorten(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, Settings.model_fields, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f"; known keys: {', '.join(Settings.model_fields)}"
