"""Finding a patient who may already be registered (FHIR `Patient/$match`): the grades of
domain.identifiers.matching, limited to the patients the caller may see, audited as a search."""

from __future__ import annotations

from datetime import date

import msgspec

from domain import access, patients
from domain.audit import trail
from domain.errors import Forbidden
from domain.identifiers import matching, systems
from domain.phone import normalize
from domain.principal import Principal
from infra.db import Connection


class Wanted(msgspec.Struct, frozen=True, kw_only=True):
    """The person looked for, as given (identifiers and phone not yet normalised)."""

    names: list[patients.HumanName]
    identifiers: list[patients.Identifier]
    birth_date: date | None = None
    birth_year: int | None = None
    phone: str | None = None


class Found(msgspec.Struct, frozen=True):
    patient: patients.Patient
    match: matching.Match


async def find(
    conn: Connection, principal: Principal, wanted: Wanted, *, count: int, only_certain: bool, default_region: str
) -> list[Found]:
    """Health workers (and system admins) look for an existing patient before registering one."""
    if not (principal.is_staff or principal.is_system_admin):
        raise Forbidden("role_required", "only health workers may look for matching patients")
    registry = systems.registry()
    candidate = matching.Candidate(
        identifiers=[(i.system, registry.normalise(i.system, i.value)) for i in wanted.identifiers],
        search_text=patients.search_text_of(wanted.names),
        birth_date=wanted.birth_date,
        birth_year=wanted.birth_date.year if wanted.birth_date else wanted.birth_year,
        phone=normalize(wanted.phone, default_region) if wanted.phone else None,
    )
    matches = await matching.find(conn, candidate, at_least="certain" if only_certain else "possible")
    if not matches:
        return []
    visible = {
        r["id"]
        for r in await conn.fetch(
            f"SELECT p.id FROM patients p WHERE p.id = ANY($5::uuid[]) AND {access.PATIENT_VISIBLE}",
            *access.patient_args(principal),
            [m.patient_id for m in matches],
        )
    }
    shown = [m for m in matches if m.patient_id in visible][:count]
    loaded = await patients.load_many(conn, [m.patient_id for m in shown])
    found = [Found(loaded[m.patient_id], m) for m in shown]
    if found:
        await trail.record(
            conn, principal, action="search", resource_type="Patient", resource_id=None,
            patient_ids=[f.patient.id for f in found],
        )  # fmt: skip
    return found
