"""The hazard risk database: assessment units, gridded exposure, vulnerability and hazard layers, risk grades."""

HAZARDS: tuple[str, ...] = ("heat", "rainstorm", "frost", "sandstorm")

# Five risk grades, 1 = lowest. Index with the grade number.
GRADE_NAMES_ZH: tuple[str, ...] = ("", "低", "较低", "中", "较高", "高")
GRADE_NAMES_EN: tuple[str, ...] = ("", "low", "fairly low", "medium", "fairly high", "high")
