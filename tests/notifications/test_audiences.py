"""Who hears what, in their language: result ready (no detail, push and SMS), referral answered
(the referring health worker and the patient), and the health worker who booked hearing of a
move and a cancel. Real `spean worker` processes, firebase-admin against the local FCM server."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg

from sms.texts import text
from tests.factory import Factory, iso, move, new_phone, next_local
from tests.fcm_server import FcmServer
from tests.notifications.conftest import Worker, app_patient, awake_scene, book, register, wait_for

StartWorker = Callable[..., tuple[Worker, Path]]
# What the results below say: none of it may reach a lock screen or an SMS.
RESULTS = {
    "entries": [
        {"kind": "condition", "code": "I10", "display": "Essential hypertension"},
        {"kind": "note", "text": "Start amlodipine, review in 4 weeks", "category": "plan"},
    ]
}
SECRETS = ("I10", "hypertension", "amlodipine", "review in 4 weeks")


async def _complete(factory: Factory, db: asyncpg.Pool, specialist_headers: dict[str, str], appointment: str) -> Any:
    await db.execute("UPDATE appointments SET status = 'checked_in' WHERE id = $1", uuid.UUID(appointment))
    response = await factory.client.post(
        f"/v1/appointments/{appointment}/complete", json=RESULTS, headers=specialist_headers
    )
    assert response.status_code == 200, response.text
    return response.json()


class TestResultReady:
    async def test_completing_a_consultation_writes_one_event_with_the_results(
        self, factory: Factory, db: asyncpg.Pool
    ) -> None:
        """The event commits with the results (and not without them: a refused result writes none)."""
        scene = await awake_scene(factory)
        patient = await app_patient(factory, scene.post)
        good = await book(factory, scene, patient.patient_id, "09:00")
        done = await _complete(factory, db, scene.specialist.headers, good)
        bad = await book(factory, scene, patient.patient_id, "10:00")
        await db.execute("UPDATE appointments SET status = 'checked_in' WHERE id = $1", uuid.UUID(bad))
        refused = await factory.client.post(
            f"/v1/appointments/{bad}/complete",
            json={"entries": [{"kind": "condition", "code": "not-icd"}]},
            headers=scene.specialist.headers,
        )
        assert refused.status_code == 422
        events = await db.fetch(
            "SELECT payload FROM outbox WHERE topic = 'record.result_ready' AND payload->>'patient_id' = $1",
            str(patient.patient_id),
        )
        assert [e["payload"] for e in events] == [
            {"patient_id": str(patient.patient_id), "appointment_id": good, "encounter_id": done["encounter"]["id"]}
        ]

    async def test_result_ready_arrives_without_detail_by_push_and_by_sms(
        self, factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
    ) -> None:
        scene = await awake_scene(factory)
        patient = await app_patient(factory, scene.post)  # prefers the app, reads French
        await register(factory, patient.token, f"res-p-{unique}")
        await register(factory, scene.chw.token, f"res-chw-{unique}", language="km")
        by_sms = new_phone()
        texted = await factory.patient(scene.post, phone=by_sms, preferred_language="vi")  # prefers SMS
        start_worker()
        first = await book(factory, scene, patient.patient_id, "09:00")
        second = await book(factory, scene, texted, "09:30")
        await _complete(factory, db, scene.specialist.headers, first)
        await _complete(factory, db, scene.specialist.headers, second)

        async def delivered() -> bool:
            rows = await db.fetch(
                "SELECT state FROM notifications WHERE kind = 'result_ready' AND appointment_id = ANY($1::uuid[])",
                [uuid.UUID(first), uuid.UUID(second)],
            )
            return len(rows) == 4 and all(r["state"] == "sent" for r in rows)  # 2 patients, the CHW twice

        await wait_for(delivered, what="result ready, to both patients and the health worker")
        to_patient = [m for m in fcm.to(f"res-p-{unique}") if m["data"]["kind"] == "result_ready"]
        assert len(to_patient) == 1
        assert to_patient[0]["notification"]["body"] == text("fr", "sms_result_ready")
        to_chw = [m for m in fcm.to(f"res-chw-{unique}") if m["data"]["kind"] == "result_ready"]
        assert [m["notification"]["body"] for m in to_chw] == [text("km", "result_ready_staff")] * 2
        sms = await db.fetchval("SELECT array_agg(body) FROM sms_messages WHERE to_phone = $1", by_sms)
        assert text("vi", "sms_result_ready") in sms
        for message in (*to_patient, *to_chw, *sms):
            assert not any(secret.lower() in str(message).lower() for secret in SECRETS)


class TestReferralAnswered:
    async def test_the_referring_health_worker_and_the_patient_hear_in_their_language(
        self, factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
    ) -> None:
        scene = await awake_scene(factory)
        await factory.post(
            f"/v1/facilities/{scene.post}/referral-targets",
            {"facility_id": str(scene.centre)},
            await factory.admin_token(),
        )
        patient = await app_patient(factory, scene.post)
        await register(factory, patient.token, f"ref-p-{unique}")
        await register(factory, scene.chw.token, f"ref-chw-{unique}", language="vi")
        start_worker()
        body = {
            "patient_id": str(patient.patient_id),
            "to_facility_id": str(scene.centre),
            "specialty": "cardiology",
            "urgency": "urgent",
            "reason": "BP 180/110 despite treatment",
        }
        referral = await factory.post("/v1/referrals", body, scene.chw.token)
        answered = await factory.client.post(
            f"/v1/referrals/{referral['id']}/triage",
            json={"decision": "advise", "advice": "Double the amlodipine dose"},
            headers=scene.specialist.headers,
        )
        assert answered.status_code == 200, answered.text

        async def delivered() -> list[Any]:
            rows = await db.fetch(
                "SELECT user_id, patient_id, language, state FROM notifications "
                "WHERE kind = 'referral_answered' AND data->>'referral_id' = $1",
                referral["id"],
            )
            return list(rows) if len(rows) == 2 and all(r["state"] == "sent" for r in rows) else []

        rows = await wait_for(delivered, what="the referral's outcome, to both")
        assert {(r["user_id"], r["patient_id"], r["language"]) for r in rows} == {
            (scene.chw.user_id, None, "vi"),
            (None, patient.patient_id, "fr"),
        }
        assert [m["notification"]["body"] for m in fcm.to(f"ref-chw-{unique}")] == [text("vi", "referral_answered")]
        assert [m["notification"]["body"] for m in fcm.to(f"ref-p-{unique}")] == [text("fr", "referral_answered")]
        for message in (*fcm.to(f"ref-chw-{unique}"), *fcm.to(f"ref-p-{unique}")):
            assert "amlodipine" not in str(message)
            assert "180/110" not in str(message)


class TestBookingHealthWorker:
    async def test_hears_of_a_move_and_a_cancel_on_their_clock_and_in_their_language(
        self, factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
    ) -> None:
        scene = await awake_scene(factory)
        # The health post keeps another clock than the centre: its health worker reads its time.
        await db.execute("UPDATE facilities SET timezone = 'Europe/Paris' WHERE id = $1", scene.post)
        patient = await app_patient(factory, scene.post)
        await register(factory, scene.chw.token, f"bhw-{unique}", language="fr")
        start_worker()
        appointment = await book(factory, scene, patient.patient_id, "09:00", days_ahead=3)
        later = next_local("Asia/Phnom_Penh", "10:00", 3)
        moved = await factory.client.post(
            f"/v1/appointments/{appointment}/reschedule", json={"start": iso(later)}, headers=patient.headers
        )
        assert moved.status_code == 200, moved.text
        cancelled = await factory.client.post(
            f"/v1/appointments/{appointment}/cancel", json={}, headers=patient.headers
        )
        assert cancelled.status_code == 200, cancelled.text

        async def told() -> list[dict[str, Any]]:
            got = fcm.to(f"bhw-{unique}")
            return got if len(got) == 2 else []

        messages = await wait_for(told, what="the move and the cancel, to the health worker")
        assert sorted(m["data"]["kind"] for m in messages) == ["appointment_cancelled", "appointment_moved"]
        bodies = {m["data"]["kind"]: m["notification"]["body"] for m in messages}
        assert bodies["appointment_moved"].startswith("Une consultation est déplacée au")  # the staff text, French
        assert later.astimezone(ZoneInfo("Europe/Paris")).strftime("%H:%M") in bodies["appointment_moved"]
        assert "10:00" not in bodies["appointment_moved"]  # not the centre's clock
        assert bodies["appointment_cancelled"].startswith("La consultation du")


class TestWaitingRoom:
    async def test_a_check_in_wakes_the_specialists_app_with_a_data_only_push(
        self, factory: Factory, db: asyncpg.Pool, fcm: FcmServer, start_worker: StartWorker, unique: str
    ) -> None:
        """A check-in has no text for anyone: the specialist's app gets a silent push to sync its
        waiting room, the patient nothing, and the event is planned (not left as an error)."""
        scene = await awake_scene(factory)
        patient = await app_patient(factory, scene.post)
        await register(factory, patient.token, f"wr-p-{unique}")
        await register(factory, scene.specialist.token, f"wr-s-{unique}", language="km")
        start_worker()
        appointment = await book(factory, scene, patient.patient_id, "09:00")
        await move(db, uuid.UUID(appointment), start_in_min=5)  # check-in opens an hour before
        arrived = await factory.client.post(f"/v1/appointments/{appointment}/check-in", headers=patient.headers)
        assert arrived.status_code == 200, arrived.text

        async def synced() -> list[dict[str, Any]]:
            got = [m for m in fcm.to(f"wr-s-{unique}") if m["data"]["kind"] == "sync"]
            return got or []

        [silent] = await wait_for(synced, what="the specialist's silent sync")
        assert "notification" not in silent  # data only: nothing on the lock screen
        assert silent["data"]["appointment_id"] == appointment
        unplanned = await db.fetchval(
            "SELECT count(*) FROM outbox WHERE topic = 'appointment.check_in' AND payload->>'appointment_id' = $1"
            " AND processed_at IS NULL",
            appointment,
        )
        assert unplanned == 0
        assert "sync" not in [m["data"]["kind"] for m in fcm.to(f"wr-p-{unique}")]
