"""Backend clients registered by an operator (`spean admin register-client`): a name, the scopes
granted, and where their public keys are (a JWKS document kept here, or a JWKS URL the client
publishes). A revoked client gets no more tokens; tokens already issued end within their
lifetime (at most five minutes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import jwt
import msgspec

from domain.errors import InvalidInput, NotFound
from domain.smart import scopes as smart_scopes
from infra.db import Connection

# What a client signs its assertions with (SMART Backend Services requires support for both).
ALGORITHMS = ("RS384", "ES384")


class Client(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    name: str
    scopes: tuple[str, ...]
    jwks: dict[str, Any] | None
    jwks_url: str | None
    created_at: datetime
    revoked_at: datetime | None


def check_jwks(jwks: object) -> dict[str, Any]:
    """A JWKS document with at least one public key usable with RS384 or ES384."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise InvalidInput("invalid_jwks", "a JWKS is a JSON object with a non-empty 'keys' list")
    for key in jwks["keys"]:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            raise InvalidInput("invalid_jwks", "each key is an RSA or EC public key (kty RSA or EC)")
        if "d" in key:
            raise InvalidInput("invalid_jwks", "the JWKS holds a private key: register the public key only")
        try:
            jwt.PyJWK(key, key.get("alg") or ("RS384" if key["kty"] == "RSA" else "ES384"))
        except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
            raise InvalidInput("invalid_jwks", f"a key of the JWKS cannot be used: {exc}") from None
    return jwks


def _client(row: Any) -> Client:
    return Client(
        id=row["id"],
        name=row["name"],
        scopes=tuple(row["scopes"]),
        jwks=row["jwks"],  # jsonb, decoded by the pool's codec (infra.db)
        jwks_url=row["jwks_url"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def register(
    conn: Connection, *, name: str, scopes: list[str], jwks: dict[str, Any] | None, jwks_url: str | None
) -> Client:
    if not 1 <= len(name) <= 200:
        raise InvalidInput("invalid_name", "a client's name is 1 to 200 characters", field="name")
    granted = [s.text for s in smart_scopes.parse_all(scopes)]
    if (jwks is None) == (jwks_url is None):
        raise InvalidInput("invalid_keys", "give the client's public keys as a JWKS file or a JWKS URL (one of them)")
    if jwks_url is not None and not jwks_url.startswith(("https://", "http://")):
        raise InvalidInput("invalid_jwks_url", "the JWKS URL is an http(s) URL", field="jwks_url")
    row = await conn.fetchrow(
        """INSERT INTO smart_clients (id, name, scopes, jwks, jwks_url) VALUES ($1, $2, $3, $4, $5)
           RETURNING *""",
        uuid.uuid4(),
        name,
        granted,
        None if jwks is None else check_jwks(jwks),
        jwks_url,
    )
    return _client(row)


async def get(conn: Connection, client_id: uuid.UUID) -> Client | None:
    row = await conn.fetchrow("SELECT * FROM smart_clients WHERE id = $1", client_id)
    return None if row is None else _client(row)


async def listing(conn: Connection) -> list[Client]:
    return [_client(r) for r in await conn.fetch("SELECT * FROM smart_clients ORDER BY created_at, id")]


async def revoke(conn: Connection, client_id: uuid.UUID) -> Client:
    row = await conn.fetchrow(
        "UPDATE smart_clients SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING *", client_id
    )
    if row is None:
        raise NotFound("client_not_found", "no such client")
    return _client(row)
