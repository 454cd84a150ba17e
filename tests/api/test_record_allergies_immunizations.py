"""Allergies and immunizations in the shared record through the app API: written with provenance,
checked (SNOMED CT check digit, CVX or local code, statuses), versioned, audited, and refused to a
facility without a basis for reading, as every other kind of entry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from tests.api.test_record import Client, write
from tests.factory import Factory

_NEXT_MONTH = (datetime.now(UTC) + timedelta(days=30)).isoformat()
PENICILLIN = {
    "kind": "allergy",
    "substance": "Penicillin",
    "snomed_code": "373270004",  # Penicillin -class of antibiotic- (substance)
    "category": "medication",
    "criticality": "high",
    "reaction": "hives",
    "severity": "moderate",
    "onset": "2020-05-01T08:00:00+07:00",
}
MEASLES = {
    "kind": "immunization",
    "vaccine": "Measles, mumps and rubella",
    "vaccine_code": "03",
    "occurred_at": "2026-01-10T02:00:00Z",
    "dose_number": 1,
    "lot_number": "MMR-2291",
}


async def test_allergy_and_immunization_are_entries_with_provenance(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    scene = await factory.scene()
    allergy = await write(client, scene, PENICILLIN)
    assert allergy["kind"] == "allergy"
    assert allergy["code"] == "373270004"
    assert allergy["body"]["onset"] == "2020-05-01T01:00:00Z"  # stored in UTC
    assert allergy["body"]["clinical_status"] == "active"
    assert allergy["provenance"]["facility_id"] == str(scene.post)
    shot = await write(client, scene, MEASLES)
    assert shot["kind"] == "immunization"
    assert shot["code"] == "03"
    assert shot["effective_at"] == "2026-01-10T02:00:00Z"
    assert shot["body"]["status"] == "completed"
    free_text = await write(client, scene, {"kind": "allergy", "substance": "Shellfish"})
    assert free_text["code"] is None
    local = await write(
        client, scene, {"kind": "immunization", "vaccine": "Japanese encephalitis", "vaccine_code": "JE-LIVE",
                        "code_system": "local"},
    )  # fmt: skip
    assert local["body"]["code_system"] == "local"

    only_allergies = await client.get(
        f"/v1/patients/{scene.patient}/record", params={"kind": "allergy"}, headers=scene.chw.headers
    )
    assert {e["id"] for e in only_allergies.json()["items"]} == {allergy["id"], free_text["id"]}
    writes = await db.fetch(
        """SELECT resource_type, resource_id FROM audit_events
           WHERE patient_id = $1 AND action = 'create' AND resource_type <> 'Patient'""",
        scene.patient,
    )
    assert {(r["resource_type"], r["resource_id"]) for r in writes} == {
        ("AllergyIntolerance", allergy["id"]),
        ("AllergyIntolerance", free_text["id"]),
        ("Immunization", shot["id"]),
        ("Immunization", local["id"]),
    }


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ({**PENICILLIN, "snomed_code": "373270005"}, "invalid_snomed_code", "snomed_code"),  # check digit off
        ({**PENICILLIN, "snomed_code": "penicillin"}, "invalid_snomed_code", "snomed_code"),
        ({**PENICILLIN, "reaction": None}, "reaction_required", "reaction"),
        ({**PENICILLIN, "onset": "2020-05-01T08:00:00"}, "timezone_required", "onset"),
        ({**PENICILLIN, "clinical_status": "gone"}, None, None),
        ({**MEASLES, "vaccine_code": "1234"}, "invalid_vaccine_code", "vaccine_code"),
        ({**MEASLES, "not_done_reason": "refused"}, "reason_without_not_done", "not_done_reason"),
        ({**MEASLES, "occurred_at": _NEXT_MONTH}, "time_in_future", "occurred_at"),
        ({**MEASLES, "dose_number": 0}, None, None),
        ({"kind": "immunization"}, None, None),
    ],
)
async def test_bad_input_is_refused_naming_the_field(
    client: Client, factory: Factory, body: dict[str, Any], code: str | None, field: str | None
) -> None:
    scene = await factory.scene()
    # Shapes msgspec refuses are 400; content the record's rules refuse, 422 (as for every kind).
    refused = await write(client, scene, {k: v for k, v in body.items() if v is not None}, expect=422 if code else 400)
    if code is not None:
        assert refused["code"] == code
        assert [e["field"] for e in refused["errors"]] == [field]


async def test_not_done_immunization_keeps_its_reason(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    shot = await write(
        client, scene, {"kind": "immunization", "vaccine": "BCG", "status": "not-done", "not_done_reason": "fever"}
    )
    assert shot["body"]["not_done_reason"] == "fever"


async def test_corrected_and_entered_in_error_keep_history(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    allergy = await write(client, scene, PENICILLIN)
    corrected = await client.post(
        f"/v1/record/{allergy['id']}/correct",
        json={"expected_version": 1, "entry": {**PENICILLIN, "clinical_status": "resolved"}, "reason": "outgrown"},
        headers=scene.chw.headers,
    )
    assert corrected.status_code == 200, corrected.text
    assert corrected.json()["version"] == 2
    wrong_kind = await client.post(
        f"/v1/record/{allergy['id']}/correct",
        json={"expected_version": 2, "entry": MEASLES, "reason": "typo"},
        headers=scene.chw.headers,
    )
    assert wrong_kind.status_code == 422
    assert wrong_kind.json()["code"] == "kind_mismatch"
    marked = await client.post(
        f"/v1/record/{allergy['id']}/entered-in-error",
        json={"expected_version": 2, "reason": "wrong patient"},
        headers=scene.chw.headers,
    )
    assert marked.status_code == 200, marked.text
    history = await client.get(f"/v1/record/{allergy['id']}/history", headers=scene.chw.headers)
    assert [v["status"] for v in history.json()] == ["superseded", "superseded", "entered_in_error"]


async def test_other_facility_is_refused_until_consent(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    scene = await factory.scene()
    shot = await write(client, scene, MEASLES)
    other = await factory.facility()
    stranger = await factory.staff(other)
    refused = await client.get(f"/v1/record/{shot['id']}", headers=stranger.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "consent_required"
    assert (await write(client, scene, MEASLES, expect=201))["id"] != shot["id"]
    attempt = await client.post(f"/v1/patients/{scene.patient}/record", json=PENICILLIN, headers=stranger.headers)
    assert attempt.status_code == 403
    consent = {"scope": "facility", "facility_id": str(other), "method": "chw_witness", "witness_name": "Chan Sophea"}
    granted = await client.post(f"/v1/patients/{scene.patient}/consents", json=consent, headers=scene.chw.headers)
    assert granted.status_code == 201, granted.text
    read = await client.get(f"/v1/record/{shot['id']}", headers=stranger.headers)
    assert read.status_code == 200, read.text
    audit = await db.fetch(
        """SELECT action, resource_type, outcome, purpose FROM audit_events
           WHERE resource_id = $1 AND actor_user_id = $2 ORDER BY id""",
        shot["id"],
        stranger.user_id,
    )
    assert [tuple(r) for r in audit] == [
        ("read", "Immunization", "refused", None),
        ("read", "Immunization", "success", "consent"),
    ]


async def test_unknown_entry_is_404(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    missing = await client.get(f"/v1/record/{uuid.uuid4()}", headers=scene.chw.headers)
    assert missing.status_code == 404


async def test_recorded_offline_and_synced(client: Client, factory: Factory) -> None:
    """A CHW's phone pushes an allergy and a vaccination recorded offline and pulls them back."""
    scene = await factory.scene()
    batch = [
        {"client_id": "phone-a1", "patient_id": str(scene.patient), "entry": PENICILLIN},
        {"client_id": "phone-a2", "patient_id": str(scene.patient), "entry": MEASLES},
        {"client_id": "phone-a3", "patient_id": str(scene.patient), "entry": {**MEASLES, "vaccine_code": "ABC"}},
    ]
    pushed = await client.post("/v1/sync", json={"changes": batch}, headers=scene.chw.headers)
    assert pushed.status_code == 200, pushed.text
    results = pushed.json()["results"]
    assert [r["result"] for r in results] == ["applied", "applied", "rejected"]
    assert results[2]["code"] == "invalid_vaccine_code"
    pulled = (await client.get("/v1/sync", headers=scene.chw.headers)).json()
    kinds = {c["id"]: c["kind"] for c in pulled["changes"]}
    assert kinds[results[0]["entry_id"]] == "allergy"
    assert kinds[results[1]["entry_id"]] == "immunization"
