"""`spean admin register-client | list-clients | revoke-client`: the backend clients of SMART
Backend Services (domain.smart.clients). Each change is audited as an operator's act."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from domain.audit import trail
from domain.errors import InvalidInput
from domain.smart import clients
from infra import db, pooling
from infra.config import Settings


def thumbprint(jwk: dict[str, Any]) -> str:
    """The key's RFC 7638 thumbprint: a stable kid for a PEM key, which the client computes the same way (RFC 7638)."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


def jwks_from_file(path: Path) -> dict[str, Any]:
    """A JWKS document, a single JWK, or a PEM public key, as a JWKS."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidInput("invalid_jwks", f"cannot read {path}: {exc.strerror}") from None
    if "-----BEGIN" in text:
        try:
            key = load_pem_public_key(text.encode())
        except ValueError:
            raise InvalidInput("invalid_jwks", f"{path} is not a PEM public key") from None
        if isinstance(key, rsa.RSAPublicKey):
            jwk = json.loads(RSAAlgorithm.to_jwk(key)) | {"alg": "RS384"}
        elif isinstance(key, ec.EllipticCurvePublicKey):
            jwk = json.loads(ECAlgorithm.to_jwk(key)) | {"alg": "ES384"}
        else:
            raise InvalidInput("invalid_jwks", "the public key is RSA or EC (P-384)")
        return {"keys": [jwk | {"kid": thumbprint(jwk), "use": "sig"}]}
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidInput("invalid_jwks", f"{path} is neither JSON (a JWKS or a JWK) nor a PEM public key") from None
    if isinstance(document, dict) and "kty" in document:
        document = {"keys": [document]}
    return clients.check_jwks(document)


def _shown(client: clients.Client) -> dict[str, Any]:
    return {
        "client_id": str(client.id),
        "name": client.name,
        "scopes": list(client.scopes),
        "keys": client.jwks_url or f"{len((client.jwks or {}).get('keys', []))} registered key(s)",
        "created_at": client.created_at.isoformat(),
        "revoked_at": None if client.revoked_at is None else client.revoked_at.isoformat(),
    }


async def register_client(
    database_url: str, settings: Settings, *, name: str, scopes: list[str], jwks_file: Path | None,
    jwks_url: str | None,
) -> str:  # fmt: skip
    jwks = None if jwks_file is None else jwks_from_file(jwks_file)
    conn = await pooling.connect(database_url, settings.db_pooler)
    try:
        await db.init_connection(conn)
        async with conn.transaction():
            client = await clients.register(conn, name=name, scopes=scopes, jwks=jwks, jwks_url=jwks_url)
            await trail.record_operator(conn, action="create", resource_type="SmartClient", resource_id=client.id)
    finally:
        await conn.close()
    return json.dumps(_shown(client), indent=2)


async def list_clients(database_url: str, settings: Settings) -> str:
    conn = await pooling.connect(database_url, settings.db_pooler)
    try:
        await db.init_connection(conn)
        found = await clients.listing(conn)
    finally:
        await conn.close()
    return json.dumps([_shown(c) for c in found], indent=2)


async def revoke_client(database_url: str, settings: Settings, *, client_id: str) -> str:
    try:
        wanted = uuid.UUID(client_id)
    except ValueError:
        raise InvalidInput("invalid_client_id", "the client id is a UUID (see `spean admin list-clients`)") from None
    conn = await pooling.connect(database_url, settings.db_pooler)
    try:
        await db.init_connection(conn)
        async with conn.transaction():
            client = await clients.revoke(conn, wanted)
            await trail.record_operator(conn, action="update", resource_type="SmartClient", resource_id=client.id)
    finally:
        await conn.close()
    return json.dumps(_shown(client), indent=2)
