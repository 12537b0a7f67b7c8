"""The content of one warning message (one version of a warning), which its documents and texts render."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from warnings_svc.vocabulary import MsgType, Status

Branch = Literal["forecast", "observed", "forecast+observed"]


@dataclass(frozen=True)
class Area:
    code: str  # 12-digit geocode
    name: str
    name_en: str


@dataclass(frozen=True)
class Reference:
    """An earlier message this one updates or cancels (CAP `references`: sender,identifier,sent)."""

    sender: str
    identifier: str
    sent: datetime


@dataclass(frozen=True)
class Issuer:
    sender: str  # CAP sender, e.g. "wuhai@weather.example.cn"
    sender_code: str  # GB/T 35965.1 14-digit sender code, e.g. "15030041600000"
    name: str  # issuing organisation, e.g. "乌海市气象台"
    name_en: str  # e.g. "Wuhai Meteorological Observatory"
    signed_by: str = ""  # the person who approved (GB/T senderName)


@dataclass(frozen=True)
class WarningMessage:
    """Everything a CAP document, the GB/T profile and the channel texts need about one message.

    Times are timezone-aware (stored in UTC; documents show them as their profile requires).
    """

    identifier: str
    msg_type: MsgType
    status: Status
    hazard: str
    level: str
    areas: tuple[Area, ...]
    sent: datetime
    onset: datetime
    expires: datetime
    issuer: Issuer
    polygons: tuple[str, ...] = ()  # CAP 1.2 polygon strings ("lat,lon lat,lon ...")
    probability: float | None = None  # 0-1, None when unknown
    branch: Branch = "forecast"
    references: tuple[Reference, ...] = ()
    exposed_population: int | None = None
    note: str = ""  # e.g. why it is cancelled
    extra: dict[str, str] = field(default_factory=dict)
