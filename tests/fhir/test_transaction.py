"""A FHIR transaction Bundle creating a Patient with Observations: accepted whole, or not at all."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.fhir.errors import code_of
from tests.factory import Factory
from tests.fhir.test_resources import validate

Client = AsyncTestClient[Litestar]


def transaction(facility: uuid.UUID, health_id: str, temperature: float) -> dict[str, Any]:
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    loinc, ucum = "http://loinc.org", "http://unitsofmeasure.org"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"}, "resource": {
                "resourceType": "Observation", "status": "final", "subject": {"reference": patient_url},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                           "code": "vital-signs"}]}],
                "effectiveDateTime": "2026-11-02T03:10:00Z",
                "code": {"coding": [{"system": loinc, "code": "8310-5"}]},
                "valueQuantity": {"value": temperature, "unit": "Cel", "system": ucum, "code": "Cel"},
            }},
            {"fullUrl": patient_url, "request": {"method": "POST", "url": "Patient"}, "resource": {
                "resourceType": "Patient", "name": [{"family": "Sok", "given": ["Dara"]}], "gender": "male",
                "birthDate": "1990", "identifier": [{"system": "urn:kh:health-id", "value": health_id}],
                "managingOrganization": {"reference": f"Organization/{facility}"},
            }},
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"}, "resource": {
                "resourceType": "Observation", "status": "final", "subject": {"reference": patient_url},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                           "code": "vital-signs"}]}],
                "effectiveDateTime": "2026-11-02T03:10:00Z",
                "code": {"coding": [{"system": loinc, "code": "85354-9"}]},
                "component": [
                    {"code": {"coding": [{"system": loinc, "code": "8480-6"}]},
                     "valueQuantity": {"value": 120, "unit": "mm[Hg]", "system": ucum, "code": "mm[Hg]"}},
                    {"code": {"coding": [{"system": loinc, "code": "8462-4"}]},
                     "valueQuantity": {"value": 80, "unit": "mm[Hg]", "system": ucum, "code": "mm[Hg]"}},
                ],
            }},
        ],
    }  # fmt: skip


async def test_patient_with_observations_is_created_whole(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    bundle = transaction(post, uuid.uuid4().hex[:10], 38.1)
    validate(bundle)
    response = await client.post("/fhir", json=bundle, headers=chw.headers)
    assert response.status_code == 200, response.text
    answer = response.json()
    validate(answer)
    locations = [e["response"]["location"] for e in answer["entry"]]
    assert [loc.split("/")[0] for loc in locations] == ["Observation", "Patient", "Observation"]
    patient_id = locations[1].split("/")[1]
    everything = await client.get(f"/fhir/Patient/{patient_id}/$everything", headers=chw.headers,
                                  params={"_type": "Patient,Observation"})  # fmt: skip
    types = sorted(e["resource"]["resourceType"] for e in everything.json()["entry"])
    assert types == ["Observation", "Observation", "Patient"]


async def test_one_bad_entry_creates_nothing(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    health_id = uuid.uuid4().hex[:10]
    response = await client.post("/fhir", json=transaction(post, health_id, 381), headers=chw.headers)
    assert response.status_code == 422
    assert code_of(response.json()) == "implausible_value"
    assert await db.fetchval("SELECT count(*) FROM patient_identifiers WHERE value = $1", health_id) == 0
    not_a_transaction = await client.post(
        "/fhir", json={"resourceType": "Bundle", "type": "collection"}, headers=chw.headers
    )
    assert not_a_transaction.status_code == 400
    assert code_of(not_a_transaction.json()) == "batch_or_transaction_required"
