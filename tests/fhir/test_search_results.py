"""What a search returns: pages a client can follow both ways on every type, _count (also 0 and
on $everything), _summary=count, Bundle.total, _sort, _elements, _include and _revinclude
through the same access rules, and _id/_lastUpdated on every declared type."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from api.fhir.errors import code_of
from api.fhir.params import TYPES
from tests.factory import Factory
from tests.fhir.test_resources import Client, rich_record, validate
from tests.fhir.test_search_params import search
from tests.fhir.world import World, build

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
async def world(factory: Factory) -> World:
    return await build(factory)


def link(bundle: dict[str, Any], relation: str) -> str | None:
    url = next((x["url"] for x in bundle["link"] if x["relation"] == relation), None)
    return None if url is None else url.removeprefix(BASE)


async def follow(client: Client, path: str, headers: dict[str, str]) -> dict[str, Any]:
    response = await client.get(path, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    validate(body)
    return body


def ordered(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]


async def test_pages_follow_next_and_previous(client: Client, world: World) -> None:
    h, o = world.chw.headers, world.obs
    first = await search(client, "/fhir/Observation", h, [("patient", world.a), ("_count", "1"), ("_sort", "date")])
    assert ordered(first) == [o["o1"]]
    assert link(first, "previous") is None
    second = await follow(client, link(first, "next") or "", h)
    third = await follow(client, link(second, "next") or "", h)
    assert (ordered(second), ordered(third)) == ([o["o2"]], [o["o3"]])
    assert link(third, "next") is None
    back = await follow(client, link(third, "previous") or "", h)
    assert ordered(back) == [o["o2"]]
    assert ordered(await follow(client, link(back, "previous") or "", h)) == [o["o1"]]
    newest = await search(client, "/fhir/Observation", h, [("patient", world.a), ("_sort", "-date")])
    assert ordered(newest) == [o["o3"], o["o2"], o["o1"]]
    by_update = await search(client, "/fhir/Observation", h, [("patient", world.a), ("_sort", "-_lastUpdated,_id")])
    assert ordered(by_update) == [o["o3"], o["o2"], o["o1"]]  # recorded in that order
    scope = ("organization", f"Organization/{world.post}")
    youngest = await search(client, "/fhir/Patient", h, [scope, ("_sort", "-birthdate"), ("_count", "2")])
    assert ordered(youngest) == [world.c, world.b]  # no birth date sorts last, hence first descending
    assert ordered(await follow(client, link(youngest, "next") or "", h)) == [world.a]
    forged = await client.get(f"/fhir/Observation?patient={world.a}&_cursor=bm90IG91cnM", headers=h)
    assert forged.status_code == 422
    assert code_of(forged.json()) == "invalid_cursor"
    other_order = (link(first, "next") or "").replace("_sort=date", "_sort=-date")
    assert (await client.get(other_order, headers=h)).status_code == 422


async def test_totals_counts_and_empty_bundles(client: Client, world: World) -> None:
    h = world.chw.headers
    mine = [("patient", world.a)]
    assert "total" not in await search(client, "/fhir/Observation", h, mine)
    accurate = await search(client, "/fhir/Observation", h, [*mine, ("_total", "accurate"), ("_count", "1")])
    assert (accurate["total"], len(accurate["entry"])) == (3, 1)
    assert (await search(client, "/fhir/Observation", h, [*mine, ("_total", "estimate")]))["total"] == 3
    assert "total" not in await search(client, "/fhir/Observation", h, [*mine, ("_total", "none"), ("_count", "0")])
    for params in ([*mine, ("_count", "0")], [*mine, ("_summary", "count")]):
        counted = await search(client, "/fhir/Observation", h, params)
        assert counted["total"] == 3
        assert "entry" not in counted
        assert link(counted, "next") is None
    empty = await search(client, "/fhir/Observation", h, [*mine, ("code", "8867-4")])
    assert "entry" not in empty
    huge = await search(client, "/fhir/Observation", h, [*mine, ("_count", "99999")])
    assert len(huge["entry"]) == 3  # _count above the maximum is the maximum


async def test_elements_subset_the_matches(client: Client, world: World) -> None:
    found = await client.get(
        "/fhir/Observation", params={"patient": world.a, "_elements": "code,subject"}, headers=world.chw.headers
    )
    assert found.status_code == 200
    for entry in found.json()["entry"]:
        resource = entry["resource"]
        assert set(resource) == {"resourceType", "id", "meta", "code", "subject"}
        assert {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"} in resource[
            "meta"
        ]["tag"]


async def test_include_and_revinclude_keep_the_access_rules(client: Client, world: World, factory: Factory) -> None:
    h = world.chw.headers
    with_patient = await search(
        client, "/fhir/Observation", h,
        [("patient", world.a), ("_include", "Observation:subject"), ("_include", "Observation:encounter")],
    )  # fmt: skip
    included = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in with_patient["entry"]
                if e["search"]["mode"] == "include"}  # fmt: skip
    assert included == {("Patient", world.a), ("Encounter", world.encounter)}
    with_record = await search(
        client, "/fhir/Patient", h, [("_id", world.a), ("_revinclude", "Observation:subject"),
                                     ("_revinclude", "Condition:subject")],
    )  # fmt: skip
    kinds = sorted(e["resource"]["resourceType"] for e in with_record["entry"] if e["search"]["mode"] == "include")
    assert kinds == ["Condition", "Condition", "Observation", "Observation", "Observation"]
    # A facility admin sees the post's patients but not their record: no observation comes along.
    admin = {"Authorization": f"Bearer {await factory.facility_admin(world.post)}"}
    listed = await search(client, "/fhir/Patient", admin, [("_id", world.a), ("_revinclude", "Observation:subject")])
    assert [e["search"]["mode"] for e in listed["entry"]] == ["match"]


async def test_appointments_include_their_actors(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    found = await search(
        client, "/fhir/Appointment", r["chw"].headers,
        [("patient", str(r["patient"])), ("_include", "Appointment:actor")],
    )  # fmt: skip
    included = {e["resource"]["resourceType"] for e in found["entry"] if e["search"]["mode"] == "include"}
    assert included == {"Patient", "Practitioner"}


async def test_slots_page(client: Client, world: World) -> None:
    h = world.chw.headers
    schedule = [("schedule", f"Schedule/{world.specialist.practitioner_id}")]
    first = await search(client, "/fhir/Slot", h, [*schedule, ("_count", "3")])
    assert len(first["entry"]) == 3
    second = await follow(client, link(first, "next") or "", h)
    assert len(second["entry"]) == 3
    assert not set(ordered(first)) & set(ordered(second))
    starts = [e["resource"]["start"] for e in first["entry"] + second["entry"]]
    assert starts == sorted(starts)
    later = await search(client, "/fhir/Slot", h, [*schedule, ("start", f"gt{starts[2]}"), ("_count", "3")])
    assert ordered(later) == ordered(second)
    assert ordered(await follow(client, link(second, "previous") or "", h)) == ordered(first)


async def test_everything_honours_count(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    r = await rich_record(client, factory, db)
    h = r["chw"].headers
    whole = await follow(client, f"/fhir/Patient/{r['patient']}/$everything", h)
    seen: list[str] = []
    page = await follow(client, f"/fhir/Patient/{r['patient']}/$everything?_count=2", h)
    while True:
        assert 0 < len(page.get("entry", [])) <= 2
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in page["entry"]]
        path = link(page, "next")
        if path is None:
            break
        page = await follow(client, path, h)
    assert seen == [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in whole["entry"]]
    assert seen[0] == f"Patient/{r['patient']}"
    assert "entry" not in await follow(client, f"/fhir/Patient/{r['patient']}/$everything?_count=0", h)


Known = dict[str, tuple[str, dict[str, str], list[tuple[str, str]]]]


async def _one_of_each_type(client: Client, factory: Factory, db: asyncpg.Pool) -> Known:
    """Per declared type: the id of one resource, a reader's headers, and the required parameters."""
    r = await rich_record(client, factory, db)
    h = r["chw"].headers
    admin = {"Authorization": f"Bearer {await factory.facility_admin(r['post'])}"}
    required = {
        "Slot": [("schedule", f"Schedule/{r['specialist'].practitioner_id}")],
        "AuditEvent": [("site", str(r["post"]))],
    }
    first = {}
    for name, reader in (("Slot", h), ("AuditEvent", admin)):
        first[name] = (await search(client, f"/fhir/{name}", reader, required[name]))["entry"][0]["resource"]["id"]
    consent = await search(client, "/fhir/Consent", h, [("patient", str(r["patient"]))])
    completed = r["completed"]
    written = {}
    for name, body in (
        ("AllergyIntolerance", {"kind": "allergy", "substance": "Penicillin", "snomed_code": "373270004"}),
        ("Immunization", {"kind": "immunization", "vaccine": "BCG", "vaccine_code": "19"}),
    ):
        written[name] = (await factory.post(f"/v1/patients/{r['patient']}/record", body, r["chw"].token))["id"]
    ids = {
        "Patient": str(r["patient"]),
        "Practitioner": str(r["specialist"].practitioner_id),
        "Organization": str(r["centre"]),
        "Location": str(r["centre"]),
        "Schedule": str(r["specialist"].practitioner_id),
        "Slot": first["Slot"],
        "Appointment": r["appointment"]["id"],
        "ServiceRequest": r["referral"]["id"],
        "Consent": consent["entry"][0]["resource"]["id"],
        "Encounter": completed["encounter"]["id"],
        "Observation": r["weight"]["id"],
        "Condition": completed["entries"][2]["id"],
        "MedicationRequest": completed["entries"][3]["id"],
        "Provenance": f"{r['weight']['id']}-v2",
        "AuditEvent": first["AuditEvent"],
        **written,
    }
    return {name: (ident, admin if name == "AuditEvent" else h, required.get(name, [])) for name, ident in ids.items()}


async def test_id_and_last_updated_on_every_type(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    known = await _one_of_each_type(client, factory, db)
    assert set(known) == set(TYPES)
    for name, (ident, headers, base) in known.items():
        assert ordered(await search(client, f"/fhir/{name}", headers, [*base, ("_id", ident)])) == [ident], name
        other = "0" if name == "AuditEvent" else str(uuid.uuid4())
        assert ordered(await search(client, f"/fhir/{name}", headers, [*base, ("_id", other)])) == [], name
        if "_lastUpdated" in TYPES[name].by_param:
            for value, found in (("ge2000", [ident]), ("lt2000", [])):
                params = [*base, ("_id", ident), ("_lastUpdated", value)]
                assert ordered(await search(client, f"/fhir/{name}", headers, params)) == found, (name, value)


async def test_capability_statement_is_the_table(client: Client) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    validate(statement)
    by_type = {r["type"]: r for r in statement["rest"][0]["resource"]}
    # Documents (DocumentReference, Binary) are declared beside the table (api/fhir/capabilities.py),
    # Group by bulk export (api/fhir/bulk/capability.py).
    assert set(by_type) == set(TYPES) | {"DocumentReference", "Binary", "Group"}
    for name, t in TYPES.items():
        assert [(p["name"], p["type"]) for p in by_type[name]["searchParam"]] == [(p.name, p.type) for p in t.params]
        assert by_type[name].get("searchInclude", []) == list(t.includes)
        assert by_type[name].get("searchRevInclude", []) == list(t.revincludes)


def test_readme_lists_exactly_the_declared_parameters() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("<!-- fhir-search-table -->")[1]
    rows = {}
    for line in section.strip().splitlines()[2:]:  # below the header and its rule
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = re.findall(r"`([^`]+)`", cells[1])
    assert rows == {name: [p.name for p in t.params] for name, t in TYPES.items()}
