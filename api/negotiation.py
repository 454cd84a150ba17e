"""JSON by default; MessagePack when the client sends `Accept: application/msgpack` (smaller and
cheaper to parse on low-end phones over slow links)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.enums import MediaType
from litestar.response.base import ASGIResponse
from litestar.serialization import encode_msgpack

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


def wants_msgpack(accept: str) -> bool:
    return any(t in accept for t in MSGPACK_TYPES)


class NegotiatedResponse(Response[Any]):
    def render(self, content: Any, media_type: str, enc_hook: Any = None) -> bytes:
        if media_type in MSGPACK_TYPES and not isinstance(content, bytes):
            return encode_msgpack(content, enc_hook) if enc_hook else encode_msgpack(content)
        return super().render(content, media_type, enc_hook) if enc_hook else super().render(content, media_type)

    def to_asgi_response(self, app: Any, request: Request[Any, Any, Any], **kwargs: Any) -> ASGIResponse:
        if self.media_type in (None, MediaType.JSON, MediaType.JSON.value) and wants_msgpack(
            request.headers.get("accept", "")
        ):
            self.media_type = "application/msgpack"
            self.headers.setdefault("vary", "Accept")
        return super().to_asgi_response(app, request, **kwargs)
