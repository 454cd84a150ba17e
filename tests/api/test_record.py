"""The shared record through HTTP: writes with provenance, validation, versioning (corrections and
entered-in-error keep history), and completing a consultation in one transaction."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, Scene

Client = AsyncTestClient[Litestar]

BP = {
    "kind": "observation",
    "code": "85354-9",
    "components": [
        {"code": "8480-6", "value": 150, "unit": "mm[Hg]"},
        {"code": "8462-4", "value": 95, "unit": "mm[Hg]"},
    ],
}
TEMPERATURE = {"kind": "observation", "code": "8310-5", "value": 38.2, "unit": "Cel"}


async def write(client: Client, scene: Scene, body: dict[str, Any], expect: int = 201) -> Any:
    response = await client.post(f"/v1/patients/{scene.patient}/record", json=body, headers=scene.chw.headers)
    assert response.status_code == expect, response.text
    return response.json()


async def checked_in(client: Client, db: asyncpg.Pool, scene: Scene) -> str:
    """A booked consultation whose patient has arrived (check-in time is forced in the database)."""
    response = await client.post("/v1/appointments", json=scene.booking(), headers=scene.chw.headers)
    assert response.status_code == 201, response.text
    appointment_id: str = response.json()["id"]
    await db.execute("UPDATE appointments SET status = 'checked_in' WHERE id = $1", uuid.UUID(appointment_id))
    return appointment_id


class TestWrite:
    async def test_vitals_carry_loinc_ucum_and_provenance(self, client: Client, factory: Factory) -> None:
        scene = await factory.scene()
        bp = await write(client, scene, BP)
        assert bp["kind"] == "observation"
        assert bp["version"] == 1
        assert bp["status"] == "current"
        assert bp["code"] == "85354-9"
        assert bp["body"]["system"] == "http://loinc.org"
        assert [c["display"] for c in bp["body"]["components"]] == [
            "Systolic blood pressure",
            "Diastolic blood pressure",
        ]
        assert bp["provenance"]["author_user_id"] == str(scene.chw.user_id)
        assert bp["provenance"]["author_role"] == "chw"
        assert bp["provenance"]["facility_id"] == str(scene.post)
        assert bp["provenance"]["channel"] == "app"
        temperature = await write(client, scene, TEMPERATURE)
        record = await client.get(f"/v1/patients/{scene.patient}/record", headers=scene.chw.headers)
        assert record.status_code == 200, record.text
        assert {e["id"] for e in record.json()["items"]} == {bp["id"], temperature["id"]}

    async def test_each_kind_is_accepted(self, client: Client, factory: Factory) -> None:
        scene = await factory.scene()
        encounter = await write(client, scene, {"kind": "encounter", "mode": "in_person", "reason": "fever"})
        condition = await write(client, scene, {"kind": "condition", "code": "j45.9", "encounter_id": encounter["id"]})
        assert condition["code"] == "J45.9"
        assert condition["encounter_id"] == encounter["id"]
        prescription = {
            "kind": "prescription",
            "drug": "Paracetamol",
            "dose": "500 mg",
            "route": "oral",
            "frequency": "3 times a day",
            "duration_days": 5,
        }
        assert (await write(client, scene, prescription))["body"]["route"] == "oral"
        assert (await write(client, scene, {"kind": "note", "text": "រលាកបំពង់ក"}))["body"]["text"] == "រលាកបំពង់ក"
        kinds = (await client.get(f"/v1/patients/{scene.patient}/record", headers=scene.chw.headers)).json()["items"]
        assert sorted(e["kind"] for e in kinds) == ["condition", "encounter", "note", "prescription"]

    async def test_bad_codes_units_and_values_are_refused(self, client: Client, factory: Factory) -> None:
        scene = await factory.scene()
        cases: list[tuple[dict[str, Any], str]] = [
            ({**TEMPERATURE, "value": 382}, "implausible_value"),
            ({**TEMPERATURE, "unit": "degF"}, "unit_mismatch"),
            ({**TEMPERATURE, "code": "1234-5"}, "unknown_code"),
            ({"kind": "observation", "code": "8310-5"}, "value_required"),
            ({**BP, "components": [{"code": "8310-5", "value": 37, "unit": "Cel"}]}, "unknown_component"),
            ({"kind": "condition", "code": "hypertension"}, "invalid_icd10"),
            ({"kind": "condition", "code": "U07.1"}, "invalid_icd10"),
            ({"kind": "note", "text": "x", "encounter_id": str(uuid.uuid4())}, "encounter_not_found"),
        ]
        for body, code in cases:
            problem = await write(client, scene, body, expect=422)
            assert problem["code"] == code, (body, problem)
        record = (await client.get(f"/v1/patients/{scene.patient}/record", headers=scene.chw.headers)).json()
        assert record["items"] == []

    async def test_only_clinical_staff_who_see_the_patient_write(self, client: Client, factory: Factory) -> None:
        scene = await factory.scene()
        stranger = await factory.staff(await factory.facility(kind="health_post"), role="chw")
        response = await client.post(f"/v1/patients/{scene.patient}/record", json=TEMPERATURE, headers=stranger.headers)
        assert response.status_code == 403
        admin = await factory.facility_admin(scene.post)
        response = await client.post(
            f"/v1/patients/{scene.patient}/record", json=TEMPERATURE, headers={"Authorization": f"Bearer {admin}"}
        )
        assert response.json()["code"] == "role_required"

    async def test_a_write_is_audited_as_the_long_way_audits_it(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        """A vital is written in one statement with its audit event; a prescription the long way
        (service.insert_new): both events say the same things of their entry."""
        scene = await factory.scene()
        vital = await write(client, scene, TEMPERATURE)
        prescription = await write(
            client, scene, {"kind": "prescription", "drug": "Paracetamol", "dose": "500 mg", "route": "oral",
                            "frequency": "3 times a day", "duration_days": 5},
        )  # fmt: skip
        events = {
            r["resource_id"]: r
            for r in await db.fetch(
                """SELECT actor_user_id, actor_role, facility_id, patient_id, action, resource_type, resource_id,
                          purpose, channel, outcome, request_id IS NOT NULL AS has_request
                   FROM audit_events WHERE patient_id = $1 AND action = 'create' AND resource_type <> 'Patient'""",
                scene.patient,
            )
        }
        assert set(events) == {vital["id"], prescription["id"]}
        fast, slow = dict(events[vital["id"]]), dict(events[prescription["id"]])
        assert (fast.pop("resource_type"), slow.pop("resource_type")) == ("Observation", "MedicationRequest")
        assert fast.pop("resource_id") == vital["id"]
        assert slow.pop("resource_id") == prescription["id"]
        assert fast == slow
        assert (fast["actor_user_id"], fast["facility_id"], fast["has_request"]) == (
            scene.chw.user_id,
            scene.post,
            True,
        )

    async def test_a_refused_write_writes_nothing_and_refuses_in_order(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        """Patient, then access, then role, then content: whichever path the write takes."""
        scene = await factory.scene()
        stranger = await factory.staff(await factory.facility(kind="health_post"), role="chw")
        admin = {"Authorization": f"Bearer {await factory.facility_admin(scene.post)}"}
        bad = {**TEMPERATURE, "value": 382}
        cases = [
            (uuid.uuid4(), TEMPERATURE, scene.chw.headers, 404, "patient_not_found"),
            (uuid.uuid4(), bad, scene.chw.headers, 404, "patient_not_found"),
            (scene.patient, TEMPERATURE, stranger.headers, 403, "patient_access_denied"),
            (scene.patient, bad, stranger.headers, 403, "patient_access_denied"),
            (scene.patient, bad, admin, 403, "role_required"),
            (scene.patient, bad, scene.chw.headers, 422, "implausible_value"),
        ]
        for patient, body, headers, status, code in cases:
            response = await client.post(f"/v1/patients/{patient}/record", json=body, headers=headers)
            assert (response.status_code, response.json()["code"]) == (status, code), (patient, body)
        assert await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", scene.patient) == 0
        assert not await db.fetchval(
            "SELECT count(*) FROM audit_events WHERE patient_id = $1 AND action = 'create' AND resource_id <> $1::text",
            scene.patient,
        )


class TestVersions:
    async def test_correction_keeps_history_and_checks_the_version(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        scene = await factory.scene()
        first = await write(client, scene, TEMPERATURE)
        body = {"expected_version": 1, "entry": {**TEMPERATURE, "value": 37.2}, "reason": "misread thermometer"}
        response = await client.post(f"/v1/record/{first['id']}/correct", json=body, headers=scene.chw.headers)
        assert response.status_code == 200, response.text
        second = response.json()
        assert (second["id"], second["version"], second["body"]["value"]) == (first["id"], 2, 37.2)
        assert second["provenance"]["reason"] == "misread thermometer"
        stale = await client.post(f"/v1/record/{first['id']}/correct", json=body, headers=scene.chw.headers)
        assert stale.status_code == 409
        assert stale.json()["code"] == "version_conflict"
        history = (await client.get(f"/v1/record/{first['id']}/history", headers=scene.chw.headers)).json()
        assert [(v["version"], v["status"], v["body"]["value"]) for v in history] == [
            (1, "superseded", 38.2),
            (2, "current", 37.2),
        ]
        stranger = await factory.staff(await factory.facility(kind="health_post"), role="chw")
        peek = await client.post(f"/v1/record/{first['id']}/correct", json=body, headers=stranger.headers)
        assert peek.status_code == 403  # refused before the version is compared: nothing leaks
        wrong_kind = {"expected_version": 2, "entry": {"kind": "note", "text": "x"}, "reason": "oops"}
        response = await client.post(f"/v1/record/{first['id']}/correct", json=wrong_kind, headers=scene.chw.headers)
        assert response.json()["code"] == "kind_mismatch"

    async def test_entered_in_error_hides_but_never_deletes(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        scene = await factory.scene()
        entry = await write(client, scene, TEMPERATURE)
        body = {"expected_version": 1, "reason": "wrong patient"}
        response = await client.post(f"/v1/record/{entry['id']}/entered-in-error", json=body, headers=scene.chw.headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "entered_in_error"
        path = f"/v1/patients/{scene.patient}/record"
        assert (await client.get(path, headers=scene.chw.headers)).json()["items"] == []
        shown = (await client.get(path, params={"include_errors": "true"}, headers=scene.chw.headers)).json()
        assert [e["status"] for e in shown["items"]] == ["entered_in_error"]
        again = {"expected_version": 2, "entry": TEMPERATURE, "reason": "undo"}
        response = await client.post(f"/v1/record/{entry['id']}/correct", json=again, headers=scene.chw.headers)
        assert response.json()["code"] == "entered_in_error"

    async def test_the_database_refuses_deletes_and_rewrites(self, factory: Factory, db: asyncpg.Pool) -> None:
        scene = await factory.scene()
        entry = await write(factory.client, scene, TEMPERATURE)
        entry_id = uuid.UUID(entry["id"])
        for sql in (
            "DELETE FROM record_entries WHERE id = $1",
            "UPDATE record_entries SET body = '{}' WHERE id = $1",
            "UPDATE record_entries SET status = 'entered_in_error' WHERE id = $1",
        ):
            try:
                await db.execute(sql, entry_id)
            except asyncpg.RestrictViolationError:
                continue
            raise AssertionError(f"{sql} was allowed")

    async def test_writes_and_reads_are_audited(self, client: Client, factory: Factory, db: asyncpg.Pool) -> None:
        scene = await factory.scene()
        entry = await write(client, scene, TEMPERATURE)
        await client.get(f"/v1/record/{entry['id']}", headers=scene.chw.headers)
        rows = await db.fetch(
            "SELECT action, resource_type FROM audit_events WHERE resource_id = $1 ORDER BY id", entry["id"]
        )
        assert [(r["action"], r["resource_type"]) for r in rows] == [("create", "Observation"), ("read", "Observation")]


class TestCompleteConsultation:
    async def test_results_and_status_commit_together_and_once(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        scene = await factory.scene()
        appointment_id = await checked_in(client, db, scene)
        results = {
            "entries": [
                BP,
                {"kind": "condition", "code": "I10", "display": "Essential hypertension"},
                {"kind": "note", "text": "Start amlodipine, review in 4 weeks", "category": "plan"},
            ]
        }
        headers = {**scene.specialist.headers, "Idempotency-Key": f"complete-{appointment_id}"}
        path = f"/v1/appointments/{appointment_id}/complete"
        first = await client.post(path, json=results, headers=headers)
        assert first.status_code == 200, first.text
        done = first.json()
        assert done["appointment"]["status"] == "completed"
        assert done["encounter"]["appointment_id"] == appointment_id
        assert done["encounter"]["provenance"]["facility_id"] == str(scene.centre)
        assert {e["encounter_id"] for e in done["entries"]} == {done["encounter"]["id"]}
        retry = await client.post(path, json=results, headers=headers)
        assert retry.status_code == 200
        assert retry.json() == done
        count = await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", scene.patient)
        assert count == 4
        again = await client.post(path, json=results, headers=scene.specialist.headers)
        assert again.status_code == 409
        assert again.json()["code"] == "invalid_status"

    async def test_a_bad_result_writes_nothing(self, client: Client, factory: Factory, db: asyncpg.Pool) -> None:
        scene = await factory.scene()
        appointment_id = await checked_in(client, db, scene)
        results = {"entries": [TEMPERATURE, {"kind": "condition", "code": "not-icd"}]}
        response = await client.post(
            f"/v1/appointments/{appointment_id}/complete", json=results, headers=scene.specialist.headers
        )
        assert response.status_code == 422
        status = await db.fetchval("SELECT status FROM appointments WHERE id = $1", uuid.UUID(appointment_id))
        assert status == "checked_in"
        assert await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", scene.patient) == 0

    async def test_only_a_checked_in_consultation_by_its_practitioner(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        scene = await factory.scene()
        response = await client.post("/v1/appointments", json=scene.booking(), headers=scene.chw.headers)
        appointment_id = response.json()["id"]
        path = f"/v1/appointments/{appointment_id}/complete"
        booked = await client.post(path, headers=scene.specialist.headers)
        assert booked.json()["code"] == "invalid_status"
        await db.execute("UPDATE appointments SET status = 'in_progress' WHERE id = $1", uuid.UUID(appointment_id))
        other = await factory.staff(scene.centre)
        response = await client.post(path, headers=other.headers)
        assert response.status_code == 403
        response = await client.post(path, headers=scene.specialist.headers)
        assert response.status_code == 200, response.text
        assert response.json()["encounter"]["body"]["mode"] == "video"
