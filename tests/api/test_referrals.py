"""Referrals end to end through HTTP: refer with observations, the centre's triage queue, accept
and book / advise / decline, the outcome back to the health post and patient via the outbox."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from fhir.resources.R4B.encounter import Encounter
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, PatientLogin, Staff, iso, next_local

Client = AsyncTestClient[Litestar]


@dataclass(frozen=True)
class Network:
    centre: uuid.UUID
    post: uuid.UUID
    specialist: Staff
    chw: Staff
    patient: PatientLogin


async def network(factory: Factory) -> Network:
    centre = await factory.facility()
    post = await factory.facility(kind="health_post")
    await factory.post(
        f"/v1/facilities/{post}/referral-targets", {"facility_id": str(centre)}, await factory.admin_token()
    )
    specialist = await factory.staff(centre)
    await factory.weekly(specialist)
    return Network(centre, post, specialist, await factory.staff(post, role="chw"), await factory.patient_login(post))


async def refer(client: Client, n: Network, expect: int = 201, **fields: Any) -> Any:
    body = {
        "patient_id": str(n.patient.patient_id),
        "to_facility_id": str(n.centre),
        "specialty": "cardiology",
        "urgency": "urgent",
        "reason": "BP 180/110 despite treatment",
        **fields,
    }
    response = await client.post("/v1/referrals", json=body, headers=n.chw.headers)
    assert response.status_code == expect, response.text
    return response.json()


async def outbox(db: asyncpg.Pool, referral_id: str) -> list[tuple[str, dict[str, Any]]]:
    rows = await db.fetch(
        "SELECT topic, payload FROM outbox WHERE payload->>'referral_id' = $1 ORDER BY id", referral_id
    )
    return [(r["topic"], r["payload"]) for r in rows]


class TestRefer:
    async def test_refer_with_observations_and_the_centre_reads_the_record(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        n = await network(factory)
        bp = {
            "kind": "observation",
            "code": "85354-9",
            "components": [
                {"code": "8480-6", "value": 180, "unit": "mm[Hg]"},
                {"code": "8462-4", "value": 110, "unit": "mm[Hg]"},
            ],
        }
        record = f"/v1/patients/{n.patient.patient_id}/record"
        observation = (await client.post(record, json=bp, headers=n.chw.headers)).json()
        assert (await client.get(record, headers=n.specialist.headers)).json()["code"] == "consent_required"
        referral = await refer(client, n, observation_ids=[observation["id"]])
        assert (referral["status"], referral["from_facility_id"]) == ("requested", str(n.post))
        assert referral["observation_ids"] == [observation["id"]]
        assert await outbox(db, referral["id"]) == [
            ("referral.requested", {"referral_id": referral["id"], "status": "requested", "urgency": "urgent",
                                    "facility_id": str(n.centre)}),
        ]  # fmt: skip
        # Referring shares the record with the centre that will treat.
        assert (await client.get(record, headers=n.specialist.headers)).status_code == 200

    async def test_refused_outside_the_network_or_with_foreign_observations(
        self, client: Client, factory: Factory
    ) -> None:
        n = await network(factory)
        elsewhere = await factory.facility()
        assert (await refer(client, n, 422, to_facility_id=str(elsewhere)))["code"] == "not_in_network"
        # an unknown centre is a 404 naming the field, not "outside the network"
        unknown = await refer(client, n, 404, to_facility_id=str(uuid.uuid4()))
        assert (unknown["code"], unknown["errors"][0]["field"]) == ("facility_not_found", "to_facility_id")
        assert (await refer(client, n, 422, observation_ids=[str(uuid.uuid4())]))["code"] == "observation_not_found"


class TestWorkLists:
    async def test_queue_by_urgency_then_age_and_the_posts_list(self, client: Client, factory: Factory) -> None:
        n = await network(factory)
        routine = await refer(client, n, urgency="routine")
        emergency = await refer(client, n, urgency="emergency")
        urgent = await refer(client, n, urgency="urgent")
        later_emergency = await refer(client, n, urgency="emergency")
        queue = await client.get(f"/v1/facilities/{n.centre}/triage-queue", headers=n.specialist.headers)
        assert queue.status_code == 200, queue.text
        assert [r["id"] for r in queue.json()["items"]] == [
            emergency["id"],
            later_emergency["id"],
            urgent["id"],
            routine["id"],
        ]
        denied = await client.get(f"/v1/facilities/{n.centre}/triage-queue", headers=n.chw.headers)
        assert denied.status_code == 403
        decline = {"decision": "decline", "reason": "treat locally"}
        await client.post(f"/v1/referrals/{routine['id']}/triage", json=decline, headers=n.specialist.headers)
        sent = await client.get(f"/v1/facilities/{n.post}/referrals", headers=n.chw.headers)
        assert {r["id"]: r["status"] for r in sent.json()["items"]}[routine["id"]] == "declined"
        still_open = await client.get(
            f"/v1/facilities/{n.post}/referrals", params={"status": "requested"}, headers=n.chw.headers
        )
        assert len(still_open.json()["items"]) == 3


class TestTriage:
    async def test_accept_books_and_the_loop_closes(self, client: Client, factory: Factory, db: asyncpg.Pool) -> None:
        n = await network(factory)
        referral = await refer(client, n)
        start = iso(next_local("Asia/Phnom_Penh", "10:30"))
        response = await client.post(
            f"/v1/referrals/{referral['id']}/triage",
            json={"decision": "accept", "start": start, "mode": "video"},
            headers=n.specialist.headers,
        )
        assert response.status_code == 200, response.text
        accepted = response.json()
        assert accepted["status"] == "accepted"
        appointment = await client.get(f"/v1/appointments/{accepted['appointment_id']}", headers=n.chw.headers)
        assert appointment.json()["start"] == start
        assert appointment.json()["practitioner_id"] == str(n.specialist.practitioner_id)
        topics = [
            (topic, payload.get("facility_id") or payload.get("patient_id"))
            for topic, payload in await outbox(db, referral["id"])
        ]
        assert topics == [
            ("referral.requested", str(n.centre)),
            ("referral.outcome", str(n.post)),
            ("patient.referral_outcome", str(n.patient.patient_id)),
        ]
        again = await client.post(
            f"/v1/referrals/{referral['id']}/triage",
            json={"decision": "decline", "reason": "x"},
            headers=n.specialist.headers,
        )
        assert again.json()["code"] == "invalid_status"

    async def test_advice_lands_in_the_record(self, client: Client, factory: Factory) -> None:
        n = await network(factory)
        referral = await refer(client, n, urgency="routine")
        advice = {"decision": "advise", "advice": "Increase amlodipine to 10 mg; recheck BP in 2 weeks"}
        response = await client.post(
            f"/v1/referrals/{referral['id']}/triage", json=advice, headers=n.specialist.headers
        )
        assert response.status_code == 200, response.text
        assert (response.json()["status"], response.json()["outcome_note"]) == ("answered", advice["advice"])
        notes = await client.get(
            f"/v1/patients/{n.patient.patient_id}/record", params={"kind": "note"}, headers=n.chw.headers
        )
        [note] = notes.json()["items"]
        assert note["body"] == {"text": advice["advice"], "category": "advice"}
        assert note["provenance"]["facility_id"] == str(n.centre)
        # The advice is an asynchronous consultation: an encounter answering the referral holds it.
        encounters = await client.get(
            f"/v1/patients/{n.patient.patient_id}/record", params={"kind": "encounter"}, headers=n.chw.headers
        )
        [encounter] = encounters.json()["items"]
        assert encounter["body"]["mode"] == "async"
        assert encounter["body"]["referral_id"] == referral["id"]
        assert note["encounter_id"] == encounter["id"]
        fhir = await client.get(f"/fhir/Encounter/{encounter['id']}", headers=n.chw.headers)
        assert fhir.status_code == 200, fhir.text
        assert fhir.json()["basedOn"] == [{"reference": f"ServiceRequest/{referral['id']}"}]
        Encounter.model_validate(fhir.json())

    async def test_only_the_centre_triages_and_only_the_two_facilities_read(
        self, client: Client, factory: Factory
    ) -> None:
        n = await network(factory)
        referral = await refer(client, n)
        decline = {"decision": "decline", "reason": "no cardiologist this month"}
        response = await client.post(f"/v1/referrals/{referral['id']}/triage", json=decline, headers=n.chw.headers)
        assert response.json()["code"] == "role_required"
        outsider = await factory.staff(await factory.facility())
        assert (await client.get(f"/v1/referrals/{referral['id']}", headers=outsider.headers)).status_code == 403
        assert (await client.get(f"/v1/referrals/{referral['id']}", headers=n.chw.headers)).status_code == 200
        response = await client.post(
            f"/v1/referrals/{referral['id']}/triage", json=decline, headers=n.specialist.headers
        )
        assert (response.json()["status"], response.json()["outcome_note"]) == ("declined", decline["reason"])


class TestCancel:
    async def test_the_referrer_withdraws_before_triage_only(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        n = await network(factory)
        referral = await refer(client, n)
        path = f"/v1/referrals/{referral['id']}/cancel"
        assert (await client.post(path, headers=n.specialist.headers)).status_code == 403
        response = await client.post(path, json={"reason": "patient recovered"}, headers=n.chw.headers)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "cancelled"
        assert [t for t, _ in await outbox(db, referral["id"])] == ["referral.requested", "referral.cancelled"]
        queue = await client.get(f"/v1/facilities/{n.centre}/triage-queue", headers=n.specialist.headers)
        assert referral["id"] not in {r["id"] for r in queue.json()["items"]}
        again = await client.post(path, headers=n.chw.headers)
        assert again.json()["code"] == "invalid_status"
