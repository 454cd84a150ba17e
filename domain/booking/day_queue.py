"""A practitioner's day: their consultations of one facility-local day, each with where it stands
(waiting in the waiting room and for how long, late, next, later, done), the patient's name and
the referral that led to it, so the specialist's workspace needs one request to draw its queue.

Only the caller's own consultations are listed (a practitioner's queue is theirs); the day is
each facility's own calendar day, so a practitioner working in two zones sees each in its zone.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Literal

import msgspec

from domain.audit import trail
from domain.booking.model import SELECT, Appointment, to_appointment
from domain.errors import Forbidden
from domain.principal import Principal
from infra.db import Connection

Standing = Literal["waiting", "in_progress", "late", "next", "later", "done"]


class RoomPresence(msgspec.Struct, kw_only=True):
    """The patient's side in the consultation's video room: waiting to be admitted, or in the call."""

    state: Literal["waiting", "admitted"]
    since: datetime | None


# Where the patients are in the video rooms of these consultations (realtime knows; the domain does not).
Presence = Callable[[list[uuid.UUID]], Awaitable[dict[uuid.UUID, RoomPresence]]]


class QueueReferral(msgspec.Struct, kw_only=True):
    id: uuid.UUID
    from_facility_id: uuid.UUID
    specialty: str
    urgency: str
    reason: str
    observation_ids: list[uuid.UUID]


class QueueItem(msgspec.Struct, kw_only=True):
    appointment: Appointment
    patient_name: str | None
    standing: Standing
    checked_in_at: datetime | None  # when the patient was checked in (arrived at the post)
    in_room: RoomPresence | None  # the patient's side in the video room now, if there
    waiting_s: int | None  # seconds waiting so far: in the video room's waiting room, else since check-in
    late_s: int | None  # seconds past the start, while not yet arrived
    referral: QueueReferral | None


class DayQueue(msgspec.Struct, kw_only=True):
    now: datetime
    items: list[QueueItem]


_DONE = ("completed", "cancelled", "no_show")


async def day_queue(
    conn: Connection, principal: Principal, day: date | None, presence: Presence | None = None
) -> DayQueue:
    if principal.practitioner_id is None:
        raise Forbidden("not_a_practitioner", "only a practitioner has a consultation queue")
    rows = await conn.fetch(
        f"""SELECT q.*, now() AS now,
                   p.names->0->>'text' AS patient_name,
                   (SELECT max(e.at) FROM appointment_events e
                     WHERE e.appointment_id = q.id AND e.action = 'check_in') AS checked_in_at,
                   r.id AS referral_id, r.from_facility_id AS referral_from, r.specialty AS referral_specialty,
                   r.urgency AS referral_urgency, r.reason AS referral_reason,
                   r.observation_ids AS referral_observations
            FROM ({SELECT} WHERE a.practitioner_id = $1
                    AND (a.start_at AT TIME ZONE f.timezone)::date
                        = coalesce($2::date, (now() AT TIME ZONE f.timezone)::date)) q
            JOIN patients p ON p.id = q.patient_id
            LEFT JOIN LATERAL (SELECT * FROM referrals WHERE patient_id = q.patient_id AND appointment_id = q.id
                               ORDER BY created_at DESC LIMIT 1) r ON true
            ORDER BY q.start_at, q.id""",
        principal.practitioner_id,
        day,
    )
    items: list[QueueItem] = []
    next_given = False
    now: datetime = rows[0]["now"] if rows else datetime.now(UTC)
    open_ids = [r["id"] for r in rows if r["status"] not in _DONE]
    rooms = await presence(open_ids) if presence is not None and open_ids else {}
    for row in rows:
        appointment = to_appointment(row)
        checked_in_at: datetime | None = row["checked_in_at"]
        in_room = rooms.get(appointment.id)
        waiting_s = late_s = None
        standing: Standing
        if appointment.status in _DONE:
            standing, in_room = "done", None
        elif appointment.status == "in_progress" or (in_room is not None and in_room.state == "admitted"):
            standing = "in_progress"
        elif appointment.status == "checked_in" or in_room is not None:
            standing = "waiting"
            since = in_room.since if in_room is not None and in_room.since else checked_in_at or appointment.updated_at
            waiting_s = max(0, int((now - since).total_seconds()))
        elif appointment.start <= now:
            standing = "late"
            late_s = int((now - appointment.start).total_seconds())
        elif not next_given:
            standing, next_given = "next", True
        else:
            standing = "later"
        referral = None
        if row["referral_id"] is not None:
            referral = QueueReferral(
                id=row["referral_id"],
                from_facility_id=row["referral_from"],
                specialty=row["referral_specialty"],
                urgency=row["referral_urgency"],
                reason=row["referral_reason"],
                observation_ids=list(row["referral_observations"] or []),
            )
        items.append(
            QueueItem(
                appointment=appointment,
                patient_name=row["patient_name"],
                standing=standing,
                checked_in_at=checked_in_at,
                in_room=in_room,
                waiting_s=waiting_s,
                late_s=late_s,
                referral=referral,
            )
        )
    if items:
        await trail.record(
            conn,
            principal,
            action="search",
            resource_type="Appointment",
            resource_id=None,
            patient_ids=[i.appointment.patient_id for i in items],
        )
    return DayQueue(now=now, items=items)
