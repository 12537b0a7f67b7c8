"""The containment tree of a region's assessment units (city > district > town), from each unit's ``parent``.

Pure functions over `UnitRecord`s (or a mapping of them by code), shared by the first page, the console, the
public read side and the warning store, so "inside", "around" and "in tree order" mean the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping

from risk_zoning.store import UnitRecord

_ADMIN_CODE = re.compile(r"[0-9]{6}|[0-9]{9}|[0-9]{12}")


def geocode(code: str) -> str | None:
    """The 12-digit geocode of a 6-digit (county), 9-digit (town) or 12-digit admin code; None for anything
    else. Callers say in their own words why a code is refused.

    >>> geocode("150302"), geocode("150304011"), geocode("150302000000"), geocode("15030")
    ('150302000000', '150304011000', '150302000000', None)
    """
    if not isinstance(code, str) or not _ADMIN_CODE.fullmatch(code):
        return None
    return code.ljust(12, "0")


def tree_order(units: Iterable[UnitRecord]) -> list[UnitRecord]:
    """Each unit followed by its children, depth first, siblings by code (city, district, its towns, ...).

    A unit whose parent is not among `units` is a root, so a partial list still comes out whole.
    """
    units = list(units)
    codes = {u.code for u in units}
    children: dict[str | None, list[UnitRecord]] = {}
    for u in units:
        children.setdefault(u.parent if u.parent in codes else None, []).append(u)
    ordered: list[UnitRecord] = []

    def visit(parent: str | None) -> None:
        for child in sorted(children.get(parent, []), key=lambda u: u.code):
            ordered.append(child)
            visit(child.code)

    visit(None)
    return ordered


def ancestors(code: str, units: Mapping[str, UnitRecord]) -> list[str]:
    """The units `code` lies in, nearest first, by the parent chain: a town's district, then the city.

    An unknown code has none. A parent that is not in `units` is listed but ends the chain (its own parent is
    not known); a chain that comes back on itself stops there rather than looping.
    """
    out = [code]
    parent = units[code].parent if code in units else None
    while parent is not None and parent not in out:
        out.append(parent)
        parent = units[parent].parent if parent in units else None
    return out[1:]


def geocode_ancestors(code: str) -> list[str]:
    """The units a 12-digit geocode lies in by its digits alone, nearest first: its county (first six digits)
    and its prefecture-level city (first four), padded with zeros; for codes outside the unit tree.

    >>> geocode_ancestors("150302001000")
    ['150302000000', '150300000000']
    """
    out: list[str] = []
    for keep in (6, 4):
        candidate = code[:keep].ljust(12, "0")
        if candidate != code and candidate not in out:
            out.append(candidate)
    return out


def same_or_nested(a: str, b: str, units: Mapping[str, UnitRecord]) -> bool:
    """Whether two units share ground: the same unit, or one inside the other (a town and its city do; two
    districts do not)."""
    return a == b or a in ancestors(b, units) or b in ancestors(a, units)


def inside_any(code: str, codes: Collection[str], units: Mapping[str, UnitRecord]) -> bool:
    """Whether `code` lies strictly inside one of `codes` (a town inside a listed district or city)."""
    return any(a in codes for a in ancestors(code, units))
