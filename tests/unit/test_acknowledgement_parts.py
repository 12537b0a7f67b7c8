"""The pure parts of acknowledgements and messages from phones: the escalation table, codes, tokens, the call
text within its segments, reading replies, decoding mobile-originated text, relayers' link tokens."""

from __future__ import annotations

import pytest

from channels.smpp.mobile import decode_text
from channels.sms.encoding import segment_count
from warnings_svc.dissemination.partners import acknowledgements as acks
from warnings_svc.dissemination.partners.inbound import read_text, recipient_of_token, relay_token
from warnings_svc.settings import AcknowledgementSettings


def test_every_configured_step_has_a_deadline_move_and_only_the_call_list_ends_waiting() -> None:
    for step in (*AcknowledgementSettings().steps, "end"):
        move = acks.ack_transition("waiting", "deadline", step)
        assert move.state == ("calling" if step in ("call_list", "end") else "waiting")
    assert acks.ack_transition("waiting", "deadline", "leader").call == "leader"
    assert acks.ack_transition("calling", "acknowledge").state == "acknowledged"


@pytest.mark.parametrize(
    ("state", "event"),
    [
        ("acknowledged", "acknowledge"),  # a duplicate
        ("closed", "acknowledge"),  # for a warning no longer in force
        ("acknowledged", "deadline"),
        ("calling", "deadline"),
        ("waiting", "not_reached"),
        ("acknowledged", "close"),
    ],
)
def test_the_table_refuses_what_it_does_not_list(state: str, event: str) -> None:
    with pytest.raises(acks.AckStateError):
        acks.ack_transition(state, event, "again" if event == "deadline" else "-")


def test_step_names_follow_the_settings() -> None:
    steps = ("deputy", "call_list")
    assert [acks.step_name(steps, i) for i in range(3)] == ["deputy", "call_list", "end"]


def test_codes_avoid_the_taken_ones_and_tokens_are_stored_hashed() -> None:
    taken = {str(c) for c in range(1000, 9999)}  # every 4-digit code but 9999
    assert acks.new_code(taken) == "9999"
    taken.add("9999")
    assert len(acks.new_code(taken)) == 6
    token = acks.new_token()
    assert len(token) == 24 and acks.token_hash(token) != token.encode()
    assert len(acks.token_hash(token)) == 32


def test_the_call_text_fits_three_segments_even_with_a_long_headline() -> None:
    link = "https://warnings.example.cn/ack/" + "x" * 24
    short = acks.call_text("乌海市气象台", "乌海市气象台发布高温红色预警", "1234", link)
    assert short == (
        "【乌海市气象台】请确认收到：乌海市气象台发布高温红色预警。回复 1234 确认，或打开 " + link
    )
    assert segment_count(short) == 2
    long = acks.call_text("乌海市气象台", "高温" * 200, "1234", link)
    assert segment_count(long) == 3 and long.endswith(f"…。回复 1234 确认，或打开 {link}")
    assert acks.call_text("乌海市气象台", "预警", "1234", "").endswith("回复 1234 确认")


@pytest.mark.parametrize(
    ("text", "kind", "number", "code"),
    [
        ("1234", "code", None, "1234"),
        ("收到1234", "code", None, "1234"),
        ("确认 1234", "code", None, "1234"),
        ("收到１２３４", "code", None, "1234"),  # full-width digits, as Chinese keyboards type them
        ("已传达 120", "relay", 120, ""),
        ("已转发120人", "relay", 120, ""),
        ("传达了35户", "relay", 35, ""),
        ("好的", "other", None, ""),
        ("123", "other", None, ""),
        # scores of the service (the plan's satisfaction): the whole message a digit 1-5, maybe introduced
        ("4", "score", 4, ""),
        (" ５ ", "score", 5, ""),
        ("评分 4", "score", 4, ""),
        ("打分：5", "score", 5, ""),
        ("满意度3", "score", 3, ""),
        ("SCORE 4", "score", 4, ""),
        ("score: 2", "score", 2, ""),
        ("4分", "score", 4, ""),
        ("6", "other", None, ""),
        ("0", "other", None, ""),
        ("评分 45", "other", None, ""),
        ("我给 4", "other", None, ""),
    ],
)
def test_replies_are_read(text: str, kind: str, number: int | None, code: str) -> None:
    reading = read_text(text)
    assert (reading.kind, reading.number, reading.code) == (kind, number, code)


def test_mobile_originated_text_is_decoded_by_data_coding() -> None:
    assert decode_text("收到".encode("utf-16-be"), 0x08) == "收到"
    assert decode_text(b"OK\x001234", 0x00) == "OK@1234"  # GSM 0x00 is '@'
    assert decode_text(b"\xe9", 0x03) == "é"


def test_relay_tokens_name_their_recipient_and_cannot_be_forged() -> None:
    secret = b"s" * 32
    token = relay_token(secret, 42)
    assert recipient_of_token(secret, token) == 42
    assert recipient_of_token(b"t" * 32, token) is None
    assert recipient_of_token(secret, "43." + token.split(".", 1)[1]) is None
    assert recipient_of_token(secret, "not-a-token") is None
