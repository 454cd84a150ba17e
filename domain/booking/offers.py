"""What a patient can book and when, whatever the channel (USSD, SMS): the waiting referral
first, then the specialties the reference centres of the patient's health post offer, and the
next free slots for one of them. Read through the same access rule as the app (the patient is
read with `patients.get`, audited)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from domain import access
from domain.booking.availability import list_free_slots
from domain.booking.slots import Slot
from domain.principal import Principal
from infra.db import Connection

SEARCH_DAYS = 14
SPECIALTIES_SHOWN = 8


class Need(msgspec.Struct, frozen=True, kw_only=True):
    """Something to book: a specialty, at one centre (a referral names it) or at any of the
    centres the patient's health post refers to (`centre_id` None)."""

    specialty: str
    centre_id: uuid.UUID | None = None
    referral: bool = False


async def centres(conn: Connection, home: uuid.UUID) -> list[uuid.UUID | None]:
    """The reference centres a health post refers to (any, if it has no links yet: None)."""
    linked = await conn.fetch("SELECT to_facility_id FROM referral_links WHERE from_facility_id = $1", home)
    return [r["to_facility_id"] for r in linked] or [None]


async def needs(conn: Connection, principal: Principal, patient_id: uuid.UUID) -> list[Need]:
    """The waiting referral first, then the specialties the patient's reference centres offer."""
    home = await access.require_can_read_patient(conn, principal, patient_id)
    referrals = await conn.fetch(
        # Waiting: not yet turned into an appointment, by the centre (triage) or by the patient
        # (a consultation booked since, at that centre, in that specialty).
        """SELECT r.to_facility_id, r.specialty FROM referrals r
           WHERE r.patient_id = $1 AND r.status IN ('requested', 'accepted') AND r.appointment_id IS NULL
             AND NOT EXISTS (
                 SELECT 1 FROM appointments a JOIN practitioners pr ON pr.id = a.practitioner_id
                 WHERE a.patient_id = r.patient_id AND a.facility_id = r.to_facility_id
                   AND a.status = 'booked' AND a.start_at > now() AND r.specialty = ANY(pr.specialties))
           ORDER BY r.urgency_rank, r.created_at LIMIT 1""",
        patient_id,
    )
    linked = await centres(conn, home)
    specialties = await conn.fetch(
        """SELECT DISTINCT unnest(p.specialties) AS specialty FROM practitioners p
           JOIN availability_rules r ON r.practitioner_id = p.id
           JOIN facilities f ON f.id = r.facility_id AND f.kind = 'reference_centre'
           WHERE ($1::uuid[] IS NULL OR r.facility_id = ANY($1)) ORDER BY 1 LIMIT $2""",
        None if linked == [None] else linked,
        SPECIALTIES_SHOWN,
    )
    found = [Need(specialty=r["specialty"], centre_id=r["to_facility_id"], referral=True) for r in referrals]
    return found + [Need(specialty=r["specialty"]) for r in specialties]


# The days searched for free times, nearest first: the first window usually holds the few times a
# screen shows, and expanding two weeks of slots for every turn cost most of a turn's CPU.
WINDOWS = (1, 6, SEARCH_DAYS)


async def nearest_free(
    conn: Connection,
    where: list[uuid.UUID | None],
    *,
    limit: int,
    skip: datetime | None = None,
    **narrow: Any,
) -> list[Slot]:
    """The first `limit` free slots within SEARCH_DAYS at these centres, in order of start."""
    today = datetime.now(UTC).date()
    first = today
    found: list[Slot] = []
    for ahead in WINDOWS:
        last = today + timedelta(days=ahead)
        for facility_id in where:
            slots = await list_free_slots(conn, first_day=first, last_day=last, facility_id=facility_id, **narrow)
            found += [s for s in slots if s.start != skip]
        if len(found) >= limit:  # later windows only hold later times
            break
        first = last + timedelta(days=1)
    found.sort(key=lambda s: (s.start, s.practitioner_id.int))  # the order of their text, without making it
    return found[:limit]


async def free_slots(
    conn: Connection, principal: Principal, patient_id: uuid.UUID, need: Need, *, limit: int
) -> list[Slot]:
    """The next `limit` free slots for a need, earliest first, over the next SEARCH_DAYS days."""
    if need.centre_id is not None:
        where: list[uuid.UUID | None] = [need.centre_id]
    else:
        where = await centres(conn, await access.require_can_read_patient(conn, principal, patient_id))
    return await nearest_free(conn, where, limit=limit, specialty=need.specialty)
