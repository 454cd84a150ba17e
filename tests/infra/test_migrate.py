"""Migrations: applied once, in order, safely from two processes at once; edits are caught."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from infra.migrate import MigrationError, discover, migrate


@pytest.fixture
async def empty_database(servers: tuple[str, str]) -> AsyncIterator[str]:
    admin = await asyncpg.connect(servers[0])
    name = f"spean_migrate_{secrets.token_hex(4)}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(servers[0])._replace(path=f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


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
