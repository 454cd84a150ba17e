"""MOVE n: offer the practitioner's next free time, and YES moves the appointment there through
the app's reschedule (a time taken meanwhile is said so, never double-booked)."""

from __future__ import annotations

from domain.booking import appointments, offers
from domain.booking.model import Appointment
from sms.conversation import AskMove, Reply, attempt, wall_clock
from sms.journeys.turn import Turn


async def offer(turn: Turn, appointment: Appointment) -> Reply:
    later = await offers.nearest_free(
        turn.conn,
        [appointment.facility_id],
        limit=1,
        skip=appointment.start,
        practitioner_id=appointment.practitioner_id,
        mode=appointment.mode,
    )
    if not later:
        return Reply("sms_move_none")
    slot = later[0]
    return Reply(
        "sms_move_offer",
        {"when": wall_clock(appointment.start, appointment.timezone), "new": wall_clock(slot.start, slot.timezone)},
        AskMove(appointment.id, slot.start, slot.timezone),
    )


async def answer(turn: Turn, question: AskMove, *, yes: bool) -> Reply:
    if not yes:
        return Reply("sms_move_kept")
    principal, _ = turn.acting
    refused = await attempt(
        appointments.reschedule(
            turn.conn, principal, question.appointment_id, start=question.start, reason="moved by SMS"
        ),
        turn.conn,
    )
    if refused is not None:
        return Reply("sms_move_taken")
    return Reply("sms_moved", {"new": wall_clock(question.start, question.timezone)})
