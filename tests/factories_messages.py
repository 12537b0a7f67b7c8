"""Warning messages shared by the document and text tests: the Wuhai heat event of July 2017 as a model."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

from risk_zoning import BEIJING
from warnings_svc.documents.message import Area, Issuer, Reference, WarningMessage
from warnings_svc.vocabulary import HAZARD_LEVELS

DATA = Path(__file__).resolve().parent / "data" / "cap"
HAZARD_LEVEL_PAIRS = [(h, lv) for h, levels in HAZARD_LEVELS.items() for lv in levels]

ISSUER = Issuer(
    sender="wuhai@weather.example.cn",
    sender_code="15030041600000",
    name="乌海市气象台",
    name_en="Wuhai Meteorological Observatory",
    signed_by="李华",
)
AREAS = (
    Area("150302000000", "海勃湾区", "Haibowan District"),
    Area("150304000000", "乌达区", "Wuda District"),
)
# Both districts, counter-clockwise, closed.
POLYGON = "39.4,106.62 39.4,106.85 39.55,107 39.9,106.98 39.9,106.8 39.6,106.62 39.4,106.62"


def beijing(day: int, hour: int) -> datetime:
    """A July 2017 Beijing-time hour, as the aware UTC time the model stores."""
    return datetime(2017, 7, day, hour, tzinfo=BEIJING).astimezone(UTC)


HEAT_ORANGE_ALERT = WarningMessage(
    identifier="15030041600000_20170709160000",
    msg_type="Alert",
    status="Actual",
    hazard="heat",
    level="orange",
    areas=AREAS,
    sent=beijing(9, 16),
    onset=beijing(10, 11),
    expires=beijing(10, 20),
    issuer=ISSUER,
    polygons=(POLYGON,),
    probability=0.8,
)
HEAT_RED_UPDATE = dataclasses.replace(
    HEAT_ORANGE_ALERT,
    identifier="15030041600000_20170710100000",
    msg_type="Update",
    level="red",
    sent=beijing(10, 10),
    onset=beijing(10, 12),
    probability=None,
    references=(Reference(ISSUER.sender, HEAT_ORANGE_ALERT.identifier, HEAT_ORANGE_ALERT.sent),),
)
