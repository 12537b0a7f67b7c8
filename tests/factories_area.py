"""Area alerts for the tests of the area channels' adapters: a Wuhai heat warning as the dispatcher hands it
over (`area_alert`, shaped for the operator area SMS tests; `wuhai_alert` for any other, with changes)."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

from channels.area import AlertArea, AlertTexts, AreaAlert, MsgType

BEIJING = timezone(timedelta(hours=8))
# end-2021 district totals (shared/reference/wuhai.md)
POPULATIONS = {"150302000000": 341_000, "150303000000": 94_700, "150304000000": 122_400}
NAMES = {"150302000000": "海勃湾区", "150303000000": "海南区", "150304000000": "乌达区"}
HAIBOWAN_POLYGON = "39.6,106.75 39.8,106.75 39.8,106.9 39.6,106.9 39.6,106.75"
TEXT_ALERT = (
    "【乌海市气象台】高温橙色预警：预计未来24小时海勃湾区、乌达区、海南区最高气温将升至40℃以上，请防暑降温。"
)
TEXT_UPDATE = "【乌海市气象台】高温红色预警：海勃湾区、乌达区、海南区最高气温将升至41℃以上，请停止户外作业。"


def area_alert(
    key: str = "17-1/area_sms/china_mobile",
    *,
    msg_type: MsgType = "Alert",
    previous_remote_id: str = "",
    text: str = TEXT_ALERT,
    codes: tuple[str, ...] = tuple(POPULATIONS),
    version: int = 1,
    onset: datetime | None = None,
    hours: float = 12.0,
) -> AreaAlert:
    """A heat warning version for the given districts (all three by default), valid ``hours`` from onset."""
    start = onset or datetime.now(BEIJING).replace(microsecond=0)
    return AreaAlert(
        key=key,
        identifier=f"urn:oid:2.49.0.1.156.0.2017.7.{version}",
        warning_id=17,
        version=version,
        msg_type=msg_type,
        status="Actual",
        hazard="heat",
        level="orange",
        severity="Severe",
        urgency="Expected",
        onset=start,
        expires=start + timedelta(hours=hours),
        areas=tuple(
            AlertArea(
                code,
                NAMES.get(code, "未知"),
                POPULATIONS.get(code, 0),
                (HAIBOWAN_POLYGON,) if code == "150302000000" else (),
            )
            for code in codes
        ),
        texts=AlertTexts(headline="高温橙色预警", sms=text, broadcast=text, led="高温橙色预警"),
        priority=1,
        previous_remote_id=previous_remote_id,
        update_number=0 if msg_type == "Alert" else 1,
    )


def wuhai_alert(**changes: Any) -> AreaAlert:
    """`area_alert`'s heat warning for the three districts with `changes` (any `AreaAlert` field)."""
    return dataclasses.replace(area_alert(), **changes)
