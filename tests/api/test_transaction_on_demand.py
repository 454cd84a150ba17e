"""ON_DEMAND routes (FHIR searches): the request's transaction begins only when the handler asks,
and once begun is settled as any request's, committed at a normal end, rolled back otherwise."""

from __future__ import annotations

import asyncpg
import pytest

from api.transaction import _OnDemand


async def test_the_transaction_begins_only_when_asked(db: asyncpg.Pool) -> None:
    async with db.acquire() as conn:
        async with _OnDemand(conn) as settled:
            assert not conn.is_in_transaction()
        assert settled.transaction is None

        async def failing() -> None:
            async with _OnDemand(conn) as settled:
                await settled.begin()
                await settled.begin()  # once only
                assert conn.is_in_transaction()
                await conn.execute("CREATE TEMP TABLE on_demand_kept (x int)")
                raise RuntimeError("the handler failed")

        with pytest.raises(RuntimeError):
            await failing()
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT to_regclass('pg_temp.on_demand_kept')") is None  # rolled back

        async with _OnDemand(conn) as settled:
            await settled.begin()
            await conn.execute("CREATE TEMP TABLE on_demand_kept (x int)")
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT to_regclass('pg_temp.on_demand_kept')") is not None  # committed
        await conn.execute("DROP TABLE pg_temp.on_demand_kept")
