"""Running the worker: inside the API process (development) or as `spean worker`."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog

from infra import db
from infra.config import Settings
from notifications.deliver import Worker
from notifications.push import LogPushSender, PushSender
from sms.sender import SmsSender

log = structlog.get_logger("spean.notifications")


def push_sender(settings: Settings) -> PushSender:
    if settings.push_via == "fcm":
        from notifications.fcm import FcmPushSender  # the SDK loads only where it is used

        return FcmPushSender(settings.google_application_credentials, settings.fcm_api_base_url)
    return LogPushSender()


@asynccontextmanager
async def running(pool: db.Pool, settings: Settings, sms: SmsSender) -> AsyncIterator[Worker]:
    """A worker loop beside whatever runs in the block; stopped (its batch finished) on exit."""
    worker = Worker(pool, push_sender(settings), sms, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task


async def serve(settings: Settings, database_url: str, sms: SmsSender) -> None:
    """`spean worker`: deliver until SIGTERM or SIGINT, then finish the batch in hand and stop."""
    pool = await db.create_pool(database_url, min_size=1, max_size=4)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        worker = Worker(pool, push_sender(settings), sms, settings)
        print(f"worker {worker.id} ready", flush=True)
        await worker.run(stop)
    finally:
        await pool.close()
