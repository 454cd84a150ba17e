"""The device registry: idempotent registration, removal by its owner only, bounded input."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory

Client = AsyncTestClient[Litestar]


async def test_registering_a_token_twice_updates_one_device(
    client: Client, factory: Factory, db: asyncpg.Pool, unique: str
) -> None:
    scene = await factory.scene()
    body = {"token": f"tok-{unique}", "platform": "android", "app_version": "1.2.0", "language": "km"}
    first = await client.post("/v1/me/devices", json=body, headers=scene.specialist.headers)
    again = await client.post("/v1/me/devices", json={**body, "language": "en"}, headers=scene.specialist.headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["id"] == again.json()["id"]
    assert again.json()["language"] == "en"
    # The same phone signed in by another login: the token follows the login now using it
    moved = await client.post("/v1/me/devices", json=body, headers=scene.chw.headers)
    assert moved.json()["id"] == first.json()["id"]
    owner = await db.fetchval("SELECT user_id FROM devices WHERE id = $1", uuid.UUID(first.json()["id"]))
    assert owner == scene.chw.user_id


async def test_only_its_owner_removes_a_device(client: Client, factory: Factory, unique: str) -> None:
    scene = await factory.scene()
    device = await factory.post("/v1/me/devices", {"token": f"rm-{unique}", "platform": "ios"}, scene.chw.token)
    other = await client.delete(f"/v1/me/devices/{device['id']}", headers=scene.specialist.headers)
    assert other.status_code == 404
    assert other.json()["code"] == "device_not_found"
    mine = await client.delete(f"/v1/me/devices/{device['id']}", headers=scene.chw.headers)
    assert mine.status_code == 204
    twice = await client.delete(f"/v1/me/devices/{device['id']}", headers=scene.chw.headers)
    assert twice.status_code == 404


async def test_device_input_is_bounded_and_typed(client: Client, factory: Factory) -> None:
    scene = await factory.scene()
    for body in (
        {"token": "", "platform": "android"},
        {"token": "x" * 4097, "platform": "android"},
        {"token": "x", "platform": "symbian"},
        {"token": "x", "platform": "android", "language": "de"},
        {"token": "x", "platform": "android", "app_version": "v" * 65},
    ):
        response = await client.post("/v1/me/devices", json=body, headers=scene.chw.headers)
        assert response.status_code == 400, body


async def test_notification_routes_need_a_login_and_the_listing_a_system_admin(
    client: Client, factory: Factory
) -> None:
    assert (await client.get("/v1/me/notifications")).status_code == 401
    assert (await client.post("/v1/me/devices", json={"token": "x", "platform": "web"})).status_code == 401
    scene = await factory.scene()
    assert (await client.get("/v1/me/notifications", headers=scene.chw.headers)).json() == []
    refused = await client.get("/v1/admin/notifications", params={"state": "failed"}, headers=scene.chw.headers)
    assert refused.status_code == 403
    bad_state = await client.get(
        "/v1/admin/notifications",
        params={"state": "lost"},
        headers={"Authorization": f"Bearer {await factory.admin_token()}"},
    )
    assert bad_state.status_code == 400


async def test_one_token_registered_ten_times_at_once_is_one_device(
    client: Client, factory: Factory, db: asyncpg.Pool, unique: str
) -> None:
    scene = await factory.scene()
    body = {"token": f"race-{unique}", "platform": "android"}
    answers = await asyncio.gather(
        *(client.post("/v1/me/devices", json=body, headers=scene.chw.headers) for _ in range(10))
    )
    assert {a.status_code for a in answers} == {201}, [a.text[:200] for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert await db.fetchval("SELECT count(*) FROM devices WHERE token = $1", body["token"]) == 1
