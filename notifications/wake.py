"""Waking the worker when an outbox row commits, instead of at its next poll.

Migration 0015 has PostgreSQL NOTIFY `spean_outbox` from every transaction that writes outbox
rows, at its commit. The worker LISTENs on a connection of its own (never a pooled one: the pool
skips the reset that would UNLISTEN it). Listening is an optimisation only: polling every
SPEAN_WORKER_POLL_MS stays the guarantee, so a lost connection, a missed notification or a
PostgreSQL restart costs at most one poll interval, while the listener reconnects with a growing
pause. A PgBouncer in transaction mode does not carry LISTEN: point SPEAN_WORKER_LISTEN_URL at
PostgreSQL itself (or at a session-mode pool), or turn listening off (SPEAN_WORKER_LISTEN=false).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import structlog

from infra.outage import Backoff

log = structlog.get_logger("spean.notifications")

CHANNEL = "spean_outbox"
CHECK_S = 30.0  # a silent network loss is noticed by a ping this often
_PING_TIMEOUT_S = 5.0


class Wake:
    """An event set on every outbox commit while listening; `listening` says whether it is."""

    def __init__(self, dsn: str) -> None:
        self.event = asyncio.Event()
        self.listening = False
        self._dsn = dsn
        self._backoff = Backoff(first_s=0.5, cap_s=30.0)
        self._quiet = False

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until `stop` is set, reconnecting after any loss."""
        while not stop.is_set():
            try:
                await self._listen(stop)
            except Exception as exc:  # whatever broke the connection: poll meanwhile, try again
                if not self._quiet:  # one log line per loss, not one per reconnection attempt
                    log.warning("outbox_listen_lost", error=f"{type(exc).__name__}: {exc}"[:200])
                self._quiet = True
            finally:
                self.listening = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._backoff.next())

    async def _listen(self, stop: asyncio.Event) -> None:
        conn = await asyncpg.connect(self._dsn, timeout=5, server_settings={"application_name": "spean-listen"})
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _c: lost.set())
            await conn.add_listener(CHANNEL, self._heard)
            self.listening = True
            self._backoff.reset()
            self._quiet = False
            log.info("outbox_listening", channel=CHANNEL)
            self.event.set()  # anything committed while we were not listening is looked for now
            while not stop.is_set() and not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(first_of(stop, lost), CHECK_S)
                if not stop.is_set() and not lost.is_set():
                    await conn.fetchval("SELECT 1", timeout=_PING_TIMEOUT_S)
            if lost.is_set() and not stop.is_set():
                raise ConnectionError("the listening connection closed")
        finally:
            conn.terminate() if lost.is_set() else await _close(conn)

    def _heard(self, *_: Any) -> None:
        self.event.set()


async def first_of(*events: asyncio.Event) -> None:
    """Return once any of `events` is set."""
    waits = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def _close(conn: asyncpg.Connection[Any]) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except Exception:
        conn.terminate()
