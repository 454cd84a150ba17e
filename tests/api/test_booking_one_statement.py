"""A booking is one read and ONE write statement, run after its answer is rendered, with the
Idempotency-Key in it (api.transaction ONE_STATEMENT): the answer is what was stored, a refusal
of that statement answers like any refusal and keeps nothing, and the change leaves its history,
audit and outbox rows once."""

from __future__ import annotations

import uuid

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory

Client = AsyncTestClient[Litestar]


async def test_the_answer_is_what_was_stored(client: Client, factory: Factory) -> None:
    """The answer leaves before the write ran; its instants are the row's, to the microsecond."""
    scene = await factory.scene()
    booked = await client.post("/v1/appointments", json=scene.booking(), headers=scene.chw.headers)
    assert booked.status_code == 201, booked.text
    read = await client.get(f"/v1/appointments/{booked.json()['id']}", headers=scene.chw.headers)
    assert read.status_code == 200
    assert read.json() == booked.json()


async def test_a_refused_write_answers_as_any_refusal_and_keeps_no_key(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    """The slot is taken when the statement runs: the exclusion constraint's 409 with its field,
    the request id and nothing of the 201 rendered before; the key is not kept, so once the slot
    is free again the same request books it."""
    scene = await factory.scene()
    other = await factory.patient(scene.post, token=scene.chw.token)
    first = await client.post("/v1/appointments", json=scene.booking(), headers=scene.chw.headers)
    assert first.status_code == 201
    key = {"Idempotency-Key": str(uuid.uuid4())}
    body = {**scene.booking(), "patient_id": str(other)}
    refused = await client.post("/v1/appointments", json=body, headers={**scene.chw.headers, **key})
    assert refused.status_code == 409, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "slot_taken"
    assert problem["errors"] == [{"field": "start", "message": problem["detail"]}]
    assert problem["request_id"] == refused.headers["x-request-id"]
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", key["Idempotency-Key"]) == 0

    cancelled = await client.post(f"/v1/appointments/{first.json()['id']}/cancel", headers=scene.chw.headers)
    assert cancelled.status_code == 200
    again = await client.post("/v1/appointments", json=body, headers={**scene.chw.headers, **key})
    assert again.status_code == 201, again.text
    assert "idempotent-replayed" not in again.headers


async def test_the_write_leaves_history_audit_and_outbox_once(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    scene = await factory.scene()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    booked = await client.post("/v1/appointments", json=scene.booking(), headers={**scene.chw.headers, **key})
    assert booked.status_code == 201
    again = await client.post("/v1/appointments", json=scene.booking(), headers={**scene.chw.headers, **key})
    assert again.headers["idempotent-replayed"] == "true"
    appointment = booked.json()["id"]
    written = await db.fetchrow(
        """SELECT (SELECT count(*) FROM appointment_events WHERE appointment_id = $1 AND action = 'book') AS history,
                  (SELECT count(*) FROM audit_events WHERE resource_id = $2 AND action = 'book'
                     AND actor_user_id = $3 AND outcome = 'success') AS audit,
                  (SELECT count(*) FROM outbox WHERE topic = 'appointment.book'
                     AND payload->>'appointment_id' = $2) AS outbox,
                  (SELECT count(*) FROM idempotency_keys WHERE key = $4 AND status_code = 201) AS kept""",
        uuid.UUID(appointment),
        appointment,
        scene.chw.user_id,
        key["Idempotency-Key"],
    )
    assert written is not None
    assert dict(written) == {"history": 1, "audit": 1, "outbox": 1, "kept": 1}


async def test_the_key_is_written_with_the_booking_and_never_again(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    """The kept answer goes in the booking's own statement: the key's row and the appointment
    carry the same transaction id, and no later statement rewrote the key (a round trip and a
    commit more per booking)."""
    scene = await factory.scene()
    key = str(uuid.uuid4())
    booked = await client.post(
        "/v1/appointments", json=scene.booking(), headers={**scene.chw.headers, "Idempotency-Key": key}
    )
    assert booked.status_code == 201
    written = await db.fetchrow(
        """SELECT (SELECT xmin::text FROM idempotency_keys WHERE key = $1) AS key,
                  (SELECT xmin::text FROM appointments WHERE id = $2) AS appointment""",
        key,
        uuid.UUID(booked.json()["id"]),
    )
    assert written is not None
    assert written["key"] == written["appointment"]
