"""infra.outage: which real errors mean "PostgreSQL/Redis is away", the back-off, one line per outage."""

from __future__ import annotations

import asyncpg
import pytest
import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from infra import outage
from infra.embedded import free_port


async def test_a_refused_postgres_is_postgres_away() -> None:
    with pytest.raises(ConnectionRefusedError) as refused:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/postgres", timeout=2)
    assert outage.unavailable(refused.value) is outage.POSTGRES


async def test_a_refused_redis_is_redis_away() -> None:
    client = Redis(port=free_port(), retry=Retry(NoBackoff(), 0))  # as the app's pool: fail at once
    try:
        with pytest.raises(Exception) as refused:  # noqa: PT011 - the class is what is under test
            await client.ping()
    finally:
        await client.aclose()
    assert outage.unavailable(refused.value) is outage.REDIS


async def test_a_closed_connection_is_postgres_away_but_a_cancelled_statement_is_not(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    await conn.execute("SET statement_timeout = '10ms'")
    with pytest.raises(asyncpg.QueryCanceledError) as cancelled:
        await conn.execute("SELECT pg_sleep(1)")
    assert outage.unavailable(cancelled.value) is None  # a query's own fault: not retryable as such
    with pytest.raises(asyncpg.DataError) as bad:
        await conn.fetchval("SELECT $1::int", "not a number")
    assert outage.unavailable(bad.value) is None
    await conn.close()
    with pytest.raises(asyncpg.InterfaceError) as closed:
        await conn.fetchval("SELECT 1")
    assert outage.unavailable(closed.value) is outage.POSTGRES


def test_backoff_grows_to_its_cap_and_resets() -> None:
    backoff = outage.Backoff(first_s=0.5, cap_s=5.0)
    pauses = [backoff.next() for _ in range(10)]
    assert pauses[0] <= 0.5
    assert all(p <= 5.0 for p in pauses)
    assert max(pauses[-3:]) >= 2.5  # the ceiling reached the cap; jitter keeps at least half
    backoff.reset()
    assert backoff.next() <= 0.5


def test_one_line_when_it_goes_and_one_when_it_returns() -> None:
    dependency = outage.Dependency("redis", "cache_unavailable")
    with structlog.testing.capture_logs() as logs:
        for _ in range(5):
            dependency.down(ConnectionRefusedError("refused"))
        assert dependency.is_down
        for _ in range(5):
            dependency.up()
    assert [line["event"] for line in logs] == ["dependency_unavailable", "dependency_restored"]
