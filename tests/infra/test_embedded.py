"""The no-configuration default: real PostgreSQL and Redis from pip-installed binaries."""

from __future__ import annotations

from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from infra.embedded import EmbeddedServices
from infra.migrate import migrate


async def test_embedded_postgres_and_redis_start_migrate_and_stop(tmp_path: Path) -> None:
    services = EmbeddedServices(tmp_path / "data")
    try:
        database_url = services.start_postgres()
        redis_url = services.start_redis()
        assert len(await migrate(database_url)) >= 1
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM facilities") == 0
            assert "btree_gist" in {r["extname"] for r in await conn.fetch("SELECT extname FROM pg_extension")}
        finally:
            await conn.close()
        redis = Redis.from_url(redis_url)
        assert await redis.ping()
        await redis.aclose()
    finally:
        services.stop()
    assert (tmp_path / "data" / "postgres" / "PG_VERSION").exists()
