"""The WebSocket transport the server runs: uvicorn's websockets-sansio protocol, with a
per-message deflate that keeps no compression state between messages.

Per-message deflate as uvicorn negotiates it keeps a zlib compressor (~39 KB) and decompressor
(~11 KB) alive for each socket's whole life, so that later messages can refer back to earlier
ones ("context takeover"). An idle signalling socket then costs three times what the rest of its
state does. Here both sides agree to compress each message on its own (server_ and
client_no_context_takeover, RFC 7692 section 7.1.1): the zlib state exists only while a message
is being compressed or decompressed. SDP offers and answers, the only sizeable signalling
messages, still shrink to about a third, which is what matters on 2G/3G links; browsers and the
`websockets` client accept these parameters.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any, Protocol

from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.exceptions import InvalidState
from websockets.extensions.base import Extension
from websockets.extensions.permessage_deflate import PerMessageDeflate, ServerPerMessageDeflateFactory
from websockets.frames import CONT, Frame
from websockets.http11 import Request
from websockets.server import ServerProtocol
from websockets.typing import ExtensionParameter

__all__ = ["DIRECT_SEND", "DirectSend", "SignallingProtocol"]

# The ASGI scope extension under which the protocol offers `DirectSend` to the handler.
DIRECT_SEND = "spean.websocket.direct_send"


class DirectSend(Protocol):
    def send_now(self, text: str) -> bool: ...


_WINDOW_BITS = 12  # uvicorn's choice: 4 KiB windows, a ~32 KB compressor while one message is compressed
_COMPRESS_SETTINGS = {"memLevel": 5}


# Messages smaller than this go uncompressed (RFC 7692 section 6: the RSV1 bit says, message by
# message, whether it is compressed). Without context takeover a 90-byte chat or media message
# shrinks by ~14 bytes, fewer than the TCP/IP and TLS headers that carry it, for a fresh zlib
# compressor (~32 KB allocated and cleared) and 10-20 µs of CPU each: the largest cost of a
# small relayed message after the Python around it. ICE candidates (~300 bytes) and SDPs still
# shrink by a third or more.
MIN_COMPRESSED = 128


class _MessageDeflate(PerMessageDeflate):
    """PerMessageDeflate without context takeover that also drops its compressor after each
    message (the library keeps the last one until the next message replaces it), and sends a
    small message, in one frame, as it is."""

    def encode(self, frame: Frame) -> Frame:
        if frame.fin and frame.opcode is not CONT and len(frame.data) < MIN_COMPRESSED:
            return frame  # control frames too (never compressed)
        encoded = super().encode(frame)
        if frame.fin:
            self.__dict__.pop("encoder", None)
        return encoded


class _MessageDeflateFactory(ServerPerMessageDeflateFactory):
    def __init__(self) -> None:
        super().__init__(
            server_no_context_takeover=True,
            client_no_context_takeover=True,
            server_max_window_bits=_WINDOW_BITS,
            client_max_window_bits=_WINDOW_BITS,
            compress_settings=_COMPRESS_SETTINGS,
        )

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, agreed = super().process_request_params(params, accepted_extensions)
        # Both sides without context takeover, as configured above: nothing is allocated yet.
        return response, _MessageDeflate(
            agreed.remote_no_context_takeover,
            agreed.local_no_context_takeover,
            agreed.remote_max_window_bits,
            agreed.local_max_window_bits,
            agreed.compress_settings,
        )


class _Inbox:
    """What the protocol needs of its receive queue (put_nowait, get, empty, one reader) without
    asyncio.Queue's four deques, ~3 KB per socket whether or not anything is queued."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)  # reading pauses after each message: this list stays tiny


class _Flag:
    """asyncio.Event's set/clear/wait without its deque (~760 B per socket): the protocol's
    "transport writable" flag, which is almost always set."""

    __slots__ = ("_on", "_waiters")

    def __init__(self) -> None:
        self._on = True
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self._on

    def set(self) -> None:
        self._on = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._on = False

    async def wait(self) -> bool:
        if not self._on:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return True


class SignallingProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, leaner per socket: `_MessageDeflateFactory` as its
    only extension (when per-message deflate is on, uvicorn's default), a list-based inbox and
    writable flag, and the handshake's request and response dropped once it is answered."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        if config.ws_per_message_deflate:
            self.conn = ServerProtocol(
                extensions=[_MessageDeflateFactory()],
                max_size=config.ws_max_size,
                logger=logging.getLogger("uvicorn.error"),
            )
        self.queue = _Inbox()  # type: ignore[assignment]  # the methods the protocol uses
        self.writable = _Flag()  # type: ignore[assignment]

    def schedule_ping(self) -> None:
        """Keepalive pings at a random point of the last quarter of the interval: sockets opened
        together (a worker's restart brings all its clients back at once) would otherwise ping
        together, ten thousand pings in one loop turn, a stall that every relayed message felt."""
        assert self.ping_interval is not None
        delay = max(0.0, self.ping_interval - self.last_ping_rtt)  # as uvicorn's, then spread
        spread = random.uniform(0.75, 1.0)  # noqa: S311 - timing jitter, not a secret
        self.ping_timer = self.loop.call_later(delay * spread, self.send_keepalive_ping)

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = self.__dict__.get("scope")  # none when the handshake was refused
        if scope is not None:
            scope["extensions"][DIRECT_SEND] = self

    def send_now(self, text: str) -> bool:
        """Write a text message now, as `send({"type": "websocket.send", ...})` would; False
        (nothing written) when that is not done at once: the handshake not answered yet, the
        socket closing or closed, or the peer not reading (the transport's buffer is full, and
        `send` would wait for it to drain).

        A relayed message otherwise passes a task of its own and four ASGI send wrappers
        (Litestar's connection state, its exception handler's and our handshake's captures, the
        app's before_send hooks), each of which acts on the handshake or HTTP answers only."""
        if (
            not self.handshake_complete
            or self.close_sent
            or self.disconnected
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        try:
            self.conn.send_text(text.encode())
        except InvalidState:  # the peer has begun to close
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # Read only while answering the handshake; ~3 KB of parsed headers per socket.
            del self.request, self.response
