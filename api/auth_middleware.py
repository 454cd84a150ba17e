"""Bearer-token authentication for every route not marked `exclude_from_auth`.

It runs on every request, so it reads the two headers it needs straight from the ASGI scope
(Litestar's base class builds a connection object and a header map for that), and keeps the base
class's configuration: excluded paths, the route opt, OPTIONS, HTTP and WebSocket scopes."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult
from litestar.types import Receive, Scope, Send

from api.request_id import request_id_of
from api.smart.confine import confine
from domain.errors import InvalidInput, Unauthenticated
from domain.principal import Channel, Principal

_CHANNELS = set(get_args(Channel))


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._bypassed(scope):
            principal, token = authenticate(scope)
            scope["user"] = principal
            scope["auth"] = token
        await self.app(scope, receive, send)

    def _bypassed(self, scope: Scope) -> bool:
        """Litestar's rule for its authentication middleware (litestar.middleware._utils)."""
        if scope["type"] not in self.scopes:
            return True
        handler: Any = scope.get("route_handler")
        if self.exclude_opt_key and handler is not None and handler.opt.get(self.exclude_opt_key):
            return True
        if self.exclude_http_methods and scope.get("method") in self.exclude_http_methods:
            return True
        if self.exclude is None:
            return False
        path = scope["raw_path"].decode() if getattr(handler, "is_mount", False) else scope["path"]
        return bool(self.exclude.findall(path))

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        principal, token = authenticate(connection.scope)
        return AuthenticationResult(user=principal, auth=token)


def authenticate(scope: Scope) -> tuple[Principal, str]:
    """The caller of this request, from its bearer token (checked once per token and process by
    VerifiedTokens), with the channel it says it uses and the request id."""
    authorization = channel = None
    for key, value in scope["headers"]:
        if key == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif key == b"x-client-channel" and channel is None:
            channel = value.decode("latin-1")
    token = bearer_token(authorization or "")
    principal: Principal = scope["app"].state.verified_tokens.principal(token)
    confine(principal, str(scope.get("method", "")), scope["path"])
    channel = "app" if channel is None else channel
    if channel not in _CHANNELS or channel in ("sms", "ussd"):
        raise InvalidInput("invalid_channel", "X-Client-Channel is app, web or api", field="X-Client-Channel")
    return msgspec.structs.replace(principal, channel=channel, request_id=request_id_of(scope)), token


def bearer_token(value: str) -> str:
    """The token of an `Authorization: Bearer <token>` header's value."""
    scheme, _, token = value.partition(" ")
    if not value:
        raise Unauthenticated("missing_token", "send 'Authorization: Bearer <access token>'")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("invalid_token", "the Authorization header must be 'Bearer <access token>'")
    return token.strip()
