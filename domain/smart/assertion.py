"""SMART Backend Services authentication (client_credentials with a private_key_jwt assertion):
the client signs a short JWT with its private key; we check it against the keys it registered.

The rules (SMART App Launch 2.x, "Backend Services"): iss and sub are the client id, aud is our
token endpoint's URL, exp at most five minutes ahead, jti never seen before for that client
(remembered in Redis until the assertion would have expired anyway), signed RS384 or ES384.
Every failure is an OAuth error the client can act on."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from redis.asyncio import Redis

from domain.errors import InvalidInput
from domain.smart import scopes as smart_scopes
from domain.smart.clients import ALGORITHMS, Client
from domain.smart.errors import OAuthError, invalid_client
from infra import redis_keys

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_LIFETIME_S = 300
LEEWAY_S = 30  # clock skew between the client and us


KeysAt = Callable[[str, str | None], Awaitable[list[jwt.PyJWK]]]
ClientById = Callable[[uuid.UUID], Awaitable[Client | None]]


def _registered_keys(client: Client, kid: str | None, alg: str) -> list[jwt.PyJWK]:
    keys = []
    for key in (client.jwks or {}).get("keys", []):
        if kid is not None and key.get("kid") != kid:
            continue
        if key.get("alg", alg) != alg:
            continue
        try:
            keys.append(jwt.PyJWK(key, alg))
        except (jwt.PyJWKError, jwt.InvalidKeyError):
            continue  # a key of another type (an EC key for an RS384 assertion)
    return keys


async def authenticate(
    form: dict[str, str],
    *,
    token_url: str,
    client_by_id: ClientById,
    keys_at: KeysAt,
    redis: Redis,
    now: float | None = None,
) -> tuple[Client, list[str]]:
    """The client the assertion proves and the scopes granted (those asked for, each within the
    client's registered scopes); or an OAuthError."""
    if form.get("grant_type") != "client_credentials":
        raise OAuthError("unsupported_grant_type", "grant_type is client_credentials")
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError("invalid_request", f"client_assertion_type is {ASSERTION_TYPE}")
    assertion = form.get("client_assertion")
    if not assertion:
        raise OAuthError("invalid_request", "client_assertion (a signed JWT) is missing")
    if not form.get("scope"):
        raise OAuthError("invalid_scope", "ask for scopes, e.g. scope=system/*.read")
    try:
        header = jwt.get_unverified_header(assertion)
        unverified: dict[str, Any] = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise invalid_client("client_assertion is not a JWT") from None
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ALGORITHMS:
        raise invalid_client(f"client_assertion is signed with {alg}; use one of {', '.join(ALGORITHMS)}")
    try:
        client_id = uuid.UUID(str(unverified.get("iss")))
    except ValueError:
        raise invalid_client("iss is the client id this server registered") from None
    client = await client_by_id(client_id)
    if client is None or client.revoked_at is not None:
        raise invalid_client("no such client (or it was revoked)")
    if client.jwks_url is not None:
        try:
            keys = await keys_at(client.jwks_url, kid)
        except Exception as exc:  # the client's URL is away or serves no usable key: its problem to fix
            raise invalid_client(f"the client's JWKS URL gave no usable key: {exc}") from None
    else:
        keys = _registered_keys(client, kid, alg)
    claims = _verified(assertion, keys, alg, client_id, token_url)
    moment = time.time() if now is None else now
    if claims["exp"] - moment > MAX_LIFETIME_S + LEEWAY_S:
        raise invalid_client(f"exp is at most {MAX_LIFETIME_S} seconds ahead")
    if not isinstance(claims["jti"], str) or not 1 <= len(claims["jti"]) <= 255:
        raise invalid_client("jti is a string of 1 to 255 characters")
    remember_s = max(1, int(claims["exp"] - moment) + LEEWAY_S)
    if not await redis.set(redis_keys.smart_jti(client_id, claims["jti"]), "1", nx=True, ex=remember_s):
        raise invalid_client("this assertion's jti was used already: sign a new assertion for each token")
    return client, _granted(client, form["scope"])


def _verified(assertion: str, keys: list[jwt.PyJWK], alg: str, client_id: uuid.UUID, token_url: str) -> dict[str, Any]:
    if not keys:
        raise invalid_client("no registered key of the client matches the assertion's kid and alg")
    last: Exception | None = None
    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key,
                algorithms=[alg],
                audience=token_url,
                issuer=str(client_id),
                leeway=LEEWAY_S,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.InvalidSignatureError as exc:
            last = exc
            continue
        except jwt.ExpiredSignatureError:
            raise invalid_client("the assertion has expired") from None
        except jwt.InvalidAudienceError:
            raise invalid_client(f"aud is the token endpoint's URL, {token_url}") from None
        except jwt.InvalidTokenError as exc:
            raise invalid_client(f"the assertion is not valid: {exc}") from None
        if claims["sub"] != str(client_id):
            raise invalid_client("sub is the client id, as iss is")
        return claims
    raise invalid_client(f"the assertion's signature does not verify with the client's keys ({last})")


def _granted(client: Client, asked: str) -> list[str]:
    try:
        wanted = smart_scopes.parse_all(asked)
        registered = smart_scopes.parse_all(list(client.scopes))
    except InvalidInput as exc:
        raise OAuthError("invalid_scope", exc.detail) from None
    refused = [w.text for w in wanted if not smart_scopes.covers(registered, w)]
    if refused:
        raise OAuthError("invalid_scope", f"this client was not granted {' '.join(refused)}")
    return [w.text for w in wanted]
