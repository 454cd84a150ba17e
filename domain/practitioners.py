"""Practitioners: staff with a login, roles per facility, specialties and languages spoken."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import asyncpg
import msgspec

from domain import access
from domain.audit import trail
from domain.errors import Conflict, InvalidInput, NotFound
from domain.fields import Code, Name, Phone, ShortText
from domain.identity import users
from domain.phone import normalize
from domain.principal import Membership, Principal, Role
from infra.db import Connection

LANGUAGES = ("km", "vi", "fr", "en")


class PractitionerIn(msgspec.Struct, kw_only=True):
    name: Name
    phone: Phone
    facility_id: uuid.UUID
    role: Role
    specialties: Annotated[list[Code], msgspec.Meta(max_length=20)] = []
    languages: Annotated[list[Code], msgspec.Meta(max_length=20)] = []
    qualification: ShortText | None = None
    # The phone already signs in (or is a registered patient's): give that account this role and
    # a practitioner profile too, keeping its name and other roles. Without it: 409 phone_in_use.
    link_existing_account: bool = False


class Practitioner(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    specialties: list[str]
    languages: list[str]
    qualification: str | None
    roles: list[Membership]
    created_at: datetime


def from_row(row: asyncpg.Record) -> Practitioner:
    """A practitioner from a row of the practitioners table (also the FHIR search's rows)."""
    return Practitioner(
        id=row["id"],
        user_id=row["user_id"],
        name=row["name"],
        specialties=list(row["specialties"]),
        languages=list(row["languages"]),
        qualification=row["qualification"],
        roles=[Membership(uuid.UUID(f), r) for f, r in row["roles"]],
        created_at=row["created_at"],
    )


_SELECT = """SELECT p.*, coalesce(jsonb_agg(jsonb_build_array(m.facility_id, m.role) ORDER BY m.facility_id, m.role)
                     FILTER (WHERE m.role IS NOT NULL), '[]') AS roles
             FROM practitioners p LEFT JOIN memberships m ON m.user_id = p.user_id"""


def _check(data: PractitionerIn) -> None:
    if not 1 <= len(data.name.strip()) <= 200:
        raise InvalidInput("invalid_name", "name is 1 to 200 characters", field="name")
    for i, lang in enumerate(data.languages):
        if lang not in LANGUAGES:
            raise InvalidInput("invalid_language", f"languages are {', '.join(LANGUAGES)}", field=f"languages[{i}]")
    for i, specialty in enumerate(data.specialties):
        if not 1 <= len(specialty) <= 80 or specialty != specialty.strip().lower():
            raise InvalidInput(
                "invalid_specialty", "a specialty is a lower-case code such as 'cardiology'", field=f"specialties[{i}]"
            )


async def create(conn: Connection, principal: Principal, data: PractitionerIn, *, default_region: str) -> Practitioner:
    """Give a person a login at a facility: a user, the role, and their practitioner profile.

    An existing account is never changed silently (users.onboard): an existing practitioner is a
    409 practitioner_exists, any other account or patient phone a 409 phone_in_use unless
    `link_existing_account`, and then the account keeps its name and roles and gains this one."""
    access.require_facility_admin(principal, data.facility_id)
    _check(data)
    phone = normalize(data.phone, default_region)
    await _refuse_an_existing_practitioner(conn, phone)
    if not await conn.fetchval("SELECT 1 FROM facilities WHERE id = $1", data.facility_id):
        raise NotFound("facility_not_found", "no such facility", field="facility_id")
    try:
        user_id, linked = await users.onboard(conn, phone, data.name.strip(), link_existing=data.link_existing_account)
    except Conflict as exc:
        # A concurrent onboarding of this phone committed since the check above: say what the
        # check would now say, whichever moment the race was lost at.
        if exc.code == "phone_in_use":
            await _refuse_an_existing_practitioner(conn, phone)
        raise
    await users.grant_role(conn, user_id, data.facility_id, data.role)
    practitioner_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO practitioners (id, user_id, name, specialties, languages, qualification)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        practitioner_id,
        user_id,
        data.name.strip(),
        data.specialties,
        data.languages,
        data.qualification,
    )
    await trail.record(
        conn,
        principal,
        action="link_account" if linked else "create",
        resource_type="Practitioner",
        resource_id=practitioner_id,
        patient_ids=[],
        facility_id=data.facility_id,
    )
    return await get(conn, practitioner_id)


async def _refuse_an_existing_practitioner(conn: Connection, phone: str) -> None:
    existing = await conn.fetchval(
        "SELECT p.id FROM practitioners p JOIN users u ON u.id = p.user_id WHERE u.phone = $1", phone
    )
    if existing is not None:
        raise Conflict(
            "practitioner_exists",
            "this phone already belongs to a practitioner; nothing was changed",
            field="phone",
            id=str(existing),
        )


async def get(conn: Connection, practitioner_id: uuid.UUID) -> Practitioner:
    row = await conn.fetchrow(f"{_SELECT} WHERE p.id = $1 GROUP BY p.id", practitioner_id)
    if row is None:
        raise NotFound("practitioner_not_found", "no such practitioner")
    return from_row(row)


async def search(
    conn: Connection,
    *,
    specialty: str | None = None,
    facility_id: uuid.UUID | None = None,
    language: str | None = None,
    name: str | None = None,
    after: uuid.UUID | None = None,
    limit: int = 100,
) -> list[Practitioner]:
    """Ordered by (name, id); `after` is the id of the last one seen (keyset paging)."""
    rows = await conn.fetch(
        f"""{_SELECT} WHERE ($1::text IS NULL OR $1 = ANY(p.specialties))
              AND ($2::text IS NULL OR $2 = ANY(p.languages))
              AND ($3::uuid IS NULL OR EXISTS (SELECT 1 FROM memberships mm
                                               WHERE mm.user_id = p.user_id AND mm.facility_id = $3))
              AND ($5::text IS NULL OR p.name ILIKE '%' || $5 || '%')
              AND ($6::uuid IS NULL OR (p.name, p.id) > (SELECT a.name, a.id FROM practitioners a WHERE a.id = $6))
            GROUP BY p.id ORDER BY p.name, p.id LIMIT $4""",
        specialty,
        language,
        facility_id,
        limit,
        name,
        after,
    )
    return [from_row(r) for r in rows]
