"""The FHIR interface: every resource type the server emits validates against the FHIR models
(fhir.resources, R4B package) and the suite's independent R4 validator (tests/fhir_conformance.py),
search Bundles page, _history follows the record's versions,
$everything gathers the record, and consent applies as in the app API."""

from __future__ import annotations

import importlib
import uuid
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.fhir.errors import code_of
from tests.factory import Factory, iso, next_local
from tests.fhir_conformance import CONFORMANCE

Client = AsyncTestClient[Litestar]


def validate(resource: dict[str, Any]) -> None:
    """Parse with the FHIR model of the resource's type; any error fails the test. The resource is
    also queued for the suite's independent R4 validator (tests/fhir_conformance.py), which fails
    the test at its end."""
    CONFORMANCE.collect(resource, "a FHIR client")
    name = resource["resourceType"]
    model = getattr(importlib.import_module(f"fhir.resources.R4B.{name.lower()}"), name)
    model.model_validate(resource)


async def fhir_get(client: Client, path: str, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    response = await client.get(path, params=params or None, headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    body: dict[str, Any] = response.json()
    validate(body)
    return body


async def rich_record(client: Client, factory: Factory, db: asyncpg.Pool) -> dict[str, Any]:
    """A patient with a completed consultation, a correction, an error, a referral and a consent."""
    centre = await factory.facility()
    post = await factory.facility(kind="health_post")
    await factory.post(
        f"/v1/facilities/{post}/referral-targets", {"facility_id": str(centre)}, await factory.admin_token()
    )
    specialist = await factory.staff(centre)
    await factory.weekly(specialist)
    chw = await factory.staff(post, role="chw")
    patient = await factory.patient(
        post,
        token=chw.token,
        birth_date="1979-03-02",
        birth_year=1979,
        identifiers=[{"system": "urn:kh:health-id", "value": uuid.uuid4().hex[:10]}],
    )
    booking = {"patient_id": str(patient), "practitioner_id": str(specialist.practitioner_id),
               "start": iso(next_local("Asia/Phnom_Penh", "08:30"))}  # fmt: skip
    appointment = (await client.post("/v1/appointments", json=booking, headers=chw.headers)).json()
    await db.execute("UPDATE appointments SET status = 'checked_in' WHERE id = $1", uuid.UUID(appointment["id"]))
    results = {
        "entries": [
            {"kind": "observation", "code": "85354-9", "components": [
                {"code": "8480-6", "value": 150, "unit": "mm[Hg]"}, {"code": "8462-4", "value": 95, "unit": "mm[Hg]"}]},
            {"kind": "observation", "code": "29463-7", "value": 61.5, "unit": "kg"},
            {"kind": "condition", "code": "I10", "display": "Essential hypertension", "note": "new"},
            {"kind": "prescription", "drug": "Amlodipine", "dose": "5 mg", "route": "oral",
             "frequency": "once a day", "duration_days": 30, "instructions": "in the morning"},
        ]
    }  # fmt: skip
    done = await client.post(f"/v1/appointments/{appointment['id']}/complete", json=results, headers=specialist.headers)
    assert done.status_code == 200, done.text
    completed = done.json()
    weight = completed["entries"][1]
    fix = {"expected_version": 1, "entry": {"kind": "observation", "code": "29463-7", "value": 62.5, "unit": "kg"},
           "reason": "scale misread"}  # fmt: skip
    assert (await client.post(f"/v1/record/{weight['id']}/correct", json=fix, headers=chw.headers)).status_code == 200
    wrong = await client.post(f"/v1/patients/{patient}/record", headers=chw.headers,
                              json={"kind": "condition", "code": "E11.9"})  # fmt: skip
    await client.post(f"/v1/record/{wrong.json()['id']}/entered-in-error", headers=chw.headers,
                      json={"expected_version": 1, "reason": "wrong patient"})  # fmt: skip
    referral = (await client.post("/v1/referrals", headers=chw.headers, json={
        "patient_id": str(patient), "to_facility_id": str(centre), "specialty": "cardiology", "urgency": "emergency",
        "reason": "chest pain", "observation_ids": [completed["entries"][0]["id"]]})).json()  # fmt: skip
    consent = {"scope": "network", "method": "chw_witness", "witness_name": "Chan Sophea"}
    assert (await client.post(f"/v1/patients/{patient}/consents", json=consent, headers=chw.headers)).status_code == 201
    return {"patient": patient, "post": post, "chw": chw, "specialist": specialist, "centre": centre,
            "appointment": appointment,
            "completed": completed, "weight": weight, "wrong": wrong.json(), "referral": referral}  # fmt: skip


async def test_every_resource_type_validates(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    h = r["chw"].headers
    metadata = await client.get("/fhir/metadata")
    assert metadata.status_code == 200
    validate(metadata.json())
    emitted: set[str] = set()
    for path in (
        f"/fhir/Patient/{r['patient']}",
        f"/fhir/Practitioner/{r['specialist'].practitioner_id}",
        f"/fhir/Organization/{r['centre']}",
        f"/fhir/Appointment/{r['appointment']['id']}",
        f"/fhir/Encounter/{r['completed']['encounter']['id']}",
        f"/fhir/ServiceRequest/{r['referral']['id']}",
        f"/fhir/Location/{r['centre']}",
        f"/fhir/Schedule/{r['specialist'].practitioner_id}",
    ):
        emitted.add((await fhir_get(client, path, h))["resourceType"])
    for kind in ("Observation", "Condition", "MedicationRequest", "Encounter"):
        found = await fhir_get(client, f"/fhir/{kind}", h, patient=str(r["patient"]))
        assert found["entry"], kind
        emitted |= {e["resource"]["resourceType"] for e in found["entry"]}
    consents = await fhir_get(client, "/fhir/Consent", h, patient=str(r["patient"]))
    emitted |= {e["resource"]["resourceType"] for e in consents["entry"]}
    slots = await fhir_get(client, "/fhir/Slot", h, schedule=f"Schedule/{r['specialist'].practitioner_id}")
    assert slots["entry"]
    emitted |= {e["resource"]["resourceType"] for e in slots["entry"]}
    provenance = await fhir_get(client, "/fhir/Provenance", h, patient=str(r["patient"]))
    emitted |= {e["resource"]["resourceType"] for e in provenance["entry"]}
    weight_v2 = await fhir_get(client, f"/fhir/Provenance/{r['weight']['id']}-v2", h)
    assert weight_v2["activity"]["coding"][0]["code"] == "UPDATE"
    assert weight_v2["reason"] == [{"text": "scale misread"}]
    admin = {"Authorization": f"Bearer {await factory.facility_admin(r['post'])}"}
    audit = await fhir_get(client, "/fhir/AuditEvent", admin, site=str(r["post"]))
    emitted |= {e["resource"]["resourceType"] for e in audit["entry"]}
    errors = await fhir_get(
        client, "/fhir/Condition", h, patient=str(r["patient"]), **{"verification-status": "entered-in-error"}
    )
    [error] = errors["entry"]
    assert "clinicalStatus" not in error["resource"]
    assert emitted == {"Patient", "Practitioner", "Organization", "Appointment", "Encounter", "ServiceRequest",
                       "Observation", "Condition", "MedicationRequest", "Consent", "Provenance",
                       "AuditEvent", "Location", "Schedule", "Slot"}  # fmt: skip


async def test_history_everything_and_paging(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    h = r["chw"].headers
    history = await fhir_get(client, f"/fhir/Observation/{r['weight']['id']}/_history", h)
    assert [(e["resource"]["meta"]["versionId"], e["resource"]["status"]) for e in history["entry"]] == [
        ("2", "amended"),
        ("1", "final"),
    ]
    assert history["entry"][0]["resource"]["valueQuantity"]["value"] == 62.5
    kinds = "Patient,Appointment,Encounter,Observation,Condition,MedicationRequest"
    everything = await fhir_get(client, f"/fhir/Patient/{r['patient']}/$everything", h, _type=kinds)
    types = [e["resource"]["resourceType"] for e in everything["entry"]]
    assert types[0] == "Patient"
    assert sorted(types[1:]) == [
        "Appointment", "Condition", "Encounter", "MedicationRequest", "Observation", "Observation",
    ]  # fmt: skip
    first = await fhir_get(client, "/fhir/Observation", h, patient=str(r["patient"]), _count=1)
    assert len(first["entry"]) == 1
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = await fhir_get(client, next_url.split("http://127.0.0.1:8000", 1)[1], h)
    assert second["entry"][0]["resource"]["id"] != first["entry"][0]["resource"]["id"]
    patients = await fhir_get(client, "/fhir/Patient", h, birthdate="1979-03-02", name="patient")
    assert str(r["patient"]) in {e["resource"]["id"] for e in patients["entry"]}


async def test_fhir_reads_need_consent_like_the_app(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    stranger = await factory.staff(await factory.facility())
    response = await client.get(f"/fhir/Observation/{r['weight']['id']}", headers=stranger.headers)
    assert response.status_code == 403
    validate(response.json())
    assert code_of(response.json()) == "consent_required"
    response = await client.get(f"/fhir/Patient/{r['patient']}/$everything", headers=stranger.headers)
    assert response.status_code == 403
    unknown = await client.get(f"/fhir/Basic/{uuid.uuid4()}", headers=r["chw"].headers)
    assert unknown.status_code == 404
    assert code_of(unknown.json()) == "unknown_resource_type"


async def test_every_appointment_state_reads_as_an_r4_status_and_is_found_by_it(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    """Each of Spean's appointment states has its R4 code (appointmentstatus is a required
    binding: the suite's validator refuses any other), and a search by that code finds it."""
    scene = await factory.scene()
    want = {"booked": "booked", "checked_in": "checked-in", "in_progress": "arrived", "completed": "fulfilled",
            "cancelled": "cancelled", "no_show": "noshow"}  # fmt: skip
    ids: dict[str, str] = {}
    for n, state in enumerate(want):
        patient = await factory.patient(scene.post, token=scene.chw.token)
        at = f"{8 + n // 2:02d}:{n % 2 * 30:02d}"
        body = {**scene.booking(at), "patient_id": str(patient)}
        booked = await factory.post("/v1/appointments", body, scene.chw.token)
        await db.execute("UPDATE appointments SET status = $2 WHERE id = $1", uuid.UUID(booked["id"]), state)
        ids[state] = booked["id"]
    for state, code in want.items():
        read = await fhir_get(client, f"/fhir/Appointment/{ids[state]}", scene.chw.headers)
        assert read["status"] == code, state
        found = await fhir_get(client, "/fhir/Appointment", scene.chw.headers, status=code)
        assert ids[state] in {e["resource"]["id"] for e in found.get("entry", [])}, state


async def test_text_the_app_api_took_reads_as_valid_fhir_strings(client: Client, factory: Factory) -> None:
    """A name with a no-break space, a line separator and a form feed (accepted by the app API:
    people paste such text) reads back as an R4 string: the suite's validator checks the answer."""
    admin = {"Authorization": f"Bearer {await factory.admin_token()}"}
    name = "Poste\u00a0de\u2028santé\x0cNord"
    body = {"name": name, "kind": "health_post", "timezone": "Asia/Phnom_Penh", "country": "KH"}
    created = await client.post("/v1/facilities", json=body, headers=admin)
    assert created.status_code == 201, created.text
    read = await fhir_get(client, f"/fhir/Organization/{created.json()['id']}", admin)
    assert read["name"] == "Poste de santé\ufffdNord"
