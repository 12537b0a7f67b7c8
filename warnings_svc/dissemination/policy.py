"""Dispatch policy: when to retry a send, how fast to send, when to stop trying a channel, what goes first.

The dispatcher fans a warning out to thousands of recipients over channels (SMS gateways, push, e-mail)
that fail, throttle and recover on their own schedule. The decisions it has to take on every send live
here, apart from any I/O, so that they can be tested exhaustively:

- `backoff_delay`: how long to wait before retry number ``attempt`` — exponential backoff with *full*
  jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"), so that recipients that failed together
  do not retry together and hammer a recovering gateway in lockstep.
- `TokenBucket`: the per-channel send rate agreed with the operator. Takes may overdraw the bucket (a
  reservation): each caller is told how long to wait, callers are served in the order they asked, and over
  any window of T seconds no more than ``rate_per_s * T + burst`` tokens are let through.
- `CircuitBreaker`: stop sending to a channel that keeps failing, probe it again after a cool-down that
  doubles (up to a cap) while it stays broken, and close again on the first successful probe;
  `endpoint_failed` says which batches count as a failure, by the kind of failure the adapter reported.
- `PRIORITY` / `priority_of`: red before orange before yellow before blue.

Nothing here reads a clock or draws its own randomness: the caller passes ``now`` (monotonic seconds, e.g.
``time.monotonic()`` or ``loop.time()``) and a `random.Random`, so every decision is deterministic under
test. Nothing here is thread-safe or awaits; within one asyncio event loop no locking is needed because no
method yields control.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from enum import StrEnum

from channels.base import FailureKind, SendOutcome, SendResult

__all__ = [
    "LINK_FAILURES",
    "PRIORITY",
    "CircuitBreaker",
    "CircuitState",
    "TokenBucket",
    "backoff_delay",
    "endpoint_failed",
    "priority_of",
]


def backoff_delay(attempt: int, *, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry ``attempt`` (1 = the first retry): uniform(0, min(cap_s, base_s·2^(attempt−1))).

    >>> rng = random.Random(7)
    >>> 0.0 <= backoff_delay(3, base_s=0.5, cap_s=30.0, rng=rng) <= 2.0
    True
    >>> 0.0 <= backoff_delay(10_000, base_s=0.5, cap_s=30.0, rng=rng) <= 30.0
    True
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1 (1 is the first retry), got {attempt}")
    # `not x > 0` rather than `x <= 0` so that NaN is refused too; an infinite base or cap would make the
    # delay infinite (or NaN) instead of bounded.
    if not (math.isfinite(base_s) and base_s > 0):
        raise ValueError(f"base_s must be a finite number > 0, got {base_s}")
    if not (math.isfinite(cap_s) and cap_s >= base_s):
        raise ValueError(f"cap_s must be a finite number >= base_s ({base_s}), got {cap_s}")
    doublings = attempt - 1
    # Compare exponents in log space: base_s * 2**doublings overflows a float long before attempt reaches
    # the numbers a stuck retry loop can produce, while the cap is reached after a few dozen doublings.
    if doublings >= math.log2(cap_s) - math.log2(base_s):
        ceiling = cap_s
    else:
        ceiling = min(cap_s, math.ldexp(base_s, doublings))
    return rng.uniform(0.0, ceiling)


class TokenBucket:
    """A token bucket that hands out reservations: `take` never refuses, it says how long to wait.

    The bucket starts full (``burst`` tokens) and refills at ``rate_per_s`` up to ``burst``. `take` removes
    the tokens at once, even if that leaves the balance negative, and returns the wait after which the
    balance would have been back at zero; a caller that sends after that wait keeps the long-run rate at
    ``rate_per_s``, and a later caller inherits the debt, so it is told to wait longer and is served after
    the earlier ones. A ``rate_per_s`` of ``math.inf`` turns the limiter off.

    >>> bucket = TokenBucket(rate_per_s=2.0, burst=2.0)
    >>> [bucket.take(1, now=0.0) for _ in range(4)]
    [0.0, 0.0, 0.5, 1.0]
    >>> bucket.available(now=1.0)
    0.0
    """

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if not rate_per_s > 0:
            raise ValueError(f"rate_per_s must be > 0 (math.inf for unlimited), got {rate_per_s}")
        # burst < 1 could never let a single message through; an infinite burst is an unlimited rate in
        # disguise and would turn the refill arithmetic into inf - inf.
        if not (math.isfinite(burst) and burst >= 1):
            raise ValueError(f"burst must be a finite number >= 1, got {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._tokens = burst
        self._last = -math.inf  # no refill has happened yet; the bucket starts full anyway

    @property
    def unlimited(self) -> bool:
        return math.isinf(self.rate_per_s)

    def _balance_at(self, now: float) -> float:
        # A `now` older than the last update (two tasks passing slightly stale clock readings) refills
        # nothing rather than draining the bucket.
        elapsed = max(0.0, now - self._last)
        return min(self.burst, self._tokens + elapsed * self.rate_per_s)

    def available(self, now: float) -> float:
        """Tokens in the bucket at ``now``; negative while earlier reservations are still being paid off."""
        if self.unlimited:
            return math.inf
        return self._balance_at(now)

    def take(self, n: float, now: float) -> float:
        """Reserve ``n`` tokens at ``now`` and return the seconds to wait before sending (0.0: send now)."""
        if not n >= 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if self.unlimited:
            return 0.0
        # More than a burst at once would have to be sent in one go exceeding the burst, whatever the wait.
        if n > self.burst:
            raise ValueError(f"n must be <= burst ({self.burst}), got {n}")
        self._tokens = self._balance_at(now) - n
        self._last = max(self._last, now)
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate_per_s


class CircuitState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


class CircuitBreaker:
    """Stops calls to a failing channel and lets a few probes through after a cool-down.

    ::

        closed --failure_threshold consecutive failures--> open
        open --cool-down passed, on the next allow()--> half_open
        half_open --success--> closed (cool-down back to cool_down_s)
        half_open --failure--> open (cool-down doubled, at most max_cool_down_s)

    In half_open at most ``half_open_probes`` calls are allowed until one of them reports; the caller must
    report every allowed probe (`record_success` / `record_failure`), otherwise the breaker stays half_open
    with no probe left. Results that arrive while the breaker is open come from calls allowed before it
    opened and are ignored: they say nothing about the channel now and must not stretch the cool-down.

    >>> breaker = CircuitBreaker(failure_threshold=2, cool_down_s=5.0)
    >>> breaker.record_failure(now=0.0); breaker.record_failure(now=1.0)
    >>> breaker.state, breaker.allow(now=2.0), breaker.retry_in(now=2.0)
    (<CircuitState.open: 'open'>, False, 4.0)
    >>> breaker.allow(now=6.0), breaker.state, breaker.allow(now=6.0)
    (True, <CircuitState.half_open: 'half_open'>, False)
    >>> breaker.record_success(now=6.5); breaker.state
    <CircuitState.closed: 'closed'>
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        cool_down_s: float = 5.0,
        max_cool_down_s: float = 60.0,
        half_open_probes: int = 1,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if not (math.isfinite(cool_down_s) and cool_down_s > 0):
            raise ValueError(f"cool_down_s must be a finite number > 0, got {cool_down_s}")
        if not (math.isfinite(max_cool_down_s) and max_cool_down_s >= cool_down_s):
            raise ValueError(
                f"max_cool_down_s must be a finite number >= cool_down_s ({cool_down_s}), got {max_cool_down_s}"
            )
        if half_open_probes < 1:
            raise ValueError(f"half_open_probes must be >= 1, got {half_open_probes}")
        self.failure_threshold = failure_threshold
        self.cool_down_s = cool_down_s
        self.max_cool_down_s = max_cool_down_s
        self.half_open_probes = half_open_probes
        self.opened_count = 0
        self._state = CircuitState.closed
        self._failures = 0
        self._current_cool_down_s = cool_down_s
        self._opened_at = -math.inf
        self._probes_allowed = 0

    @property
    def state(self) -> CircuitState:
        """The state as last changed by a call; an open breaker whose cool-down passed still reads open."""
        return self._state

    def _cool_down_over(self, now: float) -> bool:
        return now >= self._opened_at + self._current_cool_down_s

    def state_at(self, now: float) -> CircuitState:
        """The state a call at ``now`` would find: half_open once the cool-down passed. Consumes no probe."""
        if self._state is CircuitState.open and self._cool_down_over(now):
            return CircuitState.half_open
        return self._state

    def retry_in(self, now: float) -> float:
        """Seconds until an open breaker lets a probe through; 0.0 when closed or half_open."""
        if self._state is not CircuitState.open:
            return 0.0
        # Clamped to the cool-down: a stale `now` from before the opening, or float round-off in
        # opened_at + cool-down - now, must not report a longer wait than the breaker will impose.
        remaining = self._opened_at + self._current_cool_down_s - now
        return min(self._current_cool_down_s, max(0.0, remaining))

    def allow(self, now: float) -> bool:
        """Whether a call may go out at ``now``; in half_open every True is a probe the caller must report."""
        if self._state is CircuitState.closed:
            return True
        if self._state is CircuitState.open:
            if not self._cool_down_over(now):
                return False
            self._state = CircuitState.half_open
            self._probes_allowed = 0
        if self._probes_allowed >= self.half_open_probes:
            return False
        self._probes_allowed += 1
        return True

    def record_success(self, now: float) -> None:
        """Report a call that succeeded: closes a half_open breaker, clears the failure streak of a closed one."""
        if self._state is CircuitState.half_open:
            self._state = CircuitState.closed
            self._current_cool_down_s = self.cool_down_s
            self._probes_allowed = 0
            self._failures = 0
        elif self._state is CircuitState.closed:
            self._failures = 0

    def record_failure(self, now: float) -> None:
        """Report a call that failed: may open a closed breaker; re-opens a half_open one for longer."""
        if self._state is CircuitState.closed:
            self._failures += 1
            if self._failures >= self.failure_threshold:
                self._open(now)
        elif self._state is CircuitState.half_open:
            # The channel is still broken after a full cool-down: back off harder before the next probe.
            self._current_cool_down_s = min(self.max_cool_down_s, self._current_cool_down_s * 2)
            self._open(now)

    def _open(self, now: float) -> None:
        self._state = CircuitState.open
        self._opened_at = now
        self._failures = 0
        self._probes_allowed = 0
        self.opened_count += 1


# The kinds of temporary failure that say the endpoint itself is broken, not the item: throttling is
# back-pressure from a working endpoint, and a refused item says nothing about the others.
LINK_FAILURES: frozenset[FailureKind] = frozenset(
    {FailureKind.LINK_DOWN, FailureKind.TIMEOUT, FailureKind.CLOSED}
)


def endpoint_failed(results: Sequence[SendResult]) -> bool:
    """Whether a sent batch counts as a failure of its endpoint for the circuit breaker: every item failed
    temporarily for want of a link (`LINK_FAILURES`). Any other batch, an empty one aside, is a success.

    >>> endpoint_failed([SendResult("k", SendOutcome.TEMPORARY_FAILURE, failure=FailureKind.TIMEOUT)])
    True
    >>> endpoint_failed([SendResult("k", SendOutcome.TEMPORARY_FAILURE, failure=FailureKind.THROTTLED)])
    False
    """
    return bool(results) and all(
        r.outcome is SendOutcome.TEMPORARY_FAILURE and r.failure in LINK_FAILURES for r in results
    )


# Lower is sent first: the most severe warnings must not queue behind routine ones.
PRIORITY: dict[str, int] = {"red": 0, "orange": 1, "yellow": 2, "blue": 3}


def priority_of(level: str) -> int:
    """Send order of a warning level (0 first).

    >>> priority_of("red") < priority_of("blue")
    True
    """
    try:
        return PRIORITY[level]
    except KeyError:
        raise ValueError(f"unknown warning level {level!r}; known: {', '.join(PRIORITY)}") from None
