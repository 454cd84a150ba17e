"""Self-registrations (by SMS) as the CHW of the health post sees them: listed until verified,
verified once, by a health worker of that post only; the patient and other posts are refused."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from domain import self_registration
from domain.errors import Forbidden
from tests.factory import Factory, auth, new_phone

Client = AsyncTestClient[Litestar]


async def _self_registered(db: asyncpg.Pool, post: uuid.UUID, phone: str) -> uuid.UUID:
    async with db.acquire() as conn, conn.transaction():
        patient = await self_registration.register(
            conn,
            phone,
            name="Chan Dara",
            birth_year=1990,
            village="Svay Chrum",
            health_post_id=post,
            language="km",
            channel="sms",
            default_region="KH",
        )
    return patient.id


async def test_the_chw_of_the_post_lists_and_verifies_once(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    elsewhere = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    other_chw = await factory.staff(elsewhere, role="chw")
    phone = new_phone()
    patient_id = await _self_registered(db, post, phone)
    listed = await client.get(f"/v1/facilities/{post}/self-registrations", headers=chw.headers)
    assert listed.status_code == 200, listed.text
    [entry] = listed.json()
    assert (entry["patient_id"], entry["name"], entry["village"]) == (str(patient_id), "Chan Dara", "Svay Chrum")
    assert (entry["phone"], entry["channel"], entry["verified_at"]) == (phone, "sms", None)

    refused = await client.post(f"/v1/patients/{patient_id}/self-registration/verify", headers=other_chw.headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "role_required"
    foreign = await client.get(f"/v1/facilities/{post}/self-registrations", headers=other_chw.headers)
    assert foreign.status_code == 403

    async with db.acquire() as conn:
        user_id = await conn.fetchval("SELECT id FROM users WHERE phone = $1", phone)
    own = await client.post(
        f"/v1/patients/{patient_id}/self-registration/verify", headers=auth(await factory.token_for(user_id))
    )
    assert own.status_code == 403  # the patient cannot verify themself

    verified = await client.post(f"/v1/patients/{patient_id}/self-registration/verify", headers=chw.headers)
    assert verified.status_code == 200, verified.text
    assert verified.json()["verified_by"] == str(chw.user_id)
    again = await client.post(f"/v1/patients/{patient_id}/self-registration/verify", headers=chw.headers)
    assert again.status_code == 409
    assert again.json()["code"] == "already_verified"
    assert (await client.get(f"/v1/facilities/{post}/self-registrations", headers=chw.headers)).json() == []


async def test_a_patient_registered_by_staff_has_nothing_to_verify(client: Client, factory: Factory) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    patient_id = await factory.patient(post, token=chw.token)
    answer = await client.post(f"/v1/patients/{patient_id}/self-registration/verify", headers=chw.headers)
    assert answer.status_code == 404
    assert answer.json()["code"] == "self_registration_not_found"


async def test_a_staff_phone_cannot_register_itself(factory: Factory, db: asyncpg.Pool) -> None:
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    with pytest.raises(Forbidden) as refused:
        await _self_registered(db, post, chw.phone)
    assert refused.value.code == "staff_phone"
    async with db.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM patients WHERE phone = $1", chw.phone) == 0


async def test_two_health_workers_verifying_at_once_verify_it_once(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    post = await factory.facility(kind="health_post")
    chws = [await factory.staff(post, role="chw") for _ in range(2)]
    patient_id = await _self_registered(db, post, new_phone())
    answers = await asyncio.gather(
        *(client.post(f"/v1/patients/{patient_id}/self-registration/verify", headers=chw.headers) for chw in chws)
    )
    assert sorted(a.status_code for a in answers) == [200, 409], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 409)
    assert refused.json()["code"] == "already_verified"
    winner = next(a for a in answers if a.status_code == 200).json()["verified_by"]
    stored = await db.fetchval("SELECT verified_by FROM patient_self_registrations WHERE patient_id = $1", patient_id)
    assert str(stored) == winner
