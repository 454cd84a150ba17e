"""A month of telehealth activity at three facilities, written straight into the tables (the
API books only in the future; a report looks at the past): a reference centre and a health post
that refers to it, both in Phnom Penh (UTC+7), and a clinic in Lima (UTC-5), so both edges of
the month fall on the other side of UTC's. Expected figures are written beside each row."""

from __future__ import annotations

import calendar
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg

from tests.factory import Factory, Staff

PHNOM_PENH = ZoneInfo("Asia/Phnom_Penh")
LIMA = ZoneInfo("America/Lima")


@dataclass(frozen=True)
class Month:
    year: int
    month: int
    centre: uuid.UUID
    post: uuid.UUID
    lima: uuid.UUID
    specialist: Staff

    @property
    def period(self) -> str:
        return f"{self.year}{self.month:02d}"

    @property
    def facilities(self) -> list[uuid.UUID]:
        return [self.centre, self.post, self.lima]


class _Writer:
    def __init__(self, db: asyncpg.Pool, patient: uuid.UUID, year: int, month: int) -> None:
        self.db, self.patient, self.year, self.month = db, patient, year, month
        self.last = calendar.monthrange(year, month)[1]

    def at(self, day: int, time: str, zone: ZoneInfo) -> datetime:
        """Local wall-clock time on `day` of the month (0: the previous month's last day,
        last + 1: the next month's first)."""
        hour, minute = (int(x) for x in time.split(":"))
        first = datetime(self.year, self.month, 1, hour, minute, tzinfo=zone)
        return first + timedelta(days=day - 1)

    async def appointment(
        self, staff: Staff, facility: uuid.UUID, start: datetime, status: str, mode: str = "video", *, booked: datetime
    ) -> uuid.UUID:
        appointment_id = uuid.uuid4()
        await self.db.execute(
            """INSERT INTO appointments (id, patient_id, practitioner_id, facility_id, start_at, end_at, status, mode,
                                         booked_by, channel, created_at)
               VALUES ($1, $2, $3, $4, $5::timestamptz, $5::timestamptz + interval '30 minutes', $6, $7, $8, 'app',
                       $9)""",
            appointment_id,
            self.patient,
            staff.practitioner_id,
            facility,
            start,
            status,
            mode,
            staff.user_id,
            booked,
        )
        return appointment_id

    async def referral(
        self,
        post: uuid.UUID,
        centre: uuid.UUID,
        by: Staff,
        created: datetime,
        status: str,
        *,
        triaged: datetime | None = None,
        appointment: uuid.UUID | None = None,
        specialty: str = "cardiology",
    ) -> None:
        await self.db.execute(
            """INSERT INTO referrals (id, patient_id, from_facility_id, to_facility_id, specialty, urgency, reason,
                                      status, referred_by, channel, triaged_by, triaged_at, appointment_id, created_at)
               VALUES ($1, $2, $3, $4, $5, 'routine', 'chest pain', $6, $7, 'app', $8, $9, $10, $11)""",
            uuid.uuid4(),
            self.patient,
            post,
            centre,
            specialty,
            status,
            by.user_id,
            by.user_id if triaged else None,
            triaged,
            appointment,
            created,
        )


async def build(factory: Factory, db: asyncpg.Pool, year: int, month: int) -> Month:
    """Expected for the month, by facility:
    centre: video 2, audio 1; cardiology 2, neurology 1; no-shows 1; median wait 4 days.
    post: referrals sent 6, answered 5, completed 3; median referral wait 13 days.
    lima: audio 1; general 1; no-shows 1; median wait 1 day.
    """
    centre = await factory.facility()
    post = await factory.facility(kind="health_post")
    lima = await factory.facility(kind="health_centre", timezone="America/Lima", country="PE")
    specialist = await factory.staff(centre, specialties=["cardiology", "internal medicine"])
    clinician = await factory.staff(lima, role="clinician")  # no specialty: "general"
    chw = await factory.staff(post, role="chw")
    w = _Writer(db, await factory.patient(post), year, month)
    pp, last = PHNOM_PENH, w.last

    # The centre's consultations. Held: counted by mode and specialty.
    await w.appointment(specialist, centre, w.at(10, "09:00", pp), "completed", booked=w.at(6, "09:00", pp))  # 4 d
    # 23:30 on the last day in Phnom Penh is 16:30 UTC that day: this month both ways.
    await w.appointment(
        specialist, centre, w.at(last, "23:30", pp), "completed", "audio", booked=w.at(last - 2, "23:30", pp)
    )  # 2 d
    # 00:30 on the next month's first day in Phnom Penh is still this month in UTC: not counted.
    await w.appointment(specialist, centre, w.at(last + 1, "00:30", pp), "completed", booked=w.at(1, "08:00", pp))
    await w.appointment(specialist, centre, w.at(15, "10:00", pp), "no_show", booked=w.at(2, "10:00", pp))
    await w.appointment(specialist, centre, w.at(16, "10:00", pp), "cancelled", booked=w.at(2, "11:00", pp))
    await w.appointment(specialist, centre, w.at(20, "11:00", pp), "booked", booked=w.at(2, "12:00", pp))
    # Booked to answer a neurology referral: counted under the referral's specialty. 8 d wait.
    answered = await w.appointment(specialist, centre, w.at(20, "09:00", pp), "completed", booked=w.at(12, "09:00", pp))

    # The post's referrals to the centre.
    await w.referral(post, centre, chw, w.at(5, "09:00", pp), "accepted", triaged=w.at(6, "09:00", pp),
                     appointment=answered, specialty="neurology")  # fmt: skip  # completed, 15 d
    await w.referral(post, centre, chw, w.at(7, "09:00", pp), "answered", triaged=w.at(9, "09:00", pp))  # 2 d
    await w.referral(post, centre, chw, w.at(8, "09:00", pp), "declined", triaged=w.at(8, "15:00", pp))
    await w.referral(post, centre, chw, w.at(25, "09:00", pp), "requested")
    await w.referral(post, centre, chw, w.at(26, "09:00", pp), "cancelled")
    # Made last month, answered with advice this month: answered and completed here, not sent. 13 d.
    await w.referral(post, centre, chw, w.at(-10, "09:00", pp), "answered", triaged=w.at(3, "09:00", pp))
    # Accepted, its consultation next month: answered, not completed.
    later = await w.appointment(
        specialist, centre, w.at(last + 2, "09:00", pp), "booked", booked=w.at(last, "09:00", pp)
    )
    await w.referral(post, centre, chw, w.at(last - 1, "09:00", pp), "accepted", triaged=w.at(last, "09:00", pp),
                     appointment=later)  # fmt: skip

    # Lima, five hours behind UTC: 23:30 on the last day is already next month in UTC, but counts here.
    await w.appointment(
        clinician, lima, w.at(last, "23:30", LIMA), "completed", "audio", booked=w.at(last - 1, "23:30", LIMA)
    )  # 1 d
    # 23:30 on the previous month's last day is this month in UTC: last month's, not counted.
    await w.appointment(clinician, lima, w.at(0, "23:30", LIMA), "completed", booked=w.at(-3, "23:30", LIMA))
    await w.appointment(clinician, lima, w.at(1, "00:30", LIMA), "no_show", booked=w.at(-3, "22:00", LIMA))
    return Month(year, month, centre, post, lima, specialist)
