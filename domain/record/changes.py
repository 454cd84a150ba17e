"""Every version of the record entries a caller may read, across patients, newest first: FHIR
type-level _history of Encounter, Observation, Condition and MedicationRequest.

The record's one rule decides (access.RECORD_BASIS, evaluated per patient in the query), so a
reader finds here exactly the entries they could read one patient at a time; each patient whose
entries a page shows is audited as a record search, with the basis it was read on.

Cost: the query walks the change feed (seq) backwards and checks each entry's patient, so a
page costs in proportion to the entries passed over that the caller may not read; `since`
(FHIR `_since`) bounds the walk.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

from domain import access
from domain.audit import trail
from domain.principal import Principal
from domain.record.store import to_entry
from domain.record.types import Entry
from infra.db import Connection


async def changes(
    conn: Connection,
    principal: Principal,
    *,
    kinds: list[str],
    since: datetime | None,
    before_seq: int | None,
    limit: int,
) -> list[Entry]:
    """Entry versions of `kinds` recorded at or after `since`, before `before_seq`, newest first."""
    rows = await conn.fetch(
        f"""SELECT e.*, b.basis, b.home FROM record_entries e
            CROSS JOIN LATERAL (SELECT p.home_facility_id AS home, {access.RECORD_BASIS} AS basis
                                FROM patients p WHERE p.id = e.patient_id) b
            WHERE b.basis IS NOT NULL AND e.kind = ANY($4::text[])
              AND ($5::timestamptz IS NULL OR e.recorded_at >= $5) AND ($6::bigint IS NULL OR e.seq < $6)
            ORDER BY e.seq DESC LIMIT $7""",
        *access.record_args(principal),
        kinds,
        since,
        before_seq,
        limit,
    )
    # One audit event per patient, with the basis (purpose) and facility their record was read on.
    grants: dict[tuple[str, uuid.UUID], list[uuid.UUID]] = defaultdict(list)
    for r in rows:
        grants[(r["basis"], r["home"])].append(r["patient_id"])
    for (basis, home), patient_ids in grants.items():
        await trail.record(
            conn, principal, action="search", resource_type="Record", resource_id=None, patient_ids=patient_ids,
            facility_id=access.authoring_facility(principal, home), purpose=basis,
        )  # fmt: skip
    return [to_entry(r) for r in rows]
