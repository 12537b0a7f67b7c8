"""The CAP polygon check the warning store runs on polygons it is given (`documents.cap.check_polygons`)."""

from __future__ import annotations

import pytest

from warnings_svc.documents import cap

SQUARE = "39.4,106.6 39.4,106.7 39.5,106.7 39.5,106.6 39.4,106.6"


def test_a_polygon_within_the_point_budget_passes_and_one_over_it_is_refused_naming_both_counts() -> None:
    cap.check_polygons([SQUARE], max_points=5)
    with pytest.raises(cap.CapError, match="polygon 1 has 5 points, at most 4 allowed"):
        cap.check_polygons([SQUARE], max_points=4)


def test_a_polygon_that_is_not_text_is_refused_rather_than_crashing() -> None:
    with pytest.raises(cap.CapError, match="not a string"):
        cap.check_polygons([42])  # type: ignore[list-item]
