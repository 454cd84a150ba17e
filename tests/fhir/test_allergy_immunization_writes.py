"""AllergyIntolerance and Immunization written through FHIR: create, read back, update with
If-Match, a transaction and a batch, $validate, what a create refuses (SNOMED CT check digit, CVX
codes, codings in other systems), the record's access rules and audit; and what the server emits
for these types posts back as the same content."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from api.fhir.errors import code_of
from tests.factory import Factory
from tests.fhir.test_resources import Client, fhir_get, validate
from tests.fhir.test_writes import create_checked

BASE = "http://127.0.0.1:8000"
SNOMED = "http://snomed.info/sct"
CVX = "http://hl7.org/fhir/sid/cvx"
LOCAL = "https://spean.dev/fhir/CodeSystem/vaccine"
CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
# Fields the server derives on each write, left out when comparing content.
DERIVED = ("id", "meta", "recordedDate", "recorded", "performer")


def _patient(patient: uuid.UUID | str) -> dict[str, str]:
    """A reference to a patient by id, or to a Bundle entry's fullUrl."""
    return {"reference": str(patient) if str(patient).startswith("urn:") else f"Patient/{patient}"}


def allergy(patient: uuid.UUID | str) -> dict[str, Any]:
    return {
        "resourceType": "AllergyIntolerance", "patient": _patient(patient),
        "clinicalStatus": {"coding": [{"system": CLINICAL, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": "confirmed"}]},
        "category": ["medication"], "criticality": "high",
        "code": {"coding": [{"system": SNOMED, "code": "373270004", "display": "Penicillin"}], "text": "Penicillin"},
        "onsetDateTime": "2020-05-01T01:00:00Z",
        "reaction": [{"manifestation": [{"text": "hives"}], "severity": "moderate"}],
        "note": [{"text": "rash within an hour"}],
    }  # fmt: skip


def immunization(patient: uuid.UUID | str) -> dict[str, Any]:
    return {
        "resourceType": "Immunization", "status": "completed", "patient": _patient(patient),
        "vaccineCode": {"coding": [{"system": CVX, "code": "03", "display": "MMR"}], "text": "MMR"},
        "occurrenceDateTime": "2026-01-10T02:00:00Z", "lotNumber": "MMR-2291",
        "protocolApplied": [{"doseNumberPositiveInt": 1}], "note": [{"text": "left arm"}],
    }  # fmt: skip


def _content(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in resource.items() if k not in DERIVED}


async def test_create_read_back_and_audit(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post, chw, patient = await factory.post_with_patient()
    for resource in (allergy(patient), immunization(patient)):
        created = await create_checked(client, db, resource, chw)
        assert _content(created) == _content(resource), resource["resourceType"]
    shot = await fhir_get(client, "/fhir/Immunization", chw.headers, patient=str(patient))
    assert shot["entry"][0]["resource"]["performer"] == [{"actor": {"reference": f"Organization/{post}"}}]
    # One record, one write path: the app API shows what FHIR wrote.
    record = (await client.get(f"/v1/patients/{patient}/record", headers=chw.headers)).json()["items"]
    bodies = {e["kind"]: e["body"] for e in record}
    assert bodies["allergy"]["snomed_code"] == "373270004"
    assert (bodies["allergy"]["reaction"], bodies["allergy"]["severity"]) == ("hives", "moderate")
    assert (bodies["immunization"]["vaccine_code"], bodies["immunization"]["code_system"]) == ("03", "cvx")
    assert bodies["immunization"]["dose_number"] == 1


async def test_what_the_server_emits_posts_back_as_the_same(client: Client, factory: Factory) -> None:
    """GET a resource written through the app API, strip id and meta, POST it: the same content."""
    _, chw, patient = await factory.post_with_patient()
    written: list[dict[str, Any]] = [
        {"kind": "allergy", "substance": "Penicillin", "snomed_code": "373270004", "category": "medication",
         "criticality": "high", "reaction": "hives", "severity": "moderate", "onset": "2020-05-01T01:00:00Z",
         "note": "rash within an hour"},
        {"kind": "allergy", "substance": "Peanuts", "category": "food", "clinical_status": "resolved",
         "verification_status": "unconfirmed"},
        {"kind": "allergy", "substance": "No known allergy", "snomed_code": "716186003"},
        {"kind": "immunization", "vaccine": "MMR", "vaccine_code": "03", "occurred_at": "2026-01-10T02:00:00Z",
         "dose_number": 2, "lot_number": "MMR-2291", "note": "no reaction"},
        {"kind": "immunization", "vaccine": "Japanese encephalitis", "vaccine_code": "JE-LIVE",
         "code_system": "local", "occurred_at": "2026-02-20T03:00:00Z"},
        {"kind": "immunization", "vaccine": "BCG", "vaccine_code": "19", "status": "not-done",
         "not_done_reason": "fever on the day", "occurred_at": "2026-03-05T03:00:00Z"},
        {"kind": "immunization", "vaccine": "Tetanus toxoid", "occurred_at": "2026-03-06T03:00:00Z"},
    ]  # fmt: skip
    for body in written:
        made = await client.post(f"/v1/patients/{patient}/record", json=body, headers=chw.headers)
        assert made.status_code == 201, made.text
        kind = "AllergyIntolerance" if body["kind"] == "allergy" else "Immunization"
        emitted = await fhir_get(client, f"/fhir/{kind}/{made.json()['id']}", chw.headers)
        posted = await client.post(f"/fhir/{kind}", json={k: v for k, v in emitted.items() if k not in ("id", "meta")},
                                   headers=chw.headers)  # fmt: skip
        assert posted.status_code == 201, (body, posted.text)
        validate(posted.json())
        assert _content(posted.json()) == _content(emitted), body


async def test_update_with_if_match(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    _, chw, patient = await factory.post_with_patient()
    for resource, change in (
        (allergy(patient), {"criticality": "low", "clinicalStatus": {"coding": [{"system": CLINICAL,
                                                                                  "code": "inactive"}]}}),
        (immunization(patient), {"lotNumber": "MMR-2292", "protocolApplied": [{"doseNumberPositiveInt": 2}]}),
    ):  # fmt: skip
        kind = resource["resourceType"]
        created = (await client.post(f"/fhir/{kind}", json=resource, headers=chw.headers)).json()
        path = f"/fhir/{kind}/{created['id']}"
        changed = {**created, **change}
        unnamed = await client.put(path, json=changed, headers=chw.headers)
        assert (unnamed.status_code, code_of(unnamed.json())) == (428, "if_match_required")
        updated = await client.put(path, json=changed, headers={**chw.headers, "If-Match": 'W/"1"'})
        assert updated.status_code == 200, updated.text
        assert updated.headers["etag"] == 'W/"2"'
        validate(updated.json())
        assert _content(updated.json()) == _content(changed), kind
        stale = await client.put(path, json=changed, headers={**chw.headers, "If-Match": 'W/"1"'})
        assert (stale.status_code, code_of(stale.json())) == (412, "version_conflict")
        validate(stale.json())
        moved = await client.put(path, json={**changed, "patient": {"reference": f"Patient/{uuid.uuid4()}"}},
                                 headers={**chw.headers, "If-Match": 'W/"2"'})  # fmt: skip
        assert (moved.status_code, code_of(moved.json())) == (422, "subject_mismatch")
        assert moved.json()["issue"][0]["expression"] == [f"{kind}.patient"]
        # An Immunization is not an AllergyIntolerance, nor the other way round.
        other = immunization(patient) if kind == "AllergyIntolerance" else allergy(patient)
        wrong_type = await client.put(f"/fhir/{other['resourceType']}/{created['id']}", json=other | {
            "id": created["id"]}, headers={**chw.headers, "If-Match": 'W/"2"'})  # fmt: skip
        assert (wrong_type.status_code, code_of(wrong_type.json())) == (404, "entry_not_found")
        history = await fhir_get(client, f"{path}/_history", chw.headers)
        assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    # entered-in-error: the allergy by its verificationStatus, the immunization by its status.
    for resource in (allergy(patient), immunization(patient)):
        kind = resource["resourceType"]
        created = (await client.post(f"/fhir/{kind}", json=resource, headers=chw.headers)).json()
        if kind == "AllergyIntolerance":
            in_error = {"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]}
            erred = {**created, "verificationStatus": in_error}
            erred.pop("clinicalStatus")
        else:
            erred = {**created, "status": "entered-in-error"}
        marked = await client.put(f"/fhir/{kind}/{created['id']}", json=erred,
                                  headers={**chw.headers, "If-Match": 'W/"1"'})  # fmt: skip
        assert marked.status_code == 200, marked.text
        state = await db.fetchval("SELECT status FROM record_entries WHERE id = $1 AND version = 2",
                                  uuid.UUID(created["id"]))  # fmt: skip
        assert state == "entered_in_error"


async def test_conditional_create(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    """If-None-Exist finds a Patient by identifier (a transaction resent finds its patient and
    adds to their record), and an entry of these types by their search parameters."""
    post, chw, _ = await factory.post_with_patient()
    health_id = uuid.uuid4().hex[:10]

    def bundle() -> dict[str, Any]:
        patient_url = f"urn:uuid:{uuid.uuid4()}"
        return {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "AllergyIntolerance"},
             "resource": allergy(patient_url)},
            {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Immunization"},
             "resource": immunization(patient_url)},
            {"fullUrl": patient_url, "request": {"method": "POST", "url": "Patient",
                                                 "ifNoneExist": f"identifier=urn:kh:health-id|{health_id}"},
             "resource": {"resourceType": "Patient", "name": [{"family": "Sok", "given": ["Dara"]}],
                          "identifier": [{"system": "urn:kh:health-id", "value": health_id}],
                          "managingOrganization": {"reference": f"Organization/{post}"}}},
        ]}  # fmt: skip

    first = await client.post("/fhir", json=bundle(), headers=chw.headers)
    assert first.status_code == 200, first.text
    validate(first.json())
    statuses = [e["response"]["status"] for e in first.json()["entry"]]
    assert statuses == ["201 Created", "201 Created", "201 Created"]
    again = await client.post("/fhir", json=bundle(), headers=chw.headers)
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["201 Created", "201 Created", "200 OK"]
    patient = first.json()["entry"][2]["response"]["location"].split("/")[1]
    assert again.json()["entry"][2]["response"]["location"].split("/")[1] == patient
    kinds = await db.fetch("SELECT kind FROM record_entries WHERE patient_id = $1", uuid.UUID(patient))
    assert sorted(k["kind"] for k in kinds) == ["allergy", "allergy", "immunization", "immunization"]
    # On these types too, If-None-Exist is a search of the type, among what the caller may see:
    # two found is 412, one found is 200 with it (nothing written), none found creates, and the
    # same condition then finds what it created; an unknown parameter is 400.
    twice = {"AllergyIntolerance": f"patient={patient}&code={SNOMED}|373270004",
             "Immunization": f"patient={patient}&vaccine-code={CVX}|03"}  # fmt: skip
    other: dict[str, tuple[str, dict[str, Any]]] = {
        "AllergyIntolerance": ("code", {"coding": [{"system": SNOMED, "code": "91936005"}], "text": "Penicillin"}),
        "Immunization": ("vaccineCode", {"coding": [{"system": CVX, "code": "08"}], "text": "Hepatitis B"}),
    }
    for resource in (allergy(patient), immunization(patient)):
        kind = resource["resourceType"]

        async def conditional(body: dict[str, Any], condition: str, kind: str = kind) -> Any:
            headers = {**chw.headers, "If-None-Exist": condition}
            return await client.post(f"/fhir/{kind}", json=body, headers=headers)

        several = await conditional(resource, twice[kind])
        assert (several.status_code, code_of(several.json())) == (412, "multiple_matches")
        one_id = str(await db.fetchval(
            "SELECT id FROM record_entries WHERE patient_id = $1 AND kind = $2 ORDER BY recorded_at LIMIT 1",
            uuid.UUID(patient), "allergy" if kind == "AllergyIntolerance" else "immunization"))  # fmt: skip
        one = await conditional(resource, f"{twice[kind]}&_id={one_id}")
        assert (one.status_code, one.json()["id"]) == (200, one_id)
        element, code = other[kind]
        condition = f"patient={patient}&{'code' if kind == 'AllergyIntolerance' else 'vaccine-code'}="
        condition += f"{code['coding'][0]['system']}|{code['coding'][0]['code']}"
        made = await conditional({**resource, element: code}, condition)
        assert made.status_code == 201, made.text
        again = await conditional({**resource, element: code}, condition)
        assert (again.status_code, again.json()["id"]) == (200, made.json()["id"])
        unknown = await conditional(resource, "colour=red")
        assert (unknown.status_code, code_of(unknown.json())) == (400, "unknown_search_parameter")
        validate(unknown.json())
    kinds = await db.fetch("SELECT kind FROM record_entries WHERE patient_id = $1", uuid.UUID(patient))
    assert len(kinds) == 6  # the two bundles' four, and one of each created by condition


async def test_transaction_is_all_or_nothing_and_batch_per_entry(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    post, chw, _ = await factory.post_with_patient()
    health_id = uuid.uuid4().hex[:10]
    patient_url, encounter_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    entries: list[dict[str, Any]] = [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Immunization"},
         "resource": immunization(patient_url) | {"encounter": {"reference": encounter_url}}},
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "AllergyIntolerance"},
         "resource": allergy(patient_url)},
        {"fullUrl": encounter_url, "request": {"method": "POST", "url": "Encounter"},
         "resource": {"resourceType": "Encounter", "status": "finished", "subject": {"reference": patient_url},
                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                      "period": {"start": "2026-01-10T01:50:00Z"}}},
        {"fullUrl": patient_url, "request": {"method": "POST", "url": "Patient"},
         "resource": {"resourceType": "Patient", "name": [{"text": "Chan Sophea"}],
                      "identifier": [{"system": "urn:kh:health-id", "value": health_id}],
                      "managingOrganization": {"reference": f"Organization/{post}"}}},
    ]  # fmt: skip
    # A bad CVX code in one entry: nothing at all is written, and the entry is named.
    bad_code: dict[str, Any] = {"vaccineCode": {"coding": [{"system": CVX, "code": "MMR"}], "text": "MMR"}}
    bad = [{**entries[0], "resource": entries[0]["resource"] | bad_code}, *entries[1:]]
    refused = await client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": bad},
                                headers=chw.headers)  # fmt: skip
    assert (refused.status_code, code_of(refused.json())) == (422, "invalid_vaccine_code"), refused.text
    assert refused.json()["issue"][0]["expression"] == ["entry[0].resource.vaccineCode.coding"]
    assert await db.fetchval("SELECT count(*) FROM patient_identifiers WHERE value = $1", health_id) == 0
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    validate(bundle)
    response = await client.post("/fhir", json=bundle, headers={**chw.headers, "Prefer": "return=representation"})
    assert response.status_code == 200, response.text
    answer = response.json()
    validate(answer)
    shot, reaction, encounter, patient = (e["resource"] for e in answer["entry"])
    assert shot["patient"] == reaction["patient"] == {"reference": f"Patient/{patient['id']}"}
    assert shot["encounter"] == {"reference": f"Encounter/{encounter['id']}"}
    everything = await fhir_get(client, f"/fhir/Patient/{patient['id']}/$everything", chw.headers,
                                _type="AllergyIntolerance,Immunization")  # fmt: skip
    assert sorted(e["resource"]["resourceType"] for e in everything["entry"]) == ["AllergyIntolerance", "Immunization"]
    # A batch: each entry stands or falls alone.
    subject = patient["id"]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "POST", "url": "AllergyIntolerance"}, "resource": allergy(subject)},
        {"request": {"method": "POST", "url": "AllergyIntolerance"}, "resource": allergy(subject) | {
            "code": {"coding": [{"system": SNOMED, "code": "373270005"}], "text": "Penicillin"}}},
        {"request": {"method": "PUT", "url": f"Immunization/{shot['id']}", "ifMatch": 'W/"1"'},
         "resource": shot | {"lotNumber": "MMR-9"}},
    ]}  # fmt: skip
    answered = await client.post("/fhir", json=batch, headers=chw.headers)
    assert answered.status_code == 200, answered.text
    validate(answered.json())
    results = [e["response"] for e in answered.json()["entry"]]
    assert [r["status"] for r in results] == ["201 Created", "422 Unprocessable Entity", "200 OK"]
    assert code_of(results[1]["outcome"]) == "invalid_snomed_code"
    assert results[1]["outcome"]["issue"][0]["expression"] == ["entry[1].resource.code.coding"]


async def test_bad_input_is_refused_with_its_code(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    _, chw, patient = await factory.post_with_patient()
    a, i = allergy(patient), immunization(patient)
    cases: list[tuple[dict[str, Any], int, str, str | None]] = [
        (a | {"code": {"coding": [{"system": SNOMED, "code": "373270005"}], "text": "Penicillin"}}, 422,
         "invalid_snomed_code", "AllergyIntolerance.code.coding"),
        (a | {"code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "7980"}],
                       "text": "Penicillin G"}}, 422, "invalid_resource", "AllergyIntolerance.code.coding"),
        (a | {"code": {"coding": [{"system": SNOMED, "code": "373270004"}]}}, 422, "invalid_resource",
         "AllergyIntolerance.code"),
        ({k: v for k, v in a.items() if k != "code"}, 422, "invalid_resource", "AllergyIntolerance.code"),
        (a | {"clinicalStatus": {"coding": [{"system": CLINICAL, "code": "remission"}]}}, 422, "invalid_resource",
         "AllergyIntolerance.clinicalStatus"),
        (a | {"clinicalStatus": {"coding": [{"system": "urn:x", "code": "active"}]}}, 422, "invalid_resource",
         "AllergyIntolerance.clinicalStatus"),
        (a | {"verificationStatus": {"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]}}, 422,
         "invalid_status", "AllergyIntolerance.verificationStatus"),
        (a | {"criticality": "deadly"}, 400, "invalid_input", None),
        (a | {"category": ["food", "medication"]}, 400, "invalid_input", None),
        (a | {"reaction": [{"manifestation": [], "severity": "mild"}]}, 422, "invalid_resource",
         "AllergyIntolerance.reaction[0].manifestation"),
        (a | {"reaction": [{"manifestation": [{"text": "hives"}], "severity": "fatal"}]}, 400, "invalid_input", None),
        (a | {"onsetDateTime": "2099-01-01T00:00:00Z"}, 422, "time_in_future", "AllergyIntolerance.onsetDateTime"),
        # Refused at the door (api/input_rules.py), as for every type.
        (a | {"onsetDateTime": "2999-01-01T00:00:00Z"}, 422, "out_of_range", "onsetDateTime"),
        (a | {"patient": {"reference": "Patient/../../etc"}}, 422, "invalid_reference", "AllergyIntolerance.patient"),
        ({k: v for k, v in a.items() if k != "patient"}, 422, "invalid_resource", "AllergyIntolerance.patient"),
        (i | {"vaccineCode": {"coding": [{"system": CVX, "code": "1234"}], "text": "MMR"}}, 422,
         "invalid_vaccine_code", "Immunization.vaccineCode.coding"),
        (i | {"vaccineCode": {"coding": [{"system": "urn:oid:1.2.3", "code": "03"}], "text": "MMR"}}, 422,
         "invalid_resource", "Immunization.vaccineCode.coding"),
        (i | {"vaccineCode": {"coding": [{"system": LOCAL, "code": "JE LIVE"}], "text": "JE"}}, 422,
         "invalid_vaccine_code", "Immunization.vaccineCode.coding"),
        (i | {"status": "given"}, 400, "invalid_input", None),
        (i | {"status": "entered-in-error"}, 422, "invalid_status", "Immunization.status"),
        (i | {"statusReason": {"text": "fever"}}, 422, "reason_without_not_done", "Immunization.statusReason"),
        ({k: v for k, v in i.items() if k != "occurrenceDateTime"}, 422, "invalid_resource",
         "Immunization.occurrenceDateTime"),
        (i | {"occurrenceDateTime": "2026-01-10T02:00:00"}, 422, "timezone_required", "occurrenceDateTime"),
        (i | {"protocolApplied": [{"doseNumberPositiveInt": 21}]}, 422, "invalid_input",
         "Immunization.protocolApplied[0].doseNumberPositiveInt"),
        (i | {"lotNumber": "x" * 201}, 400, "invalid_input", None),
    ]  # fmt: skip
    failures = []
    for body, status, code, element in cases:
        response = await client.post(f"/fhir/{body['resourceType']}", json=body, headers=chw.headers)
        document = response.json()
        got = (response.status_code, document.get("resourceType"), code_of(document) if response.is_error else None)
        if got != (status, "OperationOutcome", code):
            failures.append(f"{body}: {response.status_code} {response.text[:300]}")
            continue
        validate(document)
        if element is not None and document["issue"][0].get("expression") != [element]:
            failures.append(f"{body}: {document['issue'][0].get('expression')} is not {element}")
    assert failures == [], "\n".join(failures)
    assert await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", patient) == 0


async def test_validate(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    _, chw, patient = await factory.post_with_patient()
    for resource in (allergy(patient), immunization(patient)):
        response = await client.post(f"/fhir/{resource['resourceType']}/$validate", json=resource,
                                     headers=chw.headers)  # fmt: skip
        assert response.status_code == 200, response.text
        validate(response.json())
        assert response.json()["issue"][0]["severity"] == "information", response.text
    for resource_type, resource, code, element in (
        ("AllergyIntolerance", allergy(patient) | {"code": {"coding": [{"system": SNOMED, "code": "12345"}],
                                                            "text": "x"}},
         "invalid_snomed_code", "AllergyIntolerance.code.coding"),
        ("Immunization", immunization(patient) | {"vaccineCode": {"coding": [{"system": CVX, "code": "0x"}],
                                                                  "text": "x"}},
         "invalid_vaccine_code", "Immunization.vaccineCode.coding"),
        ("Immunization", allergy(patient), "resource_type_mismatch", "Immunization.resourceType"),
    ):  # fmt: skip
        response = await client.post(f"/fhir/{resource_type}/$validate", json=resource, headers=chw.headers)
        assert response.status_code == 200, response.text
        validate(response.json())
        [issue] = response.json()["issue"]
        assert (issue["severity"], code_of(response.json()), issue.get("expression")) == ("error", code, [element])
    # mode=update against the current version, in a Parameters resource.
    created = (await client.post("/fhir/Immunization", json=immunization(patient), headers=chw.headers)).json()
    wrapped = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "resource", "resource": created | {"lotNumber": "MMR-3"}},
            {"name": "mode", "valueCode": "update"},
        ],
    }
    response = await client.post("/fhir/Immunization/$validate", json=wrapped, headers=chw.headers)
    assert response.json()["issue"][0]["severity"] == "information", response.text
    assert await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", patient) == 1


async def test_another_facility_is_refused(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    """The app API's rule: another facility's clinician neither reads nor writes the record without
    the patient's consent; a consent opens the record to reading, and writing stays with those who
    treat the patient (home facility, a consultation, a referral)."""
    _, chw, patient = await factory.post_with_patient()
    other = await factory.facility()
    clinician = await factory.staff(other, role="clinician")
    written = {}
    for resource in (allergy(patient), immunization(patient)):
        kind = resource["resourceType"]
        refused = await client.post(f"/fhir/{kind}", json=resource, headers=clinician.headers)
        assert (refused.status_code, code_of(refused.json())) == (403, "patient_access_denied"), refused.text
        validate(refused.json())
        checked = await client.post(f"/fhir/{kind}/$validate", json=resource, headers=clinician.headers)
        assert checked.json()["issue"][0]["code"] == "forbidden"
        written[kind] = (await client.post(f"/fhir/{kind}", json=resource, headers=chw.headers)).json()
        unread = await client.get(f"/fhir/{kind}/{written[kind]['id']}", headers=clinician.headers)
        assert (unread.status_code, code_of(unread.json())) == (403, "consent_required")
        changed = written[kind] | {"note": [{"text": "changed elsewhere"}]}
        update = await client.put(f"/fhir/{kind}/{changed['id']}", json=changed,
                                  headers={**clinician.headers, "If-Match": 'W/"1"'})  # fmt: skip
        assert update.status_code == 403, update.text
    assert await db.fetchval("SELECT count(*) FROM record_entries WHERE patient_id = $1", patient) == 2
    consent = {"scope": "facility", "facility_id": str(other), "method": "chw_witness", "witness_name": "Chan Sophea"}
    granted = await client.post(f"/v1/patients/{patient}/consents", json=consent, headers=chw.headers)
    assert granted.status_code == 201, granted.text
    for kind, resource in written.items():
        read = await fhir_get(client, f"/fhir/{kind}/{resource['id']}", clinician.headers)
        assert read == resource
        audit = await db.fetch(
            "SELECT action, resource_type, outcome, purpose FROM audit_events WHERE actor_user_id = $1"
            " AND resource_id = $2 ORDER BY id",
            clinician.user_id, resource["id"],
        )  # fmt: skip
        assert [tuple(a) for a in audit][-1] == ("read", kind, "success", "consent")
        still = await client.post(f"/fhir/{kind}", json={k: v for k, v in resource.items() if k != "id"},
                                  headers=clinician.headers)  # fmt: skip
        assert (still.status_code, code_of(still.json())) == (403, "patient_access_denied")
