"""bench/notifications: pushes delivered per second by one and by two `spean worker` processes
through firebase-admin to the local FCM server (tests/fcm_server.py), commit → FCM request latency
p50/p99, and beside them the rate at which the same server accepts a bare HTTP client's requests.

    python -m bench.notifications [--pushes 4000] [--recipients 500]

Measures delivery (claim, send_each_async, record): the rows are committed ready to send, as the
planner leaves them. The local server is a threaded stdlib one: the bare-client rate bounds what
any sender can reach against it, so read the worker's figures beside that one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid

import asyncpg
import httpx

from bench.common import BenchEnvironment, Row, bench_environment, percentile
from infra.db import init_connection
from infra.migrate import migrate
from tests.fcm_server import FcmServer


async def _seed(database_url: str, recipients: int) -> list[uuid.UUID]:
    conn = await asyncpg.connect(database_url)
    try:
        users = [uuid.uuid4() for _ in range(recipients)]
        await conn.executemany(
            "INSERT INTO users (id, phone) VALUES ($1, $2)", [(u, f"+8559{i:08d}") for i, u in enumerate(users)]
        )
        await conn.executemany(
            "INSERT INTO devices (user_id, token, platform) VALUES ($1, $2, 'android')",
            [(u, f"bench-{u}") for u in users],
        )
        return users
    finally:
        await conn.close()


async def _enqueue(database_url: str, users: list[uuid.UUID], count: int, run: str) -> float:
    """Commit `count` pushes ready to send; the commit's wall-clock time."""
    conn = await asyncpg.connect(database_url)
    try:
        await init_connection(conn)
        async with conn.transaction():
            await conn.executemany(
                """INSERT INTO notifications (key, kind, priority, user_id, language, title, body, data, channel)
                   VALUES ($1, 'bench', 'normal', $2, 'en', 'Spean', 'Your consultation is booked.', $3, 'push')""",
                [(f"{run}:{i}", users[i % len(users)], {"kind": "bench"}) for i in range(count)],
            )
        return time.time()
    finally:
        await conn.close()


def _workers(n: int, env: dict[str, str]) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen([sys.executable, "-m", "spean.cli", "worker"], env=env, stdout=subprocess.DEVNULL)
        for _ in range(n)
    ]


async def _drain(fcm: FcmServer, expected: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while len(fcm.arrivals) < expected:
        assert time.monotonic() < deadline, f"only {len(fcm.arrivals)} of {expected} pushes arrived"
        await asyncio.sleep(0.02)


async def _raw_rate(fcm: FcmServer, count: int) -> float:
    body = {"message": {"token": "raw", "data": {"kind": "bench"}, "notification": {"title": "t", "body": "b"}}}
    headers = {"Authorization": "Bearer local-fcm-access-token"}
    limit = asyncio.Semaphore(100)
    async with httpx.AsyncClient(base_url=fcm.base_url, limits=httpx.Limits(max_connections=100)) as client:

        async def one() -> None:
            async with limit:
                response = await client.post("/v1/projects/bench/messages:send", json=body, headers=headers)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(count)))
        return count / (time.perf_counter() - started)


def main(pushes: int, recipients: int, worker_counts: tuple[int, ...] = (1, 2)) -> list[Row]:
    with bench_environment("spean-bench-notify") as env:
        return asyncio.run(_run(env, pushes, recipients, worker_counts))


def rows(quick: bool = False) -> list[Row]:
    """The figures for `make bench`'s table (bench.common.Row)."""
    return main(100, 20, (1,)) if quick else main(4000, 500)


async def _run(env: BenchEnvironment, pushes: int, recipients: int, worker_counts: tuple[int, ...]) -> list[Row]:
    found: list[Row] = []
    if True:
        await migrate(env.database_url)
        users = await _seed(env.database_url, recipients)
        fcm = FcmServer().start()
        credentials = fcm.service_account(env.folder)
        worker_env = {
            **os.environ,
            "DATABASE_URL": env.database_url,
            "REDIS_URL": env.redis_url,
            "SPEAN_DATA_DIR": str(env.folder),
            "SPEAN_SECRET_KEY": env.secret,
            "SPEAN_ENV": "test",
            "SPEAN_AUTO_MIGRATE": "false",
            "SPEAN_LOG_LEVEL": "warning",
            "SPEAN_PUSH_SENDER": "fcm",
            "GOOGLE_APPLICATION_CREDENTIALS": str(credentials),
            "FCM_API_BASE_URL": fcm.base_url,
            "SPEAN_WORKER_POLL_MS": "50",
        }
        try:
            for n in worker_counts:
                procs = _workers(n, worker_env)
                await asyncio.sleep(3)  # started, connected, token fetched on first send
                fcm.received.clear()
                fcm.arrivals.clear()
                committed = await _enqueue(env.database_url, users, pushes, f"w{n}")
                await _drain(fcm, pushes)
                latencies = [a - committed for a in fcm.arrivals]
                rate = pushes / (max(fcm.arrivals) - committed)
                print(
                    f"{n} worker(s): {pushes} pushes, {rate:,.0f} pushes/s, commit → FCM request "
                    f"p50 {percentile(latencies, 50) * 1000:.0f} ms, p99 {percentile(latencies, 99) * 1000:.0f} ms"
                    " (all committed at once: p99 is the time to drain the batch)"
                )
                found.append(Row("notifications", f"pushes/s, {n} worker(s)", rate, "/s"))
                for proc in procs:
                    proc.send_signal(signal.SIGTERM)
                for proc in procs:
                    proc.wait(30)
            bare = await _raw_rate(fcm, pushes)
            print(f"bare HTTP client → same local FCM server: {bare:,.0f} requests/s")
        finally:
            fcm.stop()
    # The local FCM server's own ceiling, measured by a bare client in the same run.
    return [Row(r.bench, r.figure, r.value, r.unit, bare, "bare client → local FCM") for r in found]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pushes", type=int, default=4000)
    parser.add_argument("--recipients", type=int, default=500)
    args = parser.parse_args()
    main(args.pushes, args.recipients)
