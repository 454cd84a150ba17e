"""SQL of the record: versions are inserted, heads are locked, nothing is ever deleted."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg

from domain import access
from domain.errors import NotFound
from domain.principal import Principal
from domain.record.types import Entry, Provenance
from infra.db import Connection

COLUMNS = """id, version, patient_id, kind, status, encounter_id, appointment_id, code, body, effective_at,
              author_user_id, author_role, facility_id, channel, recorded_at, reason, seq"""


def to_entry(row: asyncpg.Record) -> Entry:
    return Entry(
        id=row["id"],
        version=row["version"],
        patient_id=row["patient_id"],
        kind=row["kind"],
        status=row["status"],
        encounter_id=row["encounter_id"],
        appointment_id=row["appointment_id"],
        code=row["code"],
        effective_at=row["effective_at"],
        body=row["body"],
        provenance=Provenance(
            author_user_id=row["author_user_id"],
            author_role=row["author_role"],
            facility_id=row["facility_id"],
            channel=row["channel"],
            recorded_at=row["recorded_at"],
            reason=row["reason"],
        ),
        seq=row["seq"],
    )


async def insert(conn: Connection, **values: Any) -> Entry:
    names = list(values)
    row = await conn.fetchrow(
        f"""INSERT INTO record_entries ({", ".join(names)})
            VALUES ({", ".join(f"${i}" for i in range(1, len(names) + 1))}) RETURNING {COLUMNS}""",
        *values.values(),
    )
    assert row is not None
    return to_entry(row)


# A new entry written with its access check and its audit event, in one statement (three round
# trips became one): the patient must be visible to the author (access.PATIENT_VISIBLE, $1-$4);
# then the entry is inserted and audited, or nothing is. The facility is the patient's home if
# the author works there in a clinical role, else the author's own (access.authoring_facility).
_INSERT_AUDITED = f"""
    WITH p AS MATERIALIZED (
        SELECT p.id, p.home_facility_id, {access.PATIENT_VISIBLE} AS allowed FROM patients p WHERE p.id = $5),
    e AS (
        INSERT INTO record_entries (id, version, patient_id, kind, status, code, body, effective_at,
                                    author_user_id, author_role, facility_id, channel)
        SELECT $6, 1, p.id, $7, 'current', $8, $9, $10, $3::uuid, $11::text,
               CASE WHEN p.home_facility_id = ANY($12::uuid[]) THEN p.home_facility_id ELSE $13::uuid END, $14::text
        FROM p WHERE p.allowed
        RETURNING {COLUMNS}),
    audited AS (
        INSERT INTO audit_events (actor_user_id, actor_role, facility_id, patient_id, action, resource_type,
                                  resource_id, channel, outcome, request_id)
        SELECT $3::uuid, $11::text, e.facility_id, e.patient_id, 'create', $15, e.id::text, $14::text, 'success', $16
        FROM e)
    SELECT p.allowed AS write_allowed, e.* FROM p LEFT JOIN e ON true"""


async def insert_audited(
    conn: Connection,
    principal: Principal,
    patient_id: uuid.UUID,
    *,
    kind: str,
    resource_type: str,
    code: str | None,
    body: dict[str, object],
    effective_at: datetime,
) -> Entry:
    """Version 1 of a new entry of a patient visible to the author, audited as created
    (service.insert_new's effects, for an entry with no encounter, appointment or stamp). Refuses
    as access.require_can_read_patient does; the caller checked the author's role."""
    clinical = principal.facilities_with(*access.CLINICAL_ROLES)
    row = await conn.fetchrow(
        _INSERT_AUDITED,
        *access.patient_args(principal),
        patient_id,
        uuid.uuid4(),
        kind,
        code,
        body,
        effective_at,
        principal.primary_role,
        list(clinical),
        min(clinical) if clinical else None,
        principal.channel,
        resource_type,
        principal.request_id,
    )
    if row is None:
        raise NotFound("patient_not_found", "no such patient", field="patient_id")
    access.refuse_unless(row["write_allowed"])
    return to_entry(row)


async def head(conn: Connection, entry_id: uuid.UUID, *, for_update: bool = False) -> Entry | None:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM record_entries WHERE id = $1 AND status <> 'superseded'"
        + (" FOR UPDATE" if for_update else ""),
        entry_id,
    )
    return None if row is None else to_entry(row)


async def supersede(conn: Connection, entry_id: uuid.UUID, version: int) -> None:
    await conn.execute(
        "UPDATE record_entries SET status = 'superseded' WHERE id = $1 AND version = $2", entry_id, version
    )


async def versions(conn: Connection, entry_id: uuid.UUID) -> list[Entry]:
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM record_entries WHERE id = $1 ORDER BY version", entry_id)
    return [to_entry(r) for r in rows]
