"""The results PIN: set by the patient on USSD, stored as an argon2id hash, tries capped.

A 4-digit PIN has only 10,000 values, so the hash alone would not stop a guesser: what does is the
cap. After MAX_ATTEMPTS wrong tries the PIN is locked for LOCK_FOR, whatever session or phone the
tries came from (the count lives in PostgreSQL, not in the USSD session). Hashing runs in a thread
so the event loop keeps serving other turns meanwhile.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from infra.db import Connection

MAX_ATTEMPTS = 3
LOCK_FOR = timedelta(minutes=30)
_FORMAT = re.compile(r"^[0-9]{4}$")
# OWASP's argon2id minimum (19 MiB, 2 passes): a turn must answer within the gateway's few seconds.
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class Check(StrEnum):
    OK = "ok"
    WRONG = "wrong"
    LOCKED = "locked"  # too many wrong tries: wait for the lock to pass
    NOT_SET = "not_set"


def well_formed(pin: str) -> bool:
    return bool(_FORMAT.match(pin))


async def is_set(conn: Connection, patient_id: uuid.UUID) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM ussd_pins WHERE patient_id = $1", patient_id))


async def set_pin(conn: Connection, patient_id: uuid.UUID, pin: str) -> None:
    assert well_formed(pin)
    hashed = await asyncio.to_thread(_hasher.hash, pin)
    await conn.execute(
        """INSERT INTO ussd_pins (patient_id, pin_hash) VALUES ($1, $2)
           ON CONFLICT (patient_id) DO UPDATE
              SET pin_hash = EXCLUDED.pin_hash, failed_attempts = 0, locked_until = NULL, updated_at = now()""",
        patient_id,
        hashed,
    )


async def check(conn: Connection, patient_id: uuid.UUID, pin: str) -> Check:
    """Verify `pin`; count a wrong one and lock after MAX_ATTEMPTS. The row is locked meanwhile,
    so concurrent tries are counted one after the other, never lost."""
    row = await conn.fetchrow(
        "SELECT pin_hash, failed_attempts, locked_until FROM ussd_pins WHERE patient_id = $1 FOR UPDATE", patient_id
    )
    if row is None:
        return Check.NOT_SET
    now = datetime.now(UTC)
    if row["locked_until"] is not None and row["locked_until"] > now:
        return Check.LOCKED
    try:
        await asyncio.to_thread(_hasher.verify, row["pin_hash"], pin)
    except (VerificationError, InvalidHashError):
        failed = row["failed_attempts"] + 1
        locked = failed >= MAX_ATTEMPTS
        await conn.execute(
            "UPDATE ussd_pins SET failed_attempts = $2, locked_until = $3, updated_at = now() WHERE patient_id = $1",
            patient_id,
            0 if locked else failed,
            now + LOCK_FOR if locked else None,
        )
        return Check.LOCKED if locked else Check.WRONG
    if row["failed_attempts"] or row["locked_until"] is not None:
        await conn.execute(
            "UPDATE ussd_pins SET failed_attempts = 0, locked_until = NULL, updated_at = now() WHERE patient_id = $1",
            patient_id,
        )
    return Check.OK
