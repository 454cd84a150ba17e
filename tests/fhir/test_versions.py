"""Every versioned reference the server writes can be read back (vread), history follows the
stored versions (instance and type level), and reads carry ETag/Last-Modified with conditional
reads answered 304, under the same access rules and audit as a plain read."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import asyncpg
import pytest

from api.fhir.errors import code_of
from tests.factory import Factory
from tests.fhir.test_resources import Client, fhir_get, rich_record, validate
from tests.fhir.test_transaction import transaction

BASE = "http://127.0.0.1:8000"


def path_of(url: str) -> str:
    return url.removeprefix(BASE)


async def test_vread_resolves_every_provenance_target_and_transaction_location(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    r = await rich_record(client, factory, db)
    h = r["chw"].headers
    provenances = await fhir_get(client, "/fhir/Provenance", h, patient=str(r["patient"]))
    first_version = await fhir_get(client, f"/fhir/Provenance/{r['weight']['id']}-v1", h)
    targets = [e["resource"]["target"][0]["reference"] for e in provenances["entry"]]
    targets.append(first_version["target"][0]["reference"])
    assert f"Observation/{r['weight']['id']}/_history/1" in targets
    assert f"Observation/{r['weight']['id']}/_history/2" in targets
    for target in targets:
        version = await fhir_get(client, f"/fhir/{target}", h)
        assert target.endswith(f"/{version['id']}/_history/{version['meta']['versionId']}")
    old = await fhir_get(client, f"/fhir/Observation/{r['weight']['id']}/_history/1", h)
    new = await fhir_get(client, f"/fhir/Observation/{r['weight']['id']}/_history/2", h)
    assert (old["valueQuantity"]["value"], old["status"]) == (61.5, "final")
    assert (new["valueQuantity"]["value"], new["status"]) == (62.5, "amended")
    # A Provenance is itself versioned (once), and every resource carries meta.
    first = provenances["entry"][0]["resource"]
    assert first["meta"]["versionId"] == "1"
    await fhir_get(client, f"/fhir/Provenance/{first['id']}/_history/1", h)
    # A transaction's locations are versioned references too.
    answer = await client.post("/fhir", json=transaction(r["post"], uuid.uuid4().hex[:10], 37.2), headers=h)
    for entry in answer.json()["entry"]:
        await fhir_get(client, f"/fhir/{entry['response']['location']}", h)


async def test_unknown_versions_are_404_and_reads_keep_their_rule(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    r = await rich_record(client, factory, db)
    h, weight = r["chw"].headers, r["weight"]["id"]
    for path in (
        f"/fhir/Observation/{weight}/_history/3",
        f"/fhir/Observation/{weight}/_history/x",
        f"/fhir/Observation/{weight}/_history/0",
        f"/fhir/Condition/{weight}/_history/1",  # the entry is an Observation
        f"/fhir/Appointment/{r['appointment']['id']}/_history/1",  # only the current version is kept
        f"/fhir/Patient/{r['patient']}/_history/2",
    ):
        response = await client.get(path, headers=h)
        assert response.status_code == 404, path
        validate(response.json())
        assert code_of(response.json()) in ("version_not_found", "entry_not_found"), path
    current = await fhir_get(client, f"/fhir/Appointment/{r['appointment']['id']}", h)
    again = await fhir_get(
        client, f"/fhir/Appointment/{r['appointment']['id']}/_history/{current['meta']['versionId']}", h
    )
    assert again == current
    stranger = await factory.staff(await factory.facility(), role="chw")
    refused = await client.get(f"/fhir/Observation/{weight}/_history/1", headers=stranger.headers)
    assert refused.status_code == 403
    assert code_of(refused.json()) == "consent_required"


async def test_patient_versions_are_kept(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    health_id = {"system": "urn:kh:health-id", "value": uuid.uuid4().hex[:10]}
    patient = await factory.patient(post, token=chw.token, names=[{"text": "Sok Dara"}], identifiers=[health_id])
    changed = await client.patch(f"/v1/patients/{patient}", headers={**chw.headers, "If-Match": '"1"'},
                                 json={"names": [{"text": "Sok Dara Chan"}], "identifiers": []})  # fmt: skip
    assert changed.status_code == 200, changed.text
    first = await fhir_get(client, f"/fhir/Patient/{patient}/_history/1", chw.headers)
    second = await fhir_get(client, f"/fhir/Patient/{patient}/_history/2", chw.headers)
    assert first["name"][0]["text"] == "Sok Dara"
    assert first["identifier"][0]["system"] == "urn:kh:health-id"
    assert second["name"][0]["text"] == "Sok Dara Chan"
    assert "identifier" not in second
    assert second == await fhir_get(client, f"/fhir/Patient/{patient}", chw.headers)
    history = await fhir_get(client, f"/fhir/Patient/{patient}/_history", chw.headers)
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]
    assert [e["request"]["method"] for e in history["entry"]] == ["PUT", "POST"]
    # Type level: the versions of the patients the caller may see, newest first, and no one else's.
    everyone = await fhir_get(client, "/fhir/Patient/_history", chw.headers, _count=1000)
    mine = [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in everyone["entry"]]
    assert mine[:2] == [(str(patient), "2"), (str(patient), "1")]
    stranger = await factory.staff(await factory.facility(), role="chw")
    theirs = await fhir_get(client, "/fhir/Patient/_history", stranger.headers)
    assert str(patient) not in {e["resource"]["id"] for e in theirs.get("entry", [])}
    refused = await client.get(f"/fhir/Patient/{patient}/_history/1", headers=stranger.headers)
    assert refused.status_code == 403
    # Kept versions are history: the database refuses to change them.
    with pytest.raises(asyncpg.RestrictViolationError, match="append-only"):
        await db.execute("UPDATE patient_versions SET phone = '+85512000000' WHERE patient_id = $1", patient)


async def test_type_history_of_the_record_follows_the_record_rule(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    r = await rich_record(client, factory, db)
    h, weight = r["chw"].headers, r["weight"]["id"]
    before = datetime.now(UTC)
    history = await fhir_get(client, "/fhir/Observation/_history", h, _count=1000)
    versions = [(e["resource"]["id"], e["resource"]["meta"]["versionId"]) for e in history["entry"]]
    assert (weight, "2") in versions
    assert (weight, "1") in versions
    assert versions.index((weight, "2")) < versions.index((weight, "1"))  # newest first
    assert {e["resource"]["resourceType"] for e in history["entry"]} == {"Observation"}
    purposes = await db.fetch(
        "SELECT purpose FROM audit_events WHERE action = 'search' AND resource_type = 'Record' AND patient_id = $1"
        " AND actor_user_id = $2 AND at >= $3",
        r["patient"], r["chw"].user_id, before - timedelta(seconds=1),
    )  # fmt: skip
    assert [p["purpose"] for p in purposes] == ["treatment"]
    # Paging with next links, and _since.
    first = await fhir_get(client, "/fhir/Observation/_history", h, _count=1)
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = await fhir_get(client, path_of(next_url), h)
    assert second["entry"][0]["resource"] != first["entry"][0]["resource"]
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    later = await fhir_get(client, "/fhir/Observation/_history", h, _since=tomorrow)
    assert "entry" not in later
    # Someone the record is not open to finds none of it.
    stranger = await factory.staff(await factory.facility(), role="chw")
    theirs = await fhir_get(client, "/fhir/Observation/_history", stranger.headers)
    assert weight not in {e["resource"]["id"] for e in theirs.get("entry", [])}
    bad = await client.get("/fhir/Observation/_history", params={"_since": "yesterday"}, headers=h)
    assert bad.status_code in (400, 422)
    assert code_of(bad.json()) == "invalid_date"


async def test_reads_carry_etag_and_conditional_reads_are_304(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    r = await rich_record(client, factory, db)
    h, weight = r["chw"].headers, r["weight"]["id"]
    read = await client.get(f"/fhir/Observation/{weight}", headers=h)
    assert read.headers["etag"] == 'W/"2"'
    modified = read.headers["last-modified"]
    assert modified.endswith("GMT")
    for headers in ({"If-None-Match": 'W/"2"'}, {"If-None-Match": '"1", W/"2"'}, {"If-None-Match": "*"},
                    {"If-Modified-Since": modified}):  # fmt: skip
        again = await client.get(f"/fhir/Observation/{weight}", headers={**h, **headers})
        assert again.status_code == 304, headers
        assert again.content == b""
        assert again.headers["etag"] == 'W/"2"'
    stale = await client.get(f"/fhir/Observation/{weight}", headers={**h, "If-None-Match": 'W/"1"'})
    assert stale.status_code == 200
    assert stale.json()["meta"]["versionId"] == "2"
    past = format_datetime(datetime.now(UTC) - timedelta(days=3), usegmt=True)
    older = await client.get(f"/fhir/Observation/{weight}", headers={**h, "If-Modified-Since": past})
    assert older.status_code == 200
    # A 304 is still a read of the record: audited like any.
    reads = await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'read' AND resource_id = $1 AND actor_user_id = $2",
        weight, r["chw"].user_id,
    )  # fmt: skip
    assert reads >= 6
    # Every readable type carries its validators; someone refused gets no 304 for guessing.
    for path in (
        f"/fhir/Patient/{r['patient']}",
        f"/fhir/Appointment/{r['appointment']['id']}",
        f"/fhir/Practitioner/{r['specialist'].practitioner_id}",
        f"/fhir/Organization/{r['centre']}",
    ):
        response = await client.get(path, headers=h)
        meta: dict[str, Any] = response.json()["meta"]
        assert response.headers["etag"] == f'W/"{meta["versionId"]}"', path
    stranger = await factory.staff(await factory.facility(), role="chw")
    guess = await client.get(f"/fhir/Observation/{weight}", headers={**stranger.headers, "If-None-Match": 'W/"2"'})
    assert guess.status_code == 403


async def test_capability_statement_declares_versions_and_writes(client: Client) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    validate(statement)
    rest = statement["rest"][0]
    assert {"code": "transaction"} in rest["interaction"]
    assert {"code": "batch"} in rest["interaction"]
    by_type = {r["type"]: r for r in rest["resource"]}
    for name in ("Patient", "Observation", "Condition", "MedicationRequest", "Encounter"):
        codes = {i["code"] for i in by_type[name]["interaction"]}
        assert codes >= {"read", "vread", "create", "update", "search-type", "history-instance", "history-type"}
        assert "validate" in {o["name"] for o in by_type[name]["operation"]}
    assert by_type["Patient"]["conditionalCreate"] is True
    assert by_type["Observation"]["versioning"] == "versioned-update"
    assert {i["code"] for i in by_type["Appointment"]["interaction"]} >= {"read", "vread", "history-instance"}
    assert "create" not in {i["code"] for i in by_type["Appointment"]["interaction"]}
