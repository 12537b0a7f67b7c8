"""A delivery's states: which event moves a delivery (one message to one person on one channel) from which
state to which.

Every state change of a delivery is an entry of one table (`TRANSITIONS`), applied by one function
(`transition`), which refuses any other change with `DeliveryStateError`. The outbox decides states in SQL as
well as in Python, and it is fast because it makes no Python call per delivery: it takes the states it
writes from this table once, when it is imported, and its statements name the transitions they make
(`warnings_svc.dissemination.outbox.STATEMENT_TRANSITIONS`), which the unit tests hold against both the table
and the states the statements spell (and against the CHECK constraint of the ``svc.delivery`` table), so
neither can drift from the other::

    pending --claim--> sending --accept--> sent --receipt_delivered--> delivered
       ^ |               |  |                   --receipt_accepted---> accepted
       | +--drop-----+   |  +--(receipts rode   --receipt_failed-----> failed
       |             v   |      with the results: the same three, from sending)
       |          dropped|
       +--release, reclaim, retry--+   sending --give_up, refuse--> dead

- ``claim``: leased to a dispatcher for one attempt (a fan-out's first attempts are written already claimed);
- ``drop``: its version stopped being in force (updated, cancelled, expired) before it was sent;
- ``release``: given back untried (its dispatcher stopping); ``reclaim``: its lease ran out (its dispatcher
  died or hung) and it is sent again; ``retry``: a temporary failure, attempts left;
- ``accept``: the remote end took it, receipts to come; ``give_up``: a temporary failure, no attempt left;
  ``refuse``: a permanent failure;
- ``receipt_*``: every part's final receipt came: each part reached the handset (``delivered``), a part
  failed or expired (``failed``), or the network took it without proof of delivery (``accepted``).

Delivered, accepted, failed, dead and dropped are final: nothing moves a delivery out of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class DeliveryState(StrEnum):
    """Where one delivery stands (the ``state`` column of ``svc.delivery``)."""

    pending = "pending"  # in the queue (its ``queued`` column is true), waiting for its next attempt
    sending = "sending"  # leased to a dispatcher, being sent
    sent = "sent"  # the remote end took it; its receipts are still to come
    delivered = "delivered"  # every part reached the handset
    accepted = "accepted"  # the network took every part; no proof of delivery
    failed = "failed"  # a part failed or expired, by its receipt
    dead = "dead"  # given up: refused, or temporary failures until no attempt was left
    dropped = "dropped"  # its version stopped being in force before it was sent


class DeliveryEvent(StrEnum):
    """What happens to a delivery."""

    claim = "claim"
    drop = "drop"
    release = "release"
    reclaim = "reclaim"
    accept = "accept"
    retry = "retry"
    give_up = "give_up"
    refuse = "refuse"
    receipt_delivered = "receipt_delivered"
    receipt_accepted = "receipt_accepted"
    receipt_failed = "receipt_failed"


_S = DeliveryState
_E = DeliveryEvent
_SETTLED: Mapping[DeliveryEvent, DeliveryState] = {
    _E.receipt_delivered: _S.delivered,
    _E.receipt_accepted: _S.accepted,
    _E.receipt_failed: _S.failed,
}

TRANSITIONS: Mapping[tuple[DeliveryState, DeliveryEvent], DeliveryState] = {
    (_S.pending, _E.claim): _S.sending,
    (_S.pending, _E.drop): _S.dropped,
    (_S.sending, _E.release): _S.pending,
    (_S.sending, _E.reclaim): _S.pending,
    (_S.sending, _E.retry): _S.pending,
    (_S.sending, _E.accept): _S.sent,
    (_S.sending, _E.give_up): _S.dead,
    (_S.sending, _E.refuse): _S.dead,
    # a delivery whose every part's final receipt came before its results were stored is settled at once
    **{(_S.sending, event): state for event, state in _SETTLED.items()},
    **{(_S.sent, event): state for event, state in _SETTLED.items()},
}

FINAL_STATES: frozenset[DeliveryState] = frozenset(_S) - {state for state, _ in TRANSITIONS}
# the person was (or is being) sent this version: an Update or Cancel must reach them
TOLD_STATES: frozenset[DeliveryState] = frozenset({_S.sending, _S.sent, _S.delivered, _S.accepted})


class DeliveryStateError(ValueError):
    """A state change the table does not allow."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"a delivery that is {state} cannot {event}")
        self.state = state
        self.event = event


def transition(state: DeliveryState | str, event: DeliveryEvent | str) -> DeliveryState:
    """The state `event` moves a delivery in `state` to, or `DeliveryStateError` when the table has no such
    change (an unknown state or event included).

    >>> transition(DeliveryState.sending, DeliveryEvent.accept)
    <DeliveryState.sent: 'sent'>
    """
    try:
        return TRANSITIONS[DeliveryState(state), DeliveryEvent(event)]
    except (KeyError, ValueError):
        raise DeliveryStateError(state, event) from None
