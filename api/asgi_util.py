"""Small helpers for the pure-ASGI middlewares: header access and sending an error directly."""

from __future__ import annotations

import msgspec
from litestar.types import Message, Scope, Send

from api.errors import error_document
from api.raw_headers import header
from api.request_id import request_id_of

__all__ = ["header", "problem_messages", "send_problem"]


async def send_problem(
    send: Send, scope: Scope, status: int, code: str, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Answer with the same error document the exception handlers write (api.errors)."""
    for message in problem_messages(scope, status, code, detail, headers=headers):
        await send(message)


def problem_messages(
    scope: Scope,
    status: int,
    code: str,
    detail: str,
    *,
    retry_after_s: int | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> list[Message]:
    """The messages of an error answer, for a middleware that sends them itself."""
    media_type, document = error_document(scope, status, code, detail)
    body = msgspec.json.encode(document)
    start_headers = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", request_id_of(scope).encode()),
        *(headers or ()),
    ]
    if retry_after_s is not None:
        start_headers.append((b"retry-after", str(retry_after_s).encode()))
    return [
        {"type": "http.response.start", "status": status, "headers": start_headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]
