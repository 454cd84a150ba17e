"""Booking through HTTP: slots, book, reschedule, cancel, check-in, no-show, and no double booking."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, Staff, iso, local_date, next_local

Client = AsyncTestClient[Litestar]


async def _setup(factory: Factory) -> tuple[uuid.UUID, uuid.UUID, Staff, Staff, uuid.UUID]:
    scene = await factory.scene()
    return scene.centre, scene.post, scene.specialist, scene.chw, scene.patient


class TestSlots:
    async def test_lists_free_slots_in_local_time_and_utc(self, client: Client, factory: Factory) -> None:
        _centre, _post, specialist, chw, _patient = await _setup(factory)
        start = next_local("Asia/Phnom_Penh", "08:00")
        day = local_date(start, "Asia/Phnom_Penh").isoformat()
        response = await client.get(
            "/v1/slots",
            params={"from": day, "to": day, "practitioner_id": str(specialist.practitioner_id)},
            headers=chw.headers,
        )
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert len(items) == 8  # 08:00-12:00 in 30-minute slots
        assert items[0]["start"] == iso(start)
        assert items[0]["start_local"].startswith(f"{day}T08:00:00+07:00")
        assert items[0]["timezone"] == "Asia/Phnom_Penh"

    async def test_filters_by_specialty_and_facility(self, client: Client, factory: Factory) -> None:
        centre, _post, specialist, chw, _patient = await _setup(factory)
        day = local_date(next_local("Asia/Phnom_Penh", "08:00"), "Asia/Phnom_Penh").isoformat()
        params = {"from": day, "to": day, "facility_id": str(centre)}
        found = (
            await client.get("/v1/slots", params={**params, "specialty": "cardiology"}, headers=chw.headers)
        ).json()["items"]
        assert {s["practitioner_id"] for s in found} == {str(specialist.practitioner_id)}
        none = (await client.get("/v1/slots", params={**params, "specialty": "oncology"}, headers=chw.headers)).json()[
            "items"
        ]
        assert none == []


class TestBookingLifecycle:
    async def test_chw_books_for_patient_and_slot_disappears(self, client: Client, factory: Factory) -> None:
        centre, _post, specialist, chw, patient = await _setup(factory)
        start = next_local("Asia/Phnom_Penh", "09:00")
        response = await client.post(
            "/v1/appointments",
            headers=chw.headers,
            json={
                "patient_id": str(patient),
                "practitioner_id": str(specialist.practitioner_id),
                "start": iso(start),
                "mode": "video",
                "reason": "chest pain on exertion",
            },
        )
        assert response.status_code == 201, response.text
        booked = response.json()
        assert booked["status"] == "booked"
        assert booked["facility_id"] == str(centre)
        assert booked["end"] == iso(start + timedelta(minutes=30))
        assert booked["start_local"].endswith("T09:00:00+07:00")
        day = local_date(start, "Asia/Phnom_Penh").isoformat()
        slots = (
            await client.get(
                "/v1/slots",
                params={"from": day, "to": day, "practitioner_id": str(specialist.practitioner_id)},
                headers=chw.headers,
            )
        ).json()["items"]
        assert iso(start) not in {s["start"] for s in slots}
        assert len(slots) == 7

    async def test_reschedule_keeps_history_then_cancel_frees_slot(self, client: Client, factory: Factory) -> None:
        _centre, _post, specialist, chw, patient = await _setup(factory)
        first, second = next_local("Asia/Phnom_Penh", "09:00"), next_local("Asia/Phnom_Penh", "10:30")
        booked = (
            await client.post(
                "/v1/appointments",
                headers=chw.headers,
                json={
                    "patient_id": str(patient),
                    "practitioner_id": str(specialist.practitioner_id),
                    "start": iso(first),
                },
            )
        ).json()
        moved = await client.post(
            f"/v1/appointments/{booked['id']}/reschedule",
            headers=chw.headers,
            json={"start": iso(second), "reason": "patient travelling"},
        )
        assert moved.status_code == 200, moved.text
        assert moved.json()["start"] == iso(second)
        assert moved.json()["version"] == 2
        history = (await client.get(f"/v1/appointments/{booked['id']}/history", headers=chw.headers)).json()
        assert [h["action"] for h in history] == ["book", "reschedule"]
        assert history[0]["start"] == iso(first)
        cancelled = await client.post(
            f"/v1/appointments/{booked['id']}/cancel", headers=chw.headers, json={"reason": "feeling better"}
        )
        assert cancelled.json()["status"] == "cancelled"
        again = await client.post(
            "/v1/appointments",
            headers=chw.headers,
            json={"patient_id": str(patient), "practitioner_id": str(specialist.practitioner_id), "start": iso(second)},
        )
        assert again.status_code == 201, again.text

    async def test_patient_books_for_self_and_checks_in_inside_window(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        _centre, post, specialist, _chw, _patient = await _setup(factory)
        me = await factory.patient_login(post)
        start = next_local("Asia/Phnom_Penh", "08:30")
        booked = await client.post(
            "/v1/appointments",
            headers=me.headers,
            json={
                "patient_id": str(me.patient_id),
                "practitioner_id": str(specialist.practitioner_id),
                "start": iso(start),
                "mode": "audio",
            },
        )
        assert booked.status_code == 201, booked.text
        appointment_id = booked.json()["id"]
        early = await client.post(f"/v1/appointments/{appointment_id}/check-in", headers=me.headers)
        assert early.status_code == 409
        assert early.json()["code"] == "check_in_closed"
        # Move the consultation to start in ten minutes, as if the day had come.
        await db.execute(
            "UPDATE appointments SET start_at = now() + interval '10 minutes', "
            "end_at = now() + interval '40 minutes' WHERE id = $1",
            uuid.UUID(appointment_id),
        )
        checked = await client.post(f"/v1/appointments/{appointment_id}/check-in", headers=me.headers)
        assert checked.status_code == 200, checked.text
        assert checked.json()["status"] == "checked_in"

    async def test_no_show_only_by_staff_after_start(self, client: Client, factory: Factory, db: asyncpg.Pool) -> None:
        _centre, post, specialist, _chw, _patient = await _setup(factory)
        me = await factory.patient_login(post)
        start = next_local("Asia/Phnom_Penh", "11:00")
        appointment_id = (
            await client.post(
                "/v1/appointments",
                headers=me.headers,
                json={
                    "patient_id": str(me.patient_id),
                    "practitioner_id": str(specialist.practitioner_id),
                    "start": iso(start),
                },
            )
        ).json()["id"]
        too_early = await client.post(f"/v1/appointments/{appointment_id}/no-show", headers=specialist.headers)
        assert too_early.status_code == 409
        assert too_early.json()["code"] == "not_started"
        await db.execute(
            "UPDATE appointments SET start_at = now() - interval '20 minutes', "
            "end_at = now() + interval '10 minutes' WHERE id = $1",
            uuid.UUID(appointment_id),
        )
        by_patient = await client.post(f"/v1/appointments/{appointment_id}/no-show", headers=me.headers)
        assert by_patient.status_code == 403
        marked = await client.post(f"/v1/appointments/{appointment_id}/no-show", headers=specialist.headers)
        assert marked.status_code == 200, marked.text
        assert marked.json()["status"] == "no_show"
        cancel = await client.post(f"/v1/appointments/{appointment_id}/cancel", headers=specialist.headers)
        assert cancel.status_code == 409
        assert cancel.json()["code"] == "invalid_status"


class TestNoDoubleBooking:
    async def test_fifty_concurrent_bookings_of_one_slot(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        _centre, post, specialist, chw, _patient = await _setup(factory)
        patients = [await factory.patient(post, token=chw.token) for _ in range(50)]
        start = iso(next_local("Asia/Phnom_Penh", "10:00"))

        async def attempt(patient_id: uuid.UUID) -> int:
            response = await client.post(
                "/v1/appointments",
                headers=chw.headers,
                json={
                    "patient_id": str(patient_id),
                    "practitioner_id": str(specialist.practitioner_id),
                    "start": start,
                },
            )
            if response.status_code == 409:
                assert response.json()["code"] == "slot_taken"
            return response.status_code

        statuses = await asyncio.gather(*(attempt(p) for p in patients))
        assert statuses.count(201) == 1
        assert statuses.count(409) == 49
        rows = await db.fetchval(
            "SELECT count(*) FROM appointments WHERE practitioner_id = $1", specialist.practitioner_id
        )
        assert rows == 1

    async def test_patient_cannot_be_in_two_consultations_at_once(self, client: Client, factory: Factory) -> None:
        centre, _post, specialist, chw, patient = await _setup(factory)
        other = await factory.staff(centre, specialties=["dermatology"])
        await factory.weekly(other)
        start = iso(next_local("Asia/Phnom_Penh", "09:30"))
        first = await client.post(
            "/v1/appointments",
            headers=chw.headers,
            json={"patient_id": str(patient), "practitioner_id": str(specialist.practitioner_id), "start": start},
        )
        assert first.status_code == 201
        second = await client.post(
            "/v1/appointments",
            headers=chw.headers,
            json={"patient_id": str(patient), "practitioner_id": str(other.practitioner_id), "start": start},
        )
        assert second.status_code == 409
        assert second.json()["code"] == "patient_double_booked"


class TestUnknownIds:
    async def test_every_id_of_a_booking_is_checked_for_existence(self, client: Client, factory: Factory) -> None:
        """An unknown practitioner is a 404 naming it, not "slot unavailable"; so is an unknown patient."""
        scene = await factory.scene()
        for field, code in (("practitioner_id", "practitioner_not_found"), ("patient_id", "patient_not_found")):
            response = await client.post(
                "/v1/appointments", json={**scene.booking(), field: str(uuid.uuid4())}, headers=scene.chw.headers
            )
            assert response.status_code == 404, response.text
            assert response.json()["code"] == code
            assert response.json()["errors"][0]["field"] == field
