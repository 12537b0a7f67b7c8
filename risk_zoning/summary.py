"""The summary of a risk database version as plain data (the JSON of `risk-zoning summary --json`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from risk_zoning import BEIJING, GRADE_NAMES_EN, GRADE_NAMES_ZH, HAZARDS
from risk_zoning.store import RiskDatabase

GRADES = range(1, 6)


def summarise(db: RiskDatabase) -> dict[str, Any]:
    """Units with population and boundary status, the population total, and per hazard the grade counts."""
    units = sorted(db.units, key=lambda u: (("city", "district", "town").index(u.level), u.code))
    hazards: dict[str, Any] = {}
    for hazard in HAZARDS:
        if hazard not in db.assessments:
            continue
        risk = db.unit_risk.get(hazard, {})
        entry: dict[str, Any] = {
            "units_by_grade": {
                level: {
                    str(g): sum(1 for u in units if u.level == level and risk[u.code][1] == g) for g in GRADES
                }
                for level in ("district", "town")
            },
            "breaks": db.assessments[hazard]["breaks"],
            "weights": db.assessments[hazard]["weights"],
            "method": db.assessments[hazard]["method"],
        }
        grade_name = f"grade_{hazard}"
        if grade_name in db.arrays:
            grades = db.arrays[grade_name].data
            pop = db.population
            entry["cells_by_grade"] = {str(g): int(np.count_nonzero(grades == g)) for g in GRADES}
            entry["population_by_grade"] = {str(g): round(float(pop[grades == g].sum())) for g in GRADES}
        hazards[hazard] = entry
    return {
        "region": db.region,
        "region_code": db.region_code,
        "name": db.region_name,
        "version": db.version_id,
        "built_at": db.created_at.astimezone(BEIJING).isoformat(),
        "grid": db.grid.to_dict(),
        "grades": {str(g): {"zh": GRADE_NAMES_ZH[g], "en": GRADE_NAMES_EN[g]} for g in GRADES},
        "population_total": sum(u.population for u in units if u.level == "district"),
        "population_source": db.provenance.get("population", {}).get("source"),
        "units": [
            {
                "code": u.code,
                "name": u.name,
                "name_en": u.name_en,
                "level": u.level,
                "parent": u.parent,
                "population": u.population,
                "area_km2": round(u.area_km2, 1),
                "boundary": u.boundary,
                "code_status": u.code_status,
                "risk": {
                    h: {"index": round(db.unit_risk[h][u.code][0], 4), "grade": db.unit_risk[h][u.code][1]}
                    for h in HAZARDS
                    if u.code in db.unit_risk.get(h, {})
                },
            }
            for u in units
        ],
        "hazards": hazards,
        "provenance": db.provenance,
    }
