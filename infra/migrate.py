"""Forward-only SQL migrations from the `migrations` package, applied in order.

Each file `NNNN_name.sql` runs in its own transaction and is recorded with its checksum in
`schema_migrations`. A session-level advisory lock serialises concurrent runners (two workers
starting at once), so running twice, or from two processes, applies each file exactly once.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg
import structlog

from infra import outage

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
    conn = await asyncpg.connect(dsn, timeout=10)  # a server that does not answer is away: retried
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        try:
            return await _apply_pending(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
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


async def _apply_pending(conn: asyncpg.Connection) -> list[Migration]:
    await conn.execute(
        """CREATE TABLE IF NOT EXISTS schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               checksum text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    applied = {r["version"]: r["checksum"] for r in await conn.fetch("SELECT version, checksum FROM schema_migrations")}
    done: list[Migration] = []
    for migration in discover():
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {migration.version:04d}_{migration.name} was edited after it was applied; "
                    "write a new migration instead"
                )
            continue
        async with conn.transaction():
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
