"""A facility admin's export of the audit trail: every event at their facility or on a patient
whose home facility it is, in id order, with its chain fields so an auditor can re-check them."""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from domain import access
from domain.audit import trail
from domain.principal import Principal
from infra.db import Connection


class AuditEvent(msgspec.Struct, kw_only=True):
    id: int
    at: datetime
    actor_user_id: uuid.UUID | None
    actor_role: str | None
    facility_id: uuid.UUID | None
    patient_id: uuid.UUID | None
    action: str
    resource_type: str
    resource_id: str | None
    purpose: str | None
    channel: str
    outcome: str
    request_id: str | None
    seal_seq: int | None
    prev_id: int | None
    hash: str | None  # hex sha256; None until sealed


async def export(
    conn: Connection,
    principal: Principal,
    facility_id: uuid.UUID,
    *,
    after_id: int | None,
    since: datetime | None,
    until: datetime | None,
    limit: int,
) -> list[AuditEvent]:
    access.require_facility_admin(principal, facility_id)
    rows = await conn.fetch(
        """SELECT e.* FROM audit_events e
           WHERE (e.facility_id = $1 OR e.patient_id IN (SELECT id FROM patients WHERE home_facility_id = $1))
             AND ($2::bigint IS NULL OR e.id > $2) AND ($3::timestamptz IS NULL OR e.at >= $3)
             AND ($4::timestamptz IS NULL OR e.at < $4)
           ORDER BY e.id LIMIT $5""",
        facility_id,
        after_id,
        since,
        until,
        limit,
    )
    events = [
        AuditEvent(**{f: r[f] for f in AuditEvent.__struct_fields__ if f != "hash"}, hash=r["hash"] and r["hash"].hex())
        for r in rows
    ]
    # The export is itself an access to patient data, and is audited as one.
    await trail.record(
        conn,
        principal,
        action="export",
        resource_type="AuditEvent",
        resource_id=None,
        patient_ids=[e.patient_id for e in events if e.patient_id is not None],
        facility_id=facility_id,
    )
    return events
