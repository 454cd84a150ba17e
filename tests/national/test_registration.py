"""National identifiers through registration: validated (4xx naming the system), stored
normalised, searched normalised, and used with name, birth and phone to refuse a duplicate on
every path that creates patients (app API, FHIR create and conditional create, SMS
self-registration), also when two registrations race."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from domain import self_registration
from domain.errors import Conflict
from tests.factory import Factory, new_phone

Client = AsyncTestClient[Litestar]
CCCD = "https://spean.dev/fhir/sid/vn-cccd"
BHYT = "https://spean.dev/fhir/sid/vn-bhyt"


def new_cccd(birth_year: int = 1990, female: bool = False) -> str:
    century = (birth_year // 100 - 19) * 2 + int(female)
    return f"001{century}{birth_year % 100:02d}{random.randrange(10**6):06d}"


def person(post: uuid.UUID, **fields: Any) -> dict[str, Any]:
    return {"names": [{"text": f"Nguyễn Văn {uuid.uuid4().hex[:6]}"}], "home_facility_id": str(post),
            "birth_date": "1990-04-02", "sex": "male", **fields}  # fmt: skip


async def test_an_invalid_national_id_is_refused_naming_its_system(client: Client, factory: Factory) -> None:
    post = await factory.facility(kind="health_post", country="VN", timezone="Asia/Ho_Chi_Minh")
    chw = await factory.staff(post, role="chw")
    bad = person(post, identifiers=[{"system": CCCD, "value": "12345"}])
    answer = await client.post("/v1/patients", json=bad, headers=chw.headers)
    assert answer.status_code == 422
    problem = answer.json()
    assert problem["code"] == "invalid_identifier"
    assert problem["extra"]["system"] == CCCD
    assert problem["errors"][0]["field"] == "identifiers[0].value"
    # Not the birth year the record holds (1990): the CCCD encodes 1991.
    wrong_year = person(post, identifiers=[{"system": CCCD, "value": new_cccd(1991)}])
    assert (await client.post("/v1/patients", json=wrong_year, headers=chw.headers)).json()["code"] == (
        "invalid_identifier"
    )
    fhir = await client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"text": "Trần Thị B"}], "birthDate": "1990-04-02",
              "managingOrganization": {"reference": f"Organization/{post}"},
              "identifier": [{"system": BHYT, "value": "XX9 79 0123456789"}]},
        headers=chw.headers,
    )  # fmt: skip
    assert fhir.status_code == 422
    issue = fhir.json()["issue"][0]
    assert issue["expression"] == ["Patient.identifier[0].value"]
    assert issue["details"]["coding"][0]["code"] == "invalid_identifier"
    assert "BHYT" in issue["details"]["text"]


async def test_stored_normalised_and_found_however_written(client: Client, factory: Factory) -> None:
    post = await factory.facility(kind="health_post", country="VN", timezone="Asia/Ho_Chi_Minh")
    chw = await factory.staff(post, role="chw")
    cccd = new_cccd(1990)
    spaced = f"{cccd[:3]} {cccd[3:6]}-{cccd[6:]}"
    created = await client.post("/v1/patients", json=person(post, identifiers=[{"system": CCCD, "value": spaced}]),
                                headers=chw.headers)  # fmt: skip
    assert created.status_code == 201, created.text
    assert created.json()["identifiers"] == [{"system": CCCD, "value": cccd}]
    found = await client.get("/v1/patients", params={"identifier": f"{CCCD}|{spaced}"}, headers=chw.headers)
    assert [p["id"] for p in found.json()["items"]] == [created.json()["id"]]
    bundle = await client.get("/fhir/Patient", params={"identifier": f"{CCCD}|{spaced}"}, headers=chw.headers)
    assert [e["resource"]["id"] for e in bundle.json()["entry"]] == [created.json()["id"]]
    assert bundle.json()["entry"][0]["resource"]["identifier"] == [{"system": CCCD, "value": cccd}]


async def test_app_api_refuses_a_certain_and_a_probable_duplicate(client: Client, factory: Factory) -> None:
    post = await factory.facility(kind="health_post", country="VN", timezone="Asia/Ho_Chi_Minh")
    chw = await factory.staff(post, role="chw")
    phone = new_phone()
    cccd = new_cccd(1990)
    hoa = person(post, phone=phone, identifiers=[{"system": CCCD, "value": cccd}], names=[{"text": "Lê Thị Hoa"}])
    first = await client.post("/v1/patients", json=hoa, headers=chw.headers)
    assert first.status_code == 201, first.text
    same_id = await client.post("/v1/patients", json=person(post, identifiers=[{"system": CCCD, "value": cccd}]),
                                headers=chw.headers)  # fmt: skip
    assert same_id.status_code == 409
    assert same_id.json()["code"] == "duplicate_patient"
    assert same_id.json()["extra"] == {"match_grade": "certain", "existing_patient_id": first.json()["id"]}
    # Same person without the ID card: same name (accents and case aside), birth date and phone.
    probable = person(post, phone=phone, names=[{"text": "LE THI HOA"}])
    answer = await client.post("/v1/patients", json=probable, headers=chw.headers)
    assert answer.status_code == 409
    assert answer.json()["extra"] == {"match_grade": "probable", "existing_patient_id": first.json()["id"]}
    # The registrar checked: another person (twins). Then it registers.
    confirmed = await client.post("/v1/patients", json={**probable, "confirm_not_duplicate": True}, headers=chw.headers)
    assert confirmed.status_code == 201
    # A shared family phone with another name and birth date is no duplicate at all.
    sibling = person(post, phone=phone, names=[{"text": "Lê Văn Nam"}], birth_date="2012-09-01")
    assert (await client.post("/v1/patients", json=sibling, headers=chw.headers)).status_code == 201


async def test_the_existing_patient_is_named_only_to_who_may_see_them(client: Client, factory: Factory) -> None:
    post, other_post = [await factory.facility(kind="health_post") for _ in range(2)]
    here, there = await factory.staff(post, role="chw"), await factory.staff(other_post, role="chw")
    cccd = new_cccd(1990)
    body = person(post, identifiers=[{"system": CCCD, "value": cccd}])
    assert (await client.post("/v1/patients", json=body, headers=here.headers)).status_code == 201
    elsewhere = await client.post(
        "/v1/patients", json={**body, "home_facility_id": str(other_post)}, headers=there.headers
    )
    assert elsewhere.status_code == 409
    assert elsewhere.json()["code"] == "duplicate_patient"
    assert elsewhere.json()["extra"] == {"match_grade": "certain"}  # no id of a patient they may not see
    assert "Patient/" not in elsewhere.json()["detail"]


async def test_fhir_create_and_conditional_create(client: Client, factory: Factory) -> None:
    post = await factory.facility(kind="health_post", country="VN", timezone="Asia/Ho_Chi_Minh")
    chw = await factory.staff(post, role="chw")
    cccd = new_cccd(1985, female=True)
    resource = {"resourceType": "Patient", "name": [{"text": "Phạm Thị Lan"}], "birthDate": "1985-01-20",
                "gender": "female", "managingOrganization": {"reference": f"Organization/{post}"},
                "identifier": [{"system": CCCD, "value": cccd}]}  # fmt: skip
    created = await client.post("/fhir/Patient", json=resource, headers=chw.headers)
    assert created.status_code == 201, created.text
    again = await client.post("/fhir/Patient", json=resource, headers=chw.headers)
    assert again.status_code == 409
    outcome = again.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert f"Patient/{created.json()['id']}" in outcome["issue"][0]["details"]["text"]
    # Conditional create with the ID written with spaces finds the same patient (200, not a copy).
    spaced = f"{cccd[:6]} {cccd[6:]}"
    found = await client.post("/fhir/Patient", json=resource, headers={**chw.headers,
                              "If-None-Exist": f"identifier={CCCD}|{spaced}"})  # fmt: skip
    assert found.status_code == 200
    assert found.json()["id"] == created.json()["id"]


async def test_sms_self_registration_twice_is_refused(factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    phone = new_phone()

    async def register() -> uuid.UUID:
        async with db.acquire() as conn, conn.transaction():
            patient = await self_registration.register(
                conn, phone, name="Chan Sophea", birth_year=1992, village="Prey Veng", health_post_id=post,
                language="km", channel="sms", default_region="KH",
            )  # fmt: skip
            return patient.id

    first = await register()
    with pytest.raises(Conflict) as refused:
        await register()
    assert refused.value.code == "duplicate_patient"
    assert refused.value.extra == {"match_grade": "probable", "existing_patient_id": str(first)}


async def test_two_registrations_of_one_national_id_at_once(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post", country="VN", timezone="Asia/Ho_Chi_Minh")
    chw = await factory.staff(post, role="chw")
    for _ in range(3):  # each round a new ID; the races differ in timing, never in the outcome
        cccd = new_cccd(1990)

        async def register(i: int, cccd: str = cccd) -> Any:
            body = person(post, names=[{"text": f"Twin {i}"}], identifiers=[{"system": CCCD, "value": cccd}])
            return await client.post("/v1/patients", json=body, headers=chw.headers)

        answers = await asyncio.gather(register(1), register(2))
        assert sorted(a.status_code for a in answers) == [201, 409]
        lost = next(a for a in answers if a.status_code == 409).json()
        won = next(a for a in answers if a.status_code == 201).json()
        assert lost["code"] == "duplicate_patient"
        assert lost["extra"]["existing_patient_id"] == won["id"]
        assert await db.fetchval("SELECT count(*) FROM patient_identifiers WHERE system = $1 AND value = $2",
                                 CCCD, cccd) == 1  # fmt: skip


async def test_updates_validate_and_normalise_too(client: Client, factory: Factory) -> None:
    post = await factory.facility(kind="health_post", country="VN", timezone="Asia/Ho_Chi_Minh")
    chw = await factory.staff(post, role="chw")
    created = (await client.post("/v1/patients", json=person(post), headers=chw.headers)).json()
    bad = await client.patch(f"/v1/patients/{created['id']}", json={"identifiers": [{"system": CCCD, "value": "1"}]},
                             headers=chw.headers)  # fmt: skip
    assert bad.status_code == 422
    assert bad.json()["extra"]["system"] == CCCD
    cccd = new_cccd(1990)
    good = await client.patch(f"/v1/patients/{created['id']}", headers=chw.headers,
                              json={"identifiers": [{"system": CCCD, "value": f"{cccd[:6]}-{cccd[6:]}"}]})  # fmt: skip
    assert good.json()["identifiers"] == [{"system": CCCD, "value": cccd}]
    resource = (await client.get(f"/fhir/Patient/{created['id']}", headers=chw.headers)).json()
    resource["identifier"] = [{"system": BHYT, "value": "not a card"}]
    put = await client.put(f"/fhir/Patient/{created['id']}", json=resource, headers=chw.headers)
    assert put.status_code == 422
    assert put.json()["issue"][0]["details"]["coding"][0]["code"] == "invalid_identifier"
    resource["identifier"] = [{"system": BHYT, "value": "dn4 79 0123456789"}]
    put = await client.put(f"/fhir/Patient/{created['id']}", json=resource, headers=chw.headers)
    assert put.status_code == 200, put.text
    assert put.json()["identifier"] == [{"system": BHYT, "value": "DN4790123456789"}]
