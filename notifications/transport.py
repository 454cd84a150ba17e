"""The wire under firebase-admin's async client: HTTP/1.1 keep-alive on asyncio, parsed by httptools.

firebase-admin's `send_each_async` sends one HTTP request per message through an httpx client, so
the wire's cost per request is paid once per push. httpx's own transport (httpcore) spent
milliseconds of CPU per request once a batch queued on its pool (each checkout checks every
pooled connection's socket); aiohttp's client, which replaced it, still spent about as much CPU
per request as the SDK and httpx together (its own request and response objects, headers
rebuilt from httpx's, timers, cookie and redirect handling, all done again below httpx's).

This transport writes the request httpx built, byte for byte (its method, path, and headers as
httpx holds them: the SDK's, httpx's Host and Content-Length, the OAuth bearer), and reads the
answer with httptools (llhttp, the C parser uvicorn uses) straight into the httpx.Response the SDK
reads. Everything above the wire stays the SDK's and httpx's: message encoding, OAuth, status
and error handling (a non-2xx answer is an httpx.Response the SDK turns into UnregisteredError
and the rest), content decoding (httpx decodes by Content-Encoding), cookies.

Connections are kept per origin (scheme, host, port), at most `connections` in use at once, each
carrying one request at a time (no pipelining). One whose peer closed it is known from
`connection_lost` (no socket check per request) and never handed out again. A request that fails
is not retried here: FCM sends are not idempotent, and retries are the worker's (in the
database, with back-off).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from typing import Any

import httptools
import httpx

Origin = tuple[bytes, bytes, int]
# status, reason, HTTP version, headers, body, keep-alive
_Answer = tuple[int, bytes, bytes, list[tuple[bytes, bytes]], bytes, bool]


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: a request written, its answer parsed as it arrives."""

    def __init__(self) -> None:
        self.closed = False
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[_Answer] | None = None
        self._reason = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._headers_done = False
        self._framed = False  # Content-Length or chunked: the end is known without a close

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's own class, not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}"))
            self.close()

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._answer is None or self._answer.done():
            return
        if self._headers_done and not self._framed:  # an answer whose end is the close
            self.on_message_complete(keep_alive=False)
        else:
            self._fail(httpx.ReadError(f"connection closed before the answer ended: {exc or 'EOF'}"))

    # -- httptools callbacks ----------------------------------------------------------------

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        lowered = name.lower()
        if lowered == b"content-length" or (lowered == b"transfer-encoding" and b"chunked" in value.lower()):
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headers_done = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self, *, keep_alive: bool | None = None) -> None:
        answer = self._answer
        if answer is None or answer.done():  # an answer nobody asked for: the connection is unusable
            self.close()
            return
        status = self._parser.get_status_code()
        if status < 200:  # 1xx: informational, the real answer follows (never asked for here)
            self._reset()
            return
        alive = self._parser.should_keep_alive() if keep_alive is None else keep_alive
        version = b"HTTP/" + self._parser.get_http_version().encode("ascii")
        answer.set_result((status, self._reason, version, self._headers, b"".join(self._body), alive))

    # -- used by the transport --------------------------------------------------------------

    async def exchange(self, data: bytes) -> _Answer:
        assert self._transport is not None
        if self.closed:  # closed by the peer between its checkout and now
            raise httpx.ReadError("connection closed before the request was written")
        self._reset()
        self._answer = asyncio.get_running_loop().create_future()
        self._transport.write(data)
        return await self._answer

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _reset(self) -> None:
        self._reason = b""
        self._headers = []
        self._body = []
        self._headers_done = False
        self._framed = False

    def _fail(self, exc: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(exc)


class LeanTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, connections: int, ssl_context: ssl.SSLContext | None = None) -> None:
        self._connections = connections
        self._ssl = ssl_context
        self._idle: dict[Origin, collections.deque[_Connection]] = {}
        self._slots: dict[Origin, asyncio.Semaphore] = {}  # made in the loop that uses them
        self._open: set[_Connection] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if request.method == "HEAD":  # its answer's length would mislead the parser; never sent here
            raise httpx.UnsupportedProtocol("HEAD is not supported by this transport", request=request)
        origin: Origin = (url.raw_scheme, url.raw_host, url.port or (443 if url.raw_scheme == b"https" else 80))
        timeouts: dict[str, Any] = request.extensions.get("timeout", {})
        data = _serialise(request, await request.aread())
        slots = self._slots.get(origin)
        if slots is None:
            slots = self._slots[origin] = asyncio.Semaphore(self._connections)
        async with slots:
            conn = self._checkout(origin) or await self._connect(origin, timeouts.get("connect"), request)
            try:
                async with asyncio.timeout(timeouts.get("read")):
                    status, reason, version, headers, body, alive = await conn.exchange(data)
            except TimeoutError as exc:
                conn.close()
                raise httpx.ReadTimeout("no answer in time", request=request) from exc
            except httpx.TransportError:
                conn.close()
                raise
            except (OSError, asyncio.CancelledError):
                conn.close()  # a half-read answer must not be read as the next request's
                raise
            finally:
                self._open.discard(conn)
            if alive and not conn.closed:
                self._idle.setdefault(origin, collections.deque()).append(conn)
            else:
                conn.close()
        # As httpcore gives them: httpx reads both for every response it logs.
        extensions = {"http_version": version, "reason_phrase": reason}
        return httpx.Response(status, headers=headers, content=body, request=request, extensions=extensions)

    def _checkout(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()  # the most recently used: least likely to have been closed by the peer
            if not conn.closed:
                self._open.add(conn)
                return conn
        return None

    async def _connect(self, origin: Origin, timeout_s: float | None, request: httpx.Request) -> _Connection:
        scheme, host, port = origin
        name = host.decode("ascii")
        if scheme == b"https":
            if self._ssl is None:
                self._ssl = httpx.create_ssl_context()  # certifi's roots, as httpx's own transport
                self._ssl.set_alpn_protocols(["http/1.1"])
            tls: dict[str, Any] = {"ssl": self._ssl, "server_hostname": name}
        elif scheme == b"http":
            tls = {}
        else:
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}", request=request)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                _, conn = await loop.create_connection(_Connection, name, port, **tls)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"no connection to {name}:{port} in time", request=request) from exc
        except OSError as exc:
            raise httpx.ConnectError(f"{name}:{port}: {exc}", request=request) from exc
        self._open.add(conn)
        return conn

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._open):
            conn.close()
        self._open.clear()


def _serialise(request: httpx.Request, body: bytes) -> bytes:
    """The request as httpx holds it, on the wire: headers in their order and spelling."""
    head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    chunked = False
    for name, value in request.headers.raw:
        head.append(b"%s: %s\r\n" % (name, value))
        chunked = chunked or (name.lower() == b"transfer-encoding" and b"chunked" in value.lower())
    head.append(b"\r\n")
    if chunked:  # a streamed body of unknown length: read whole above, sent as one chunk
        body = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)) if body else b"0\r\n\r\n"
    return b"".join(head) + body
