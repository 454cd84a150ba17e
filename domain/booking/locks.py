"""Schedule locks: every write that puts an appointment on a time (book, reschedule) first takes
the practitioner's lock, then the patient's, and holds both until its transaction ends.

Why: each such write is checked by two GiST exclusion constraints (one per practitioner, one per
patient). Unlike a unique index, an exclusion check inserts first and then waits for any
in-progress transaction whose row conflicts, so two writers that collide (one patient, two
practitioners, the same time) can each wait for the other: PostgreSQL detects the deadlock after
a second and aborts one of them with 40P01. With the locks, writers that could collide share at
least one lock and take it in the same order, so one waits for the other's commit and then meets
its row as a plain exclusion violation (409) without ever waiting in a cycle.

Writes that change what may be booked for a practitioner (weekly rules, leave) take the
practitioner's lock too: two replaces of the weekly rules cannot interleave, and a booking in
flight lands either before the change or after it (as if made a moment earlier: booked
appointments are kept when rules change or leave is entered).

Transaction-scoped advisory locks keyed by (namespace, hash of the id): a hash collision only
makes two unrelated schedules wait for each other briefly. The price: bookings with one
practitioner (or for one patient) commit one after another, each holding the lock from its
insert to its commit (a round trip or two), which bounds a single practitioner, not the system.
"""

from __future__ import annotations

import uuid

from infra.db import Connection

# Namespaces of the two-key form of pg_advisory_xact_lock (arbitrary, constant).
PRACTITIONER = 0x5EA4_0B01
PATIENT = 0x5EA4_0B02


def schedule_locks_sql(practitioner: str, patient: str) -> str:
    """A FROM item that takes both locks, practitioner first ($n placeholders given by the
    caller): `INSERT ... SELECT ... FROM {schedule_locks_sql(...)}` locks before it writes."""
    return f"""(SELECT pg_advisory_xact_lock({PRACTITIONER}, hashtext({practitioner}::uuid::text)) AS practitioner,
                       pg_advisory_xact_lock({PATIENT}, hashtext({patient}::uuid::text)) AS patient
               ) AS schedule_locks"""


async def lock_schedules(conn: Connection, practitioner_id: uuid.UUID, patient_id: uuid.UUID) -> None:
    await conn.execute(f"SELECT FROM {schedule_locks_sql('$1', '$2')}", practitioner_id, patient_id)


async def lock_practitioner(conn: Connection, practitioner_id: uuid.UUID) -> None:
    await conn.execute(f"SELECT pg_advisory_xact_lock({PRACTITIONER}, hashtext($1::uuid::text))", practitioner_id)
