"""Forward-only SQL migrations from the `migrations` package, applied in order.

Each file `NNNN_name.sql` runs in its own transaction and is recorded with its checksum in
`schema_migrations`. Each of those transactions first takes a transaction-scoped advisory lock
and only then looks at what is applied, so concurrent runners (two workers starting at once)
apply each file exactly once, in order. Nothing outlives a transaction (no session lock, no
named prepared statement): migrations run as well through a pooler in transaction mode as on a
session (DATABASE_MIGRATE_URL, README "Running in production").
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import asyncpg
import structlog

from infra import outage, pooling

log = structlog.get_logger(__name__)

_LOCK_ID = 0x5E_A4_0001  # arbitrary, constant: identifies "spean migrations" among advisory locks
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(Exception):
    pass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover() -> list[Migration]:
    found: list[Migration] = []
    for entry in resources.files("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


async def migrate(dsn: str) -> list[Migration]:
    """Apply pending migrations; return those applied by this call."""
    # A server that does not answer is away: retried. "transaction": nothing prepared by name.
    conn = await pooling.connect(dsn, "transaction", timeout=10)
    try:
        return await _apply_pending(conn)
    finally:
        await conn.close()


async def migrate_when_available(dsn: str, first_error: BaseException) -> None:
    """Retry `migrate` with a growing pause until PostgreSQL answers (a worker that started while it
    was away). Errors other than its absence are logged and retried too: a worker keeps serving
    what needs no database rather than exit."""
    outage.POSTGRES.down(first_error)
    backoff = outage.Backoff()
    while True:
        await asyncio.sleep(backoff.next())
        try:
            await migrate(dsn)
        except Exception as exc:
            if outage.unavailable(exc) is None:
                log.exception("migration_failed")
            continue
        outage.POSTGRES.up()
        return


async def _apply_pending(conn: asyncpg.Connection[Any]) -> list[Migration]:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
    done: list[Migration] = []
    for migration in discover():
        async with conn.transaction():
            # Read after the lock is held (READ COMMITTED: a new snapshot per statement), so a
            # migration another runner committed meanwhile is seen as applied.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
            checksum = await conn.fetchval(
                "SELECT checksum FROM schema_migrations WHERE version = $1", migration.version
            )
            if checksum is not None:
                if checksum != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was edited after it was applied; "
                        "write a new migration instead"
                    )
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
        log.info("migration_applied", version=migration.version, name=migration.name)
        done.append(migration)
    return done
