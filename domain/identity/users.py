"""User accounts (a verified phone) and what they may act as."""

from __future__ import annotations

import uuid

from domain.errors import NotFound, Unauthenticated
from domain.principal import Membership, Principal, Role
from infra.db import Connection


async def login(conn: Connection, phone: str) -> uuid.UUID:
    """The user for a phone that just proved possession by OTP, created on first login.

    Patients registered with this phone (by a health worker, or on a shared family phone) become
    reachable from this login: owning the number is what the OTP proved.
    """
    # Insert, or read what is there: two first sign-ins with one phone (or a sign-in while staff
    # onboard that phone) meet on the unique phone, the second waits and reads the first's user.
    # (Two statements: the read needs a snapshot taken after the wait.)
    row = await conn.fetchrow(
        "INSERT INTO users (id, phone) VALUES ($1, $2) ON CONFLICT (phone) DO NOTHING RETURNING id, disabled_at",
        uuid.uuid4(),
        phone,
    ) or await conn.fetchrow("SELECT id, disabled_at FROM users WHERE phone = $1", phone)
    assert row is not None
    if row["disabled_at"] is not None:
        raise Unauthenticated("user_disabled", "this account is disabled")
    user_id: uuid.UUID = row["id"]
    await conn.execute(
        """INSERT INTO patient_accounts (user_id, patient_id)
           SELECT $1, id FROM patients WHERE phone = $2 ON CONFLICT DO NOTHING""",
        user_id,
        phone,
    )
    return user_id


async def load_principal(conn: Connection, user_id: uuid.UUID) -> Principal:
    row = await conn.fetchrow(
        """SELECT u.is_system_admin, u.disabled_at, p.id AS practitioner_id
           FROM users u LEFT JOIN practitioners p ON p.user_id = u.id WHERE u.id = $1""",
        user_id,
    )
    if row is None:
        raise NotFound("user_not_found", "no such user")
    if row["disabled_at"] is not None:
        raise Unauthenticated("user_disabled", "this account is disabled")
    memberships = await conn.fetch(
        "SELECT facility_id, role FROM memberships WHERE user_id = $1 ORDER BY facility_id, role", user_id
    )
    return Principal(
        user_id=user_id,
        memberships=tuple(Membership(m["facility_id"], m["role"]) for m in memberships),
        is_system_admin=row["is_system_admin"],
        practitioner_id=row["practitioner_id"],
    )


async def ensure_user(
    conn: Connection, phone: str, *, display_name: str | None = None, system_admin: bool = False
) -> uuid.UUID:
    user_id: uuid.UUID = await conn.fetchval(
        """INSERT INTO users (id, phone, display_name, is_system_admin) VALUES ($1, $2, $3, $4)
           ON CONFLICT (phone) DO UPDATE
              SET display_name = coalesce(EXCLUDED.display_name, users.display_name),
                  is_system_admin = users.is_system_admin OR EXCLUDED.is_system_admin
           RETURNING id""",
        uuid.uuid4(),
        phone,
        display_name,
        system_admin,
    )
    return user_id


async def grant_role(conn: Connection, user_id: uuid.UUID, facility_id: uuid.UUID, role: Role) -> None:
    exists = await conn.fetchval("SELECT 1 FROM facilities WHERE id = $1", facility_id)
    if not exists:
        raise NotFound("facility_not_found", "no such facility", field="facility_id")
    await conn.execute(
        "INSERT INTO memberships (user_id, facility_id, role) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        user_id,
        facility_id,
        role,
    )


async def user_id_by_phone(conn: Connection, phone: str) -> uuid.UUID:
    user_id: uuid.UUID | None = await conn.fetchval("SELECT id FROM users WHERE phone = $1", phone)
    if user_id is None:
        raise NotFound("user_not_found", f"no user with phone {phone}", field="phone")
    return user_id
