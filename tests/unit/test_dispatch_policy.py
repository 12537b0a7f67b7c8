"""Dispatch policy: full-jitter backoff, the reserving token bucket, the circuit breaker and level priority."""

from __future__ import annotations

import doctest
import itertools
import math
import random
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import warnings_svc.dissemination.policy as dispatch_policy
from channels.base import FailureKind, SendOutcome, SendResult
from warnings_svc.dissemination.policy import (
    LINK_FAILURES,
    PRIORITY,
    CircuitBreaker,
    CircuitState,
    TokenBucket,
    backoff_delay,
    endpoint_failed,
    priority_of,
)
from warnings_svc.vocabulary import LEVELS

# Slack for float round-off in the rate sums; far below anything a real bug would produce.
REL_TOL = 1e-9


def test_doctests() -> None:
    assert doctest.testmod(dispatch_policy).failed == 0


# --- backoff_delay -------------------------------------------------------------------------------------


def ceiling_of(attempt: int, base_s: float, cap_s: float) -> float:
    """The upper bound of the jitter, written independently of the module (base_s <= 10 keeps it finite)."""
    return cap_s if attempt > 1000 else min(cap_s, base_s * 2.0 ** (attempt - 1))


@given(
    attempt=st.integers(min_value=1, max_value=20_000),
    base_s=st.floats(min_value=1e-3, max_value=10.0),
    cap_factor=st.floats(min_value=1.0, max_value=1e4),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_backoff_stays_within_full_jitter_bounds(
    attempt: int, base_s: float, cap_factor: float, seed: int
) -> None:
    cap_s = base_s * cap_factor
    delay = backoff_delay(attempt, base_s=base_s, cap_s=cap_s, rng=random.Random(seed))
    assert 0.0 <= delay <= ceiling_of(attempt, base_s, cap_s)


@pytest.mark.parametrize("attempt", [64, 1075, 10_000, 10**9, 10**30])
def test_backoff_does_not_overflow_for_huge_attempts(attempt: int) -> None:
    rng = random.Random(1)
    assert 0.0 <= backoff_delay(attempt, base_s=0.5, cap_s=30.0, rng=rng) <= 30.0
    # Extreme but finite base and cap: base * 2**(attempt - 1) is far beyond a float here.
    assert 0.0 <= backoff_delay(attempt, base_s=1e-300, cap_s=1e300, rng=rng) <= 1e300
    assert 0.0 <= backoff_delay(attempt, base_s=1e300, cap_s=1.7e308, rng=rng) <= 1.7e308


def test_backoff_is_deterministic_for_a_seeded_rng() -> None:
    first = [backoff_delay(a, base_s=0.2, cap_s=10.0, rng=random.Random(42)) for a in range(1, 10)]
    again = [backoff_delay(a, base_s=0.2, cap_s=10.0, rng=random.Random(42)) for a in range(1, 10)]
    assert first == again


def test_backoff_mean_doubles_with_attempt_until_the_cap() -> None:
    rng = random.Random(2024)
    n = 4000
    means = [
        statistics.fmean(backoff_delay(a, base_s=1.0, cap_s=16.0, rng=rng) for _ in range(n))
        for a in range(1, 9)
    ]
    ceilings = [1, 2, 4, 8, 16, 16, 16, 16]
    for mean, ceiling in zip(means, ceilings, strict=True):
        # Full jitter is uniform on [0, ceiling]: the mean is half the ceiling (4000 samples: within ~1%).
        assert mean == pytest.approx(ceiling / 2, rel=0.05)
    assert means[0] < means[1] < means[2] < means[3] < means[4]
    assert max(means[4:]) / min(means[4:]) < 1.1


def test_backoff_jitter_spans_the_whole_interval() -> None:
    # Full jitter, not "equal jitter" (ceiling/2 + uniform(0, ceiling/2)): delays come close to 0 too.
    rng = random.Random(5)
    delays = [backoff_delay(4, base_s=1.0, cap_s=100.0, rng=rng) for _ in range(1000)]
    assert min(delays) < 0.05 * 8
    assert max(delays) > 0.95 * 8
    assert len(set(delays)) == len(delays)


@pytest.mark.parametrize(
    ("attempt", "base_s", "cap_s", "message"),
    [
        (0, 1.0, 10.0, "attempt"),
        (-3, 1.0, 10.0, "attempt"),
        (1, 0.0, 10.0, "base_s"),
        (1, -1.0, 10.0, "base_s"),
        (1, math.nan, 10.0, "base_s"),
        (1, math.inf, math.inf, "base_s"),
        (1, 2.0, 1.0, "cap_s"),
        (1, 1.0, math.nan, "cap_s"),
        (1, 1.0, math.inf, "cap_s"),
    ],
)
def test_backoff_rejects_bad_arguments(attempt: int, base_s: float, cap_s: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        backoff_delay(attempt, base_s=base_s, cap_s=cap_s, rng=random.Random(0))


def test_backoff_accepts_cap_equal_to_base() -> None:
    assert 0.0 <= backoff_delay(7, base_s=3.0, cap_s=3.0, rng=random.Random(0)) <= 3.0


# --- TokenBucket ---------------------------------------------------------------------------------------


def test_bucket_starts_full_then_reserves_in_order() -> None:
    bucket = TokenBucket(rate_per_s=10.0, burst=3.0)
    assert bucket.available(now=100.0) == 3.0
    waits = [bucket.take(1, now=100.0) for _ in range(6)]
    assert waits == pytest.approx([0.0, 0.0, 0.0, 0.1, 0.2, 0.3])
    assert bucket.available(now=100.0) == pytest.approx(-3.0)
    assert bucket.available(now=100.3) == pytest.approx(0.0)


def test_bucket_refills_at_the_rate_up_to_the_burst() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=4.0)
    assert bucket.take(4, now=0.0) == 0.0
    assert bucket.available(now=0.5) == pytest.approx(1.0)
    assert bucket.take(1, now=0.5) == 0.0
    assert bucket.take(1, now=0.5) == pytest.approx(0.5)
    # A long idle spell refills to the burst and no further.
    assert bucket.available(now=1_000.0) == 4.0
    assert bucket.take(4, now=1_000.0) == 0.0
    assert bucket.take(1, now=1_000.0) == pytest.approx(0.5)


def test_bucket_available_does_not_change_the_bucket() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=2.0)
    bucket.take(2, now=0.0)
    for t in (0.5, 1.0, 3.0, 1.0):
        bucket.available(now=t)
    assert bucket.take(1, now=0.5) == pytest.approx(0.5)


def test_bucket_stale_now_refills_nothing() -> None:
    bucket = TokenBucket(rate_per_s=1.0, burst=1.0)
    assert bucket.take(1, now=10.0) == 0.0
    # A reading taken before the last take (another task's stale clock) must not mint tokens or fail.
    assert bucket.take(1, now=9.0) == pytest.approx(1.0)
    assert bucket.take(1, now=10.0) == pytest.approx(2.0)


def test_bucket_take_of_zero_reports_the_queue() -> None:
    bucket = TokenBucket(rate_per_s=4.0, burst=1.0)
    bucket.take(1, now=0.0)
    bucket.take(1, now=0.0)
    assert bucket.take(0, now=0.0) == pytest.approx(0.25)


def test_unlimited_bucket_never_waits() -> None:
    bucket = TokenBucket(rate_per_s=math.inf, burst=1.0)
    assert all(bucket.take(1, now=0.0) == 0.0 for _ in range(10_000))
    assert bucket.take(1_000, now=0.0) == 0.0
    assert bucket.available(now=0.0) == math.inf


@pytest.mark.parametrize(
    ("rate", "burst", "message"),
    [
        (0.0, 1.0, "rate_per_s"),
        (-1.0, 1.0, "rate_per_s"),
        (math.nan, 1.0, "rate_per_s"),
        (1.0, 0.5, "burst"),
        (1.0, 0.0, "burst"),
        (1.0, math.nan, "burst"),
        (1.0, math.inf, "burst"),
    ],
)
def test_bucket_rejects_bad_settings(rate: float, burst: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TokenBucket(rate_per_s=rate, burst=burst)


@pytest.mark.parametrize("n", [-1.0, math.nan, 5.5])
def test_bucket_rejects_bad_takes(n: float) -> None:
    with pytest.raises(ValueError, match="n must be"):
        TokenBucket(rate_per_s=1.0, burst=5.0).take(n, now=0.0)


takes = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=3.0),  # clock advance before the take
        st.floats(min_value=0.0, max_value=1.0),  # n as a fraction of the burst
        st.booleans(),  # whether this caller sleeps out its wait before the next take
    ),
    min_size=1,
    max_size=40,
)


@given(
    rate=st.floats(min_value=0.1, max_value=500.0),
    burst=st.floats(min_value=1.0, max_value=50.0),
    ops=takes,
)
def test_bucket_never_exceeds_rate_times_window_plus_burst(
    rate: float, burst: float, ops: list[tuple[float, float, bool]]
) -> None:
    bucket = TokenBucket(rate_per_s=rate, burst=burst)
    now = 0.0
    sends: list[tuple[float, float]] = []  # (send time, tokens)
    for gap, fraction, sleeps in ops:
        now += gap
        n = fraction * burst
        before = bucket.available(now)
        wait = bucket.take(n, now)
        assert wait >= 0.0
        # 0.0 when the tokens were there; otherwise a wait just long enough to pay the debt off.
        if before >= n + REL_TOL * burst:
            assert wait == 0.0
        elif before < n - REL_TOL * burst:
            assert wait > 0.0
        if wait > 0.0:
            assert bucket.available(now + wait) == pytest.approx(0.0, abs=REL_TOL * burst * 10)
        sends.append((now + wait, n))
        if sleeps:
            now += wait

    times = [t for t, _ in sends]
    scale = REL_TOL * (sum(n for _, n in sends) + rate * times[-1] + burst)
    # Served in the order they asked: a later take never goes out before an earlier one.
    assert all(later >= earlier - scale for earlier, later in itertools.pairwise(times))
    # Every window [times[i], times[j]] carries at most rate * (times[j] - times[i]) + burst tokens. With
    # P the prefix sums that is (P[j+1] - rate*times[j]) - (P[i] - rate*times[i]) <= burst, checked for all
    # i <= j at once by scanning from the right with the running maximum of the first term.
    prefix = [0.0, *itertools.accumulate(n for _, n in sends)]
    best_end = -math.inf
    for i in reversed(range(len(sends))):
        best_end = max(best_end, prefix[i + 1] - rate * times[i])
        assert best_end - (prefix[i] - rate * times[i]) <= burst + scale, i


# --- CircuitBreaker ------------------------------------------------------------------------------------


def opened_breaker(now: float = 0.0, **kwargs: float) -> CircuitBreaker:
    breaker = CircuitBreaker(**kwargs)  # type: ignore[arg-type]
    while breaker.state is CircuitState.closed:
        breaker.record_failure(now)
    return breaker


def test_breaker_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cool_down_s=5.0)
    breaker.record_failure(0.0)
    breaker.record_failure(0.1)
    breaker.record_success(0.2)  # the streak is broken
    breaker.record_failure(0.3)
    breaker.record_failure(0.4)
    assert breaker.state is CircuitState.closed
    assert breaker.allow(0.4)
    assert breaker.retry_in(0.4) == 0.0
    assert breaker.opened_count == 0
    breaker.record_failure(0.5)
    assert breaker.state is CircuitState.open
    assert breaker.opened_count == 1


def test_open_breaker_refuses_until_the_cool_down_passed() -> None:
    breaker = opened_breaker(now=10.0, failure_threshold=1, cool_down_s=5.0)
    for t in (10.0, 12.0, 14.999):
        assert not breaker.allow(t)
        assert breaker.state_at(t) is CircuitState.open
    assert breaker.retry_in(12.0) == pytest.approx(3.0)
    assert breaker.retry_in(15.0) == 0.0
    assert breaker.retry_in(99.0) == 0.0


def test_state_reads_do_not_change_the_breaker_nor_consume_probes() -> None:
    breaker = opened_breaker(now=0.0, failure_threshold=1, cool_down_s=5.0, half_open_probes=1)
    for _ in range(3):
        assert breaker.state is CircuitState.open
        assert breaker.state_at(6.0) is CircuitState.half_open
    assert breaker.state is CircuitState.open  # the property does not move on by itself
    assert breaker.allow(6.0)  # the one probe is still there
    assert breaker.state is CircuitState.half_open
    assert not breaker.allow(6.0)


def test_half_open_lets_exactly_the_probes_through() -> None:
    breaker = opened_breaker(now=0.0, failure_threshold=2, cool_down_s=1.0, half_open_probes=3)
    allowed = [breaker.allow(1.0 + i * 0.01) for i in range(6)]
    assert allowed == [True, True, True, False, False, False]
    assert breaker.state is CircuitState.half_open
    assert breaker.retry_in(2.0) == 0.0


def test_full_cycle_closed_open_half_open_closed() -> None:
    breaker = opened_breaker(now=0.0, failure_threshold=2, cool_down_s=5.0)
    assert breaker.state is CircuitState.open
    assert breaker.allow(5.0)
    assert breaker.state is CircuitState.half_open
    breaker.record_success(5.5)
    assert breaker.state is CircuitState.closed
    assert all(breaker.allow(5.6) for _ in range(10))
    # Closed afresh: it takes a full streak again to open.
    breaker.record_failure(6.0)
    assert breaker.state is CircuitState.closed
    breaker.record_failure(6.1)
    assert breaker.state is CircuitState.open
    assert breaker.opened_count == 2
    assert breaker.retry_in(6.1) == pytest.approx(5.0)  # the cool-down was reset by closing


def test_failed_probe_reopens_with_a_doubled_capped_cool_down() -> None:
    breaker = opened_breaker(now=0.0, failure_threshold=1, cool_down_s=5.0, max_cool_down_s=60.0)
    now = 0.0
    cool_downs = []
    for _ in range(7):
        now += breaker.retry_in(now)
        assert breaker.allow(now)
        breaker.record_failure(now)
        assert breaker.state is CircuitState.open
        cool_downs.append(breaker.retry_in(now))
    assert cool_downs == pytest.approx([10.0, 20.0, 40.0, 60.0, 60.0, 60.0, 60.0])
    assert breaker.opened_count == 8
    # A successful probe resets the cool-down to the initial one.
    now += breaker.retry_in(now)
    assert breaker.allow(now)
    breaker.record_success(now)
    breaker.record_failure(now)
    assert breaker.retry_in(now) == pytest.approx(5.0)


def test_results_reported_while_open_are_ignored() -> None:
    breaker = opened_breaker(now=0.0, failure_threshold=1, cool_down_s=5.0)
    # Late results of calls allowed before the breaker opened.
    breaker.record_failure(4.0)
    assert breaker.retry_in(4.0) == pytest.approx(1.0)
    assert breaker.opened_count == 1
    breaker.record_success(4.5)
    assert breaker.state is CircuitState.open
    assert not breaker.allow(4.5)


def test_breaker_defaults() -> None:
    breaker = CircuitBreaker()
    for _ in range(4):
        breaker.record_failure(0.0)
    assert breaker.state is CircuitState.closed
    breaker.record_failure(0.0)
    assert breaker.state is CircuitState.open
    assert breaker.retry_in(0.0) == 5.0


def test_circuit_state_values() -> None:
    assert [s.value for s in CircuitState] == ["closed", "open", "half_open"]
    assert CircuitState.half_open == "half_open"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"failure_threshold": 0}, "failure_threshold"),
        ({"cool_down_s": 0.0}, "cool_down_s"),
        ({"cool_down_s": -1.0}, "cool_down_s"),
        ({"cool_down_s": math.nan}, "cool_down_s"),
        ({"cool_down_s": 10.0, "max_cool_down_s": 5.0}, "max_cool_down_s"),
        ({"max_cool_down_s": math.nan}, "max_cool_down_s"),
        ({"half_open_probes": 0}, "half_open_probes"),
    ],
)
def test_breaker_rejects_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]


ALLOWED_EDGES = {
    ("closed", "failure", "open"),
    ("open", "allow", "half_open"),
    ("half_open", "success", "closed"),
    ("half_open", "failure", "open"),
}


@settings(max_examples=150)
@given(
    threshold=st.integers(min_value=1, max_value=4),
    cool_down=st.floats(min_value=0.5, max_value=5.0),
    cap_factor=st.floats(min_value=1.0, max_value=8.0),
    probes=st.integers(min_value=1, max_value=3),
    ops=st.lists(
        st.tuples(st.floats(min_value=0.0, max_value=4.0), st.sampled_from(["allow", "success", "failure"])),
        max_size=60,
    ),
)
def test_breaker_invariants_under_arbitrary_call_sequences(
    threshold: int, cool_down: float, cap_factor: float, probes: int, ops: list[tuple[float, str]]
) -> None:
    max_cool_down = cool_down * cap_factor
    breaker = CircuitBreaker(threshold, cool_down, max_cool_down, probes)
    now = 0.0
    opens = 0
    expected_cool_down = cool_down
    probes_granted = 0
    for gap, op in ops:
        now += gap
        before = breaker.state
        predicted = breaker.state_at(now)
        assert breaker.state is before  # state_at is a pure read
        if op == "allow":
            allowed = breaker.allow(now)
            if predicted is CircuitState.open:
                assert not allowed
            if breaker.state is CircuitState.half_open:
                probes_granted = 0 if before is CircuitState.open else probes_granted
                probes_granted += allowed
                assert probes_granted <= probes
            else:
                assert allowed == (breaker.state is CircuitState.closed)
        elif op == "success":
            breaker.record_success(now)
        else:
            breaker.record_failure(now)
        after = breaker.state
        if after is not before:
            assert (before.value, op, after.value) in ALLOWED_EDGES
        if after is CircuitState.open and before is not CircuitState.open:
            opens += 1
            # The first opening after closing waits the initial cool-down; each failed probe doubles it.
            expected_cool_down = (
                cool_down if before is CircuitState.closed else min(max_cool_down, expected_cool_down * 2)
            )
            assert breaker.retry_in(now) == pytest.approx(expected_cool_down)
        assert 0.0 <= breaker.retry_in(now) <= max_cool_down
        assert breaker.opened_count == opens


# --- priority ------------------------------------------------------------------------------------------


def test_priority_covers_every_level_most_severe_first() -> None:
    assert set(PRIORITY) == set(LEVELS)
    assert sorted(LEVELS, key=priority_of) == ["red", "orange", "yellow", "blue"]
    assert [priority_of(level) for level in ("red", "orange", "yellow", "blue")] == [0, 1, 2, 3]


@pytest.mark.parametrize("level", ["green", "Red", "", "RED "])
def test_priority_of_unknown_level_names_it_and_the_known_ones(level: str) -> None:
    with pytest.raises(ValueError) as excinfo:
        priority_of(level)
    text = str(excinfo.value)
    assert repr(level) in text
    assert all(known in text for known in PRIORITY)


# --- endpoint_failed: what the circuit breaker is fed --------------------------------------------------


def failed(
    kind: FailureKind | None, reason: str = "", outcome: SendOutcome = SendOutcome.TEMPORARY_FAILURE
) -> SendResult:
    return SendResult("k", outcome, reason=reason, failure=kind)


@pytest.mark.parametrize("kind", sorted(LINK_FAILURES))
def test_a_batch_whose_every_item_lost_its_link_is_a_failure_of_the_endpoint(kind: FailureKind) -> None:
    assert endpoint_failed([failed(kind), failed(FailureKind.LINK_DOWN)])


@pytest.mark.parametrize("kind", sorted(set(FailureKind) - LINK_FAILURES))
def test_a_batch_failing_for_any_other_kind_of_failure_is_not(kind: FailureKind) -> None:
    outcome = SendOutcome.TEMPORARY_FAILURE if kind.retryable else SendOutcome.PERMANENT_FAILURE
    assert not endpoint_failed([failed(kind, outcome=outcome)])
    assert not endpoint_failed([failed(FailureKind.LINK_DOWN), failed(kind, outcome=outcome)])


def test_the_breaker_reads_the_kind_of_failure_not_the_words_of_the_reason() -> None:
    assert not endpoint_failed([failed(None, "link down"), failed(FailureKind.THROTTLED, "timeout")])
    assert endpoint_failed([failed(FailureKind.TIMEOUT, "no answer from the SMSC")])


def test_an_empty_batch_or_one_with_an_accepted_item_is_no_failure() -> None:
    assert not endpoint_failed([])
    accepted = SendResult("k2", SendOutcome.ACCEPTED, ("id-1",))
    assert not endpoint_failed([failed(FailureKind.LINK_DOWN), accepted])


def test_a_breaker_fed_by_batch_judgements_opens_on_lost_links_and_not_on_throttling() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cool_down_s=5.0)
    throttled = [failed(FailureKind.THROTTLED, "ESME_RTHROTTLED")] * 4
    down = [failed(FailureKind.LINK_DOWN, "link down")] * 4
    for now, batch in enumerate([throttled] * 5):
        (breaker.record_failure if endpoint_failed(batch) else breaker.record_success)(float(now))
    assert breaker.state is CircuitState.closed
    for now, batch in enumerate([down] * 3, start=10):
        (breaker.record_failure if endpoint_failed(batch) else breaker.record_success)(float(now))
    assert breaker.state is CircuitState.open
