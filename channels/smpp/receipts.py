"""Delivery receipts (deliver_sm with esm_class 0x04) parsed into channel Receipts: TLVs first, text second.

>>> r = parse_receipt(ShortMessage("13800000000", "12110", 0x04, 0, 0,
...     b"id:0000002a sub:001 dlvrd:001 submit date:2507011200 done date:2507011201 stat:DELIVRD err:000 text:"))
>>> r.remote_id, r.state.value, r.raw_state, r.done_at.isoformat()
('0000002a', 'delivered', 'DELIVRD', '2025-07-01T12:01:00+00:00')
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from datetime import UTC, datetime

from channels.base import Receipt, ReceiptState
from channels.smpp.pdu import (
    TAG_MESSAGE_STATE,
    TAG_NETWORK_ERROR_CODE,
    TAG_RECEIPTED_MESSAGE_ID,
    ShortMessage,
)

ESM_CLASS_RECEIPT_MASK = 0x3C  # bits 2-5: message type
ESM_CLASS_DELIVERY_RECEIPT = 0x04

# SMPP 3.4 message_state values (5.3.2.35) and the receipt text's stat words
MESSAGE_STATES = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
STATE_MAP = {
    "ENROUTE": ReceiptState.EN_ROUTE,
    "DELIVRD": ReceiptState.DELIVERED,
    "EXPIRED": ReceiptState.EXPIRED,
    "DELETED": ReceiptState.FAILED,
    "UNDELIV": ReceiptState.FAILED,
    "ACCEPTD": ReceiptState.ACCEPTED,  # taken by the SMSC, not proof the handset has it
    "UNKNOWN": ReceiptState.UNKNOWN,
    "REJECTD": ReceiptState.FAILED,
}
_ID = re.compile(rb"\bid:\s*([^\s]+)", re.IGNORECASE)
_STAT = re.compile(rb"\bstat:\s*([A-Za-z]+)", re.IGNORECASE)
_ERR = re.compile(rb"\berr:\s*([0-9A-Za-z]+)", re.IGNORECASE)
_DONE = re.compile(rb"\bdone date:\s*([0-9]{10,12})", re.IGNORECASE)


def is_receipt(message: ShortMessage) -> bool:
    """Whether a deliver_sm is a delivery receipt rather than a message from a handset."""
    return message.esm_class & ESM_CLASS_RECEIPT_MASK == ESM_CLASS_DELIVERY_RECEIPT


def _smpp_time(raw: bytes) -> datetime | None:
    """YYMMDDhhmm[ss] in UTC, as receipts write it; None when unreadable. Sliced rather than strptime'd: every
    receipt carries two of these."""
    t = raw[:12]
    if len(t) < 10 or not t.isdigit():
        return None
    try:
        return datetime(
            2000 + int(t[0:2]), int(t[2:4]), int(t[4:6]), int(t[6:8]), int(t[8:10]),
            int(t[10:12]) if len(t) == 12 else 0, tzinfo=UTC,
        )  # fmt: skip
    except ValueError:
        return None


def parse_receipt(
    message: ShortMessage, received_at: datetime | None = None, keys: MutableMapping[str, str] | None = None
) -> Receipt | None:
    """The Receipt a deliver_sm carries, or None when it names no message id.

    The TLVs receipted_message_id and message_state win over the text; the text fills what they lack. `keys`
    maps the message ids of recent submits to their messages' keys: a receipt found there carries its key, and
    a final one takes its id out (no later receipt is expected for it).
    """
    text = message.short_message or message.tlvs.get(0x0424, b"")
    remote_id = (
        message.tlvs.get(TAG_RECEIPTED_MESSAGE_ID, b"").rstrip(b"\x00").decode("ascii", errors="replace")
    )
    if not remote_id and (m := _ID.search(text)):
        remote_id = m.group(1).decode("ascii", errors="replace")
    if not remote_id:
        return None
    raw_state = ""
    if state_tlv := message.tlvs.get(TAG_MESSAGE_STATE):
        raw_state = MESSAGE_STATES.get(state_tlv[0], "UNKNOWN")
    elif m := _STAT.search(text):
        raw_state = m.group(1).decode("ascii").upper()
    error_code = ""
    if net_err := message.tlvs.get(TAG_NETWORK_ERROR_CODE):
        error_code = net_err.hex()
    elif m := _ERR.search(text):
        error_code = m.group(1).decode("ascii")
    done = _DONE.search(text)
    state = STATE_MAP.get(raw_state, ReceiptState.UNKNOWN)
    key = ""
    if keys is not None:
        key = keys.pop(remote_id, "") if state.is_final else keys.get(remote_id, "")
    return Receipt(
        remote_id=remote_id,
        state=state,
        raw_state=raw_state,
        error_code=error_code,
        done_at=_smpp_time(done.group(1)) if done else None,
        received_at=received_at,
        key=key,
    )
