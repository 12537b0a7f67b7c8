"""The webhook channel: one signed POST of a partner message to a partner's URL (`WebhookChannel`), and the
guard that keeps those URLs off this machine's own networks (`check_endpoint`).

- A delivery is ``POST <url>`` with the message body as it is (``application/json``) and the Standard Webhooks
  headers ``webhook-id`` (the message id: the partner's idempotency key, the same on every retry),
  ``webhook-timestamp`` and ``webhook-signature`` (one ``v1,`` signature per secret: two during a rotation).
- Outcomes follow Standard Webhooks: any 2xx is delivered; 410 Gone is permanent and asks that the
  subscription be disabled; 429, 502, 503 and 504 ask to slow down (``Retry-After`` honoured, capped at a
  day); every other answer, 3xx included (redirects are not followed), is a temporary failure, retried on the
  dispatcher's schedule. No answer in time is a timeout; no connection (refused, reset, the name unknown) is
  a link down.
- SSRF guard: a partner chooses the URL, so without a guard a subscription could make this service post to
  its own database port, a cloud metadata address or an intranet host. `check_endpoint` refuses URLs whose
  host resolves to a loopback, private, link-local, multicast, reserved or unspecified address (directly or
  IPv4-mapped), unless the address lies in a network of ``[partners] allow_private``. It runs when a
  subscription is made and again at every attempt, and the attempt connects only to the addresses it
  vetted (`_PinnedResolver`): a name that answers a public address to the check and a private one a moment
  later (DNS rebinding) gains nothing. TLS still verifies the certificate against the URL's host name.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import ipaddress
import logging
import math
import re
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from channels.base import FailureKind, Health, HealthState, SendOutcome
from channels.partner import PartnerMessage, PartnerResult
from channels.webhooks.signing import SecretError, signature_header

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_CHARS = 2000
MAX_ERROR_CHARS = 300
MAX_EXCERPT_CHARS = 80  # of a refusing answer's body, quoted in the error
MAX_RETRY_AFTER_S = 86_400.0  # a partner cannot park its deliveries for longer than a day
THROTTLING = frozenset({429, 502, 503, 504})
_LITERALS_KEPT = 4096  # hosts whose literal address check a channel remembers
# NAT64's well-known prefix (RFC 6052): behind a NAT64 gateway 64:ff9b::a00:1 reaches 10.0.0.1
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_MARKUP = re.compile(r"<[^<>]{0,200}>")  # an error page's tags, dropped from the excerpt


class EndpointRefused(ValueError):
    """A webhook URL this service will not post to; the message is one line, for the partner."""


class EndpointUnresolved(EndpointRefused):
    """A webhook URL whose host name did not resolve: refused when a subscription is made, a link down (worth
    retrying) at an attempt."""


class NameRefused(EndpointRefused):
    """A host name that resolves to an address a webhook may not go to: refused when a subscription is made;
    a temporary failure when sending, as its DNS may change back."""


def address_refusal(address: IPAddress, allow_private: Sequence[IPNetwork] = ()) -> str | None:
    """Why a webhook may not be posted to `address` (a few words), or None when it may.

    Only an address that lies in one of `allow_private` as it is passes a refusal; an IPv4-mapped address
    (``::ffff:127.0.0.1``) is not let through by an IPv4 network of the allow-list.

    >>> net = [ipaddress.ip_network("127.0.0.1/32")]
    >>> address_refusal(ipaddress.ip_address("93.184.215.14")) is None
    True
    >>> address_refusal(ipaddress.ip_address("127.0.0.1")), address_refusal(ipaddress.ip_address("127.0.0.1"), net)
    ('a loopback address', None)
    >>> address_refusal(ipaddress.ip_address("::ffff:10.0.0.1"))
    'an IPv4-mapped private address'
    >>> address_refusal(ipaddress.ip_address("100.64.0.1"))
    'not a public address'
    >>> address_refusal(ipaddress.ip_address("2002:7f00:1::1"))
    'a 6to4 loopback address'
    """
    if any(address.version == network.version and address in network for network in allow_private):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        # an IPv6 address standing for an IPv4 one is judged by that one
        for embedded, words in (
            (address.ipv4_mapped, "an IPv4-mapped "),
            (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in _NAT64 else None, "a NAT64 "),
            (address.sixtofour, "a 6to4 "),
        ):
            if embedded is not None:
                inner = _kind(embedded)
                return None if inner is None else words + inner.removeprefix("a ").removeprefix("an ")
    return _kind(address)


def _kind(address: IPAddress) -> str | None:
    """The first category of addresses that are not the public Internet `address` falls in."""
    for test, words in (
        (address.is_unspecified, "an unspecified address"),
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
        (not address.is_global, "not a public address"),  # shared address space 100.64/10, and the like
    ):
        if test:
            return words
    return None


_NUMERIC_HOST = re.compile(r"(0x[0-9a-f]+|[0-9]+)(\.(0x[0-9a-f]*|[0-9]*))*\.?", re.IGNORECASE)
_DOTTED_QUAD = re.compile(
    r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
)


@functools.lru_cache(maxsize=4096)  # a pure function of the text; a fan-out parses each partner's URL once
def endpoint_url(url: str) -> URL:
    """`url` parsed (by the parser aiohttp will use) when it is one a webhook may have: http or https, a host,
    no user name or password, no fragment, at most `MAX_URL_CHARS` characters; `EndpointRefused` otherwise.

    >>> endpoint_url("https://partner.example.org/hooks/warnings?k=1").host
    'partner.example.org'
    >>> try:
    ...     endpoint_url("https://user:pw@partner.example.org/")
    ... except EndpointRefused as e:
    ...     print(e)
    a webhook URL may not carry a user name or password
    """
    if len(url) > MAX_URL_CHARS:
        raise EndpointRefused(f"a webhook URL has at most {MAX_URL_CHARS} characters")
    if _CONTROL.search(url) or " " in url:
        raise EndpointRefused("a webhook URL has no spaces or control characters")
    try:
        parsed = URL(url)
    except ValueError as e:
        raise EndpointRefused(f"not a URL: {e}".splitlines()[0]) from None
    if parsed.scheme not in ("http", "https"):
        raise EndpointRefused("a webhook URL starts with https:// or http://")
    if not parsed.raw_host:
        raise EndpointRefused("a webhook URL names a host")
    if parsed.raw_user is not None or parsed.raw_password is not None:
        raise EndpointRefused("a webhook URL may not carry a user name or password")
    if "#" in url:  # yarl drops an empty fragment: look at the text
        raise EndpointRefused("a webhook URL has no #fragment")
    if _NUMERIC_HOST.fullmatch(parsed.raw_host) and not _DOTTED_QUAD.fullmatch(parsed.raw_host):
        # 2130706433, 0x7f.1, 0177.0.0.1, 127.1: the resolver takes them, the HTTP client refuses them
        raise EndpointRefused("a webhook URL writes an IPv4 address as four decimal numbers (a.b.c.d)")
    return parsed


async def check_endpoint(url: str, allow_private: Sequence[IPNetwork] = ()) -> list[IPAddress]:
    """The addresses a webhook to `url` may be posted to: all its host resolves to, each checked by
    `address_refusal`. `EndpointRefused` (one line) when the URL is malformed or any address is refused;
    `EndpointUnresolved` when the host name does not resolve."""
    return (await _vet(endpoint_url(url), allow_private))[1]


async def _vet(url: URL, allow_private: Sequence[IPNetwork]) -> tuple[str, list[IPAddress]]:
    """(host as aiohttp connects to it, its vetted addresses) for a parsed webhook URL."""
    host = url.raw_host or ""
    literal, refusal = _literal(host, tuple(allow_private))
    if literal is not None:
        if refusal is not None:
            raise EndpointRefused(refusal)
        return host, [literal]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, url.port or 0, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as e:
        raise EndpointUnresolved(f"the host {host} does not resolve ({_one_line(str(e))})") from None
    addresses = []
    for family, *_, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise EndpointUnresolved(f"the host {host} has no IP address")
    for address in addresses:
        refusal = address_refusal(address, allow_private)
        if refusal is not None:
            raise NameRefused(
                f"the host {host} resolves to an address that is {refusal}: webhooks go only to public "
                "addresses unless [partners] allow_private lists this one"
            )
    return host, addresses


@functools.lru_cache(maxsize=4096)  # pure: a fan-out to one address checks it once, not per delivery
def _literal(host: str, allow_private: tuple[IPNetwork, ...]) -> tuple[IPAddress | None, str | None]:
    """(`host` as an IP address, or None when it is a name; why a URL to that address is refused, or None)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None, None
    refusal = address_refusal(address, allow_private)
    if refusal is None:
        return address, None
    return address, (
        f"the host {host} is {refusal}: webhooks go only to public addresses unless "
        "[partners] allow_private lists this one"
    )


# the vetted addresses of the host the current delivery posts to, for `_PinnedResolver`
_pinned: contextvars.ContextVar[tuple[str, tuple[IPAddress, ...]] | None] = contextvars.ContextVar(
    "webhook_pinned_addresses", default=None
)


class _PinnedResolver(AbstractResolver):
    """A resolver that answers only the addresses the current delivery vetted, so the connection goes where
    the check looked (no second DNS lookup that could answer otherwise). A host it was not told about is not
    resolved at all. (aiohttp does not ask a resolver about IP literals: `_vet` checks those itself.)"""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pinned = _pinned.get()
        if pinned is None or pinned[0] != host:
            raise OSError(f"{host} was not vetted for this delivery")
        results: list[ResolveResult] = []
        for address in pinned[1]:
            address_family = socket.AF_INET if address.version == 4 else socket.AF_INET6
            if family in (socket.AF_UNSPEC, address_family):
                results.append(
                    {
                        "hostname": host,  # the name TLS verifies the certificate against
                        "host": str(address),
                        "port": port,
                        "family": address_family,
                        "proto": socket.IPPROTO_TCP,
                        "flags": socket.AI_NUMERICHOST,
                    }
                )
        if not results:
            raise OSError(f"{host} has no vetted address of family {family!r}")
        return results

    async def close(self) -> None:
        return None


def _exactly(total_s: float) -> aiohttp.ClientTimeout:
    """A whole request's timeout of `total_s`, not rounded up to the next second as aiohttp does from 5 s on
    (the lease of a claimed delivery counts on an attempt ending within the timeout)."""
    return aiohttp.ClientTimeout(total=total_s, ceil_threshold=math.inf)


def retry_after_s(value: str | None, *, now: datetime | None = None) -> float | None:
    """The seconds a ``Retry-After`` header asks to wait (delta-seconds or an HTTP-date), at most a day;
    None when it is absent or not understood.

    >>> retry_after_s("120"), retry_after_s(None), retry_after_s("soon"), retry_after_s("999999")
    (120.0, None, None, 86400.0)
    >>> retry_after_s("Sat, 05 Dec 2026 12:01:30 GMT", now=datetime(2026, 12, 5, 12, 0, tzinfo=UTC))
    90.0
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None  # an HTTP-date is always GMT; a date without a zone is not one
    delay = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delay, 0.0), MAX_RETRY_AFTER_S)


def _one_line(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _excerpt(body: bytes) -> str:
    """A short, printable quotation of a refusing answer's body: enough to tell a partner's error page from
    another, never its whole content."""
    text = _MARKUP.sub(" ", body[: MAX_EXCERPT_CHARS * 4].decode("utf-8", "replace"))
    text = _one_line(text.replace('"', "'"), MAX_EXCERPT_CHARS)
    return f': "{text}"' if text else ""


class WebhookChannel:
    """`PartnerChannel` posting signed webhooks (see the module docstring). One HTTP client, made on first
    use inside the running loop; `deliver` may run concurrently (the dispatcher bounds how many)."""

    name = "webhook"

    def __init__(
        self,
        *,
        allow_private: Sequence[IPNetwork] = (),
        timeout_s: float = 15.0,
        user_agent: str = "warnings-svc",
        max_response_bytes: int = 65536,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("WebhookChannel.timeout_s: more than 0")
        if max_response_bytes < 0:
            raise ValueError("WebhookChannel.max_response_bytes: 0 or more")
        self.allow_private = tuple(allow_private)
        self.timeout_s = timeout_s
        self.user_agent = user_agent
        self.max_response_bytes = max_response_bytes
        # the trust anchors partners' certificates are checked against: the system's unless given (the tests
        # give their own CA); a context that does not check host names is refused, as it would undo the guard
        if ssl_context is not None and (
            not ssl_context.check_hostname or ssl_context.verify_mode is not ssl.CERT_REQUIRED
        ):
            raise ValueError("WebhookChannel.ssl_context: certificates and host names must be verified")
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._in_flight = 0
        self._counters = {"sent": 0, "delivered": 0, "failed": 0}
        self._literals: dict[str, tuple[IPAddress | None, str | None]] = {}

    def _literal_of(self, host: str) -> tuple[IPAddress | None, str | None]:
        """`_literal` for this channel's allow-list, remembered per host: a fan-out to 1,000 partners asks
        it for every attempt, and hashing the allow-list's networks for a shared cache cost more than the
        answer."""
        found = self._literals.get(host)
        if found is None:
            if len(self._literals) >= _LITERALS_KEPT:
                self._literals.clear()
            found = self._literals[host] = _literal(host, self.allow_private)
        return found

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_PinnedResolver(),
                use_dns_cache=False,  # every connection asks the pinned resolver: this delivery's addresses
                limit=0,  # the dispatcher bounds the deliveries in flight
                ssl=self._ssl,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # one partner's cookies never reach another
                timeout=_exactly(self.timeout_s),
                headers={"User-Agent": self.user_agent},
                trust_env=False,  # no proxy from the environment: the guard vets the address connected to
            )
        return self._session

    async def deliver(self, message: PartnerMessage) -> PartnerResult:
        """Post one message; never raises for the partner's failure (that is the result)."""
        started = time.monotonic()
        if self._closed:
            return self._result(
                started, SendOutcome.TEMPORARY_FAILURE, FailureKind.CLOSED, "the channel is closed"
            )
        if not message.secrets:
            return self._result(
                started,
                SendOutcome.PERMANENT_FAILURE,
                FailureKind.INVALID,
                "no signing secret for the webhook",
            )
        try:
            signatures = signature_header(
                message.secrets, message.message_id, message.timestamp, message.body
            )
        except SecretError as e:
            return self._result(started, SendOutcome.PERMANENT_FAILURE, FailureKind.INVALID, str(e))
        headers = {
            "Content-Type": "application/json",
            "webhook-id": message.message_id,
            "webhook-timestamp": str(message.timestamp),
            "webhook-signature": signatures,
        }
        self._in_flight += 1
        try:
            url = endpoint_url(message.address)
            timeout = None  # the client's: `timeout_s` for the whole POST
            host = url.raw_host or ""
            literal, refusal = self._literal_of(host)
            if literal is None:  # a name: DNS counts in the time
                async with asyncio.timeout(self.timeout_s):
                    host, addresses = await _vet(url, self.allow_private)
                timeout = _exactly(max(0.001, self.timeout_s - (time.monotonic() - started)))
            elif refusal is not None:
                raise EndpointRefused(refusal)
            else:
                addresses = [literal]
            token = _pinned.set((host, tuple(addresses)))
            self._counters["sent"] += 1
            try:
                status, location, seen, retry_after = await self._post(url, message.body, headers, timeout)
            finally:
                _pinned.reset(token)
        except EndpointUnresolved as e:
            return self._result(started, SendOutcome.TEMPORARY_FAILURE, FailureKind.LINK_DOWN, str(e))
        except NameRefused as e:  # the name may resolve elsewhere later (DNS changes): try again
            return self._result(started, SendOutcome.TEMPORARY_FAILURE, FailureKind.REMOTE_ERROR, str(e))
        except EndpointRefused as e:
            return self._result(started, SendOutcome.PERMANENT_FAILURE, FailureKind.INVALID, str(e))
        except TimeoutError:
            return self._result(
                started,
                SendOutcome.TEMPORARY_FAILURE,
                FailureKind.TIMEOUT,
                f"no answer in {self.timeout_s:g} s",
            )
        except aiohttp.InvalidURL as e:
            return self._result(
                started, SendOutcome.PERMANENT_FAILURE, FailureKind.INVALID, f"not a usable URL: {e}"
            )
        except (aiohttp.ClientError, OSError) as e:
            words = f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__
            return self._result(started, SendOutcome.TEMPORARY_FAILURE, FailureKind.LINK_DOWN, words)
        finally:
            self._in_flight -= 1
        return self._judge(started, status, location, seen, retry_after)

    async def _post(
        self, url: URL, body: bytes, headers: Mapping[str, str], timeout: aiohttp.ClientTimeout | None
    ) -> tuple[int, str | None, bytes, str | None]:
        """(status, Location, the start of the answer's body, Retry-After) of one POST, within `timeout` (the
        client's when None). At most `max_response_bytes` of the answer are read, and then dropped."""
        client = self._client()
        post = client.post(
            url, data=body, headers=headers, allow_redirects=False, timeout=timeout or client.timeout
        )
        async with post as response:
            first = b""
            read = 0
            content = response.content
            while read < self.max_response_bytes and not content.at_eof():  # a 204 has nothing to read
                chunk = await content.read(min(self.max_response_bytes - read, 16384))
                if not chunk:
                    break
                if not first:
                    first = chunk[: MAX_EXCERPT_CHARS * 4]
                read += len(chunk)
            return (
                response.status,
                response.headers.get("Location"),
                first,
                response.headers.get("Retry-After"),
            )

    def _judge(
        self, started: float, status: int, location: str | None, seen: bytes, retry_after: str | None
    ) -> PartnerResult:
        """The result of an answer, per Standard Webhooks."""
        if 200 <= status < 300:
            return self._result(started, SendOutcome.ACCEPTED, None, "", status=status)
        if status == 410:
            return self._result(
                started,
                SendOutcome.PERMANENT_FAILURE,
                FailureKind.REFUSED,
                f"HTTP 410 Gone: the endpoint is disabled{_excerpt(seen)}",
                status=status,
                disable=True,
            )
        if status in THROTTLING:
            wait = retry_after_s(retry_after)
            hint = f", Retry-After {wait:g} s" if wait is not None else ""
            return self._result(
                started,
                SendOutcome.TEMPORARY_FAILURE,
                FailureKind.THROTTLED,
                f"HTTP {status}: slow down{hint}{_excerpt(seen)}",
                status=status,
                retry_after_s=wait,
            )
        if 300 <= status < 400:
            where = "with a Location" if location else "without a Location"
            return self._result(
                started,
                SendOutcome.TEMPORARY_FAILURE,
                FailureKind.REMOTE_ERROR,
                f"HTTP {status} redirect {where}: redirects are not followed, subscribe the final URL",
                status=status,
            )
        return self._result(
            started,
            SendOutcome.TEMPORARY_FAILURE,
            FailureKind.REMOTE_ERROR,
            f"HTTP {status}{_excerpt(seen)}",
            status=status,
        )

    def _result(
        self,
        started: float,
        outcome: SendOutcome,
        failure: FailureKind | None,
        error: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
        disable: bool = False,
    ) -> PartnerResult:
        self._counters["delivered" if outcome is SendOutcome.ACCEPTED else "failed"] += 1
        if failure is not None:
            log.info(
                "webhook: not delivered",
                extra={"channel": self.name, "failure": str(failure), "error": error},
            )
        return PartnerResult(
            outcome=outcome,
            latency_ms=round((time.monotonic() - started) * 1000),
            status=status,
            error=_one_line(error) if error else "",
            failure=failure,
            retry_after_s=retry_after_s,
            disable=disable,
        )

    def health(self) -> Health:
        """Up while open: one partner's endpoint failing says nothing of the channel (the delivery log does)."""
        return Health(
            state=HealthState.DOWN if self._closed else HealthState.UP,
            detail="closed" if self._closed else "",
            in_flight=self._in_flight,
            counters=dict(self._counters),
        )

    async def close(self) -> None:
        """Let go of the HTTP client; later deliveries fail as CLOSED."""
        self._closed = True
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None
