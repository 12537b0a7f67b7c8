"""Reading a TOML configuration file with every failure as one line naming the file."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any


def read_toml(path: Path, error: Callable[[Path, str], Exception]) -> dict[str, Any]:
    """The parsed file; a missing, unreadable, non-UTF-8 or malformed file raises `error(path, problem)`."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError as e:
        raise error(path, "no such file") from e
    except UnicodeDecodeError as e:
        raise error(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise error(path, e.strerror or str(e)) from e
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise error(path, f"malformed TOML: {' '.join(str(e).split())}") from e
