"""Booking a consultation and moving it through its life: booked → checked in → (in progress →
completed), or cancelled / no-show. Reschedules keep their history in appointment_events.

Double booking is refused by the database's exclusion constraints, not by a prior read, so two
concurrent requests for one slot cannot both succeed whatever the interleaving; the violation
becomes a 409 through domain.conflicts. Writers that place an appointment on a time take the
schedule locks first (domain.booking.locks), so colliding writers queue instead of deadlocking.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

import msgspec

from domain import access
from domain.audit import trail
from domain.booking.availability import ACTIVE, find_slot, pick_slot, slot_rules_sql
from domain.booking.history import history_audit_outbox, record_args, record_change
from domain.booking.locks import lock_schedules, schedule_locks_sql
from domain.booking.model import (
    SELECT,
    Appointment,
    AppointmentEvent,
    Mode,
    Status,
    load_appointment,
    local_time,
    to_appointment,
)
from domain.errors import Conflict, Forbidden, InvalidInput, NotFound
from domain.principal import Principal
from infra.db import Connection, Statement

CHECK_IN_OPENS = timedelta(minutes=60)
_DONE = {"cancel": "cancelled", "check_in": "checked in", "no_show": "marked as a no-show", "complete": "completed"}


def _require_future(start: datetime, now: datetime) -> None:
    if start.tzinfo is None:
        raise InvalidInput(
            "timezone_required", "give the time with a UTC offset, e.g. 2026-12-01T02:00:00Z", field="start"
        )
    if start <= now:
        raise InvalidInput("start_in_past", "that time has already passed", field="start")


async def prepare_booking(
    conn: Connection,
    principal: Principal,
    *,
    patient_id: uuid.UUID,
    practitioner_id: uuid.UUID,
    start: datetime,
    mode: Mode = "video",
    reason: str | None = None,
) -> tuple[Appointment, Statement]:
    """The booking as it will be, and the one statement that makes it so, after one read (may
    the caller book for this patient; does the practitioner exist, and their rules at `start`).
    Nothing is written here: the caller runs the statement (schedule locks, then appointment,
    history, audit, outbox), at once (`book`) or as its request's last statement, with the answer
    (api.transaction). This is the hottest write path: two round trips in all."""
    _require_future(start, datetime.now(UTC))
    columns, joins = slot_rules_sql("$6", "$7")
    # The wider visibility rule only matters when a practitioner books with themself (a
    # follow-up); everyone else needs the patient side alone, a much cheaper query to plan and run.
    follow_up = principal.practitioner_id == practitioner_id
    visible = access.PATIENT_VISIBLE if follow_up else "($4::uuid IS NULL AND false)"
    # now(): the database's clock stamps the row, as a column default would (the answer is
    # rendered before the write, so the write cannot tell it).
    rows = await conn.fetch(
        f"""SELECT {visible} AS visible, {access.PATIENT_SIDE} AS patient_side, now() AS now,
                   EXISTS (SELECT 1 FROM practitioners WHERE id = $6) AS practitioner_exists, {columns}
            FROM patients p LEFT JOIN ({joins}) ON true WHERE p.id = $5""",
        *access.patient_args(principal),
        patient_id,
        practitioner_id,
        start,
    )
    if not rows:
        raise NotFound("patient_not_found", "no such patient", field="patient_id")
    # A specialist who can see the patient may book a follow-up, but only with themself.
    if not (rows[0]["patient_side"] or (rows[0]["visible"] and follow_up)):
        raise Forbidden("patient_access_denied", "you may not book for this patient")
    if not rows[0]["practitioner_exists"]:
        raise NotFound("practitioner_not_found", "no such practitioner", field="practitioner_id")
    rule, slot = pick_slot(rows, start)
    if mode not in slot.modes:
        raise InvalidInput("mode_not_offered", f"this slot offers {', '.join(slot.modes)}", field="mode")
    now: datetime = rows[0]["now"]
    appointment = Appointment(
        id=uuid.uuid4(),
        patient_id=patient_id,
        practitioner_id=practitioner_id,
        facility_id=rule.facility_id,
        start=slot.start,
        end=slot.end,
        start_local=local_time(slot.start, rule.timezone),
        timezone=rule.timezone,
        status="booked",
        mode=mode,
        reason=reason,
        booked_by=principal.user_id,
        channel=principal.channel,
        cancel_reason=None,
        created_at=now,
        updated_at=now,
        version=1,
    )
    # Double booking is refused here by the exclusion constraints (a 409 through
    # domain.constraints); the locks make colliding writers queue instead of deadlocking.
    write = Statement(
        f"""change AS (
                INSERT INTO appointments (id, patient_id, practitioner_id, facility_id, start_at, end_at, status,
                                          mode, reason, booked_by, channel, created_at, updated_at)
                SELECT $1, $11, $15, $10, $6, $7, $5, $16, $17, $2, $12, $18, $18
                FROM gate, {schedule_locks_sql("$15", "$11")}
            ), {history_audit_outbox("gate")}""",
        (*record_args(principal, appointment, "book", None, None), practitioner_id, mode, reason, now),
    )
    return appointment, write


async def book(
    conn: Connection,
    principal: Principal,
    *,
    patient_id: uuid.UUID,
    practitioner_id: uuid.UUID,
    start: datetime,
    mode: Mode = "video",
    reason: str | None = None,
) -> Appointment:
    """Book now, in the caller's transaction (see prepare_booking)."""
    appointment, write = await prepare_booking(
        conn, principal, patient_id=patient_id, practitioner_id=practitioner_id, start=start, mode=mode, reason=reason
    )
    # A conflict aborts the transaction, which is fine: the request fails as a whole.
    await write.run(conn)
    return appointment


async def _load_visible(
    conn: Connection, principal: Principal, appointment_id: uuid.UUID, *, for_update: bool = False
) -> Appointment:
    row = await conn.fetchrow(
        f"""{SELECT.replace("SELECT a.*", f"SELECT {access.APPOINTMENT_VISIBLE} AS visible, a.*")}
            WHERE a.id = $6{" FOR UPDATE OF a" if for_update else ""}""",
        *access.appointment_args(principal),
        appointment_id,
    )
    if row is None:
        raise NotFound("appointment_not_found", "no such appointment")
    if not row["visible"]:
        raise Forbidden("appointment_access_denied", "you may not access this appointment")
    return to_appointment(row)


async def get(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> Appointment:
    appointment = await _load_visible(conn, principal, appointment_id)
    await trail.record(
        conn,
        principal,
        action="read",
        resource_type="Appointment",
        resource_id=appointment.id,
        patient_ids=[appointment.patient_id],
        facility_id=appointment.facility_id,
    )
    return appointment


async def history(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> list[AppointmentEvent]:
    appointment = await get(conn, principal, appointment_id)
    rows = await conn.fetch("SELECT * FROM appointment_events WHERE appointment_id = $1 ORDER BY id", appointment.id)
    return [
        AppointmentEvent(
            at=r["at"],
            action=r["action"],
            from_status=r["from_status"],
            to_status=r["to_status"],
            start=r["start_at"],
            end=r["end_at"],
            actor_user_id=r["actor_user_id"],
            reason=r["reason"],
        )
        for r in rows
    ]


class AppointmentQuery(msgspec.Struct, kw_only=True):
    patient_id: uuid.UUID | None = None
    practitioner_id: uuid.UUID | None = None
    facility_id: uuid.UUID | None = None
    status: Status | None = None
    start_from: datetime | None = None
    start_to: datetime | None = None
    after: tuple[datetime, uuid.UUID] | None = None  # keyset cursor: (start, id) of the last row seen
    limit: int = 50


async def search(conn: Connection, principal: Principal, query: AppointmentQuery) -> list[Appointment]:
    """Appointments the caller may see, ordered by start; filters narrow, never widen, that set."""
    rows = await conn.fetch(
        f"""{SELECT} WHERE {access.APPOINTMENT_VISIBLE}
              AND ($6::uuid IS NULL OR a.patient_id = $6)
              AND ($7::uuid IS NULL OR a.practitioner_id = $7)
              AND ($8::uuid IS NULL OR a.facility_id = $8)
              AND ($9::text IS NULL OR a.status = $9)
              AND ($10::timestamptz IS NULL OR a.start_at >= $10)
              AND ($11::timestamptz IS NULL OR a.start_at < $11)
              AND ($12::timestamptz IS NULL OR (a.start_at, a.id) > ($12, $13::uuid))
            ORDER BY a.start_at, a.id LIMIT $14""",
        *access.appointment_args(principal),
        query.patient_id,
        query.practitioner_id,
        query.facility_id,
        query.status,
        query.start_from,
        query.start_to,
        query.after[0] if query.after else None,
        query.after[1] if query.after else None,
        query.limit,
    )
    appointments = [to_appointment(r) for r in rows]
    if appointments:
        await trail.record(
            conn,
            principal,
            action="search",
            resource_type="Appointment",
            resource_id=None,
            patient_ids=[a.patient_id for a in appointments],
        )
    return appointments


async def reschedule(
    conn: Connection, principal: Principal, appointment_id: uuid.UUID, *, start: datetime, reason: str | None = None
) -> Appointment:
    _require_future(start, datetime.now(UTC))
    current = await _load_visible(conn, principal, appointment_id, for_update=True)
    if current.status != "booked":
        raise Conflict("invalid_status", f"a {current.status} appointment cannot be rescheduled")
    if start == current.start:
        raise InvalidInput("same_time", "the appointment is already at that time", field="start")
    await lock_schedules(conn, current.practitioner_id, current.patient_id)
    _rule, slot = await find_slot(conn, current.practitioner_id, start)
    await conn.execute(
        """UPDATE appointments SET start_at = $2, end_at = $3, updated_at = now(), version = version + 1
           WHERE id = $1""",
        appointment_id,
        slot.start,
        slot.end,
    )
    updated = await load_appointment(conn, appointment_id)
    await record_change(conn, principal, updated, "reschedule", current.status, reason)
    return updated


async def _transition(
    conn: Connection,
    principal: Principal,
    appointment_id: uuid.UUID,
    *,
    action: Literal["cancel", "check_in", "no_show", "complete"],
    allowed_from: tuple[Status, ...],
    to: Status,
    reason: str | None = None,
) -> Appointment:
    current = await _load_visible(conn, principal, appointment_id, for_update=True)
    if current.status not in allowed_from:
        raise Conflict("invalid_status", f"a {current.status} appointment cannot be {_DONE[action]}")
    now = datetime.now(UTC)
    if action == "check_in" and not (current.start - CHECK_IN_OPENS <= now < current.end):
        raise Conflict("check_in_closed", "check-in opens 60 minutes before the start and closes at its end")
    if action == "complete" and principal.practitioner_id != current.practitioner_id:
        raise Forbidden("not_your_consultation", "only the consulting practitioner completes a consultation")
    if action == "no_show":
        if not principal.is_staff and not principal.is_system_admin:
            raise Forbidden("role_required", "only staff may mark a no-show")
        if now < current.start:
            raise Conflict("not_started", "a no-show can only be marked after the start time")
    if to in ACTIVE:  # the row stays under the exclusion constraints: queue like a booking does
        await lock_schedules(conn, current.practitioner_id, current.patient_id)
    await conn.execute(
        """UPDATE appointments SET status = $2, cancel_reason = coalesce($3, cancel_reason), updated_at = now(),
                                   version = version + 1 WHERE id = $1""",
        appointment_id,
        to,
        reason if action == "cancel" else None,
    )
    updated = await load_appointment(conn, appointment_id)
    await record_change(conn, principal, updated, action, current.status, reason)
    return updated


async def cancel(
    conn: Connection, principal: Principal, appointment_id: uuid.UUID, *, reason: str | None = None
) -> Appointment:
    return await _transition(
        conn,
        principal,
        appointment_id,
        action="cancel",
        allowed_from=("booked", "checked_in"),
        to="cancelled",
        reason=reason,
    )


async def check_in(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> Appointment:
    return await _transition(
        conn, principal, appointment_id, action="check_in", allowed_from=("booked",), to="checked_in"
    )


async def mark_no_show(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> Appointment:
    return await _transition(conn, principal, appointment_id, action="no_show", allowed_from=("booked",), to="no_show")


async def complete(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> Appointment:
    """The consulting practitioner closes the consultation (domain.record.consultation writes its
    results in the same transaction)."""
    return await _transition(
        conn, principal, appointment_id, action="complete", allowed_from=("checked_in", "in_progress"), to="completed"
    )


__all__ = [
    "Appointment",
    "AppointmentEvent",
    "AppointmentQuery",
    "Mode",
    "Status",
    "book",
    "cancel",
    "check_in",
    "complete",
    "get",
    "history",
    "load_appointment",
    "mark_no_show",
    "prepare_booking",
    "record_change",
    "reschedule",
    "search",
]
