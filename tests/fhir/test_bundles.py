"""Batch and transaction Bundles across Patient and the clinical types: a transaction commits
whole or not at all with its urn:uuid references resolved; a batch answers each entry on its own."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from api.fhir.errors import code_of
from tests.factory import Factory, new_phone
from tests.fhir.test_resources import Client, fhir_get, validate
from tests.fhir.test_writes import ICD10, clinical, temperature

BASE = "http://127.0.0.1:8000"


def _entry(resource: dict[str, Any], method: str = "POST", url: str | None = None, **request: str) -> dict[str, Any]:
    full_url = f"urn:uuid:{uuid.uuid4()}"
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": method, "url": url or resource["resourceType"], **request}}  # fmt: skip


def _record(facility: uuid.UUID, health_id: str) -> dict[str, Any]:
    """A new patient with an encounter, and in it an observation, a condition and a prescription."""
    patient = _entry({"resourceType": "Patient", "name": [{"text": "Chan Sreymom"}], "gender": "female",
                      "birthDate": "1988", "identifier": [{"system": "urn:kh:health-id", "value": health_id}],
                      "managingOrganization": {"reference": f"Organization/{facility}"}},
                     ifNoneExist=f"identifier=urn:kh:health-id|{health_id}")  # fmt: skip
    resources = clinical("x")
    encounter = _entry({**resources[0], "subject": {"reference": patient["fullUrl"]}})
    others = []
    for resource in resources[1:]:
        linked = {**resource, "subject": {"reference": patient["fullUrl"]}, "encounter": {
            "reference": encounter["fullUrl"]}}  # fmt: skip
        others.append(_entry(linked))
    # Listed in an order FHIR does not process them in: the server orders creates itself.
    return {"resourceType": "Bundle", "type": "transaction", "entry": [*others, encounter, patient]}


async def test_transaction_across_types_resolves_references(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    health_id = uuid.uuid4().hex[:10]
    bundle = _record(post, health_id)
    validate(bundle)
    response = await client.post("/fhir", json=bundle, headers={**chw.headers, "Prefer": "return=representation"})
    assert response.status_code == 200, response.text
    answer = response.json()
    validate(answer)
    assert answer["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in answer["entry"]]
    assert statuses == ["201 Created"] * 5
    by_type = {e["resource"]["resourceType"]: e["resource"] for e in answer["entry"]}
    patient, encounter = by_type["Patient"], by_type["Encounter"]
    for kind in ("Observation", "Condition", "MedicationRequest"):
        assert by_type[kind]["subject"] == {"reference": f"Patient/{patient['id']}"}
        assert by_type[kind]["encounter"] == {"reference": f"Encounter/{encounter['id']}"}
    for entry in answer["entry"]:
        assert entry["response"]["etag"] == 'W/"1"'
        await fhir_get(client, f"/fhir/{entry['response']['location']}", chw.headers)
    # The same transaction again: the patient is found (200), the rest is new.
    again = (await client.post("/fhir", json=_record(post, health_id), headers=chw.headers)).json()
    assert again["entry"][-1]["response"]["status"] == "200 OK"
    assert again["entry"][-1]["response"]["location"] == f"Patient/{patient['id']}/_history/1"
    assert "resource" not in again["entry"][0]  # minimal unless asked
    assert await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", uuid.UUID(patient["id"])) == 8


async def test_transaction_is_all_or_nothing(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    patient = await factory.patient(post, token=chw.token, phone=new_phone())
    existing = (await client.post("/fhir/Observation", json=temperature(patient), headers=chw.headers)).json()
    changed = {**existing, "valueQuantity": {**existing["valueQuantity"], "value": 36.9}}
    health_id = uuid.uuid4().hex[:10]
    creates = _record(post, health_id)["entry"]
    update = _entry(changed, "PUT", f"Observation/{existing['id']}", ifMatch='W/"1"')
    read = {"request": {"method": "GET", "url": f"Observation/{existing['id']}"}}
    ok = {"resourceType": "Bundle", "type": "transaction", "entry": [read, update, *creates]}
    # A stale version, a missing one, or a bad entry anywhere: nothing is written.
    stale = _entry(changed, "PUT", f"Observation/{existing['id']}", ifMatch='W/"7"')
    unnamed = _entry(changed, "PUT", f"Observation/{existing['id']}")
    bad = _entry({**clinical(patient)[1], "code": {"coding": [{"system": ICD10, "code": "not-icd"}]}})
    for wrong, status, code, field in (
        ([read, stale, *creates], 412, "version_conflict", "entry[1].request.ifMatch"),
        ([read, unnamed, *creates], 428, "if_match_required", "entry[1].request.ifMatch"),
        ([read, update, *creates, bad], 422, "invalid_icd10", "entry[7].resource.code"),
    ):
        response = await client.post("/fhir", json={**ok, "entry": wrong}, headers=chw.headers)
        assert (response.status_code, code_of(response.json())) == (status, code), response.text
        assert response.json()["issue"][0]["expression"] == [field]
        assert await db.fetchval("SELECT count(*) FROM patient_identifiers WHERE value = $1", health_id) == 0
        assert (
            await db.fetchval("SELECT max(version) FROM record_entries WHERE id = $1", uuid.UUID(existing["id"])) == 1
        )
    done = await client.post("/fhir", json=ok, headers=chw.headers)
    assert done.status_code == 200, done.text
    first, second = done.json()["entry"][:2]
    # Reads come last (FHIR's order), so the read sees the update made in the same transaction.
    assert first["resource"]["meta"]["versionId"] == "2"
    assert second["response"] == {**second["response"], "status": "200 OK",
                                  "location": f"Observation/{existing['id']}/_history/2"}  # fmt: skip


async def test_batch_answers_each_entry(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    patient = await factory.patient(post, token=chw.token)
    other = await factory.patient(await factory.facility(kind="health_post"))
    good = _entry(temperature(patient))
    implausible = _entry(temperature(patient, 99))
    linked = _entry({**temperature(patient), "subject": {"reference": good["fullUrl"]}})  # no links in a batch
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        good, implausible, linked,
        {"request": {"method": "GET", "url": f"Patient/{patient}"}},
        {"request": {"method": "GET", "url": f"Patient/{other}"}},
        {"request": {"method": "GET", "url": f"Patient/{patient}/_history/1"}},
        {"request": {"method": "GET", "url": "Observation?patient=x"}},
        {"request": {"method": "GET", "url": f"Observation/{uuid.uuid4()}"}},
    ]}  # fmt: skip
    response = await client.post("/fhir", json=batch, headers=chw.headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    validate(answer)
    assert answer["type"] == "batch-response"
    statuses = [e["response"]["status"].split()[0] for e in answer["entry"]]
    assert statuses == ["201", "422", "422", "200", "403", "200", "400", "404"]
    codes = [code_of(e["response"]["outcome"]) for e in answer["entry"] if "outcome" in e["response"]]
    assert codes == ["implausible_value", "invalid_reference", "patient_access_denied", "invalid_request_url",
                     "entry_not_found"]  # fmt: skip
    assert answer["entry"][1]["response"]["outcome"]["issue"][0]["expression"] == [
        "entry[1].resource.valueQuantity.value"
    ]
    # The good entry stands; the refused ones wrote nothing.
    assert await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", patient) == 1
