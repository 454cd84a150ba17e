"""A video consultation's rules: who may join its room, and how joining, starting and ending the
call move the appointment (checked in → in progress → completed, with the call's duration).

Channel-agnostic: the WebSocket signalling calls these; they know nothing of sockets.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Literal

from domain.booking.history import record_change
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
    if appointment.status not in _OPEN:
        raise Conflict("consultation_closed", f"the appointment is {appointment.status}")
    now = datetime.now(UTC)
    if not appointment.start - JOIN_OPENS <= now <= appointment.end + JOIN_CLOSES:
        raise Conflict("outside_consultation_window", "the room opens 60 minutes before the start")
    return appointment, side


async def arrive(conn: Connection, principal: Principal, appointment: Appointment) -> Appointment:
    """The patient side entered the waiting room: a booked appointment is now checked in."""
    if appointment.status != "booked":
        return appointment
    await conn.execute(
        "UPDATE appointments SET status = 'checked_in', updated_at = now(), version = version + 1 WHERE id = $1 "
        "AND status = 'booked'",
        appointment.id,
    )
    updated = await load_appointment(conn, appointment.id)
    await record_change(conn, principal, updated, "check_in", appointment.status, "joined the waiting room")
    return updated


async def start_call(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> Appointment:
    """The specialist admitted the patient side: the consultation is in progress (once)."""
    current = await load_appointment(conn, appointment_id, for_update=True)
    if current.status == "in_progress":
        return current
    if current.status not in ("booked", "checked_in"):
        raise Conflict("consultation_closed", f"the appointment is {current.status}")
    await conn.execute(
        """UPDATE appointments SET status = 'in_progress', call_started_at = coalesce(call_started_at, now()),
                                   updated_at = now(), version = version + 1 WHERE id = $1""",
        appointment_id,
    )
    updated = await load_appointment(conn, appointment_id)
    await record_change(conn, principal, updated, "start_call", current.status, None)
    return updated


async def end_call(conn: Connection, principal: Principal, appointment_id: uuid.UUID) -> int | None:
    """The call is over: the appointment is completed and the call's duration recorded.

    Returns the duration in seconds, or None if the call never started (nobody was admitted).
    """
    current = await load_appointment(conn, appointment_id, for_update=True)
    if current.status != "in_progress":
        return None
    seconds: int = await conn.fetchval(
        """UPDATE appointments
              SET status = 'completed', call_ended_at = now(),
                  call_seconds = greatest(0, extract(epoch FROM now() - call_started_at))::int,
                  updated_at = now(), version = version + 1
            WHERE id = $1 RETURNING call_seconds""",
        appointment_id,
    )
    updated = await load_appointment(conn, appointment_id)
    await record_change(conn, principal, updated, "end_call", current.status, f"call lasted {seconds} s")
    return seconds
