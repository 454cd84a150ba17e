"""FHIR search of the workflow and directory types: each finds what the app API shows the caller,
pages with next links, and every emitted resource validates against the FHIR R4B models."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from api.fhir.errors import code_of
from tests.factory import Factory
from tests.fhir.test_resources import Client, fhir_get, rich_record

BASE = "http://127.0.0.1:8000"


def ids(found: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in found.get("entry", [])]


def next_path(found: dict[str, Any]) -> str | None:
    url = next((link["url"] for link in found["link"] if link["relation"] == "next"), None)
    return None if url is None else url.removeprefix(BASE)


async def test_appointment_search(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    h, appointment = r["chw"].headers, r["appointment"]["id"]
    practitioner = f"Practitioner/{r['specialist'].practitioner_id}"
    assert ids(await fhir_get(client, "/fhir/Appointment", h, patient=str(r["patient"]))) == [appointment]
    assert ids(await fhir_get(client, "/fhir/Appointment", h, actor=f"Patient/{r['patient']}")) == [appointment]
    by_practitioner = await fhir_get(client, "/fhir/Appointment", r["specialist"].headers, actor=practitioner)
    assert appointment in ids(by_practitioner)
    found = await fhir_get(client, "/fhir/Appointment", h, patient=str(r["patient"]), status="fulfilled",
                           date=["ge2000-01-01", "lt2100-01-01"])  # fmt: skip
    assert ids(found) == [appointment]
    assert ids(await fhir_get(client, "/fhir/Appointment", h, patient=str(r["patient"]), status="cancelled")) == []
    # The app API's visibility: a stranger sees none of this patient's appointments.
    stranger = await factory.staff(await factory.facility(), role="chw")
    assert ids(await fhir_get(client, "/fhir/Appointment", stranger.headers, patient=str(r["patient"]))) == []
    # A code no appointment carries matches none (a token search, not an error).
    assert ids(await fhir_get(client, "/fhir/Appointment", h, status="nonsense")) == []


async def test_appointment_search_pages(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    other = await rich_record(client, factory, db)
    admin = {"Authorization": f"Bearer {await factory.admin_token()}"}
    seen: list[str] = []
    page = await fhir_get(client, "/fhir/Appointment", admin, _count=1, date="ge2000-01-01")
    for _ in range(3):
        seen += ids(page)
        path = next_path(page)
        assert path is not None
        page = await fhir_get(client, path, admin)
    assert len(seen) == len(set(seen)) == 3
    assert r["appointment"]["id"] != other["appointment"]["id"]


async def test_service_request_search(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    h, referral = r["chw"].headers, r["referral"]["id"]
    assert ids(await fhir_get(client, "/fhir/ServiceRequest", h, patient=str(r["patient"]))) == [referral]
    assert ids(await fhir_get(client, "/fhir/ServiceRequest", h, patient=f"Patient/{r['patient']}",
                              status="active")) == [referral]  # fmt: skip
    assert ids(await fhir_get(client, "/fhir/ServiceRequest", h, patient=str(r["patient"]), status="revoked")) == []
    # The centre reads it too; staff of an unrelated facility do not (as GET /v1/referrals/{id}).
    assert ids(await fhir_get(client, "/fhir/ServiceRequest", r["specialist"].headers,
                              patient=str(r["patient"]))) == [referral]  # fmt: skip
    stranger = await factory.staff(await factory.facility(), role="chw")
    assert ids(await fhir_get(client, "/fhir/ServiceRequest", stranger.headers, patient=str(r["patient"]))) == []


async def test_directory_searches(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    h = r["chw"].headers
    specialist = str(r["specialist"].practitioner_id)
    name = (await fhir_get(client, f"/fhir/Practitioner/{specialist}", h))["name"][0]["text"]
    assert ids(await fhir_get(client, "/fhir/Practitioner", h, name=name)) == [specialist]
    first = await fhir_get(client, "/fhir/Practitioner", h, _count=1)
    path = next_path(first)
    assert path is not None
    assert ids(await fhir_get(client, path, h)) != ids(first)

    centre = (await fhir_get(client, f"/fhir/Organization/{r['centre']}", h))["name"]
    assert ids(await fhir_get(client, "/fhir/Organization", h, name=centre)) == [str(r["centre"])]
    posts = await fhir_get(client, "/fhir/Organization", h, type="health_post", _count=1000)
    assert str(r["post"]) in ids(posts)
    assert str(r["centre"]) not in ids(posts)
    assert ids(await fhir_get(client, "/fhir/Location", h, name=centre)) == [str(r["centre"])]
    page = await fhir_get(client, "/fhir/Location", h, _count=1)
    assert next_path(page) is not None

    by_practitioner = await fhir_get(client, "/fhir/Schedule", h, actor=f"Practitioner/{specialist}")
    assert ids(by_practitioner) == [specialist]
    assert ids(await fhir_get(client, "/fhir/Schedule", h, actor=f"Location/{r['centre']}")) == [specialist]
    assert ids(await fhir_get(client, "/fhir/Schedule", h, actor=f"Location/{r['post']}")) == []


async def test_consent_read_follows_the_consent_list_rule(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    [listed] = (await fhir_get(client, "/fhir/Consent", r["chw"].headers, patient=str(r["patient"])))["entry"]
    consent_id = listed["resource"]["id"]
    read = await fhir_get(client, f"/fhir/Consent/{consent_id}", r["chw"].headers)
    assert read == listed["resource"]
    # The centre may read the record under this consent but does not manage it, as in the app API.
    refused = await client.get(f"/fhir/Consent/{consent_id}", headers=r["specialist"].headers)
    assert refused.status_code == 403
    assert code_of(refused.json()) == "patient_access_denied"
    unknown = await client.get(f"/fhir/Consent/{uuid.uuid4()}", headers=r["chw"].headers)
    assert unknown.status_code == 404
    audited = await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'read' AND resource_type = 'Consent' AND resource_id = $1",
        consent_id,
    )
    assert audited == 1


async def test_history_of_unversioned_types_is_the_current_version(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    r = await rich_record(client, factory, db)
    h = r["chw"].headers
    consent_id = (await fhir_get(client, "/fhir/Consent", h, patient=str(r["patient"])))["entry"][0]["resource"]["id"]
    for resource_type, ident in (
        ("Patient", r["patient"]),
        ("Practitioner", r["specialist"].practitioner_id),
        ("Organization", r["centre"]),
        ("Location", r["centre"]),
        ("Schedule", r["specialist"].practitioner_id),
        ("Appointment", r["appointment"]["id"]),
        ("ServiceRequest", r["referral"]["id"]),
        ("Consent", consent_id),
    ):
        current = await fhir_get(client, f"/fhir/{resource_type}/{ident}", h)
        history = await fhir_get(client, f"/fhir/{resource_type}/{ident}/_history", h)
        assert history["type"] == "history"
        [entry] = history["entry"]
        assert entry["resource"]["meta"]["versionId"] == current["meta"]["versionId"], resource_type
        method = "POST" if current["meta"]["versionId"] == "1" else "PUT"
        assert entry["request"] == {"method": method, "url": f"{resource_type}/{ident}"}
    # The appointment was booked, checked in and completed: its one entry is a later version.
    appointment = await fhir_get(client, f"/fhir/Appointment/{r['appointment']['id']}/_history", h)
    assert appointment["entry"][0]["request"]["method"] == "PUT"
    # Same rules as the read: a stranger may not see the patient's appointment history either.
    stranger = await factory.staff(await factory.facility(), role="chw")
    refused = await client.get(f"/fhir/Appointment/{r['appointment']['id']}/_history", headers=stranger.headers)
    assert refused.status_code in (403, 404)


async def test_capability_statement_lists_the_searches(client: Client) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert {p["name"] for p in by_type["Appointment"]["searchParam"]} >= {"patient", "actor", "date", "status"}
    assert {"code": "history-instance"} in by_type["Consent"]["interaction"]
    assert {"code": "read"} not in by_type["Slot"]["interaction"]
