"""`POST /fhir/Patient/$match`: grades, scores, onlyCertainMatches, count, access and audit; and
the search by identifier as a FHIR client library (fhirpy) sends it, against a live server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from fhirpy import AsyncFHIRClient
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.config import Settings
from infra.embedded import free_port
from tests.factory import Factory, Staff, new_phone
from tests.fhir.test_resources import validate
from tests.live import server_env, serving
from tests.national.test_registration import CCCD, new_cccd

Client = AsyncTestClient[Litestar]
GRADE = "http://hl7.org/fhir/StructureDefinition/match-grade"


def parameters(resource: dict[str, Any], **more: Any) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": "resource", "resource": {"resourceType": "Patient", **resource}}]
    if "only_certain" in more:
        params.append({"name": "onlyCertainMatches", "valueBoolean": more["only_certain"]})
    if "count" in more:
        params.append({"name": "count", "valueInteger": more["count"]})
    return {"resourceType": "Parameters", "parameter": params}


async def match(client: Client, staff: Staff, body: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    answer = await client.post("/fhir/Patient/$match", json=body, headers=staff.headers)
    assert answer.status_code == expect, answer.text
    result: dict[str, Any] = answer.json()
    if expect == 200:
        validate(result)
        for entry in result.get("entry", []):
            validate(entry["resource"])
    return result


def graded(bundle: dict[str, Any]) -> list[tuple[str, str, float]]:
    return [
        (e["resource"]["id"], e["search"]["extension"][0]["valueCode"], e["search"]["score"])
        for e in bundle.get("entry", [])
        if e["search"]["extension"][0]["url"] == GRADE and e["search"]["mode"] == "match"
    ]


class People:
    def __init__(self, post: uuid.UUID, chw: Staff, a: str, b: str, cccd: str, phone: str, name: str) -> None:
        self.post, self.chw, self.a, self.b, self.cccd, self.phone, self.name = post, chw, a, b, cccd, phone, name


@pytest.fixture(scope="module")
async def people(client: Client, factory: Factory) -> People:
    post = await factory.facility(kind="health_post", country="VN", timezone="Asia/Ho_Chi_Minh")
    chw = await factory.staff(post, role="chw")
    name, phone, cccd = f"Võ Thị Mai {uuid.uuid4().hex[:4]}", new_phone(), new_cccd(1988, female=True)
    a = await client.post(
        "/v1/patients", headers=chw.headers,
        json={"names": [{"text": name}], "home_facility_id": str(post), "birth_date": "1988-07-07", "sex": "female",
              "phone": phone, "identifiers": [{"system": CCCD, "value": cccd}]},
    )  # fmt: skip
    b = await client.post(  # same name and birth, another phone: "possible" for a search without the phone
        "/v1/patients", headers=chw.headers,
        json={"names": [{"text": name}], "home_facility_id": str(post), "birth_date": "1988-07-07",
              "phone": new_phone(), "confirm_not_duplicate": True},
    )  # fmt: skip
    assert a.status_code == b.status_code == 201, (a.text, b.text)
    return People(post, chw, a.json()["id"], b.json()["id"], cccd, phone, name)


async def test_grades_and_scores(client: Client, people: People) -> None:
    by_id = await match(client, people.chw, parameters({"identifier": [{"system": CCCD, "value": people.cccd}]}))
    assert graded(by_id) == [(people.a, "certain", 1.0)]
    assert by_id["type"] == "searchset"
    assert by_id["total"] == 1
    probable = parameters({"name": [{"text": people.name.upper()}], "birthDate": "1988-07-07",
                           "telecom": [{"system": "phone", "value": people.phone}]})  # fmt: skip
    assert graded(await match(client, people.chw, probable))[0] == (people.a, "probable", 0.9)
    loose = await match(client, people.chw, parameters({"name": [{"text": people.name}], "birthDate": "1988-07-07"}))
    assert sorted(graded(loose)) == sorted([(people.a, "possible", 0.6), (people.b, "possible", 0.6)])
    assert graded(await match(client, people.chw, parameters({"name": [{"text": "Nobody Like This"}]}))) == []


async def test_only_certain_and_count(client: Client, people: People) -> None:
    both = {"name": [{"text": people.name}], "birthDate": "1988-07-07"}
    assert graded(await match(client, people.chw, parameters(both, only_certain=True))) == []
    assert len(graded(await match(client, people.chw, parameters(both, count=1)))) == 1
    with_id = {**both, "identifier": [{"system": CCCD, "value": people.cccd}]}
    assert [g for _, g, _ in graded(await match(client, people.chw, parameters(with_id, only_certain=True)))] == [
        "certain"
    ]


async def test_bad_parameters(client: Client, people: People) -> None:
    no_resource = {"resourceType": "Parameters", "parameter": [{"name": "count", "valueInteger": 2}]}
    assert (await match(client, people.chw, no_resource, 400))["issue"][0]["details"]["coding"][0]["code"] == (
        "resource_required"
    )
    too_many = parameters({"name": [{"text": "x y"}]}, count=1000)
    assert (await match(client, people.chw, too_many, 400))["issue"][0]["details"]["coding"][0]["code"] == (
        "out_of_range"
    )
    empty = parameters({})
    assert (await match(client, people.chw, empty, 400))["issue"][0]["details"]["coding"][0]["code"] == (
        "match_criteria_required"
    )


async def test_access_and_audit(client: Client, factory: Factory, people: People, db: asyncpg.Pool) -> None:
    elsewhere = await factory.staff(await factory.facility(kind="health_post"), role="chw")
    by_id = parameters({"identifier": [{"system": CCCD, "value": people.cccd}]})
    assert graded(await match(client, elsewhere, by_id)) == []  # a patient they may not see is not shown
    login = await factory.patient_login(people.post)
    answer = await client.post("/fhir/Patient/$match", json=by_id, headers=login.headers)
    assert answer.status_code == 403
    before = await db.fetchval("SELECT count(*) FROM audit_events WHERE patient_id = $1", uuid.UUID(people.a))
    await match(client, people.chw, by_id)
    after = await db.fetch(
        "SELECT action, resource_type, actor_user_id FROM audit_events WHERE patient_id = $1 ORDER BY id DESC",
        uuid.UUID(people.a),
    )
    assert len(after) == before + 1
    assert (after[0]["action"], after[0]["resource_type"], after[0]["actor_user_id"]) == (
        "search", "Patient", people.chw.user_id,
    )  # fmt: skip


async def test_the_capability_statement_declares_it(client: Client) -> None:
    statement = (await client.get("/fhir/metadata")).json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert {"name": "match", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match"} in patient[
        "operation"
    ]


@pytest.fixture(scope="module")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("national")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with serving(server_env(settings, folder, SPEAN_PUBLIC_BASE_URL=base), [port], folder, "--no-migrate"):
        yield base


async def test_fhirpy_searches_by_national_identifier_and_matches(live: str, people: People) -> None:
    fhir = AsyncFHIRClient(f"{live}/fhir", authorization=f"Bearer {people.chw.token}")
    spaced = f"{people.cccd[:3]}-{people.cccd[3:6]} {people.cccd[6:]}"
    found = await fhir.resources("Patient").search(identifier=f"{CCCD}|{spaced}").fetch_all()
    assert [p.id for p in found] == [people.a]
    first: Any = found[0]
    validate(first.serialize())
    assert await fhir.resources("Patient").search(identifier=f"{CCCD}|001000000000").fetch_all() == []
    bundle = await fhir.execute(
        "Patient/$match", method="post", data=parameters({"identifier": [{"system": CCCD, "value": spaced}]})
    )
    assert [(e["resource"]["id"], e["search"]["score"]) for e in bundle["entry"]] == [(people.a, 1.0)]
