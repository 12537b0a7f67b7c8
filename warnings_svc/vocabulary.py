"""The words every stage shares: warning levels, hazards' levels and event codes, message types and statuses.

Hazards, their names and the Beijing time zone belong to the risk database (`risk_zoning`) and are imported
from there; this module holds what only the service speaks of.
"""

from __future__ import annotations

from typing import Literal

MsgType = Literal["Alert", "Update", "Cancel"]
Status = Literal["Actual", "Exercise", "Test"]

# Warning levels, weakest first, with the colours of the national signal icons and their names.
LEVELS: tuple[str, ...] = ("blue", "yellow", "orange", "red")
LEVEL_COLOURS: dict[str, str] = {
    "blue": "#1f6fd1",
    "yellow": "#f2c200",
    "orange": "#f47a00",
    "red": "#d7191c",
}
LEVEL_NAMES: dict[str, tuple[str, str]] = {
    "blue": ("蓝色", "blue"),
    "yellow": ("黄色", "yellow"),
    "orange": ("橙色", "orange"),
    "red": ("红色", "red"),
}

HAZARD_EVENT_CODES: dict[str, str] = {
    "heat": "11B09",
    "rainstorm": "11B03",
    "frost": "11B16",
    "sandstorm": "11B07",
}
HAZARD_LEVELS: dict[str, tuple[str, ...]] = {
    "heat": ("yellow", "orange", "red"),
    "rainstorm": ("blue", "yellow", "orange", "red"),
    "frost": ("blue", "yellow", "orange"),
    "sandstorm": ("yellow", "orange", "red"),
}
