"""A real FHIR client library (fhirpy, over aiohttp) against a live `spean serve`: create,
conditional create, read, update, vread, history, a stale update refused, and a transaction and
a batch Bundle, with every resource it gets back valid R4."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome, ResourceNotFound

from infra.config import Settings
from infra.embedded import free_port
from tests.factory import Factory
from tests.fhir.test_resources import validate
from tests.fhir.test_writes import temperature
from tests.live import server_env, serving


@pytest.fixture(scope="module")
def server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A live server whose public base URL is its own (Location headers point back to it)."""
    folder = tmp_path_factory.mktemp("fhir-client")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving(server_env(settings, folder, SPEAN_PUBLIC_BASE_URL=base), [port], folder, "--no-migrate"):
        yield f"{base}/fhir"


def plain(resource: Any) -> dict[str, Any]:
    found: dict[str, Any] = resource.serialize() if hasattr(resource, "serialize") else dict(resource)
    return found


async def test_a_fhir_client_library_writes_reads_and_versions(server: str, factory: Factory) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    auth = f"Bearer {chw.token}"
    client = AsyncFHIRClient(server, authorization=auth)
    health_id = {"system": "urn:kh:health-id", "value": uuid.uuid4().hex[:10]}

    patient = client.resource("Patient", name=[{"family": "Sok", "given": ["Dara"]}], gender="male",
                              birthDate="1990-02-28", identifier=[health_id])  # fmt: skip
    await patient.save()
    validate(plain(patient))
    assert patient["meta"]["versionId"] == "1"
    # Conditional create (If-None-Exist): the same identifier finds the same patient.
    condition = {"If-None-Exist": f"identifier={health_id['system']}|{health_id['value']}"}
    conditional = AsyncFHIRClient(server, authorization=auth, extra_headers=condition)
    twin = conditional.resource("Patient", name=[{"text": "Sok Dara"}], identifier=[health_id])
    await twin.save()
    assert twin.id == patient.id
    # Update (a Patient may be updated without If-Match, as in the app API), then vread the first version.
    patient["gender"] = "other"
    await patient.save()
    assert (patient["meta"]["versionId"], patient["gender"]) == ("2", "other")
    first = await client.execute(f"Patient/{patient.id}/_history/1", method="get")
    assert (first["meta"]["versionId"], first["gender"]) == ("1", "male")
    history = await client.execute(f"Patient/{patient.id}/_history", method="get")
    validate(plain(history))
    assert [e["resource"]["meta"]["versionId"] for e in history["entry"]] == ["2", "1"]

    observation = client.resource("Observation", **temperature(patient.id, 37.8))
    await observation.save()
    read = await client.reference("Observation", observation.id).to_resource()
    validate(plain(read))
    assert read["valueQuantity"]["value"] == 37.8
    # An update of the record names the version it replaces.
    changed = {**plain(read), "valueQuantity": {**read["valueQuantity"], "value": 38.1}}
    with pytest.raises(OperationOutcome, match="if_match_required"):
        await client.resource("Observation", **changed).save()
    versioned = AsyncFHIRClient(server, authorization=auth, extra_headers={"If-Match": 'W/"1"'})
    corrected = versioned.resource("Observation", **changed)
    await corrected.save()
    assert (corrected["meta"]["versionId"], corrected["status"]) == ("2", "amended")
    with pytest.raises(MultipleResourcesFound):  # fhirpy's name for any 412: here the version moved on
        await corrected.save()
    old = await client.execute(f"Observation/{observation.id}/_history/1", method="get")
    assert old["valueQuantity"]["value"] == 37.8
    with pytest.raises(ResourceNotFound):
        await client.execute(f"Observation/{observation.id}/_history/9", method="get")
    found = await client.resources("Observation").search(patient=patient.id).fetch()
    assert [o["meta"]["versionId"] for o in found] == ["2"]

    # A transaction creating a patient and an observation that references it, then a batch read.
    patient_url = f"urn:uuid:{uuid.uuid4()}"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient_url, "request": {"method": "POST", "url": "Patient"},
         "resource": {"resourceType": "Patient", "name": [{"text": "Chan Sreymom"}]}},
        {"request": {"method": "POST", "url": "Observation"},
         "resource": {**temperature("x", 36.9), "subject": {"reference": patient_url}}},
    ]}  # fmt: skip
    answer = await client.execute("", method="post", data=bundle)
    validate(plain(answer))
    locations = [e["response"]["location"] for e in answer["entry"]]
    batch = {"resourceType": "Bundle", "type": "batch",
             "entry": [{"request": {"method": "GET", "url": location}} for location in locations]}  # fmt: skip
    reads = await client.execute("", method="post", data=batch)
    validate(plain(reads))
    assert [e["resource"]["resourceType"] for e in reads["entry"]] == ["Patient", "Observation"]
    assert reads["entry"][1]["resource"]["subject"]["reference"] == f"Patient/{reads['entry'][0]['resource']['id']}"
