"""The search engine as a FHIR client library sees it: fhirpy against a live `spean serve`, each
declared parameter type, every date prefix, modifiers, paging through next links, counts,
sorting, includes, and strict handling; every resource it gets validates against the R4B models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fhirpy import AsyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome

from infra.config import Settings
from infra.embedded import free_port
from tests.factory import Factory, Staff
from tests.fhir.test_resources import validate
from tests.fhir.world import World, build
from tests.live import server_env, start_server, wait_ready


@pytest.fixture(scope="module")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`spean serve` on the suite's database; its public URL is its own, so next links lead back to it."""
    folder = tmp_path_factory.mktemp("fhirpy")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = server_env(settings, folder, SPEAN_PUBLIC_BASE_URL=base)
    log = folder / "server.log"
    proc = start_server(env, port, log, "--no-migrate")
    try:
        wait_ready(port, proc, log)
        yield base
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture(scope="module")
async def world(factory: Factory) -> World:
    return await build(factory)


def fhir(live: str, staff: Staff, **headers: str) -> AsyncFHIRClient:
    return AsyncFHIRClient(f"{live}/fhir", authorization=f"Bearer {staff.token}", extra_headers=headers or None)


async def ids(search: Any) -> set[str]:
    found = await search.fetch_all()
    for resource in found:
        validate(resource.serialize())
    return {r.id for r in found}


async def test_dates_every_prefix(live: str, world: World) -> None:
    client, o = fhir(live, world.chw), world.obs
    observations = client.resources("Observation").search(patient=world.a)
    expected = {
        "eq": {o["o2"]},
        "ne": {o["o1"], o["o3"]},
        "gt": {o["o3"]},
        "lt": {o["o1"]},
        "ge": {o["o2"], o["o3"]},
        "le": {o["o1"], o["o2"]},
        "sa": {o["o3"]},
        "eb": {o["o1"]},
    }
    for prefix, found in expected.items():
        assert await ids(observations.search(**{f"date__{prefix}": "2026-02-01"})) == found, prefix
    assert await ids(observations.search(date="2026")) == set(o.values())
    assert await ids(observations.search(date__ge="2026-01-16", date__lt="2026-03")) == {o["o2"]}
    assert await ids(observations.search(_lastUpdated__ge="2026")) == set(o.values())
    patients = client.resources("Patient").search(organization=f"Organization/{world.post}")
    assert await ids(patients.search(birthdate="1980")) == {world.b}
    assert await ids(patients.search(birthdate__lt="1980")) == {world.a}
    assert await ids(patients.search(birthdate__missing=True)) == {world.c}


async def test_tokens_strings_references(live: str, world: World) -> None:
    client, o = fhir(live, world.chw), world.obs
    observations = client.resources("Observation").search(subject=f"Patient/{world.a}")
    assert await ids(observations.search(code="http://loinc.org|29463-7")) == {o["o1"], o["o3"]}
    assert await ids(observations.search(code__not="29463-7")) == {o["o2"]}
    assert await ids(observations.search(category="vital-signs", status="final")) == set(o.values())
    assert await ids(observations.search(encounter=f"Encounter/{world.encounter}")) == {o["o3"]}
    assert await ids(observations.search(encounter__missing=True)) == {o["o1"], o["o2"]}
    assert await ids(client.resources("Observation").search(patient__Patient=world.a, code="8310-5")) == {o["o2"]}
    conditions = client.resources("Condition").search(patient=world.a)
    assert await ids(conditions.search(clinical_status="resolved")) == {world.asthma}
    assert await ids(conditions.search(code="I10")) == {world.hypertension}
    patients = client.resources("Patient").search(organization=f"Organization/{world.post}")
    assert await ids(patients.search(identifier=f"urn:kh:health-id|{world.health_id}")) == {world.a}
    assert await ids(patients.search(gender="male")) == {world.b}
    assert await ids(patients.search(name="phuong")) == {world.a}
    assert await ids(patients.search(family__exact="Sok")) == {world.b}
    assert await ids(patients.search(given__contains="hant")) == {world.b}
    found = await patients.search(_id=world.a).get()  # exactly one, or fhirpy raises
    assert found.id == world.a


async def test_paging_counts_sorting_includes(live: str, world: World) -> None:
    client, o = fhir(live, world.chw), world.obs
    observations = client.resources("Observation").search(patient=world.a)
    walked = await observations.limit(1).sort("-date").fetch_all()  # follows the next links
    assert [r.id for r in walked] == [o["o3"], o["o2"], o["o1"]]
    assert await observations.count() == 3
    assert await observations.search(code="8867-4").count() == 0
    bundle = await observations.include("Observation", "subject").fetch_raw()
    validate(bundle.serialize() if hasattr(bundle, "serialize") else dict(bundle))
    modes = sorted((e["search"]["mode"], e["resource"]["resourceType"]) for e in bundle["entry"])
    assert modes == [("include", "Patient"), *[("match", "Observation")] * 3]
    revincluded = await client.resources("Patient").search(_id=world.a).revinclude("Condition", "subject").fetch_raw()
    assert sorted(e["resource"]["resourceType"] for e in revincluded["entry"]) == ["Condition", "Condition", "Patient"]
    subset: list[Any] = await observations.elements("code").fetch()
    assert all(set(r.serialize()) == {"resourceType", "id", "meta", "code"} for r in subset)
    slots = client.resources("Slot").search(schedule=f"Schedule/{world.specialist.practitioner_id}")
    first_six = [r.id for r in await slots.limit(6).fetch()]
    paged = []
    async for slot in slots.limit(2):
        paged.append(slot.id)
        if len(paged) == 6:
            break
    assert paged == first_six


async def test_strict_handling(live: str, world: World) -> None:
    lenient = fhir(live, world.chw).resources("Patient").search(_id=world.a, unknown="x")
    assert await ids(lenient) == {world.a}  # ignored, never every patient
    strict = fhir(live, world.chw, Prefer="handling=strict").resources("Patient").search(_id=world.a, unknown="x")
    with pytest.raises(OperationOutcome) as refused:
        await strict.fetch()
    assert "unknown_search_parameter" in str(refused.value)
    with pytest.raises(OperationOutcome):
        await fhir(live, world.chw).resources("Observation").search(date="2026-13").fetch()
