"""Migrations: applied once, in order, safely from two processes at once; edits are caught."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from infra.migrate import MigrationError, discover, migrate
from tests.conftest import new_database


@pytest.fixture
async def empty_database(servers: tuple[str, str]) -> AsyncIterator[str]:
    async with new_database(servers[0], "spean_migrate", migrated=False) as url:
        yield url


async def test_concurrent_runners_apply_each_migration_once(empty_database: str) -> None:
    results = await asyncio.gather(*(migrate(empty_database) for _ in range(4)))
    # Whichever runner takes a migration's lock first applies it; together, each exactly once.
    applied = sorted(m.version for r in results for m in r)
    assert applied == [m.version for m in discover()]
    assert await migrate(empty_database) == []
    conn = await asyncpg.connect(empty_database)
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [m.version for m in discover()]
    finally:
        await conn.close()


async def test_an_edited_migration_is_refused(empty_database: str) -> None:
    await migrate(empty_database)
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1")
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match="edited after it was applied"):
        await migrate(empty_database)
