"""Spean on a Sentinel-watched Redis: a master, its replica and three sentinels (quorum 2), real
redis-server processes. The master is killed (SIGKILL); the sentinels promote the replica, and
the same client (REDIS_URL=redis+sentinel://...) carries on against it: what was written before
(and had replicated) is there, new writes land on the new master, and the room relay's
subscription follows it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from domain.identity.otp import OtpPolicy, OtpService
from infra import outage, redis_client
from infra.config import Settings
from realtime import bus as room_bus
from realtime.bus import Bus
from realtime.rooms import Rooms
from sms.sender import LogSmsSender
from spean.app import create_app
from tests.factory import new_phone
from tests.fault.servers import wait_until
from tests.scale.redis_servers import SentinelSet, own_sentinels
from tests.scale.servers import until


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    """Each test its own set: a failover leaves no replica behind for another."""
    with own_sentinels(range(7130, 7135)) as group:
        yield group


@pytest.fixture
async def sentinel_client(sentinels: SentinelSet) -> AsyncIterator[redis_client.RedisClient]:
    redis = redis_client.connect(sentinels.url)
    yield redis
    await redis.aclose()


async def _answers(call: Awaitable[object]) -> bool:
    """Whether a Redis call succeeds now; while a failover is in progress it fails, as "Redis is
    away" (503 / try again), never otherwise."""
    try:
        await call
    except Exception as exc:
        if outage.unavailable(exc) is not outage.REDIS:
            raise
        return False
    return True


async def test_the_app_carries_on_when_the_sentinels_promote_the_replica(
    sentinels: SentinelSet, sentinel_client: redis_client.RedisClient
) -> None:
    redis = sentinel_client
    assert isinstance(redis, Redis)
    otp = OtpService(
        redis, "secret" * 8, OtpPolicy(ttl_s=300, max_attempts=3, per_phone_per_hour=5, per_ip_per_hour=50)
    )
    phone = f"+8553{uuid.uuid4().int % 10**7:07d}"
    code = await otp.issue(phone, "203.0.113.10")
    rooms = Rooms(redis, grace_s=5)
    room = str(uuid.uuid4())
    peer_id, token = await rooms.add(room, "user", "patient", "waiting")
    bus = room_bus.for_client(redis, sentinels.url)
    assert isinstance(bus, Bus)  # one pub/sub connection to whichever server is master
    heard: list[str] = []
    await bus.start()
    try:
        await bus.join(room, heard.append)
        await rooms.append_and_publish(room, peer_id, None, "{}", '{"n":"before"}')
        await until(lambda: asyncio.sleep(0, len(heard) == 1), "the relay works before the failover")
        await asyncio.sleep(0.5)  # replication is asynchronous: let the replica have it all
        old = sentinels.master_port()
        assert old == sentinels.master.port
        sentinels.master.kill()
        await asyncio.to_thread(
            wait_until, lambda: sentinels.master_port() == sentinels.replica.port, 30, "no promotion"
        )

        # Commands fail (as "Redis is away": 503 / try again) only until the client finds the
        # new master, which it asks the sentinels for on its next connection.
        await until(lambda: _answers(redis.ping()), "the client reaches the new master")
        await otp.verify(phone, code)  # the code issued before the failover
        session = await rooms.session(room, token)
        assert session is not None
        assert session.peer == peer_id
        assert (await rooms.peer(room, peer_id)) is not None
        await rooms.update(room, peer_id, state="admitted")  # a write, on the new master
        assert (await rooms.peer(room, peer_id)).state == "admitted"  # type: ignore[union-attr]

        # The bus's subscription moves to the new master too (what was published while it
        # moved may be lost: pub/sub is at-most-once).
        sent = 0

        async def relayed() -> bool:
            nonlocal sent
            sent += 1
            with_seq = await rooms.append_and_publish(room, peer_id, None, "{}", f'{{"n":{sent}}}')
            await asyncio.sleep(0.3)
            return any(h.startswith(f"{with_seq}\n") for h in heard)

        await until(relayed, "the relay follows the new master", within_s=30)
    finally:
        await bus.stop()
    await rooms.close(room)


async def test_the_api_answers_503_during_the_failover_and_carries_on_after_it(
    sentinels: SentinelSet, settings: Settings
) -> None:
    """The API on the Sentinel URL: sign-in codes are requested before, during (503 with
    Retry-After, "Redis is away") and after the promotion, without a restart."""
    configured = msgspec.structs.replace(settings, redis_url=sentinels.url, db_pool_min=1, db_pool_max=3)
    refused = 0
    async with AsyncTestClient(create_app(configured, sms_sender=LogSmsSender())) as client:

        async def code_requested() -> bool:
            nonlocal refused
            answer = await client.post("/v1/auth/otp", json={"phone": new_phone()})
            if answer.status_code == 503:
                refused += 1
                assert answer.json()["code"] == "cache_unavailable"
                assert answer.headers["retry-after"]
                return False
            assert answer.status_code == 202, answer.text
            return True

        assert await code_requested()
        assert (await client.get("/ready")).status_code == 200
        sentinels.master.kill()
        # Until the sentinels agree the master is down (down-after-milliseconds) and promote the
        # replica, requests that need Redis are refused as retryable; then they succeed again.
        await until(code_requested, "sign-in codes are sent again", within_s=30)
        assert sentinels.master_port() == sentinels.replica.port
        assert refused > 0
        await until(lambda: _status_is(client, "/ready", 200), "the API is ready again")
        assert await code_requested()


async def _status_is(client: AsyncTestClient[Litestar], path: str, status: int) -> bool:
    return (await client.get(path)).status_code == status
