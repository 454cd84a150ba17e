"""`spean worker`: the notification worker (notifications.runner) with the bulk export runner
(api.fhir.bulk.runner) beside it, on a pool of its own. Stopping the worker stops an export
mid-way; its lease runs out and the next worker starts it again."""

from __future__ import annotations

import asyncio

from api.fhir.bulk.runner import ExportRunner
from infra import db
from infra.background import in_background
from infra.config import Settings
from infra.storage import DiskBlobStore
from notifications import runner
from sms.sender import SmsSender


async def serve(settings: Settings, database_url: str, redis_url: str, sms_sender: SmsSender) -> None:

    pool = await db.create_pool(database_url, min_size=1, max_size=3, pooler=settings.db_pooler)
    exports = ExportRunner(pool, DiskBlobStore(settings.data_dir / "attachments"), settings)
    try:
        async with in_background(exports.run(asyncio.Event())):
            await runner.serve(settings, database_url, redis_url, sms_sender)
    finally:
        await pool.close()
