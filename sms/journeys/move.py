"""MOVE n: offer the practitioner's next free time, and YES moves the appointment there through
the app's reschedule (a time taken meanwhile is said so, never double-booked)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from domain.booking import appointments
from domain.booking.availability import list_free_slots
from domain.booking.model import Appointment
from sms.conversation import AskMove, Reply, attempt, wall_clock
from sms.journeys.turn import Turn

_SEARCH_DAYS = 14


async def offer(turn: Turn, appointment: Appointment) -> Reply:
    today = datetime.now(UTC).date()
    slots = await list_free_slots(
        turn.conn,
        first_day=today,
        last_day=today + timedelta(days=_SEARCH_DAYS),
        practitioner_id=appointment.practitioner_id,
        facility_id=appointment.facility_id,
        mode=appointment.mode,
    )
    later = [s for s in slots if s.start != appointment.start]
    if not later:
        return Reply("sms_move_none")
    slot = min(later, key=lambda s: s.start)
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
