"""Small helpers for the pure-ASGI middlewares: header access and sending a problem directly."""

from __future__ import annotations

import msgspec
from litestar.types import Message, Scope, Send

from api.errors import PROBLEM_JSON, Problem


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


async def send_problem(send: Send, scope: Scope, status: int, code: str, detail: str) -> None:
    for message in problem_messages(scope, status, code, detail):
        await send(message)


def problem_messages(
    scope: Scope, status: int, code: str, detail: str, *, retry_after_s: int | None = None
) -> list[Message]:
    """The messages of a problem+json answer, for a middleware that sends them itself."""
    body = msgspec.json.encode(
        Problem(
            type=f"https://spean.dev/problems/{code.replace('_', '-')}",
            title=detail,
            status=status,
            code=code,
            detail=detail,
            instance=scope.get("path"),
            request_id=scope.get("state", {}).get("request_id"),
        )
    )
    headers = [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())]
    if retry_after_s is not None:
        headers.append((b"retry-after", str(retry_after_s).encode()))
    return [
        {"type": "http.response.start", "status": status, "headers": headers},
        {"type": "http.response.body", "body": body, "more_body": False},
    ]
