"""The outbox worker end to end: real `spean worker` processes, real PostgreSQL, firebase-admin
against the local FCM server (tests/fcm_server.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

from infra.config import Settings
from tests.factory import Factory, auth
from tests.fcm_server import FcmServer
from tests.notifications.conftest import Worker, app_patient, awake_scene, book, register, states, wait_for

StartWorker = Callable[..., tuple[Worker, Path]]


async def _sent(db: asyncpg.Pool, appointment_id: str) -> bool:
    """The appointment's messages are planned and none but the reminders is still pending."""
    counts = await db.fetchrow(
        "SELECT count(*) AS planned, count(*) FILTER (WHERE state = 'pending' AND kind NOT LIKE 'reminder%') AS due "
        "FROM notifications WHERE appointment_id = $1",
        uuid.UUID(appointment_id),
    )
    assert counts is not None
    return bool(counts["planned"]) and not counts["due"]


async def test_a_booking_pushes_once_to_the_patient_and_once_to_the_specialist(
    factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
) -> None:
    scene = await awake_scene(factory)
    patient = await app_patient(factory, scene.post)
    await register(factory, patient.token, f"p-{unique}", language="fr")
    await register(factory, scene.specialist.token, f"s-{unique}", language="en")
    start_worker()
    appointment = await book(factory, scene, patient.patient_id, "09:00")

    await wait_for(lambda: _sent(db, appointment), what="the booking's notifications")
    to_patient, to_specialist = fcm.to(f"p-{unique}"), fcm.to(f"s-{unique}")
    assert len(to_patient) == 1
    assert len(to_specialist) == 1
    assert to_patient[0]["notification"]["body"].startswith("Votre consultation est prévue le")  # her language
    assert to_specialist[0]["data"]["kind"] == "appointment_booked"
    assert to_specialist[0]["android"]["priority"] == "normal"
    for message in (*to_patient, *to_specialist):  # no health detail on a lock screen
        assert "cardiology" not in str(message)
    # 09:00 in Phnom Penh, written on the facility's clock
    assert "09:00" in to_patient[0]["notification"]["body"]
    assert fcm.token_exchanges >= 1  # the service account's token_uri was honoured

    mine = await factory.client.get("/v1/me/notifications", headers=patient.headers)
    assert mine.status_code == 200
    booked = [n for n in mine.json() if n["kind"] == "appointment_booked"]
    assert [(n["channel"], n["state"]) for n in booked] == [("push", "sent")]
    # The reminders wait for their time (24 h and 1 h before), pending and not yet shown
    assert ("reminder_60m", "push", "pending") in await states(db, appointment)


async def test_two_workers_never_send_the_same_one(
    factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
) -> None:
    scene = await awake_scene(factory)
    fcm.delay_s = 0.01
    start_worker()
    start_worker()
    tokens = []
    appointments = []
    for i, at in enumerate(("08:00", "08:30", "09:00", "09:30", "10:00", "10:30", "11:00", "11:30")):
        patient = await app_patient(factory, scene.post)
        tokens.append(f"two-{unique}-{i}")
        await register(factory, patient.token, tokens[-1])
        appointments.append(await book(factory, scene, patient.patient_id, at))
    for appointment in appointments:
        await wait_for(partial(_sent, db, appointment), what="all notifications sent")
    nids = [m["data"]["nid"] for t in tokens for m in fcm.to(t)]
    assert len(nids) == len(tokens)  # one each
    assert all(count == 1 for count in Counter(nids).values())


async def test_a_worker_killed_mid_batch_loses_and_doubles_nothing(
    factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
) -> None:
    scene = await awake_scene(factory)
    tokens = []
    appointments = []
    for i, at in enumerate(("08:00", "08:30", "09:00", "09:30", "10:00", "10:30")):
        patient = await app_patient(factory, scene.post)
        tokens.append(f"kill-{unique}-{i}")
        await register(factory, patient.token, tokens[-1])
        appointments.append(await book(factory, scene, patient.patient_id, at, days_ahead=3))
    fcm.delay_s = 1.0  # the batch is in flight when the worker dies
    first, _ = start_worker(SPEAN_WORKER_LEASE="3")
    await wait_for(lambda: any(fcm.attempts.get(t) for t in tokens), what="the first sends")
    first.send_signal(signal.SIGKILL)
    first.wait()
    fcm.delay_s = 0.0
    start_worker(SPEAN_WORKER_LEASE="3")
    for appointment in appointments:
        await wait_for(partial(_sent, db, appointment), what="everything sent after the restart")
    received = [m["data"]["nid"] for t in tokens for m in fcm.to(t)]
    # Nothing lost; what the dead worker had on the wire may arrive twice, under the same nid,
    # and the app shows each nid once: one message per person as seen.
    assert len(set(received)) == len(tokens)
    rows = await db.fetch(
        "SELECT state, count(*) AS n FROM notifications WHERE appointment_id = ANY($1::uuid[]) "
        "AND kind = 'appointment_booked' AND patient_id IS NOT NULL GROUP BY state",
        [uuid.UUID(a) for a in appointments],
    )
    assert {r["state"]: r["n"] for r in rows} == {"sent": len(tokens)}


async def test_unregistered_token_is_retired_and_the_patient_gets_an_sms(
    factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
) -> None:
    scene = await awake_scene(factory)
    patient = await app_patient(factory, scene.post)
    dead = await register(factory, patient.token, f"dead-{unique}")
    bad_patient = await app_patient(factory, scene.post)
    bad = await register(factory, bad_patient.token, f"bad-{unique}")
    start_worker()
    first = await book(factory, scene, patient.patient_id, "08:00", days_ahead=4)
    second = await book(factory, scene, bad_patient.patient_id, "08:30", days_ahead=4)
    for appointment in (first, second):
        await wait_for(partial(_sent, db, appointment), what="fallback delivered")
        assert ("appointment_booked", "sms", "sent") in await states(db, appointment)
    for device in (dead, bad):
        assert await db.fetchval("SELECT retired_at IS NOT NULL FROM devices WHERE id = $1", uuid.UUID(device["id"]))
    assert fcm.attempts[f"dead-{unique}"] == 1  # retired at once: never tried again
    # Sent by whichever process's ledger loop claims it first: read the ledger, not one log.
    await wait_for(lambda: _ledger_sent(db, patient.phone), what="the SMS")
    # Later messages skip the retired token and go by SMS directly
    third = await book(factory, scene, patient.patient_id, "09:00", days_ahead=4)
    await wait_for(lambda: _sent(db, third), what="the next message")
    assert fcm.attempts[f"dead-{unique}"] == 1


async def test_five_503s_then_success_is_one_delivery(
    factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
) -> None:
    scene = await awake_scene(factory)
    patient = await app_patient(factory, scene.post)
    await register(factory, patient.token, f"flaky5-{unique}")
    start_worker()
    appointment = await book(factory, scene, patient.patient_id, "10:00", days_ahead=4)
    await wait_for(lambda: _sent(db, appointment), what="delivered after the 503s")
    assert len(fcm.to(f"flaky5-{unique}")) == 1
    assert fcm.attempts[f"flaky5-{unique}"] == 6
    row = await db.fetchrow(
        "SELECT state, attempts FROM notifications WHERE appointment_id = $1 AND patient_id IS NOT NULL "
        "AND kind = 'appointment_booked'",
        uuid.UUID(appointment),
    )
    assert row is not None
    assert (row["state"], row["attempts"]) == ("sent", 6)


async def test_permanent_failure_is_a_dead_letter_listed_for_admins(
    factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, settings: Settings, unique: str
) -> None:
    scene = await awake_scene(factory)
    refused = await app_patient(factory, scene.post, phone=False)  # no phone: no SMS to fall back to
    await register(factory, refused.token, f"deny-{unique}")
    unreachable = await app_patient(factory, scene.post, phone=False)
    await register(factory, unreachable.token, f"down-{unique}")
    start_worker(SPEAN_NOTIFY_MAX_ATTEMPTS="3")
    first = await book(factory, scene, refused.patient_id, "10:30", days_ahead=4)
    second = await book(factory, scene, unreachable.patient_id, "11:00", days_ahead=4)
    for appointment in (first, second):
        await wait_for(partial(_sent, db, appointment), what="dead-lettered")
        assert ("appointment_booked", "push", "failed") in await states(db, appointment)
    assert fcm.attempts[f"deny-{unique}"] == 1  # refused for good: not retried
    assert fcm.attempts[f"down-{unique}"] == 3  # SPEAN_NOTIFY_MAX_ATTEMPTS

    listed = await factory.client.get(
        "/v1/admin/notifications", params={"state": "failed"}, headers=auth(await factory.admin_token())
    )
    assert listed.status_code == 200
    failed: list[dict[str, Any]] = [n for n in listed.json() if n["patient_id"] in (str(refused.patient_id),)]
    assert failed
    assert failed[0]["state"] == "failed"
    assert "PERMISSION_DENIED" in failed[0]["last_error"].upper()
    refused_403 = await factory.client.get("/v1/admin/notifications", headers=scene.specialist.headers)
    assert refused_403.status_code == 403

    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "spean.cli",
        "admin",
        "notifications",
        "--failed",
        env={"DATABASE_URL": settings.database_url, "SPEAN_ENV": "test", "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(cli.communicate(), 60)
    assert cli.returncode == 0, err.decode()
    assert failed[0]["id"] in out.decode()


async def test_reminders_move_with_a_reschedule_and_vanish_with_a_cancel(
    factory: Factory, db: asyncpg.Pool, start_worker: StartWorker
) -> None:
    scene = await awake_scene(factory)
    patient = await app_patient(factory, scene.post)
    start_worker()
    appointment = await book(factory, scene, patient.patient_id, "08:00", days_ahead=5)
    await wait_for(lambda: _sent(db, appointment), what="planned")

    async def reminders(state: str) -> list[Any]:
        return list(
            await db.fetch(
                "SELECT kind, available_at FROM notifications WHERE appointment_id = $1 AND kind LIKE 'reminder%' "
                "AND state = $2 ORDER BY available_at",
                uuid.UUID(appointment),
                state,
            )
        )

    before = await reminders("pending")
    assert [r["kind"] for r in before] == ["reminder_1440m", "reminder_60m"]
    start = await db.fetchval("SELECT start_at FROM appointments WHERE id = $1", uuid.UUID(appointment))
    moved = await factory.client.post(
        f"/v1/appointments/{appointment}/reschedule",
        json={"start": (start + dt.timedelta(hours=1)).isoformat()},
        headers=scene.chw.headers,
    )
    assert moved.status_code == 200, moved.text
    await wait_for(lambda: _n_pending(db, appointment, 2, 2), what="reminders moved")
    after = await reminders("pending")
    assert [r["available_at"] - b["available_at"] for r, b in zip(after, before, strict=True)] == [
        dt.timedelta(hours=1)
    ] * 2
    cancelled = await factory.client.post(f"/v1/appointments/{appointment}/cancel", json={}, headers=scene.chw.headers)
    assert cancelled.status_code == 200, cancelled.text
    await wait_for(lambda: _n_pending(db, appointment, 0, 4), what="reminders gone")


async def _n_pending(db: asyncpg.Pool, appointment: str, pending: int, cancelled: int) -> bool:
    rows = await db.fetch(
        "SELECT state, count(*) AS n FROM notifications WHERE appointment_id = $1 AND kind LIKE 'reminder%' "
        "GROUP BY state",
        uuid.UUID(appointment),
    )
    counts: dict[str, int] = {r["state"]: r["n"] for r in rows}
    return counts.get("pending", 0) == pending and counts.get("cancelled", 0) == cancelled


async def test_a_patient_who_sent_stop_gets_no_notification_sms(
    factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
) -> None:
    """Notification SMS go through the SMS ledger, so STOP holds for them as for every SMS."""
    scene = await awake_scene(factory)
    stopped = await app_patient(factory, scene.post)  # no device: every message falls back to SMS
    listening = await app_patient(factory, scene.post)
    await db.execute("INSERT INTO sms_opt_outs (phone) VALUES ($1)", stopped.phone)
    start_worker()
    quiet = await book(factory, scene, stopped.patient_id, "10:00", days_ahead=5)
    told = await book(factory, scene, listening.patient_id, "10:30", days_ahead=5)
    for appointment in (quiet, told):
        await wait_for(partial(_sent, db, appointment), what="the booking's notifications")
    assert ("appointment_booked", "sms", "cancelled") in await states(db, quiet)
    assert ("appointment_booked", "sms", "sent") in await states(db, told)
    refused = await db.fetchval(
        "SELECT status || ':' || last_error FROM sms_messages WHERE to_phone = $1", stopped.phone
    )
    assert refused == "refused:opted_out"
    # Sent by whichever process's ledger loop claims it first (the worker's, or the test app's):
    # read the ledger, not one process's log.
    sent_to = "SELECT array_agg(status) FROM sms_messages WHERE to_phone = $1"
    await wait_for(lambda: _ledger_sent(db, listening.phone), what="the other patient's SMS")
    assert await db.fetchval(sent_to, stopped.phone) == ["refused"]


async def _ledger_sent(db: asyncpg.Pool, phone: str) -> bool:
    return bool(await db.fetchval("SELECT true FROM sms_messages WHERE to_phone = $1 AND status = 'sent'", phone))
