"""bench/booking: bookings per second and latency through real server processes, beside pgbench.

    python -m bench.booking [--clients 64] [--seconds 15] [--workers 2]

Starts `spean serve` on a scratch database (on DATABASE_URL's server, or an embedded one),
seeds a network with free slots, fires bookings from a separate load-generator process, and runs
pgbench's TPC-B on the same database in the same run, printing both and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

from bench.common import base_env, bench_environment, percentile, pgbench_tps, spean_server
from domain.identity import users
from domain.identity.tokens import issue_access_token
from infra.embedded import free_port
from infra.migrate import migrate

TZ = "Asia/Phnom_Penh"
SLOT_MINUTES = 5
SLOTS_PER_DAY = 286  # 00:00 to 23:50 starts in a 00:00-23:55 rule


async def seed(database_url: str, practitioners: int, secret: str) -> tuple[str, list[tuple[str, str]]]:
    """A reference centre with `practitioners` specialists open all week, one patient each, and a CHW."""
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    try:
        centre, post = uuid.uuid4(), uuid.uuid4()
        await conn.executemany(
            "INSERT INTO facilities (id, name, kind, timezone, country) VALUES ($1, $2, $3, $4, 'KH')",
            [(centre, "Bench centre", "reference_centre", TZ), (post, "Bench post", "health_post", TZ)],
        )
        chw = await users.ensure_user(conn, "+85512800000")
        await users.grant_role(conn, chw, post, "chw")
        pairs: list[tuple[str, str]] = []
        today = datetime.now(UTC).date()
        for i in range(practitioners):
            user_id = await users.ensure_user(conn, f"+855129{i:05d}")
            await users.grant_role(conn, user_id, centre, "specialist")
            practitioner_id, patient_id = uuid.uuid4(), uuid.uuid4()
            await conn.execute(
                "INSERT INTO practitioners (id, user_id, name) VALUES ($1, $2, $3)", practitioner_id, user_id, f"Dr {i}"
            )
            await conn.executemany(
                """INSERT INTO availability_rules (id, practitioner_id, facility_id, weekday, start_local,
                                                   end_local, slot_minutes, valid_from)
                   VALUES ($1, $2, $3, $4, '00:00', '23:55', $5, $6)""",
                [(uuid.uuid4(), practitioner_id, centre, day, SLOT_MINUTES, today) for day in range(1, 8)],
            )
            await conn.execute(
                """INSERT INTO patients (id, names, search_text, home_facility_id)
                   VALUES ($1, '[{"text": "Bench"}]', 'bench', $2)""",
                patient_id,
                post,
            )
            pairs.append((str(practitioner_id), str(patient_id)))
        principal = await users.load_principal(conn, chw)
    finally:
        await conn.close()
    return issue_access_token(principal, secret, 3600), pairs


def plan(pairs: list[tuple[str, str]], count: int, path: Path) -> None:
    """Booking i goes to pair i mod P at that pair's next free slot: no two requests collide."""
    zone = ZoneInfo(TZ)
    tomorrow = (datetime.now(UTC).astimezone(zone) + timedelta(days=1)).date()
    midnight = datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=zone)
    with path.open("wb") as out:
        for i in range(count):
            practitioner, patient = pairs[i % len(pairs)]
            j = i // len(pairs)
            day, slot = divmod(j, SLOTS_PER_DAY)
            start = (midnight + timedelta(days=day)).astimezone(UTC) + timedelta(minutes=SLOT_MINUTES * slot)
            body = {
                "patient_id": patient,
                "practitioner_id": practitioner,
                "start": start.isoformat().replace("+00:00", "Z"),
                "mode": "video",
            }
            out.write(json.dumps(body, separators=(",", ":")).encode() + b"\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--practitioners", type=int, default=200)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument(
        "--pool", type=int, default=None, help="database connections per worker (default: enough for every client)"
    )
    parser.add_argument("--idempotency-keys", action="store_true", help="send an Idempotency-Key with each booking")
    args = parser.parse_args()

    with bench_environment("spean-bench-booking") as bench:
        token, pairs = asyncio.run(seed(bench.database_url, args.practitioners, bench.secret))
        budget = int(args.seconds * 6000) + 10_000  # more bookings than any run can use
        plan(pairs, budget, bench.folder / "plan.jsonl")
        port = free_port()
        env = {
            **base_env(bench.database_url, bench.redis_url, bench.folder / "data", bench.secret),
            "SPEAN_AUTO_MIGRATE": "false",
            "SPEAN_DB_POOL_MAX": str(args.pool or args.clients // max(args.workers, 1) + 4),
        }
        command = [
            sys.executable,
            "-m",
            "bench.booking.load",
            "--port",
            str(port),
            "--clients",
            str(args.clients),
            "--seconds",
            str(args.seconds),
            "--plan",
            str(bench.folder / "plan.jsonl"),
            "--token",
            token,
        ]
        if args.idempotency_keys:
            command.append("--idempotency-keys")
        with spean_server(env, port, args.workers, bench.folder / "server.log"):
            load = subprocess.run(command, check=True, capture_output=True, text=True)
        result = json.loads(load.stdout)
        tps = pgbench_tps(bench.database_url, clients=16, seconds=args.pgbench_seconds)

    latencies = result["latencies"]
    booked = result["statuses"].get("201", 0)
    rate = booked / result["elapsed"]
    print(
        f"bench/booking  workers={args.workers} clients={args.clients} seconds={args.seconds:g} cores={os.cpu_count()}"
    )
    print(f"  bookings/s      {rate:10.0f}   ({booked} booked; statuses {result['statuses']})")
    print(f"  latency p50     {percentile(latencies, 50) * 1000:10.1f} ms")
    print(f"  latency p99     {percentile(latencies, 99) * 1000:10.1f} ms")
    print(f"  pgbench TPC-B   {tps:10.0f} tps  (16 clients, same server and database)")
    print(f"  ratio           {rate / tps:10.2f}   bookings/s per pgbench tps")


if __name__ == "__main__":
    main()
