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


async def send_problem(
    send: Send, scope: Scope, status: int, code: str, detail: str, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
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
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            *(headers or ()),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})
