"""The load generator, run as its own process: C keep-alive clients posting bookings for D seconds.

Reads the plan (one JSON body per line) from a file, prints one JSON line of results.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import time
from pathlib import Path

from bench.common import build_post, http_request


async def run(
    port: int, clients: int, seconds: float, warmup: float, bodies: list[bytes], token: str, idempotency_keys: bool
) -> dict[str, object]:
    cursor = itertools.count()
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    measure_from = started + warmup
    stop_at = measure_from + seconds
    headers = {"Authorization": f"Bearer {token}"}
    # Tells the bench when the measured window opens (this process takes a while to start).
    asyncio.get_running_loop().call_later(warmup, lambda: print("measuring", file=sys.stderr, flush=True))

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                now = time.perf_counter()
                if now >= stop_at:
                    return
                index = next(cursor)
                if index >= len(bodies):
                    return
                extra = {"Idempotency-Key": f"bench-{index}"} if idempotency_keys else {}
                raw = build_post("/v1/appointments", bodies[index], {**headers, **extra})
                sent = time.perf_counter()
                status, _ = await http_request(reader, writer, raw)
                done = time.perf_counter()
                if sent >= measure_from and done <= stop_at:
                    latencies.append(done - sent)
                    statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = min(time.perf_counter(), stop_at) - measure_from
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed, "used": next(cursor)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--idempotency-keys", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    bodies = args.plan.read_bytes().splitlines()
    result = asyncio.run(
        run(args.port, args.clients, args.seconds, args.warmup, bodies, args.token, args.idempotency_keys)
    )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
