"""`spean prescriptions export` and `spean prescriptions status`: the exporter loop as a process
of its own (as many as wanted: they share the queue), and what the queue holds."""

from __future__ import annotations

import asyncio
import signal

from api.prescriptions.export import drain, exporter_for
from infra import db
from infra.config import Settings


async def export(settings: Settings, database_url: str, *, once: bool) -> int:
    """Send due exports; `once`: what is due now, then stop. Exit 2 if nothing is configured."""
    exporter = exporter_for(settings)
    if exporter is None:
        print("spean: no exporter: set SPEAN_PRESCRIPTION_EXPORT_URL (and SPEAN_PRESCRIPTION_EXPORTER=fhir)")
        return 2
    pool = await db.create_pool(database_url, min_size=1, max_size=2, pooler=settings.db_pooler)
    stop = None if once else asyncio.Event()
    if stop is not None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        print("prescription exporter ready", flush=True)
    try:
        handled = await drain(pool, exporter, max_attempts=settings.prescription_export_max_attempts, stop=stop)
    finally:
        await exporter.aclose()
        await pool.close()
    print(f"{handled} prescription version(s) handled")
    return 0


async def status(settings: Settings, database_url: str) -> str:
    pool = await db.create_pool(database_url, min_size=1, max_size=1, pooler=settings.db_pooler)
    try:
        row = await pool.fetchrow(
            """SELECT count(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL) AS pending,
                      count(*) FILTER (WHERE sent_at IS NOT NULL) AS sent,
                      count(*) FILTER (WHERE failed_at IS NOT NULL) AS failed
               FROM prescription_exports"""
        )
        failed = await pool.fetch(
            """SELECT code, version, attempts, last_error FROM prescription_exports
               WHERE failed_at IS NOT NULL ORDER BY failed_at DESC LIMIT 20"""
        )
    finally:
        await pool.close()
    assert row is not None
    lines = [f"pending {row['pending']}, sent {row['sent']}, failed {row['failed']}"]
    lines += [f"failed {r['code']} v{r['version']} after {r['attempts']}: {r['last_error']}" for r in failed]
    return "\n".join(lines)
