"""WebSocket handshakes answer in the error contract too.

A WebSocket request the framework refuses before accepting it (no WebSocket route at that path,
an unexpected error) was answered by the server with a bare `403` and an empty body, without
X-Request-ID. With the ASGI "websocket.http.response" extension (uvicorn has it) the refusal is
sent as an HTTP answer instead: the same problem+json (OperationOutcome under /fhir) with its
`code`, `request_id` and X-Request-ID as any other refused request. An accepted handshake (101)
carries X-Request-ID as every other answer does.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from api.asgi_util import problem_messages
from api.request_id import HEADER, request_id_of

_STATUS_BY_PHRASE = {status.phrase: status.value for status in HTTPStatus}
_CODES = {400: "bad_request", 403: "forbidden", 404: "route_not_found", 405: "method_not_allowed"}


def _refusal(close: Any) -> tuple[int, str, str]:
    """The HTTP status, code and detail of a close sent before the handshake was accepted.

    The framework closes with 4000 + status for a WebSocketException, and with 4500 and the
    exception's detail for any other: a status phrase ("Not Found"), "Internal Server Error" for
    an unexpected error, or a client error's own words ("Invalid host header")."""
    code = int(close.get("code") or 1000)
    reason = str(close.get("reason") or "")
    status = code - 4000 if 4400 <= code < 4500 else _STATUS_BY_PHRASE.get(reason, 400)
    if status >= 500:
        return 500, "internal_error", "something went wrong on our side; it was logged"
    if reason == "Bad Request":  # the router's answer for an HTTP-only route
        reason = "this route does not speak WebSocket"
    return status, _CODES.get(status, "http_error"), reason or HTTPStatus(status).phrase


class WebSocketHandshake:
    """Wraps the application's ASGI handler (outside routing, so route misses are seen too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.WEBSOCKET:
            await self.app(scope, receive, send)
            return
        can_deny = "websocket.http.response" in (scope.get("extensions") or {})
        accepted = False

        async def answered(message: Message) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept":
                accepted = True
                headers = [*message.get("headers", ()), (HEADER, request_id_of(scope).encode())]
                message["headers"] = headers
            elif message["type"] == "websocket.close" and not accepted and can_deny:
                status, code, detail = _refusal(message)
                start: Any
                body: Any
                start, body = problem_messages(scope, status, code, detail)  # the same answer as HTTP's
                await send({"type": "websocket.http.response.start", "status": status, "headers": start["headers"]})
                await send({"type": "websocket.http.response.body", "body": body["body"], "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, answered)
