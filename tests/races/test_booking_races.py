"""Bookings racing each other across two server processes: every loser gets a clear 409 (never a
500 from a deadlock), and the database keeps one active appointment per patient and per
practitioner at a time."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from datetime import datetime

import asyncpg
import httpx

from tests.factory import Factory, Staff, auth, iso, next_local
from tests.races.conftest import Live

PATIENTS = 10
PRACTITIONERS = 10
ROUNDS = 6


async def _cast(factory: Factory) -> tuple[Staff, list[Staff], list[uuid.UUID]]:
    centre = await factory.facility()
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    specialists = []
    for _ in range(PRACTITIONERS):
        specialist = await factory.staff(centre)
        await factory.weekly(specialist)
        specialists.append(specialist)
    patients = [await factory.patient(post, token=chw.token) for _ in range(PATIENTS)]
    return chw, specialists, patients


async def _active_at(db: asyncpg.Pool, start: datetime, column: str, ids: list[uuid.UUID]) -> Counter[uuid.UUID]:
    rows = await db.fetch(
        f"""SELECT {column} AS who FROM appointments
            WHERE start_at = $1 AND {column} = ANY($2) AND status IN ('booked', 'checked_in', 'in_progress')""",
        start,
        ids,
    )
    return Counter(r["who"] for r in rows)


async def test_patients_times_practitioners_colliding_at_100_way(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    """Every patient asks every practitioner for the same slot at once: each constraint is hit
    from both sides, which is what deadlocked two GiST exclusion checks."""
    chw, specialists, patients = await _cast(factory)
    practitioner_ids = [s.practitioner_id for s in specialists]
    for round_no in range(ROUNDS):
        start = next_local("Asia/Phnom_Penh", f"{8 + round_no // 2}:{30 * (round_no % 2):02d}")
        pairs = [(p, s) for p in patients for s in practitioner_ids]
        random.shuffle(pairs)

        async def book(i: int, patient: uuid.UUID, practitioner: uuid.UUID, start: datetime = start) -> httpx.Response:
            body = {"patient_id": str(patient), "practitioner_id": str(practitioner), "start": iso(start)}
            return await http.post(f"{live.url(i)}/v1/appointments", json=body, headers=auth(chw.token))

        answers = await asyncio.gather(*(book(i, p, s) for i, (p, s) in enumerate(pairs)))
        statuses = Counter(a.status_code for a in answers)
        assert set(statuses) <= {201, 409}, [a.text for a in answers if a.status_code not in (201, 409)][:3]
        assert {a.json()["code"] for a in answers if a.status_code == 409} <= {"slot_taken", "patient_double_booked"}

        by_patient = await _active_at(db, start, "patient_id", patients)
        by_practitioner = await _active_at(db, start, "practitioner_id", practitioner_ids)
        # Every 201 was kept, no one holds two, and (every pair having been asked, each loser
        # losing only to a committed winner) the result is a perfect matching.
        assert statuses[201] == sum(by_patient.values()) == PATIENTS, statuses
        assert set(by_patient.values()) == {1}
        assert set(by_practitioner.values()) == {1}
        assert len(by_practitioner) == PRACTITIONERS
