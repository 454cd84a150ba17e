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


def decode_access_token(token: str, secret: str) -> Principal:
    try:
        claims = jwt.decode(
            token, secret, algorithms=[_ALGORITHM], issuer=_ISSUER, options={"require": ["exp", "sub", "iat"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token_expired", "the access token has expired: refresh it") from None
    except jwt.InvalidTokenError:
        raise Unauthenticated("invalid_token", "the access token is not valid") from None
    if claims.get("typ") != "access":
        raise Unauthenticated("invalid_token", "not an access token")
    try:
        return Principal(
            user_id=uuid.UUID(claims["sub"]),
            memberships=tuple(Membership(uuid.UUID(f), r) for f, r in claims.get("roles", [])),
            is_system_admin=bool(claims.get("adm", False)),
            practitioner_id=uuid.UUID(claims["prc"]) if "prc" in claims else None,
        )
    except (KeyError, ValueError, TypeError):
        raise Unauthenticated("invalid_token", "the access token is malformed") from None
