"""The asyncpg pool: made at start-up, closed at shutdown, JSON codecs on every connection."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, TypeVar, cast

import asyncpg
import msgspec
from asyncpg.pool import PoolConnectionProxy

from infra import pooling
from infra.config import Pooler

# While PostgreSQL is away asyncpg's pool logs a traceback at each try to restore its floor of
# connections; infra.outage says once that PostgreSQL is away, and once that it is back.
logging.getLogger("asyncpg.pool").setLevel(logging.ERROR)

# A connection of its own or one borrowed from the pool: domain code accepts either.
# (asyncpg's classes are generic only in its type stubs, not at run time.)
if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    Pool: TypeAlias = asyncpg.Pool[asyncpg.Record]
else:
    Connection = asyncpg.Connection  # a single class: Litestar's signature model refuses unions of classes
    Pool = asyncpg.Pool


T = TypeVar("T")
# A transaction aborted by these lost a race that it may win if run again whole.
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


async def in_transaction(pool: Pool, work: Callable[[Connection], Awaitable[T]], *, attempts: int = 4) -> T:
    """`work` in a transaction of its own, run again whole (a few times at most, after a short
    random pause) if PostgreSQL aborts it as the loser of a deadlock or serialization failure.

    For work outside an HTTP request (the WebSocket signalling); requests get the same from
    api.transaction."""
    for attempt in range(1, attempts + 1):
        try:
            async with pool.acquire() as conn, conn.transaction():
                return await work(conn)
        except RETRYABLE:
            if attempt == attempts:
                raise
            await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 - jitter, not secrecy
    raise AssertionError("unreachable")


_PARAMETER = re.compile(r"\$(\d+)")


@functools.lru_cache(maxsize=64)
def _numbered_after(sql: str, offset: int) -> str:
    """`sql` with its parameters $1, $2... renumbered to follow `offset` others."""
    return _PARAMETER.sub(lambda m: f"${int(m[1]) + offset}", sql)


class Statement(NamedTuple):
    """One change made durable by ONE statement: data-modifying CTEs (`name AS (...)`, comma-
    separated) that each write once per row of a relation named `gate`, which whoever runs the
    statement supplies, and their arguments ($1, $2, ... in `ctes`).

    The gate is one row ("go") or none ("write nothing"). Run at once, it is one row. Run as the
    last statement of an HTTP request (api.transaction), it claims the request's Idempotency-Key
    with the answer already rendered: the change and its key commit together, in the statement's
    own implicit transaction, and a key found taken writes nothing at all."""

    ctes: str
    args: tuple[object, ...]

    async def run(self, conn: Connection, gate: str = "SELECT", gate_args: Sequence[object] = ()) -> bool:
        """Run it with `gate` (SQL numbering its own parameters from $1); True if the gate let
        it write. A constraint or a lost race raises as any statement does."""
        gate = _numbered_after(gate, len(self.args))
        return bool(
            await conn.fetchval(
                f"WITH gate AS ({gate}), {self.ctes} SELECT EXISTS (SELECT FROM gate)", *self.args, *gate_args
            )
        )


async def init_connection(conn: Connection) -> None:
    for kind in ("json", "jsonb"):
        await conn.set_type_codec(kind, encoder=_encode_json, decoder=msgspec.json.decode, schema="pg_catalog")


def _encode_json(value: Any) -> str:
    return msgspec.json.encode(value).decode()


async def _keep_session(conn: Connection) -> None:
    """Skip asyncpg's default reset query on release (a round trip per request).

    Safe because pooled connections only ever run inside transactions and nothing sets session
    state on them (no SET, LISTEN, session advisory locks or open cursors); migrations use a
    connection of their own.
    """


class FairPool(asyncpg.Pool):
    """asyncpg's pool, its connections handed out in order of asking.

    asyncpg queues those waiting for a connection on an asyncio.Queue. A released connection
    wakes the first waiter, but any request that asks in between (a burst of requests arriving
    in one turn of the event loop) takes it first, and the woken waiter queues again at the back:
    under load a few requests lose their turn over and over. bench/booking (64 clients, 2 workers,
    10 connections each) had p99 4-6x its p50; 32 connections each, no waiting, 2-2.6x.

    Here a semaphore of the pool's size, which is FIFO and hands a released turn to the first
    waiter, admits at most that many to asyncpg's queue at once. (It overrides asyncpg's private
    `_acquire`, with its `release`: asyncpg is pinned, and tests/infra/test_db.py checks the order.)

    Every request releases a connection: asyncpg runs each release in a task of its own
    (`asyncio.shield`), so that a cancellation cannot cut it short. A connection released idle
    (no transaction, not cancelling, not due to be closed) is released without ever waiting,
    since the reset here (`_keep_session`) sends nothing; with nothing to cut short it is
    released in place, without the task, the event loop turn it waits for and the bookkeeping of
    both (~5 % of a booking's CPU). Anything else goes asyncpg's shielded way.
    """

    def __init__(self, *args: Any, max_size: int, **kwargs: Any) -> None:
        super().__init__(*args, max_size=max_size, **kwargs)
        self._turns = asyncio.Semaphore(max_size)
        # The connections (proxies) holding a turn, by id, kept alive until released. Not read off
        # the proxy: one whose connection was terminated is already detached when released.
        self._holding: dict[int, object] = {}

    async def _acquire(self, timeout: float | None) -> Any:  # noqa: ASYNC109 - asyncpg's signature
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        if timeout is None:
            await self._turns.acquire()
        else:
            await asyncio.wait_for(self._turns.acquire(), timeout)
        try:
            left = None if deadline is None else max(deadline - asyncio.get_running_loop().time(), 0.0)
            connection = await super()._acquire(left)  # type: ignore[misc]
        except BaseException:
            self._turns.release()
            raise
        self._holding[id(connection)] = connection
        return connection

    async def release(self, connection: Any, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            holder = self._idle_holder(connection)
            if holder is None:
                await super().release(connection, timeout=timeout)
            else:
                connection._con._on_release()  # what asyncpg's release does before its task
                await holder.release(holder._timeout if timeout is None else timeout)
        finally:
            if self._holding.pop(id(connection), None) is not None:  # released twice: one turn
                self._turns.release()

    def _idle_holder(self, connection: Any) -> Any:
        """The pool's holder of `connection` if releasing it cannot wait on anything, else None."""
        pool: Any = self
        holder: Any = getattr(connection, "_holder", None)
        con: Any = getattr(connection, "_con", None)
        if type(connection) is not PoolConnectionProxy or pool._reset is not _keep_session:
            return None
        if holder._pool is not self or con is None or con.is_closed() or con._top_xact is not None:
            return None
        protocol = con._protocol
        if protocol.is_in_transaction() or protocol._is_cancelling():
            return None
        if protocol.queries_count >= holder._max_queries or holder._generation != pool._generation:
            return None  # to be closed: asyncpg's way
        return holder


async def create_pool(
    dsn: str, *, min_size: int, max_size: int, connect_now: bool = True, pooler: Pooler = "none"
) -> Pool:
    """`connect_now=False` opens no connection yet (PostgreSQL may be away): connections are made
    on first use and kept while in use (no floor of `min_size`). `pooler`: what sits in front of
    PostgreSQL (infra.pooling: a transaction pooler gets no named prepared statements)."""
    pool = await FairPool(
        dsn,
        min_size=min_size if connect_now else 0,
        max_size=max_size,
        max_queries=50_000,  # asyncpg's defaults, which its create_pool passes
        max_inactive_connection_lifetime=300.0,
        loop=None,
        connection_class=asyncpg.Connection,
        record_class=asyncpg.Record,
        init=pooling.initializer(pooler, init_connection),
        reset=_keep_session,
        # Statements are prepared per connection (unless a transaction pooler forbids it); a
        # bounded cache keeps memory flat.
        statement_cache_size=pooling.statement_cache_size(pooler),
        command_timeout=30,
        timeout=5,  # to connect: a server that does not answer is away, and requests get 503 soon
        server_settings={"application_name": "spean", "timezone": "UTC"},
    )
    assert pool is not None
    return cast("Pool", pool)
