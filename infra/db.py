"""The asyncpg pool: made at start-up, closed at shutdown, JSON codecs on every connection."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

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


async def create_pool(
    dsn: str, *, min_size: int, max_size: int, connect_now: bool = True, pooler: Pooler = "none"
) -> Pool:
    """`connect_now=False` opens no connection yet (PostgreSQL may be away): connections are made
    on first use and kept while in use (no floor of `min_size`). `pooler`: what sits in front of
    PostgreSQL (infra.pooling: a transaction pooler gets no named prepared statements)."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size if connect_now else 0,
        max_size=max_size,
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
    return pool
