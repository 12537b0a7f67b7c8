"""Radio and TV: the insertion script and the crawl line to a broadcaster over HTTP, confirmed by a one-time link.

The broadcaster's newsroom gets one JSON request per warning version (`insertion_request`) at its insertion
endpoint, with an ``Idempotency-Key`` (the delivery's key) and a bearer token::

    POST {url}
    {"identifier": "...", "msg_type": "Alert", "level": "orange", "hazard": "sandstorm", "status": "Actual",
     "script": "<read on air>", "crawl": "<one line for the TV crawl>", "areas": [{"code", "name"}],
     "onset": "...", "expires": "...", "cap_url": "...", "audio_url": "...",
     "confirm_url": "https://warnings.example.cn/api/v1/airings/<token>"}

A 2xx answer means the newsroom has it; the station confirms that it went on air by opening ``confirm_url``
(a GET: a link an editor can click). The token is an HMAC of the delivery's key under a secret of the service, so every attempt
of one delivery carries the same link and nobody can forge one. A Cancel is the same request with
``msg_type`` Cancel (the crawl says the warning is withdrawn), so stations take the crawl off.

Reach cannot be measured here: a confirmed airing counts as the areas' population times the broadcaster's
audience share, an estimate, stored when the confirmation comes (`warnings_svc.web.api.airings`). This
adapter reports no evidence of its own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from channels.area import AreaAlert, AreaSendResult, Evidence
from channels.base import FailureKind, Health, HealthState, SendOutcome

TOKEN_BYTES = 24


def confirm_token(secret: bytes, key: str) -> str:
    """The one-time link's token of a delivery: URL-safe, the same for every attempt, unforgeable without
    the secret.

    >>> confirm_token(b"s" * 32, "12-1/radio_tv/wuhai-tv")
    'FkJLIapT-gPf9-ZFln86rq_W_BwCd_G2'
    """
    digest = hmac.new(secret, key.encode(), hashlib.sha256).digest()[:TOKEN_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def insertion_request(alert: AreaAlert, confirm_url: str) -> dict[str, Any]:
    """What the newsroom receives for a version."""
    withdrawn = alert.msg_type == "Cancel"
    return {
        "identifier": alert.identifier,
        "msg_type": alert.msg_type,
        "level": alert.level,
        "hazard": alert.hazard,
        "status": alert.status,
        "script": alert.texts.broadcast,
        "crawl": alert.texts.headline if withdrawn else alert.texts.led,
        "areas": [{"code": a.code, "name": a.name} for a in alert.areas],
        "onset": alert.onset.isoformat(),
        "expires": alert.expires.isoformat(),
        "cap_url": alert.cap_url,
        "audio_url": alert.audio_url,
        "confirm_url": confirm_url,
    }


class BroadcasterChannel:
    """One radio or TV broadcaster's newsroom as an `AreaChannel`."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        token: str,
        secret: bytes,
        confirm_base: str,
        request_timeout_s: float = 10.0,
    ) -> None:
        if len(secret) < 32:
            raise ValueError("the confirmation secret needs at least 32 bytes")
        self.name = name
        self.url = url
        self._token = token
        self._secret = secret
        self.confirm_base = confirm_base.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=request_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._closed = asyncio.Event()
        self._last = HealthState.UP
        self._detail = ""

    def confirm_url(self, key: str) -> str:
        """The one-time link the broadcaster opens once the warning went on air."""
        return f"{self.confirm_base}/api/v1/airings/{confirm_token(self._secret, key)}"

    async def put_out(self, alert: AreaAlert) -> AreaSendResult:
        """Send the insertion request; 2xx accepted, 408/429/5xx and network faults temporary, other 4xx
        permanent. The remote id is the confirmation token (what the link names)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        body = insertion_request(alert, self.confirm_url(alert.key))
        headers = {"Idempotency-Key": alert.key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            async with self._session.post(self.url, json=body, headers=headers) as response:
                text = (await response.text())[:200]
                status = response.status
        except TimeoutError:
            return self._failed(alert, FailureKind.TIMEOUT, f"{self.url}: no answer in time")
        except aiohttp.ClientError as e:
            return self._failed(alert, FailureKind.LINK_DOWN, f"{self.url}: {type(e).__name__}: {e}"[:200])
        if 200 <= status < 300:
            self._last, self._detail = HealthState.UP, ""
            token = confirm_token(self._secret, alert.key)
            return AreaSendResult(alert.key, SendOutcome.ACCEPTED, token, route=self.url)
        reason = f"{self.url}: HTTP {status}: {' '.join(text.split())}"
        if status in (408, 429) or status >= 500:
            kind = FailureKind.THROTTLED if status == 429 else FailureKind.REMOTE_ERROR
            return self._failed(alert, kind, reason)
        return self._failed(alert, FailureKind.REFUSED, reason)

    def _failed(self, alert: AreaAlert, kind: FailureKind, reason: str) -> AreaSendResult:
        if kind.retryable:
            self._last, self._detail = HealthState.DOWN, reason
        outcome = SendOutcome.TEMPORARY_FAILURE if kind.retryable else SendOutcome.PERMANENT_FAILURE
        return AreaSendResult(alert.key, outcome, route=self.url, reason=reason, failure=kind)

    async def evidence(self) -> AsyncIterator[list[Evidence]]:
        """None: airing is confirmed through the service's link, not reported here."""
        await self._closed.wait()
        return
        yield  # an async generator that ends when the channel closes

    def health(self) -> Health:
        """As the last request found the newsroom."""
        up = self._last is HealthState.UP
        return Health(self._last, detail=self._detail, links_up=int(up), links_total=1)

    async def close(self) -> None:
        self._closed.set()
        if self._session is not None:
            await self._session.close()
            self._session = None
