"""The hazard risk database: assessment units, gridded exposure, vulnerability and hazard layers, risk grades."""

from datetime import timedelta, timezone

# Times are stored in UTC and shown in Beijing time: UTC+08:00 all year (China keeps no daylight saving time;
# a fixed offset, not the Asia/Shanghai zone, whose history has DST in 1986-1991 and local mean time before 1901).
BEIJING = timezone(timedelta(hours=8), "UTC+8")

HAZARDS: tuple[str, ...] = ("heat", "rainstorm", "frost", "sandstorm")

# Five risk grades, 1 = lowest. Index with the grade number.
GRADE_NAMES_ZH: tuple[str, ...] = ("", "低", "较低", "中", "较高", "高")
GRADE_NAMES_EN: tuple[str, ...] = ("", "low", "fairly low", "medium", "fairly high", "high")

# Colours of grades 1..5 on maps and pages: green, light green, yellow, orange, red (provincial risk maps).
GRADE_COLOURS: tuple[str, ...] = ("#1a9850", "#a6d96a", "#fee08b", "#fc8d59", "#d73027")
HAZARD_NAMES: dict[str, dict[str, str]] = {
    "zh": {"heat": "高温", "rainstorm": "暴雨", "frost": "霜冻", "sandstorm": "沙尘暴"},
    "en": {"heat": "Heat", "rainstorm": "Rainstorm", "frost": "Frost", "sandstorm": "Sandstorm"},
}
