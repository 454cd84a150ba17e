"""$validate answers what a create (or update) would answer, as an OperationOutcome, and writes
nothing."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from api.fhir.errors import code_of
from tests.factory import Factory
from tests.fhir.test_resources import Client, validate
from tests.fhir.test_writes import clinical, temperature


def _issue(body: dict[str, Any]) -> dict[str, Any]:
    validate(body)
    [issue] = body["issue"]
    found: dict[str, Any] = issue
    return found


async def test_validate_is_the_write_without_the_write(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    health_id = uuid.uuid4().hex[:10]
    patient = await factory.patient(post, token=chw.token,
                                    identifiers=[{"system": "urn:kh:health-id", "value": health_id}])  # fmt: skip
    audits = await db.fetchval("SELECT count(*) FROM audit_events WHERE actor_user_id = $1", chw.user_id)
    for resource in clinical(patient):
        response = await client.post(f"/fhir/{resource['resourceType']}/$validate", json=resource, headers=chw.headers)
        assert response.status_code == 200, response.text
        assert _issue(response.json())["severity"] == "information", response.text
    cases = [
        ("Observation", temperature(patient, 381), "implausible_value", "Observation.valueQuantity.value"),
        ("Observation", {**temperature(patient), "valueQuantity": {"value": "hot"}}, "invalid_input",
         "Observation.valueQuantity.value"),
        ("Observation", {**temperature(patient), "subject": {"reference": f"Patient/{uuid.uuid4()}"}},
         "patient_not_found", "Observation.subject"),
        ("Condition", temperature(patient), "resource_type_mismatch", "Condition.resourceType"),
        ("Patient", {"resourceType": "Patient", "name": [{"text": "Twin"}],
                     "identifier": [{"system": "urn:kh:health-id", "value": health_id}]},
         "duplicate_patient", "Patient.identifier"),
    ]  # fmt: skip
    for resource_type, resource, code, element in cases:
        response = await client.post(f"/fhir/{resource_type}/$validate", json=resource, headers=chw.headers)
        assert response.status_code == 200, response.text
        issue = _issue(response.json())
        assert (issue["severity"], code_of(response.json()), issue.get("expression")) == ("error", code, [element])
    # Nothing was written, and no audit event says otherwise.
    assert await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", patient) == 0
    assert await db.fetchval("SELECT count(*) FROM audit_events WHERE actor_user_id = $1", chw.user_id) == audits
    # Parameters, and mode=update against the current version.
    created = (await client.post("/fhir/Observation", json=temperature(patient), headers=chw.headers)).json()
    changed = {**created, "valueQuantity": {**created["valueQuantity"], "value": 39.0}}
    wrapped = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": changed}, {"name": "mode", "valueCode": "update"}]}  # fmt: skip
    validate(wrapped)
    response = await client.post("/fhir/Observation/$validate", json=wrapped, headers=chw.headers)
    assert _issue(response.json())["severity"] == "information", response.text
    moved = {**changed, "subject": {"reference": f"Patient/{uuid.uuid4()}"}}
    response = await client.post("/fhir/Observation/$validate", json=moved, params={"mode": "update"},
                                 headers=chw.headers)  # fmt: skip
    assert code_of(response.json()) == "subject_mismatch"
    assert await db.fetchval("SELECT max(version) FROM record_entries WHERE id = $1", uuid.UUID(created["id"])) == 1
    # Someone who may not write is told so.
    stranger = await factory.staff(await factory.facility(), role="chw")
    response = await client.post("/fhir/Observation/$validate", json=temperature(patient), headers=stranger.headers)
    assert _issue(response.json())["code"] == "forbidden"


async def test_validate_refuses_what_it_cannot_validate(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    chw = await factory.staff(await factory.facility(kind="health_post"), role="chw")
    for path, body, params, status in (
        ("/fhir/Basic/$validate", {"resourceType": "Basic"}, {}, 404),
        ("/fhir/Observation/$validate", {"resourceType": "Observation"}, {"mode": "delete"}, 400),
        ("/fhir/Observation/$validate", {"resourceType": "Parameters", "parameter": "x"}, {}, 400),
        ("/fhir/Observation/$validate", [1, 2], {}, 200),
    ):
        response = await client.post(path, json=body, params=params, headers=chw.headers)
        assert response.status_code == status, (path, response.text)
        validate(response.json())
    raw = await client.post("/fhir/Observation/$validate", content=b"{", headers={**chw.headers,
                            "Content-Type": "application/fhir+json"})  # fmt: skip
    assert raw.status_code == 400
    assert code_of(raw.json()) == "malformed_body"
