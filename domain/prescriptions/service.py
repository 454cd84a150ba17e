"""Electronic prescriptions: the prescriber's licence, the facility's national code, the code each
prescription gets when written, its export queue, and its verification by code.

A prescription is a record entry (kind 'prescription'). When its first version is written, the
record stamps its body with a new code (codes.py) and with the prescriber's licence and the
facility's code as they are at that moment (`stamp`); every version of it, corrections and
entered-in-error included, is queued for the national export in the same transaction (`queue`).

Who reads a prescription by its code (a pharmacist checking a paper one, the patient printing
theirs): clinical staff (CHW, clinician, specialist) of the facility that wrote it, where it is
dispensed, or anyone the patient's record is open to (the patient, their treating staff, by
consent or break-glass: domain.access.RECORD_BASIS). Anyone else: 403, audited as refused.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import msgspec

from domain import access
from domain.audit import trail
from domain.errors import Forbidden, InvalidInput, NotFound
from domain.prescriptions import codes
from domain.principal import Principal
from domain.record import store
from domain.record.types import Entry
from infra.db import Connection, Pool

# The keys the record adds to a prescription's body (kept by every later version).
STAMPED = ("prescription_code", "prescriber_licence", "facility_code")
System = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Value = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class LicenceIn(msgspec.Struct, frozen=True, kw_only=True):
    system: System  # the register that issued it, e.g. the national medical council's URI
    number: Value


class FacilityCodeIn(msgspec.Struct, frozen=True, kw_only=True):
    system: System  # the national register of facilities
    code: Value


def _clean(value: str, field: str) -> str:
    cleaned = value.strip()
    if not cleaned or any(not ch.isprintable() for ch in cleaned):
        raise InvalidInput("invalid_value", "give printable characters", field=field)
    return cleaned


async def set_licence(conn: Connection, principal: Principal, practitioner_id: uuid.UUID, data: LicenceIn) -> LicenceIn:
    """An administrator of one of the practitioner's facilities (or a system admin) records the
    licence; one licence number belongs to one practitioner (409 licence_taken)."""
    facilities = await conn.fetch(
        """SELECT m.facility_id FROM practitioners p JOIN memberships m ON m.user_id = p.user_id WHERE p.id = $1""",
        practitioner_id,
    )
    if not facilities and not await conn.fetchval("SELECT 1 FROM practitioners WHERE id = $1", practitioner_id):
        raise NotFound("practitioner_not_found", "no such practitioner")
    if not principal.is_system_admin and not any(principal.has_role("facility_admin", r[0]) for r in facilities):
        raise Forbidden("role_required", "only an administrator of the practitioner's facility may set the licence")
    licence = LicenceIn(system=_clean(data.system, "system"), number=_clean(data.number, "number"))
    await conn.execute(
        """INSERT INTO practitioner_licences (practitioner_id, system, number, updated_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (practitioner_id) DO UPDATE
           SET system = excluded.system, number = excluded.number, updated_by = excluded.updated_by,
               updated_at = now()""",
        practitioner_id, licence.system, licence.number, principal.user_id,
    )  # fmt: skip
    await trail.record(
        conn, principal, action="update", resource_type="Practitioner", resource_id=practitioner_id, patient_ids=[]
    )
    return licence


async def set_facility_code(
    conn: Connection, principal: Principal, facility_id: uuid.UUID, data: FacilityCodeIn
) -> FacilityCodeIn:
    """The facility's administrator (or a system admin) records its national code."""
    if not await conn.fetchval("SELECT 1 FROM facilities WHERE id = $1", facility_id):
        raise NotFound("facility_not_found", "no such facility")
    access.require_facility_admin(principal, facility_id)
    code = FacilityCodeIn(system=_clean(data.system, "system"), code=_clean(data.code, "code"))
    await conn.execute(
        """INSERT INTO facility_codes (facility_id, system, code, updated_by) VALUES ($1, $2, $3, $4)
           ON CONFLICT (facility_id) DO UPDATE
           SET system = excluded.system, code = excluded.code, updated_by = excluded.updated_by, updated_at = now()""",
        facility_id, code.system, code.code, principal.user_id,
    )  # fmt: skip
    await trail.record(
        conn, principal, action="update", resource_type="Organization", resource_id=facility_id, patient_ids=[]
    )
    return code


async def stamp(conn: Connection, principal: Principal, facility_id: uuid.UUID | None) -> dict[str, Any]:
    """What a new prescription's body gains: its code, the prescriber's licence and the facility's
    code (each when known: a prescriber without a recorded licence still prescribes)."""
    added: dict[str, Any] = {"prescription_code": codes.new_code()}
    licence = await conn.fetchrow(
        """SELECT l.system, l.number FROM practitioner_licences l JOIN practitioners p ON p.id = l.practitioner_id
           WHERE p.user_id = $1""",
        principal.user_id,
    )
    if licence is not None:
        added["prescriber_licence"] = {"system": licence["system"], "value": licence["number"]}
    if facility_id is not None:
        code = await conn.fetchrow("SELECT system, code FROM facility_codes WHERE facility_id = $1", facility_id)
        if code is not None:
            added["facility_code"] = {"system": code["system"], "value": code["code"]}
    return added


def carried(previous: Entry, body: dict[str, Any]) -> dict[str, Any]:
    """A later version's body keeps the stamps of the first."""
    return {**body, **{k: previous.body[k] for k in STAMPED if k in previous.body}}


async def issue(conn: Connection, entry: Entry) -> None:
    """Register version 1's code (unique: the primary key) and queue its export."""
    body = entry.body
    licence = body.get("prescriber_licence") or {}
    facility = body.get("facility_code") or {}
    await conn.execute(
        """INSERT INTO prescriptions (code, entry_id, patient_id, prescriber_id, facility_id, licence_system,
                                      licence_number, facility_system, facility_code)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)""",
        body["prescription_code"], entry.id, entry.patient_id, entry.provenance.author_user_id,
        entry.provenance.facility_id, licence.get("system"), licence.get("value"), facility.get("system"),
        facility.get("value"),
    )  # fmt: skip
    await queue(conn, entry)


async def queue(conn: Connection, entry: Entry) -> None:
    """This version goes to the national exporter (api.prescriptions.export), at least once."""
    await conn.execute(
        "INSERT INTO prescription_exports (code, entry_id, version) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        entry.body["prescription_code"],
        entry.id,
        entry.version,
    )


class Verified(msgspec.Struct, kw_only=True):
    """A prescription as a pharmacist checks it."""

    code: str
    display_code: str
    entry: Entry
    patient_name: str
    patient_birth: str | None
    patient_language: str
    prescriber_name: str | None
    facility_name: str | None
    facility_timezone: str | None


async def verify(conn: Connection, pool: Pool, principal: Principal, typed: str) -> Verified:
    """The prescription a code names, for a reader allowed by the module's rule; the read is audited."""
    code = codes.canonical(typed)
    if code is None:
        raise InvalidInput("invalid_prescription_code", "not a prescription code (check the characters)", field="code")
    row = await conn.fetchrow(
        """SELECT rx.entry_id, rx.patient_id, rx.facility_id, p.names->0->>'text' AS patient_name,
                  coalesce(p.birth_date::text, p.birth_year::text) AS birth, p.preferred_language,
                  pr.name AS prescriber_name, f.name AS facility_name, f.timezone
           FROM prescriptions rx JOIN patients p ON p.id = rx.patient_id
           LEFT JOIN practitioners pr ON pr.user_id = rx.prescriber_id
           LEFT JOIN facilities f ON f.id = rx.facility_id
           WHERE rx.code = $1""",
        code,
    )
    if row is None:
        raise NotFound("prescription_not_found", "no prescription has this code")
    at_facility = row["facility_id"] is not None and row["facility_id"] in principal.facilities_with(
        *access.CLINICAL_ROLES
    )
    purpose = "dispensing" if at_facility else None
    if not at_facility:
        try:
            purpose = (await access.require_can_read_record(conn, principal, row["patient_id"])).basis
        except Forbidden:
            await trail.record_refused(
                pool, principal, action="read", resource_type="MedicationRequest", resource_id=row["entry_id"],
                patient_id=row["patient_id"], facility_id=access.authoring_facility(principal),
            )  # fmt: skip
            raise Forbidden(
                "prescription_access_denied",
                "only the prescribing facility's staff and those the patient's record is open to read it",
            ) from None
    entry = await store.head(conn, row["entry_id"])
    assert entry is not None  # prescriptions rows are written with their entry
    await trail.record(
        conn, principal, action="read", resource_type="MedicationRequest", resource_id=entry.id,
        patient_ids=[entry.patient_id], facility_id=access.authoring_facility(principal), purpose=purpose,
    )  # fmt: skip
    return Verified(
        code=code, display_code=codes.display(code), entry=entry, patient_name=row["patient_name"] or "",
        patient_birth=row["birth"], patient_language=row["preferred_language"],
        prescriber_name=row["prescriber_name"], facility_name=row["facility_name"],
        facility_timezone=row["timezone"],
    )  # fmt: skip
