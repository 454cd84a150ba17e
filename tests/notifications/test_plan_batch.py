"""Planning a batch of outbox events together (notifications.plan.plan_events) makes what planning
them one after another would leave, in two reads whatever the batch's size. In-process, on the
suite's database, each plan rolled back."""

from __future__ import annotations

from typing import Any, cast

import asyncpg

from infra.db import Connection
from notifications.deliver import _insert
from notifications.plan import Event, plan, plan_events
from tests.factory import Factory, Scene, iso, next_local
from tests.notifications.conftest import app_patient, awake_scene, book

REMINDERS = (1440, 60)
ROWS = """SELECT key, state, kind, priority, user_id, patient_id, appointment_id, phone, language, title, body,
                 data, channel, CASE WHEN kind LIKE 'reminder%' THEN available_at END AS due
            FROM notifications WHERE outbox_id = ANY($1::bigint[]) ORDER BY key"""


class _Rollback(Exception):
    pass


async def _events(db: asyncpg.Pool, appointments: list[str]) -> list[Event]:
    rows = await db.fetch(
        "SELECT id, topic, payload FROM outbox WHERE payload->>'appointment_id' = ANY($1::text[]) ORDER BY id",
        appointments,
    )
    return [Event(r["id"], r["topic"], r["payload"]) for r in rows]


async def _scenario(factory: Factory) -> tuple[Scene, list[Event], str, str]:
    """One appointment booked, moved and cancelled (its reminders must not stay), one booked."""
    scene = await awake_scene(factory)
    patient = await app_patient(factory, scene.post)
    gone = await book(factory, scene, patient.patient_id, "09:00", days_ahead=3)
    moved = await factory.client.post(
        f"/v1/appointments/{gone}/reschedule",
        json={"start": iso(next_local("Asia/Phnom_Penh", "10:00", 3))},
        headers=patient.headers,
    )
    assert moved.status_code == 200, moved.text
    cancelled = await factory.client.post(f"/v1/appointments/{gone}/cancel", json={}, headers=patient.headers)
    assert cancelled.status_code == 200, cancelled.text
    kept = await book(factory, scene, patient.patient_id, "11:00", days_ahead=3)
    return scene, await _events(factory.db, [gone, kept]), gone, kept


async def _planned_then_rolled_back(db: asyncpg.Pool, events: list[Event], *, batch: bool) -> list[Any]:
    async with db.acquire() as conn:
        try:
            async with conn.transaction():
                if batch:
                    await _insert(conn, await plan_events(conn, events, REMINDERS))
                else:
                    for e in events:
                        await _insert(conn, [(e.id, p) for p in await plan(conn, e.id, e.topic, e.payload, REMINDERS)])
                rows = [dict(r) for r in await conn.fetch(ROWS, [e.id for e in events])]
                raise _Rollback
        except _Rollback:
            return rows


async def test_a_batch_leaves_what_its_events_one_by_one_leave(factory: Factory, db: asyncpg.Pool) -> None:
    scene, events, gone, kept = await _scenario(factory)
    assert [e.topic for e in events] == [
        "appointment.book",
        "appointment.reschedule",
        "appointment.cancel",
        "appointment.book",
    ]
    one_by_one = await _planned_then_rolled_back(db, events, batch=False)
    together = await _planned_then_rolled_back(db, events, batch=True)
    # One by one, each move or cancel ends the reminders planned before it; together, those are
    # never written. Everything else is the same, row for row.
    ended = [r for r in one_by_one if r["state"] == "cancelled"]
    assert {r["kind"] for r in ended} == {"reminder_1440m", "reminder_60m"}
    assert {str(r["appointment_id"]) for r in ended} == {gone}
    assert together == [r for r in one_by_one if r["state"] != "cancelled"]
    reminders = {(str(r["appointment_id"]), r["kind"]) for r in together if r["kind"].startswith("reminder")}
    assert reminders == {(kept, "reminder_1440m"), (kept, "reminder_60m")}
    # The patient, the specialist and the health worker who booked hear of the move and the cancel.
    told = sorted((r["kind"], str(r["user_id"])) for r in together if str(r["appointment_id"]) == gone)
    specialist, chw = str(scene.specialist.user_id), str(scene.chw.user_id)
    assert told == sorted(
        [("appointment_booked", "None"), ("appointment_booked", specialist)]
        + [(kind, who) for kind in ("appointment_moved", "appointment_cancelled") for who in ("None", specialist, chw)]
    )


class _Counting:
    """A connection that counts the statements sent through it."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.statements = 0

    async def fetch(self, *args: Any) -> Any:
        self.statements += 1
        return await self.conn.fetch(*args)

    async def execute(self, *args: Any) -> Any:
        self.statements += 1
        return await self.conn.execute(*args)


async def test_a_batch_is_read_in_two_statements_whatever_its_size(factory: Factory, db: asyncpg.Pool) -> None:
    _, events, _, _ = await _scenario(factory)
    counted = []
    for batch in (events[:1], events, events * 5):
        async with db.acquire() as conn:
            counting = _Counting(conn)
            try:
                async with conn.transaction():
                    planned = await plan_events(cast(Connection, counting), batch, REMINDERS)
                    raise _Rollback
            except _Rollback:
                pass
        assert planned
        counted.append(counting.statements)
    assert counted == [2, 2, 2]
