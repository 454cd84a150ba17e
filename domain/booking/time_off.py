"""Time off: a practitioner's leave, or a closure of a whole facility (a public holiday).

Slots overlapping time off are not offered and cannot be booked (see availability)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import msgspec

from domain import access
from domain.booking.locks import lock_practitioner
from domain.errors import InvalidInput, NotFound
from domain.principal import Principal
from infra import instants
from infra.db import Connection


class TimeOff(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    reason: str | None
    practitioner_id: uuid.UUID | None = None
    facility_id: uuid.UUID | None = None


async def add_exception(
    conn: Connection,
    principal: Principal,
    *,
    practitioner_id: uuid.UUID | None,
    facility_id: uuid.UUID | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str | None,
) -> TimeOff:
    for name, value in (("starts_at", starts_at), ("ends_at", ends_at)):
        if value.tzinfo is None:
            raise InvalidInput(
                "timezone_required", "give times with a UTC offset, e.g. 2026-12-01T00:00:00Z", field=name
            )
    if ends_at <= starts_at:
        raise InvalidInput("invalid_time_range", "ends_at must be after starts_at", field="ends_at")
    if ends_at - starts_at > timedelta(days=366):
        raise InvalidInput("time_range_too_long", "at most a year at once", field="ends_at")
    if practitioner_id is not None:
        await access.require_can_manage_schedule(conn, principal, practitioner_id, None)
        await lock_practitioner(conn, practitioner_id)  # a booking in flight commits first, then this
    elif facility_id is not None:
        access.require_facility_admin(principal, facility_id)
    exc_id = uuid.uuid4()
    await conn.execute(
        """INSERT INTO availability_exceptions (id, practitioner_id, facility_id, starts_at, ends_at, reason,
                                                created_by) VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        exc_id,
        practitioner_id,
        facility_id,
        starts_at,
        ends_at,
        reason,
        principal.user_id,
    )
    return TimeOff(
        id=exc_id,
        starts_at=instants.utc(starts_at),
        ends_at=instants.utc(ends_at),
        reason=reason,
        practitioner_id=practitioner_id,
        facility_id=facility_id,
    )


async def remove_exception(
    conn: Connection,
    principal: Principal,
    exception_id: uuid.UUID,
    *,
    practitioner_id: uuid.UUID | None = None,
    facility_id: uuid.UUID | None = None,
) -> None:
    """Withdraw leave or a closure entered by mistake (schedule data, not part of the record)."""
    row = await conn.fetchrow(
        "SELECT practitioner_id, facility_id FROM availability_exceptions WHERE id = $1", exception_id
    )
    if row is None or (row["practitioner_id"], row["facility_id"]) != (practitioner_id, facility_id):
        raise NotFound("exception_not_found", "no such leave or closure here")
    if practitioner_id is not None:
        await access.require_can_manage_schedule(conn, principal, practitioner_id, None)
    elif facility_id is not None:
        access.require_facility_admin(principal, facility_id)
    await conn.execute("DELETE FROM availability_exceptions WHERE id = $1", exception_id)


async def list_exceptions(
    conn: Connection, *, practitioner_id: uuid.UUID | None = None, facility_id: uuid.UUID | None = None
) -> list[TimeOff]:
    if practitioner_id is None and facility_id is None:
        raise NotFound("not_found", "name a practitioner or a facility")
    rows = await conn.fetch(
        """SELECT id, practitioner_id, facility_id, starts_at, ends_at, reason FROM availability_exceptions
           WHERE ($1::uuid IS NOT NULL AND practitioner_id = $1) OR ($2::uuid IS NOT NULL AND facility_id = $2)
           ORDER BY starts_at""",
        practitioner_id,
        facility_id,
    )
    return [
        TimeOff(
            id=r["id"],
            starts_at=r["starts_at"],
            ends_at=r["ends_at"],
            reason=r["reason"],
            practitioner_id=r["practitioner_id"],
            facility_id=r["facility_id"],
        )
        for r in rows
    ]
