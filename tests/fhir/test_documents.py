"""Notes and attachments of the record as DocumentReference and Binary: valid R4, versioned, and
read under the record's rule and audit like the rest of the record."""

from __future__ import annotations

import base64

import asyncpg

from api.fhir.errors import code_of
from tests.factory import Factory
from tests.fhir.test_resources import Client, fhir_get, validate

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


async def test_notes_and_attachments_as_document_references(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    patient = await factory.patient(post, token=chw.token)
    advice = {"kind": "note", "text": "ប្រឹក្សា: rest and fluids", "category": "advice"}
    note = (await client.post(f"/v1/patients/{patient}/record", headers=chw.headers, json=advice)).json()
    fixed = await client.post(f"/v1/record/{note['id']}/correct", headers=chw.headers, json={
        "expected_version": 1, "reason": "typo",
        "entry": {"kind": "note", "text": "ប្រឹក្សា: rest, fluids", "category": "advice"}})  # fmt: skip
    assert fixed.status_code == 200, fixed.text
    upload = await client.post(f"/v1/patients/{patient}/attachments", content=PNG, params={"title": "rash"},
                               headers={**chw.headers, "Content-Type": "image/png"})  # fmt: skip
    assert upload.status_code == 201, upload.text
    picture = upload.json()

    document = await fhir_get(client, f"/fhir/DocumentReference/{note['id']}", chw.headers)
    assert (document["meta"]["versionId"], document["docStatus"]) == ("2", "amended")
    text = base64.b64decode(document["content"][0]["attachment"]["data"]).decode()
    assert text == "ប្រឹក្សា: rest, fluids"
    first = await fhir_get(client, f"/fhir/DocumentReference/{note['id']}/_history/1", chw.headers)
    assert first["status"] == "superseded"
    history = await fhir_get(client, f"/fhir/DocumentReference/{note['id']}/_history", chw.headers)
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]

    found = await fhir_get(client, "/fhir/DocumentReference", chw.headers, patient=f"Patient/{patient}")
    assert sorted(e["resource"]["id"] for e in found["entry"]) == sorted([note["id"], picture["id"]])
    scan = next(e["resource"] for e in found["entry"] if e["resource"]["id"] == picture["id"])
    attachment = scan["content"][0]["attachment"]
    assert (attachment["url"], attachment["contentType"], attachment["title"]) == (
        f"Binary/{picture['id']}",
        "image/png",
        "rash",
    )
    binary = await client.get(f"/fhir/{attachment['url']}", headers=chw.headers)
    assert binary.headers["cache-control"] == "private, no-store"
    as_resource = binary.json()
    validate(as_resource)
    assert as_resource["contentType"] == "image/png"
    assert base64.b64decode(as_resource["data"]) == PNG

    # A Bundle reads them as any other resource.
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"DocumentReference/{note['id']}/_history/1"}},
        {"request": {"method": "GET", "url": f"DocumentReference/{picture['id']}"}}]}  # fmt: skip
    answer = (await client.post("/fhir", json=batch, headers=chw.headers)).json()
    validate(answer)
    assert [e["resource"]["meta"]["versionId"] for e in answer["entry"]] == ["1", "1"]
    assert answer["entry"][0]["resource"]["status"] == "superseded"
    # The record's rule and audit: a stranger is refused (and the refusal audited), reads are audited.
    stranger = await factory.staff(await factory.facility(), role="chw")
    for path in (f"/fhir/DocumentReference/{note['id']}", f"/fhir/Binary/{picture['id']}"):
        refused = await client.get(path, headers=stranger.headers)
        assert refused.status_code == 403, path
        assert code_of(refused.json()) == "consent_required"
    reads = await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'read' AND resource_id = $1 AND outcome = 'success'",
        picture["id"],
    )
    assert reads == 2  # the batch's read of the DocumentReference, and the Binary read
    # Not a document: an observation id is no DocumentReference.
    reading = {"kind": "observation", "code": "8310-5", "value": 37, "unit": "Cel"}
    observation = (await client.post(f"/v1/patients/{patient}/record", headers=chw.headers, json=reading)).json()
    missing = await client.get(f"/fhir/DocumentReference/{observation['id']}", headers=chw.headers)
    assert missing.status_code == 404
    statement = (await client.get("/fhir/metadata")).json()
    validate(statement)
    types = {r["type"] for r in statement["rest"][0]["resource"]}
    assert {"DocumentReference", "Binary"} <= types
