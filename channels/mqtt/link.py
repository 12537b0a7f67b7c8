"""One connection to an MQTT broker, kept up in the background: what the terminals and partner adapters share.

`BrokerLink` connects, subscribes to its topics, hands every incoming message to a callback, and reconnects by
itself with capped backoff (0.2 s doubling up to ``reconnect_max_s``) for as long as it is open. A sender waits
for the link with `wait_client` for a bounded time and publishes on the client it gets: a broker that is down
is a temporary failure for the caller to report, never a wait without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from urllib.parse import urlsplit

import aiomqtt

log = logging.getLogger(__name__)

FIRST_RETRY_S = 0.2


class MqttUrlError(ValueError):
    """A broker URL this adapter cannot use."""


def broker_address(url: str) -> tuple[str, int]:
    """Host and port of an ``mqtt://host[:port]`` URL (1883 by default).

    >>> broker_address("mqtt://127.0.0.1:18830")
    ('127.0.0.1', 18830)
    """
    parts = urlsplit(url)
    shown = (
        url if "@" not in parts.netloc else url.replace(parts.netloc, "***@" + parts.netloc.rsplit("@", 1)[1])
    )
    if parts.scheme != "mqtt" or not parts.hostname or "@" in parts.netloc:  # credentials go in settings
        raise MqttUrlError(f"not an mqtt://host[:port] URL: {shown!r}")
    try:
        port = parts.port or 1883
    except ValueError as e:
        raise MqttUrlError(f"bad port in {shown!r}") from e
    return parts.hostname, port


class BrokerLink:
    """A connection to one broker that keeps itself up (see the module docstring).

    ``client_id`` empty lets the library pick a random one (with a clean session: nothing to resume);
    ``subscriptions`` are subscribed (QoS 1) at every connect, and their messages go to ``on_message``.
    """

    def __init__(
        self,
        name: str,
        url: str,
        *,
        client_id: str = "",
        clean_session: bool = True,
        username: str = "",
        password: str = "",
        reconnect_max_s: float = 10.0,
        subscriptions: tuple[str, ...] = (),
        on_message: Callable[[aiomqtt.Message], None] | None = None,
    ) -> None:
        self.name = name
        self.host, self.port = broker_address(url)
        self.client_id = client_id
        self.clean_session = clean_session
        self._username = username or None
        self._password = password if username else None
        self.reconnect_max_s = reconnect_max_s
        self.subscriptions = subscriptions
        self._on_message = on_message
        self._client: aiomqtt.Client | None = None
        self._connected = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closed = False
        self.detail = "not connected yet"  # why the link is down ("" while up)
        self.connects = 0

    @property
    def route(self) -> str:
        """Where the link goes, for results and logs."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def is_up(self) -> bool:
        """Whether the link is connected right now."""
        return self._connected.is_set()

    def start(self) -> None:
        """Start the connection (and keep it up) in the background; `wait_client` starts it too."""
        if self._runner is None and not self._closed:
            self._runner = asyncio.create_task(self._run(), name=f"mqtt-{self.name}")

    async def wait_client(self, timeout_s: float) -> aiomqtt.Client | None:
        """The connected client, waiting up to ``timeout_s`` for the link; None when it is not up by then."""
        self.start()
        try:
            await asyncio.wait_for(self._connected.wait(), timeout_s)
        except TimeoutError:
            return None
        return self._client

    async def _run(self) -> None:
        delay = FIRST_RETRY_S
        while not self._closed:
            try:
                async with aiomqtt.Client(
                    self.host, self.port, identifier=self.client_id or None, clean_session=self.clean_session,
                    timeout=10, username=self._username, password=self._password,
                ) as client:  # fmt: skip
                    for topic in self.subscriptions:
                        await client.subscribe(topic, qos=1)
                    self._client = client
                    self._connected.set()
                    self.connects += 1
                    self.detail = ""
                    delay = FIRST_RETRY_S
                    log.info("mqtt %s: connected to %s:%d", self.name, self.host, self.port)
                    async for message in client.messages:
                        if self._on_message is not None:
                            self._on_message(message)
            except aiomqtt.MqttError as e:
                self.detail = f"broker {self.host}:{self.port}: {e}"
                if self._connected.is_set():
                    log.warning("mqtt %s: connection lost (%s); reconnecting", self.name, e)
            finally:
                self._client = None
                self._connected.clear()
            if self._closed:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_s)

    async def close(self) -> None:
        """Disconnect and stop reconnecting."""
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await self._runner
            self._runner = None
