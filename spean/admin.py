"""Operator tasks run by the CLI beside the server (same database, same signing key)."""

from __future__ import annotations

import uuid

import asyncpg

from domain.audit import chain
from domain.errors import InvalidInput
from domain.identity import users
from domain.identity.tokens import issue_access_token
from domain.phone import normalize
from infra import db
from infra.config import Settings


async def create_user(
    database_url: str, settings: Settings, *, phone: str, role: str, facility: str | None, name: str | None
) -> str:
    e164 = normalize(phone, settings.default_region)
    facility_id = _facility_id(facility) if facility else None
    if role not in ("system_admin",) and facility_id is None:
        raise InvalidInput("facility_required", f"--facility is required for role {role}", field="facility")
    conn = await asyncpg.connect(database_url)
    try:
        await db.init_connection(conn)
        async with conn.transaction():
            user_id = await users.ensure_user(conn, e164, display_name=name, system_admin=role == "system_admin")
            if role == "patient":
                assert facility_id is not None
                patient_id = await _ensure_patient(conn, user_id, e164, facility_id, name)
                return f"user {user_id} ({e164}) acts for patient {patient_id}"
            if facility_id is not None and role != "system_admin":
                await users.grant_role(conn, user_id, facility_id, role)  # type: ignore[arg-type]
                if role != "facility_admin":
                    await conn.execute(
                        """INSERT INTO practitioners (id, user_id, name) VALUES ($1, $2, $3)
                           ON CONFLICT (user_id) DO NOTHING""",
                        uuid.uuid4(),
                        user_id,
                        name or e164,
                    )
        return f"user {user_id} ({e164}) is {role}" + (f" at {facility_id}" if facility_id else "")
    finally:
        await conn.close()


async def _ensure_patient(
    conn: asyncpg.Connection, user_id: uuid.UUID, phone: str, facility_id: uuid.UUID, name: str | None
) -> uuid.UUID:
    if not await conn.fetchval("SELECT 1 FROM facilities WHERE id = $1", facility_id):
        raise InvalidInput("facility_not_found", f"no facility {facility_id}", field="facility")
    existing: uuid.UUID | None = await conn.fetchval(
        "SELECT patient_id FROM patient_accounts WHERE user_id = $1 LIMIT 1", user_id
    )
    if existing is not None:
        return existing
    patient_id = uuid.uuid4()
    display = name or phone
    await conn.execute(
        """INSERT INTO patients (id, names, search_text, phone, home_facility_id, created_by)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        patient_id,
        [{"text": display}],
        display.casefold(),
        phone,
        facility_id,
        user_id,
    )
    await conn.execute("INSERT INTO patient_accounts (user_id, patient_id) VALUES ($1, $2)", user_id, patient_id)
    return patient_id


def _facility_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise InvalidInput(
            "invalid_facility", f"--facility must be a facility id, not {value!r}", field="facility"
        ) from None


async def issue_token(database_url: str, settings: Settings, secret_key: str, *, phone: str, ttl_s: int | None) -> str:
    e164 = normalize(phone, settings.default_region)
    conn = await asyncpg.connect(database_url)
    try:
        user_id = await users.user_id_by_phone(conn, e164)
        principal = await users.load_principal(conn, user_id)
    finally:
        await conn.close()
    return issue_access_token(principal, secret_key, ttl_s or settings.access_token_ttl_s)


async def seal_audit(database_url: str) -> str:
    conn = await asyncpg.connect(database_url)
    try:
        return f"sealed {await chain.seal(conn)} audit event(s)"
    finally:
        await conn.close()


async def verify_audit(database_url: str, *, seal_first: bool) -> tuple[bool, str]:
    """Seal what has committed (unless told not to), then recompute the whole chain."""
    conn = await asyncpg.connect(database_url)
    try:
        if seal_first:
            await chain.seal(conn)
        verdict = await chain.verify(conn)
    finally:
        await conn.close()
    summary = (
        f"{verdict.sealed} sealed event(s), {verdict.unsealed} not yet sealed; "
        f"head {verdict.head_seq} {verdict.head_hash}"
    )
    if verdict.ok:
        return True, f"audit chain intact: {summary}"
    return False, f"audit chain BROKEN at event {verdict.problem_id}: {verdict.problem} ({summary})"
