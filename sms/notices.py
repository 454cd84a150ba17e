"""Messages Spean sends on its own initiative (not answers): non-essential, so STOP silences them.

Privacy: no diagnosis, drug or result detail by SMS unless the patient opted in
(`patients.sms_details_opt_in`); otherwise only that a result is ready and how to read it (the
app, or USSD behind the patient's PIN). A phone is often shared, and SMS sits on it unlocked.
"""

from __future__ import annotations

import uuid

from domain.errors import NotFound
from infra.db import Connection
from sms.outbox import SmsOutbox


async def result_ready(
    conn: Connection, outbox: SmsOutbox, patient_id: uuid.UUID, *, detail: str, key: str
) -> uuid.UUID | None:
    """Queue (in `conn`'s transaction) the SMS telling the patient a result is ready."""
    patient = await conn.fetchrow(
        "SELECT phone, preferred_language, sms_details_opt_in FROM patients WHERE id = $1", patient_id
    )
    if patient is None:
        raise NotFound("patient_not_found", "no such patient")
    if not patient["phone"]:
        return None
    detailed = patient["sms_details_opt_in"]
    return await outbox.enqueue(
        conn,
        to=patient["phone"],
        template="sms_result_detail" if detailed else "sms_result_ready",
        language=patient["preferred_language"],
        values={"detail": detail} if detailed else {},
        key=key,
    )
