"""A loopback SIMULATOR of a cell broadcast centre's ECBE REST interface (Osmocom osmo-cbc), for tests and
the demo: no real CBC runs here (osmo-cbc is not packaged for this system and needs cell controllers).

It listens on 127.0.0.1 only, validates every POST against ``ecbe_schema.json`` (the published ECBE format as
osmo-cbc's parser reads it; see the schema's ``$comment``) and answers as osmo-cbc does: 201 "Created", 400
with a one-line reason, 409 when the message_id is in use, 200 / 404 to a DELETE. It keeps every request, and
can be scripted to refuse (4xx), fail (5xx), answer slowly or drop the connection, so that a client's routes
and failure handling can be tested over real HTTP. Every answer carries a ``Server`` header saying it is a
simulator.

>>> async def demo() -> None:  # doctest: +SKIP
...     async with CbcSimulator() as sim:
...         sim.script("fail", times=1)  # the next request gets a 503
...         print(sim.url, sim.received)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import jsonschema  # type: ignore[import-untyped]  # no stubs; pyproject lists no types-jsonschema
from aiohttp import web

from channels.cbs.pages import Alphabet, CbsEncodingError, split_pages

log = logging.getLogger(__name__)

SCHEMA_PATH = Path(__file__).with_name("ecbe_schema.json")
SERVER_HEADER = "ecbe-cbc-simulator/1 (loopback SIMULATOR, not a real CBC)"
LOOPBACK = "127.0.0.1"

Action = Literal["accept", "refuse", "fail", "slow", "drop"]


@dataclass(slots=True)
class Received:
    """One request the simulator got: method, path, parsed JSON body (None for none or unparsable), the
    status it answered (0 when the connection was dropped), its one-line reason, and when it came and went."""

    method: str
    path: str
    body: Any
    status: int
    reason: str
    arrived_at: float = 0.0  # time.monotonic() when the request came in
    answered_at: float = 0.0  # ... and when the simulator answered it (or dropped it)


@dataclass(slots=True)
class Script:
    """What the simulator does with the next requests: ``action`` for ``times`` requests (None: until
    scripted again), with the ``status`` to answer (refuse: 4xx, fail: 5xx) or the ``delay_s`` to wait
    (slow: then answers normally)."""

    action: Action = "accept"
    status: int = 0
    delay_s: float = 0.0
    times: int | None = None


@dataclass(slots=True)
class SimulatorState:
    """Everything the simulator holds: live messages by message_id, every request, every DELETE."""

    validator: jsonschema.protocols.Validator
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)
    script: Script = field(default_factory=Script)

    def next_action(self) -> Script:
        """The simulator's scripted behaviour for this request (counting it down)."""
        current = self.script
        if current.times is not None:
            current.times -= 1
            if current.times <= 0:
                self.script = Script()
        return current


STATE = web.AppKey("cbc_simulator_state", SimulatorState)


def _record(
    state: SimulatorState, request: web.Request, arrived: float, body: Any, status: int, reason: str
) -> None:
    """Keep one request in the simulator's record, with when it came in and when it was answered."""
    state.received.append(
        Received(request.method, request.path, body, status, reason, arrived, time.monotonic())
    )


def load_validator() -> jsonschema.protocols.Validator:
    """The simulator's ECBE schema, checked and compiled once (not per request)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema)


def body_problem(validator: jsonschema.protocols.Validator, body: Any) -> str:
    """The simulator's one line saying what is wrong with a POST body, or "" when it is a valid ECBE message
    whose text fits 15 pages."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(body))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(body)"
        return f"invalid ECBE message at {where}: {error.message}"[:300].replace("\n", " ")
    payload = body["smscb_message"]["payload"].get("payload_decoded")
    if payload is not None and payload["character_set"] in ("gsm", "ucs2"):
        try:
            split_pages(payload["data_utf8"], alphabet=Alphabet(payload["character_set"]))
        except CbsEncodingError as e:
            return f"invalid ECBE message: {e}"
    return ""


async def _scripted(
    request: web.Request, state: SimulatorState, arrived: float, body: Any = None
) -> web.Response | None:
    """Apply the simulator's script: a response to send instead of the normal one, or None to go on normally."""
    script = state.next_action()
    if script.action == "slow":
        await asyncio.sleep(script.delay_s)
    elif script.action == "drop":
        log.info("cbc simulator drops the connection", extra={"path": request.path})
        _record(state, request, arrived, body, 0, "dropped")
        if request.transport is not None:
            request.transport.abort()
        return _answer(599, "dropped")  # never reaches the client: its connection is gone
    elif script.action in ("refuse", "fail"):
        status = script.status or (403 if script.action == "refuse" else 503)
        reason = f"simulated {script.action} ({status})"
        _record(state, request, arrived, body, status, reason)
        return _answer(status, reason)
    return None


def _answer(status: int, reason: str) -> web.Response:
    return web.Response(status=status, text=reason, headers={"Server": SERVER_HEADER})


async def post_message(request: web.Request) -> web.Response:
    """Simulated POST /api/ecbe/v1/message: validate, then create the message unless its message_id is in use. The body
    is read before the script applies, so a slow answer still creates the message (as a CBC that is slow to
    answer but did its work)."""
    arrived = time.monotonic()  # before any scripted delay
    state = request.app[STATE]
    try:
        body = json.loads(await request.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    scripted = await _scripted(request, state, arrived, body)
    if scripted is not None:
        return scripted
    problem = "REST: No JSON Body" if body is None else body_problem(state.validator, body)
    if problem:
        log.info("cbc simulator refuses a message", extra={"reason": problem})
        _record(state, request, arrived, body, 400, problem)
        return _answer(400, problem)
    message_id = body["smscb_message"]["message_id"]
    if message_id in state.messages:
        reason = "Could not allocate"  # osmo-cbc's words when the message_id exists
        _record(state, request, arrived, body, 409, reason)
        return _answer(409, reason)
    state.messages[message_id] = body
    _record(state, request, arrived, body, 201, "Created")
    log.info("cbc simulator accepted a message", extra={"message_id": message_id})
    return _answer(201, "Created")


async def delete_message(request: web.Request) -> web.Response:
    """Simulated DELETE /api/ecbe/v1/message/{message_id}: 200 when it existed, 404 when not."""
    arrived = time.monotonic()  # before any scripted delay
    state = request.app[STATE]
    scripted = await _scripted(request, state, arrived)
    if scripted is not None:
        return scripted
    raw = request.match_info["message_id"]
    if not raw.isdigit() or int(raw) > 65535:
        _record(state, request, arrived, None, 400, "bad message_id")
        return _answer(400, "bad message_id")
    message_id = int(raw)
    state.deleted.append(message_id)
    if state.messages.pop(message_id, None) is None:
        _record(state, request, arrived, None, 404, "Unknown message ID")
        return _answer(404, "Unknown message ID")
    _record(state, request, arrived, None, 200, "OK")
    log.info("cbc simulator deleted a message", extra={"message_id": message_id})
    return _answer(200, "OK")


def create_app(state: SimulatorState | None = None) -> web.Application:
    """The simulator's aiohttp application (one factory for tests and the demo)."""
    app = web.Application()
    app[STATE] = state or SimulatorState(validator=load_validator())
    app.router.add_post("/api/ecbe/v1/message", post_message)
    app.router.add_delete("/api/ecbe/v1/message/{message_id}", delete_message)
    return app


class CbcSimulator:
    """A running loopback CBC SIMULATOR: ``async with CbcSimulator() as sim:`` then ``sim.url`` (the base URL
    a client's route takes), ``sim.received`` / ``sim.accepted`` / ``sim.deleted`` to inspect, and
    ``sim.script(...)`` to make it refuse, fail, answer slowly or drop connections. One instance is one route;
    start two for a primary and a secondary. ``port`` 0 takes a free port."""

    def __init__(self, port: int = 0) -> None:
        self.state = SimulatorState(validator=load_validator())
        self._port = port
        self._runner: web.AppRunner | None = None

    async def __aenter__(self) -> CbcSimulator:
        self._runner = web.AppRunner(create_app(self.state), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        log.info("cbc simulator listening (loopback simulator, not a real CBC)", extra={"url": self.url})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        """The simulator's base URL, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{LOOPBACK}:{self._port}"

    @property
    def received(self) -> list[Received]:
        """Every request the simulator got, oldest first."""
        return self.state.received

    @property
    def accepted(self) -> list[dict[str, Any]]:
        """Bodies of the messages the simulator created (answered 201), oldest first."""
        return [r.body for r in self.state.received if r.method == "POST" and r.status == 201]

    @property
    def deleted(self) -> list[int]:
        """message_ids of every DELETE the simulator got, oldest first."""
        return self.state.deleted

    @property
    def messages(self) -> dict[int, dict[str, Any]]:
        """Messages the simulator holds now, by message_id."""
        return self.state.messages

    def script(
        self, action: Action, *, status: int = 0, delay_s: float = 0.0, times: int | None = None
    ) -> None:
        """What the simulator does with the next ``times`` requests (None: all, until scripted again): ``accept``,
        ``refuse`` (``status``, 403 by default), ``fail`` (``status``, 503 by default), ``slow`` (wait
        ``delay_s``, then answer normally), ``drop`` (close the connection without an answer)."""
        if action == "refuse" and status and not 400 <= status < 500:
            raise ValueError("refuse answers a 4xx")
        if action == "fail" and status and not 500 <= status < 600:
            raise ValueError("fail answers a 5xx")
        self.state.script = Script(action, status, delay_s, times)
