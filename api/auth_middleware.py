"""Bearer-token authentication for every route not marked `exclude_from_auth`."""

from __future__ import annotations

from typing import Any, get_args

import msgspec
from litestar.connection import ASGIConnection
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from api.request_id import request_id_of
from domain.errors import InvalidInput, Unauthenticated
from domain.principal import Channel

_CHANNELS = set(get_args(Channel))


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        token = bearer_token(connection)
        principal = connection.app.state.verified_tokens.principal(token)
        channel = connection.headers.get("x-client-channel", "app")
        if channel not in _CHANNELS or channel in ("sms", "ussd"):
            raise InvalidInput("invalid_channel", "X-Client-Channel is app, web or api", field="X-Client-Channel")
        principal = msgspec.structs.replace(principal, channel=channel, request_id=request_id_of(connection.scope))
        return AuthenticationResult(user=principal, auth=token)


def bearer_token(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    value = connection.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if not value:
        raise Unauthenticated("missing_token", "send 'Authorization: Bearer <access token>'")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("invalid_token", "the Authorization header must be 'Bearer <access token>'")
    return token.strip()
