"""FHIR create, conditional create and update of Patient and the record's clinical types: the
app API's domain functions, rules and audit, FHIR's status codes and headers (Location, ETag,
412/428), Prefer, and retries that never write twice."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.fhir.errors import code_of
from tests.factory import Factory, Staff, new_phone
from tests.fhir.test_resources import fhir_get, validate

Client = AsyncTestClient[Litestar]
BASE = "http://127.0.0.1:8000"
LOINC, UCUM, ICD10 = "http://loinc.org", "http://unitsofmeasure.org", "http://hl7.org/fhir/sid/icd-10"


VITAL_SIGNS = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs"}]}]  # fmt: skip


def temperature(patient: uuid.UUID | str, value: float = 37.5, encounter: str | None = None) -> dict[str, Any]:
    """A body temperature as R4's bodytemp profile has it (what a conformant client sends)."""
    resource: dict[str, Any] = {
        "resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{patient}"},
        "category": VITAL_SIGNS, "code": {"coding": [{"system": LOINC, "code": "8310-5"}]},
        "effectiveDateTime": "2026-11-02T03:10:00Z",
        "valueQuantity": {"value": value, "unit": "Cel", "system": UCUM, "code": "Cel"},
    }  # fmt: skip
    if encounter:
        resource["encounter"] = {"reference": encounter}
    return resource


def clinical(patient: uuid.UUID | str) -> list[dict[str, Any]]:
    """One resource of each clinical type."""
    subject = {"reference": f"Patient/{patient}"}
    return [
        {"resourceType": "Encounter", "status": "finished", "subject": subject,
         "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
         "period": {"start": "2026-11-02T03:00:00Z", "end": "2026-11-02T03:20:00Z"},
         "reasonCode": [{"text": "cough for two weeks"}]},
        {"resourceType": "Condition", "subject": subject,
         "code": {"coding": [{"system": ICD10, "code": "J45.9", "display": "Asthma"}]},
         "clinicalStatus": {"coding": [{"code": "active"}]},
         "verificationStatus": {"coding": [{"code": "provisional"}]},
         "onsetDateTime": "2026-10-01T00:00:00Z", "note": [{"text": "worse at night"}]},
        {"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": subject,
         "medicationCodeableConcept": {"text": "Salbutamol inhaler"},
         "dosageInstruction": [{"route": {"text": "inhaled"}, "timing": {
             "code": {"text": "when needed"}, "repeat": {"boundsDuration": {"value": 30, "unit": "d", "code": "d"}}},
             "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "puffs"}}], "patientInstruction": "shake first"}]},
        temperature(patient),
    ]  # fmt: skip


async def create_checked(client: Client, db: asyncpg.Pool, resource: dict[str, Any], staff: Staff) -> dict[str, Any]:
    """`resource` (valid R4) created over FHIR by `staff`: 201, valid, version 1 at its Location,
    what a read of that version and of the resource return, and audited once."""
    validate(resource)
    kind = resource["resourceType"]
    response = await client.post(f"/fhir/{kind}", json=resource, headers=staff.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    validate(created)
    assert response.headers["location"] == f"{BASE}/fhir/{kind}/{created['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith("GMT")
    assert created == await fhir_get(client, response.headers["location"].removeprefix(BASE), staff.headers)
    assert created == await fhir_get(client, f"/fhir/{kind}/{created['id']}", staff.headers)
    audited = await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'create' AND resource_type = $1 AND resource_id = $2"
        " AND actor_user_id = $3",
        kind, created["id"], staff.user_id,
    )  # fmt: skip
    assert audited == 1, kind
    return created


async def test_create_each_clinical_type_and_read_it_back(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    _, chw, patient = await factory.post_with_patient()
    for resource in clinical(patient):
        await create_checked(client, db, resource, chw)
    # What the app API shows is what FHIR wrote: one record, one write path.
    record = (await client.get(f"/v1/patients/{patient}/record", headers=chw.headers)).json()["items"]
    assert sorted(e["kind"] for e in record) == ["condition", "encounter", "observation", "prescription"]
    prescription = next(e for e in record if e["kind"] == "prescription")["body"]
    assert (prescription["dose"], prescription["route"], prescription["duration_days"]) == ("2 puffs", "inhaled", 30)
    # An observation in that encounter.
    encounter = next(e for e in record if e["kind"] == "encounter")["id"]
    inside = await client.post("/fhir/Observation", json=temperature(patient, encounter=f"Encounter/{encounter}"),
                               headers=chw.headers)  # fmt: skip
    assert inside.json()["encounter"] == {"reference": f"Encounter/{encounter}"}


async def test_prefer_return(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    _, chw, patient = await factory.post_with_patient()
    minimal = await client.post("/fhir/Observation", json=temperature(patient),
                                headers={**chw.headers, "Prefer": "return=minimal"})  # fmt: skip
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert "/_history/1" in minimal.headers["location"]
    outcome = await client.post("/fhir/Observation", json=temperature(patient),
                                headers={**chw.headers, "Prefer": "return=OperationOutcome"})  # fmt: skip
    assert outcome.status_code == 201
    validate(outcome.json())
    assert outcome.json()["issue"][0]["severity"] == "information"


async def test_update_is_a_new_version_named_by_if_match(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    _, chw, patient = await factory.post_with_patient()
    created = (await client.post("/fhir/Observation", json=temperature(patient, 37.5), headers=chw.headers)).json()
    path = f"/fhir/Observation/{created['id']}"
    changed = {**created, "valueQuantity": {**created["valueQuantity"], "value": 38.5}}
    unnamed = await client.put(path, json=changed, headers=chw.headers)
    assert unnamed.status_code == 428
    assert code_of(unnamed.json()) == "if_match_required"
    reason = '{"resourceType": "Provenance", "reason": [{"text": "thermometer re-read"}]}'
    updated = await client.put(path, json=changed, headers={**chw.headers, "If-Match": 'W/"1"', "X-Provenance": reason})
    assert updated.status_code == 200, updated.text
    assert updated.headers["etag"] == 'W/"2"'
    body = updated.json()
    validate(body)
    assert (body["meta"]["versionId"], body["status"], body["valueQuantity"]["value"]) == ("2", "amended", 38.5)
    why = await fhir_get(client, f"/fhir/Provenance/{created['id']}-v2", chw.headers)
    assert why["reason"] == [{"text": "thermometer re-read"}]
    stale = await client.put(path, json=changed, headers={**chw.headers, "If-Match": 'W/"1"'})
    assert stale.status_code == 412
    validate(stale.json())
    assert code_of(stale.json()) == "version_conflict"
    for wrong, code, status in (
        ({**changed, "id": str(uuid.uuid4())}, "id_mismatch", 400),
        ({k: v for k, v in changed.items() if k != "id"}, "id_mismatch", 400),
        ({**changed, "subject": {"reference": f"Patient/{uuid.uuid4()}"}}, "subject_mismatch", 422),
        ({**changed, "resourceType": "Condition", "code": {"coding": [{"system": ICD10, "code": "I10"}]}},
         "resource_type_mismatch", 400),
    ):  # fmt: skip
        refused = await client.put(path, json=wrong, headers={**chw.headers, "If-Match": 'W/"2"'})
        assert (refused.status_code, code_of(refused.json())) == (status, code), refused.text
    # entered-in-error is a version too; reads hide it as the app API does.
    erred = await client.put(path, json={**changed, "status": "entered-in-error"},
                             headers={**chw.headers, "If-Match": 'W/"2"'})  # fmt: skip
    assert erred.json()["status"] == "entered-in-error"
    found = await fhir_get(client, "/fhir/Observation", chw.headers, patient=str(patient))
    assert created["id"] not in {e["resource"]["id"] for e in found.get("entry", [])}
    history = await fhir_get(client, f"{path}/_history", chw.headers)
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["3", "2", "1"]


async def test_every_clinical_type_takes_back_what_it_gave(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    """A resource read from this server can be sent back as an update, as it is."""
    _, chw, patient = await factory.post_with_patient()
    for resource in clinical(patient):
        kind = resource["resourceType"]
        created = (await client.post(f"/fhir/{kind}", json=resource, headers=chw.headers)).json()
        again = await client.put(f"/fhir/{kind}/{created['id']}", json=created,
                                 headers={**chw.headers, "If-Match": 'W/"1"'})  # fmt: skip
        assert again.status_code == 200, (kind, again.text)
        body = again.json()
        validate(body)
        strip = ("meta", "status", "issued", "recordedDate", "authoredOn")
        assert {k: v for k, v in body.items() if k not in strip} == {
            k: v for k, v in created.items() if k not in strip
        }, kind


async def test_writes_follow_the_app_api_rules(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post, chw, patient = await factory.post_with_patient()
    stranger = await factory.staff(await factory.facility(), role="chw")
    refused = await client.post("/fhir/Observation", json=temperature(patient), headers=stranger.headers)
    assert refused.status_code == 403
    validate(refused.json())
    admin = await factory.facility_admin(post)  # manages the facility, does not write care
    not_clinical = await client.post("/fhir/Observation", json=temperature(patient),
                                     headers={"Authorization": f"Bearer {admin}"})  # fmt: skip
    assert (not_clinical.status_code, code_of(not_clinical.json())) == (403, "role_required")
    implausible = await client.post("/fhir/Observation", json=temperature(patient, 381), headers=chw.headers)
    assert implausible.status_code == 422
    assert implausible.json()["issue"][0]["expression"] == ["Observation.valueQuantity.value"]
    assert code_of(implausible.json()) == "implausible_value"
    count = await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", patient)
    assert count == 0


async def test_hostile_input_is_a_4xx_outcome(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    _, chw, patient = await factory.post_with_patient()
    good = temperature(patient)
    cases: list[tuple[str, Any, dict[str, str]]] = [
        ("/fhir/Observation", {**good, "resourceType": "Patient"}, {}),
        ("/fhir/Basic", {**good, "resourceType": "Basic"}, {}),
        ("/fhir/Condition", good, {}),
        ("/fhir/Observation", {**good, "status": "entered-in-error"}, {}),
        ("/fhir/Observation", {**good, "subject": {"reference": "Patient/../../etc"}}, {}),
        ("/fhir/Observation", {**good, "code": {"coding": [{"system": "urn:x", "code": "1"}]}}, {}),
        ("/fhir/Observation", {**good, "valueQuantity": {"value": "hot"}}, {}),
        ("/fhir/Observation", {**good, "effectiveDateTime": "2999-01-01T00:00:00Z"}, {}),
        ("/fhir/Observation", good, {"If-None-Exist": "colour=red"}),
        ("/fhir/Observation", good, {"If-None-Exist": "_count=1"}),
        ("/fhir/Observation", good, {"If-None-Exist": "%zz&&="}),
        ("/fhir/Condition", {**clinical(patient)[1], "note": [{"text": "x" * 2001}]}, {}),
        ("/fhir/Condition", {**clinical(patient)[1], "clinicalStatus": {"coding": [{"code": "gone"}]}}, {}),
        ("/fhir/MedicationRequest", {**clinical(patient)[2], "dosageInstruction": []}, {}),
        ("/fhir/MedicationRequest", {**clinical(patient)[2], "intent": "wish"}, {}),
        ("/fhir/Encounter", {**clinical(patient)[0], "class": {"code": "HH"}}, {}),
        ("/fhir/Encounter", {**clinical(patient)[0], "period": {"start": "2026-11-02T03:00:00Z",
                                                                "end": "2026-11-01T03:00:00Z"}}, {}),
        ("/fhir/Patient", {"resourceType": "Patient", "name": [{"text": ""}]}, {}),
        ("/fhir/Patient", {"resourceType": "Patient", "name": [{"text": "A"}] * 11}, {}),
        ("/fhir/Patient", {"resourceType": "Patient", "name": [{"text": "A"}],
                           "communication": [{"language": {"coding": [{"code": "de"}]}}]}, {}),
        ("/fhir/Patient", {"resourceType": "Patient", "name": [{"text": "A"}]}, {"If-None-Exist": "name=A"}),
        ("/fhir/Patient", {"resourceType": "Patient", "name": [{"text": "A"}]}, {"If-None-Exist": "%zz&&="}),
    ]  # fmt: skip
    failures = []
    for path, body, headers in cases:
        response = await client.post(path, json=body, headers={**chw.headers, **headers})
        document = response.json()
        if not (400 <= response.status_code < 500 and document.get("resourceType") == "OperationOutcome"):
            failures.append(f"{path} {body} {headers}: {response.status_code} {response.text[:200]}")
        else:
            validate(document)
            code_of(document)
    for headers in ({"If-Match": "yesterday"}, {"If-Match": 'W/"0"'}, {"X-Provenance": "{"}):
        response = await client.put(f"/fhir/Observation/{uuid.uuid4()}", json=good, headers={**chw.headers, **headers})
        if response.status_code != 400:
            failures.append(f"PUT {headers}: {response.status_code} {response.text[:200]}")
    garbage = await client.post("/fhir/Observation", content=b"{not json",
                                headers={**chw.headers, "Content-Type": "application/fhir+json"})  # fmt: skip
    if garbage.status_code != 400 or garbage.json()["resourceType"] != "OperationOutcome":
        failures.append(f"garbage: {garbage.status_code}")
    assert failures == []
    assert await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", patient) == 0


async def test_patient_create_update_and_conditional_create(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    health_id = uuid.uuid4().hex[:10]
    patient = {
        "resourceType": "Patient", "name": [{"family": "Sok", "given": ["Dara"]}], "gender": "male",
        "birthDate": "1990-02-28", "identifier": [{"system": "urn:kh:health-id", "value": health_id}],
        "telecom": [{"system": "phone", "value": new_phone()}],
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "vi"}]}, "preferred": True}],
    }  # fmt: skip
    condition = {"If-None-Exist": f"identifier=urn:kh:health-id|{health_id}"}
    first = await client.post("/fhir/Patient", json=patient, headers={**chw.headers, **condition})
    assert first.status_code == 201, first.text
    created = first.json()
    validate(created)
    assert created["managingOrganization"] == {"reference": f"Organization/{post}"}  # the CHW's facility
    assert created["communication"][0]["language"]["coding"][0]["code"] == "vi"
    again = await client.post("/fhir/Patient", json=patient, headers={**chw.headers, **condition})
    assert again.status_code == 200
    assert again.json()["id"] == created["id"]
    assert again.headers["location"].endswith(f"/Patient/{created['id']}/_history/1")
    assert await db.fetchval("SELECT count(*) FROM patient_identifiers WHERE value = $1", health_id) == 1
    # A bare value found in two systems: the condition is ambiguous.
    other = {**patient, "identifier": [{"system": "urn:vn:cccd", "value": health_id}], "telecom": []}
    assert (await client.post("/fhir/Patient", json=other, headers=chw.headers)).status_code == 201
    ambiguous = await client.post("/fhir/Patient", json=patient,
                                  headers={**chw.headers, "If-None-Exist": f"identifier={health_id}"})  # fmt: skip
    assert (ambiguous.status_code, code_of(ambiguous.json())) == (412, "multiple_matches")
    # Update: replaces the demographics; names its version or not, as the app API allows.
    path = f"/fhir/Patient/{created['id']}"
    renamed = {**created, "name": [{"family": "Sok", "given": ["Dara", "Chan"]}]}
    updated = await client.put(path, json=renamed, headers={**chw.headers, "If-Match": 'W/"1"'})
    assert updated.status_code == 200, updated.text
    assert updated.json()["meta"]["versionId"] == "2"
    assert updated.json()["name"][0]["given"] == ["Dara", "Chan"]
    stale = await client.put(path, json=renamed, headers={**chw.headers, "If-Match": 'W/"1"'})
    assert (stale.status_code, code_of(stale.json())) == (412, "version_conflict")
    old = await fhir_get(client, f"{path}/_history/1", chw.headers)
    assert old["name"][0]["given"] == ["Dara"]
    for wrong, code in (
        ({k: v for k, v in renamed.items() if k != "telecom"}, "element_removal_unsupported"),
        ({**renamed, "managingOrganization": {"reference": f"Organization/{uuid.uuid4()}"}},
         "home_facility_change_unsupported"),
    ):  # fmt: skip
        refused = await client.put(path, json=wrong, headers=chw.headers)
        assert (refused.status_code, code_of(refused.json())) == (422, code)
    stranger = await factory.staff(await factory.facility(), role="chw")
    hidden = await client.put(path, json=renamed, headers=stranger.headers)
    assert hidden.status_code == 403


async def test_a_retried_create_writes_once(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    _, chw, patient = await factory.post_with_patient()
    headers = {**chw.headers, "Idempotency-Key": uuid.uuid4().hex}
    first = await client.post("/fhir/Observation", json=temperature(patient), headers=headers)
    second = await client.post("/fhir/Observation", json=temperature(patient), headers=headers)
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.headers["location"] == second.headers["location"]
    assert first.headers["etag"] == second.headers["etag"]
    assert first.json() == second.json()
    assert await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", patient) == 1
