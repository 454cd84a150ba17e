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
from sms.outbox import SmsOutbox, policy_from
from sms.sender import SmsSender

log = structlog.get_logger("spean.notifications")


def push_sender(settings: Settings) -> PushSender:
    if settings.push_via == "fcm":
        from notifications.fcm import FcmPushSender  # the SDK loads only where it is used

        return FcmPushSender(settings.google_application_credentials, settings.fcm_api_base_url)
    return LogPushSender()


def listen_dsn(settings: Settings, database_url: str) -> str | None:
    """Where the worker LISTENs for outbox commits (notifications.wake), or None: poll only."""
    return (settings.listen_url or database_url) if settings.worker_listen else None


@asynccontextmanager
async def running(pool: db.Pool, settings: Settings, sms: SmsOutbox, database_url: str) -> AsyncIterator[Worker]:
    """A worker loop beside whatever runs in the block; stopped (its batch finished) on exit."""
    push = push_sender(settings)
    worker = Worker(pool, push, sms, settings, listen_dsn=listen_dsn(settings, database_url))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await task
        await push.aclose()


async def serve(settings: Settings, database_url: str, redis_url: str, sms_sender: SmsSender) -> None:
    """`spean worker`: deliver until SIGTERM or SIGINT, then finish the batch in hand and stop.
    It also runs the SMS ledger's sender loop, so SMS (its own fallbacks included) leave from here."""
    from infra import redis_client

    pool = await db.create_pool(database_url, min_size=1, max_size=4, pooler=settings.db_pooler)
    redis = redis_client.connect(redis_url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    policy = policy_from(
        settings.sms_countries, settings.sms_hourly_budget, settings.sms_max_attempts, settings.public_base_url
    )
    sms = SmsOutbox(pool, redis, sms_sender, policy)
    try:
        async with sms.running():
            worker = Worker(pool, push_sender(settings), sms, settings, listen_dsn=listen_dsn(settings, database_url))
            print(f"worker {worker.id} ready", flush=True)
            await worker.run(stop)
    finally:
        await sms_sender.aclose()
        await redis.aclose()
        await pool.close()
