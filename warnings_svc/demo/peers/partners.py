"""The demo's partners: a loopback webhook endpoint standing for departments' systems (it checks every
signature), a loopback mail server (aiosmtpd, a real SMTP server) standing for their mailboxes, and the
subscriptions that point at them and at an MQTT partner topic on the demo's broker. Every one is labelled a
demo peer in its logs; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
import time
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import Any

import asyncpg
from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from channels.webhooks.signing import verify
from risk_zoning.store import region_units
from warnings_svc.dissemination.partners import subscriptions as subs
from warnings_svc.settings import PartnerSettings, SmtpSettings

log = logging.getLogger(__name__)

# "回复 1234 确认，或打开 https://.../ack/TOKEN": the short code and the one-time link of a call
CALL_TEXT = re.compile(r"回复 (?P<code>[0-9]{4,8}) 确认(?:，或打开 (?P<link>\S+))?")
ANSWER_EVERY = 5  # the simulated duty contacts answer four calls in five; the fifth is left to escalate
DEMO_PHONES = "demo-phones"  # the endpoint name of replies the demo hands in without an SMSC

DEMO_OWNER = "demo-partners"
PARTNER_TOPIC_PREFIX = "wuhai/partners"
# (name, channel, address path or mailbox, what it wants): synthetic departments' endpoints
SUBSCRIPTIONS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("应急管理局 值班系统", "webhook", "/emergency", {}),
    ("水务局 防汛平台", "webhook", "/water", {"hazards": ["rainstorm"]}),
    ("教育局 值班邮箱", "email", "duty@education.example.org", {"levels": ["orange", "red"]}),
    ("农牧局 值班邮箱", "email", "duty@agriculture.example.org", {"hazards": ["frost", "sandstorm", "heat"]}),
    ("融媒体中心", "mqtt", "media/all", {}),
)


@dataclass
class PartnerInbox:
    """What the demo's partners received: webhook deliveries (and whether each signature checked out) and
    emails, counted per address."""

    webhooks: list[dict[str, Any]] = field(default_factory=list)
    emails: list[dict[str, Any]] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)  # webhook path -> whsec_
    # acknowledgement calls that reached a duty contact's mailbox: their address, short code and link
    calls: list[dict[str, str]] = field(default_factory=list)
    answered: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "webhooks": len(self.webhooks),
            "webhooks_verified": sum(1 for w in self.webhooks if w["verified"]),
            "emails": len(self.emails),
            "emails_with_cap": sum(1 for e in self.emails if e["cap"]),
            "calls_received": len(self.calls),
        }


class _MailHandler:
    def __init__(self, inbox: PartnerInbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        cap = any(p.get_content_type() == "application/cap+xml" for p in parsed.iter_attachments())  # type: ignore[attr-defined]
        body = parsed.get_body(("plain",))  # type: ignore[attr-defined]
        text = body.get_content() if body is not None else ""
        call = CALL_TEXT.search(text)
        for rcpt in envelope.rcpt_tos:
            self.inbox.emails.append({"to": rcpt, "subject": str(parsed["Subject"]), "cap": cap})
            if call is not None:  # an acknowledgement call (叫应) to a simulated duty contact
                self.inbox.calls.append({"to": rcpt, "code": call["code"], "link": call["link"] or ""})
        return "250 OK"


class DemoPartners:
    """The demo's partner endpoints on loopback ports; `settings()` is the `[partners]` table that reaches
    them (with `mqtt_broker` naming the demo's broker)."""

    def __init__(self, mqtt_broker: str) -> None:
        self.inbox = PartnerInbox()
        self.mqtt_broker = mqtt_broker
        self.webhook_url = ""
        self.smtp_port = 0
        self._runner: web.AppRunner | None = None
        self._smtp: Controller | None = None

    def settings(self, base: PartnerSettings) -> PartnerSettings:
        return base.model_copy(
            update={
                "allow_private": (*base.allow_private, ipaddress.ip_network("127.0.0.1/32")),
                "smtp": SmtpSettings(
                    host="127.0.0.1", port=self.smtp_port, sender="warnings@weather.example.cn"
                ),
                "mqtt_broker": self.mqtt_broker,
                "mqtt_topic_prefix": PARTNER_TOPIC_PREFIX,
            }
        )

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        secret = self.inbox.secrets.get(request.path)
        h = request.headers
        ok = secret is not None and verify(
            [secret], h.get("webhook-id", ""), h.get("webhook-timestamp", ""), body,
            h.get("webhook-signature", ""), now=time.time(),
        )  # fmt: skip
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        self.inbox.webhooks.append(
            {
                "path": request.path,
                "verified": ok,
                "identifier": doc.get("identifier"),
                "msgType": doc.get("msgType"),
            }
        )
        return web.Response(status=204 if ok else 401)

    async def __aenter__(self) -> DemoPartners:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._webhook)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.webhook_url = f"http://127.0.0.1:{port}"
        from warnings_svc.demo.peers.stage import free_loopback_port

        self.smtp_port = free_loopback_port()
        self._smtp = Controller(_MailHandler(self.inbox), hostname="127.0.0.1", port=self.smtp_port)
        await asyncio.to_thread(self._smtp.start)
        log.info(
            "demo partners: a webhook endpoint and a mail server (aiosmtpd), loopback only",
            extra={"webhook": self.webhook_url, "smtp": f"127.0.0.1:{self.smtp_port}"},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._smtp is not None:
            await asyncio.to_thread(self._smtp.stop)
        if self._runner is not None:
            await self._runner.cleanup()

    async def reply_to_calls(self, conn: asyncpg.Connection) -> int:
        """The simulated duty contacts answer the calls that reached their mailboxes, by an SMS reply with the
        short code: handed in where the SMSC's messages from phones land (`svc.inbound_sms`), as the demo
        may have no SMSC. Four in five answer; how many replies were handed in."""
        replies = 0
        for n, call in enumerate(self.inbox.calls[self.inbox.answered :], start=self.inbox.answered):
            if n % ANSWER_EVERY == ANSWER_EVERY - 1:
                continue
            phone = await conn.fetchval(
                "SELECT phone FROM svc.duty_person WHERE email = $1 LIMIT 1", call["to"]
            )
            if phone is not None:
                await conn.execute(
                    "INSERT INTO svc.inbound_sms (endpoint, source, text) VALUES ($1, $2, $3)",
                    DEMO_PHONES,
                    phone,
                    f"收到{call['code']}",
                )
                replies += 1
        self.inbox.answered = len(self.inbox.calls)
        return replies

    async def open_call_links(self, session: Any) -> int:
        """The simulated duty contacts open the links of the calls that reached their mailboxes (the
        running demo serves them), four in five; how many were opened."""
        opened = 0
        for n, call in enumerate(self.inbox.calls[self.inbox.answered :], start=self.inbox.answered):
            if n % ANSWER_EVERY != ANSWER_EVERY - 1 and call["link"]:
                with contextlib.suppress(Exception):  # a demo peer: the service says what it made of it
                    async with session.post(call["link"]) as answer:
                        opened += answer.status == 200
        self.inbox.answered = len(self.inbox.calls)
        return opened

    async def subscribe(self, conn: asyncpg.Connection, region: str) -> list[dict[str, Any]]:
        """The demo's subscriptions, made afresh at every start (the endpoint is new, and so are its secrets);
        those of an earlier start are deleted, their delivery log kept."""
        units = await region_units(conn, region)
        for old in await subs.listed(conn, DEMO_OWNER):  # deleted as the API deletes: secrets cleared
            await subs.delete(conn, old.id)
        made = []
        for name, channel, address, wants in SUBSCRIPTIONS:
            target = self.webhook_url + address if channel == "webhook" else address
            spec = subs.check_spec(channel, target, name=name, units=units, **wants)
            found, secret = await subs.create(conn, DEMO_OWNER, spec)
            if channel == "webhook":
                self.inbox.secrets[address] = secret
            made.append({"id": found.id, "name": name, "channel": channel})
        return made
