"""The restore drill, as an operator runs it: `spean admin backup` of a database that holds a
clinic's activity, `spean admin restore` into a fresh database, and the restore proven by its
row counts and by the audit chain recomputed to the head the backup recorded. Real processes
and PostgreSQL's own pg_dump/pg_restore throughout."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from infra.migrate import migrate
from tests.conftest import new_database
from tests.factory import Factory


def spean(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spean.cli", *args], env=env, capture_output=True, text=True, timeout=180, check=False
    )


@pytest.fixture
async def fresh_database(servers: tuple[str, str]) -> AsyncIterator[str]:
    """A new, empty database on the same server: where a restore goes."""
    async with new_database(servers[0], "spean_restore", migrated=False) as url:
        yield url


@pytest.fixture
def env(database_url: str, servers: tuple[str, str], tmp_path: Path) -> dict[str, str]:
    import os

    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": servers[1],
        "SPEAN_DATA_DIR": str(tmp_path / "data"),
        "SPEAN_LOG_LEVEL": "warning",
    }


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        names = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
        return {r["tablename"]: await conn.fetchval(f'SELECT count(*) FROM "{r["tablename"]}"') for r in names}
    finally:
        await conn.close()


async def test_a_backup_restores_into_a_fresh_database_whole_and_provably_untampered(
    factory: Factory, env: dict[str, str], fresh_database: str, tmp_path: Path, database_url: str
) -> None:
    # Activity: facilities, staff, a patient, a booking and its audit events and outbox rows.
    scene = await factory.scene()
    await factory.post("/v1/appointments", scene.booking(), scene.chw.token)
    dump = tmp_path / "spean.dump"

    taken = await asyncio.to_thread(spean, env, "admin", "backup", "--output", str(dump))
    assert taken.returncode == 0, taken.stderr
    manifest = json.loads((tmp_path / "spean.dump.manifest.json").read_text())
    assert manifest["tables"]["audit_events"] > 0
    assert manifest["tables"]["appointments"] > 0
    assert manifest["audit_head_seq"] > 0
    assert len(manifest["audit_head_hash"]) == 64

    restored = await asyncio.to_thread(spean, env, "admin", "restore", str(dump), "--into", fresh_database)
    assert restored.returncode == 0, restored.stderr
    assert "audit chain intact" in restored.stdout
    assert await _counts(fresh_database) == manifest["tables"]
    # The restored database is a Spean database in its own right: its chain verifies there too.
    verified = await asyncio.to_thread(
        spean, {**env, "DATABASE_URL": fresh_database}, "admin", "verify-audit", "--no-seal"
    )
    assert verified.returncode == 0, verified.stderr
    assert f"head {manifest['audit_head_seq']} {manifest['audit_head_hash']}" in verified.stdout
    # And the backup itself is in the chain it carries: an export by the operator.
    conn = await asyncpg.connect(fresh_database)
    try:
        exported = await conn.fetchval(
            """SELECT count(*) FROM audit_events
               WHERE action = 'export' AND actor_role = 'operator' AND resource_type = 'Database'"""
        )
    finally:
        await conn.close()
    assert exported >= 1
    # The migrations already applied on the restore are recognised: nothing is re-run.
    await migrate(fresh_database)
    assert await _counts(fresh_database) == manifest["tables"]


async def test_the_counts_and_the_dump_come_from_one_snapshot_while_the_api_keeps_writing(
    env: dict[str, str], fresh_database: str, tmp_path: Path, database_url: str
) -> None:
    stop = asyncio.Event()
    written = 0

    async def writer() -> None:
        nonlocal written
        conn = await asyncpg.connect(database_url)
        try:
            while not stop.is_set():
                await conn.execute(
                    """INSERT INTO audit_events (actor_role, action, resource_type, resource_id, channel, outcome)
                       VALUES ('operator', 'read', 'Drill', $1, 'cli', 'success')""",
                    str(written),
                )
                written += 1
        finally:
            await conn.close()

    task = asyncio.create_task(writer())
    try:
        dump = tmp_path / "busy.dump"
        taken = await asyncio.to_thread(spean, env, "admin", "backup", "--output", str(dump))
    finally:
        stop.set()
        await task
    assert taken.returncode == 0, taken.stderr
    assert written > 0
    restored = await asyncio.to_thread(spean, env, "admin", "restore", str(dump), "--into", fresh_database)
    assert restored.returncode == 0, restored.stderr
    manifest = json.loads((tmp_path / "busy.dump.manifest.json").read_text())
    assert await _counts(fresh_database) == manifest["tables"]


async def test_a_restore_refuses_a_database_in_use_a_changed_dump_and_counts_that_differ(
    env: dict[str, str], fresh_database: str, tmp_path: Path, database_url: str
) -> None:
    dump = tmp_path / "spean.dump"
    assert (await asyncio.to_thread(spean, env, "admin", "backup", "--output", str(dump))).returncode == 0
    again = await asyncio.to_thread(spean, env, "admin", "backup", "--output", str(dump))
    assert again.returncode == 2
    assert "output_exists" in again.stderr

    into_live = await asyncio.to_thread(spean, env, "admin", "restore", str(dump), "--into", database_url)
    assert into_live.returncode == 2
    assert "target_not_empty" in into_live.stderr

    corrupt = tmp_path / "corrupt.dump"
    body = bytearray(dump.read_bytes())
    body[len(body) // 2] ^= 0xFF  # one flipped byte, as a bad disk or a careless edit leaves it
    corrupt.write_bytes(bytes(body))
    (tmp_path / "corrupt.dump.manifest.json").write_text((tmp_path / "spean.dump.manifest.json").read_text())
    refused = await asyncio.to_thread(spean, env, "admin", "restore", str(corrupt), "--into", fresh_database)
    assert refused.returncode == 2
    assert "dump_corrupt" in refused.stderr

    missing = await asyncio.to_thread(
        spean, env, "admin", "restore", str(tmp_path / "nothing.dump"), "--into", fresh_database
    )
    assert missing.returncode == 2
    assert "manifest_missing" in missing.stderr

    # A manifest that claims other counts (or a dump taken from a database edited since) fails
    # the drill with exit 3 and says which table differs.
    manifest = json.loads((tmp_path / "spean.dump.manifest.json").read_text())
    manifest["tables"]["appointments"] += 1
    (tmp_path / "spean.dump.manifest.json").write_text(json.dumps(manifest))
    mismatch = await asyncio.to_thread(spean, env, "admin", "restore", str(dump), "--into", fresh_database)
    assert mismatch.returncode == 3
    assert "appointments" in mismatch.stderr


async def test_a_backup_of_a_tampered_database_fails_the_drill(
    env: dict[str, str], servers: tuple[str, str], tmp_path: Path, database_url: str
) -> None:
    """A backup carries the chain as it is: if someone edited an audit event in the database
    (or in a copy), the restore says so, with exit 3, and names the event."""
    # A scratch copy of the live database, edited the way an attacker with SQL access would.
    first = tmp_path / "clean.dump"
    assert (await asyncio.to_thread(spean, env, "admin", "backup", "--output", str(first))).returncode == 0
    async with (
        new_database(servers[0], "spean_restore", migrated=False) as copy,
        new_database(servers[0], "spean_restore", migrated=False) as target,
    ):
        assert (await asyncio.to_thread(spean, env, "admin", "restore", str(first), "--into", copy)).returncode == 0
        conn = await asyncpg.connect(copy)
        try:
            async with conn.transaction():
                await conn.execute("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only")
                edited = await conn.fetchval(
                    "UPDATE audit_events SET outcome = 'refused' WHERE id = "
                    "(SELECT min(id) FROM audit_events WHERE seal_seq IS NOT NULL) RETURNING id"
                )
                await conn.execute("ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only")
        finally:
            await conn.close()
        second = tmp_path / "tampered.dump"
        taken = await asyncio.to_thread(
            spean, {**env, "DATABASE_URL": copy}, "admin", "backup", "--output", str(second)
        )
        assert taken.returncode == 0, taken.stderr
        drill = await asyncio.to_thread(spean, env, "admin", "restore", str(second), "--into", target)
        assert drill.returncode == 3
        assert f"BROKEN at event {edited}" in drill.stderr
