"""Patient/$everything gathers the workflow (appointments, referrals, consents), the record
(clinical entries, documents) and its Provenance, each part by its own rule, narrowed by `_type`
and `_since`, paged by `_count`."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from api.fhir.errors import code_of
from tests.factory import Factory
from tests.fhir.test_resources import Client, fhir_get, rich_record

BASE = "http://127.0.0.1:8000"


def types_of(bundle: dict[str, Any]) -> Counter[str]:
    return Counter(e["resource"]["resourceType"] for e in bundle.get("entry", []))


async def test_everything_gathers_every_part(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    h, patient = r["chw"].headers, r["patient"]
    await client.post(f"/v1/patients/{patient}/record", headers=h, json={"kind": "note", "text": "rest"})
    everything = await fhir_get(client, f"/fhir/Patient/{patient}/$everything", h)
    assert types_of(everything) == {
        "Patient": 1, "Appointment": 1, "ServiceRequest": 1, "Consent": 1, "Encounter": 1, "Observation": 2,
        "Condition": 1, "MedicationRequest": 1, "DocumentReference": 1, "Provenance": 5,
    }  # fmt: skip
    assert everything["entry"][0]["resource"]["resourceType"] == "Patient"
    # _type narrows; Provenance alone still follows the clinical entries.
    only = await fhir_get(client, f"/fhir/Patient/{patient}/$everything", h, _type="Consent,ServiceRequest")
    assert types_of(only) == {"Consent": 1, "ServiceRequest": 1}
    provenance = await fhir_get(client, f"/fhir/Patient/{patient}/$everything", h, _type="Provenance")
    assert types_of(provenance) == {"Provenance": 5}
    # _since: what changed at or after it.
    later = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    assert "entry" not in await fhir_get(client, f"/fhir/Patient/{patient}/$everything", h, _since=later)
    # _count pages the whole gathering (the patient counts); the next link carries _type and _since.
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    first = await fhir_get(
        client, f"/fhir/Patient/{patient}/$everything", h, _count=2, _type="Observation,Patient", _since=since
    )
    assert types_of(first) == {"Patient": 1, "Observation": 1}
    link = next(x["url"] for x in first["link"] if x["relation"] == "next")
    assert "_type=Observation%2CPatient" in link
    assert "_since=" in link
    second = await fhir_get(client, link.removeprefix(BASE), h)
    assert types_of(second) == {"Observation": 1}
    assert "next" not in {x["relation"] for x in second["link"]}
    # An entry and its Provenance come together, within _count.
    clinical = "Encounter,Observation,Condition,MedicationRequest,Provenance"
    paired = await fhir_get(client, f"/fhir/Patient/{patient}/$everything", h, _count=2, _type=clinical)
    assert sum(types_of(paired).values()) == 2
    assert types_of(paired)["Provenance"] == 1
    bad = await client.get(f"/fhir/Patient/{patient}/$everything", params={"_type": "Basic"}, headers=h)
    assert (bad.status_code, code_of(bad.json())) == (400, "unsupported_type")


async def test_everything_keeps_each_parts_rule(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    # The specialist treats the patient (the record is open to them) but is not the patient's side:
    # they find no consents, and the rest as their own rules allow.
    theirs = await fhir_get(client, f"/fhir/Patient/{r['patient']}/$everything", r["specialist"].headers)
    found = types_of(theirs)
    assert found["Consent"] == 0
    assert found["Observation"] == 2
    stranger = await factory.staff(await factory.facility(), role="chw")
    refused = await client.get(f"/fhir/Patient/{r['patient']}/$everything", headers=stranger.headers)
    assert (refused.status_code, code_of(refused.json())) == (403, "consent_required")
