"""bench/feed_write: what registering a sync-feed writer (migration 0011) costs a write.

    python -m bench.feed_write [--rows 3000] [--rounds 4]

Inside the server (a DO loop, one committed one-row record-entry transaction per iteration,
synchronous_commit off so the WAL flush does not drown the difference), alternately with the
feed-position trigger and with 0009's plain xid default. Prints microseconds per transaction,
and the cost of one horizon read (`sync_feed_horizon()`, once per sync pull).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import cast

import asyncpg

from bench.common import Row, bench_environment
from infra.migrate import migrate

_LOOP = """DO $$ BEGIN FOR i IN 1..{rows} LOOP
  INSERT INTO record_entries (id, version, patient_id, kind, status, body, effective_at,
                              author_user_id, author_role, channel)
  VALUES (gen_random_uuid(), 1, '{patient}', 'note', 'current', '{{"text": "x", "category": "progress"}}',
          now(), '{user}', 'chw', 'app');
  COMMIT; END LOOP; END $$"""


async def _per_transaction_us(conn: asyncpg.Connection, sql: str, rows: int) -> float:
    started = time.perf_counter()
    await conn.execute(sql)
    return (time.perf_counter() - started) / rows * 1e6


async def run(database_url: str, rows: int, rounds: int) -> dict[str, object]:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        facility, user, patient = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        await conn.execute(
            "INSERT INTO facilities (id, name, kind, timezone, country) VALUES ($1, 'b', 'health_post', 'UTC', 'KH')",
            facility,
        )
        await conn.execute("INSERT INTO users (id, phone) VALUES ($1, '+85512999999')", user)
        await conn.execute(
            "INSERT INTO patients (id, home_facility_id, names, search_text) VALUES ($1, $2, '[]', '')",
            patient,
            facility,
        )
        sql = _LOOP.format(rows=rows, patient=patient, user=user)
        await conn.execute("SET synchronous_commit = off")
        plain: list[float] = []
        registered: list[float] = []
        for _ in range(rounds):
            await conn.execute("ALTER TABLE record_entries DISABLE TRIGGER record_entries_feed_position")
            await conn.execute(
                "ALTER TABLE record_entries ALTER COLUMN tx SET DEFAULT pg_current_xact_id()::text::bigint"
            )
            plain.append(await _per_transaction_us(conn, sql, rows))
            await conn.execute("ALTER TABLE record_entries ALTER COLUMN tx DROP DEFAULT")
            await conn.execute("ALTER TABLE record_entries ENABLE TRIGGER record_entries_feed_position")
            registered.append(await _per_transaction_us(conn, sql, rows))
        started = time.perf_counter()
        for _ in range(1000):
            await conn.fetchval("SELECT sync_feed_horizon()")
        horizon_us = (time.perf_counter() - started) / 1000 * 1e6
    finally:
        await conn.close()
    return {
        "xid_default_us_per_tx": [round(x, 1) for x in plain],
        "registered_writer_us_per_tx": [round(x, 1) for x in registered],
        "best_of_each_us": [round(min(plain), 1), round(min(registered), 1)],
        "horizon_read_us_round_trip": round(horizon_us, 1),
    }


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    with bench_environment("bench-feed-write") as env:
        result = asyncio.run(run(env.database_url, args.rows, args.rounds))
    print(json.dumps(result, indent=2))
    plain, registered = cast("list[float]", result["best_of_each_us"])
    return [
        Row(
            "feed_write",
            "record-entry write with the feed trigger",
            registered,
            "µs/tx",
            plain,
            "same write, plain xid default",
            False,
        )
    ]


def rows(quick: bool = False) -> list[Row]:
    """The figures for `make bench`'s table (bench.common.Row)."""
    return main(["--rows", "300", "--rounds", "1"] if quick else [])


if __name__ == "__main__":
    main()
