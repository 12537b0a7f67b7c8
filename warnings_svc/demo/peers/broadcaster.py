"""A loopback SIMULATOR of a radio or TV newsroom that takes warning insertions (`channels.broadcaster`), for the
demo and the tests. Not a real broadcaster: every log line and answer says so.

It validates every request completely (JSON, the documented fields and nothing else, times with an offset,
a confirmation link), keeps what it took, "airs" each Alert or Update after ``airing_delay_s`` and then
confirms it by opening the request's ``confirm_url``, as a station's duty editor would. It can be scripted
to refuse (4xx), fail (5xx) or never confirm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

import aiohttp
from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

SERVER_HEADER = "newsroom-simulator (loopback simulator, not a real broadcaster)"


def _aware(value: datetime) -> datetime:
    if value.utcoffset() is None:
        raise ValueError("needs an offset")
    return value


class _Area(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    code: Annotated[str, Field(pattern=r"^[0-9]{12}$")]
    name: Annotated[str, Field(min_length=1, max_length=80)]


class Insertion(BaseModel):
    """Simulator: the insertion request as `channels.broadcaster.insertion_request` documents it."""

    model_config = ConfigDict(extra="forbid")
    identifier: Annotated[str, Field(min_length=1, max_length=200)]
    msg_type: Literal["Alert", "Update", "Cancel"]
    level: Literal["blue", "yellow", "orange", "red"]
    hazard: Annotated[str, Field(min_length=1, max_length=40)]
    status: Literal["Actual", "Exercise", "Test", "System", "Draft"]
    script: Annotated[str, Field(max_length=5000)]
    crawl: Annotated[str, Field(min_length=1, max_length=500)]
    areas: Annotated[list[_Area], Field(min_length=1, max_length=500)]
    onset: Annotated[datetime, AfterValidator(_aware)]
    expires: Annotated[datetime, AfterValidator(_aware)]
    cap_url: Annotated[str, Field(max_length=500)]
    audio_url: Annotated[str, Field(max_length=500)]
    confirm_url: Annotated[str, Field(pattern=r"^https?://[^\s]+/api/v1/airings/[A-Za-z0-9_-]{20,64}$")]


@dataclass
class NewsroomState:
    """Simulator: what the newsroom took and confirmed, and what it is scripted to do."""

    insertions: list[Insertion] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)  # Idempotency-Key -> index in insertions
    confirmed: list[tuple[str, int]] = field(default_factory=list)  # (confirm_url, status the service gave)
    refused: list[str] = field(default_factory=list)  # one-line reasons of refused requests
    answer_status: int = 200  # scripted: 200 takes requests; a 4xx or 5xx answers every request so
    confirm: bool = True  # scripted: False never confirms airing


class NewsroomSimulator:
    """Simulator: ``async with NewsroomSimulator() as sim: sim.url``."""

    def __init__(self, *, token: str = "simulator-token", airing_delay_s: float = 0.2) -> None:
        self.token = token
        self.airing_delay_s = airing_delay_s
        self.state = NewsroomState()
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._airings: set[asyncio.Task[None]] = set()

    def script(self, *, status: int = 200, confirm: bool = True) -> None:
        """Simulator: answer every request with `status` (200: take it), confirm airings or not."""
        self.state.answer_status = status
        self.state.confirm = confirm

    async def __aenter__(self) -> NewsroomSimulator:
        app = web.Application()
        app.router.add_post("/v1/insertions", self._insert)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/v1/insertions"
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        log.info("newsroom SIMULATOR listening", extra={"url": self.url})
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._airings:
            task.cancel()
        for task in list(self._airings):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("newsroom SIMULATOR stopped", extra={"url": self.url})

    def _refuse(self, status: int, reason: str) -> web.Response:
        self.state.refused.append(reason)
        return web.json_response(
            {"title": "refused by the newsroom simulator", "detail": reason},
            status=status,
            headers={"Server": SERVER_HEADER},
        )

    async def _insert(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._refuse(401, "no or wrong bearer token")
        if self.state.answer_status != 200:
            return self._refuse(self.state.answer_status, f"scripted answer {self.state.answer_status}")
        key = request.headers.get("Idempotency-Key", "")
        if not 0 < len(key) <= 200:
            return self._refuse(400, "Idempotency-Key header missing")
        try:
            body: Any = await request.json()
            insertion = Insertion.model_validate(body)
        except (ValueError, ValidationError) as e:
            return self._refuse(422, " ".join(str(e).split())[:300])
        if key in self.state.keys:  # a retry of what it has: the same answer, nothing aired twice
            return web.json_response({"insertion": self.state.keys[key]}, headers={"Server": SERVER_HEADER})
        self.state.keys[key] = len(self.state.insertions)
        self.state.insertions.append(insertion)
        if insertion.msg_type != "Cancel" and self.state.confirm:
            task = asyncio.create_task(self._air(insertion.confirm_url))
            self._airings.add(task)
            task.add_done_callback(self._airings.discard)
        return web.json_response(
            {"insertion": self.state.keys[key]}, status=201, headers={"Server": SERVER_HEADER}
        )

    async def _air(self, confirm_url: str) -> None:
        await asyncio.sleep(self.airing_delay_s)
        assert self._session is not None
        try:
            async with self._session.get(confirm_url) as response:
                self.state.confirmed.append((confirm_url, response.status))
        except aiohttp.ClientError as e:
            log.warning("newsroom SIMULATOR: confirmation failed: %s", e)
            self.state.confirmed.append((confirm_url, 0))
