"""SMART Backend Services: the discovery document and the token endpoint.

`/.well-known/smart-configuration` says where tokens come from and how a client authenticates
(private_key_jwt, RS384/ES384); `POST /auth/token` trades a signed client assertion for a
short-lived access token limited to the scopes asked for (domain.smart.assertion). Both are
public: the assertion itself is the credential. Errors are OAuth's JSON, not problem documents."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.status_codes import HTTP_200_OK

from api.deps import Config, Conn
from domain.identity.tokens import issue_client_token
from domain.smart import assertion, clients
from domain.smart.clients import ALGORITHMS
from domain.smart.errors import OAuthError
from infra.config import Settings
from infra.jwks import JwksFetcher

TOKEN_PATH = "/auth/token"  # noqa: S105 (a path, not a secret)
_PUBLIC = {"exclude_from_auth": True}
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
SCOPES_SUPPORTED = ["system/*.read", "system/*.rs", "system/Patient.read", "system/Patient.rs"]


class SmartTokenForm(msgspec.Struct, kw_only=True):
    grant_type: str
    client_assertion_type: str
    client_assertion: str
    scope: str


def token_url(settings: Settings) -> str:
    return settings.public_base_url.rstrip("/") + TOKEN_PATH


def smart_configuration(settings: Settings) -> dict[str, Any]:
    base = settings.public_base_url.rstrip("/")
    return {
        "issuer": base,
        "token_endpoint": token_url(settings),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": ["token"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }


@get("/.well-known/smart-configuration", opt=_PUBLIC, summary="SMART configuration (Backend Services)",
     tags=["smart"])  # fmt: skip
async def well_known(settings: Config) -> Response[Any]:
    return Response(smart_configuration(settings), media_type="application/json")


def _fetcher(request: Request[Any, Any, Any], settings: Settings) -> JwksFetcher:
    state = request.app.state
    fetcher: JwksFetcher | None = getattr(state, "jwks_fetcher", None)
    if fetcher is None:
        fetcher = state.jwks_fetcher = JwksFetcher(settings.smart_jwks_cache_s)
    return fetcher


@post(
    TOKEN_PATH,
    status_code=HTTP_200_OK,
    opt=_PUBLIC,
    summary="Access token for a backend client (client_credentials with a signed JWT assertion)",
    tags=["smart"],
)
async def token(request: Request[Any, Any, Any], conn: Conn, settings: Config) -> Response[Any]:
    if request.content_type[0] != "application/x-www-form-urlencoded":
        return _oauth_error(OAuthError("invalid_request", "the body is application/x-www-form-urlencoded"))
    form = {key: str(value) for key, value in (await request.form()).items()}

    async def client_by_id(client_id: uuid.UUID) -> clients.Client | None:
        return await clients.get(conn, client_id)

    try:
        client, granted = await assertion.authenticate(
            form,
            token_url=token_url(settings),
            client_by_id=client_by_id,
            keys_at=_fetcher(request, settings).keys,
            redis=request.app.state.redis,
        )
    except OAuthError as exc:
        return _oauth_error(exc)
    access = issue_client_token(client.id, granted, request.app.state.secret_key, settings.smart_token_ttl_s)
    body = {"access_token": access, "token_type": "bearer", "expires_in": settings.smart_token_ttl_s,
            "scope": " ".join(granted)}  # fmt: skip
    return Response(body, media_type="application/json", headers=_NO_STORE)


def _oauth_error(exc: OAuthError) -> Response[Any]:
    headers = dict(_NO_STORE)
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_client"'
    return Response({"error": exc.error, "error_description": exc.description}, status_code=exc.status,
                    media_type="application/json", headers=headers)  # fmt: skip


SMART_HANDLERS = [well_known, token]
