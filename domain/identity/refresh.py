"""Rotating, revocable refresh tokens. Only a hash is stored. Each use returns a new token of the
same family; presenting a used token again means it was copied, so the whole family is revoked."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from domain.errors import Unauthenticated
from infra.db import Connection


class RefreshTokenReused(Unauthenticated):
    """A used token came back. The caller must revoke `family_id` in a transaction of its own:
    the request's transaction rolls back with this error, and the revocation must survive it."""

    def __init__(self, family_id: uuid.UUID) -> None:
        super().__init__("refresh_token_reused", "refresh token used twice: the session is revoked")
        self.family_id = family_id


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def issue(conn: Connection, user_id: uuid.UUID, ttl_s: int, family_id: uuid.UUID | None = None) -> str:
    token = secrets.token_urlsafe(32)
    await conn.execute(
        """INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at)
           VALUES ($1, $2, $3, $4, $5)""",
        uuid.uuid4(),
        user_id,
        family_id or uuid.uuid4(),
        _hash(token),
        datetime.now(UTC) + timedelta(seconds=ttl_s),
    )
    return token


async def rotate(conn: Connection, token: str, ttl_s: int) -> tuple[uuid.UUID, str]:
    """Consume `token`; return its user and the next token of its family.

    The token is claimed by a conditional UPDATE rather than a row lock, so a reuse is detected
    without this transaction holding locks that the caller's revocation would wait on.
    """
    row = await conn.fetchrow(
        """SELECT t.id, t.user_id, t.family_id, t.expires_at, t.used_at, t.revoked_at, u.disabled_at
           FROM refresh_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1""",
        _hash(token),
    )
    if row is None:
        raise Unauthenticated("invalid_refresh_token", "unknown refresh token")
    if row["revoked_at"] is not None:
        raise Unauthenticated("refresh_token_revoked", "this session was signed out")
    if row["used_at"] is not None:
        raise RefreshTokenReused(row["family_id"])
    if row["expires_at"] <= datetime.now(UTC):
        raise Unauthenticated("refresh_token_expired", "the session has expired: sign in again")
    if row["disabled_at"] is not None:
        raise Unauthenticated("user_disabled", "this account is disabled")
    claimed = await conn.fetchval(
        "UPDATE refresh_tokens SET used_at = now() WHERE id = $1 AND used_at IS NULL RETURNING 1", row["id"]
    )
    if claimed is None:  # a concurrent request used it first: the same token was presented twice
        raise RefreshTokenReused(row["family_id"])
    return row["user_id"], await issue(conn, row["user_id"], ttl_s, row["family_id"])


async def revoke(conn: Connection, token: str) -> None:
    family = await conn.fetchval("SELECT family_id FROM refresh_tokens WHERE token_hash = $1", _hash(token))
    if family is None:
        raise Unauthenticated("invalid_refresh_token", "unknown refresh token")
    await revoke_family(conn, family)


async def revoke_family(conn: Connection, family_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL", family_id
    )
