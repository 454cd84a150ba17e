"""The wire under the SDK (notifications.transport) and the client around it (notifications.fcm):
the bytes that leave are the SDK's own request, and the transport reads HTTP/1.1 answers as
httpx's would (framing, keep-alive, a peer's close, timeouts), against raw local servers."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import firebase_admin
import httpx
import pytest
from firebase_admin import credentials, messaging

from notifications.fcm import FcmPushSender
from notifications.push import Push
from notifications.transport import LeanTransport
from tests.fcm_server import FcmServer

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class RawServer:
    """A TCP server whose every connection runs `handler`; counts connections, keeps requests."""

    def __init__(self, handler: Handler) -> None:
        self.connections = 0
        self.requests: list[bytes] = []
        self._handler = handler
        self._server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await self._handler(reader, writer)
        writer.close()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next((int(line[15:]) for line in lines if line.lower().startswith(b"content-length:")), 0)
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def _answer(body: bytes, *headers: bytes) -> bytes:
    extra = b"".join(h + b"\r\n" for h in headers)
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n%s" % (
        len(body),
        extra,
        body,
    )


def _fcm_like(server_ref: list[RawServer]) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await server_ref[0].read_request(reader)
            writer.write(_answer(b'{"name": "projects/spean-test/messages/1"}'))
            await writer.drain()

    return handler


@contextlib.asynccontextmanager
async def _fcm_capture() -> AsyncIterator[RawServer]:
    ref: list[RawServer] = []
    server = RawServer(_fcm_like(ref))
    ref.append(server)
    async with server:
        yield server


async def test_the_request_on_the_wire_is_the_one_the_sdk_sends_through_its_own_client(fcm: FcmServer) -> None:
    """Same message, once through the SDK as it comes (its httpx client, httpcore, its OAuth flow)
    and once through Spean's sender: byte for byte the same request reaches FCM, token included."""
    folder = Path(tempfile.mkdtemp(prefix="spean-wire-"))
    account = str(fcm.service_account(folder))
    push = Push(
        token="wire-token",
        title="Spean",
        body="A result is ready",
        data={"kind": "result_ready", "nid": "n-1"},
        priority="normal",
    )
    async with _fcm_capture() as stock_fcm, _fcm_capture() as our_fcm:
        app = firebase_admin.initialize_app(credentials.Certificate(account), name=f"stock-{uuid.uuid4()}")
        service = messaging._get_messaging_service(app)
        service._fcm_url = f"{stock_fcm.url}/v1/projects/spean-test/messages:send"
        try:
            from notifications.fcm import _message  # the very Message the sender builds

            for _ in range(2):  # the second time, both use a kept connection and token
                batch = await messaging.send_each_async([_message(push)], app=app)
                assert batch.success_count == 1, [r.exception for r in batch.responses]
        finally:
            await service._async_client.aclose()
            await asyncio.to_thread(firebase_admin.delete_app, app)

        sender = FcmPushSender(account, our_fcm.url)
        try:
            for _ in range(2):
                assert [o.verdict for o in await sender.send([push])] == ["sent"]
        finally:
            await sender.aclose()

    assert len(stock_fcm.requests) == len(our_fcm.requests) == 2
    for stock, ours in zip(stock_fcm.requests, our_fcm.requests, strict=True):
        # the Host header names each capture server's port; all else is the same bytes
        assert ours.replace(our_fcm.url.removeprefix("http://").encode(), b"FCM") == stock.replace(
            stock_fcm.url.removeprefix("http://").encode(), b"FCM"
        )
        assert b"\r\nauthorization: bearer local-fcm-access-token\r\n" in ours.lower()
    assert our_fcm.connections == 1  # kept alive


async def test_answers_framed_by_length_by_chunks_or_by_the_close_are_read_whole() -> None:
    ref: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request = await ref[0].read_request(reader)
            path = request.split(b" ", 2)[1]
            if path == b"/chunked":
                writer.write(
                    b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n3\r\n 1}\r\n0\r\n\r\n'
                )
            elif path == b"/gzip":
                body = gzip.compress(b'{"a": 2}')
                writer.write(_answer(body, b"Content-Encoding: gzip"))
            elif path == b"/close":  # no length: the body ends when the server closes
                writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"a": 3}')
                await writer.drain()
                return
            else:
                writer.write(_answer(b'{"a": 0}'))
            await writer.drain()

    server = RawServer(handler)
    ref.append(server)
    async with server, httpx.AsyncClient(transport=LeanTransport(connections=4)) as client:
        first = await client.post(f"{server.url}/length", json={})
        assert first.json() == {"a": 0}
        assert (first.http_version, first.reason_phrase) == ("HTTP/1.1", "OK")  # as the server said them
        assert (await client.post(f"{server.url}/chunked", json={})).json() == {"a": 1}
        assert (await client.post(f"{server.url}/gzip", json={})).json() == {"a": 2}  # httpx decodes it
        assert server.connections == 1  # one kept-alive connection so far
        assert (await client.post(f"{server.url}/close", json={})).json() == {"a": 3}
        assert (await client.post(f"{server.url}/length", json={})).json() == {"a": 0}
        assert server.connections == 2  # the closed one was not reused


async def test_a_connection_the_peer_closed_while_idle_is_not_used_again() -> None:
    ref: list[RawServer] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await ref[0].read_request(reader)  # one request per connection, then an idle close
        writer.write(_answer(b"{}"))
        await writer.drain()

    server = RawServer(handler)
    ref.append(server)
    async with server, httpx.AsyncClient(transport=LeanTransport(connections=4)) as client:
        for _ in range(3):
            assert (await client.post(f"{server.url}/x", json={})).status_code == 200
            await asyncio.sleep(0.05)  # the server's close reaches the client
        assert server.connections == 3


async def test_no_answer_in_time_is_httpx_read_timeout_and_a_refused_connection_a_connect_error() -> None:
    async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads, never answers

    async with RawServer(silent) as server, httpx.AsyncClient(transport=LeanTransport(connections=4)) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(f"{server.url}/x", json={}, timeout=0.2)
        closed_port = server.url
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient(transport=LeanTransport(connections=4)) as client:
            await client.post(f"{closed_port}/x", json={})


async def test_a_garbled_answer_is_a_protocol_error() -> None:
    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"NONSENSE\r\n\r\n")
        await writer.drain()

    async with RawServer(garbled) as server, httpx.AsyncClient(transport=LeanTransport(connections=4)) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post(f"{server.url}/x", json={})
