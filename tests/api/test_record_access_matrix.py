"""One rule for every clinical read: each basis of domain/access.py RECORD_BASIS (self, treatment,
consent, break-glass, none) gets the same answer from every path that reads the record, in the
app API and in FHIR; refusals are audited and show in the patient's access log as refused.

Offline sync is the exception by design (README): it copies the home facility's record to its
health workers' phones, so only that part of `treatment` is served there."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, PatientLogin, auth

Client = AsyncTestClient[Litestar]
TEMPERATURE = {"kind": "observation", "code": "8310-5", "value": 38.2, "unit": "Cel"}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@dataclass(frozen=True)
class Reader:
    basis: str  # what RECORD_BASIS answers for this reader; "none": no basis
    token: str
    user_id: uuid.UUID


@dataclass(frozen=True)
class Record:
    patient: PatientLogin
    observation: str
    attachment: str
    readers: list[Reader]
    home_chw: str

    def paths(self) -> list[str]:
        p, o = self.patient.patient_id, self.observation
        return [
            f"/v1/patients/{p}/record",
            f"/v1/record/{o}",
            f"/v1/record/{o}/history",
            f"/v1/record/{self.attachment}/content",
            f"/fhir/Observation/{o}",
            f"/fhir/Observation?patient={p}",
            f"/fhir/Observation/{o}/_history",
            f"/fhir/Patient/{p}/$everything",
            f"/fhir/Provenance?patient={p}",
            f"/fhir/Provenance/{o}-v1",
        ]


async def _record(client: Client, factory: Factory) -> Record:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    patient = await factory.patient_login(post)
    created = await client.post(f"/v1/patients/{patient.patient_id}/record", json=TEMPERATURE, headers=chw.headers)
    assert created.status_code == 201, created.text
    attached = await client.post(
        f"/v1/patients/{patient.patient_id}/attachments",
        content=PNG,
        headers={**chw.headers, "Content-Type": "image/png"},
    )
    assert attached.status_code == 201, attached.text
    # consent: a specialist of another centre the patient named; break-glass: a clinician
    # elsewhere in an emergency; none: a specialist elsewhere, and a system administrator.
    consented = await factory.staff(await factory.facility())
    given = await client.post(
        f"/v1/patients/{patient.patient_id}/consents",
        json={"scope": "practitioner", "practitioner_id": str(consented.practitioner_id)},
        headers=patient.headers,
    )
    assert given.status_code == 201, given.text
    emergency = await factory.staff(await factory.facility(kind="health_centre"), role="clinician")
    glass = await client.post(
        f"/v1/patients/{patient.patient_id}/break-glass",
        json={"reason": "unconscious on arrival, need allergies", "minutes": 30},
        headers=emergency.headers,
    )
    assert glass.status_code == 201, glass.text
    stranger = await factory.staff(await factory.facility())
    admin_token = await factory.admin_token()
    async with factory.db.acquire() as conn:
        admin_id = await conn.fetchval(
            "SELECT id FROM users WHERE is_system_admin AND display_name = 'root' ORDER BY created_at LIMIT 1"
        )
    readers = [
        Reader("self", patient.token, patient.user_id),
        Reader("treatment", chw.token, chw.user_id),
        Reader("consent", consented.token, consented.user_id),
        Reader("break_glass", emergency.token, emergency.user_id),
        Reader("none", stranger.token, stranger.user_id),
        Reader("none", admin_token, admin_id),
    ]
    return Record(patient, created.json()["id"], attached.json()["id"], readers, chw.token)


async def test_every_clinical_read_path_gives_each_basis_the_same_answer(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    r = await _record(client, factory)
    answers: dict[tuple[str, str], int] = {}
    for reader in r.readers:
        for path in r.paths():
            response = await client.get(path, headers=auth(reader.token))
            answers[(reader.basis, path)] = response.status_code
            if reader.basis == "none":
                assert response.status_code == 403, (path, response.text)
                assert "consent_required" in response.text, (path, response.text)
            else:
                assert response.status_code == 200, (reader.basis, path, response.text)
    # Each allowed read is audited with its basis as purpose; each refusal as refused. ($everything
    # also lists appointments, referrals and consents, each by its own rule and audited as its own
    # search is, without a record basis.)
    for reader in r.readers:
        rows = await db.fetch(
            """SELECT purpose, outcome FROM audit_events WHERE actor_user_id = $1 AND patient_id = $2
                 AND action IN ('read', 'search')
                 AND resource_type NOT IN ('Appointment', 'ServiceRequest', 'Consent')""",
            reader.user_id,
            r.patient.patient_id,
        )
        if reader.basis == "none":
            assert {(row["purpose"], row["outcome"]) for row in rows} == {(None, "refused")}
        elif reader.basis != "self":
            assert {row["purpose"] for row in rows} == {reader.basis}, reader
            assert {row["outcome"] for row in rows} == {"success"}


async def test_everything_carries_the_patient_for_consent_and_break_glass(client: Client, factory: Factory) -> None:
    r = await _record(client, factory)
    for reader in r.readers[2:4]:
        bundle = (
            await client.get(f"/fhir/Patient/{r.patient.patient_id}/$everything", headers=auth(reader.token))
        ).json()
        types = [e["resource"]["resourceType"] for e in bundle["entry"]]
        assert types[0] == "Patient", (reader.basis, types)
        assert bundle["entry"][0]["resource"]["id"] == str(r.patient.patient_id)
        assert "Observation" in types


async def test_the_access_log_shows_refused_attempts_as_refused(client: Client, factory: Factory) -> None:
    r = await _record(client, factory)
    stranger = r.readers[4]
    tried = await client.get(f"/v1/record/{r.observation}", headers=auth(stranger.token))
    assert tried.status_code == 403
    read = await client.get(f"/v1/record/{r.observation}", headers=auth(r.home_chw))
    assert read.status_code == 200
    log = (await client.get("/v1/me/access-log", headers=r.patient.headers)).json()["items"]
    assert all(item["outcome"] in ("success", "refused") for item in log)
    refused = [item for item in log if item["outcome"] == "refused"]
    assert [(i["action"], i["resource_type"], i["actor_role"]) for i in refused] == [
        ("read", "Observation", "specialist")
    ]
    assert refused[0]["purpose"] is None
    newest_success = next(item for item in log if item["outcome"] == "success")
    assert (newest_success["action"], newest_success["resource_type"]) == ("read", "Observation")
    assert newest_success["purpose"] == "treatment"


async def test_sync_serves_the_home_facility_only(client: Client, factory: Factory) -> None:
    """Sync copies the record to phones: only the home facility's health workers get it; a
    consent or break-glass reader reads online (audited each time, and a grant expires)."""
    r = await _record(client, factory)
    # First the home facility's CHW sees it (the feed serves a change once every transaction
    # older than it has ended); from then on its absence elsewhere means something.
    deadline = time.monotonic() + 30
    while True:
        home = await client.get("/v1/sync", params={"since": "0"}, headers=auth(r.home_chw))
        assert home.status_code == 200, home.text
        if r.observation in {c["id"] for c in home.json()["changes"]}:
            break
        assert time.monotonic() < deadline, "the home facility's feed never served the entry"
        await asyncio.sleep(0.2)
    for reader in r.readers:
        response = await client.get("/v1/sync", params={"since": "0"}, headers=auth(reader.token))
        if response.status_code == 403:
            assert response.json()["code"] == "role_required"
            assert reader.basis != "treatment"
            continue
        assert response.status_code == 200, response.text
        synced = {c["id"] for c in response.json()["changes"]}
        assert (r.observation in synced) == (reader.basis == "treatment"), reader
