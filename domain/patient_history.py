"""A patient's versions: the current one (in `patients`) and those it replaced (`patient_versions`,
kept by a trigger, migration 0024), for FHIR vread and _history.

Reading a version is reading the patient: the same rule (access.PATIENT_VISIBLE) and the same
audit event as `patients.get`, whichever version is asked for.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from domain import access, patients
from domain.audit import trail
from domain.errors import NotFound
from domain.patients import Patient
from domain.principal import Principal
from infra.db import Connection

_PAST = """SELECT v.patient_id AS id, v.version, v.names::text AS names, v.birth_date, v.birth_year, v.sex, v.phone,
                  v.preferred_language, v.preferred_channel, v.home_facility_id, v.identifiers::text AS identifiers,
                  v.created_at, v.updated_at
           FROM patient_versions v"""
_CURRENT = """SELECT p.id, p.version, p.names::text AS names, p.birth_date, p.birth_year, p.sex, p.phone,
                     p.preferred_language, p.preferred_channel, p.home_facility_id,
                     coalesce((SELECT jsonb_agg(jsonb_build_object('system', i.system, 'value', i.value)
                                                ORDER BY i.system, i.value)
                               FROM patient_identifiers i WHERE i.patient_id = p.id), '[]')::text AS identifiers,
                     p.created_at, p.updated_at
              FROM patients p"""


async def version(conn: Connection, principal: Principal, patient_id: uuid.UUID, wanted: int) -> Patient:
    """One version of a patient (FHIR vread); 404 version_not_found if it never existed."""
    current = await patients.get(conn, principal, patient_id)  # the rule and the audited read
    if wanted == current.version:
        return current
    row = await conn.fetchrow(f"{_PAST} WHERE v.patient_id = $1 AND v.version = $2", patient_id, wanted)
    if row is None:
        raise NotFound("version_not_found", f"Patient/{patient_id} has no version {wanted}")
    return patients.from_row(row)


async def versions(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[Patient]:
    """Every version of a patient, newest first (FHIR instance _history)."""
    current = await patients.get(conn, principal, patient_id)
    rows = await conn.fetch(f"{_PAST} WHERE v.patient_id = $1 ORDER BY v.version DESC", patient_id)
    return [current, *map(patients.from_row, rows)]


async def changes(
    conn: Connection,
    principal: Principal,
    *,
    since: datetime | None,
    before: tuple[datetime, uuid.UUID, int] | None,
    limit: int,
) -> list[Patient]:
    """Versions of the patients the caller may see, newest first (FHIR type _history).

    `since` keeps versions written at or after it; `before` is the keyset (updated_at, id,
    version) of the last version of the previous page. Audited as a patient search."""
    rule_args = access.patient_args(principal)
    rows = await conn.fetch(
        f"""WITH visible AS (SELECT p.id FROM patients p WHERE {access.PATIENT_VISIBLE}),
                 every_version AS ({_CURRENT} WHERE p.id IN (SELECT id FROM visible)
                                   UNION ALL {_PAST} WHERE v.patient_id IN (SELECT id FROM visible))
            SELECT * FROM every_version
            WHERE ($5::timestamptz IS NULL OR updated_at >= $5)
              AND ($6::timestamptz IS NULL OR (updated_at, id, version) < ($6, $7::uuid, $8::int))
            ORDER BY updated_at DESC, id DESC, version DESC LIMIT $9""",
        *rule_args,
        since,
        *(before or (None, None, None)),
        limit,
    )
    found = [patients.from_row(r) for r in rows]
    if found:
        await trail.record(
            conn, principal, action="search", resource_type="Patient", resource_id=None,
            patient_ids=[p.id for p in found],
        )  # fmt: skip
    return found
