"""The request id: taken from a well-formed X-Request-ID, else made, once per request.

Whoever needs it first (the context middleware, an error raised before routing, the hook that
stamps every response) makes it, and everyone after reads the same value from the scope.
"""

from __future__ import annotations

import os
import random
import re
from typing import Any

_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
HEADER = b"x-request-id"
# A request id needs to be unique, not secret: 128 random bits from a generator seeded from the OS
# once per process, and again in a forked child (uuid4 asks the OS for every id: a system call per
# request).
_random = random.Random()  # noqa: S311 - uniqueness, not secrecy
os.register_at_fork(after_in_child=_random.seed)


def request_id_of(scope: Any) -> str:
    state: dict[str, Any] = scope.setdefault("state", {})
    request_id = state.get("request_id")
    if request_id is None:
        given = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == HEADER), None)
        request_id = given if given and _SAFE_ID.match(given) else f"{_random.getrandbits(128):032x}"
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
