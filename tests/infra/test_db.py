"""The pool hands out connections in order of asking (infra.db.FairPool)."""

from __future__ import annotations

import asyncio
from typing import Any

from infra.db import create_pool


async def _turns(k: int) -> None:
    for _ in range(k):
        await asyncio.sleep(0)


async def test_a_request_arriving_as_a_connection_is_released_waits_its_turn(database_url: str) -> None:
    """Three wait for the one connection; as it is released, a fourth asks. asyncpg's own queue
    gives it to the fourth when it asks in the turn of the event loop between the release and the
    first waiter's wake-up (here one turn after), and sends the first waiter to the back."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        for k in range(4):  # the newcomer asks 0 to 3 turns after the release began
            order: list[str] = []

            async def use(name: str, k: int = k, order: list[str] = order) -> None:
                if name == "newcomer":
                    await _turns(k)
                async with pool.acquire() as conn:
                    order.append(name)
                    await conn.fetchval("SELECT 1")

            held = await pool.acquire()
            waiting = [asyncio.create_task(use(name)) for name in ("first", "second", "third")]
            await _turns(5)  # each has asked (and waits)
            released = asyncio.create_task(pool.release(held))
            await asyncio.gather(released, use("newcomer"), *waiting)
            assert order == ["first", "second", "third", "newcomer"], f"newcomer {k} turns after: {order}"
    finally:
        await pool.close()


async def test_a_connection_terminated_in_use_gives_its_turn_back(database_url: str) -> None:
    """A connection found half-dead is terminated before it is released (api.transaction does so
    when PostgreSQL goes away): its turn must come back, or the pool runs dry for good."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        for _ in range(3):
            async with asyncio.timeout(30):  # a lost turn would wait here for ever
                async with pool.acquire() as conn:
                    conn.terminate()
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_an_idle_connection_is_released_without_a_task_of_its_own(database_url: str) -> None:
    """asyncpg releases in a shielded task; an idle connection's release cannot wait on anything
    and is made in place (a task and an event loop turn per request less). One released inside a
    transaction still goes asyncpg's way: rolled back, and usable again."""
    pool = await create_pool(database_url, min_size=1, max_size=1)
    loop = asyncio.get_running_loop()
    made: list[str] = []
    factory = loop.get_task_factory()

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        made.append(getattr(coro, "__qualname__", repr(coro)))
        return factory(loop, coro, **kwargs) if factory is not None else asyncio.Task(coro, loop=loop, **kwargs)

    try:
        loop.set_task_factory(counting)
        for _ in range(3):
            async with pool.acquire() as conn:
                await conn.fetchval("SELECT 1")
        assert made == []
        conn = await pool.acquire()
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMPORARY TABLE left_open (x int)")
        await pool.release(conn)
        assert made == ["PoolConnectionHolder.release"]
        async with pool.acquire() as conn:  # the one connection, its transaction rolled back
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
    finally:
        loop.set_task_factory(factory)
        await pool.close()
