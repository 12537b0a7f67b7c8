"""Partner emails over SMTP (aiosmtplib): one warning to one address, its Chinese text in the body and the CAP
document attached.

The email (`build_email`) is a MIME multipart/mixed message written with the stdlib's SMTP policy (CRLF, headers
RFC 2047-encoded, so any server takes it without SMTPUTF8 or 8BITMIME): ``Subject`` the headline, ``From`` the
configured sender, ``To`` the partner's address, ``Message-ID`` ``<{message_id}@{sender's domain}>`` (stable
across retries: the same delivery sent twice has the same Message-ID, so a partner's mail system can drop the
second), ``X-Warning-Message-Id`` the delivery's message id as given, a text/plain UTF-8 part (base64) with the
text for people, and the CAP document as an ``application/cap+xml`` attachment: exactly the UTF-8 bytes of the
document, base64-encoded so no mail system rewraps or re-encodes a signed document.

Outcomes, from the SMTP reply: 250 to DATA is ACCEPTED (``status`` 250). A 5xx to RCPT or DATA refuses this
message for good (PERMANENT_FAILURE, REFUSED, with the code); a 4xx anywhere is for now (TEMPORARY_FAILURE,
REMOTE_ERROR: 421, 450, 451, 452). A 5xx to the greeting, EHLO, AUTH or MAIL FROM says the server refuses
*us* (a wrong sender or password), which every message would meet alike and a fixed configuration cures:
temporary REMOTE_ERROR, not a reason to drop partners' warnings for good. A connection refused, not made
in time or closed is LINK_DOWN; no answer in time once connected is TIMEOUT (after DATA the server may have
the message, and a retry sends it again with the same Message-ID). An address that is not one plain ASCII
addr-spec is INVALID and nothing is sent.

Connections. Setting up an SMTP session costs the TCP handshake, the greeting, EHLO and, on a real server,
STARTTLS (a TLS handshake and a second EHLO) and AUTH: six to eight round trips before the four of the
message itself (MAIL, RCPT, DATA, the content), and a QUIT after. On loopback, where a round trip costs
nothing, the difference is only the work of the two ends (measured against aiosmtpd, 200 messages: 3.4 ms a
message over one reused session, 4.7 ms with a new session each); over a network to a real server with TLS,
a reused session sends a message in about four round trips where a new one takes ten or more. Yet one
session serialises everything: a warning for a hundred email subscribers would queue behind one round trip
at a time. So the channel keeps a small pool: at most ``connections`` sessions (4 by default; mail servers
commonly cap concurrent connections per client near 10 and answer 421 beyond), each used by one message at a
time and reused while it is alive; one idle longer than ``idle_s`` (mail servers close idle sessions after a
few minutes, RFC 5321 4.5.3.2.7) or broken is closed, and a new one made. A reused session the server has
closed meanwhile is noticed at MAIL FROM, before anything of the message went out, and the message is sent
once more on a fresh session. ``connections=1`` is the single serialised session; ``idle_s=0`` a session per
message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime
from urllib.parse import quote

import aiosmtplib

from channels.base import FailureKind, Health, HealthState, SendOutcome
from channels.partner import PartnerMessage, PartnerResult

log = logging.getLogger(__name__)

MAX_ERROR_CHARS = 300
MAX_ID_CHARS = 200  # a longer message id is hashed into the Message-ID
# an addr-spec as RFC 5321 sends it: a dot-atom local part (no quoted strings) and a host name of ASCII labels
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ADDRESS = re.compile(rf"^(?P<local>{_ATEXT}(?:\.{_ATEXT})*)@(?P<domain>{_LABEL}(?:\.{_LABEL})*)$")
# characters a Message-ID's left part may hold as they are (RFC 5322 atext and the dot); others are %-escaped
_ID_SAFE = "!#$&'*+/=?^_`{|}~-."
_FILENAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


class InvalidEmail(ValueError):
    """A message that cannot be sent as an email as it is: a bad address or attachment name."""


def check_address(address: str) -> str:
    """The address itself when it is one plain ASCII addr-spec (``local@domain``, at most 254 characters);
    `InvalidEmail` with a one-line reason otherwise (for the subscriptions API too).

    >>> check_address("duty@haibowan.example.cn")
    'duty@haibowan.example.cn'
    >>> check_address("Duty <duty@haibowan.example.cn>")
    Traceback (most recent call last):
    ...
    channels.email.client.InvalidEmail: not a plain email address (local@domain): 'Duty <duty@haibowan.example.cn>'
    """
    match = ADDRESS.fullmatch(address)
    if match is None or len(address) > 254 or len(match["local"]) > 64:
        raise InvalidEmail(f"not a plain email address (local@domain): {address[:100]!r}")
    return address


def message_id_header(message_id: str, sender: str) -> str:
    """The Message-ID of a delivery: the same for every attempt, whatever characters the id has.

    >>> message_id_header("pd-12-3", "warnings@wuhai.example.cn")
    '<pd-12-3@wuhai.example.cn>'
    >>> message_id_header("a b..c", "warnings@wuhai.example.cn")
    '<a%20b%2E%2Ec@wuhai.example.cn>'
    """
    left = quote(message_id, safe=_ID_SAFE)
    if left.startswith(".") or left.endswith(".") or ".." in left:
        left = left.replace(".", "%2E")  # a dot-atom has no empty atoms
    if not left or len(left) > MAX_ID_CHARS:
        left = hashlib.sha256(message_id.encode()).hexdigest()
    return f"<{left}@{sender.rpartition('@')[2]}>"


def build_email(message: PartnerMessage, sender: str, *, now: datetime | None = None) -> EmailMessage:
    """The email of a partner message (see the module docstring); `InvalidEmail` when it cannot be one."""
    address = check_address(message.address)
    if not _FILENAME.fullmatch(message.cap_filename):
        raise InvalidEmail(f"bad attachment name {message.cap_filename[:100]!r}")
    try:
        cap = message.cap_xml.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidEmail(f"the CAP document is not encodable as UTF-8: {e.reason}") from None
    email = EmailMessage(policy=policy.SMTP)
    email["Subject"] = " ".join(message.subject.split())  # a header is one line
    email["From"] = sender
    email["To"] = address
    email["Date"] = format_datetime(now or datetime.now(UTC))
    email["Message-ID"] = message_id_header(message.message_id, sender)
    email["X-Warning-Message-Id"] = " ".join(message.message_id.split())
    email.set_content(message.text, subtype="plain", charset="utf-8", cte="base64")
    email.add_attachment(cap, maintype="application", subtype="cap+xml", filename=message.cap_filename)
    return email


@dataclass
class _Session:
    smtp: aiosmtplib.SMTP
    last_used: float


class _Refused(Exception):
    """The server answered a command with a code that is not success: the message's outcome."""

    def __init__(self, stage: str, code: int, text: str) -> None:
        super().__init__(stage, code, text)
        self.stage, self.code, self.text = stage, code, text


class EmailChannel:
    """Partner emails through one SMTP server as a `PartnerChannel` (see the module docstring)."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        username: str = "",
        password: str = "",
        starttls: bool = False,
        timeout_s: float = 30.0,
        *,
        connections: int = 4,
        idle_s: float = 60.0,
    ) -> None:
        check_address(sender)
        self.host, self.port, self.sender = host, port, sender
        self._username = username or None
        self._password = password if username else None
        self.starttls = starttls
        self.timeout_s = timeout_s
        self.idle_s = idle_s
        self.max_connections = connections
        self.parallel = connections  # messages it sends at once: the partner dispatcher claims no more
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[_Session] = []
        self._in_use = 0
        self._closed = False
        self._link_error = ""  # why the last connection failed ("" once one succeeds)
        self.counters = {
            "accepted": 0, "refused": 0, "temporary": 0, "invalid": 0, "link_down": 0, "timeouts": 0,
            "connects": 0, "reused": 0,
        }  # fmt: skip

    @property
    def route(self) -> str:
        """Where the mail goes, for logs."""
        return f"smtp://{self.host}:{self.port}"

    async def deliver(self, message: PartnerMessage) -> PartnerResult:
        """Send one email; never raises for the server's or the network's failure (that is the result)."""
        started = time.monotonic()
        try:
            data = build_email(message, self.sender).as_bytes()
        except (InvalidEmail, ValueError) as e:
            self.counters["invalid"] += 1
            return self._result(started, FailureKind.INVALID, str(e))
        if self._closed:
            return self._result(started, FailureKind.CLOSED, "the email channel is closed")
        async with self._slots:
            self._in_use += 1
            try:
                return await self._send(started, message.address, data)
            finally:
                self._in_use -= 1

    async def _send(self, started: float, address: str, data: bytes) -> PartnerResult:
        for attempt in range(2):
            session = self._take_idle()
            reused = session is not None
            try:
                if session is None:
                    session = await self._connect()
                else:
                    self.counters["reused"] += 1
                code = await self._transaction(session.smtp, address, data, stale_ok=reused and attempt == 0)
            except _StaleSession:  # the server closed its idle sessions (restarted?): a fresh one, once
                for stale in self._idle:
                    stale.smtp.close()
                self._idle.clear()
                continue
            except _Refused as e:
                self._keep(session)  # after RSET the session carries the next message
                return self._refused(started, e)
            except aiosmtplib.SMTPConnectTimeoutError as e:
                return self._link_failed(started, FailureKind.LINK_DOWN, f"connect: {e.message}")
            except aiosmtplib.SMTPConnectResponseError as e:
                return self._refused(started, _Refused("greeting", e.code, e.message))
            except (aiosmtplib.SMTPHeloError, aiosmtplib.SMTPAuthenticationError) as e:
                return self._refused(started, _Refused("EHLO/AUTH", e.code, e.message))
            except aiosmtplib.SMTPTimeoutError as e:
                if session is not None:
                    session.smtp.close()
                return self._link_failed(started, FailureKind.TIMEOUT, f"no answer: {e.message}")
            except (aiosmtplib.SMTPException, OSError) as e:  # refused, reset, closed, STARTTLS not offered
                if session is not None:
                    session.smtp.close()
                return self._link_failed(started, FailureKind.LINK_DOWN, _describe(e))
            except asyncio.CancelledError:  # a session left mid-transaction carries nothing more
                if session is not None:
                    session.smtp.close()
                raise
            self._keep(session)
            self._link_error = ""
            self.counters["accepted"] += 1
            return PartnerResult(SendOutcome.ACCEPTED, _elapsed_ms(started), status=code)
        return self._link_failed(started, FailureKind.LINK_DOWN, "the server closed the connection twice")

    def _keep(self, session: _Session | None) -> None:
        if session is None:
            return
        if session.smtp.is_connected and not self._closed:
            session.last_used = time.monotonic()
            self._idle.append(session)
        else:
            session.smtp.close()

    def _take_idle(self) -> _Session | None:
        now = time.monotonic()
        while self._idle:
            session = self._idle.pop()  # the most recently used: the likeliest to be alive
            if session.smtp.is_connected and now - session.last_used < self.idle_s:
                return session
            session.smtp.close()
        return None

    async def _connect(self) -> _Session:
        smtp = aiosmtplib.SMTP(
            hostname=self.host, port=self.port, username=self._username, password=self._password,
            start_tls=self.starttls, timeout=self.timeout_s,
            # the sender's domain, not this machine's name: no DNS lookup, and what receivers check anyway
            local_hostname=self.sender.rpartition("@")[2],
        )  # fmt: skip
        await smtp.connect()
        self.counters["connects"] += 1
        self._link_error = ""
        return _Session(smtp, time.monotonic())

    async def _transaction(self, smtp: aiosmtplib.SMTP, address: str, data: bytes, *, stale_ok: bool) -> int:
        """MAIL, RCPT, DATA; the DATA reply's code, or `_Refused` for an answer that is not success."""
        stage = "MAIL FROM"
        try:
            await smtp.mail(self.sender)
            stage = "RCPT TO"
            await smtp.rcpt(address)
            stage = "DATA"
            response = await smtp.data(data)
        except aiosmtplib.SMTPResponseException as e:  # the sender, the recipient or the content refused
            await _reset(smtp)
            raise _Refused(stage, e.code, e.message) from None
        except aiosmtplib.SMTPServerDisconnected:
            if stale_ok and stage == "MAIL FROM":
                smtp.close()
                raise _StaleSession from None
            raise
        return response.code

    def _refused(self, started: float, e: _Refused) -> PartnerResult:
        # only RCPT and DATA judge this message; the rest judge this service's configuration (module docstring)
        permanent = 500 <= e.code < 600 and e.stage in ("RCPT TO", "DATA")
        self.counters["refused" if permanent else "temporary"] += 1
        if e.stage not in ("RCPT TO", "DATA"):  # the server will not take mail from us at all, for now
            self._link_error = _one_line(f"{self.route}: {e.stage}: {e.code} {e.text}")
        return PartnerResult(
            SendOutcome.PERMANENT_FAILURE if permanent else SendOutcome.TEMPORARY_FAILURE,
            _elapsed_ms(started),
            status=e.code,
            error=_one_line(f"{e.stage}: {e.code} {e.text}"),
            failure=FailureKind.REFUSED if permanent else FailureKind.REMOTE_ERROR,
        )

    def _link_failed(self, started: float, kind: FailureKind, error: str) -> PartnerResult:
        self.counters["timeouts" if kind is FailureKind.TIMEOUT else "link_down"] += 1
        self._link_error = _one_line(f"{self.route}: {error}")
        return self._result(started, kind, error)

    def _result(self, started: float, kind: FailureKind, error: str) -> PartnerResult:
        outcome = SendOutcome.TEMPORARY_FAILURE if kind.retryable else SendOutcome.PERMANENT_FAILURE
        return PartnerResult(outcome, _elapsed_ms(started), error=_one_line(error), failure=kind)

    def health(self) -> Health:
        """Down after a connection failed or the server refused us (greeting, EHLO, AUTH, MAIL FROM), until a
        connection or a message succeeds; the open sessions are its links."""
        open_sessions = sum(s.smtp.is_connected for s in self._idle) + self._in_use
        return Health(
            HealthState.DOWN if self._link_error else HealthState.UP,
            detail=self._link_error,
            links_up=open_sessions,
            links_total=self.max_connections,
            in_flight=self._in_use,
            counters=dict(self.counters),
        )

    async def close(self) -> None:
        """Say QUIT on the idle sessions (briefly) and drop them."""
        self._closed = True
        idle, self._idle = self._idle, []
        for session in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await session.smtp.quit(timeout=min(self.timeout_s, 2.0))
            session.smtp.close()


class _StaleSession(Exception):
    """A reused session the server had closed, noticed before anything of the message was sent."""


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    """RSET after a refusal, so the session can carry the next message; closed when that fails too."""
    try:
        await smtp.rset()
    except (aiosmtplib.SMTPException, OSError):
        smtp.close()


def _describe(e: BaseException) -> str:
    """One line for a failed connection: aiosmtplib's own words (which name the host and port), or the OS's."""
    text = getattr(e, "message", "") or str(e)
    if isinstance(e, ConnectionError) and text:
        return text
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())[:MAX_ERROR_CHARS]


def _elapsed_ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
