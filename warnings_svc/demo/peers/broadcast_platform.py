"""SIMULATOR of a county emergency broadcast platform (应急广播平台), on 127.0.0.1 only: not a real platform.

No open implementation of a platform exists to test against, so this loopback simulator speaks the interface
described in docs/channels/emergency-broadcast-platform.md, for the tests and the demo. It is strict where a
real platform would be (every request validated completely, extra fields refused, the audio fetched and checked
to be a WAV) and says what it is in every log line and in its ``Server:`` header.

It "plays" a broadcast by advancing the terminals of each area at a configured pace, a configured share of
them failing (drawn from a seeded generator, so a test is repeatable). Faults can be scripted: refuse (answer
with a given status), fail (500), slow (answer late), drop (close the connection without an answer).

    async with BroadcastPlatformSimulator({"150302000000": 5}) as sim:
        sim.url; sim.broadcasts; sim.script(Fault.FAIL, times=2)
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import random
import wave
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

log = logging.getLogger(__name__)

SERVER_HEADER = "broadcast-platform-SIMULATOR/1 (loopback test peer, not a real emergency broadcast platform)"
MAX_BODY_BYTES = 256 * 1024
MAX_AUDIO_BYTES = 20 * 1024 * 1024
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

AreaCode = Annotated[str, StringConstraints(pattern=r"^[0-9]{12}$")]


class BroadcastRequest(BaseModel):
    """The body of ``POST /v1/broadcasts``, as the simulated platform checks it."""

    model_config = ConfigDict(extra="forbid", strict=True)

    ebm_id: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z._:-]{1,64}$")]
    msg_type: Literal["create", "update", "cancel"]
    references: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None
    status: Literal["actual", "exercise", "test"]
    event_type: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,32}$")]
    severity: Annotated[int, Field(ge=1, le=4)]
    start: AwareDatetime
    end: AwareDatetime
    areas: Annotated[list[AreaCode], Field(min_length=1, max_length=500)]
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{3}$")]
    script: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    audio_url: Annotated[str, StringConstraints(max_length=2000)] | None
    led_text: Annotated[str, StringConstraints(max_length=200)]
    priority: Annotated[int, Field(ge=0, le=3)]
    repeat: Annotated[int, Field(ge=1, le=10)]

    @model_validator(mode="after")
    def _consistent(self) -> BroadcastRequest:
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if len(set(self.areas)) != len(self.areas):
            raise ValueError("areas must not repeat")
        if (self.msg_type == "create") != (self.references is None):
            raise ValueError("references is required for update and cancel, and forbidden for create")
        if self.audio_url is not None:
            parts = urlsplit(self.audio_url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("audio_url must be an http(s) URL")
        return self


# datetimes arrive as strings in JSON; strict mode takes them in JSON mode (model_validate_json)


class Fault(StrEnum):
    """A scripted misbehaviour for the next request(s)."""

    REFUSE = "refuse"  # answer with the scripted status (default 503, with Retry-After)
    FAIL = "fail"  # answer 500
    SLOW = "slow"  # wait delay_s, then answer normally
    DROP = "drop"  # close the connection without answering


@dataclass(slots=True)
class ScriptedFault:
    """One fault waiting for a request (of ``method``, or any when None)."""

    fault: Fault
    status: int = 503
    delay_s: float = 0.0
    method: str | None = None
    retry_after_s: int = 1


@dataclass(slots=True)
class AreaPlayback:
    """How far one area of a broadcast has got."""

    terminals: int
    played: int = 0
    failed: int = 0

    @property
    def done(self) -> bool:
        return self.played + self.failed >= self.terminals


@dataclass(slots=True)
class SimulatedBroadcast:
    """A broadcast the simulated platform holds: the request as received, its state and progress."""

    broadcast_id: str
    key: str
    request: BroadcastRequest
    raw_body: bytes
    state: str = "playing"  # playing -> completed | stopped | superseded
    areas: dict[str, AreaPlayback] = field(default_factory=dict)
    audio_bytes: int = 0
    audio_duration_s: float = 0.0
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    task: asyncio.Task[None] | None = None

    def status(self) -> dict[str, Any]:
        """The answer of ``GET /v1/broadcasts/{id}``."""
        return {
            "broadcast_id": self.broadcast_id,
            "ebm_id": self.request.ebm_id,
            "msg_type": self.request.msg_type,
            "state": self.state,
            "areas": [
                {"code": code, "terminals": a.terminals, "played": a.played, "failed": a.failed}
                for code, a in self.areas.items()
            ],
        }


def problem(status: int, title: str, detail: str = "", **extra: Any) -> web.Response:
    """An RFC 9457 problem document."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.json_response(body, status=status, content_type="application/problem+json")


class BroadcastPlatformSimulator:
    """SIMULATOR of an emergency broadcast platform on 127.0.0.1 (see the module docstring).

    ``terminals_per_area`` says which 12-digit areas the platform reaches and with how many terminals;
    a request naming any other area is refused (422). Each ``play_interval_s``, ``terminals_per_tick``
    terminals of every area of a playing broadcast play, each failing with probability ``failure_share``.
    """

    def __init__(
        self,
        terminals_per_area: Mapping[str, int],
        *,
        token: str = "simulator-token",
        play_interval_s: float = 0.02,
        terminals_per_tick: int = 1,
        failure_share: float = 0.0,
        seed: int = 0,
        fetch_audio: bool = True,
        port: int = 0,
    ) -> None:
        if not 0.0 <= failure_share <= 1.0:
            raise ValueError("failure_share: 0 to 1")
        if any(len(c) != 12 or not c.isdigit() or n < 0 for c, n in terminals_per_area.items()):
            raise ValueError("terminals_per_area: 12-digit codes to terminal counts >= 0")
        self.terminals_per_area = dict(terminals_per_area)
        self.token = token
        self.play_interval_s = play_interval_s
        self.terminals_per_tick = max(1, terminals_per_tick)
        self.failure_share = failure_share
        self.fetch_audio = fetch_audio
        self.port = port
        self.broadcasts: dict[str, SimulatedBroadcast] = {}
        self.requests: list[tuple[str, str, int]] = []  # (method, path, status) of every answered request
        self._by_key: dict[str, SimulatedBroadcast] = {}
        self._faults: deque[ScriptedFault] = deque()
        self._random = random.Random(seed)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._audio_client: aiohttp.ClientSession | None = None
        self.url = ""

    # ----------------------------------------------------------------------------------------- lifetime

    async def __aenter__(self) -> BroadcastPlatformSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> str:
        """Listen on 127.0.0.1 (an ephemeral port unless one was given); the base URL."""
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._middleware])
        app.router.add_post("/v1/broadcasts", self._create)
        app.router.add_get("/v1/broadcasts/{broadcast_id}", self._status)
        app.router.add_delete("/v1/broadcasts/{broadcast_id}", self._delete)
        app.router.add_get("/v1/health", self._health)
        app.on_response_prepare.append(self._label)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        port = self._runner.addresses[0][1]  # the ephemeral port the system gave
        self.url = f"http://127.0.0.1:{port}"
        self._audio_client = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0))
        log.info("SIMULATOR broadcast platform listening", extra={"url": self.url})
        return self.url

    async def stop(self) -> None:
        """Stop playing and listening."""
        for broadcast in self.broadcasts.values():
            if broadcast.task is not None:
                broadcast.task.cancel()
        for broadcast in self.broadcasts.values():
            if broadcast.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await broadcast.task
        if self._audio_client is not None:
            await self._audio_client.close()
        if self._runner is not None:
            await self._runner.cleanup()
        log.info("SIMULATOR broadcast platform stopped", extra={"url": self.url})

    def script(
        self,
        fault: Fault | str,
        *,
        times: int = 1,
        status: int = 503,
        delay_s: float = 0.5,
        method: str | None = None,
        retry_after_s: int = 1,
    ) -> None:
        """Misbehave on the next ``times`` requests (of ``method``, or any)."""
        for _ in range(times):
            self._faults.append(ScriptedFault(Fault(fault), status, delay_s, method, retry_after_s))

    # ------------------------------------------------------------------------------------------ plumbing

    async def _label(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Server"] = SERVER_HEADER

    def _next_fault(self, method: str) -> ScriptedFault | None:
        for fault in self._faults:
            if fault.method is None or fault.method == method:
                self._faults.remove(fault)
                return fault
        return None

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        fault = self._next_fault(request.method)
        if fault is not None:
            log.info("SIMULATOR broadcast platform: scripted fault", extra={"fault": fault.fault.value})
            # the body is read first: a peer that drops or stalls has taken the request, as a real one would
            await request.read()
            if fault.fault is Fault.DROP:
                if request.transport is not None:
                    request.transport.close()
                self.requests.append((request.method, request.path, 0))  # 0: no answer
                return web.Response(status=204)  # written to a closed transport: nobody gets it
            if fault.fault is Fault.FAIL:
                return self._answered(request, problem(500, "SIMULATOR: scripted failure"))
            if fault.fault is Fault.REFUSE:
                response = problem(fault.status, "SIMULATOR: scripted refusal")
                response.headers["Retry-After"] = str(fault.retry_after_s)
                return self._answered(request, response)
            await asyncio.sleep(fault.delay_s)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._answered(request, problem(401, "SIMULATOR: bearer token missing or wrong"))
        response = await handler(request)
        return self._answered(request, response)

    def _answered(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        self.requests.append((request.method, request.path, response.status))
        return response

    # ------------------------------------------------------------------------------------------ handlers

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "simulator": True})

    async def _create(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key", "")
        if not 1 <= len(key) <= 200:
            return problem(400, "SIMULATOR: Idempotency-Key header missing or longer than 200 characters")
        if request.content_type != "application/json":
            return problem(415, "SIMULATOR: the body must be application/json")
        raw = await request.read()
        try:
            body = BroadcastRequest.model_validate_json(raw)
        except ValidationError as e:
            errors = [{"loc": ".".join(map(str, err["loc"])), "msg": err["msg"]} for err in e.errors()]
            log.info("SIMULATOR broadcast platform: refused an invalid body", extra={"errors": len(errors)})
            return problem(422, "SIMULATOR: invalid body", str(e.error_count()) + " errors", errors=errors)
        earlier = self._by_key.get(key)
        if earlier is not None:
            if json.loads(earlier.raw_body) != json.loads(raw):
                return problem(409, "SIMULATOR: Idempotency-Key reused with another body")
            return web.json_response(
                {"broadcast_id": earlier.broadcast_id, "state": earlier.state}, status=200
            )
        unknown = [code for code in body.areas if code not in self.terminals_per_area]
        if unknown:
            return problem(422, "SIMULATOR: areas this platform does not reach", ", ".join(unknown))
        replaced: SimulatedBroadcast | None = None
        if body.references is not None:
            replaced = self.broadcasts.get(body.references)
            if replaced is None:
                return problem(404, "SIMULATOR: the referenced broadcast is unknown", body.references)
        audio_bytes, duration = 0, 0.0
        if body.audio_url is not None and self.fetch_audio:
            checked = await self._check_audio(body.audio_url)
            if isinstance(checked, web.Response):
                return checked
            audio_bytes, duration = checked
        if replaced is not None:
            self._halt(replaced, "superseded")
        broadcast = SimulatedBroadcast(
            broadcast_id=f"sim-{next(self._ids)}",
            key=key,
            request=body,
            raw_body=raw,
            areas={code: AreaPlayback(self.terminals_per_area[code]) for code in body.areas},
            audio_bytes=audio_bytes,
            audio_duration_s=duration,
        )
        self.broadcasts[broadcast.broadcast_id] = broadcast
        self._by_key[key] = broadcast
        broadcast.task = asyncio.create_task(self._play(broadcast))
        log.info(
            "SIMULATOR broadcast platform: broadcast made",
            extra={
                "broadcast_id": broadcast.broadcast_id,
                "msg_type": body.msg_type,
                "areas": len(body.areas),
            },
        )
        return web.json_response(
            {"broadcast_id": broadcast.broadcast_id, "state": broadcast.state}, status=201
        )

    async def _check_audio(self, url: str) -> tuple[int, float] | web.Response:
        """Fetch the audio and check it is a WAV: (bytes, seconds), or the problem to answer."""
        if urlsplit(url).hostname not in LOOPBACK_HOSTS:
            # the simulator never leaves the machine
            return problem(422, "SIMULATOR: audio_url must be on the loopback interface", url)
        assert self._audio_client is not None
        try:
            async with self._audio_client.get(url) as response:
                if response.status != 200:
                    return problem(502, "SIMULATOR: could not fetch audio_url", f"HTTP {response.status}")
                data = await response.content.read(MAX_AUDIO_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as e:
            return problem(502, "SIMULATOR: could not fetch audio_url", e.__class__.__name__)
        if len(data) > MAX_AUDIO_BYTES:
            return problem(422, "SIMULATOR: audio larger than 20 MB")
        try:
            with wave.open(io.BytesIO(data)) as w:
                frames, rate = w.getnframes(), w.getframerate()
        except (wave.Error, EOFError) as e:
            return problem(422, "SIMULATOR: audio_url is not a WAV file", str(e))
        if frames == 0 or rate == 0:
            return problem(422, "SIMULATOR: the WAV file holds no sound")
        return len(data), frames / rate

    async def _status(self, request: web.Request) -> web.Response:
        broadcast = self.broadcasts.get(request.match_info["broadcast_id"])
        if broadcast is None:
            return problem(404, "SIMULATOR: no such broadcast")
        return web.json_response(broadcast.status())

    async def _delete(self, request: web.Request) -> web.Response:
        broadcast = self.broadcasts.get(request.match_info["broadcast_id"])
        if broadcast is None:
            return problem(404, "SIMULATOR: no such broadcast")
        if broadcast.state == "playing":
            self._halt(broadcast, "stopped")
        log.info("SIMULATOR broadcast platform: stop asked", extra={"broadcast_id": broadcast.broadcast_id})
        return web.json_response({"broadcast_id": broadcast.broadcast_id, "state": broadcast.state})

    # ------------------------------------------------------------------------------------------- playing

    def _halt(self, broadcast: SimulatedBroadcast, state: str) -> None:
        if broadcast.task is not None:
            broadcast.task.cancel()
        if broadcast.state == "playing":
            broadcast.state = state

    async def _play(self, broadcast: SimulatedBroadcast) -> None:
        """Advance every area's terminals at the configured pace until all have played or failed."""
        ticks = max((a.terminals for a in broadcast.areas.values()), default=0)
        for _ in range(-(-ticks // self.terminals_per_tick)):  # bounded: ceil(terminals / per tick) rounds
            await asyncio.sleep(self.play_interval_s)
            for area in broadcast.areas.values():
                for _ in range(min(self.terminals_per_tick, area.terminals - area.played - area.failed)):
                    if self._random.random() < self.failure_share:
                        area.failed += 1
                    else:
                        area.played += 1
        if broadcast.state == "playing":
            broadcast.state = "completed"
            log.info(
                "SIMULATOR broadcast platform: played out", extra={"broadcast_id": broadcast.broadcast_id}
            )
