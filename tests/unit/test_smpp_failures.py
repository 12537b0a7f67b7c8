"""The SMPP adapter's judgement of a failure: command statuses and link errors as a `FailureKind`."""

from __future__ import annotations

import pytest

from channels.base import FailureKind, OutboundMessage, SendOutcome
from channels.smpp import pdu as p
from channels.smpp.esme import (
    BindRefused,
    LinkDown,
    SmppSettings,
    SmsChannel,
    failure_of_error,
    failure_of_status,
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (p.ESME_RTHROTTLED, FailureKind.THROTTLED),
        (p.ESME_RMSGQFUL, FailureKind.THROTTLED),
        (p.ESME_RSYSERR, FailureKind.REMOTE_ERROR),
        (p.ESME_RINVBNDSTS, FailureKind.REMOTE_ERROR),
        (p.ESME_RX_T_APPN, FailureKind.REMOTE_ERROR),
        (p.ESME_RINVDSTADR, FailureKind.REFUSED),
        (p.ESME_RINVMSGLEN, FailureKind.REFUSED),
        (0x45, FailureKind.REFUSED),  # ESME_RSUBMITFAIL, a status the codec has no name for
    ],
)
def test_a_command_status_is_judged_by_its_meaning(status: int, kind: FailureKind) -> None:
    assert failure_of_status(status) is kind


@pytest.mark.parametrize("status", sorted({*p.STATUS_NAMES, 0x45} - {p.ESME_ROK}))
def test_a_status_the_adapter_retries_is_a_retryable_kind_and_the_others_are_not(status: int) -> None:
    assert failure_of_status(status).retryable == (status in p.TEMPORARY_STATUSES)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (LinkDown("not bound"), FailureKind.LINK_DOWN),
        (LinkDown("the link went down with the request in flight"), FailureKind.LINK_DOWN),
        (BindRefused("bind_transceiver answered 0x80000009 ESME_RBINDFAIL"), FailureKind.LINK_DOWN),
        (ConnectionResetError(104, "Connection reset by peer"), FailureKind.LINK_DOWN),
        (ConnectionRefusedError(111, "Connection refused"), FailureKind.LINK_DOWN),
        (OSError(113, "No route to host"), FailureKind.LINK_DOWN),
        (TimeoutError("no response in time"), FailureKind.TIMEOUT),
        (TimeoutError(), FailureKind.TIMEOUT),
    ],
)
def test_an_error_while_submitting_is_judged_by_its_type_not_its_words(
    error: BaseException, kind: FailureKind
) -> None:
    assert failure_of_error(error) is kind


def test_only_refused_and_invalid_items_are_not_worth_sending_again() -> None:
    assert {k for k in FailureKind if not k.retryable} == {FailureKind.REFUSED, FailureKind.INVALID}


def settings() -> SmppSettings:
    return SmppSettings(host="127.0.0.1", port=1, system_id="test", password="secret")


async def test_a_closed_channel_fails_each_item_as_closed_without_touching_the_network() -> None:
    channel = SmsChannel(settings())
    await channel.close()
    (result,) = await channel.send_batch([OutboundMessage("k1", "+8613800000000", "暴雨预警")])
    assert (result.outcome, result.failure) == (SendOutcome.TEMPORARY_FAILURE, FailureKind.CLOSED)


async def test_a_text_that_cannot_be_encoded_is_invalid_for_good() -> None:
    channel = SmsChannel(settings())
    try:
        (result,) = await channel.send_batch([OutboundMessage("k1", "+8613800000000", "")])
    finally:
        await channel.close()
    assert (result.outcome, result.failure) == (SendOutcome.PERMANENT_FAILURE, FailureKind.INVALID)
