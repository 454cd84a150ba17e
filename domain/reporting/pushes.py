"""The ledger of reports pushed to DHIS2: one row per attempt (refused and unreachable ones too)
with who ran it, the period, what was sent and what DHIS2 answered, plus an audit event in the
same transaction. Only counts per facility leave Spean, so no patient is named."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

import msgspec

from domain.audit import trail
from infra.db import Connection


class Push(msgspec.Struct, frozen=True, kw_only=True):
    period: str
    facility_ids: Sequence[uuid.UUID]
    operator: str
    server: str
    server_dry_run: bool
    values_sent: int
    status: str  # DHIS2's SUCCESS/WARNING/ERROR, or unauthorized, forbidden, unreachable, bad_response
    http_status: int | None
    imported: int = 0
    updated: int = 0
    ignored: int = 0
    deleted: int = 0
    conflicts: list[dict[str, str | None]] = []
    message: str | None = None
    started_at: datetime


async def record(conn: Connection, push: Push) -> uuid.UUID:
    push_id = uuid.uuid4()
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO dhis2_pushes (id, period, facility_ids, operator, server, server_dry_run, values_sent,
                                         status, http_status, imported, updated, ignored, deleted, conflicts,
                                         message, started_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)""",
            push_id,
            push.period,
            list(push.facility_ids),
            push.operator,
            push.server,
            push.server_dry_run,
            push.values_sent,
            push.status,
            push.http_status,
            push.imported,
            push.updated,
            push.ignored,
            push.deleted,
            push.conflicts,  # jsonb through the connection's codec (infra.db.init_connection)
            push.message,
            push.started_at,
        )
        await trail.record_operator(conn, action="export", resource_type="Dhis2DataValueSet", resource_id=push_id)
    return push_id


__all__ = ["Push", "record"]
