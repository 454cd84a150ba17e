"""Response compression, negotiated by Accept-Encoding (RFC 9110 §12.5.3): brotli, zstd or gzip.

Rural users pay per byte over 2G/3G, and a record answer of 1,000 entries shrinks ~20-fold. Only
bodies of a textual API type are compressed (JSON and any +json such as FHIR's and problem+json,
MessagePack, text), only from MIN_SIZE bytes (below that the framing costs more than it saves,
unless the client refused the uncompressed form), and never a body that already carries a
Content-Encoding, a streamed body, or a WebSocket. Every answer of a compressible type says
`Vary: Accept-Encoding`, so caches keep the encodings apart.

Litestar's own CompressionMiddleware is not used: it picks an encoding by substring (`br;q=0`
counts as brotli, `identity;q=0` is ignored), compresses any media type and already-encoded bodies,
and adds Vary only when it compresses.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable
from typing import Any, Final

import brotli
import zstandard
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.asgi_util import send_problem

__all__ = ["CODINGS", "MIN_SIZE", "CompressionMiddleware", "compressible", "negotiate"]

MIN_SIZE: Final = 1024
# Levels chosen on record answers (bench/record prints bytes and CPU per encoding): each is the
# knee of its curve, ~1 ms per 500 kB here. brotli 4 is smaller than gzip 9 at a fifth of its CPU.
_ZSTD = zstandard.ZstdCompressor(level=3)
CODINGS: Final[dict[str, Callable[[bytes], bytes]]] = {
    "br": lambda body: brotli.compress(body, mode=brotli.MODE_TEXT, quality=4),
    "zstd": _ZSTD.compress,
    "gzip": lambda body: gzip.compress(body, compresslevel=6, mtime=0),
}
# Among codings the client likes equally: the smallest output for its CPU first.
_PREFERENCE: Final = ("br", "zstd", "gzip")
_ALIASES: Final = {"x-gzip": "gzip"}
_COMPRESSIBLE: Final = (b"application/json", b"application/msgpack", b"application/x-msgpack", b"text/")
_MAX_HEADER: Final = 1024  # a longer Accept-Encoding is not from a real client: answer uncompressed
# Accept-Encoding → the choice, parsed once per distinct header (every request asks).
_CHOSEN: dict[bytes | None, tuple[str | None, bool]] = {}
_MAX_CHOSEN: Final = 256


def compressible(content_type: bytes) -> bool:
    media = content_type.split(b";", 1)[0].strip().lower()
    return media.startswith(_COMPRESSIBLE) or (media.startswith(b"application/") and media.endswith(b"+json"))


def _quality(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value <= 1 else None


def negotiate(accept_encoding: str | None) -> str | None:
    """The coding to answer with: one of CODINGS, "identity", or None when the client refuses
    every coding offered here and the uncompressed form too (a 406)."""
    return _choose(_weights(accept_encoding))[0]


def _weights(accept_encoding: str | None) -> dict[str, float]:
    """Accept-Encoding as {coding: q}. Malformed members are skipped rather than refused: a client
    that writes a broken header still gets an answer it can read (the uncompressed one)."""
    if accept_encoding is None or len(accept_encoding) > _MAX_HEADER:
        # No header: nothing says the client decodes anything. Too long: not from a real client.
        return {}
    weights: dict[str, float] = {}
    for member in accept_encoding.split(","):
        name, *params = (part.strip() for part in member.split(";"))
        name = _ALIASES.get(name.lower(), name.lower())
        if not name:
            continue
        weight: float | None = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                weight = _quality(value.strip())
        if weight is not None:
            weights[name] = weight
    return weights


def _choose(weights: dict[str, float]) -> tuple[str | None, bool]:
    """(the coding or "identity" or None, whether the uncompressed form is acceptable)."""
    star = weights.get("*")
    identity_ok = weights.get("identity", star if star is not None else 1.0) > 0
    best: str | None = None
    best_weight = 0.0
    for coding in _PREFERENCE:
        weight = weights.get(coding, star if star is not None else 0.0)
        if weight > best_weight:
            best, best_weight = coding, weight
    if best is not None:
        return best, identity_ok
    return ("identity" if identity_ok else None), identity_ok


class CompressionMiddleware:
    """Wraps the application's ASGI handler, outside routing, so every HTTP answer passes here
    (errors from the router and the middlewares included)."""

    def __init__(self, app: ASGIApp, *, min_size: int = MIN_SIZE) -> None:
        self.app = app
        self.min_size = min_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        raw = [value for key, value in scope["headers"] if key == b"accept-encoding"]
        header = b",".join(raw) if raw else None
        choice = _CHOSEN.get(header)
        if choice is None:
            choice = _choose(_weights(header.decode("latin-1") if header is not None else None))
            if len(_CHOSEN) < _MAX_CHOSEN:  # clients send a handful of distinct headers
                _CHOSEN[header] = choice
        coding, identity_ok = choice
        if coding is None:
            await send_problem(
                send,
                scope,
                406,
                "encoding_not_acceptable",
                f"answers are sent as {', '.join(_PREFERENCE)} or uncompressed; Accept-Encoding refuses them all",
            )
            return
        # A client that refuses the uncompressed form gets even a small answer compressed.
        min_size = self.min_size if identity_ok else 0
        await self.app(scope, receive, _Compressing(send, coding, min_size, scope.get("method") == "HEAD"))


class _Compressing:
    """The `send` of one exchange: holds the start message until the first body part decides."""

    __slots__ = ("coding", "head", "min_size", "send", "start")

    def __init__(self, send: Send, coding: str, min_size: int, head: bool) -> None:
        self.send = send
        self.coding = coding
        self.min_size = min_size
        self.head = head
        self.start: Any = None  # the held http.response.start

    async def __call__(self, sent: Message) -> None:
        message: Any = sent  # ASGI messages are TypedDicts by type; narrowed here by hand
        if message["type"] == "http.response.start":
            headers = message.get("headers", ())
            if not _candidate(headers):
                await self.send(message)
                return
            message["headers"] = [*headers, (b"vary", b"Accept-Encoding")]
            self.start = message
            return
        start, self.start = self.start, None
        if start is None or message["type"] != "http.response.body":
            if start is not None:
                await self.send(start)
            await self.send(message)
            return
        body: bytes = message.get("body", b"")
        if message.get("more_body", False):  # streamed: sent as it comes
            await self.send(start)
            await self.send(message)
            return
        if self.head:
            length = _content_length(start["headers"])
            if self.coding != "identity" and length is not None and length >= self.min_size:
                # The same headers as GET would carry, less the length that only compressing tells.
                start["headers"] = [
                    *((k, v) for k, v in start["headers"] if k.lower() != b"content-length"),
                    (b"content-encoding", self.coding.encode()),
                ]
            await self.send(start)
            await self.send(message)
            return
        if self.coding != "identity" and len(body) >= self.min_size and start["status"] not in (204, 304):
            body = CODINGS[self.coding](body)
            start["headers"] = _encoded_headers(start["headers"], self.coding, len(body))
            message = {**message, "body": body}
        await self.send(start)
        await self.send(message)


def _candidate(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """A compressible type, not already encoded."""
    kind = False
    for key, value in headers:
        name = key.lower()
        if name == b"content-encoding":
            return False
        if name == b"content-type":
            kind = compressible(value)
    return kind


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _encoded_headers(headers: list[tuple[bytes, bytes]], coding: str, length: int) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for key, value in headers:
        name = key.lower()
        if name == b"content-length":
            continue
        if name == b"etag" and not value.startswith(b"W/"):
            value = b"W/" + value  # a strong validator names the bytes; these bytes differ per coding
        out.append((key, value))
    out.append((b"content-encoding", coding.encode()))
    out.append((b"content-length", str(length).encode()))
    return out
