"""Who may see and do what: patients, CHWs, specialists and admins, each kept to their own."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, PatientLogin, Staff, auth, iso, next_local

Client = AsyncTestClient[Litestar]


@dataclass(frozen=True)
class Network:
    centre: uuid.UUID
    post_a: uuid.UUID
    post_b: uuid.UUID
    spec_1: Staff
    spec_2: Staff
    chw_a: Staff
    chw_b: Staff
    alice: PatientLogin
    bob: PatientLogin


async def _network(factory: Factory) -> Network:
    centre = await factory.facility()
    post_a = await factory.facility(kind="health_post")
    post_b = await factory.facility(kind="health_post")
    spec_1 = await factory.staff(centre, specialties=["cardiology"])
    spec_2 = await factory.staff(centre, specialties=["paediatrics"])
    for s in (spec_1, spec_2):
        await factory.weekly(s)
    chw_a = await factory.staff(post_a, role="chw")
    chw_b = await factory.staff(post_b, role="chw")
    alice = await factory.patient_login(post_a)
    bob = await factory.patient_login(post_b)
    return Network(centre, post_a, post_b, spec_1, spec_2, chw_a, chw_b, alice, bob)


async def _book(client: Client, who: Staff | PatientLogin, patient: PatientLogin, specialist: Staff, at: str) -> str:
    response = await client.post(
        "/v1/appointments",
        headers=who.headers,
        json={
            "patient_id": str(patient.patient_id),
            "practitioner_id": str(specialist.practitioner_id),
            "start": iso(next_local("Asia/Phnom_Penh", at)),
        },
    )
    assert response.status_code == 201, response.text
    appointment_id: str = response.json()["id"]
    return appointment_id


class TestPatients:
    async def test_a_patient_cannot_see_another_patients_appointments(self, client: Client, factory: Factory) -> None:
        n = await _network(factory)
        alice, bob = n.alice, n.bob
        mine = await _book(client, alice, alice, n.spec_1, "08:00")
        theirs = await _book(client, bob, bob, n.spec_2, "08:00")
        listed = (await client.get("/v1/appointments", headers=alice.headers)).json()["items"]
        assert [a["id"] for a in listed] == [mine]
        direct = await client.get(f"/v1/appointments/{theirs}", headers=alice.headers)
        assert direct.status_code == 403
        assert direct.json()["code"] == "appointment_access_denied"
        by_filter = await client.get(
            "/v1/appointments", params={"patient_id": str(bob.patient_id)}, headers=alice.headers
        )
        assert by_filter.json()["items"] == []
        cancel = await client.post(f"/v1/appointments/{theirs}/cancel", headers=alice.headers)
        assert cancel.status_code == 403

    async def test_a_patient_cannot_book_for_someone_else(self, client: Client, factory: Factory) -> None:
        n = await _network(factory)
        response = await client.post(
            "/v1/appointments",
            headers=n.alice.headers,
            json={
                "patient_id": str(n.bob.patient_id),
                "practitioner_id": str(n.spec_1.practitioner_id),
                "start": iso(next_local("Asia/Phnom_Penh", "09:00")),
            },
        )
        assert response.status_code == 403
        assert response.json()["code"] == "patient_access_denied"


class TestHealthWorkers:
    async def test_a_chw_sees_only_their_facilitys_patients(self, client: Client, factory: Factory) -> None:
        n = await _network(factory)
        chw_a, alice, bob = n.chw_a, n.alice, n.bob
        ok = await client.get(f"/v1/patients/{alice.patient_id}", headers=chw_a.headers)
        assert ok.status_code == 200
        refused = await client.get(f"/v1/patients/{bob.patient_id}", headers=chw_a.headers)
        assert refused.status_code == 403
        assert refused.json()["code"] == "patient_access_denied"
        found = (await client.get("/v1/patients", params={"phone": bob.phone}, headers=chw_a.headers)).json()["items"]
        assert found == []
        await _book(client, n.chw_b, bob, n.spec_1, "10:00")
        assert (await client.get("/v1/appointments", headers=chw_a.headers)).json()["items"] == []
        book_other = await client.post(
            "/v1/appointments",
            headers=chw_a.headers,
            json={
                "patient_id": str(bob.patient_id),
                "practitioner_id": str(n.spec_2.practitioner_id),
                "start": iso(next_local("Asia/Phnom_Penh", "11:00")),
            },
        )
        assert book_other.status_code == 403

    async def test_a_chw_registers_patients_only_at_their_facility(self, client: Client, factory: Factory) -> None:
        n = await _network(factory)
        body = {"names": [{"text": "Test"}], "home_facility_id": str(n.post_b)}
        refused = await client.post("/v1/patients", json=body, headers=n.chw_a.headers)
        assert refused.status_code == 403
        assert refused.json()["code"] == "role_required"


class TestSpecialists:
    async def test_a_specialist_sees_only_their_own_appointments(self, client: Client, factory: Factory) -> None:
        n = await _network(factory)
        spec_1, spec_2 = n.spec_1, n.spec_2
        one = await _book(client, n.chw_a, n.alice, spec_1, "08:30")
        two = await _book(client, n.chw_a, n.alice, spec_2, "09:30")
        listed = (await client.get("/v1/appointments", headers=spec_1.headers)).json()["items"]
        assert [a["id"] for a in listed] == [one]
        other = await client.get(f"/v1/appointments/{two}", headers=spec_1.headers)
        assert other.status_code == 403
        # Their own patient's record is readable; other patients' are not.
        assert (await client.get(f"/v1/patients/{n.alice.patient_id}", headers=spec_1.headers)).status_code == 200
        assert (await client.get(f"/v1/patients/{n.bob.patient_id}", headers=spec_1.headers)).status_code == 403

    async def test_a_specialist_manages_only_their_own_schedule(self, client: Client, factory: Factory) -> None:
        n = await _network(factory)
        spec_1, spec_2 = n.spec_1, n.spec_2
        body = {"facility_id": str(n.centre), "rules": [{"weekday": 1, "start": "08:00", "end": "09:00"}]}
        refused = await client.put(
            f"/v1/practitioners/{spec_2.practitioner_id}/availability", json=body, headers=spec_1.headers
        )
        assert refused.status_code == 403
        assert refused.json()["code"] == "schedule_access_denied"
        elsewhere = await client.put(
            f"/v1/practitioners/{spec_1.practitioner_id}/availability",
            json={**body, "facility_id": str(n.post_a)},
            headers=spec_1.headers,
        )
        assert elsewhere.status_code == 403
        assert elsewhere.json()["code"] == "not_a_member"
        admin = await factory.facility_admin(n.centre)
        allowed = await client.put(
            f"/v1/practitioners/{spec_2.practitioner_id}/availability", json=body, headers=auth(admin)
        )
        assert allowed.status_code == 200

    async def test_patients_cannot_mark_no_shows_or_create_facilities(self, client: Client, factory: Factory) -> None:
        n = await _network(factory)
        facility = {"name": "X", "kind": "health_post", "timezone": "Asia/Phnom_Penh", "country": "KH"}
        refused = await client.post("/v1/facilities", json=facility, headers=n.alice.headers)
        assert refused.status_code == 403
        assert refused.json()["code"] == "role_required"
        practitioner = {"name": "Y", "phone": "+85512999999", "facility_id": str(n.centre), "role": "specialist"}
        by_chw = await client.post("/v1/practitioners", json=practitioner, headers=n.chw_a.headers)
        assert by_chw.status_code == 403


class TestAudit:
    async def test_reads_and_writes_are_audited_in_the_same_transaction(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        n = await _network(factory)
        alice = n.alice
        appointment = await _book(client, n.chw_a, alice, n.spec_1, "10:30")
        await client.get(f"/v1/patients/{alice.patient_id}", headers=n.spec_1.headers)
        rows = await db.fetch(
            "SELECT action, resource_type, actor_role, channel, outcome FROM audit_events WHERE patient_id = $1 "
            "ORDER BY id",
            alice.patient_id,
        )
        actions = [(r["action"], r["resource_type"], r["actor_role"]) for r in rows]
        assert ("create", "Patient", "system_admin") in actions
        assert ("book", "Appointment", "chw") in actions
        assert actions[-1] == ("read", "Patient", "specialist")
        assert all(r["outcome"] == "success" and r["channel"] == "app" for r in rows)
        outbox = await db.fetchval(
            "SELECT count(*) FROM outbox WHERE topic = 'appointment.book' AND payload->>'appointment_id' = $1",
            appointment,
        )
        assert outbox == 1


class TestFollowUps:
    async def test_a_specialist_books_follow_ups_only_with_themself_for_their_patients(
        self, client: Client, factory: Factory
    ) -> None:
        n = await _network(factory)
        await _book(client, n.chw_a, n.alice, n.spec_1, "08:00")
        follow_up = {
            "patient_id": str(n.alice.patient_id),
            "practitioner_id": str(n.spec_1.practitioner_id),
            "start": iso(next_local("Asia/Phnom_Penh", "10:00", days_ahead=9)),
        }
        ok = await client.post("/v1/appointments", json=follow_up, headers=n.spec_1.headers)
        assert ok.status_code == 201, ok.text
        for_colleague = {**follow_up, "practitioner_id": str(n.spec_2.practitioner_id)}
        refused = await client.post("/v1/appointments", json=for_colleague, headers=n.spec_1.headers)
        assert refused.status_code == 403
        stranger = {**follow_up, "patient_id": str(n.bob.patient_id)}
        assert (await client.post("/v1/appointments", json=stranger, headers=n.spec_1.headers)).status_code == 403
