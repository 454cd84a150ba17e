"""A refused read of a patient's record is audited (outcome 'refused') although the request's
transaction rolls back with the 403, through the app API and FHIR alike."""

from __future__ import annotations

import asyncpg

from api.fhir.errors import code_of
from tests.factory import Factory
from tests.fhir.test_resources import Client, rich_record, validate


async def _refusals(db: asyncpg.Pool, user_id: object) -> list[tuple[str, str, str]]:
    rows = await db.fetch(
        """SELECT action, resource_type, resource_id FROM audit_events
           WHERE actor_user_id = $1 AND outcome = 'refused' ORDER BY id""",
        user_id,
    )
    return [(r["action"], r["resource_type"], r["resource_id"]) for r in rows]


async def test_refused_record_reads_are_audited(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    stranger = await factory.staff(await factory.facility())
    user_id = await db.fetchval("SELECT user_id FROM practitioners WHERE id = $1", stranger.practitioner_id)
    weight, patient = r["weight"]["id"], str(r["patient"])

    fhir_read = await client.get(f"/fhir/Observation/{weight}", headers=stranger.headers)
    assert fhir_read.status_code == 403
    validate(fhir_read.json())
    assert code_of(fhir_read.json()) == "consent_required"
    fhir_search = await client.get("/fhir/Observation", params={"patient": patient}, headers=stranger.headers)
    assert fhir_search.status_code == 403
    app_read = await client.get(f"/v1/record/{weight}", headers=stranger.headers)
    assert app_read.status_code == 403
    assert app_read.json()["code"] == "consent_required"
    app_list = await client.get(f"/v1/patients/{patient}/record", headers=stranger.headers)
    assert app_list.status_code == 403

    assert await _refusals(db, user_id) == [
        ("read", "Observation", weight),
        ("search", "Record", patient),
        ("read", "Observation", weight),
        ("search", "Record", patient),
    ]
    patients = {
        row["patient_id"]
        for row in await db.fetch(
            "SELECT patient_id FROM audit_events WHERE actor_user_id = $1 AND outcome = 'refused'", user_id
        )
    }
    assert patients == {r["patient"]}
    # Nothing else of the refused requests was kept (their transactions rolled back).
    assert await db.fetchval("SELECT count(*) FROM audit_events WHERE actor_user_id = $1 AND outcome <> 'refused'",
                             user_id) == 0  # fmt: skip
