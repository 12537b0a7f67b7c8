"""The interface of the channels that reach everyone in an area, not a registered person: operator area SMS,
cell broadcast, terminals over MQTT (loudspeakers, displays), the emergency broadcast platform, radio and TV.

One `AreaAlert` is one warning version put out to one target (an operator, a CBC, a broker, a platform, a
broadcaster): the target turns it into a task of its own (an operator's area task, a CBC message, retained
messages on area topics). An Update or a Cancel is another `AreaAlert` that names what the target already
has (`previous_remote_id`): the adapter updates or cancels it there. What comes back is `Evidence` of reach,
per area: handsets delivered, terminals that played the warning, airing confirmed. It is marked measured or
estimated by the adapter, which knows what its peer can prove.

Adapters know protocols, never the database; the dispatcher (`warnings_svc.dissemination.area_dispatch`)
owns leases, retries and state, as for SMS. `put_out` never raises for a failure of the peer: that is the
result, with its `FailureKind` (temporary or permanent, as the adapter judges it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol, runtime_checkable

from channels.base import FailureKind, Health, SendOutcome

MsgType = Literal["Alert", "Update", "Cancel"]


@dataclass(frozen=True, slots=True)
class AlertArea:
    """One area of a warning as a target needs it: its 12-digit code, name, people living there, and its
    outline (CAP polygons, "lat,lon lat,lon ..." closed rings; empty when only the code is known)."""

    code: str
    name: str
    population: int
    polygons: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AlertTexts:
    """The texts of one version, each within its channel's budget (checked before approval)."""

    headline: str
    sms: str  # one SMS segment (70 UCS2 characters): operator area SMS
    broadcast: str  # the script read out (emergency broadcast, loudspeakers, radio)
    led: str  # the short line for displays and TV crawls
    description: str = ""  # the whole text (cell broadcast pages, email to broadcasters)


@dataclass(frozen=True, slots=True)
class AreaAlert:
    """One warning version to put out to one target.

    ``key`` is the delivery's idempotency key ("{warning_id}-{version}/{channel}/{target}"): every attempt
    carries it, so a peer that saw it already answers with what it made of it then. ``previous_remote_id`` is
    the id the target gave the version this one updates or cancels ("" for an Alert, or when the earlier
    version never reached this target). ``update_number`` counts the Updates since the Alert (0 for the
    Alert), for peers that show a new text only when it changes (the cell broadcast serial number).
    """

    key: str
    identifier: str  # the CAP identifier of this version
    warning_id: int
    version: int
    msg_type: MsgType
    status: str  # CAP status: Actual, Exercise, Test
    hazard: str  # heat | rainstorm | frost | sandstorm
    level: str  # blue | yellow | orange | red
    severity: str  # CAP severity: Minor, Moderate, Severe, Extreme
    urgency: str
    onset: datetime
    expires: datetime
    areas: tuple[AlertArea, ...]
    texts: AlertTexts
    priority: int = 3  # 0 red, 1 orange, 2 yellow, 3 blue
    previous_remote_id: str = ""
    update_number: int = 0
    cap_url: str = ""
    audio_url: str = ""
    # every unit inside the areas, the areas themselves and their sub-units (districts, towns), for channels
    # whose receivers listen on the code of the one unit they stand in (terminals over MQTT)
    area_units: tuple[str, ...] = ()
    # a Cancel that takes back an expired version: nothing to announce (the warning simply ended), only what
    # is still out to stop or clear; its texts say the warning ended
    expired: bool = False


@dataclass(frozen=True, slots=True)
class AreaSendResult:
    """What became of one `AreaAlert` at its target.

    ``remote_id`` is the id the target gave the task (an operator's task id, a CBC message id, a platform's
    broadcast id; for MQTT the topics published), ``route`` which of the target's routes took it (or failed
    last), ``failure`` the kind of failure (set exactly when the alert was not accepted), ``reason`` the
    peer's own words.
    """

    key: str
    outcome: SendOutcome
    remote_id: str = ""
    route: str = ""
    reason: str = ""
    failure: FailureKind | None = None
    retry_after_s: float | None = None


class EvidenceKind(StrEnum):
    """What a piece of evidence counts."""

    HANDSETS = "handsets"  # handsets an operator reports: targeted, sent, delivered (area SMS)
    PLAYBACK = "playback"  # a terminal played or showed the warning (loudspeaker, display)
    AIRING = "airing"  # a broadcaster or platform confirmed the warning went out (radio, TV, broadcast)
    BROADCAST = "broadcast"  # a cell broadcast was taken by the CBC: no receipts exist, reach is an estimate


@dataclass(frozen=True, slots=True)
class Evidence:
    """One report of reach from a target, for one area (or one terminal).

    ``measured`` is true when a peer counted real deliveries (handsets delivered, playback acknowledged),
    false when the figure is an estimate (audience share, cell broadcast). ``final`` is true when no later
    report will change the figures for this task and area. Figures are cumulative: a later report replaces an
    earlier one for the same task and area.
    """

    key: str  # the AreaAlert's key when the adapter knows it, else ""
    remote_id: str  # the task id the report is about ("" when only the identifier is known)
    kind: EvidenceKind
    area: str  # 12-digit code ("" when the peer reports for the whole task)
    measured: bool
    targeted: int = 0
    sent: int = 0
    delivered: int = 0
    identifier: str = ""  # the CAP identifier, when the peer names it (terminal acknowledgements do)
    terminal_id: str = ""
    at: datetime | None = None
    final: bool = False
    detail: dict[str, str] = field(default_factory=dict)


@runtime_checkable
class AreaChannel(Protocol):
    """What the dispatcher needs from every area channel adapter."""

    name: str

    async def put_out(self, alert: AreaAlert) -> AreaSendResult:
        """Create, update or cancel (by ``alert.msg_type``) the alert at the target; never raises for the
        peer's failure: that is the result."""
        ...

    def evidence(self) -> AsyncIterator[list[Evidence]]:
        """Evidence in batches as the peer reports it, for as long as the channel is open. A consumer stores a
        batch before asking for the next; a report may come twice and must be stored idempotently."""
        ...

    def health(self) -> Health:
        """A snapshot of the target's health; cheap, never blocks."""
        ...

    async def close(self) -> None:
        """Let go of connections; what was not put out stays in the outbox."""
        ...
