"""The worker is woken by the commit (LISTEN/NOTIFY), and polling stays the fallback when the
listening connection is lost or cannot be made. Real `spean worker` processes."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import asyncpg

from tests.factory import Factory
from tests.fcm_server import FcmServer
from tests.notifications.conftest import Worker, app_patient, awake_scene, book, register, wait_for

StartWorker = Callable[..., tuple[Worker, Path]]
LISTENERS = (
    "SELECT array_agg(pid) FROM pg_stat_activity WHERE application_name = 'spean-listen' "
    "AND datname = current_database()"
)


async def _pushed(fcm: FcmServer, token: str, appointment: str) -> bool:
    return any(m["data"].get("appointment_id") == appointment for m in fcm.to(token))


def _asleep(db: asyncpg.Pool, worker: uuid.UUID) -> Callable[[], Awaitable[bool]]:
    """This worker (its own row, not one another worker left) says it sleeps, and no event waits."""

    async def asleep() -> bool:
        said = "SELECT EXISTS (SELECT FROM outbox_sleepers WHERE worker = $1 AND until > now())"
        due = "SELECT EXISTS (SELECT FROM outbox WHERE processed_at IS NULL AND available_at <= now())"
        return bool(await db.fetchval(said, worker)) and not await db.fetchval(due)

    return asleep


async def test_a_commit_wakes_an_idle_worker(
    factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
) -> None:
    """The worker polls once every ten minutes here: only the commit's NOTIFY can bring the push."""
    scene = await awake_scene(factory)
    patient = await app_patient(factory, scene.post)
    await register(factory, patient.token, f"wake-{unique}")
    _, log = start_worker(SPEAN_WORKER_POLL_MS="600000")
    await wait_for(lambda: "outbox_listening" in log.read_text(), what="the worker listening")
    ready = re.search(r"worker ([0-9a-f-]{36}) ready", log.read_text())
    assert ready is not None
    # The suite's database holds every earlier test's events, which this worker plans first: only
    # once it has none left to plan does it sleep, and only then is the next push the commit's.
    # Its own row says so: a worker killed by an earlier test leaves one behind for a day.
    asleep = _asleep(db, uuid.UUID(ready[1]))
    await wait_for(asleep, timeout_s=300, what="the worker through the suite's earlier events, asleep")
    for at in ("09:00", "09:30"):  # twice: it goes back to waiting, and is woken again
        appointment = await book(factory, scene, patient.patient_id, at)
        await wait_for(partial(_pushed, fcm, f"wake-{unique}", appointment), what="the push, woken by the commit")


async def test_a_lost_listening_connection_falls_back_to_polling_and_listens_again(
    factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
) -> None:
    scene = await awake_scene(factory)
    patient = await app_patient(factory, scene.post)
    await register(factory, patient.token, f"relisten-{unique}")
    _, log = start_worker(SPEAN_WORKER_POLL_MS="200")
    before = await wait_for(lambda: db.fetchval(LISTENERS), what="the worker listening")
    await db.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", before)
    appointment = await book(factory, scene, patient.patient_id, "10:00")  # while it reconnects: polled
    await wait_for(lambda: _pushed(fcm, f"relisten-{unique}", appointment), what="the push, by polling")

    async def listening_again() -> bool:
        now = await db.fetchval(LISTENERS)
        return bool(now) and not set(now) & set(before)

    await wait_for(listening_again, what="a new listening connection")
    assert log.read_text().count("outbox_listen_lost") == 1
    later = await book(factory, scene, patient.patient_id, "10:30")
    await wait_for(lambda: _pushed(fcm, f"relisten-{unique}", later), what="the next push")


async def test_a_worker_that_cannot_listen_polls(
    factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
) -> None:
    """A PgBouncer in transaction mode, say: LISTEN is unavailable, delivery is not."""
    scene = await awake_scene(factory)
    patient = await app_patient(factory, scene.post)
    await register(factory, patient.token, f"nolisten-{unique}")
    _, log = start_worker(SPEAN_WORKER_LISTEN_URL="postgresql://postgres@127.0.0.1:1/nowhere")
    appointment = await book(factory, scene, patient.patient_id, "11:00")
    await wait_for(lambda: _pushed(fcm, f"nolisten-{unique}", appointment), what="the push, by polling")
    assert "outbox_listen_lost" in log.read_text()
    assert not await db.fetchval(LISTENERS)
    # FCM took the push; the worker records it as sent a moment later.
    state = await wait_for(
        lambda: db.fetchval(
            "SELECT state FROM notifications WHERE appointment_id = $1 AND patient_id IS NOT NULL "
            "AND kind = 'appointment_booked' AND state = 'sent'",
            uuid.UUID(appointment),
        ),
        what="the push recorded as sent",
    )
    assert state == "sent"
