"""Each record read is decided, read and audited by one statement (domain/record/reads.py): the
events it writes are those of the audit trail's rule, column for column, for each kind of reader,
and a refused read writes none of them."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, Scene, auth

Client = AsyncTestClient[Litestar]
TEMPERATURE = {"kind": "observation", "code": "8310-5", "value": 38.2, "unit": "Cel"}
_COLUMNS = (
    "actor_user_id, actor_role, facility_id, patient_id, action, resource_type, resource_id, purpose, channel, outcome"
)


async def _events(db: asyncpg.Pool, request_id: str) -> list[tuple[Any, ...]]:
    rows = await db.fetch(f"SELECT {_COLUMNS} FROM audit_events WHERE request_id = $1 ORDER BY id", request_id)
    return [tuple(row) for row in rows]


async def _get(client: Client, path: str, headers: dict[str, str], **params: str) -> str:
    """GET, answered 200; the request id it was audited under."""
    request_id = f"read-audit-{uuid.uuid4().hex}"
    response = await client.get(path, params=params, headers={**headers, "X-Request-ID": request_id})
    assert response.status_code == 200, response.text
    return request_id


async def _scene_with_entry(client: Client, factory: Factory) -> tuple[Scene, str]:
    scene = await factory.scene()
    response = await client.post(f"/v1/patients/{scene.patient}/record", json=TEMPERATURE, headers=scene.chw.headers)
    assert response.status_code == 201, response.text
    return scene, response.json()["id"]


async def test_a_health_worker_of_the_home_facility(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    scene, entry = await _scene_with_entry(client, factory)
    chw, patient = scene.chw.user_id, scene.patient
    treatment = (chw, "chw", scene.post, patient)

    listed = await _get(client, f"/v1/patients/{patient}/record", scene.chw.headers, kind="observation")
    assert await _events(db, listed) == [(*treatment, "search", "Record", str(patient), "treatment", "app", "success")]
    read = await _get(client, f"/v1/record/{entry}", scene.chw.headers)
    assert await _events(db, read) == [(*treatment, "read", "Observation", entry, "treatment", "app", "success")]
    fhir = await _get(client, "/fhir/Observation", scene.chw.headers, patient=str(patient))
    assert await _events(db, fhir) == [(*treatment, "search", "Record", str(patient), "treatment", "app", "success")]
    everything = await _get(client, f"/fhir/Patient/{patient}/$everything", scene.chw.headers)
    # $everything also lists the patient's consents, read (and audited) by the consent service.
    consents = (treatment[0], treatment[1], None, treatment[3], "search", "Consent", None, None, "app", "success")
    assert sorted(await _events(db, everything), key=repr) == sorted(
        [
            (*treatment, "read", "Patient", str(patient), "treatment", "app", "success"),
            consents,
            (*treatment, "search", "Record", str(patient), "treatment", "app", "success"),
        ],
        key=repr,
    )


async def test_a_specialist_elsewhere_names_their_own_facility(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    scene, entry = await _scene_with_entry(client, factory)
    booked = await client.post("/v1/appointments", json=scene.booking(), headers=scene.chw.headers)
    assert booked.status_code == 201, booked.text
    specialist = scene.specialist
    expected = (specialist.user_id, "specialist", scene.centre, scene.patient)

    read = await _get(client, f"/v1/record/{entry}", {**specialist.headers, "X-Client-Channel": "web"})
    assert await _events(db, read) == [(*expected, "read", "Observation", entry, "treatment", "web", "success")]
    listed = await _get(client, f"/v1/patients/{scene.patient}/record", specialist.headers)
    assert await _events(db, listed) == [
        (*expected, "search", "Record", str(scene.patient), "treatment", "app", "success")
    ]


async def test_a_patient_reading_their_own(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    """A patient works at no facility: their list names none, their read of an entry names the
    entry's facility (where it was recorded)."""
    scene = await factory.scene()
    login = await factory.patient_login(scene.post)
    written = await client.post(f"/v1/patients/{login.patient_id}/record", json=TEMPERATURE, headers=scene.chw.headers)
    assert written.status_code == 201, written.text
    entry = written.json()["id"]
    own = (login.user_id, "patient")

    listed = await _get(client, f"/v1/patients/{login.patient_id}/record", login.headers)
    assert await _events(db, listed) == [
        (*own, None, login.patient_id, "search", "Record", str(login.patient_id), "self", "app", "success")
    ]
    read = await _get(client, f"/v1/record/{entry}", login.headers)
    assert await _events(db, read) == [
        (*own, scene.post, login.patient_id, "read", "Observation", entry, "self", "app", "success")
    ]


async def test_a_refused_read_writes_only_its_refusal(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    scene, entry = await _scene_with_entry(client, factory)
    stranger = await factory.staff(await factory.facility())
    for path in (f"/v1/record/{entry}", f"/v1/patients/{scene.patient}/record"):
        request_id = f"read-audit-{uuid.uuid4().hex}"
        response = await client.get(path, headers=auth(stranger.token, **{"X-Request-ID": request_id}))
        assert response.status_code == 403
        assert response.json()["code"] == "consent_required"
        events = await _events(db, request_id)
        assert [(e[4], e[7], e[9]) for e in events] == [(events[0][4], None, "refused")]


async def test_unknown_patient_and_entry_are_404(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    scene = await factory.scene()
    missing = uuid.uuid4()
    listed = await client.get(f"/v1/patients/{missing}/record", headers=scene.chw.headers)
    assert (listed.status_code, listed.json()["code"]) == (404, "patient_not_found")
    read = await client.get(f"/v1/record/{missing}", headers=scene.chw.headers)
    assert (read.status_code, read.json()["code"]) == (404, "entry_not_found")
    assert await db.fetchval("SELECT count(*) FROM audit_events WHERE resource_id = $1", str(missing)) == 0
