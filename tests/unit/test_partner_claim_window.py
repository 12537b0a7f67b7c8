"""How far ahead the partner dispatcher claims: never so far that a claimed delivery's lease could run out
before its attempt ends, however slow every endpoint is."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import warnings_svc.dissemination.partners.dispatch as dispatch
from warnings_svc.dissemination.partners.dispatch import claim_window, options_from_settings, refill_threshold
from warnings_svc.settings import Settings, load_settings


def test_doctests() -> None:
    assert doctest.testmod(dispatch).failed == 0


@pytest.mark.parametrize("concurrency", [1, 16, 64, 1000])
@pytest.mark.parametrize(
    ("lease_s", "attempt_s"), [(60, 15), (61, 15), (120, 15), (45, 15), (3600, 1), (60, 5)]
)
def test_the_last_delivery_claimed_ends_its_attempt_within_its_lease(
    concurrency: int, lease_s: float, attempt_s: float
) -> None:
    # the worst case: every attempt takes its whole time, and the last one claimed waits for every round ahead
    window = claim_window(concurrency, lease_s, attempt_s)
    rounds_until_done = window // concurrency
    assert window % concurrency == 0 and 2 <= rounds_until_done <= 8
    assert rounds_until_done * attempt_s < lease_s


def test_the_defaults_claim_three_rounds_of_webhooks() -> None:
    options = options_from_settings(Settings())
    assert (options.lease_s, options.attempt_s) == (60.0, 15.0)
    assert claim_window(options.concurrency, options.lease_s, options.attempt_s) == 3 * options.concurrency


def test_a_slow_mqtt_partner_broker_lengthens_the_lease_so_claiming_ahead_stays_safe(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(
        '[[dispatch.mqtt]]\nname = "terminals"\nurl = "mqtt://127.0.0.1:1883"\npublish_timeout_s = 120\n'
        '[partners]\nmqtt_broker = "terminals"\nmqtt_topic_prefix = "partners"\n'
    )
    options = options_from_settings(load_settings(config, {}))
    assert options.attempt_s == 240.0  # waiting for the link, then the publish
    assert options.lease_s >= 4 * options.attempt_s
    window = claim_window(options.concurrency, options.lease_s, options.attempt_s)
    assert window // options.concurrency * options.attempt_s < options.lease_s


@pytest.mark.parametrize("concurrency", [1, 4, 16, 64, 1000])
@pytest.mark.parametrize("rounds", [1, 2, 3, 5, 8])
def test_a_sender_claims_again_in_batches_while_a_round_still_waits(concurrency: int, rounds: int) -> None:
    window = rounds * concurrency
    refill = refill_threshold(window, concurrency)
    assert 1 <= refill <= window
    assert refill >= window // 4  # claims come in batches, not one by one
    if rounds >= 3:
        # when it claims, a whole round still waits beyond the attempts in flight: no slot runs dry meanwhile
        waiting_beyond_flight = (window - refill) - concurrency
        assert waiting_beyond_flight >= concurrency
