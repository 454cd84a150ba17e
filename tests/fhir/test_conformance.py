"""FHIR R4 conformance: the suite's independent validator refuses what R4 and the vital-signs
profiles forbid (so the check every test gets can fail), each vital sign of the catalogue reads as
its R4 profile has it, searches follow the codes and categories emitted, writes take the
profiles' shapes, and the collector sees compressed and NDJSON bodies."""

from __future__ import annotations

import gzip
import json
import uuid
from typing import Any

import brotli
from litestar import Litestar
from litestar.testing import AsyncTestClient

from api.fhir import vitals
from api.fhir.errors import code_of
from domain.record.catalogue import BLOOD_PRESSURE_PANEL, VITALS
from tests.factory import Factory, Staff
from tests.fhir.test_resources import fhir_get
from tests.fhir_conformance import CONFORMANCE, Conformance

Client = AsyncTestClient[Litestar]
LOINC, UCUM = "http://loinc.org", "http://unitsofmeasure.org"
PROFILE = "http://hl7.org/fhir/StructureDefinition/"
VITAL_SIGNS = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs"}]}]  # fmt: skip


def errors(resource: dict[str, Any]) -> list[str]:
    found = CONFORMANCE.validator.issues(resource)
    return [f"{i['path']}: {i['message']}" for i in found if i["severity"] in ("error", "fatal")]


def vital(code: str, value: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "status": "final", "category": VITAL_SIGNS,
        "code": {"coding": [{"system": LOINC, "code": code}]}, "subject": {"reference": "Patient/1"},
        "effectiveDateTime": "2026-11-02T03:10:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit}, **extra,
    }  # fmt: skip


def bp(systolic_unit: str = "mm[Hg]") -> dict[str, Any]:
    panel = vital(BLOOD_PRESSURE_PANEL, 0, "")
    del panel["valueQuantity"]
    panel["component"] = [
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
         "valueQuantity": {"value": 120, "unit": systolic_unit, "system": UCUM, "code": systolic_unit}},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
         "valueQuantity": {"value": 80, "unit": "mm[Hg]", "system": UCUM, "code": "mm[Hg]"}},
    ]  # fmt: skip
    return panel


def test_the_validator_refuses_what_r4_forbids() -> None:
    spo2 = vital("59408-5", 97, "%")
    spo2["code"]["coding"].append({"system": LOINC, "code": "2708-6"})
    weight = vital("29463-7", 61.5, "kg")
    assert errors(spo2) == []
    assert errors(weight) == []
    assert errors(bp()) == []
    cases: list[tuple[dict[str, Any], str]] = [
        # the oxygensat profile requires 2708-6 beside a pulse oximeter's 59408-5
        (vital("59408-5", 97, "%"), "slice 'OxygenSatCode'"),
        # the bp profile fixes its components' unit (a check validate.mjs adds to Medplum's)
        (bp("mmHg"), '"mmHg" is not "mm[Hg]"'),
        # a profile's required binding: a body weight in kg, g or [lb_av]
        (vital("29463-7", 10, "[stone_av]"), "ucum-bodyweight"),
        # a base required binding
        ({**weight, "status": "done"}, "observation-status"),
        # an invariant (FHIRPath): obs-6
        ({**weight, "dataAbsentReason": {"text": "not taken"}}, "obs-6"),
        # the vitalsigns profile: effective[x] 1..1
        ({k: v for k, v in weight.items() if k != "effectiveDateTime"}, "effective[x]"),
        # structure: an element R4 does not define
        ({"resourceType": "Patient", "gender": "female", "nickname": "Dara"}, 'Invalid additional property "nickname"'),
        # inside a Bundle, with the entry's path
        ({"resourceType": "Bundle", "type": "searchset", "entry": [
            {"fullUrl": "http://x/fhir/Observation/1", "resource": vital("8867-4", 70, "bpm")}]},
         "Bundle.entry[0].resource.value"),
    ]  # fmt: skip
    for resource, expected in cases:
        found = errors(resource)
        assert any(expected in e for e in found), (expected, found)


def test_a_subsetted_resource_need_not_be_whole() -> None:
    partial = {"resourceType": "Observation", "id": "1", "code": {"coding": [{"system": LOINC, "code": "29463-7"}]}}
    assert any("status" in e for e in errors(partial))
    tag = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
    assert errors({**partial, "meta": {"tag": [tag]}}) == []
    assert errors({**partial, "meta": {"tag": [tag]}, "status": "done"}) != []  # its elements must still be right


def test_the_collector_reads_compressed_and_ndjson_bodies() -> None:
    sink = Conformance(validator=CONFORMANCE.validator)
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid"}]}
    sink.collect_body("GET /a", "application/fhir+json", "br", brotli.compress(json.dumps(outcome).encode()))
    sink.collect_body(
        "GET /b", "application/fhir+json; charset=utf-8", "gzip", gzip.compress(b'{"resourceType": "Basic"}')
    )
    lines = b'{"resourceType": "Patient", "gender": "female"}\n\n{"resourceType": "Patient", "gender": "nope"}\n'
    sink.collect_body("GET /c.ndjson", "application/fhir+ndjson", "", lines)
    assert [e.resource.get("resourceType") for e in sink.pending] == ["OperationOutcome", "Basic", "Patient", "Patient"]
    reports = sink.failures()
    assert sink.pending == []
    assert len(reports) == 2, reports  # Basic lacks its code; the second patient's gender is no gender
    assert reports[0].startswith("Basic/None from GET /b is not valid FHIR R4")
    assert "GET /c.ndjson (line 3)" in reports[1]
    assert "administrative-gender" in reports[1]


async def test_the_app_under_test_is_watched(client: Client) -> None:
    before = len(CONFORMANCE.pending)
    response = await client.get("/fhir/metadata", headers={"accept-encoding": "br"})
    assert response.status_code == 200
    emitted = CONFORMANCE.pending[before:]
    assert [e.resource["resourceType"] for e in emitted] == ["CapabilityStatement"]
    assert emitted[0].origin == "GET /fhir/metadata"


async def _setup(factory: Factory) -> tuple[Staff, str]:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    return chw, str(await factory.patient(post, token=chw.token))


async def test_every_vital_sign_reads_as_its_profile(client: Client, factory: Factory) -> None:
    chw, patient = await _setup(factory)
    bodies: list[dict[str, Any]] = [
        {"kind": "observation", "code": code, "value": round((v.low + v.high) / 2, 1), "unit": v.unit}
        for code, v in VITALS.items()
    ]
    components = [{"code": "8480-6", "value": 150, "unit": "mm[Hg]"}, {"code": "8462-4", "value": 95, "unit": "mm[Hg]"}]
    bodies.append({"kind": "observation", "code": BLOOD_PRESSURE_PANEL, "components": components})
    for body in bodies:
        created = await factory.post(f"/v1/patients/{patient}/record", body, chw.token)
        resource = await fhir_get(client, f"/fhir/Observation/{created['id']}", chw.headers)
        assert errors(resource) == [], (body["code"], resource)
        codes = [c["code"] for c in resource["code"]["coding"]]
        category = resource["category"][0]["coding"][0]["code"]
        assert category == vitals.category(body["code"])
        if category != "vital-signs":
            assert "profile" not in resource["meta"]
            continue
        assert resource["meta"]["profile"] == [vitals.PROFILES[body["code"]]]
        assert resource["subject"] == {"reference": f"Patient/{patient}"}
        assert "effectiveDateTime" in resource
        quantities = [c["valueQuantity"] for c in resource.get("component", [])] or [resource["valueQuantity"]]
        assert all(q["system"] == UCUM and q["code"] == q["unit"] for q in quantities)
        if body["code"] == "59408-5":
            assert codes == ["59408-5", "2708-6"]
    profiles = {vitals.PROFILES[b["code"]] for b in bodies if b["code"] in vitals.PROFILES}
    expected = {PROFILE + p for p in ("bp", "bodytemp", "bodyweight", "bodyheight", "oxygensat", "heartrate",
                                      "resprate", "bmi", "headcircum", "vitalsigns")}  # fmt: skip
    assert profiles == expected
    statement = await fhir_get(client, "/fhir/metadata", chw.headers)
    observation = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    assert set(observation["supportedProfile"]) == expected


async def test_searches_follow_the_codes_and_categories_emitted(client: Client, factory: Factory) -> None:
    chw, patient = await _setup(factory)
    ids = {}
    for code, value, unit in (("59408-5", 97, "%"), ("29463-7", 60, "kg"), ("2339-0", 110, "mg/dL")):
        body = {"kind": "observation", "code": code, "value": value, "unit": unit}
        ids[code] = (await factory.post(f"/v1/patients/{patient}/record", body, chw.token))["id"]

    async def found(**params: str) -> set[str]:
        bundle = await fhir_get(client, "/fhir/Observation", chw.headers, patient=patient, **params)
        return {e["resource"]["id"] for e in bundle.get("entry", [])}

    assert await found(code="http://loinc.org|2708-6") == {ids["59408-5"]}
    assert await found(code="59408-5") == {ids["59408-5"]}
    assert await found(**{"code:not": "2708-6"}) == {ids["29463-7"], ids["2339-0"]}
    assert await found(category="laboratory") == {ids["2339-0"]}
    assert await found(category="http://terminology.hl7.org/CodeSystem/observation-category|vital-signs") == {
        ids["59408-5"], ids["29463-7"]}  # fmt: skip


async def test_writes_take_the_profiles_shapes(client: Client, factory: Factory) -> None:
    chw, patient = await _setup(factory)
    subject = {"reference": f"Patient/{patient}"}
    spo2 = {**vital("2708-6", 96, "%"), "subject": subject}  # the profile's code alone
    del spo2["effectiveDateTime"]
    spo2["effectivePeriod"] = {"start": "2026-11-02T03:10:00Z", "end": "2026-11-02T03:11:00Z"}
    response = await client.post("/fhir/Observation", json=spo2, headers=chw.headers)
    assert response.status_code == 201, response.text
    created = response.json()
    assert [c["code"] for c in created["code"]["coding"]] == ["59408-5", "2708-6"]
    assert created["effectiveDateTime"] == "2026-11-02T03:10:00Z"
    assert created["meta"]["profile"] == [PROFILE + "oxygensat"]
    assert errors(created) == []
    # Read back and sent again as it is, it is a correction of the same measurement.
    again = await client.put(f"/fhir/Observation/{created['id']}", json=created,
                             headers={**chw.headers, "If-Match": 'W/"1"'})  # fmt: skip
    assert again.status_code == 200, again.text
    assert again.json()["code"] == created["code"]
    panel = {**bp(), "subject": subject}
    response = await client.post("/fhir/Observation", json=panel, headers=chw.headers)
    assert response.status_code == 201, response.text
    assert errors(response.json()) == []
    # The profiles' other units are taken, and kept in the catalogue's.
    other_units = [
        ("8310-5", 98.6, "[degF]", (37.0, "Cel")),
        ("29463-7", 150, "[lb_av]", (68.039, "kg")),
        ("29463-7", 3250, "g", (3.25, "kg")),
        ("8302-2", 20, "[in_i]", (50.8, "cm")),
    ]
    for code, value, unit, stored in other_units:
        response = await client.post("/fhir/Observation", json={**vital(code, value, unit), "subject": subject},
                                     headers=chw.headers)  # fmt: skip
        assert response.status_code == 201, response.text
        quantity = response.json()["valueQuantity"]
        assert (quantity["value"], quantity["code"]) == stored
    both = {**vital("8310-5", 37, "Cel"), "subject": subject, "effectivePeriod": {"start": "2026-11-02T03:10:00Z"}}
    refused = await client.post("/fhir/Observation", json=both, headers=chw.headers)
    assert refused.status_code == 422, refused.text
    assert code_of(refused.json()) == "invalid_resource"
    assert refused.json()["issue"][0]["expression"] == ["Observation.effectivePeriod"]
    no_start = {**vital("8310-5", 37, "Cel"), "subject": subject, "effectivePeriod": {"end": "2026-11-02T03:10:00Z"}}
    del no_start["effectiveDateTime"]
    refused = await client.post("/fhir/Observation", json=no_start, headers=chw.headers)
    assert refused.status_code == 422, refused.text
    assert uuid.UUID(created["id"])
