"""A patient's view of the audit trail: who touched their data, when, from where and why."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

import msgspec

from domain.principal import Principal
from infra.db import Connection


class AccessLogEntry(msgspec.Struct, kw_only=True):
    id: int
    at: datetime
    patient_id: uuid.UUID
    actor_name: str | None
    actor_role: str | None
    facility_id: uuid.UUID | None
    facility_name: str | None
    action: str
    resource_type: str
    purpose: str | None
    break_glass: bool
    channel: str
    outcome: Literal["success", "refused"]  # success, or refused: an attempt that was turned away (nothing was read)


async def for_patient_login(
    conn: Connection, principal: Principal, *, before_id: int | None, limit: int
) -> list[AccessLogEntry]:
    """Events on the patients linked to this login, by anyone but the login itself, newest first.

    Refused attempts are listed too, with outcome 'refused', so a patient sees who tried and failed.

    Reading the log is not itself logged (it would only add the patient's own reads)."""
    rows = await conn.fetch(
        """SELECT e.id, e.at, e.patient_id, coalesce(pr.name, u.display_name) AS actor_name, e.actor_role,
                  e.facility_id, f.name AS facility_name, e.action, e.resource_type, e.purpose, e.channel,
                  e.outcome
           FROM patient_accounts pa
           JOIN audit_events e ON e.patient_id = pa.patient_id
           LEFT JOIN users u ON u.id = e.actor_user_id
           LEFT JOIN practitioners pr ON pr.user_id = e.actor_user_id
           LEFT JOIN facilities f ON f.id = e.facility_id
           WHERE pa.user_id = $1 AND e.actor_user_id IS DISTINCT FROM $1
             AND ($2::bigint IS NULL OR e.id < $2)
           ORDER BY e.id DESC LIMIT $3""",
        principal.user_id,
        before_id,
        limit,
    )
    return [AccessLogEntry(**dict(r.items()), break_glass=r["purpose"] == "break_glass") for r in rows]
