"""Each server worker seals the audit trail in the background (domain.audit.chain); several at
once are harmless: one holds the sealer's lock, the others skip their round."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from domain.audit import chain
from infra import outage
from infra.background import in_background
from infra.db import Pool

log = structlog.get_logger(__name__)


async def run_forever(pool: Pool, every_s: float) -> None:
    backoff = outage.Backoff(first_s=every_s, cap_s=max(every_s, 60.0))
    pause = every_s
    while True:
        await asyncio.sleep(pause)
        try:
            async with pool.acquire() as conn:
                sealed = await chain.seal(conn)
            if sealed:
                log.debug("audit_sealed", count=sealed)
        except Exception as exc:  # a failed round is retried; never kill the worker
            if (dependency := outage.unavailable(exc)) is None:
                log.exception("audit_sealing_failed")
            else:
                dependency.down(exc)  # said once per outage, and tried less often while it lasts
                pause = backoff.next()
                continue
        outage.POSTGRES.up()
        backoff.reset()
        pause = every_s


def running(pool: Pool, every_s: float) -> contextlib.AbstractAsyncContextManager[None]:
    return in_background(run_forever(pool, every_s))
