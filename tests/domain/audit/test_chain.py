"""The audit hash chain: sealing, verification, and each kind of tampering caught (then undone,
since the test database is shared by the session)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from domain.audit import chain
from tests.factory import Factory

_COLUMNS = (
    "id, at, actor_user_id, actor_role, facility_id, patient_id, action, resource_type, resource_id, purpose, "
    "channel, outcome, request_id, seal_seq, prev_id, hash"
)


@pytest.fixture
async def raw(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection that bypasses triggers, as a superuser attacker would."""
    conn = await asyncpg.connect(database_url)
    await conn.execute("SET session_replication_role = replica")
    try:
        yield conn
    finally:
        await conn.close()


async def sealed_scene(factory: Factory, db: asyncpg.Pool) -> list[int]:
    """Some fresh audit events, all sealed; their ids."""
    scene = await factory.scene()
    response = await factory.client.post("/v1/appointments", json=scene.booking(), headers=scene.chw.headers)
    assert response.status_code == 201
    async with db.acquire() as conn:
        await chain.seal(conn)
        verdict = await chain.verify(conn)
    assert verdict.ok, verdict
    ids = [r["id"] for r in await db.fetch("SELECT id FROM audit_events ORDER BY seal_seq DESC LIMIT 5")]
    return sorted(ids)


async def verdict(db: asyncpg.Pool) -> chain.Verdict:
    async with db.acquire() as conn:
        return await chain.verify(conn)


async def test_rolled_back_ids_are_not_deletions(factory: Factory, db: asyncpg.Pool) -> None:
    await sealed_scene(factory, db)
    async with db.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(
            "INSERT INTO audit_events (action, resource_type, channel, outcome) VALUES ('read', 'X', 'app', 'success')"
        )
        await tx.rollback()
    await sealed_scene(factory, db)
    assert (await verdict(db)).ok


async def test_an_altered_row_is_named(factory: Factory, db: asyncpg.Pool, raw: asyncpg.Connection) -> None:
    ids = await sealed_scene(factory, db)
    target = ids[1]
    original = await raw.fetchval("SELECT outcome FROM audit_events WHERE id = $1", target)
    await raw.execute("UPDATE audit_events SET outcome = 'failure' WHERE id = $1", target)
    try:
        found = await verdict(db)
        assert not found.ok
        assert found.problem_id == target
        assert "altered" in (found.problem or "")
    finally:
        await raw.execute("UPDATE audit_events SET outcome = $2 WHERE id = $1", target, original)
    assert (await verdict(db)).ok


@pytest.mark.parametrize("position", ["middle", "newest"])
async def test_a_deleted_row_is_caught(
    factory: Factory, db: asyncpg.Pool, raw: asyncpg.Connection, position: str
) -> None:
    ids = await sealed_scene(factory, db)
    target = ids[2] if position == "middle" else ids[-1]
    saved = await raw.fetchrow(f"SELECT {_COLUMNS} FROM audit_events WHERE id = $1", target)
    assert saved is not None
    await raw.execute("DELETE FROM audit_events WHERE id = $1", target)
    try:
        found = await verdict(db)
        assert not found.ok
        assert found.problem_id == (ids[3] if position == "middle" else ids[-2])
    finally:
        await raw.execute(
            f"INSERT INTO audit_events ({_COLUMNS}) OVERRIDING SYSTEM VALUE VALUES "
            f"({', '.join(f'${i}' for i in range(1, 17))})",
            *saved.values(),
        )
    assert (await verdict(db)).ok


async def test_the_database_refuses_deletes_and_edits_of_sealed_rows(factory: Factory, db: asyncpg.Pool) -> None:
    ids = await sealed_scene(factory, db)
    for sql in ("DELETE FROM audit_events WHERE id = $1", "UPDATE audit_events SET outcome = 'x' WHERE id = $1"):
        with pytest.raises(asyncpg.RestrictViolationError):
            await db.execute(sql, ids[0])


async def test_an_unsealed_row_takes_only_its_seal(factory: Factory, db: asyncpg.Pool) -> None:
    """Before sealing, the only change the database takes is the three seal columns; any other
    column changed, alone or with them, is refused (in a transaction rolled back each time)."""
    await factory.scene()
    changes = {
        "at": "at = at + interval '1 second'",
        "actor_user_id": "actor_user_id = gen_random_uuid()",
        "actor_role": "actor_role = 'system_admin'",
        "facility_id": "facility_id = gen_random_uuid()",
        "patient_id": "patient_id = gen_random_uuid()",
        "action": "action = 'export'",
        "resource_type": "resource_type = 'Other'",
        "resource_id": "resource_id = 'other'",
        "purpose": "purpose = 'covered up'",
        "channel": "channel = 'web'",
        "outcome": "outcome = 'failure'",
        "request_id": "request_id = 'other'",
    }
    seal = "seal_seq = -1, prev_id = -1, hash = '\\x00'"
    async with db.acquire() as conn:
        for change in [*changes.values(), "actor_role = NULL, purpose = 'x'"]:
            for assignments in (change, f"{seal}, {change}"):
                transaction = conn.transaction()
                await transaction.start()
                try:
                    # A row the sealer cannot take meanwhile: inserted in this transaction.
                    target = await conn.fetchval(
                        """INSERT INTO audit_events (actor_role, action, resource_type, channel, outcome)
                           VALUES ('chw', 'read', 'Record', 'app', 'success') RETURNING id"""
                    )
                    with pytest.raises(asyncpg.RestrictViolationError):
                        await conn.execute(f"UPDATE audit_events SET {assignments} WHERE id = $1", target)
                finally:
                    await transaction.rollback()
        transaction = conn.transaction()
        await transaction.start()
        try:
            target = await conn.fetchval(
                """INSERT INTO audit_events (actor_role, action, resource_type, channel, outcome)
                   VALUES ('chw', 'read', 'Record', 'app', 'success') RETURNING id"""
            )
            assert await conn.execute(f"UPDATE audit_events SET {seal} WHERE id = $1", target) == "UPDATE 1"
        finally:
            await transaction.rollback()


async def test_the_append_only_guard_names_every_column_but_the_seal(db: asyncpg.Pool) -> None:
    """The guard is the trigger's WHEN condition (migration 0031), which names the columns: a column
    added to audit_events without being named there could be changed after the fact, unseen until
    sealed. Every column but the three the sealer writes must appear in it, on both sides."""
    columns = await db.fetch(
        """SELECT attname FROM pg_attribute WHERE attrelid = 'audit_events'::regclass AND attnum > 0
           AND NOT attisdropped AND attname NOT IN ('seal_seq', 'prev_id', 'hash')"""
    )
    guard = await db.fetchval(
        """SELECT pg_get_triggerdef(oid) FROM pg_trigger
           WHERE tgrelid = 'audit_events'::regclass AND tgname = 'audit_events_append_only'"""
    )
    assert "BEFORE UPDATE" in guard
    for (column,) in columns:
        assert f"old.{column}" in guard, f"{column} is not guarded"
        assert f"new.{column}" in guard, f"{column} is not guarded"
    never = await db.fetchval(
        """SELECT pg_get_triggerdef(oid) FROM pg_trigger
           WHERE tgrelid = 'audit_events'::regclass AND tgname = 'audit_events_never_deleted'"""
    )
    assert "BEFORE DELETE" in never
    assert "WHEN" not in never


async def test_cli_verify_audit_exits_3_on_tampering(
    factory: Factory, db: asyncpg.Pool, raw: asyncpg.Connection, database_url: str, servers: tuple[str, str]
) -> None:
    ids = await sealed_scene(factory, db)
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": servers[1], "SPEAN_LOG_LEVEL": "warning"}

    def spean(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "spean.cli", "admin", *args], env=env, capture_output=True, text=True, timeout=60
        )

    good = spean("verify-audit")
    assert good.returncode == 0, good.stderr
    assert "audit chain intact" in good.stdout
    await raw.execute("UPDATE audit_events SET purpose = 'covered up' WHERE id = $1", ids[0])
    try:
        bad = spean("verify-audit", "--no-seal")
        assert bad.returncode == 3
        assert f"BROKEN at event {ids[0]}" in bad.stderr
    finally:
        await raw.execute("UPDATE audit_events SET purpose = NULL WHERE id = $1", ids[0])
    assert spean("seal-audit").returncode == 0
