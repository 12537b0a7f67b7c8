"""A real SMTP server for the tests: aiosmtpd's Controller on 127.0.0.1 (its own thread and event loop).

Use the fixture ``smtp_server`` (one server per test, on a free port): ``smtp_server.host``/``.port``,
``.received`` (every message taken, with its envelope and the parsed email), ``.answers`` (recipient address ->
the reply its RCPT gets, e.g. ``"550 5.1.1 No such user"``), ``.slow`` (recipient address -> seconds the DATA
reply waits), ``.mail_answer`` (the reply every MAIL FROM gets, when set), and ``stop()``/``start()`` on the same port: a server that is down (connections refused, the
open ones cut) and comes back.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.ports import free_port

STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class ReceivedMail:
    """One message the server accepted: the envelope as sent, the bytes of the content, the parsed email."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    email: EmailMessage


class _Handler:
    """aiosmtpd's handler hooks: scripted RCPT answers, a slow DATA, and every accepted message kept."""

    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_MAIL(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.server.mail_answer is not None:
            return self.server.mail_answer
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, smtp: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        answer = self.server.answers.get(address)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        delay = max((self.server.slow.get(r, 0.0) for r in envelope.rcpt_tos), default=0.0)
        if delay:
            await asyncio.sleep(delay)
        data = envelope.original_content or b""
        parsed = BytesParser(policy=policy.default).parsebytes(data)
        assert isinstance(parsed, EmailMessage)
        mail = ReceivedMail(str(envelope.mail_from), tuple(envelope.rcpt_tos), data, parsed)
        with self.server.lock:
            self.server.received.append(mail)
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """A Controller that remembers each session's server so that `stop` can cut open connections too (the
    stock one only stops listening: a client would keep talking to a half-dead socket)."""

    def __init__(self, server: SmtpServer, **kwargs: Any) -> None:
        super().__init__(_Handler(server), **kwargs)
        self.sessions: list[SMTP] = []

    def factory(self) -> SMTP:
        smtp = super().factory()
        self.sessions.append(smtp)
        return smtp

    def cut_connections(self) -> None:
        def cut() -> None:
            for smtp in self.sessions:
                if smtp.transport is not None:
                    smtp.transport.close()

        done = threading.Event()
        self.loop.call_soon_threadsafe(lambda: (cut(), done.set()))
        done.wait(STOP_TIMEOUT_S)


class SmtpServer:
    """One aiosmtpd server on 127.0.0.1:port."""

    def __init__(self, port: int) -> None:
        self.host = "127.0.0.1"
        self.port = port
        self.received: list[ReceivedMail] = []
        self.answers: dict[str, str] = {}
        self.slow: dict[str, float] = {}
        self.mail_answer: str | None = None  # the reply every MAIL FROM gets, when set
        self.lock = threading.Lock()
        self._controller: _Controller | None = None

    def start(self) -> None:
        """Listen (again) on the same port; a fresh controller, as a stopped one has closed its loop."""
        assert self._controller is None, "already running"
        controller = _Controller(self, hostname=self.host, port=self.port, server_hostname="mx.test.invalid")
        controller.start()
        self._controller = controller

    def stop(self) -> None:
        """Stop listening and cut every open connection."""
        if self._controller is not None:
            self._controller.cut_connections()
            self._controller.stop()
            self._controller = None

    def drop_connections(self) -> None:
        """Cut every open connection and go on listening (a server that closed idle sessions)."""
        if self._controller is not None:
            self._controller.cut_connections()

    def messages(self) -> list[ReceivedMail]:
        with self.lock:
            return list(self.received)

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[ReceivedMail]:
        """The messages once at least `count` arrived; AssertionError after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(received := self.messages()) >= count:
                return received
            await asyncio.sleep(0.02)
        raise AssertionError(
            f"{len(self.messages())} messages arrived, expected {count} within {timeout_s} s"
        )


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
