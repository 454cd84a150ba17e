"""Small helpers for the pure-ASGI middlewares: header access and sending an error directly."""

from __future__ import annotations

import msgspec
from litestar.types import Message, Scope, Send

from api.errors import error_document
from api.request_id import request_id_of


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def send_problem(send: Send, scope: Scope, status: int, code: str, detail: str) -> None:
    """Answer with the same error document the exception handlers write (api.errors)."""
    media_type, document = error_document(scope, status, code, detail)
    body = msgspec.json.encode(document)
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"x-request-id", request_id_of(scope).encode()),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
