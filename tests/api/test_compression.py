"""Responses are compressed as Accept-Encoding asks (api/compression.py): each coding decodes back
to the uncompressed answer, small answers stay as they are, q-values are honoured, and odd or
hostile headers get an answer a client can read."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from typing import Any

import brotli
import httpx
import msgspec
import pytest
import zstandard
from litestar import Litestar
from litestar.testing import AsyncTestClient
from litestar.types import Receive, Scope, Send

from api.compression import MIN_SIZE, CompressionMiddleware, negotiate
from tests.factory import Factory

Client = AsyncTestClient[Litestar]

DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.decompress,
    "br": brotli.decompress,
    "zstd": lambda raw: zstandard.ZstdDecompressor().decompress(raw, max_output_size=1 << 26),
}


async def raw_get(client: Client, url: str, headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
    """The answer and its body as sent on the wire (httpx would decode it)."""
    request = client.build_request("GET", url, headers=headers)
    response = await client.send(request, stream=True)
    try:
        raw = b"".join([chunk async for chunk in response.aiter_raw()])
    finally:
        await response.aclose()
    return response, raw


class TestNegotiate:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            (None, "identity"),
            ("", "identity"),
            ("gzip", "gzip"),
            ("x-gzip", "gzip"),
            ("GZIP", "gzip"),
            ("gzip, deflate, br, zstd", "br"),  # a browser: all equal, the server's choice
            ("gzip, zstd", "zstd"),
            ("br;q=0, gzip", "gzip"),  # q=0 means "not this one", not "brotli" by substring
            ("br;q=0.5, gzip;q=0.9", "gzip"),
            ("zstd;q=1.0, br;q=0.999", "zstd"),
            ("*", "br"),
            ("*;q=0.1, br;q=0", "zstd"),
            ("deflate, compress", "identity"),  # nothing offered here: uncompressed
            ("identity;q=0, gzip", "gzip"),
            ("identity;q=0", None),  # nothing acceptable left: 406
            ("*;q=0", None),
            ("*;q=0, identity", "identity"),
            ("gzip;q=2", "identity"),  # q outside 0..1 is malformed: the member is ignored
            ("gzip;q=abc, br;q=nan", "identity"),
            ("gzip;;;q=0.5;foo=bar", "gzip"),
            (",,, ;q=1, ", "identity"),
            ("gzip" + ", gzip" * 400, "identity"),  # absurdly long: not from a client, answer plainly
        ],
    )
    def test_chooses(self, header: str | None, expected: str | None) -> None:
        assert negotiate(header) == expected


class TestOnTheApp:
    @pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
    async def test_each_coding_round_trips_on_json(self, client: Client, coding: str) -> None:
        plain, plain_raw = await raw_get(client, "/schema/openapi.json", {"Accept-Encoding": "identity"})
        packed, raw = await raw_get(client, "/schema/openapi.json", {"Accept-Encoding": coding})
        assert plain.status_code == packed.status_code == 200
        assert "content-encoding" not in plain.headers
        assert packed.headers["content-encoding"] == coding
        assert "accept-encoding" in packed.headers["vary"].lower()
        assert int(packed.headers["content-length"]) == len(raw) < len(plain_raw) // 3
        assert DECODERS[coding](raw) == plain_raw

    @pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
    async def test_msgpack_and_fhir_round_trip(self, client: Client, factory: Factory, coding: str) -> None:
        scene = await factory.scene()
        for i in range(12):
            await factory.post(
                f"/v1/patients/{scene.patient}/record",
                {"kind": "observation", "code": "8867-4", "value": 60 + i, "unit": "/min"},
                scene.chw.token,
            )
        for url, accept, media in [
            (f"/v1/patients/{scene.patient}/record", "application/msgpack", "application/msgpack"),
            (f"/fhir/Patient/{scene.patient}/$everything", "application/fhir+json", "application/fhir+json"),
        ]:
            headers = {**scene.chw.headers, "Accept": accept}
            _, plain_raw = await raw_get(client, url, {**headers, "Accept-Encoding": "identity"})
            packed, raw = await raw_get(client, url, {**headers, "Accept-Encoding": coding})
            assert packed.status_code == 200
            assert packed.headers["content-type"].startswith(media)
            assert packed.headers["content-encoding"] == coding
            assert len(plain_raw) >= MIN_SIZE
            decoded = DECODERS[coding](raw)
            if media == "application/msgpack":
                # Two reads of the record log two audit events, but the answer is the same.
                assert msgspec.msgpack.decode(decoded) == msgspec.msgpack.decode(plain_raw)
            else:
                assert _without_volatile(msgspec.json.decode(decoded)) == _without_volatile(
                    msgspec.json.decode(plain_raw)
                )

    async def test_small_answers_stay_uncompressed_but_vary(self, client: Client) -> None:
        response, raw = await raw_get(client, "/health", {"Accept-Encoding": "gzip, br, zstd"})
        assert response.status_code == 200
        assert len(raw) < MIN_SIZE
        assert "content-encoding" not in response.headers
        assert "accept-encoding" in response.headers["vary"].lower()

    async def test_errors_are_answered_and_small_ones_plain(self, client: Client) -> None:
        response, raw = await raw_get(client, "/v1/no-such-route", {"Accept-Encoding": "gzip"})
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "content-encoding" not in response.headers
        assert msgspec.json.decode(raw)["code"] == "route_not_found"

    async def test_refusing_every_form_is_406_in_the_error_contract(self, client: Client) -> None:
        response, raw = await raw_get(client, "/health", {"Accept-Encoding": "identity;q=0, deflate"})
        assert response.status_code == 406
        assert "content-encoding" not in response.headers
        assert msgspec.json.decode(raw)["code"] == "encoding_not_acceptable"
        assert response.headers["x-request-id"]

    async def test_refusing_identity_compresses_even_a_small_answer(self, client: Client) -> None:
        response, raw = await raw_get(client, "/health", {"Accept-Encoding": "identity;q=0, gzip"})
        assert response.status_code == 200
        assert response.headers["content-encoding"] == "gzip"
        assert msgspec.json.decode(gzip.decompress(raw))

    @pytest.mark.parametrize(
        "header",
        ["gzip;q=2", "\x7f\x7f;;;,,,q=", "br;q=0.5;q=0.9", "zstd" * 300, "*;q=-1", "gzip, gzip;q=0"],
    )
    async def test_hostile_headers_get_a_readable_answer(self, client: Client, header: str) -> None:
        response, raw = await raw_get(client, "/schema/openapi.json", {"Accept-Encoding": header})
        assert response.status_code == 200
        coding = response.headers.get("content-encoding")
        body = DECODERS[coding](raw) if coding else raw
        assert msgspec.json.decode(body)["openapi"]


def _without_volatile(bundle: Any) -> Any:
    """A FHIR searchset stamps its own time and id; the entries are what must match."""
    return bundle.get("entry")


# Tiny ASGI apps: what the product's routes do not produce on demand (304, streams, encoded bodies).


def answering(status: int, headers: list[tuple[bytes, bytes]], *bodies: bytes) -> Any:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i, body in enumerate(bodies):
            await send({"type": "http.response.body", "body": body, "more_body": i < len(bodies) - 1})

    return app


async def call(app: Any, *, method: str = "GET", accept_encoding: bytes = b"gzip") -> list[Any]:
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": "/", "headers": [(b"accept-encoding", accept_encoding)]}
    await CompressionMiddleware(app)(scope, receive, send)  # type: ignore[arg-type]
    return sent


def headers_of(message: Any) -> dict[bytes, bytes]:
    return dict(message["headers"])


BIG = b'{"a": "' + b"x" * 4000 + b'"}'
JSON = (b"content-type", b"application/json")


class TestMiddleware:
    async def test_not_modified_passes_with_vary(self) -> None:
        start, body = await call(answering(304, [JSON, (b"etag", b'"v1"')], b""))
        assert start["status"] == 304
        assert b"content-encoding" not in headers_of(start)
        assert headers_of(start)[b"vary"] == b"Accept-Encoding"
        assert body["body"] == b""

    async def test_strong_etag_is_weakened_when_compressed(self) -> None:
        start, body = await call(answering(200, [JSON, (b"etag", b'"v1"'), (b"content-length", b"4008")], BIG))
        headers = headers_of(start)
        assert headers[b"content-encoding"] == b"gzip"
        assert headers[b"etag"] == b'W/"v1"'
        assert int(headers[b"content-length"]) == len(body["body"])
        assert gzip.decompress(body["body"]) == BIG

    async def test_already_encoded_and_binary_bodies_pass_untouched(self) -> None:
        for headers in ([JSON, (b"content-encoding", b"br")], [(b"content-type", b"image/jpeg")]):
            start, body = await call(answering(200, headers, BIG))
            assert b"content-encoding" not in headers_of(start) or headers_of(start)[b"content-encoding"] == b"br"
            assert b"vary" not in headers_of(start)
            assert body["body"] == BIG

    async def test_streamed_bodies_pass_as_they_come(self) -> None:
        sent = await call(answering(200, [JSON], BIG, BIG))
        assert [m.get("body") for m in sent[1:]] == [BIG, BIG]
        assert b"content-encoding" not in headers_of(sent[0])

    async def test_head_says_what_get_would_without_a_length(self) -> None:
        start, body = await call(answering(200, [JSON, (b"content-length", b"4008")], b""), method="HEAD")
        headers = headers_of(start)
        assert headers[b"content-encoding"] == b"gzip"
        assert b"content-length" not in headers
        assert body["body"] == b""
        small, _ = await call(answering(200, [JSON, (b"content-length", b"20")], b""), method="HEAD")
        assert b"content-encoding" not in headers_of(small)
        assert headers_of(small)[b"content-length"] == b"20"

    async def test_websockets_are_never_touched(self) -> None:
        seen: list[Scope] = []

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            seen.append(scope)
            await send({"type": "websocket.accept"})  # type: ignore[typeddict-item]

        sent: list[Any] = []

        async def send(message: Any) -> None:
            sent.append(message)

        async def receive() -> Any:
            return {"type": "websocket.connect"}

        scope = {"type": "websocket", "path": "/", "headers": [(b"accept-encoding", b"gzip")]}
        await CompressionMiddleware(app)(scope, receive, send)  # type: ignore[arg-type]
        assert sent == [{"type": "websocket.accept"}]
