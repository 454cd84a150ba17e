"""A request whose transaction PostgreSQL aborts as a deadlock victim runs again whole: the caller
sees the answer of the retry (here a 409 or a 201), never a 500, and Idempotency-Key still holds.

The deadlock is provoked on purpose: the test's own transaction holds one appointment row, waits
until the booking queues behind it, then writes a row that collides with the booking. Its own
deadlock_timeout is long, so the server's transaction is always the one PostgreSQL aborts.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta

import asyncpg
import httpx
import pytest

from infra.db import Connection
from tests.factory import Factory, Scene, auth, iso, next_local
from tests.races.conftest import Live


async def _insert(conn: Connection, scene: Scene, patient: uuid.UUID, practitioner: uuid.UUID, at: datetime) -> None:
    await conn.execute(
        """INSERT INTO appointments (id, patient_id, practitioner_id, facility_id, start_at, end_at, status, mode,
                                     booked_by, channel)
           VALUES ($1, $2, $3, $4, $5, $6, 'booked', 'video', $7, 'api')""",
        uuid.uuid4(),
        patient,
        practitioner,
        scene.centre,
        at,
        at + timedelta(minutes=30),
        scene.chw.user_id,
    )


async def _wait_until_blocked(db: asyncpg.Pool, marker: str) -> None:
    for _ in range(200):
        if await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1", f"%{marker}%"
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the booking never queued behind the test's transaction")


@pytest.mark.parametrize("other_commits", [True, False], ids=["other-commits", "other-rolls-back"])
async def test_a_deadlock_victim_is_retried_whole(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool, other_commits: bool
) -> None:
    scene = await factory.scene()
    other = await factory.staff(scene.centre)  # a second specialist, Y
    other_patient = await factory.patient(scene.post, token=scene.chw.token)
    at = next_local("Asia/Phnom_Penh", "10:00")
    body = {
        "patient_id": str(scene.patient),
        "practitioner_id": str(scene.specialist.practitioner_id),
        "start": iso(at),
    }
    headers = auth(scene.chw.token, **{"Idempotency-Key": f"retry-{uuid.uuid4()}"})

    async with db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        try:
            await conn.execute("SET LOCAL deadlock_timeout = '30s'")
            await _insert(conn, scene, scene.patient, other.practitioner_id, at)  # patient P with Y
            booking = asyncio.create_task(http.post(f"{live.url(0)}/v1/appointments", json=body, headers=headers))
            await _wait_until_blocked(db, "INSERT INTO appointments")  # P with X waits for us
            # Q with X: we now wait for the booking while it waits for us. PostgreSQL aborts the
            # booking's transaction (its deadlock_timeout is the default second); ours goes on.
            await _insert(conn, scene, other_patient, scene.specialist.practitioner_id, at)
        finally:
            if other_commits:
                await tx.commit()
            else:
                await tx.rollback()
        answer = await booking

    if other_commits:  # the retry meets our committed rows (P with Y, Q with X): a clear conflict
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] in {"patient_double_booked", "slot_taken"}
    else:  # the retry finds the slot free again and books it
        assert answer.status_code == 201, answer.text
        again = await http.post(f"{live.url(1)}/v1/appointments", json=body, headers=headers)
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == answer.content
    kept = await db.fetchval(
        """SELECT count(*) FROM appointments WHERE patient_id = $1 AND practitioner_id = $2 AND start_at = $3""",
        scene.patient,
        scene.specialist.practitioner_id,
        at,
    )
    assert kept == (0 if other_commits else 1)


async def test_a_booking_that_finds_its_key_taken_at_the_end_writes_nothing(
    live: Live, http: httpx.AsyncClient, factory: Factory, db: asyncpg.Pool
) -> None:
    """Bookings write their Idempotency-Key with the answer, after the handler
    (api.transaction.LATE_KEY). A request holding the same key, still in flight, makes that insert
    wait; once it commits, the booking rolls back all it wrote and is answered as a duplicate
    (here of a different request: 422)."""
    scene = await factory.scene()
    at = next_local("Asia/Phnom_Penh", "10:00")
    body = {
        "patient_id": str(scene.patient),
        "practitioner_id": str(scene.specialist.practitioner_id),
        "start": iso(at),
    }
    key = f"late-{uuid.uuid4()}"
    async with db.acquire() as conn:
        holder = conn.transaction()
        await holder.start()
        try:
            await conn.execute(
                """INSERT INTO idempotency_keys (principal, key, fingerprint, status_code, headers, body, expires_at)
                   VALUES ($1, $2, 'another request', 201, '[]', '{}', now() + interval '1 hour')""",
                str(scene.chw.user_id),
                key,
            )
            headers = auth(scene.chw.token, **{"Idempotency-Key": key})
            booking = asyncio.create_task(http.post(f"{live.url(0)}/v1/appointments", json=body, headers=headers))
            await _wait_until_blocked(db, "INSERT INTO idempotency_keys")
        finally:
            await holder.commit()
        answer = await booking
    assert answer.status_code == 422, answer.text
    assert answer.json()["code"] == "idempotency_key_reused"
    written = await db.fetchval(
        "SELECT count(*) FROM appointments WHERE practitioner_id = $1", scene.specialist.practitioner_id
    )
    assert written == 0
