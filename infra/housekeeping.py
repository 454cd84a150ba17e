"""Periodic clean-up each worker runs in the background: expired idempotency keys.

Several workers doing it at once is harmless (the deletes are idempotent and batched)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from infra import outage
from infra.background import in_background
from infra.db import Pool

log = structlog.get_logger(__name__)

_BATCH = 5_000


async def purge_expired(pool: Pool) -> int:
    deleted = 0
    while True:
        async with pool.acquire() as conn:
            status = await conn.execute(
                """DELETE FROM idempotency_keys WHERE ctid IN (
                       SELECT ctid FROM idempotency_keys WHERE expires_at < now() LIMIT $1)""",
                _BATCH,
            )
        count = int(status.split()[-1])
        deleted += count
        if count < _BATCH:
            return deleted


async def run_forever(pool: Pool, every_s: float = 3600.0) -> None:
    backoff = outage.Backoff()
    while True:
        try:
            purged = await purge_expired(pool)
            if purged:
                log.info("idempotency_keys_purged", count=purged)
        except Exception as exc:  # a failed round is retried; never kill the worker
            if (dependency := outage.unavailable(exc)) is None:
                log.exception("housekeeping_failed")
            else:
                dependency.down(exc)  # said once per outage; retried sooner than the next round
                await asyncio.sleep(min(backoff.next(), every_s))
                continue
        outage.POSTGRES.up()
        backoff.reset()
        await asyncio.sleep(every_s)


def running(pool: Pool) -> contextlib.AbstractAsyncContextManager[None]:
    return in_background(run_forever(pool))
