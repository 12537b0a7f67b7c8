"""A partner delivery's states: which event moves one version sent to one subscription (or one
acknowledgement call) from which state to which.

Every state change goes through `partner_transition`, which looks it up in `PARTNER_TRANSITIONS` and refuses
any other with `PartnerDeliveryStateError`; the SQL of `warnings_svc.dissemination.partners.outbox` takes the
states it writes from this table::

    pending --claim--> sending --accept--> delivered --resend--> pending
       | ^               |  |
       | +--retry, reclaim--+--give_up, refuse--> dead --resend--> pending
       +--drop--> dropped --resend--> pending
       +--expire--> dead

- ``claim``: leased to a dispatcher for one attempt; ``drop``: the subscription was paused, disabled or
  deleted, or the warning stopped being in force, before it went out;
- ``expire``: the warning expired (its ``give_up_at`` passed) while it waited;
- ``accept``: the partner took it (2xx, SMTP 250, PUBACK, submit_sm_resp);
- ``retry``: a failure with time left before the warning expires; ``reclaim``: its lease ran out;
- ``give_up``: a failure with no time left (or no attempt); ``refuse``: the partner refused it for good (410);
- ``resend``: a person asked to send it again ("send again" in the delivery log).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class PartnerDeliveryState(StrEnum):
    """Where one partner delivery stands (the ``state`` column of ``svc.partner_delivery``)."""

    pending = "pending"
    sending = "sending"
    delivered = "delivered"
    dead = "dead"
    dropped = "dropped"


class PartnerDeliveryEvent(StrEnum):
    """What happens to a partner delivery."""

    claim = "claim"
    drop = "drop"
    accept = "accept"
    retry = "retry"
    reclaim = "reclaim"
    give_up = "give_up"
    refuse = "refuse"
    resend = "resend"
    expire = "expire"


_S = PartnerDeliveryState
_E = PartnerDeliveryEvent
PARTNER_TRANSITIONS: Mapping[tuple[PartnerDeliveryState, PartnerDeliveryEvent], PartnerDeliveryState] = {
    (_S.pending, _E.claim): _S.sending,
    (_S.pending, _E.drop): _S.dropped,
    (_S.pending, _E.expire): _S.dead,
    (_S.sending, _E.accept): _S.delivered,
    (_S.sending, _E.retry): _S.pending,
    (_S.sending, _E.reclaim): _S.pending,
    (_S.sending, _E.give_up): _S.dead,
    (_S.sending, _E.refuse): _S.dead,
    (_S.delivered, _E.resend): _S.pending,
    (_S.dead, _E.resend): _S.pending,
    (_S.dropped, _E.resend): _S.pending,
}


class PartnerDeliveryStateError(ValueError):
    """A state change the table does not allow."""

    def __init__(self, state: str, event: str) -> None:
        super().__init__(f"a partner delivery that is {state} cannot {event}")


def partner_transition(
    state: PartnerDeliveryState | str, event: PartnerDeliveryEvent | str
) -> PartnerDeliveryState:
    """The state `event` moves a partner delivery in `state` to.

    >>> partner_transition("sending", "accept")
    <PartnerDeliveryState.delivered: 'delivered'>
    """
    try:
        return PARTNER_TRANSITIONS[PartnerDeliveryState(state), PartnerDeliveryEvent(event)]
    except (KeyError, ValueError):
        raise PartnerDeliveryStateError(str(state), str(event)) from None


def states_before(event: PartnerDeliveryEvent) -> tuple[str, ...]:
    """The states `event` may leave, for the SQL that applies it to many rows at once."""
    return tuple(sorted(state.value for state, e in PARTNER_TRANSITIONS if e is event))
