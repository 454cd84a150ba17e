"""An appointment as stored and as shown (UTC instants plus the facility's local time)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from domain.errors import NotFound
from infra.db import Connection

Status = Literal["booked", "checked_in", "in_progress", "completed", "cancelled", "no_show"]
Mode = Literal["video", "audio", "async"]


class Appointment(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    patient_id: uuid.UUID
    practitioner_id: uuid.UUID
    facility_id: uuid.UUID
    start: datetime
    end: datetime
    start_local: str
    timezone: str
    status: Status
    mode: Mode
    reason: str | None
    booked_by: uuid.UUID
    channel: str
    cancel_reason: str | None
    created_at: datetime
    updated_at: datetime
    version: int


class AppointmentEvent(msgspec.Struct, kw_only=True):
    at: datetime
    action: str
    from_status: str | None
    to_status: str
    start: datetime
    end: datetime
    actor_user_id: uuid.UUID | None
    reason: str | None


SELECT = """SELECT a.*, f.timezone, p.home_facility_id FROM appointments a
             JOIN facilities f ON f.id = a.facility_id JOIN patients p ON p.id = a.patient_id"""


def local_time(instant: datetime, timezone: str) -> str:
    return instant.astimezone(ZoneInfo(timezone)).isoformat()


def to_appointment(row: asyncpg.Record) -> Appointment:
    start: datetime = row["start_at"]
    return Appointment(
        id=row["id"],
        patient_id=row["patient_id"],
        practitioner_id=row["practitioner_id"],
        facility_id=row["facility_id"],
        start=start,
        end=row["end_at"],
        start_local=local_time(start, row["timezone"]),
        timezone=row["timezone"],
        status=row["status"],
        mode=row["mode"],
        reason=row["reason"],
        booked_by=row["booked_by"],
        channel=row["channel"],
        cancel_reason=row["cancel_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        version=row["version"],
    )


async def load_appointment(conn: Connection, appointment_id: uuid.UUID, *, for_update: bool = False) -> Appointment:
    row = await conn.fetchrow(f"{SELECT} WHERE a.id = $1{' FOR UPDATE OF a' if for_update else ''}", appointment_id)
    if row is None:
        raise NotFound("appointment_not_found", "no such appointment")
    return to_appointment(row)
