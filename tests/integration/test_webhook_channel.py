"""The webhook channel against real HTTP receivers on 127.0.0.1 that verify with the `standardwebhooks`
package, as a partner would; and the SSRF guard against literal and named private addresses."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from standardwebhooks import Webhook, WebhookVerificationError

from channels.base import FailureKind, HealthState, SendOutcome
from channels.partner import PartnerChannel, PartnerMessage
from channels.webhooks.client import (
    EndpointRefused,
    EndpointUnresolved,
    WebhookChannel,
    check_endpoint,
)
from channels.webhooks.signing import new_secret
from tests.loopback import serving
from tests.ports import free_port

LOOPBACK = (ipaddress.ip_network("127.0.0.1/32"),)
SLEEP_S = 3.0  # how long /sleep keeps a request; the channel under test gives up after TIMEOUT_S
TIMEOUT_S = 0.5


@dataclass
class Receiver:
    """A partner's endpoint: verifies every POST with its own secret and records what came."""

    base: str
    secret: str
    received: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    verified: list[dict[str, object]] = field(default_factory=list)

    def hits(self, path: str) -> int:
        return sum(1 for p, _, _ in self.received if p == path)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(base="", secret=new_secret())
    retry_date = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        r.received.append((request.path, body, dict(request.headers)))
        name = request.match_info["name"]
        if name == "ok":
            try:
                r.verified.append(Webhook(r.secret).verify(body, dict(request.headers)))
            except WebhookVerificationError as e:
                return web.Response(status=401, text=str(e))
            return web.Response(status=204)
        if name == "big":
            return web.Response(status=200, body=b"x" * 2_000_000)
        if name == "gone":
            return web.Response(status=410, text="subscription removed")
        if name == "slow-seconds":
            return web.Response(status=429, headers={"Retry-After": "30"})
        if name == "slow-date":
            return web.Response(status=503, headers={"Retry-After": retry_date})
        if name == "slow-nonsense":
            return web.Response(status=429, headers={"Retry-After": "when I feel like it"})
        if name == "slow-forever":
            return web.Response(status=504, headers={"Retry-After": "99999999"})
        if name == "fail":
            return web.Response(
                status=500, text="Internal error\r\n<html>" + "stack trace line\n" * 5000 + "</html>"
            )
        if name == "forbidden":
            return web.Response(status=403, text="no")
        if name == "redirect":
            raise web.HTTPFound(location="/hook/ok")
        if name == "sleep":
            await asyncio.sleep(SLEEP_S)
            return web.Response(status=200)
        return web.Response(status=404)

    app = web.Application()
    app.router.add_post("/hook/{name}", handle)
    async with serving(app) as base:
        r.base = base
        yield r


@pytest.fixture
async def channel() -> AsyncIterator[WebhookChannel]:
    ch = WebhookChannel(allow_private=LOOPBACK, timeout_s=TIMEOUT_S, max_response_bytes=4096)
    yield ch
    await ch.close()


def message(address: str, secrets: tuple[str, ...], **changes: object) -> PartnerMessage:
    body = json.dumps(
        {
            "identifier": "15030041600000_20261205204700",
            "hazard": "gale",
            "level": "blue",
            "msgType": "Alert",
            "headline": "乌海市气象台发布大风蓝色预警",
            "areas": [{"code": "150302000000", "name": "海勃湾区"}],
        },
        ensure_ascii=False,
    ).encode()
    return replace(
        PartnerMessage(
            message_id="msg_41-1-3",
            address=address,
            body=body,
            cap_xml="<alert/>",
            subject="乌海市气象台发布大风蓝色预警",
            text="大风蓝色预警",
            timestamp=int(time.time()),
            secrets=secrets,
        ),
        **changes,
    )


async def test_a_delivery_arrives_byte_for_byte_and_verifies_with_the_partners_secret(
    receiver: Receiver, channel: WebhookChannel
) -> None:
    assert isinstance(channel, PartnerChannel) and channel.name == "webhook"
    m = message(f"{receiver.base}/hook/ok", (receiver.secret,))
    before = len(receiver.verified)
    result = await channel.deliver(m)
    assert (result.outcome, result.status, result.failure, result.error) == (
        SendOutcome.ACCEPTED,
        204,
        None,
        "",
    )
    assert result.latency_ms >= 0 and not result.disable
    path, body, headers = receiver.received[-1]
    assert path == "/hook/ok" and body == m.body
    assert headers["webhook-id"] == "msg_41-1-3" and headers["webhook-timestamp"] == str(m.timestamp)
    assert headers["Content-Type"] == "application/json" and headers["User-Agent"] == "warnings-svc"
    assert (
        len(receiver.verified) == before + 1
        and receiver.verified[-1]["headline"] == "乌海市气象台发布大风蓝色预警"
    )
    # a retry is the same message: the same webhook-id, so the partner can drop the duplicate
    again = await channel.deliver(replace(m, timestamp=m.timestamp + 5))
    assert again.outcome is SendOutcome.ACCEPTED and receiver.received[-1][2]["webhook-id"] == "msg_41-1-3"
    health = channel.health()
    assert health.state is HealthState.UP and health.counters["delivered"] == 2 and health.in_flight == 0


async def test_during_a_rotation_a_receiver_holding_the_old_secret_still_verifies(
    receiver: Receiver, channel: WebhookChannel
) -> None:
    result = await channel.deliver(message(f"{receiver.base}/hook/ok", (new_secret(), receiver.secret)))
    assert result.outcome is SendOutcome.ACCEPTED
    assert len(receiver.received[-1][2]["webhook-signature"].split(" ")) == 2
    # signed only with a secret the receiver does not hold: the receiver refuses (401), a temporary failure
    refused = await channel.deliver(message(f"{receiver.base}/hook/ok", (new_secret(),)))
    assert (refused.outcome, refused.status, refused.failure) == (
        SendOutcome.TEMPORARY_FAILURE,
        401,
        FailureKind.REMOTE_ERROR,
    )
    assert "No matching signature" in refused.error


async def test_410_gone_is_permanent_and_disables_the_endpoint(
    receiver: Receiver, channel: WebhookChannel
) -> None:
    result = await channel.deliver(message(f"{receiver.base}/hook/gone", (new_secret(),)))
    assert (result.outcome, result.status, result.failure, result.disable) == (
        SendOutcome.PERMANENT_FAILURE,
        410,
        FailureKind.REFUSED,
        True,
    )
    assert "410" in result.error and "subscription removed" in result.error


@pytest.mark.parametrize(
    ("name", "status", "wait"),
    [
        ("slow-seconds", 429, (30.0, 30.0)),
        ("slow-date", 503, (100.0, 120.0)),  # an HTTP-date two minutes ahead, as the receiver started
        ("slow-nonsense", 429, None),
        ("slow-forever", 504, (86400.0, 86400.0)),
    ],
)
async def test_429_502_503_504_slow_down_with_the_retry_after_they_give(
    receiver: Receiver, channel: WebhookChannel, name: str, status: int, wait: tuple[float, float] | None
) -> None:
    result = await channel.deliver(message(f"{receiver.base}/hook/{name}", (new_secret(),)))
    assert (result.outcome, result.status, result.failure) == (
        SendOutcome.TEMPORARY_FAILURE,
        status,
        FailureKind.THROTTLED,
    )
    if wait is None:
        assert result.retry_after_s is None
    else:
        assert result.retry_after_s is not None and wait[0] <= result.retry_after_s <= wait[1]


async def test_500_is_temporary_with_its_status_and_a_short_excerpt_of_the_answer(
    receiver: Receiver, channel: WebhookChannel
) -> None:
    result = await channel.deliver(message(f"{receiver.base}/hook/fail", (new_secret(),)))
    assert (result.outcome, result.status, result.failure) == (
        SendOutcome.TEMPORARY_FAILURE,
        500,
        FailureKind.REMOTE_ERROR,
    )
    assert result.error.startswith("HTTP 500") and "Internal error" in result.error
    assert len(result.error) <= 300 and "\n" not in result.error and "\r" not in result.error
    assert result.error.count("stack trace line") < 10
    forbidden = await channel.deliver(message(f"{receiver.base}/hook/forbidden", (new_secret(),)))
    assert (forbidden.outcome, forbidden.status) == (SendOutcome.TEMPORARY_FAILURE, 403)


async def test_a_large_answer_is_read_only_up_to_the_limit(
    receiver: Receiver, channel: WebhookChannel
) -> None:
    result = await channel.deliver(message(f"{receiver.base}/hook/big", (new_secret(),)))
    assert (result.outcome, result.status) == (SendOutcome.ACCEPTED, 200)


async def test_a_receiver_that_answers_too_late_is_a_timeout(
    receiver: Receiver, channel: WebhookChannel
) -> None:
    started = time.monotonic()
    result = await channel.deliver(message(f"{receiver.base}/hook/sleep", (new_secret(),)))
    assert (result.outcome, result.failure, result.status) == (
        SendOutcome.TEMPORARY_FAILURE,
        FailureKind.TIMEOUT,
        None,
    )
    assert time.monotonic() - started < SLEEP_S - 1 and result.latency_ms >= TIMEOUT_S * 1000 - 50
    assert receiver.hits("/hook/sleep") >= 1  # it arrived: the partner may have it, hence the webhook-id


async def test_a_named_host_that_answers_too_late_is_a_timeout_within_the_same_bound(
    receiver: Receiver,
) -> None:
    # a name is looked up first: the lookup and the POST together stay within the timeout
    port = receiver.base.rsplit(":", 1)[1]
    named = WebhookChannel(allow_private=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
                           timeout_s=TIMEOUT_S)  # fmt: skip
    try:
        started = time.monotonic()
        result = await named.deliver(message(f"http://localhost:{port}/hook/sleep", (new_secret(),)))
        took = time.monotonic() - started
    finally:
        await named.close()
    assert (result.outcome, result.failure) == (SendOutcome.TEMPORARY_FAILURE, FailureKind.TIMEOUT)
    assert result.error == f"no answer in {TIMEOUT_S:g} s"
    assert TIMEOUT_S - 0.05 <= took < TIMEOUT_S + 0.5


async def test_a_timeout_of_five_seconds_or_more_ends_on_time_not_at_the_next_whole_second() -> None:
    # aiohttp rounds a timeout of 5 s or more up to the next whole second of the loop's clock; a lease counts
    # on an attempt ending within its timeout, so the channel asks for the exact time
    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(30)

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    silent = WebhookChannel(allow_private=LOOPBACK, timeout_s=5.2)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(math.ceil(loop.time()) - loop.time() + 0.05)  # just after a whole second
        result = await silent.deliver(message(f"http://127.0.0.1:{port}/hook", (new_secret(),)))
    finally:
        await silent.close()
        server.close()
    assert (result.outcome, result.failure) == (SendOutcome.TEMPORARY_FAILURE, FailureKind.TIMEOUT)
    assert 5200 <= result.latency_ms < 5400  # rounded up, it would end about 0.75 s later


async def test_a_closed_port_is_link_down(channel: WebhookChannel) -> None:
    result = await channel.deliver(message(f"http://127.0.0.1:{free_port()}/hook", (new_secret(),)))
    assert (result.outcome, result.failure, result.status) == (
        SendOutcome.TEMPORARY_FAILURE,
        FailureKind.LINK_DOWN,
        None,
    )
    assert result.error and len(result.error) <= 300


async def test_a_name_that_does_not_resolve_is_link_down_at_send_time_and_refused_at_subscription(
    channel: WebhookChannel,
) -> None:
    result = await channel.deliver(message("https://no-such-host.invalid/hook", (new_secret(),)))
    assert (result.outcome, result.failure) == (SendOutcome.TEMPORARY_FAILURE, FailureKind.LINK_DOWN)
    with pytest.raises(EndpointUnresolved):
        await check_endpoint("https://no-such-host.invalid/hook")


async def test_a_redirect_is_not_followed(receiver: Receiver, channel: WebhookChannel) -> None:
    ok_before = receiver.hits("/hook/ok")
    result = await channel.deliver(message(f"{receiver.base}/hook/redirect", (receiver.secret,)))
    assert (result.outcome, result.status, result.failure) == (
        SendOutcome.TEMPORARY_FAILURE,
        302,
        FailureKind.REMOTE_ERROR,
    )
    assert "with a Location" in result.error and "not followed" in result.error
    assert receiver.hits("/hook/ok") == ok_before


async def test_a_message_without_a_secret_or_with_a_bad_one_is_invalid_and_not_posted(
    receiver: Receiver, channel: WebhookChannel
) -> None:
    before = len(receiver.received)
    for secrets in ((), ("not-a-secret",)):
        result = await channel.deliver(message(f"{receiver.base}/hook/ok", secrets))
        assert (result.outcome, result.failure) == (SendOutcome.PERMANENT_FAILURE, FailureKind.INVALID)
        assert result.error
    assert len(receiver.received) == before


async def test_loopback_is_refused_unless_allow_listed(receiver: Receiver) -> None:
    strict = WebhookChannel(timeout_s=TIMEOUT_S)
    try:
        before = len(receiver.received)
        result = await strict.deliver(message(f"{receiver.base}/hook/ok", (receiver.secret,)))
        assert (result.outcome, result.failure) == (SendOutcome.PERMANENT_FAILURE, FailureKind.INVALID)
        assert "127.0.0.1 is a loopback address" in result.error and "allow_private" in result.error
        assert len(receiver.received) == before
    finally:
        await strict.close()
    with pytest.raises(EndpointRefused, match="loopback"):
        await check_endpoint(f"{receiver.base}/hook/ok")
    assert await check_endpoint(f"{receiver.base}/hook/ok", LOOPBACK) == [ipaddress.ip_address("127.0.0.1")]


async def test_the_name_localhost_is_refused_and_when_allow_listed_reached_through_its_vetted_addresses(
    receiver: Receiver,
) -> None:
    port = receiver.base.rsplit(":", 1)[1]
    with pytest.raises(EndpointRefused, match=r"localhost resolves to an address that is a loopback"):
        await check_endpoint(f"http://localhost:{port}/hook/ok")
    strict = WebhookChannel(timeout_s=TIMEOUT_S)
    everything_local = WebhookChannel(
        allow_private=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        timeout_s=TIMEOUT_S,
    )
    try:
        refused = await strict.deliver(message(f"http://localhost:{port}/hook/ok", (receiver.secret,)))
        # a name: its DNS may change back, so the delivery is tried again later (until the warning expires)
        assert (refused.outcome, refused.failure) == (SendOutcome.TEMPORARY_FAILURE, FailureKind.REMOTE_ERROR)
        assert "resolves to an address that is a loopback address" in refused.error
        accepted = await everything_local.deliver(
            message(f"http://localhost:{port}/hook/ok", (receiver.secret,))
        )
        assert accepted.outcome is SendOutcome.ACCEPTED
        assert receiver.received[-1][2]["Host"] == f"localhost:{port}"
    finally:
        await strict.close()
        await everything_local.close()
    # the channel's HTTP client resolves no name on its own, only for a delivery that vetted it (a connection
    # kept alive from a vetted delivery may be reused: it goes where the check looked)
    fresh = WebhookChannel(allow_private=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")))
    try:
        with pytest.raises(aiohttp.ClientConnectorDNSError):
            async with fresh._client().post(f"http://localhost:{port}/hook/ok", data=b"{}"):
                pass
    finally:
        await fresh.close()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://10.0.0.1/hook", "private"),
        ("http://[::1]:8080/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "IPv4-mapped loopback"),
        ("http://[::ffff:10.1.2.3]/hook", "IPv4-mapped private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://0.0.0.0:5432/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://100.64.1.1/", "not a public address"),
        ("http://[fd00::1]/", "private"),
        ("http://[64:ff9b::a00:1]/", "NAT64 private"),
        ("ftp://partner.example.org/hook", "https:// or http://"),
        ("https://user:pw@partner.example.org/hook", "user name or password"),
        ("https://partner.example.org/hook#top", "fragment"),
        ("https://partner.example.org/" + "a" * 2000, "at most 2000"),
        ("https:///hook", "names a host"),
        ("https://partner.example.org/a b", "spaces"),
    ],
)
async def test_private_literals_and_malformed_urls_are_refused_even_with_loopback_allow_listed(
    url: str, words: str
) -> None:
    with pytest.raises(EndpointRefused, match=words) as refused:
        await check_endpoint(url, LOOPBACK)
    assert "\n" not in str(refused.value)
    ch = WebhookChannel(allow_private=LOOPBACK, timeout_s=TIMEOUT_S)
    try:
        result = await ch.deliver(message(url, (new_secret(),)))
    finally:
        await ch.close()
    assert (result.outcome, result.failure) == (SendOutcome.PERMANENT_FAILURE, FailureKind.INVALID)
    assert words in result.error


async def test_a_closed_channel_fails_as_closed(receiver: Receiver) -> None:
    ch = WebhookChannel(allow_private=LOOPBACK)
    assert (
        await ch.deliver(message(f"{receiver.base}/hook/ok", (receiver.secret,)))
    ).outcome is SendOutcome.ACCEPTED
    await ch.close()
    result = await ch.deliver(message(f"{receiver.base}/hook/ok", (receiver.secret,)))
    assert (result.outcome, result.failure) == (SendOutcome.TEMPORARY_FAILURE, FailureKind.CLOSED)
    assert ch.health().state is HealthState.DOWN and ch.health().counters == {
        "sent": 1,
        "delivered": 1,
        "failed": 1,
    }


async def test_many_deliveries_at_once_each_arrive_once(receiver: Receiver, channel: WebhookChannel) -> None:
    before = receiver.hits("/hook/ok")
    results = await asyncio.wait_for(
        asyncio.gather(
            *(
                channel.deliver(
                    message(f"{receiver.base}/hook/ok", (receiver.secret,), message_id=f"msg_{i}")
                )
                for i in range(100)
            )
        ),
        timeout=30,
    )
    assert all(r.outcome is SendOutcome.ACCEPTED for r in results)
    assert receiver.hits("/hook/ok") == before + 100
    ids = {h["webhook-id"] for p, _, h in receiver.received[-100:]}
    assert ids == {f"msg_{i}" for i in range(100)}


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate for the name localhost only, its key), made for this test."""
    now = datetime.now(UTC)
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Wuhai test partner CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


async def test_tls_verifies_the_urls_host_name_while_connecting_to_the_vetted_address(tmp_path: Path) -> None:
    ca, certificate, key = tls_files(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certificate, key)
    secret = new_secret()
    verified: list[object] = []

    async def handle(request: web.Request) -> web.Response:
        verified.append(Webhook(secret).verify(await request.read(), dict(request.headers)))
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = runner.addresses[0][1]
    local = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    trusting = WebhookChannel(
        allow_private=local, timeout_s=5, ssl_context=ssl.create_default_context(cafile=str(ca))
    )
    system_cas = WebhookChannel(allow_private=local, timeout_s=5)
    try:
        ok = await trusting.deliver(message(f"https://localhost:{port}/hook", (secret,)))
        assert (ok.outcome, ok.status) == (SendOutcome.ACCEPTED, 200) and len(verified) == 1
        # the same server by its address: the certificate names localhost only, so the host name check fails
        by_address = await trusting.deliver(message(f"https://127.0.0.1:{port}/hook", (secret,)))
        assert (by_address.outcome, by_address.failure) == (
            SendOutcome.TEMPORARY_FAILURE,
            FailureKind.LINK_DOWN,
        )
        assert "not valid for '127.0.0.1'" in by_address.error
        # a certificate from a CA the system does not know is refused too
        unknown = await system_cas.deliver(message(f"https://localhost:{port}/hook", (secret,)))
        assert unknown.failure is FailureKind.LINK_DOWN and "certificate" in unknown.error.lower()
        assert len(verified) == 1
    finally:
        await trusting.close()
        await system_cas.close()
        await runner.cleanup()
    unchecked = ssl.create_default_context()
    unchecked.check_hostname = False
    with pytest.raises(ValueError, match="host names must be verified"):
        WebhookChannel(ssl_context=unchecked)
