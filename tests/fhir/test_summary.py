"""Patient/$summary: an International Patient Summary document Bundle. The Composition comes
first with its LOINC type and sections, mandatory sections are present (with an emptyReason when
the record has nothing), every reference resolves inside the Bundle, the whole validates with the
R4B models, a FHIR client library reads it, and it is audited and refused as a record read."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from fhir.resources.R4B.bundle import Bundle
from fhirpy import AsyncFHIRClient

from api.fhir.errors import code_of
from tests.factory import Factory
from tests.fhir.test_allergies_immunizations import Record, record
from tests.fhir.test_fhirpy import live  # noqa: F401 - the live server fixture
from tests.fhir.test_resources import Client, validate

LOINC = "http://loinc.org"
SECTION_CODES = {
    "11450-4": "problems",
    "10160-0": "medications",
    "48765-2": "allergies",
    "11369-6": "immunizations",
    "30954-2": "results",
    "8716-3": "vital-signs",
    "11348-0": "past-illness",
}


def _resolve(bundle: dict[str, Any], reference: str, from_url: str) -> dict[str, Any] | None:
    """FHIR's rule: an absolute reference is a fullUrl; a relative one resolves against the base of
    the referring entry's RESTful fullUrl."""
    urls = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    if "://" in reference or reference.startswith("urn:"):
        return urls.get(reference)
    base = from_url.rsplit("/", 2)[0]
    return urls.get(f"{base}/{reference}")


def _references(value: Any) -> list[str]:
    if isinstance(value, dict):
        own = [value["reference"]] if isinstance(value.get("reference"), str) else []
        return own + [r for v in value.values() for r in _references(v)]
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    return []


def check_document(bundle: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The structural rules of an IPS document; its sections by name."""
    Bundle.model_validate(bundle)  # the Bundle and every resource in it, against R4B
    assert bundle["type"] == "document"
    assert bundle["identifier"]["system"] == "urn:ietf:rfc:3986"
    assert bundle["identifier"]["value"].startswith("urn:uuid:")
    assert bundle["timestamp"]
    composition = bundle["entry"][0]["resource"]
    assert composition["resourceType"] == "Composition"
    assert composition["type"]["coding"][0] == {
        "system": LOINC,
        "code": "60591-5",
        "display": "Patient summary Document",
    }
    assert composition["status"] == "final"
    assert composition["title"]
    assert composition["date"]
    assert len({e["fullUrl"] for e in bundle["entry"]}) == len(bundle["entry"])
    for entry in bundle["entry"]:
        for reference in _references(entry["resource"]):
            assert _resolve(bundle, reference, entry["fullUrl"]) is not None, (entry["fullUrl"], reference)
    subject = _resolve(bundle, composition["subject"]["reference"], bundle["entry"][0]["fullUrl"])
    assert subject is not None
    assert subject["resourceType"] == "Patient"
    author = _resolve(bundle, composition["author"][0]["reference"], bundle["entry"][0]["fullUrl"])
    assert author is not None
    assert author["resourceType"] == "Organization"
    sections = {}
    for section in composition["section"]:
        [coding] = section["code"]["coding"]
        assert coding["system"] == LOINC
        sections[SECTION_CODES[coding["code"]]] = section
        assert section["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
        assert ("entry" in section) != ("emptyReason" in section)  # cmp-2
    assert {"problems", "medications", "allergies"} <= set(sections)
    return sections


def _types(bundle: dict[str, Any], section: dict[str, Any]) -> list[str]:
    first = bundle["entry"][0]["fullUrl"]
    found = [_resolve(bundle, e["reference"], first) for e in section.get("entry", [])]
    return [r["resourceType"] for r in found if r is not None]


async def _full_record(client: Client, factory: Factory) -> Record:
    r = await record(client, factory)
    for body in (
        {"kind": "condition", "code": "I10", "display": "Essential hypertension"},
        {"kind": "condition", "code": "J45.9", "clinical_status": "resolved"},
        {"kind": "prescription", "drug": "Amlodipine", "drug_code": "197361", "dose": "5 mg", "route": "oral",
         "frequency": "once a day", "duration_days": 30},
        {"kind": "observation", "code": "29463-7", "value": 60, "unit": "kg", "effective_at": "2026-01-15T10:00:00Z"},
        {"kind": "observation", "code": "29463-7", "value": 61, "unit": "kg", "effective_at": "2026-03-10T12:30:00Z"},
        {"kind": "observation", "code": "85354-9", "components": [{"code": "8480-6", "value": 150, "unit": "mm[Hg]"},
                                                                  {"code": "8462-4", "value": 95, "unit": "mm[Hg]"}]},
    ):  # fmt: skip
        created = await client.post(f"/v1/patients/{r.patient}/record", json=body, headers=r.chw.headers)
        assert created.status_code == 201, created.text
    return r


async def test_summary_sections_and_references(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await _full_record(client, factory)
    response = await client.get(f"/fhir/Patient/{r.patient}/$summary", headers=r.chw.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    sections = check_document(bundle)
    assert _types(bundle, sections["problems"]) == ["Condition"]  # the resolved asthma is past illness
    assert _types(bundle, sections["past-illness"]) == ["Condition"]
    assert _types(bundle, sections["medications"]) == ["MedicationRequest"]
    assert _types(bundle, sections["allergies"]) == ["AllergyIntolerance"]  # the resolved one is left out
    assert _types(bundle, sections["immunizations"]) == ["Immunization"] * 3
    # Vital signs: the latest of each code (one weight, the blood pressure panel).
    vitals = [_resolve(bundle, e["reference"], "") for e in sections["vital-signs"]["entry"]]
    assert sorted(v["code"]["coding"][0]["code"] for v in vitals if v) == ["29463-7", "85354-9"]
    weight = next(v for v in vitals if v and v["code"]["coding"][0]["code"] == "29463-7")
    assert weight["valueQuantity"]["value"] == 61
    assert "results" not in sections  # nothing but vital signs is recorded
    assert "Penicillin" in sections["allergies"]["text"]["div"]
    for entry in bundle["entry"]:
        validate(entry["resource"])
    included = {e["resource"]["resourceType"] for e in bundle["entry"]}
    assert {"Composition", "Patient", "Organization"} <= included
    assert "Encounter" not in included
    # Audited as a read of the record and of the patient, with the reader's basis.
    audit = await db.fetch(
        """SELECT action, resource_type, purpose FROM audit_events
           WHERE actor_user_id = $1 AND patient_id = $2 AND action IN ('read', 'search') ORDER BY id""",
        r.chw.user_id, uuid.UUID(r.patient),
    )  # fmt: skip
    assert [tuple(a) for a in audit][-2:] == [("search", "Record", "treatment"), ("read", "Patient", "treatment")]


async def test_narrative_days_are_the_facilitys(client: Client, factory: Factory) -> None:
    r = await record(client, factory)
    late = {
        "kind": "immunization",
        "vaccine": "Hepatitis B",
        "vaccine_code": "08",
        "occurred_at": "2026-04-30T20:00:00Z",
    }
    assert (await client.post(f"/v1/patients/{r.patient}/record", json=late, headers=r.chw.headers)).status_code == 201
    bundle = (await client.get(f"/fhir/Patient/{r.patient}/$summary", headers=r.chw.headers)).json()
    narrative = check_document(bundle)["immunizations"]["text"]["div"]
    assert "Hepatitis B, completed, 2026-05-01" in narrative  # 03:00 on 1 May in Phnom Penh


async def test_empty_mandatory_sections_say_so(client: Client, factory: Factory) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    patient = await factory.patient(post, token=chw.token)
    response = await client.get(f"/fhir/Patient/{patient}/$summary", headers=chw.headers)
    assert response.status_code == 200, response.text
    bundle = response.json()
    sections = check_document(bundle)
    assert set(sections) == {"problems", "medications", "allergies"}
    for section in sections.values():
        assert section["emptyReason"]["coding"][0]["code"] == "unavailable"
        assert "entry" not in section
    assert [e["resource"]["resourceType"] for e in bundle["entry"]] == ["Composition", "Patient", "Organization"]
    # "No known allergy" recorded is an entry, not an empty section.
    known_none = {"kind": "allergy", "substance": "No known allergy", "snomed_code": "716186003"}
    assert (
        await client.post(f"/v1/patients/{patient}/record", json=known_none, headers=chw.headers)
    ).status_code == 201
    again = check_document((await client.get(f"/fhir/Patient/{patient}/$summary", headers=chw.headers)).json())
    assert "emptyReason" not in again["allergies"]
    assert len(again["allergies"]["entry"]) == 1


async def test_summary_by_identifier(client: Client, factory: Factory) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    health_id = f"HID-{uuid.uuid4().hex[:8]}"
    patient = await factory.patient(
        post, token=chw.token, identifiers=[{"system": "urn:kh:health-id", "value": health_id}]
    )
    found = await client.get(
        "/fhir/Patient/$summary", params={"identifier": f"urn:kh:health-id|{health_id}"}, headers=chw.headers
    )
    assert found.status_code == 200, found.text
    bundle = found.json()
    check_document(bundle)
    assert bundle["entry"][1]["resource"]["id"] == str(patient)
    by_reference = await client.get("/fhir/Patient/$summary", params={"patient": f"Patient/{patient}"},
                                    headers=chw.headers)  # fmt: skip
    assert by_reference.status_code == 200
    missing = await client.get(
        "/fhir/Patient/$summary", params={"identifier": "urn:kh:health-id|nobody"}, headers=chw.headers
    )
    assert missing.status_code == 404
    validate(missing.json())
    for bare in ("identifier", "identifier=", "patient=", "patient=nope"):
        refused = await client.get(f"/fhir/Patient/$summary?{bare}", headers=chw.headers)
        assert refused.status_code == 400, (bare, refused.text)
    both = await client.get(
        "/fhir/Patient/$summary", params={"patient": str(patient), "identifier": health_id}, headers=chw.headers
    )
    assert code_of(both.json()) == "patient_required"
    neither = await client.get("/fhir/Patient/$summary", headers=chw.headers)
    assert neither.status_code == 400
    assert code_of(neither.json()) == "patient_required"
    unknown = await client.get(f"/fhir/Patient/{uuid.uuid4()}/$summary", headers=chw.headers)
    assert unknown.status_code == 404


async def test_summary_needs_consent_and_is_audited(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await record(client, factory)
    other = await factory.facility()
    stranger = await factory.staff(other)
    refused = await client.get(f"/fhir/Patient/{r.patient}/$summary", headers=stranger.headers)
    assert refused.status_code == 403
    validate(refused.json())
    assert code_of(refused.json()) == "consent_required"
    unauthenticated = await client.get(f"/fhir/Patient/{r.patient}/$summary")
    assert unauthenticated.status_code == 401
    consent = {"scope": "facility", "facility_id": str(other), "method": "chw_witness", "witness_name": "Chan Sophea"}
    assert (await client.post(f"/v1/patients/{r.patient}/consents", json=consent,
                              headers=r.chw.headers)).status_code == 201  # fmt: skip
    allowed = await client.get(f"/fhir/Patient/{r.patient}/$summary", headers=stranger.headers)
    assert allowed.status_code == 200, allowed.text
    check_document(allowed.json())
    audit = await db.fetch(
        "SELECT action, resource_type, outcome, purpose FROM audit_events WHERE actor_user_id = $1 ORDER BY id",
        stranger.user_id,
    )
    assert [tuple(a) for a in audit] == [
        ("search", "Record", "refused", None),
        ("search", "Record", "success", "consent"),
        ("read", "Patient", "success", "consent"),
    ]


async def test_capability_statement_declares_summary(client: Client) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"name": "summary", "definition": "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"} in patient[
        "operation"
    ]


async def test_fhir_client_reads_the_summary(live: str, client: Client, factory: Factory) -> None:  # noqa: F811
    r = await _full_record(client, factory)
    fhir = AsyncFHIRClient(f"{live}/fhir", authorization=f"Bearer {r.chw.token}")
    bundle = await fhir.execute(f"Patient/{r.patient}/$summary", method="get")
    sections = check_document(dict(bundle))
    assert len(sections["immunizations"]["entry"]) == 3
    by_identifier = await fhir.execute("Patient/$summary", method="get", params={"patient": r.patient})
    assert by_identifier["entry"][1]["resource"]["id"] == r.patient
    patient = await fhir.reference("Patient", r.patient).to_resource()
    allergies: list[Any] = await fhir.resources("AllergyIntolerance").search(patient=patient.id).fetch_all()
    assert {a.id for a in allergies} == {r.penicillin, r.peanuts}
    for allergy in allergies:
        validate(allergy.serialize())
