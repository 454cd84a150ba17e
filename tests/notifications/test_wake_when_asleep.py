"""Outbox commits NOTIFY only while a listening worker says it sleeps (migration 0021): a NOTIFY
makes committing transactions queue one behind another, cluster-wide, and a busy worker needs
no wake-up call. Delivery itself never depended on it (tests/notifications/test_wake.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from infra.config import Settings
from tests.notifications.conftest import Worker, wait_for

MARKER = "marker"


class Heard:
    """What a LISTEN on the workers' channel hears, in commit order."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.payloads: list[str] = []

    def __call__(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.payloads.append(str(payload))

    async def after(self, db: asyncpg.Pool, sleeper: str | None) -> list[str]:
        """What one outbox write heard, committed while `sleeper` ("awake", "asleep", "overslept")
        or nobody said so. A marker NOTIFY committed after it closes the window: notifications
        arrive in commit order, so once the marker is heard nothing earlier can still come."""
        self.payloads.clear()
        worker = uuid.uuid4()
        async with db.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM outbox_sleepers")  # the suite's other workers are stopped
            if sleeper is not None:
                until = {"asleep": "now() + interval '1 minute'", "overslept": "now() - interval '1 second'"}[sleeper]
                await conn.execute(f"INSERT INTO outbox_sleepers (worker, until) VALUES ($1, {until})", worker)
            event = await conn.fetchval("INSERT INTO outbox (topic, payload) VALUES ('test.wake', '{}') RETURNING id")
            # Nobody must plan the test's event; the trigger has fired already.
            await conn.execute("DELETE FROM outbox WHERE id = $1", event)
            await conn.execute("DELETE FROM outbox_sleepers WHERE worker = $1", worker)
        await db.execute("SELECT pg_notify('spean_outbox', $1)", MARKER)
        await wait_for(lambda: MARKER in self.payloads, what="the marker")
        return [p for p in self.payloads if p != MARKER]


@pytest.fixture
async def heard(settings: Settings) -> AsyncIterator[Heard]:
    conn = await asyncpg.connect(settings.database_url)
    listener = Heard(conn)
    await conn.add_listener("spean_outbox", listener)
    try:
        yield listener
    finally:
        await conn.close()


async def test_a_commit_notifies_only_while_a_worker_sleeps(heard: Heard, db: asyncpg.Pool) -> None:
    assert await heard.after(db, None) == []
    assert await heard.after(db, "asleep") == [""]
    # A worker that died asleep stops being woken once its poll would have come.
    assert await heard.after(db, "overslept") == []


async def test_an_idle_listening_worker_says_it_sleeps_until_its_next_poll(
    db: asyncpg.Pool, start_worker: Callable[..., tuple[Worker, Path]]
) -> None:
    await db.execute("DELETE FROM outbox_sleepers")
    worker, log = start_worker(SPEAN_WORKER_POLL_MS="600000")
    await wait_for(lambda: "outbox_listening" in log.read_text(), what="the worker listening")
    until = await wait_for(
        lambda: db.fetchval("SELECT min(until - now()) FROM outbox_sleepers"), what="the worker saying it sleeps"
    )
    assert until.total_seconds() > 500  # its poll: ten minutes
    worker.terminate()
    await asyncio.to_thread(worker.wait, 10)
    # Stopped, it takes it back: commits stop notifying at once, not ten minutes later.
    assert await db.fetchval("SELECT count(*) FROM outbox_sleepers") == 0
