"""Reaching PostgreSQL directly or through a pooler (PgBouncer), safely either way.

asyncpg prepares every statement under a name (`__asyncpg_stmt_N__`, N counted per process) and
keeps it on its connection. A pooler in **transaction** mode hands each transaction whichever
server connection is free, so a name prepared on one is missing on the next ("does not exist"),
already taken there ("already exists"), or, worst, names another process's statement with the
same N: a statement run with someone else's SQL. So with SPEAN_DB_POOLER=transaction nothing is
prepared under a name: asyncpg's statement cache is off (statement_cache_size=0) and it uses the
unnamed statement, whose Parse, Bind and Execute travel before one Sync, inside one transaction of
the pooler. Nothing else keeps session state on these connections: locks are transaction-scoped
(pg_advisory_xact_lock), settings are `set_config(..., true)`, there are no cursors or temporary
tables; LISTEN, which needs a session, goes elsewhere (infra.config Settings.listen_url). PgBouncer
1.21+ can track named statements itself (max_prepared_statements); Debian 12 ships 1.18, and the
unnamed statement works with every version and every pooler.

`none` and `session` keep the statement cache: each statement is parsed once per connection. As
a guard, a `none` connection that turns out to go through a pooler is refused, so a forgotten
setting is an error at start-up rather than a data risk: a pooler announces its own process id
to the client (BackendKeyData), never the server's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncpg

from infra.config import Pooler

__all__ = ["PoolerMismatch", "check_direct", "connect", "initializer", "statement_cache_size"]

STATEMENT_CACHE = 256  # statements kept prepared per connection when the pooler allows it


class PoolerMismatch(Exception):
    """SPEAN_DB_POOLER says PostgreSQL is reached directly, but a pooler answered."""


def statement_cache_size(pooler: Pooler) -> int:
    """asyncpg's statement cache: off (the unnamed statement only) behind a transaction pooler."""
    return 0 if pooler == "transaction" else STATEMENT_CACHE


async def check_direct(conn: Any) -> None:
    """Refuse a connection that a pooler answered (see the module's docstring)."""
    backend = await conn.fetchval("SELECT pg_backend_pid()")
    if backend != conn.get_server_pid():
        raise PoolerMismatch(
            "PostgreSQL is reached through a connection pooler (the process id it announced is not the "
            "server's): set SPEAN_DB_POOLER=transaction (or session, if it pools by session)"
        )


def initializer(
    pooler: Pooler, init: Callable[[Any], Awaitable[None]] | None = None
) -> Callable[[Any], Coroutine[Any, Any, None]]:
    """A pool's `init`: the guard for `none`, then `init`."""

    async def initialise(conn: Any) -> None:
        if pooler == "none":
            await check_direct(conn)
        if init is not None:
            await init(conn)

    return initialise


async def connect(dsn: str, pooler: Pooler = "none", **options: Any) -> asyncpg.Connection[Any]:
    """A connection of its own (the CLI, migrations) under the pooler's rules and the guard."""
    conn: asyncpg.Connection[Any] = await asyncpg.connect(
        dsn, statement_cache_size=statement_cache_size(pooler), **options
    )
    try:
        await initializer(pooler)(conn)
    except BaseException:
        conn.terminate()
        raise
    return conn
