"""A streaming read replica (DATABASE_REPLICA_URL), and how far behind the primary it is.

Lag is measured as readers feel it: each check notes the primary's WAL position
(pg_current_wal_lsn) and the moment it read it; the replica's replay position
(pg_last_wal_replay_lsn) then says which of the noted positions it has replayed. Every write
committed on the primary before the newest replayed note is visible on the replica, so `lag_s` is
the time since that note was taken. An idle primary writes no WAL, so an idle replica is never
"behind"; a replica that stops replaying (or a check loop that stops running) falls behind by
the clock. A replica that fails a check, or that a request found dead, serves nothing until a
check succeeds again; one further behind than SPEAN_DB_REPLICA_MAX_LAG serves nothing until it
catches up. Either way its reads go to the primary (api.reads).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Literal

import asyncpg
import structlog
from prometheus_client import Gauge

from infra import outage, pooling
from infra.background import in_background
from infra.config import Pooler
from infra.db import Pool

log = structlog.get_logger(__name__)

LAG = Gauge(
    "spean_db_replica_lag_seconds",
    "How far the read replica is behind the primary: time since the newest primary write it has replayed",
    multiprocess_mode="livemax",
)
UP = Gauge("spean_db_replica_up", "1 while the read replica answers its checks, else 0", multiprocess_mode="livemin")

CHECK_EVERY_S = 0.5
_CHECK_TIMEOUT_S = 2.0
_NOTES = 1024  # positions awaiting replay; a replica behind by more keeps its oldest (its lag only grows)

Unusable = Literal["down", "lagging"]


def lsn(text: str) -> int:
    """PostgreSQL's `X/Y` WAL position as one integer (comparable)."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


class _Link:
    """A connection of the checks' own, made again after any failure: a pool busy with requests
    must not make the replica look down or behind."""

    def __init__(self, dsn: str, pooler: Pooler) -> None:
        self._dsn = dsn
        self._pooler = pooler
        self._conn: asyncpg.Connection[Any] | None = None

    async def fetchval(self, query: str) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = await pooling.connect(self._dsn, self._pooler, timeout=_CHECK_TIMEOUT_S)
        try:
            return await self._conn.fetchval(query, timeout=_CHECK_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None


class Replica:
    def __init__(self, pool: Pool, *, primary_dsn: str, replica_dsn: str, pooler: Pooler, max_lag_s: float) -> None:
        self.pool = pool
        self.max_lag_s = max_lag_s
        self._primary = _Link(primary_dsn, pooler)
        self._replica = _Link(replica_dsn, pooler)
        self._notes: deque[tuple[float, int]] = deque(maxlen=_NOTES)  # (monotonic time, primary LSN)
        self._visible_as_of: float | None = None  # the newest note the replica has replayed
        self._up = False
        self._said_down = False
        UP.set(0)
        LAG.set(math.inf)

    @property
    def lag_s(self) -> float:
        return math.inf if self._visible_as_of is None else max(0.0, time.monotonic() - self._visible_as_of)

    def unusable(self) -> Unusable | None:
        """Why reads must not go to the replica now, or None if they may."""
        if not self._up:
            return "down"
        return "lagging" if self.lag_s > self.max_lag_s else None

    def failed(self, error: BaseException) -> None:
        """A request met the replica dead: keep reads off it until a check succeeds."""
        self._down(error)

    async def check(self) -> None:
        """One round: note the primary's position, then see how far the replica has replayed."""
        with contextlib.suppress(Exception):  # the primary away: no new note, the lag grows
            # The time is taken before the position is read: every write committed by then is
            # at or below that position, so the note never claims more than the replica has.
            noted_at = time.monotonic()
            position = await self._primary.fetchval("SELECT pg_current_wal_lsn()::text")
            self._notes.append((noted_at, lsn(position)))
        try:
            replayed = await self._replica.fetchval(
                # NULL on a server that is not a standby: it is as fresh as the primary.
                "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END"
            )
        except Exception as exc:
            self._down(exc)
            return
        while self._notes and (replayed is None or self._notes[0][1] <= lsn(replayed)):
            self._visible_as_of = self._notes.popleft()[0]
        if not self._up:
            self._up = True
            UP.set(1)
            if self._said_down:
                self._said_down = False
                log.warning("replica_restored")
        LAG.set(self.lag_s)

    async def run_forever(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # never let the loop die: the replica would look fresh forever
                log.exception("replica_check_failed")
            await asyncio.sleep(CHECK_EVERY_S)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Checks in the background for as long as the block runs."""
        try:
            async with in_background(self.run_forever()):
                yield
        finally:
            self._primary.close()
            self._replica.close()

    def _down(self, error: BaseException) -> None:
        self._up = False
        UP.set(0)
        LAG.set(self.lag_s)
        if not self._said_down:  # one line per outage, as infra.outage does for the primary
            self._said_down = True
            kind = "unavailable" if outage.unavailable(error) is not None else "error"
            log.warning("replica_unavailable", kind=kind, error=f"{type(error).__name__}: {error}"[:200])
