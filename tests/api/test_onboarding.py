"""Staff onboarding never changes an existing account silently: a phone already in use (a patient's
login, a registered patient's phone, staff, an administrator) is a 409 unless the admin links the
account explicitly, and a linked account keeps its name and roles and gains one, audited."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, auth, new_phone

Client = AsyncTestClient[Litestar]


def practitioner(facility: uuid.UUID, phone: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Dr Newcomer",
        "phone": phone,
        "facility_id": str(facility),
        "role": "specialist",
        "specialties": ["cardiology"],
        **extra,
    }


async def account(db: asyncpg.Pool, phone: str) -> dict[str, Any] | None:
    row = await db.fetchrow(
        """SELECT u.id, u.display_name, u.is_system_admin,
                  (SELECT array_agg(m.role || '@' || m.facility_id ORDER BY m.role, m.facility_id)
                   FROM memberships m WHERE m.user_id = u.id) AS roles,
                  (SELECT array_agg(pa.patient_id ORDER BY pa.patient_id)
                   FROM patient_accounts pa WHERE pa.user_id = u.id) AS patients,
                  (SELECT name FROM practitioners p WHERE p.user_id = u.id) AS practitioner
           FROM users u WHERE u.phone = $1""",
        phone,
    )
    return None if row is None else dict(row)


async def test_a_patients_phone_is_refused_and_nothing_changes(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    centre = await factory.facility()
    admin = auth(await factory.facility_admin(centre))
    signed_in = await factory.patient_login(await factory.facility(kind="health_post"))
    await db.execute("UPDATE users SET display_name = 'Sok Chantha' WHERE id = $1", signed_in.user_id)
    before = await account(db, signed_in.phone)
    response = await client.post("/v1/practitioners", json=practitioner(centre, signed_in.phone), headers=admin)
    assert response.status_code == 409, response.text
    assert (response.json()["code"], response.json()["errors"][0]["field"]) == ("phone_in_use", "phone")
    assert await account(db, signed_in.phone) == before
    # A registered patient who never signed in: their phone is in use too, and no account appears.
    registered = new_phone()
    await factory.patient(await factory.facility(kind="health_post"), phone=registered)
    response = await client.post("/v1/practitioners", json=practitioner(centre, registered), headers=admin)
    assert response.json()["code"] == "phone_in_use"
    assert await account(db, registered) is None


async def test_an_explicit_link_keeps_the_name_and_roles_and_is_audited(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    centre = await factory.facility()
    admin = auth(await factory.facility_admin(centre))
    signed_in = await factory.patient_login(await factory.facility(kind="health_post"))
    await db.execute("UPDATE users SET display_name = 'Sok Chantha' WHERE id = $1", signed_in.user_id)
    body = practitioner(centre, signed_in.phone, link_existing_account=True)
    response = await client.post("/v1/practitioners", json=body, headers=admin)
    assert response.status_code == 201, response.text
    after = await account(db, signed_in.phone)
    assert after is not None
    assert after["id"] == signed_in.user_id
    assert after["display_name"] == "Sok Chantha"
    assert after["practitioner"] == "Dr Newcomer"
    assert after["roles"] == [f"specialist@{centre}"]
    assert after["patients"] == [signed_in.patient_id]
    audited = await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'link_account' AND resource_id = $1 AND facility_id = $2",
        response.json()["id"],
        centre,
    )
    assert audited == 1


async def test_staff_and_practitioners_are_never_renamed_or_given_roles_silently(
    client: Client, factory: Factory, db: asyncpg.Pool
) -> None:
    centre, other = await factory.facility(), await factory.facility()
    admin = auth(await factory.admin_token())
    existing = await factory.staff(centre)
    before = await account(db, existing.phone)
    for flag in (False, True):
        body = practitioner(other, existing.phone, name="Someone Else", link_existing_account=flag)
        response = await client.post("/v1/practitioners", json=body, headers=admin)
        assert response.status_code == 409, response.text
        assert response.json()["code"] == "practitioner_exists"
    assert await account(db, existing.phone) == before
    # A facility administrator (an account without a practitioner profile).
    phone = new_phone()
    async with db.acquire() as conn:
        from domain.identity import users

        user_id = await users.ensure_user(conn, phone, display_name="Admin Dara")
        await users.grant_role(conn, user_id, centre, "facility_admin")
    response = await client.post("/v1/practitioners", json=practitioner(other, phone), headers=admin)
    assert response.json()["code"] == "phone_in_use"
    linked = await client.post(
        "/v1/practitioners", json=practitioner(other, phone, link_existing_account=True), headers=admin
    )
    assert linked.status_code == 201, linked.text
    after = await account(db, phone)
    assert after is not None
    assert after["display_name"] == "Admin Dara"
    assert sorted(after["roles"]) == sorted([f"facility_admin@{centre}", f"specialist@{other}"])


async def test_a_new_phone_gets_a_new_account(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    centre = await factory.facility()
    phone = new_phone()
    response = await client.post(
        "/v1/practitioners", json=practitioner(centre, phone), headers=auth(await factory.admin_token())
    )
    assert response.status_code == 201, response.text
    created = await account(db, phone)
    assert created is not None
    assert (created["display_name"], created["roles"]) == ("Dr Newcomer", [f"specialist@{centre}"])
    assert await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE action = 'create' AND resource_type = 'Practitioner' "
        "AND resource_id = $1",
        response.json()["id"],
    )


async def test_a_patients_logins_follow_their_phone(client: Client, factory: Factory, db: asyncpg.Pool) -> None:
    """A new number for the patient: the old number's login (a lost phone, a recycled SIM) no
    longer acts for them; the new number's does."""
    post = await factory.facility(kind="health_post")
    chw = await factory.staff(post, role="chw")
    old = await factory.patient_login(post)
    new = new_phone()
    moved = await client.patch(f"/v1/patients/{old.patient_id}", json={"phone": new}, headers=chw.headers)
    assert moved.status_code == 200, moved.text
    refused = await client.get(f"/v1/patients/{old.patient_id}", headers=old.headers)
    assert refused.status_code == 403
    assert (await client.get("/v1/me", headers=old.headers)).json()["patient_ids"] == []
    async with db.acquire() as conn:
        from domain.identity import users

        user_id = await users.login(conn, new)
    assert user_id is not None
    me = (await client.get("/v1/me", headers=auth(await factory.token_for(user_id)))).json()
    assert me["patient_ids"] == [str(old.patient_id)]
