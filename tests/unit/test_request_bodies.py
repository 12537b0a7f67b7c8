"""Reading request bodies: how deep a JSON text nests is counted without parsing it, and a body nested past
the limit is a 400 problem naming the limit, never a RecursionError."""

from __future__ import annotations

import json

import pytest

from warnings_svc.web.operations import MAX_JSON_DEPTH, json_depth, loads_json
from warnings_svc.web.problems import ApiProblem


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"3", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": 2}], "c": {}}', 3),
        (b'{"a": "[[[{{{"}', 1),  # brackets in a string are text
        (b'["\\"[[", "\\\\", [2]]', 2),  # so are they after an escaped quote; a string may end in a backslash
        ('{"乌海": ["一", ["二"]]}'.encode(), 3),
        (b"[" * 5000 + b"]" * 5000, 5000),
    ],
)
def test_the_depth_of_a_json_text_is_counted_without_parsing_it(text: bytes, depth: int) -> None:
    assert json_depth(text) == depth


def test_the_depth_count_agrees_with_the_parsed_document() -> None:
    document = {"areas": ["150302001000"], "geometry": {"coordinates": [[[[106.8, 39.6], [106.9, 39.7]]]]}}
    assert json_depth(json.dumps(document).encode()) == 6


@pytest.mark.parametrize("opening", [b"[", b'{"a":'])
def test_json_nested_past_the_limit_is_a_400_problem_naming_the_limit(opening: bytes) -> None:
    closing = b"]" if opening == b"[" else b"}"
    with pytest.raises(ApiProblem) as refused:
        loads_json(opening * 5000 + b"1" + closing * 5000)
    assert refused.value.problem.status == 400 and refused.value.problem.code == "too_deep"
    assert refused.value.field == "body" and f"the {MAX_JSON_DEPTH} allowed" in str(refused.value)


def test_json_at_the_limit_is_read() -> None:
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert json_depth(at_limit) == MAX_JSON_DEPTH
    assert loads_json(at_limit) is not None


def test_a_body_that_is_no_json_is_a_400_problem() -> None:
    with pytest.raises(ApiProblem) as refused:
        loads_json(b'{"a": ')
    assert refused.value.problem.code == "invalid" and refused.value.field == "body"
