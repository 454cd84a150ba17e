"""User accounts (a verified phone) and what they may act as."""

from __future__ import annotations

import uuid

from domain.errors import Conflict, NotFound, Unauthenticated
from domain.principal import Membership, Principal, Role
from infra.db import Connection


async def is_known(conn: Connection, phone: str) -> bool:
    """May this phone sign in: it has an account (staff, administrator, an earlier sign-in) or a
    patient is registered with it. Nobody else gets a code or a token (see login)."""
    known: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM users WHERE phone = $1) OR EXISTS (SELECT 1 FROM patients WHERE phone = $1)",
        phone,
    )
    return known


async def login(conn: Connection, phone: str) -> uuid.UUID | None:
    """The user for a phone that just proved possession by OTP, created on the first sign-in of a
    registered patient's phone; None for a phone Spean does not know (no self-sign-up: is_known).

    Patients registered with this phone (by a health worker, or on a shared family phone) become
    reachable from this login: owning the number is what the OTP proved.
    """
    row = await conn.fetchrow("SELECT id, disabled_at FROM users WHERE phone = $1", phone)
    if row is None:
        if not await conn.fetchval("SELECT 1 FROM patients WHERE phone = $1 LIMIT 1", phone):
            return None
        # Two first sign-ins at once (or one while staff onboard the phone) meet on the unique
        # phone: the second waits for the first and both end with the one account.
        row = await conn.fetchrow(
            """INSERT INTO users (id, phone) VALUES ($1, $2)
               ON CONFLICT (phone) DO UPDATE SET phone = EXCLUDED.phone RETURNING id, disabled_at""",
            uuid.uuid4(),
            phone,
        )
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


async def onboard(
    conn: Connection, phone: str, display_name: str | None, *, link_existing: bool
) -> tuple[uuid.UUID, bool]:
    """The account a member of staff (or an administrator) will sign in with: (user id, linked).

    A phone nobody uses gets a new account with `display_name`. A phone already in use, by an
    account (a patient's login, staff, an administrator) or by a registered patient (whose login it
    will become at the first sign-in), is refused with 409 phone_in_use unless the caller links it
    explicitly (`link_existing`); a linked account keeps its name and every role it had, and the
    caller adds only the new role and says so in the audit trail. Never a silent rename or grant.
    """
    row = await conn.fetchrow("SELECT id FROM users WHERE phone = $1 FOR UPDATE", phone)
    in_use = row is not None or await conn.fetchval("SELECT 1 FROM patients WHERE phone = $1 LIMIT 1", phone)
    if in_use and not link_existing:
        raise Conflict(
            "phone_in_use",
            "this phone already belongs to a patient or an account; to give that account this role too, "
            "link it explicitly (its name and other roles are kept)",
            field="phone",
        )
    if row is not None:
        return row["id"], True
    user_id: uuid.UUID | None = await conn.fetchval(
        """INSERT INTO users (id, phone, display_name) VALUES ($1, $2, $3)
           ON CONFLICT (phone) DO NOTHING RETURNING id""",
        uuid.uuid4(),
        phone,
        display_name,
    )
    if user_id is None:  # created concurrently by someone else: that account is not ours to change
        # The insert waited for the other transaction to commit, so this read sees what it made.
        if await conn.fetchval(
            "SELECT 1 FROM practitioners p JOIN users u ON u.id = p.user_id WHERE u.phone = $1", phone
        ):
            raise Conflict("practitioner_exists", "this phone was just given to a practitioner", field="phone")
        raise Conflict("phone_in_use", "this phone was just given to another account", field="phone")
    return user_id, bool(in_use)


async def ensure_user(
    conn: Connection, phone: str, *, display_name: str | None = None, system_admin: bool = False
) -> uuid.UUID:
    """Tests' and tools' shortcut: the account for `phone`, created if missing (never renamed)."""
    user_id: uuid.UUID = await conn.fetchval(
        """INSERT INTO users (id, phone, display_name, is_system_admin) VALUES ($1, $2, $3, $4)
           ON CONFLICT (phone) DO UPDATE
              SET display_name = coalesce(users.display_name, EXCLUDED.display_name),
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
