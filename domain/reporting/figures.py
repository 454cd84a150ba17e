"""Telehealth figures of one period per facility, for the national HMIS (DHIS2).

What is counted (README "Reporting to DHIS2" says the same for operators):
- consultations: appointments held (status `completed`) that started in the period, at the
  facility where they were held, by mode (video, audio, async) and by specialty; the specialty is
  the referral's when the consultation answers a referral, else the practitioner's first listed
  specialty, else `general`. Cancelled, still booked and in-progress appointments are not counted.
- no-shows: appointments marked `no_show` that were due to start in the period.
- referrals, at the referring facility: sent (made in the period, withdrawn ones included),
  answered (the centre accepted, advised or declined in the period) and completed (the loop closed
  with care in the period: advice given, or the consultation it booked held).
- median wait, days: from booking to the consultation's start, over the consultations counted;
  median referral wait, days: from the referral to the care that completed it, over the referrals
  completed. None when there is nothing to take a median of (DHIS2 then gets no value).

Every bound is the period's local midnights in each facility's own zone (periods.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import msgspec

from domain.reporting.periods import Period
from infra.db import Connection

# The facilities reported and their period bounds as instants: $1 first day, $2 the day after the
# last, $3 the facilities (NULL: all). Each query below starts from it.
_BOUNDS = """WITH f AS (
    SELECT id, name, timezone,
           ($1::date)::timestamp AT TIME ZONE timezone AS lo,
           ($2::date)::timestamp AT TIME ZONE timezone AS hi
    FROM facilities WHERE $3::uuid[] IS NULL OR id = ANY($3::uuid[]))
"""

_FACILITIES = _BOUNDS + "SELECT id, name, timezone FROM f ORDER BY name, id"

_APPOINTMENTS = (
    _BOUNDS
    + """SELECT a.facility_id, a.status, a.mode, coalesce(r.specialty, p.specialties[1], 'general') AS specialty,
       count(*) AS n
FROM f
JOIN appointments a ON a.facility_id = f.id AND a.start_at >= f.lo AND a.start_at < f.hi
JOIN practitioners p ON p.id = a.practitioner_id
LEFT JOIN referrals r ON r.appointment_id = a.id
WHERE a.status IN ('completed', 'no_show')
GROUP BY 1, 2, 3, 4"""
)

_BOOKING_WAIT = (
    _BOUNDS
    + """SELECT a.facility_id,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest(extract(epoch FROM a.start_at - a.created_at), 0))
         AS wait_s
FROM f
JOIN appointments a ON a.facility_id = f.id AND a.start_at >= f.lo AND a.start_at < f.hi
WHERE a.status = 'completed'
GROUP BY 1"""
)

# `done`: when a referral's loop closed with care (advice given, or its consultation held).
_REFERRALS = (
    _BOUNDS
    + """SELECT f.id AS facility_id,
       count(*) FILTER (WHERE r.created_at >= f.lo) AS sent,
       count(*) FILTER (WHERE r.triaged_at >= f.lo AND r.triaged_at < f.hi) AS answered,
       count(*) FILTER (WHERE done.at >= f.lo AND done.at < f.hi) AS completed,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY greatest(extract(epoch FROM done.at - r.created_at), 0))
         FILTER (WHERE done.at >= f.lo AND done.at < f.hi) AS wait_s
FROM f
JOIN referrals r ON r.from_facility_id = f.id AND r.created_at < f.hi
LEFT JOIN appointments a ON a.id = r.appointment_id
CROSS JOIN LATERAL (
    SELECT CASE WHEN r.status = 'answered' THEN r.triaged_at
                WHEN r.status = 'accepted' AND a.status = 'completed' THEN a.start_at END AS at) done
GROUP BY f.id"""
)


class FacilityFigures(msgspec.Struct, kw_only=True):
    facility_id: uuid.UUID
    name: str
    timezone: str
    consultations_by_mode: dict[str, int] = {}
    consultations_by_specialty: dict[str, int] = {}
    no_shows: int = 0
    referrals_sent: int = 0
    referrals_answered: int = 0
    referrals_completed: int = 0
    median_wait_days: float | None = None
    median_referral_wait_days: float | None = None

    @property
    def consultations(self) -> int:
        return sum(self.consultations_by_mode.values())


def _days(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 86_400, 1)


async def compute(
    conn: Connection, period: Period, facility_ids: Sequence[uuid.UUID] | None = None
) -> list[FacilityFigures]:
    """The figures of `period` for each facility (all of them, or `facility_ids`), by name."""
    args = (period.first_day, period.end_day, None if facility_ids is None else list(facility_ids))
    figures = {
        row["id"]: FacilityFigures(facility_id=row["id"], name=row["name"], timezone=row["timezone"])
        for row in await conn.fetch(_FACILITIES, *args)
    }
    for row in await conn.fetch(_APPOINTMENTS, *args):
        item = figures[row["facility_id"]]
        if row["status"] == "no_show":
            item.no_shows += row["n"]
            continue
        item.consultations_by_mode[row["mode"]] = item.consultations_by_mode.get(row["mode"], 0) + row["n"]
        specialty = row["specialty"]
        item.consultations_by_specialty[specialty] = item.consultations_by_specialty.get(specialty, 0) + row["n"]
    for row in await conn.fetch(_BOOKING_WAIT, *args):
        figures[row["facility_id"]].median_wait_days = _days(row["wait_s"])
    for row in await conn.fetch(_REFERRALS, *args):
        item = figures[row["facility_id"]]
        item.referrals_sent = row["sent"]
        item.referrals_answered = row["answered"]
        item.referrals_completed = row["completed"]
        item.median_referral_wait_days = _days(row["wait_s"])
    return list(figures.values())


__all__ = ["FacilityFigures", "compute"]
