"""SQL of the record: versions are inserted, heads are locked, nothing is ever deleted."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg

from domain.record.types import Entry, Provenance
from infra.db import Connection

COLUMNS = """id, version, patient_id, kind, status, encounter_id, appointment_id, code, body, effective_at,
              author_user_id, author_role, facility_id, channel, recorded_at, reason, seq"""


def to_entry(row: asyncpg.Record) -> Entry:
    return Entry(
        id=row["id"],
        version=row["version"],
        patient_id=row["patient_id"],
        kind=row["kind"],
        status=row["status"],
        encounter_id=row["encounter_id"],
        appointment_id=row["appointment_id"],
        code=row["code"],
        effective_at=row["effective_at"],
        body=row["body"],
        provenance=Provenance(
            author_user_id=row["author_user_id"],
            author_role=row["author_role"],
            facility_id=row["facility_id"],
            channel=row["channel"],
            recorded_at=row["recorded_at"],
            reason=row["reason"],
        ),
        seq=row["seq"],
    )


async def insert(conn: Connection, **values: Any) -> Entry:
    names = list(values)
    row = await conn.fetchrow(
        f"""INSERT INTO record_entries ({", ".join(names)})
            VALUES ({", ".join(f"${i}" for i in range(1, len(names) + 1))}) RETURNING {COLUMNS}""",
        *values.values(),
    )
    assert row is not None
    return to_entry(row)


async def head(conn: Connection, entry_id: uuid.UUID, *, for_update: bool = False) -> Entry | None:
    row = await conn.fetchrow(
        f"SELECT {COLUMNS} FROM record_entries WHERE id = $1 AND status <> 'superseded'"
        + (" FOR UPDATE" if for_update else ""),
        entry_id,
    )
    return None if row is None else to_entry(row)


async def supersede(conn: Connection, entry_id: uuid.UUID, version: int) -> None:
    await conn.execute(
        "UPDATE record_entries SET status = 'superseded' WHERE id = $1 AND version = $2", entry_id, version
    )


async def versions(conn: Connection, entry_id: uuid.UUID) -> list[Entry]:
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM record_entries WHERE id = $1 ORDER BY version", entry_id)
    return [to_entry(r) for r in rows]
