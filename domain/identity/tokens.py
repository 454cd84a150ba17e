"""Short-lived signed access tokens (JWT, HS256) carrying the roles the caller holds.

Roles travel in the token so that authorising a request needs no database read; a role change
therefore takes effect at the next refresh, at most one access-token lifetime later.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from domain.errors import Unauthenticated
from domain.principal import Membership, Principal

_ALGORITHM = "HS256"
_ISSUER = "spean"


def issue_access_token(principal: Principal, secret: str, ttl_s: int, *, now: float | None = None) -> str:
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": _ISSUER,
        "sub": str(principal.user_id),
        "iat": issued,
        "exp": issued + ttl_s,
        "typ": "access",
        "roles": [[str(m.facility_id), m.role] for m in principal.memberships],
    }
    if principal.is_system_admin:
        claims["adm"] = True
    if principal.practitioner_id is not None:
        claims["prc"] = str(principal.practitioner_id)
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


def issue_client_token(
    client_id: uuid.UUID, scopes: list[str], secret: str, ttl_s: int, *, now: float | None = None
) -> str:
    """An access token for a SMART backend client (domain.smart): its id and granted scopes, no role."""
    issued = int(time.time() if now is None else now)
    claims = {"iss": _ISSUER, "sub": str(client_id), "iat": issued, "exp": issued + ttl_s, "typ": "client",
              "scope": " ".join(scopes)}  # fmt: skip
    return jwt.encode(claims, secret, algorithm=_ALGORITHM)


class VerifiedTokens:
    """Remembers tokens already verified, until they expire: a phone reuses one access token for
    many requests, and verifying the signature each time is a large share of a request's CPU.
    Keyed by the whole token, signature included, so only genuine tokens ever enter."""

    def __init__(self, secret: str, max_entries: int = 50_000) -> None:
        self._secret = secret
        self._max = max_entries
        self._seen: dict[str, tuple[Principal, float]] = {}

    def principal(self, token: str) -> Principal:
        hit = self._seen.get(token)
        if hit is not None and hit[1] > time.time():
            return hit[0]
        principal, expires = _decode(token, self._secret)
        if len(self._seen) >= self._max:
            self._seen.clear()  # crude but bounded; a refill costs one verification per token
        self._seen[token] = (principal, expires)
        return principal


def _decode(token: str, secret: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[_ALGORITHM], issuer=_ISSUER, options={"require": ["exp", "sub", "iat"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token_expired", "the access token has expired: refresh it") from None
    except jwt.InvalidTokenError:
        raise Unauthenticated("invalid_token", "the access token is not valid") from None
    if claims.get("typ") == "client":
        try:
            client = Principal(user_id=uuid.UUID(claims["sub"]), client_scopes=tuple(str(claims["scope"]).split()))
            return client, float(claims["exp"])
        except (KeyError, ValueError, TypeError):
            raise Unauthenticated("invalid_token", "the access token is malformed") from None
    if claims.get("typ") != "access":
        raise Unauthenticated("invalid_token", "not an access token")
    try:
        principal = Principal(
            user_id=uuid.UUID(claims["sub"]),
            memberships=tuple(Membership(uuid.UUID(f), r) for f, r in claims.get("roles", [])),
            is_system_admin=bool(claims.get("adm", False)),
            practitioner_id=uuid.UUID(claims["prc"]) if "prc" in claims else None,
        )
        return principal, float(claims["exp"])
    except (KeyError, ValueError, TypeError):
        raise Unauthenticated("invalid_token", "the access token is malformed") from None
