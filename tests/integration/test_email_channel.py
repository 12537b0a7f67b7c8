"""Partner emails through a real SMTP server (aiosmtpd on 127.0.0.1): what the partner receives, decoded; the
server's refusals judged permanent or temporary; the server down and back; a session the server closed; an
address that is no address, refused before anything is sent."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator

import pytest

from channels.base import FailureKind, HealthState, SendOutcome
from channels.email.client import EmailChannel
from channels.partner import PartnerChannel, PartnerMessage
from tests.factories_messages import DATA
from tests.peers.smtp_fixture import SmtpServer

SENDER = "warnings@wuhai.example.cn"
PARTNER = "duty@haibowan-edu.example.cn"
CAP = (DATA / "heat_orange_alert.xml").read_text(encoding="utf-8")
SUBJECT = "乌海市气象台发布高温橙色预警[Ⅱ级/严重]"
TEXT = "【乌海气象】乌海市气象台2017年07月09日16时发布高温橙色预警信号：预计未来24小时海勃湾区、乌达区最高气温将升至37℃以上。\n请做好防暑降温工作。"
MESSAGE = PartnerMessage(
    message_id="pd-41-1",
    address=PARTNER,
    body=json.dumps({"identifier": "15030041600000_20170709160000"}).encode(),
    cap_xml=CAP,
    subject=SUBJECT,
    text=TEXT,
    timestamp=1_499_587_200,
    cap_filename="15030041600000_20170709160000.cap.xml",
)


@pytest.fixture
async def channel(smtp_server: SmtpServer) -> AsyncIterator[EmailChannel]:
    channel = EmailChannel(smtp_server.host, smtp_server.port, SENDER, timeout_s=2.0)
    yield channel
    await channel.close()


async def test_the_partner_gets_the_chinese_text_and_the_exact_cap_document(
    channel: EmailChannel, smtp_server: SmtpServer
) -> None:
    assert isinstance(channel, PartnerChannel) and channel.name == "email"
    result = await channel.deliver(MESSAGE)
    assert (result.outcome, result.status, result.failure, result.error) == (
        SendOutcome.ACCEPTED,
        250,
        None,
        "",
    )
    assert result.latency_ms >= 0
    (mail,) = await smtp_server.wait_for(1)
    assert (mail.mail_from, mail.rcpt_tos) == (SENDER, (PARTNER,))
    # headers are ASCII on the wire (any server takes them), and decode to the Chinese headline
    assert mail.data.isascii() and b"=?utf-8?" in mail.data
    email = mail.email
    assert email["Subject"] == SUBJECT and email["From"] == SENDER and email["To"] == PARTNER
    assert email["Message-ID"] == "<pd-41-1@wuhai.example.cn>" and email["X-Warning-Message-Id"] == "pd-41-1"
    assert email["Date"].datetime.tzinfo is not None
    assert email.get_content_type() == "multipart/mixed"
    body, attachment = email.iter_parts()
    assert body.get_content_type() == "text/plain" and body.get_content_charset() == "utf-8"
    # text in MIME's canonical form: lines end in CRLF, the last one too
    assert body.get_content() == TEXT.replace("\n", "\r\n") + "\r\n"
    assert attachment.get_content_type() == "application/cap+xml"
    assert attachment.get_filename() == "15030041600000_20170709160000.cap.xml"
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_payload(decode=True) == CAP.encode("utf-8")
    assert channel.health().counters["accepted"] == 1


async def test_the_message_id_is_stable_for_a_delivery_and_safe_in_the_header(
    channel: EmailChannel, smtp_server: SmtpServer
) -> None:
    again = dataclasses.replace(MESSAGE, timestamp=MESSAGE.timestamp + 300)  # a retry, later
    other = dataclasses.replace(MESSAGE, message_id="pd-42-1")
    odd = dataclasses.replace(MESSAGE, message_id="pd 43\r\n<1>..")
    for message in (MESSAGE, again, other, odd):
        assert (await channel.deliver(message)).outcome is SendOutcome.ACCEPTED
    mails = await smtp_server.wait_for(4)
    ids = [m.email["Message-ID"] for m in mails]
    assert ids[0] == ids[1] == "<pd-41-1@wuhai.example.cn>" and ids[2] == "<pd-42-1@wuhai.example.cn>"
    assert ids[3] == "<pd%2043%0D%0A%3C1%3E%2E%2E@wuhai.example.cn>"
    assert mails[3].email["X-Warning-Message-Id"] == "pd 43 <1>.."  # one header line, no injection
    assert len(mails[3].email.keys()) == len(mails[0].email.keys())
    # four messages, one session
    assert channel.health().counters["connects"] == 1 and channel.health().counters["reused"] == 3


async def test_a_recipient_refused_with_550_is_a_permanent_failure_and_the_session_goes_on(
    channel: EmailChannel, smtp_server: SmtpServer
) -> None:
    smtp_server.answers["gone@haibowan-edu.example.cn"] = (
        "550 5.1.1 <gone@haibowan-edu.example.cn>: no such user"
    )
    result = await channel.deliver(dataclasses.replace(MESSAGE, address="gone@haibowan-edu.example.cn"))
    assert (result.outcome, result.failure, result.status) == (
        SendOutcome.PERMANENT_FAILURE, FailureKind.REFUSED, 550
    )  # fmt: skip
    assert result.error == "RCPT TO: 550 5.1.1 <gone@haibowan-edu.example.cn>: no such user"
    assert (await channel.deliver(MESSAGE)).outcome is SendOutcome.ACCEPTED
    (mail,) = await smtp_server.wait_for(1)
    assert mail.rcpt_tos == (PARTNER,)
    assert (
        channel.health().counters | {"refused": 1, "accepted": 1, "connects": 1} == channel.health().counters
    )


@pytest.mark.parametrize("code", [421, 450, 451, 452])
async def test_a_recipient_deferred_with_4xx_is_a_temporary_failure(
    channel: EmailChannel, smtp_server: SmtpServer, code: int
) -> None:
    smtp_server.answers[PARTNER] = f"{code} 4.3.0 try again later"
    result = await channel.deliver(MESSAGE)
    assert (result.outcome, result.failure, result.status) == (
        SendOutcome.TEMPORARY_FAILURE, FailureKind.REMOTE_ERROR, code
    )  # fmt: skip
    assert result.error == f"RCPT TO: {code} 4.3.0 try again later"
    assert smtp_server.messages() == []
    del smtp_server.answers[PARTNER]  # the server takes it now: the retry goes through
    assert (await channel.deliver(MESSAGE)).outcome is SendOutcome.ACCEPTED
    await smtp_server.wait_for(1)


async def test_a_server_that_refuses_our_sender_is_a_temporary_failure_and_the_channel_is_down(
    channel: EmailChannel, smtp_server: SmtpServer
) -> None:
    # a wrong sender in the settings: every message would meet it, so none is dropped for good
    smtp_server.mail_answer = "553 5.7.1 <warnings@wuhai.example.cn>: sender not allowed"
    result = await channel.deliver(MESSAGE)
    assert (result.outcome, result.failure, result.status) == (
        SendOutcome.TEMPORARY_FAILURE, FailureKind.REMOTE_ERROR, 553
    )  # fmt: skip
    assert result.error.startswith("MAIL FROM: 553 5.7.1")
    assert channel.health().state is HealthState.DOWN and "sender not allowed" in channel.health().detail
    smtp_server.mail_answer = None  # the configuration fixed
    assert (await channel.deliver(MESSAGE)).outcome is SendOutcome.ACCEPTED
    assert channel.health().state is HealthState.UP
    await smtp_server.wait_for(1)


async def test_the_server_down_is_link_down_and_delivery_resumes_when_it_is_back(
    channel: EmailChannel, smtp_server: SmtpServer
) -> None:
    assert (await channel.deliver(MESSAGE)).outcome is SendOutcome.ACCEPTED  # a session is now idle
    smtp_server.stop()
    for _ in range(2):  # the idle session found closed, then no session at all
        result = await channel.deliver(MESSAGE)
        assert (result.outcome, result.failure) == (SendOutcome.TEMPORARY_FAILURE, FailureKind.LINK_DOWN)
        assert result.status is None and 0 < len(result.error) <= 300 and "\n" not in result.error
    health = channel.health()
    assert health.state is HealthState.DOWN and str(smtp_server.port) in health.detail
    smtp_server.start()
    result = await channel.deliver(MESSAGE)
    assert (result.outcome, result.status) == (SendOutcome.ACCEPTED, 250)
    assert len(await smtp_server.wait_for(2)) == 2
    assert channel.health().state is HealthState.UP and channel.health().counters["link_down"] == 2


async def test_a_session_the_server_closed_while_idle_is_replaced_without_a_failure(
    channel: EmailChannel, smtp_server: SmtpServer
) -> None:
    assert (await channel.deliver(MESSAGE)).outcome is SendOutcome.ACCEPTED
    smtp_server.drop_connections()
    assert (await channel.deliver(MESSAGE)).outcome is SendOutcome.ACCEPTED
    assert len(await smtp_server.wait_for(2)) == 2
    assert channel.health().counters["connects"] == 2


async def test_a_server_that_does_not_answer_data_in_time_is_a_timeout(
    channel: EmailChannel, smtp_server: SmtpServer
) -> None:
    smtp_server.slow[PARTNER] = 3.0  # beyond the channel's 2 s
    result = await channel.deliver(MESSAGE)
    assert (result.outcome, result.failure) == (SendOutcome.TEMPORARY_FAILURE, FailureKind.TIMEOUT)
    assert 1900 <= result.latency_ms < 3000
    smtp_server.slow.clear()
    assert (await channel.deliver(MESSAGE)).outcome is SendOutcome.ACCEPTED  # on a new session


@pytest.mark.parametrize(
    "address",
    [
        "",
        "duty",
        "duty@",
        "Duty <duty@haibowan-edu.example.cn>",
        "duty@haibowan-edu.example.cn, boss@haibowan-edu.example.cn",
        "duty@haibowan-edu.example.cn\r\nBcc: spy@example.com",
        " duty@haibowan-edu.example.cn",
        '"duty"@haibowan-edu.example.cn',
        "duty..x@haibowan-edu.example.cn",
        "值班@haibowan-edu.example.cn",
        "duty@-haibowan.example.cn",
        "x" * 65 + "@haibowan-edu.example.cn",
    ],
)
async def test_an_address_that_is_not_one_plain_address_is_invalid_and_nothing_is_sent(
    channel: EmailChannel, smtp_server: SmtpServer, address: str
) -> None:
    result = await channel.deliver(dataclasses.replace(MESSAGE, address=address))
    assert (result.outcome, result.failure) == (SendOutcome.PERMANENT_FAILURE, FailureKind.INVALID)
    assert "not a plain email address" in result.error and "\n" not in result.error
    assert channel.health().counters["connects"] == 0 and smtp_server.messages() == []


async def test_concurrent_deliveries_share_at_most_the_pools_sessions(smtp_server: SmtpServer) -> None:
    channel = EmailChannel(smtp_server.host, smtp_server.port, SENDER, connections=3)
    try:
        messages = [
            dataclasses.replace(MESSAGE, message_id=f"pd-{i}", address=f"duty{i}@example.cn")
            for i in range(30)
        ]
        results = await asyncio.gather(*(channel.deliver(m) for m in messages))
        assert [r.outcome for r in results] == [SendOutcome.ACCEPTED] * 30
        health = channel.health()
        assert health.counters["connects"] == 3 and health.links_up == 3 and health.in_flight == 0
    finally:
        await channel.close()
    mails = await smtp_server.wait_for(30)
    assert sorted(m.rcpt_tos[0] for m in mails) == sorted(m.address for m in messages)
    assert {m.email["Message-ID"] for m in mails} == {f"<pd-{i}@wuhai.example.cn>" for i in range(30)}


async def test_a_delivery_cancelled_mid_transaction_leaves_no_session_behind(
    channel: EmailChannel, smtp_server: SmtpServer
) -> None:
    smtp_server.slow[PARTNER] = 1.0
    task = asyncio.create_task(channel.deliver(MESSAGE))
    await asyncio.sleep(0.3)  # inside DATA
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    health = channel.health()
    assert health.in_flight == 0 and health.links_up == 0
    smtp_server.slow.clear()
    assert (await channel.deliver(MESSAGE)).outcome is SendOutcome.ACCEPTED
