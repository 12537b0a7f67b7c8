"""The audit log's hash chain: canonical bytes, chaining, and verification that finds every tampering."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from warnings_svc.lifecycle.audit import GENESIS, AuditEntry, AuditError, canonical_bytes, chain, verify

KEY = b"kept-outside-the-database"
T0 = datetime(2017, 7, 9, 8, tzinfo=UTC)

offsets = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))
instants = st.datetimes(
    min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=st.just(UTC)
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
states = st.none() | st.dictionaries(st.text(max_size=6), json_values, max_size=4)
texts = st.text(min_size=1, max_size=12)
entry_inputs = st.fixed_dictionaries(
    {"at": instants, "actor": texts, "action": texts, "subject": texts, "before": states, "after": states}
)
chains = st.lists(entry_inputs, min_size=1, max_size=6)


def build(inputs: list[dict[str, Any]], key: bytes | None = None) -> list[AuditEntry]:
    """A chain of entries made from ``inputs`` in order."""
    entries: list[AuditEntry] = []
    for fields in inputs:
        entries.append(chain(entries[-1] if entries else None, **fields, key=key))
    return entries


def canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def reversed_order(value: Any) -> Any:
    """The same JSON value with every dict's keys inserted in reverse order."""
    if isinstance(value, dict):
        return {k: reversed_order(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_order(v) for v in value]
    return value


def fields_of(entry: AuditEntry) -> dict[str, Any]:
    return {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry) if f.name != "hash"}


# ---------------------------------------------------------------------------------------------- canonical bytes


@settings(max_examples=150, deadline=None)
@given(inputs=entry_inputs, seq=st.integers(1, 10**6), zone=offsets)
def test_canonical_bytes_are_the_same_for_any_dict_order_and_any_time_zone_of_the_same_instant(
    inputs: dict[str, Any], seq: int, zone: timezone
) -> None:
    fields = {**inputs, "seq": seq, "prev_hash": GENESIS}
    other = {k: reversed_order(v) for k, v in reversed(list(fields.items()))} | {
        "at": inputs["at"].astimezone(zone)
    }
    assert canonical_bytes(**fields) == canonical_bytes(**other)


def test_canonical_bytes_are_compact_sorted_utf8_json_with_utc_microsecond_times() -> None:
    got = canonical_bytes(
        seq=1,
        at=datetime(2017, 7, 9, 16, tzinfo=timezone(timedelta(hours=8))),
        actor="李华",
        action="approve",
        subject="warning:42",
        before={"b": 1, "a": [datetime(2017, 7, 9, 8, 30, tzinfo=UTC)]},
        after=None,
        prev_hash=GENESIS,
    )
    assert (
        got
        == (
            '{"action":"approve","actor":"李华","after":null,"at":"2017-07-09T08:00:00.000000+00:00",'
            '"before":{"a":["2017-07-09T08:30:00.000000+00:00"],"b":1},'
            f'"prev_hash":"{GENESIS}","seq":1,"subject":"warning:42"}}'
        ).encode()
    )


@pytest.mark.parametrize(
    ("before", "at"),
    [
        ({"x": math.nan}, T0),
        ({"x": math.inf}, T0),
        ({1: "not a string key"}, T0),
        ({"x": {1, 2}}, T0),
        ({"x": datetime(2017, 7, 9)}, T0),
        (None, datetime(2017, 7, 9)),
    ],
    ids=["nan", "infinity", "int key", "set", "naive datetime inside", "naive at"],
)
def test_values_without_one_canonical_json_form_are_refused(before: Any, at: datetime) -> None:
    with pytest.raises(AuditError):
        chain(None, at=at, actor="li", action="approve", subject="warning:42", before=before, after=None)


# ---------------------------------------------------------------------------------------------- chaining


def test_the_first_entry_has_seq_1_and_a_zero_prev_hash_and_the_next_links_to_it() -> None:
    first = chain(
        None, at=T0, actor="wang", action="create", subject="warning:42", before=None, after={"v": 1}
    )
    second = chain(
        first, at=T0, actor="li", action="approve", subject="warning:42", before={"v": 1}, after=None
    )
    assert (first.seq, first.prev_hash, second.seq, second.prev_hash) == (1, GENESIS, 2, first.hash)
    assert len(first.hash) == 64 and int(first.hash, 16) >= 0


def test_an_entry_keeps_a_copy_of_what_was_hashed_with_times_as_strings() -> None:
    before = {"expires": T0, "areas": ("a", "b")}
    entry = chain(None, at=T0, actor="wang", action="edit", subject="warning:42", before=before, after=None)
    before["expires"] = T0 + timedelta(hours=1)
    assert entry.before == {"expires": "2017-07-09T08:00:00.000000+00:00", "areas": ["a", "b"]}
    assert verify([entry]).ok


@settings(max_examples=60, deadline=None)
@given(inputs=chains)
def test_an_untouched_chain_verifies_also_after_a_json_round_trip(inputs: list[dict[str, Any]]) -> None:
    entries = build(inputs)
    result = verify(entries, head=entries[-1].hash)
    assert (result.ok, result.count, result.head, result.broken_seq) == (
        True,
        len(entries),
        entries[-1].hash,
        None,
    )
    stored = [
        dataclasses.replace(
            e,
            at=datetime.fromisoformat(e.at.isoformat()),
            before=json.loads(json.dumps(e.before)),
            after=json.loads(json.dumps(e.after)),
        )
        for e in entries
    ]
    assert verify(stored).ok


def test_an_empty_log_verifies_with_the_zero_head() -> None:
    result = verify([])
    assert (result.ok, result.count, result.head) == (True, 0, GENESIS)
    assert str(result) == f"ok: 0 entries, head {GENESIS}"


# ---------------------------------------------------------------------------------------------- tampering


def changed(field: str, value: Any, data: st.DataObject) -> Any:
    """A value of ``field`` that is different in canonical form from ``value``."""
    if field == "seq":
        return data.draw(st.integers(-5, 10**6).filter(lambda v: v != value))
    if field == "at":
        return value + timedelta(microseconds=data.draw(st.integers(-(10**9), 10**9).filter(bool)))
    if field in ("prev_hash", "hash"):
        return data.draw(st.text("0123456789abcdef", min_size=64, max_size=64).filter(lambda v: v != value))
    if field in ("before", "after"):
        return data.draw(states.filter(lambda v: canon(v) != canon(value)))
    return data.draw(texts.filter(lambda v: v != value))


@settings(max_examples=300, deadline=None)
@given(inputs=chains, data=st.data())
def test_any_edit_of_any_field_of_any_entry_is_found_at_that_entry(
    inputs: list[dict[str, Any]], data: st.DataObject
) -> None:
    entries = build(inputs)
    i = data.draw(st.integers(0, len(entries) - 1), label="entry")
    field = data.draw(st.sampled_from([f.name for f in dataclasses.fields(AuditEntry)]), label="field")
    entries[i] = dataclasses.replace(entries[i], **{field: changed(field, getattr(entries[i], field), data)})
    result = verify(entries)
    assert not result.ok and result.broken_seq == i + 1 and result.count == i
    assert "\n" not in str(result)


@settings(max_examples=100, deadline=None)
@given(inputs=chains, data=st.data())
def test_deleting_any_entry_is_found_and_the_last_one_with_a_head_kept_elsewhere(
    inputs: list[dict[str, Any]], data: st.DataObject
) -> None:
    entries = build(inputs)
    head = entries[-1].hash
    i = data.draw(st.integers(0, len(entries) - 1), label="deleted")
    del entries[i]
    assert not verify(entries, head=head).ok
    if i < len(entries):  # not the last: found without the head too, where it was
        result = verify(entries)
        assert not result.ok and result.broken_seq == i + 1
        assert "missing" in result.reason


@settings(max_examples=100, deadline=None)
@given(inputs=chains.filter(lambda c: len(c) >= 2), data=st.data())
def test_swapping_or_duplicating_entries_is_found_at_the_first_one_out_of_place(
    inputs: list[dict[str, Any]], data: st.DataObject
) -> None:
    entries = build(inputs)
    i, j = sorted(data.draw(st.lists(st.integers(0, len(entries) - 1), min_size=2, max_size=2, unique=True)))
    swapped = list(entries)
    swapped[i], swapped[j] = swapped[j], swapped[i]
    result = verify(swapped)
    assert not result.ok and result.broken_seq == i + 1
    duplicated = [*entries[: j + 1], entries[i], *entries[j + 1 :]]
    result = verify(duplicated)
    assert not result.ok and result.broken_seq == j + 2


def test_mutating_an_entrys_dict_in_place_is_found() -> None:
    entries = build(
        [dict(at=T0, actor="li", action="approve", subject="warning:42", before={"v": 1}, after=None)]
    )
    assert entries[0].before is not None
    entries[0].before["v"] = 2
    assert verify(entries).reason == "content does not match its hash (edited, or wrong key)"


# ---------------------------------------------------------------------------------------------- rewriting


@settings(max_examples=100, deadline=None)
@given(inputs=chains.filter(lambda c: len(c) >= 2), data=st.data())
def test_an_entry_rehashed_on_its_own_breaks_the_link_of_the_next_one(
    inputs: list[dict[str, Any]], data: st.DataObject
) -> None:
    entries = build(inputs)
    i = data.draw(st.integers(0, len(entries) - 2))
    forged = {**fields_of(entries[i]), "actor": entries[i].actor + "!"}
    entries[i] = AuditEntry(**forged, hash=hashlib.sha256(canonical_bytes(**forged)).hexdigest())
    result = verify(entries)
    assert not result.ok and result.broken_seq == i + 2 and result.count == i + 1
    assert result.reason == "prev_hash does not match the previous entry (replaced or rewritten)"


def rewrite(entries: list[AuditEntry], i: int, key: bytes | None) -> list[AuditEntry]:
    """What someone who can write the store does: change entry i and recompute every hash from there."""
    out = entries[:i]
    for n, e in enumerate(entries[i:]):
        fields = fields_of(e)
        del fields["seq"], fields["prev_hash"]
        if n == 0:
            fields["actor"] = "somebody else"
        out.append(chain(out[-1] if out else None, **fields, key=key))
    return out


@settings(max_examples=60, deadline=None)
@given(inputs=chains, data=st.data())
def test_a_rewrite_that_recomputes_the_chain_needs_the_key_or_is_caught_by_the_kept_head(
    inputs: list[dict[str, Any]], data: st.DataObject
) -> None:
    keyed = build(inputs, key=KEY)
    assert verify(keyed, KEY).ok and not verify(keyed).ok
    i = data.draw(st.integers(0, len(keyed) - 1))
    assume(keyed[i].actor != "somebody else")
    # without the key the rewriter's chain fails where it starts
    result = verify(rewrite(keyed, i, key=b"a guess"), KEY)
    assert not result.ok and result.broken_seq == i + 1
    # a plain chain rewritten in full verifies on its own: only the head kept elsewhere catches it
    plain = build(inputs)
    rewritten = rewrite(plain, i, key=None)
    assert verify(rewritten).ok
    result = verify(rewritten, head=plain[-1].hash)
    assert not result.ok and "rewritten" in result.reason
