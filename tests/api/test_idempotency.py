"""Idempotency-Key on POST: replay, mismatch, concurrency, and errors that are not kept."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from tests.factory import Factory, auth

Client = AsyncTestClient[Litestar]


async def _booking(factory: Factory) -> tuple[dict[str, str], dict[str, str], uuid.UUID]:
    scene = await factory.scene()
    return scene.chw.headers, scene.booking(), scene.specialist.practitioner_id


class TestIdempotencyKey:
    async def test_retry_with_same_key_replays_the_first_answer(
        self, client: Client, factory: Factory, db: asyncpg.Pool
    ) -> None:
        headers, body, practitioner = await _booking(factory)
        key = {"Idempotency-Key": str(uuid.uuid4())}
        first = await client.post("/v1/appointments", json=body, headers={**headers, **key})
        again = await client.post("/v1/appointments", json=body, headers={**headers, **key})
        assert first.status_code == again.status_code == 201
        assert first.json() == again.json()
        assert again.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        count = await db.fetchval("SELECT count(*) FROM appointments WHERE practitioner_id = $1", practitioner)
        events = await db.fetchval(
            "SELECT count(*) FROM outbox WHERE payload->>'practitioner_id' = $1", str(practitioner)
        )
        assert (count, events) == (1, 1)

    async def test_same_key_different_body_is_refused(self, client: Client, factory: Factory) -> None:
        headers, body, _ = await _booking(factory)
        key = {"Idempotency-Key": str(uuid.uuid4())}
        assert (await client.post("/v1/appointments", json=body, headers={**headers, **key})).status_code == 201
        other = await client.post("/v1/appointments", json={**body, "reason": "x"}, headers={**headers, **key})
        assert other.status_code == 422
        assert other.json()["code"] == "idempotency_key_reused"

    async def test_concurrent_duplicates_write_once(self, client: Client, factory: Factory, db: asyncpg.Pool) -> None:
        headers, body, practitioner = await _booking(factory)
        key = {"Idempotency-Key": str(uuid.uuid4())}
        answers = await asyncio.gather(
            *(client.post("/v1/appointments", json=body, headers={**headers, **key}) for _ in range(10))
        )
        assert {a.status_code for a in answers} == {201}
        assert len({a.json()["id"] for a in answers}) == 1
        assert await db.fetchval("SELECT count(*) FROM appointments WHERE practitioner_id = $1", practitioner) == 1

    async def test_errors_are_not_kept_so_a_retry_runs_again(self, client: Client, factory: Factory) -> None:
        headers, body, _ = await _booking(factory)
        key = {"Idempotency-Key": str(uuid.uuid4())}
        bad = await client.post("/v1/appointments", json={**body, "mode": "async"}, headers={**headers, **key})
        assert bad.status_code == 422
        assert bad.json()["code"] == "mode_not_offered"
        # Same key, same (bad) body: executed again, same refusal, nothing written in between.
        again = await client.post("/v1/appointments", json={**body, "mode": "async"}, headers={**headers, **key})
        assert again.status_code == 422
        assert "idempotent-replayed" not in again.headers

    async def test_keys_are_scoped_to_the_caller(self, client: Client, factory: Factory) -> None:
        headers, body, _ = await _booking(factory)
        key = str(uuid.uuid4())
        assert (
            await client.post("/v1/appointments", json=body, headers={**headers, "Idempotency-Key": key})
        ).status_code == 201
        stranger = auth(await factory.admin_token(), **{"Idempotency-Key": key})
        facility = {"name": "Other", "kind": "health_post", "timezone": "Asia/Phnom_Penh", "country": "KH"}
        created = await client.post("/v1/facilities", json=facility, headers=stranger)
        assert created.status_code == 201

    async def test_malformed_key(self, client: Client, factory: Factory) -> None:
        headers, body, _ = await _booking(factory)
        response = await client.post("/v1/appointments", json=body, headers={**headers, "Idempotency-Key": "a b"})
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_idempotency_key"

    async def test_expired_key_is_reusable(self, client: Client, factory: Factory, db: asyncpg.Pool) -> None:
        headers, body, _ = await _booking(factory)
        key = str(uuid.uuid4())
        first = await client.post("/v1/appointments", json=body, headers={**headers, "Idempotency-Key": key})
        await client.post(f"/v1/appointments/{first.json()['id']}/cancel", headers=headers)
        await db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = $1", key)
        fresh = await client.post("/v1/appointments", json=body, headers={**headers, "Idempotency-Key": key})
        assert fresh.status_code == 201
        assert fresh.json()["id"] != first.json()["id"]


async def test_housekeeping_purges_only_expired_keys(db: asyncpg.Pool) -> None:
    from infra.housekeeping import purge_expired

    live, dead = str(uuid.uuid4()), str(uuid.uuid4())
    await db.executemany(
        "INSERT INTO idempotency_keys (principal, key, fingerprint, expires_at) VALUES ('t', $1, '', $2)",
        [(live, datetime.now(UTC) + timedelta(hours=1)), (dead, datetime.now(UTC) - timedelta(seconds=1))],
    )
    assert await purge_expired(db) >= 1
    left = {r["key"] for r in await db.fetch("SELECT key FROM idempotency_keys WHERE key = ANY($1)", [live, dead])}
    assert left == {live}
