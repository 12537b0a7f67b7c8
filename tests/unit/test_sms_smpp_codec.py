"""SMPP PDU codec and receipt parsing (pure)."""

from __future__ import annotations

import doctest

import pytest

import channels.smpp.pdu as pdu_module
import channels.smpp.receipts as receipts_module
from channels.base import ReceiptState
from channels.smpp import pdu as p
from channels.smpp.receipts import is_receipt, parse_receipt
from channels.sms.encoding import SegmentMethod, split_text


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(pdu_module).failed == 0
    assert doctest.testmod(receipts_module).failed == 0


def test_a_submit_sm_round_trips_through_the_decoder() -> None:
    part = split_text("预" * 71, SegmentMethod.UDH, reference=5)[0]
    body = p.submit_sm_body("12121", "13904770001", part.short_message, data_coding=8, esm_class=0x40)
    decoded = p.decode_short_message(body)
    assert (decoded.source_addr, decoded.destination_addr) == ("12121", "13904770001")
    assert (decoded.esm_class, decoded.data_coding, decoded.registered_delivery) == (0x40, 8, 1)
    assert decoded.short_message == part.short_message


def test_tlvs_round_trip() -> None:
    (part,) = split_text("预" * 200, SegmentMethod.PAYLOAD)
    body = p.submit_sm_body("1", "2", part.short_message, data_coding=8, tlvs=part.tlvs)
    assert p.decode_short_message(body).tlvs == part.tlvs


def test_a_short_message_over_254_octets_is_refused() -> None:
    with pytest.raises(p.PduError):
        p.submit_sm_body("1", "2", b"x" * 255, data_coding=0)


def test_the_reader_cuts_a_stream_split_anywhere_into_whole_pdus() -> None:
    stream = b"".join(p.encode_pdu(p.ENQUIRE_LINK, n) for n in range(1, 6))
    reader = p.PduReader()
    found = []
    for i in range(0, len(stream), 7):
        reader.feed(stream[i : i + 7])
        found += [x.sequence_number for x in reader.pdus()]
    assert found == [1, 2, 3, 4, 5]


def test_an_absurd_command_length_is_an_error() -> None:
    reader = p.PduReader()
    reader.feed(p.HEADER.pack(3, p.ENQUIRE_LINK, 0, 1))
    with pytest.raises(p.PduError):
        list(reader.pdus())


def deliver(text: bytes, tlvs: dict[int, bytes] | None = None, esm_class: int = 0x04) -> p.ShortMessage:
    return p.decode_short_message(
        p.submit_sm_body("139", "121", text, data_coding=0, esm_class=esm_class, tlvs=tlvs)
    )


def test_receipt_tlvs_win_over_the_text() -> None:
    message = deliver(
        b"id:other sub:001 dlvrd:000 submit date:2507011200 done date:2507011201 stat:UNDELIV err:001 text:",
        {p.TAG_RECEIPTED_MESSAGE_ID: b"abc123\x00", p.TAG_MESSAGE_STATE: bytes([2])},
    )
    receipt = parse_receipt(message)
    assert receipt is not None
    assert (receipt.remote_id, receipt.state, receipt.raw_state) == (
        "abc123",
        ReceiptState.DELIVERED,
        "DELIVRD",
    )


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("DELIVRD", ReceiptState.DELIVERED),
        ("ACCEPTD", ReceiptState.ACCEPTED),
        ("EXPIRED", ReceiptState.EXPIRED),
        ("DELETED", ReceiptState.FAILED),
        ("UNDELIV", ReceiptState.FAILED),
        ("REJECTD", ReceiptState.FAILED),
        ("UNKNOWN", ReceiptState.UNKNOWN),
        ("ENROUTE", ReceiptState.EN_ROUTE),
    ],
)
def test_every_final_state_of_the_text_maps(stat: str, state: ReceiptState) -> None:
    text = f"id:7 sub:001 dlvrd:000 submit date:2507011200 done date:2507011201 stat:{stat} err:000 text:"
    receipt = parse_receipt(deliver(text.encode()))
    assert receipt is not None and receipt.state is state and receipt.state.is_final == (stat != "ENROUTE")


def test_a_message_from_a_handset_is_not_a_receipt() -> None:
    assert not is_receipt(deliver(b"hello", esm_class=0))
    assert parse_receipt(deliver(b"no id here")) is None


def test_a_receipt_names_its_message_key_while_the_channel_remembers_it() -> None:
    keys = {"7": "12-1/sms/40", "8": "12-1/sms/41"}
    text = "id:{} sub:001 dlvrd:000 submit date:2507011200 done date:2507011201 stat:{} err:000 text:"
    interim = parse_receipt(deliver(text.format(7, "ENROUTE").encode()), keys=keys)
    assert (
        interim is not None and interim.key == "12-1/sms/40" and "7" in keys
    )  # a final one is still to come
    final = parse_receipt(deliver(text.format(7, "DELIVRD").encode()), keys=keys)
    assert final is not None and final.key == "12-1/sms/40" and "7" not in keys  # nothing more is expected
    again = parse_receipt(deliver(text.format(7, "DELIVRD").encode()), keys=keys)  # an SMSC resending it
    assert again is not None and again.key == "" and keys == {"8": "12-1/sms/41"}
