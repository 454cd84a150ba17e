"""A video consultation's rules: who may join its room, and how joining, starting and ending the
call move the appointment (checked in → in progress, with the calls' duration; the practitioner
then completes it with its results).

Channel-agnostic: the WebSocket signalling calls these; they know nothing of sockets.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from domain.booking.history import record_change
from domain.booking.locks import lock_schedules
from domain.booking.model import Appointment, load_appointment
from domain.errors import Conflict, Forbidden, NotFound
from domain.principal import Principal
from infra.db import Connection

Side = Literal["patient", "chw", "specialist"]
JOIN_OPENS = timedelta(minutes=60)
JOIN_CLOSES = timedelta(minutes=60)
_OPEN = ("booked", "checked_in", "in_progress")


async def participant(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> tuple[Appointment, Side]:
    """Which side of the call the caller is on, or why they may not join."""
    appointment, side = await member(conn, principal, appointment_id)
    require_room_open(appointment)
    return appointment, side


async def member(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> tuple[Appointment, Side]:
    """Which side of the consultation the caller is on, whether or not its room is open now (what
    was shared in the call stays theirs to read afterwards), or why they are not on any."""
    try:
        appointment = await load_appointment(conn, appointment_id)
    except NotFound:
        raise NotFound("appointment_not_found", "no such appointment") from None
    side: Side | None = None
    if principal.practitioner_id is not None and principal.practitioner_id == appointment.practitioner_id:
        side = "specialist"
    elif await conn.fetchval(
        "SELECT 1 FROM patient_accounts WHERE user_id = $1 AND patient_id = $2",
        principal.user_id,
        appointment.patient_id,
    ):
        side = "patient"
    elif principal.user_id == appointment.booked_by and principal.is_staff:
        side = "chw"  # the health worker who booked it sits beside the patient
    if side is None:
        raise Forbidden("not_a_participant", "only the patient, the booking health worker and the specialist may join")
    return appointment, side


def require_room_open(appointment: Appointment) -> None:
    """The room is open while the consultation is, from JOIN_OPENS before its start to
    JOIN_CLOSES after its end (for its guests too, domain.invitations)."""
    if appointment.status not in _OPEN:
        raise Conflict("consultation_closed", f"the appointment is {appointment.status}")
    now = datetime.now(UTC)
    if not appointment.start - JOIN_OPENS <= now <= appointment.end + JOIN_CLOSES:
        raise Conflict("outside_consultation_window", "the room opens 60 minutes before the start")


async def display_name(conn: Connection, appointment: Appointment, principal: Principal, side: Side) -> str:
    """How the room names a participant to the others: the patient by their usual name (a health
    worker beside them as "<patient> (with <worker>)"), the specialist by their name."""
    row = await conn.fetchrow(
        """SELECT coalesce((SELECT n->>'text' FROM jsonb_array_elements(p.names) n WHERE n->>'use' = 'usual' LIMIT 1),
                           p.names->0->>'text') AS patient,
                  coalesce(pr.name, u.display_name) AS caller
           FROM patients p, users u LEFT JOIN practitioners pr ON pr.user_id = u.id
           WHERE p.id = $1 AND u.id = $2""",
        appointment.patient_id,
        principal.user_id,
    )
    patient = (row["patient"] if row else None) or "the patient"
    caller = (row["caller"] if row else None) or "a health worker"
    if side == "patient":
        return str(patient)
    if side == "chw":
        return f"{patient} (with {caller})"
    return str(caller)


async def arrive(conn: Connection, principal: Principal, appointment: Appointment) -> Appointment:
    """The patient side entered the waiting room: a booked appointment is now checked in."""
    if appointment.status != "booked":
        return appointment
    # Still under the exclusion constraints after the change: queue like a booking (domain.booking.locks).
    await lock_schedules(conn, appointment.practitioner_id, appointment.patient_id)
    arrived = await conn.fetchval(
        "UPDATE appointments SET status = 'checked_in', updated_at = now(), version = version + 1 WHERE id = $1 "
        "AND status = 'booked' RETURNING 1",
        appointment.id,
    )
    updated = await load_appointment(conn, appointment.id)
    if arrived is None:  # cancelled, checked in or admitted meanwhile: nothing happened here
        return updated
    await record_change(conn, principal, updated, "check_in", appointment.status, "joined the waiting room")
    return updated


async def start_call(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> Appointment:
    """The specialist admitted the patient side: the consultation is in progress and a call runs.

    A call that ended may start again (the link dropped for good, they call back); a running
    call is left alone."""
    current = await load_appointment(conn, appointment_id, for_update=True)
    if current.status not in ("booked", "checked_in", "in_progress"):
        raise Conflict("consultation_closed", f"the appointment is {current.status}")
    await lock_schedules(conn, current.practitioner_id, current.patient_id)
    started = await conn.fetchval(
        """UPDATE appointments
              SET status = 'in_progress', call_started_at = now(), call_ended_at = NULL,
                  updated_at = now(), version = version + 1
            WHERE id = $1 AND (status <> 'in_progress' OR call_started_at IS NULL OR call_ended_at IS NOT NULL)
        RETURNING 1""",
        appointment_id,
    )
    if started is None:
        return current
    updated = await load_appointment(conn, appointment_id)
    await record_change(conn, principal, updated, "start_call", current.status, None)
    return updated


async def end_call(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> int | None:
    """The call is over: its end and total duration are recorded. The appointment stays in
    progress until the practitioner completes it with its results (domain.record.consultation).

    Returns the calls' total duration in seconds, or None if no call was running.
    """
    current = await load_appointment(conn, appointment_id, for_update=True)
    seconds: int | None = await conn.fetchval(
        """UPDATE appointments
              SET call_ended_at = now(),
                  call_seconds = coalesce(call_seconds, 0)
                                 + greatest(0, extract(epoch FROM now() - call_started_at))::int,
                  updated_at = now(), version = version + 1
            WHERE id = $1 AND status = 'in_progress' AND call_started_at IS NOT NULL AND call_ended_at IS NULL
        RETURNING call_seconds""",
        appointment_id,
    )
    if seconds is None:
        return None
    updated = await load_appointment(conn, appointment_id)
    await record_change(conn, principal, updated, "end_call", current.status, f"calls lasted {seconds} s in all")
    return seconds
