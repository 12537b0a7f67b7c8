"""Content negotiation by ``Accept`` (RFC 9110): q-values honoured, more specific media ranges first."""

from __future__ import annotations

from collections.abc import Sequence

GEOJSON = "application/geo+json"
JSON = "application/json"
ATOM = "application/atom+xml"
CAP = "application/cap+xml"


def _media_ranges(accept: str) -> list[tuple[str, str, float]]:
    ranges = []
    for item in accept.split(","):
        fields = [f.strip() for f in item.split(";")]
        kind = fields[0].lower()
        if "/" not in kind:
            continue
        main, sub = (p.strip() for p in kind.split("/", 1))
        q = 1.0
        for param in fields[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = -1.0
        if 0.0 <= q <= 1.0:
            ranges.append((main, sub, q))
    return ranges


def negotiate(accept: str | None, offers: Sequence[str]) -> str:
    """The offer the client prefers by ``Accept`` (RFC 9110 12.5.1), the first offer on a tie, when there is
    no ``Accept`` or when nothing offered is acceptable.

    >>> negotiate("application/atom+xml;q=0.9, application/geo+json;q=0.5", (GEOJSON, ATOM))
    'application/atom+xml'
    >>> negotiate("text/html", (GEOJSON, ATOM))
    'application/geo+json'
    """
    if not accept or not accept.strip():
        return offers[0]
    ranges = _media_ranges(accept)
    best, best_q = offers[0], 0.0
    for offer in offers:
        main, sub = offer.split("/", 1)
        # the most specific range that matches decides the offer's quality
        matching = [
            (2 if (m, s) == (main, sub) else 1 if m == main and s == "*" else 0, q)
            for m, s, q in ranges
            if (m, s) in ((main, sub), (main, "*"), ("*", "*"))
        ]
        if matching:
            q = max(matching)[1]
            if q > best_q:
                best, best_q = offer, q
    return best
