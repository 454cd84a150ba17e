"""The pool hands out connections in order of asking (infra.db.FairPool)."""

from __future__ import annotations

import asyncio

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
