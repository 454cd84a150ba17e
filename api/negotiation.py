"""JSON by default; MessagePack when the client sends `Accept: application/msgpack` (smaller and
cheaper to parse on low-end phones over slow links).

One rule for instants in both (infra.instants): UTC, as RFC 3339 text ending in `Z`. It holds at
the sources, so answers are encoded once, as they are: instants from PostgreSQL come back in UTC
(asyncpg), those a client sends are moved to UTC where bodies are decoded (api.body), and those
made here are made in UTC (`datetime.now(UTC)`, infra.instants). In tests every JSON answer is
also scanned for an instant in another form, and one found fails the request
(`UtcCheckedResponse`): the guarantee is tested on every answer the suite sees, without a regex
pass over every answer in production (it cost ~10 ms per megabyte, ten times the encoding).

MessagePack is packed from the answer turned into builtins by msgspec (instants, ids and bytes as
the same text JSON carries, not msgpack's timestamp extension), in C: ~5 ms for 1,000 entries,
where walking the answer in Python took several times that.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.enums import MediaType
from litestar.response.base import ASGIResponse
from litestar.serialization import default_serializer

from api.fhir_text import fhir_strings
from api.raw_headers import header

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
# An instant as msgspec writes it, unless it is in UTC (…Z): with an offset, or naive. Fields named
# `…_local` are wall-clock times in the facility's zone on purpose (`start_local`), so they do not
# count.
NOT_UTC = re.compile(rb'(?<!_local":)"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d)?"')
_packer = msgspec.msgpack.Encoder()


def wants_msgpack(accept: str) -> bool:
    return any(t in accept for t in MSGPACK_TYPES)


class NegotiatedResponse(Response[Any]):
    def render(self, content: Any, media_type: str, enc_hook: Any = default_serializer) -> bytes:
        if isinstance(content, bytes | str):
            return super().render(content, media_type, enc_hook)
        if media_type in MSGPACK_TYPES:
            return _packer.encode(msgspec.to_builtins(content, enc_hook=enc_hook))
        if media_type == "application/fhir+json":
            return fhir_strings(super().render(content, media_type, enc_hook))
        return super().render(content, media_type, enc_hook)

    def to_asgi_response(self, app: Any, request: Request[Any, Any, Any], **kwargs: Any) -> ASGIResponse:
        # Accept read from the scope: Litestar's header map is built for nothing else on most answers.
        if self.media_type in (None, MediaType.JSON, MediaType.JSON.value) and wants_msgpack(
            header(request.scope, b"accept") or ""
        ):
            self.media_type = "application/msgpack"
            self.headers.setdefault("vary", "Accept")
        return super().to_asgi_response(app, request, **kwargs)


class NonUtcInstant(AssertionError):
    """An answer would carry an instant not in UTC: a source let one through (a bug)."""


class UtcCheckedResponse(NegotiatedResponse):
    """The response class under test (SPEAN_ENV=test): fails any JSON answer that would carry an
    instant not in UTC, so the rule above is checked on every answer the suite renders."""

    def render(self, content: Any, media_type: str, enc_hook: Any = default_serializer) -> bytes:
        encoded = super().render(content, media_type, enc_hook)
        if not isinstance(content, bytes | str) and media_type.endswith("json") and (found := NOT_UTC.search(encoded)):
            raise NonUtcInstant(f"an answer carries {found.group().decode()}: instants leave in UTC")
        if media_type in MSGPACK_TYPES:
            self.render(content, MediaType.JSON, enc_hook)  # the same values, checked as JSON
        return encoded
