"""Rotating, revocable refresh tokens. Only a hash is stored. Each use returns a new token of the
same family; presenting a used token again means it was copied, so the whole family is revoked."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from domain.errors import Unauthenticated
from domain.principal import Membership, Principal
from infra.db import Connection


class RefreshTokenReused(Unauthenticated):
    """A used token came back. The caller must revoke `family_id` in a transaction of its own:
    the request's transaction rolls back with this error, and the revocation must survive it.
    Only once that transaction has ended: a loser of a concurrent rotation holds the token's row
    lock (see _ROTATE), which a revocation from inside the request would wait on for ever."""

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


class Rotated(NamedTuple):
    """A consumed token's user, as they stand now, and the next token of its family."""

    principal: Principal
    token: str


# One statement: read the token with its user, claim it, issue its successor, and read the user's
# roles for the access token (five round trips became one). The claim is a conditional UPDATE:
# a concurrent rotation of the same token waits for the first to end, then re-checks used_at on
# the row's latest version and claims nothing, so one of them wins. The loser keeps that row
# locked until its transaction ends (PostgreSQL locks the latest version before re-checking it),
# hence RefreshTokenReused's rule. A sign-out that revoked the token meanwhile is seen the same way
# (revoked_at is re-checked on that latest version): no successor outlives it. The claim is
# skipped when the snapshot already refuses the token; the expiry is left to the caller's clock,
# which rolls a claim of an expired token back.
_ROTATE = """
    WITH t AS MATERIALIZED (
        SELECT t.id, t.user_id, t.family_id, t.expires_at, t.used_at, t.revoked_at, u.disabled_at, u.is_system_admin
        FROM refresh_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = $1),
    claimed AS (
        UPDATE refresh_tokens r SET used_at = now() FROM t
        WHERE r.id = t.id AND r.used_at IS NULL AND r.revoked_at IS NULL
          AND t.used_at IS NULL AND t.revoked_at IS NULL AND t.disabled_at IS NULL
        RETURNING r.user_id, r.family_id),
    issued AS (
        INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at)
        SELECT $2, user_id, family_id, $3, $4 FROM claimed)
    SELECT t.*, EXISTS (SELECT FROM claimed) AS claimed,
           (SELECT p.id FROM practitioners p WHERE p.user_id = t.user_id) AS practitioner_id,
           ARRAY(SELECT m.facility_id FROM memberships m WHERE m.user_id = t.user_id
                 ORDER BY m.facility_id, m.role) AS facilities,
           ARRAY(SELECT m.role FROM memberships m WHERE m.user_id = t.user_id
                 ORDER BY m.facility_id, m.role) AS roles
    FROM t"""


async def rotate(conn: Connection, token: str, ttl_s: int) -> Rotated:
    """Consume `token`; return its user's principal and the next token of its family.

    Run in a transaction: a refusal found after the claim (an expired token) must roll it back."""
    successor = secrets.token_urlsafe(32)
    row = await conn.fetchrow(
        _ROTATE, _hash(token), uuid.uuid4(), _hash(successor), datetime.now(UTC) + timedelta(seconds=ttl_s)
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
    if not row["claimed"]:  # a concurrent request used it first: the same token was presented twice
        raise RefreshTokenReused(row["family_id"])
    principal = Principal(
        user_id=row["user_id"],
        memberships=tuple(Membership(f, r) for f, r in zip(row["facilities"], row["roles"], strict=True)),
        is_system_admin=row["is_system_admin"],
        practitioner_id=row["practitioner_id"],
    )
    return Rotated(principal, successor)


async def revoke(conn: Connection, token: str) -> None:
    """Sign out: revoke the token's whole family. The token's row is locked first, so a rotation of
    it in flight ends before the family is revoked, and revoke_family's statement, a snapshot taken
    after that, sees the successor the rotation issued (read in one statement, it was missed)."""
    family = await conn.fetchval("SELECT family_id FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE", _hash(token))
    if family is None:
        raise Unauthenticated("invalid_refresh_token", "unknown refresh token")
    await revoke_family(conn, family)


async def revoke_family(conn: Connection, family_id: uuid.UUID) -> None:
    await conn.execute(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL", family_id
    )
