"""The request id: taken from a well-formed X-Request-ID, else made, once per request.

Whoever needs it first (the context middleware, an error raised before routing, the hook that
stamps every response) makes it, and everyone after reads the same value from the scope.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
HEADER = b"x-request-id"


def request_id_of(scope: Any) -> str:
    state: dict[str, Any] = scope.setdefault("state", {})
    request_id = state.get("request_id")
    if request_id is None:
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == HEADER), None)
        request_id = given if given and _SAFE_ID.match(given) else uuid.uuid4().hex
        state["request_id"] = request_id
    return str(request_id)


async def stamp_response(message: Any, scope: Any) -> None:
    """`before_send` hook: every HTTP answer carries X-Request-ID, errors before routing included."""
    if message["type"] != "http.response.start":
        return
    headers = list(message.get("headers", ()))
    if not any(k.lower() == HEADER for k, _ in headers):
        headers.append((HEADER, request_id_of(scope).encode()))
    message["headers"] = headers
