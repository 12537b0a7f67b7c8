"""The demo's partners: a loopback webhook endpoint standing for departments' systems (it checks every
signature), a loopback mail server (aiosmtpd, a real SMTP server) standing for their mailboxes, and the
subscriptions that point at them and at an MQTT partner topic on the demo's broker. Every one is labelled a
demo peer in its logs; nothing leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
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

    def summary(self) -> dict[str, Any]:
        return {
            "webhooks": len(self.webhooks),
            "webhooks_verified": sum(1 for w in self.webhooks if w["verified"]),
            "emails": len(self.emails),
            "emails_with_cap": sum(1 for e in self.emails if e["cap"]),
        }


class _MailHandler:
    def __init__(self, inbox: PartnerInbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        parsed = message_from_bytes(envelope.original_content or b"", policy=policy.default)
        cap = any(p.get_content_type() == "application/cap+xml" for p in parsed.iter_attachments())  # type: ignore[attr-defined]
        for rcpt in envelope.rcpt_tos:
            self.inbox.emails.append({"to": rcpt, "subject": str(parsed["Subject"]), "cap": cap})
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

    async def subscribe(self, conn: asyncpg.Connection, region: str) -> list[dict[str, Any]]:
        """The demo's subscriptions, made afresh at every start (the endpoint is new, and so are its secrets);
        those of an earlier start are deleted, their delivery log kept."""
        units = await region_units(conn, region)
        await conn.execute(
            "UPDATE svc.subscription SET deleted_at = now() WHERE owner = $1 AND deleted_at IS NULL",
            DEMO_OWNER,
        )
        made = []
        for name, channel, address, wants in SUBSCRIPTIONS:
            target = self.webhook_url + address if channel == "webhook" else address
            spec = subs.check_spec(channel, target, name=name, units=units, **wants)
            found, secret = await subs.create(conn, DEMO_OWNER, spec)
            if channel == "webhook":
                self.inbox.secrets[address] = secret
            made.append({"id": found.id, "name": name, "channel": channel})
        return made
