"""Bulk export jobs (FHIR Bulk Data Access): one row per $export, from kick-off to expiry.

A job belongs to whoever kicked it off (a backend client or a system admin); only they poll,
cancel or download it, and to anyone else it does not exist (404). Each owner runs at most
`max_active` jobs at once: more is a 429 with Retry-After, as the IG suggests. Workers claim
queued jobs with a lease (claim), renew it while they write (renew), and a job whose worker died
is claimed again once its lease ran out, up to MAX_ATTEMPTS."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

import msgspec

from domain.errors import NotFound, RateLimited
from domain.principal import Principal
from infra.db import Connection

Level = Literal["system", "patient", "group"]
Status = Literal["queued", "running", "completed", "failed", "cancelled"]
MAX_ATTEMPTS = 3
RETRY_AFTER_S = 2  # what pollers and refused kick-offs are told to wait


class OutputFile(msgspec.Struct, frozen=True):
    type: str
    key: str
    count: int


class Job(msgspec.Struct, frozen=True, kw_only=True):
    id: uuid.UUID
    client_id: uuid.UUID | None
    user_id: uuid.UUID | None
    level: Level
    group_id: uuid.UUID | None
    types: tuple[str, ...]
    since: datetime | None
    request_url: str
    status: Status
    progress: str | None
    transaction_time: datetime
    attempts: int
    output: tuple[OutputFile, ...]
    error: str | None
    expires_at: datetime | None

    @property
    def owner(self) -> uuid.UUID:
        owner = self.client_id or self.user_id
        assert owner is not None
        return owner


def _job(row: Any) -> Job:
    return Job(
        id=row["id"],
        client_id=row["client_id"],
        user_id=row["user_id"],
        level=row["level"],
        group_id=row["group_id"],
        types=tuple(row["types"]),
        since=row["since"],
        request_url=row["request_url"],
        status=row["status"],
        progress=row["progress"],
        transaction_time=row["transaction_time"],
        attempts=row["attempts"],
        output=tuple(msgspec.convert(row["output"], list[OutputFile])),
        error=row["error"],
        expires_at=row["expires_at"],
    )


def _owner_columns(principal: Principal) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    return (principal.user_id, None) if principal.is_client else (None, principal.user_id)


async def kick_off(
    conn: Connection,
    principal: Principal,
    *,
    level: Level,
    group_id: uuid.UUID | None,
    types: tuple[str, ...],
    since: datetime | None,
    request_url: str,
    max_active: int,
) -> Job:
    """Queue an export, unless the owner already runs `max_active` of them."""
    client_id, user_id = _owner_columns(principal)
    # One kick-off per owner at a time, so two concurrent ones cannot both see room for one more.
    await conn.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended('bulk-export:' || $1::text, 0))", str(principal.user_id)
    )
    active = await conn.fetchval(
        """SELECT count(*) FROM bulk_exports WHERE status IN ('queued', 'running')
             AND (client_id = $1 OR user_id = $2)""",
        client_id,
        user_id,
    )
    if active >= max_active:
        raise RateLimited(
            "too_many_exports",
            f"{active} exports of yours are still running; poll them, or cancel one, before starting another",
            retry_after_s=RETRY_AFTER_S * 5,
        )
    row = await conn.fetchrow(
        """INSERT INTO bulk_exports (id, client_id, user_id, level, group_id, types, since, request_url)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
        uuid.uuid4(),
        client_id,
        user_id,
        level,
        group_id,
        list(types),
        since,
        request_url,
    )
    return _job(row)


async def owned(conn: Connection, principal: Principal, job_id: uuid.UUID) -> Job:
    """The caller's job, unexpired and not cancelled; anything else is not found."""
    row = await conn.fetchrow(
        """SELECT * FROM bulk_exports WHERE id = $1 AND (client_id = $2 OR user_id = $3)
             AND status <> 'cancelled' AND (expires_at IS NULL OR expires_at > now())""",
        job_id,
        *_owner_columns(principal),
    )
    if row is None:
        raise NotFound("export_not_found", "no such export (or it was cancelled, or its files expired)")
    return _job(row)


async def cancel(conn: Connection, principal: Principal, job_id: uuid.UUID) -> Job:
    """Cancel a job in flight (its worker stops at its next batch), or drop a finished one's files
    early (they expire now). Either way the status URL is 404 from then on."""
    job = await owned(conn, principal, job_id)
    row = await conn.fetchrow(
        """UPDATE bulk_exports
           SET status = CASE WHEN status IN ('queued', 'running') THEN 'cancelled' ELSE status END,
               expires_at = CASE WHEN status IN ('queued', 'running') THEN expires_at ELSE now() END,
               finished_at = coalesce(finished_at, now())
           WHERE id = $1 RETURNING *""",
        job.id,
    )
    return _job(row)


async def claim(conn: Connection, lease_s: int) -> Job | None:
    """The oldest queued job, or one whose worker's lease ran out, now leased to the caller."""
    row = await conn.fetchrow(
        """UPDATE bulk_exports SET status = 'running', lease_until = now() + make_interval(secs => $1),
                                   attempts = attempts + 1, output = '[]', progress = NULL
           WHERE id = (SELECT id FROM bulk_exports
                       WHERE status = 'queued' OR (status = 'running' AND lease_until < now())
                       ORDER BY created_at FOR UPDATE SKIP LOCKED LIMIT 1)
           RETURNING *""",
        lease_s,
    )
    return None if row is None else _job(row)


async def renew(conn: Connection, job_id: uuid.UUID, attempt: int, lease_s: int, progress: str) -> bool:
    """Extend the lease and say how far the job got; False when the job was cancelled or another
    worker took it over (the caller stops)."""
    updated = await conn.fetchval(
        """UPDATE bulk_exports SET lease_until = now() + make_interval(secs => $3), progress = $4
           WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING 1""",
        job_id,
        attempt,
        lease_s,
        progress,
    )
    return updated is not None


async def complete(
    conn: Connection, job_id: uuid.UUID, attempt: int, transaction_time: datetime, output: list[OutputFile],
    expiry_s: int,
) -> bool:  # fmt: skip
    done = await conn.fetchval(
        """UPDATE bulk_exports SET status = 'completed', output = $3, transaction_time = $4, lease_until = NULL,
                                   progress = NULL, finished_at = now(), expires_at = now() + make_interval(secs => $5)
           WHERE id = $1 AND attempts = $2 AND status = 'running' RETURNING 1""",
        job_id,
        attempt,
        msgspec.to_builtins(output),
        transaction_time,
        expiry_s,
    )
    return done is not None


async def fail(conn: Connection, job_id: uuid.UUID, attempt: int, error: str, expiry_s: int) -> None:
    """A job that failed MAX_ATTEMPTS times stays failed (its poller learns why); before that it
    goes back to the queue."""
    await conn.execute(
        """UPDATE bulk_exports SET status = CASE WHEN attempts >= $3 THEN 'failed' ELSE 'queued' END,
                                   error = $4, lease_until = NULL,
                                   finished_at = CASE WHEN attempts >= $3 THEN now() END,
                                   expires_at = CASE WHEN attempts >= $3 THEN now() + make_interval(secs => $5) END
           WHERE id = $1 AND attempts = $2 AND status = 'running'""",
        job_id,
        attempt,
        MAX_ATTEMPTS,
        error[:2000],
        expiry_s,
    )


async def expired(conn: Connection, limit: int = 100) -> list[Job]:
    """Jobs past their expiry (or cancelled), removed here; the caller deletes their files."""
    rows = await conn.fetch(
        """DELETE FROM bulk_exports WHERE id IN (
               SELECT id FROM bulk_exports
               WHERE expires_at < now() OR (status = 'cancelled' AND (lease_until IS NULL OR lease_until < now()))
               ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING *""",
        limit,
    )
    return [_job(r) for r in rows]


async def still_referenced(conn: Connection, key: str) -> bool:
    """Blobs are content-addressed: the same bytes may be another live export's file, or an attachment."""
    return bool(
        await conn.fetchval(
            """SELECT EXISTS (SELECT 1 FROM bulk_exports b, jsonb_array_elements(b.output) o WHERE o->>'key' = $1)
                   OR EXISTS (SELECT 1 FROM record_entries e WHERE e.kind = 'attachment' AND e.body->>'sha256' = $1)""",
            key,
        )
    )
