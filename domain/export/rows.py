"""What an export reads, streamed from a server-side cursor in batches: never a whole table in
memory. The caller holds one REPEATABLE READ transaction around all of it, so every file of an
export is the same snapshot, the one its manifest's transactionTime names.

The rows are the ones reads build from (domain.patients, domain.record.store, domain.facilities),
so an exported resource is the resource a read returns. Scope: every patient (system and
Patient level) or the patients whose home facility is the Group's; a record entry's current
version only; `since` keeps what changed at or after that instant."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime

from domain import facilities, patients
from domain.facilities import Facility
from domain.patients import Patient
from domain.record.store import COLUMNS, to_entry
from domain.record.types import Entry
from infra.db import Connection

BATCH = 500  # rows per round trip of the cursor


async def patient_rows(
    conn: Connection, group_id: uuid.UUID | None, since: datetime | None
) -> AsyncIterator[list[Patient]]:
    query = f"""{patients.ROWS}
        WHERE ($1::uuid IS NULL OR p.home_facility_id = $1) AND ($2::timestamptz IS NULL OR p.updated_at >= $2)
        GROUP BY p.id"""
    cursor = await conn.cursor(query, group_id, since)
    while batch := await cursor.fetch(BATCH):
        yield [patients.from_row(r) for r in batch]


async def entry_rows(
    conn: Connection, kind: str, group_id: uuid.UUID | None, since: datetime | None
) -> AsyncIterator[list[Entry]]:
    query = f"""SELECT {COLUMNS} FROM record_entries e
        WHERE e.kind = $1 AND e.status <> 'superseded' AND ($3::timestamptz IS NULL OR e.recorded_at >= $3)
          AND ($2::uuid IS NULL OR EXISTS (
                SELECT 1 FROM patients p WHERE p.id = e.patient_id AND p.home_facility_id = $2))"""
    cursor = await conn.cursor(query, kind, group_id, since)
    while batch := await cursor.fetch(BATCH):
        yield [to_entry(r) for r in batch]


async def facility_rows(conn: Connection, since: datetime | None) -> AsyncIterator[list[Facility]]:
    """Facilities are few (hundreds): read one by one through the read path itself."""
    ids = await conn.fetch(
        "SELECT id FROM facilities WHERE $1::timestamptz IS NULL OR updated_at >= $1 ORDER BY id", since
    )
    for start in range(0, len(ids), BATCH):
        yield [await facilities.get(conn, r["id"]) for r in ids[start : start + BATCH]]
