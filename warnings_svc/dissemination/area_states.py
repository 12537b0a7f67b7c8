"""An area delivery's states: which event moves one warning version put out to one target (an operator, a
CBC, an MQTT broker, a platform, a broadcaster) from which state to which.

Every state change goes through `area_transition`, which looks it up in `AREA_TRANSITIONS` and refuses any
other with `AreaDeliveryStateError`; the SQL of `warnings_svc.dissemination.area_outbox` takes the states it
writes from this table::

    pending --claim--> sending --accept--> done
       | ^               |  |
       | +--retry, reclaim--+--give_up, refuse--> dead
       +--drop--> dropped          (sending --skip--> done: nothing was out at the target to cancel)

- ``claim``: leased to a dispatcher for one attempt; ``drop``: its version was superseded or expired before it
  went out (a Cancel and an expiry are never dropped: they take back what is out);
- ``accept``: the target took it (evidence of reach may follow); ``skip``: a Cancel or expiry for a target
  that never got the warning, so there is nothing to take back;
- ``retry``: a temporary failure with attempts left; ``reclaim``: its lease ran out (its dispatcher died);
- ``give_up``: a temporary failure with no attempt left; ``refuse``: the target refused it for good.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class AreaDeliveryState(StrEnum):
    """Where one area delivery stands (the ``state`` column of ``svc.area_delivery``)."""

    pending = "pending"
    sending = "sending"
    done = "done"
    dead = "dead"
    dropped = "dropped"


class AreaDeliveryEvent(StrEnum):
    """What happens to an area delivery."""

    claim = "claim"
    drop = "drop"
    accept = "accept"
    skip = "skip"
    retry = "retry"
    reclaim = "reclaim"
    give_up = "give_up"
    refuse = "refuse"


_S = AreaDeliveryState
_E = AreaDeliveryEvent
AREA_TRANSITIONS: Mapping[tuple[AreaDeliveryState, AreaDeliveryEvent], AreaDeliveryState] = {
    (_S.pending, _E.claim): _S.sending,
    (_S.pending, _E.drop): _S.dropped,
    (_S.sending, _E.accept): _S.done,
    (_S.sending, _E.skip): _S.done,
    (_S.sending, _E.retry): _S.pending,
    (_S.sending, _E.reclaim): _S.pending,
    (_S.sending, _E.give_up): _S.dead,
    (_S.sending, _E.refuse): _S.dead,
}
AREA_FINAL_STATES: frozenset[AreaDeliveryState] = frozenset(_S) - {state for state, _ in AREA_TRANSITIONS}


class AreaDeliveryStateError(ValueError):
    """A state change the table does not allow."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"an area delivery that is {state} cannot {event}")


def area_transition(state: AreaDeliveryState | str, event: AreaDeliveryEvent | str) -> AreaDeliveryState:
    """The state `event` moves an area delivery in `state` to.

    >>> area_transition("sending", "accept")
    <AreaDeliveryState.done: 'done'>
    """
    try:
        return AREA_TRANSITIONS[AreaDeliveryState(state), AreaDeliveryEvent(event)]
    except (KeyError, ValueError):
        raise AreaDeliveryStateError(str(state), str(event)) from None
