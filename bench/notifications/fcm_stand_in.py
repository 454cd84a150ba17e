"""A fast local FCM for the benchmark: the same wire format as tests/fcm_server.py, on asyncio.

The tests' server (stdlib, a thread per connection) accepts ~200 requests/s on this machine, so a
benchmark against it measures that server. This one answers in one event loop (uvloop), in a
process of its own, and does only what the SDK's calls need:

- POST /token: the OAuth 2.0 JWT-bearer exchange google-auth makes for a service account (the
  assertion's RS256 signature is checked against the service account's key);
- POST /v1/projects/<p>/messages:send: FCM HTTP v1, one message per request, as firebase-admin's
  `send_each_async` sends them (FCM's old batch endpoint is gone; the SDK gathers single sends
  over a pool of keep-alive HTTP/1.1 connections). A bearer token is required; every accepted
  message's arrival time and registration token are recorded;
- GET /arrivals (all arrivals, as JSON [[unix time, token], ...]), POST /reset: for the bench.

    python -m bench.notifications.fcm_stand_in --public-key key.pem   # prints the port
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import time
import urllib.parse
from typing import cast

import jwt
import msgspec

ACCESS_TOKEN = "local-fcm-access-token"  # noqa: S105 - what the stand-in hands out, not a secret
_SEND_PREFIX = b"/v1/projects/"
_SEND_SUFFIX = b"/messages:send"
_decode_send = msgspec.json.Decoder()


class _State:
    def __init__(self, public_key: bytes) -> None:
        self.public_key = public_key
        self.arrivals: list[tuple[float, str]] = []
        self.ids = itertools.count(1)


class _Http(asyncio.Protocol):
    """HTTP/1.1 with keep-alive and Content-Length bodies: all the SDK and wrk send."""

    def __init__(self, state: _State) -> None:
        self._state = state
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast("asyncio.Transport", transport)  # uvloop's own class, not a subclass

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self._buffer[:end].split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get(b"content-length", b"0"))
            if len(self._buffer) < end + 4 + length:
                return
            body = self._buffer[end + 4 : end + 4 + length]
            self._buffer = self._buffer[end + 4 + length :]
            method, path, _ = lines[0].split(b" ", 2)
            self._handle(method, path, headers, body)

    def _handle(self, method: bytes, path: bytes, headers: dict[bytes, bytes], body: bytes) -> None:
        if method == b"POST" and path.startswith(_SEND_PREFIX) and path.endswith(_SEND_SUFFIX):
            if headers.get(b"authorization") != b"Bearer " + ACCESS_TOKEN.encode():
                self._answer(401, b'{"error":{"code":401,"message":"unauthenticated","status":"UNAUTHENTICATED"}}')
                return
            token = _decode_send.decode(body)["message"]["token"]
            self._state.arrivals.append((time.time(), token))
            project = path[len(_SEND_PREFIX) : -len(_SEND_SUFFIX)]
            self._answer(200, b'{"name":"projects/%s/messages/%d"}' % (project, next(self._state.ids)))
        elif method == b"POST" and path == b"/token":
            form = urllib.parse.parse_qs(body.decode())
            jwt.decode(
                form["assertion"][0],
                self._state.public_key,
                algorithms=["RS256"],
                audience="https://oauth2.googleapis.com/token",
            )
            answer = {"access_token": ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer"}
            self._answer(200, msgspec.json.encode(answer))
        elif path == b"/arrivals":
            self._answer(200, msgspec.json.encode(self._state.arrivals))
        elif path == b"/reset":
            self._state.arrivals.clear()
            self._answer(200, b"{}")
        else:
            self._answer(404, b'{"error":{"code":404,"message":"no such path","status":"NOT_FOUND"}}')

    def _answer(self, status: int, body: bytes) -> None:
        assert self._transport is not None
        reason = b"OK" if status == 200 else b"Error"
        self._transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, reason, len(body), body)
        )


async def _serve(public_key: bytes, port: int) -> None:
    state = _State(public_key)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Http(state), "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--public-key", required=True, help="PEM file of the service account's public key")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    with open(args.public_key, "rb") as fh:
        public_key = fh.read()
    try:
        import uvloop

        uvloop.run(_serve(public_key, args.port))
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(_serve(public_key, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
