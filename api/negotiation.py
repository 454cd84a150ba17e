"""JSON by default; MessagePack when the client sends `Accept: application/msgpack` (smaller and
cheaper to parse on low-end phones over slow links).

One rule for instants in both (infra.instants): UTC, as RFC 3339 text ending in `Z`. msgspec
writes an aware datetime with the offset it carries, so an instant echoed from a client's input
(16:00+07:00) would leave with +07:00: JSON answers holding any instant not in that form are
written again with their instants in UTC. In MessagePack every instant is that same text (not
the timestamp extension), so both encodings carry the same values.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.enums import MediaType
from litestar.response.base import ASGIResponse
from litestar.serialization import default_serializer, encode_msgpack

from infra import instants

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")
# An instant as msgspec writes it, unless it is in UTC (…Z): with an offset, or naive. Fields named
# `…_local` are wall-clock times in the facility's zone on purpose (`start_local`), so they do not
# count (and an appointment's answer is not encoded twice for them).
_NOT_UTC = re.compile(rb'(?<!_local":)"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:[+-]\d\d:\d\d)?"')


def wants_msgpack(accept: str) -> bool:
    return any(t in accept for t in MSGPACK_TYPES)


def _instants(content: Any, enc_hook: Any, *, as_text: bool) -> Any:
    """`content` as builtins with every datetime in UTC (as text if `as_text`)."""

    def walk(value: Any) -> Any:
        kind = type(value)
        if kind is dict:
            return {k: walk(v) for k, v in value.items()}
        if kind is list:
            return [walk(v) for v in value]
        if isinstance(value, datetime):
            return instants.text(value) if as_text else instants.utc(value)
        return value

    return walk(msgspec.to_builtins(content, enc_hook=enc_hook, builtin_types=(datetime, bytes, bytearray)))


class NegotiatedResponse(Response[Any]):
    def render(self, content: Any, media_type: str, enc_hook: Any = default_serializer) -> bytes:
        if isinstance(content, bytes | str):
            return super().render(content, media_type, enc_hook)
        if media_type in MSGPACK_TYPES:
            return encode_msgpack(_instants(content, enc_hook, as_text=True), enc_hook)
        encoded = super().render(content, media_type, enc_hook)
        if media_type.endswith("json") and _NOT_UTC.search(encoded):
            encoded = super().render(_instants(content, enc_hook, as_text=False), media_type, enc_hook)
        return encoded

    def to_asgi_response(self, app: Any, request: Request[Any, Any, Any], **kwargs: Any) -> ASGIResponse:
        if self.media_type in (None, MediaType.JSON, MediaType.JSON.value) and wants_msgpack(
            request.headers.get("accept", "")
        ):
            self.media_type = "application/msgpack"
            self.headers.setdefault("vary", "Accept")
        return super().to_asgi_response(app, request, **kwargs)
