"""AllergyIntolerance and Immunization through FHIR: read, vread and history, every declared search
parameter, _include/_revinclude, $everything, the CapabilityStatement (writes are tested in
test_allergy_immunization_writes.py), and the record's access rules (another facility is refused
until the patient consents, each read audited)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from api.fhir.errors import code_of
from tests.factory import Factory, Staff
from tests.fhir.test_resources import Client, fhir_get, validate

SNOMED = "http://snomed.info/sct"
CVX = "http://hl7.org/fhir/sid/cvx"
LOCAL = "https://spean.dev/fhir/CodeSystem/vaccine"


@dataclass
class Record:
    patient: str
    post: uuid.UUID
    chw: Staff
    penicillin: str  # active, high criticality, medication
    peanuts: str  # resolved, food, free text only
    mmr: str  # CVX 03, 2026-01-10
    je: str  # local JE-LIVE, 2026-02-20
    bcg_not_done: str  # CVX 19, not-done, 2026-03-05


async def _entry(client: Client, chw: Staff, patient: str, body: dict[str, Any]) -> str:
    response = await client.post(f"/v1/patients/{patient}/record", json=body, headers=chw.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def record(client: Client, factory: Factory) -> Record:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    patient = str(await factory.patient(post, token=chw.token))
    penicillin = await _entry(client, chw, patient, {
        "kind": "allergy", "substance": "Penicillin", "snomed_code": "373270004", "category": "medication",
        "criticality": "high", "reaction": "hives", "severity": "moderate", "onset": "2020-05-01T01:00:00Z",
        "note": "rash within an hour"})  # fmt: skip
    peanuts = await _entry(client, chw, patient, {
        "kind": "allergy", "substance": "Peanuts", "category": "food", "clinical_status": "resolved"})  # fmt: skip
    mmr = await _entry(client, chw, patient, {
        "kind": "immunization", "vaccine": "MMR", "vaccine_code": "03", "occurred_at": "2026-01-10T02:00:00Z",
        "dose_number": 1, "lot_number": "MMR-2291"})  # fmt: skip
    je = await _entry(client, chw, patient, {
        "kind": "immunization", "vaccine": "Japanese encephalitis", "vaccine_code": "JE-LIVE", "code_system": "local",
        "occurred_at": "2026-02-20T03:00:00Z"})  # fmt: skip
    bcg = await _entry(client, chw, patient, {
        "kind": "immunization", "vaccine": "BCG", "vaccine_code": "19", "status": "not-done",
        "not_done_reason": "fever on the day", "occurred_at": "2026-03-05T03:00:00Z"})  # fmt: skip
    return Record(patient, post, chw, penicillin, peanuts, mmr, je, bcg)


async def _ids(client: Client, path: str, headers: dict[str, str], **params: Any) -> set[str]:
    found = await fhir_get(client, path, headers, **params)
    return {e["resource"]["id"] for e in found.get("entry", []) if e["search"]["mode"] == "match"}


async def test_read_as_r4_resources(client: Client, factory: Factory) -> None:
    r = await record(client, factory)
    h = r.chw.headers
    allergy = await fhir_get(client, f"/fhir/AllergyIntolerance/{r.penicillin}", h)
    assert allergy["patient"] == {"reference": f"Patient/{r.patient}"}
    assert "subject" not in allergy
    assert allergy["code"]["coding"] == [{"system": SNOMED, "code": "373270004", "display": "Penicillin"}]
    assert allergy["clinicalStatus"]["coding"][0]["code"] == "active"
    assert allergy["verificationStatus"]["coding"][0]["code"] == "confirmed"
    assert allergy["reaction"] == [{"manifestation": [{"text": "hives"}], "severity": "moderate"}]
    assert allergy["onsetDateTime"] == "2020-05-01T01:00:00Z"
    assert allergy["category"] == ["medication"]
    assert allergy["criticality"] == "high"
    free = await fhir_get(client, f"/fhir/AllergyIntolerance/{r.peanuts}", h)
    assert free["code"] == {"text": "Peanuts"}
    shot = await fhir_get(client, f"/fhir/Immunization/{r.mmr}", h)
    assert shot["vaccineCode"]["coding"] == [{"system": CVX, "code": "03", "display": "MMR"}]
    assert shot["status"] == "completed"
    assert shot["occurrenceDateTime"] == "2026-01-10T02:00:00Z"
    assert shot["protocolApplied"] == [{"doseNumberPositiveInt": 1}]
    assert shot["performer"] == [{"actor": {"reference": f"Organization/{r.post}"}}]
    je = await fhir_get(client, f"/fhir/Immunization/{r.je}", h)
    assert je["vaccineCode"]["coding"][0]["system"] == LOCAL
    bcg = await fhir_get(client, f"/fhir/Immunization/{r.bcg_not_done}", h)
    assert bcg["status"] == "not-done"
    assert bcg["statusReason"] == {"text": "fever on the day"}
    # An Immunization is not an AllergyIntolerance.
    wrong = await client.get(f"/fhir/AllergyIntolerance/{r.mmr}", headers=h)
    assert wrong.status_code == 404


async def test_entered_in_error_and_history(client: Client, factory: Factory) -> None:
    r = await record(client, factory)
    h = r.chw.headers
    marked = await client.post(
        f"/v1/record/{r.penicillin}/entered-in-error", json={"expected_version": 1, "reason": "wrong patient"},
        headers=h,
    )  # fmt: skip
    assert marked.status_code == 200, marked.text
    allergy = await fhir_get(client, f"/fhir/AllergyIntolerance/{r.penicillin}", h)
    assert "clinicalStatus" not in allergy  # ait-2
    assert allergy["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    history = await fhir_get(client, f"/fhir/AllergyIntolerance/{r.penicillin}/_history", h)
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    first = await fhir_get(client, f"/fhir/AllergyIntolerance/{r.penicillin}/_history/1", h)
    assert first["clinicalStatus"]["coding"][0]["code"] == "active"
    # Hidden from searches unless asked for by the status that reveals it.
    assert r.penicillin not in await _ids(client, "/fhir/AllergyIntolerance", h, patient=r.patient)
    assert await _ids(
        client, "/fhir/AllergyIntolerance", h, patient=r.patient, **{"verification-status": "entered-in-error"}
    ) == {r.penicillin}


async def test_search_parameters(client: Client, factory: Factory) -> None:
    r = await record(client, factory)
    h = r.chw.headers
    allergies = "/fhir/AllergyIntolerance"
    assert await _ids(client, allergies, h, patient=r.patient) == {r.penicillin, r.peanuts}
    assert await _ids(client, allergies, h, patient=f"Patient/{r.patient}") == {r.penicillin, r.peanuts}
    assert await _ids(client, allergies, h, patient=r.patient, **{"clinical-status": "active"}) == {r.penicillin}
    assert await _ids(client, allergies, h, patient=r.patient, **{"clinical-status": "resolved"}) == {r.peanuts}
    assert await _ids(client, allergies, h, patient=r.patient, code=f"{SNOMED}|373270004") == {r.penicillin}
    assert await _ids(client, allergies, h, patient=r.patient, code="373270004") == {r.penicillin}
    assert await _ids(client, allergies, h, patient=r.patient, code=f"{CVX}|373270004") == set()
    assert await _ids(client, allergies, h, patient=r.patient, category="food") == {r.peanuts}
    assert await _ids(client, allergies, h, patient=r.patient, criticality="high") == {r.penicillin}
    assert await _ids(client, allergies, h, patient=r.patient, onset="lt2021") == {r.penicillin}
    assert await _ids(client, allergies, h, _id=r.peanuts) == {r.peanuts}

    shots = "/fhir/Immunization"
    everyone = {r.mmr, r.je, r.bcg_not_done}
    assert await _ids(client, shots, h, patient=r.patient) == everyone
    assert await _ids(client, shots, h, patient=r.patient, **{"vaccine-code": f"{CVX}|03"}) == {r.mmr}
    assert await _ids(client, shots, h, patient=r.patient, **{"vaccine-code": f"{LOCAL}|JE-LIVE"}) == {r.je}
    assert await _ids(client, shots, h, patient=r.patient, **{"vaccine-code": f"{CVX}|JE-LIVE"}) == set()
    assert await _ids(client, shots, h, patient=r.patient, **{"vaccine-code": f"{LOCAL}|"}) == {r.je}
    assert await _ids(client, shots, h, patient=r.patient, date="2026-01-10") == {r.mmr}
    assert await _ids(client, shots, h, patient=r.patient, date="ge2026-02") == {r.je, r.bcg_not_done}
    assert await _ids(client, shots, h, patient=r.patient, date="lt2026-02-20") == {r.mmr}
    assert await _ids(client, shots, h, patient=r.patient, status="not-done") == {r.bcg_not_done}
    assert await _ids(client, shots, h, patient=r.patient, status="completed") == {r.mmr, r.je}
    assert await _ids(client, shots, h, performer=f"Organization/{r.post}") == everyone
    dated = await fhir_get(client, shots, h, patient=r.patient, _sort="-date")
    assert [e["resource"]["id"] for e in dated["entry"]] == [r.bcg_not_done, r.je, r.mmr]
    bad = await client.get(shots, params={"patient": r.patient, "date": "someday"}, headers=h)
    assert bad.status_code == 400
    strict = await client.get(
        shots, params={"patient": r.patient, "lot-number": "x"}, headers={**h, "Prefer": "handling=strict"}
    )
    assert strict.status_code == 400


async def test_include_revinclude_and_everything(client: Client, factory: Factory) -> None:
    r = await record(client, factory)
    h = r.chw.headers
    included = await fhir_get(
        client, "/fhir/Immunization", h, patient=r.patient, _include="Immunization:performer", date="2026-01-10"
    )
    assert {(e["resource"]["resourceType"], e["search"]["mode"]) for e in included["entry"]} == {
        ("Immunization", "match"), ("Organization", "include"),
    }  # fmt: skip
    patients = await fhir_get(
        client, "/fhir/Patient", h, _id=r.patient,
        _revinclude=["AllergyIntolerance:patient", "Immunization:patient"],
    )  # fmt: skip
    assert {e["resource"]["id"] for e in patients["entry"] if e["search"]["mode"] == "include"} == {
        r.penicillin, r.peanuts, r.mmr, r.je, r.bcg_not_done,
    }  # fmt: skip
    everything = await fhir_get(client, f"/fhir/Patient/{r.patient}/$everything", h)
    types = [e["resource"]["resourceType"] for e in everything["entry"]]
    assert types.count("AllergyIntolerance") == 2
    assert types.count("Immunization") == 3
    for e in everything["entry"]:
        validate(e["resource"])
    narrowed = await fhir_get(client, f"/fhir/Patient/{r.patient}/$everything", h, _type="Immunization")
    assert {e["resource"]["resourceType"] for e in narrowed["entry"]} == {"Immunization"}
    provenance = await fhir_get(client, "/fhir/Provenance", h, target=f"Immunization/{r.mmr}")
    assert [e["resource"]["target"][0]["reference"] for e in provenance["entry"]] == [
        f"Immunization/{r.mmr}/_history/1"
    ]


async def test_capability_statement_declares_them(client: Client) -> None:
    response = await client.get("/fhir/metadata")
    statement = response.json()
    validate(statement)
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    allergy, immunization = by_type["AllergyIntolerance"], by_type["Immunization"]
    assert {p["name"] for p in allergy["searchParam"]} >= {"patient", "clinical-status", "code", "_id"}
    assert {p["name"] for p in immunization["searchParam"]} >= {"patient", "vaccine-code", "date", "status"}
    assert "AllergyIntolerance:patient" in by_type["Patient"]["searchRevInclude"]
    for declared in (allergy, immunization):  # written through FHIR too (test_allergy_immunization_writes.py)
        codes = {i["code"] for i in declared["interaction"]}
        assert {"read", "vread", "search-type", "history-instance", "create", "update"} <= codes
        assert {o["name"] for o in declared["operation"]} >= {"validate"}
        assert (declared["versioning"], declared["conditionalCreate"]) == ("versioned-update", True)
    schema = (await client.get("/schema/openapi.json")).json()
    parameters = schema["paths"]["/fhir/Immunization"]["get"]["parameters"]
    assert "vaccine-code" in {p["name"] for p in parameters}


@pytest.mark.parametrize("path", ["/fhir/Immunization/{mmr}", "/fhir/Immunization?patient={patient}"])
async def test_refused_without_consent_then_read_with_it(
    client: Client, factory: Factory, db: asyncpg.Pool, path: str
) -> None:
    r = await record(client, factory)
    other = await factory.facility()
    stranger = await factory.staff(other)
    url = path.format(mmr=r.mmr, patient=r.patient)
    refused = await client.get(url, headers=stranger.headers)
    assert refused.status_code == 403
    validate(refused.json())
    assert code_of(refused.json()) == "consent_required"
    consent = {"scope": "facility", "facility_id": str(other), "method": "chw_witness", "witness_name": "Chan Sophea"}
    granted = await client.post(f"/v1/patients/{r.patient}/consents", json=consent, headers=r.chw.headers)
    assert granted.status_code == 201, granted.text
    allowed = await client.get(url, headers=stranger.headers)
    assert allowed.status_code == 200, allowed.text
    validate(allowed.json())
    audit = await db.fetch(
        "SELECT action, resource_type, outcome, purpose FROM audit_events WHERE actor_user_id = $1 ORDER BY id",
        stranger.user_id,
    )
    outcomes = [(a["outcome"], a["purpose"]) for a in audit]
    assert outcomes[0] == ("refused", None)
    assert ("success", "consent") in outcomes
    assert {a["resource_type"] for a in audit} <= {"Immunization", "Record"}
