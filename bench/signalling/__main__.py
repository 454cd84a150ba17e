"""bench/signalling: idle sockets' memory and relay latency, beside a raw echo server's latency.

    python -m bench.signalling [--rooms 10000] [--rate 2000] [--seconds 10] [--active 100]

Starts two `spean serve` processes (A and B) on a scratch database and a shared Redis, opens
`--rooms` rooms with two idle sockets each (specialist on A, patient on B) and reports server
memory per socket; then relays chat at `--rate` messages/s across `--active` rooms, once with
both peers on A (one worker) and once across A and B (through Redis pub/sub); then sends the same
load to a raw WebSocket echo server. Latencies are one way, sender to receiver, one process clock.
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
from typing import Any

import asyncpg
import psutil

from bench.common import Row, base_env, bench_environment, percentile, process_tree_cpu, spean_server
from domain.identity import users
from domain.identity.tokens import issue_access_token
from infra.embedded import free_port
from infra.migrate import migrate

PER_PAIR = 100  # rooms per (specialist, patient) pair: one-second appointments back to back


async def seed(database_url: str, rooms: int, secret: str) -> list[dict[str, str]]:
    await migrate(database_url)
    conn = await asyncpg.connect(database_url)
    plan: list[dict[str, str]] = []
    try:
        centre, post = uuid.uuid4(), uuid.uuid4()
        await conn.executemany(
            "INSERT INTO facilities (id, name, kind, timezone, country) VALUES ($1, $2, $3, 'Asia/Phnom_Penh', 'KH')",
            [(centre, "Bench centre", "reference_centre"), (post, "Bench post", "health_post")],
        )
        now = datetime.now(UTC) + timedelta(minutes=1)
        pairs = -(-rooms // PER_PAIR)
        for i in range(pairs):
            spec_user = await users.ensure_user(conn, f"+855127{i:05d}")
            await users.grant_role(conn, spec_user, centre, "specialist")
            practitioner, patient = uuid.uuid4(), uuid.uuid4()
            await conn.execute(
                "INSERT INTO practitioners (id, user_id, name) VALUES ($1, $2, 'Dr')", practitioner, spec_user
            )
            patient_user = await users.ensure_user(conn, f"+855126{i:05d}")
            await conn.execute(
                "INSERT INTO patients (id, names, search_text, home_facility_id) "
                "VALUES ($1, '[{\"text\": \"P\"}]', 'p', $2)",
                patient,
                post,
            )
            await conn.execute("INSERT INTO patient_accounts VALUES ($1, $2)", patient_user, patient)
            count = min(PER_PAIR, rooms - i * PER_PAIR)
            ids = [uuid.uuid4() for _ in range(count)]
            await conn.executemany(
                """INSERT INTO appointments (id, patient_id, practitioner_id, facility_id, start_at, end_at, status,
                                             mode, booked_by, channel)
                   VALUES ($1, $2, $3, $4, $5, $6, 'booked', 'video', $7, 'api')""",
                [
                    (
                        aid,
                        patient,
                        practitioner,
                        centre,
                        now + timedelta(seconds=k),
                        now + timedelta(seconds=k + 1),
                        spec_user,
                    )
                    for k, aid in enumerate(ids)
                ],
            )
            spec_token = issue_access_token(await users.load_principal(conn, spec_user), secret, 7200)
            patient_token = issue_access_token(await users.load_principal(conn, patient_user), secret, 7200)
            plan += [{"room": str(aid), "specialist": spec_token, "patient": patient_token} for aid in ids]
    finally:
        await conn.close()
    return plan


def rss(pid: int) -> int:
    process = psutil.Process(pid)
    return int(process.memory_info().rss + sum(c.memory_info().rss for c in process.children(recursive=True)))


def run_load(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.signalling.load", *args], check=True, capture_output=True, text=True
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def summary(name: str, latencies: list[float], seconds: float) -> str:
    return (
        f"  {name:<28} {len(latencies) / seconds:8.0f} msg/s   p50 {percentile(latencies, 50) * 1000:6.2f} ms"
        f"   p99 {percentile(latencies, 99) * 1000:6.2f} ms"
    )


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=100)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--ws", default="websockets-sansio", help="the servers' WebSocket implementation")
    args = parser.parse_args(argv)
    lines = []
    with bench_environment("spean-bench-rtc") as bench:
        tmp, database_url, redis_url, secret = bench.folder, bench.database_url, bench.redis_url, bench.secret
        plan = asyncio.run(seed(database_url, args.rooms + 2 * args.active, secret))
        idle_plan, relay_plan = plan[: args.rooms], plan[args.rooms :]
        env = {**base_env(database_url, redis_url, tmp / "data", secret), "SPEAN_AUTO_MIGRATE": "false"}
        port_a, port_b = free_port(), free_port()
        a, b = f"ws://127.0.0.1:{port_a}", f"ws://127.0.0.1:{port_b}"
        with (
            spean_server(env, port_a, 1, tmp / "a.log", ("--ws", args.ws)) as server_a,
            spean_server(env, port_b, 1, tmp / "b.log", ("--ws", args.ws)) as server_b,
        ):
            # Memory per idle socket is the growth from the first half of the rooms to all
            # of them: pools, caches and imports warmed up by the first half do not count.
            loaders, sizes = [], []
            half = max(1, len(idle_plan) // 2)
            for part in range(0, len(idle_plan), half):  # at most 10,000 sockets per load process
                chunk = idle_plan[part : part + half]
                (tmp / f"idle-{part}.json").write_text(json.dumps(chunk))
                loader = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "bench.signalling.load",
                        "idle",
                        "--plan",
                        str(tmp / f"idle-{part}.json"),
                        "--a",
                        a,
                        "--b",
                        b,
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert loader.stdout is not None
                assert loader.stdout.readline().strip() == "ready", "idle load failed"
                loaders.append(loader)
                sizes.append((2 * len(chunk), rss(server_a.pid) + rss(server_b.pid)))
            sockets = sum(n for n, _ in sizes)
            grown = sizes[-1][1] - sizes[0][1]
            per_socket = grown / max(sockets - sizes[0][0], 1)
            lines.append(
                f"  idle sockets                 {sockets:8d}      server memory "
                f"{sizes[-1][1] / 2**20:7.0f} MiB   per socket {per_socket / 1024:5.1f} KiB"
            )
            (tmp / "same.json").write_text(json.dumps(relay_plan[: args.active]))
            (tmp / "cross.json").write_text(json.dumps(relay_plan[args.active :]))
            common = ["--rate", str(args.rate), "--seconds", str(args.seconds)]
            same = run_load(["relay", "--plan", str(tmp / "same.json"), "--a", a, "--b", a, *common])
            cpu_before = process_tree_cpu(server_a.pid) + process_tree_cpu(server_b.pid)
            cross = run_load(["relay", "--plan", str(tmp / "cross.json"), "--a", a, "--b", b, *common])
            relay_cpu_s = process_tree_cpu(server_a.pid) + process_tree_cpu(server_b.pid) - cpu_before
            for loader in loaders:
                assert loader.stdin is not None
                loader.stdin.write("done\n")
                loader.stdin.flush()
                loader.wait(120)
        echo_port = free_port()
        echo_server = subprocess.Popen(
            [sys.executable, "-m", "bench.signalling.echo", str(echo_port)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert echo_server.stdout is not None
            echo_server.stdout.readline()
            echo = run_load(["echo", "--a", f"ws://127.0.0.1:{echo_port}", "--connections", str(args.active), *common])
        finally:
            echo_server.terminate()
            echo_server.wait(10)
    print(
        f"bench/signalling  rooms={args.rooms} active={args.active} rate={args.rate:g}/s "
        f"seconds={args.seconds:g} cores={os.cpu_count()}"
    )
    print("\n".join(lines))
    print(summary("relay, one worker", same["latencies"], args.seconds))
    print(summary("relay, two workers (Redis)", cross["latencies"], args.seconds))
    print(summary("raw echo server", echo["latencies"], args.seconds))
    relayed = max(len(cross["latencies"]), 1)
    print(f"  server CPU per relayed message (two workers, idle sockets open) {relay_cpu_s / relayed * 1e6:6.0f} µs")
    echo_p99 = percentile(echo["latencies"], 99) * 1000
    return [
        Row(
            "signalling", f"memory per idle socket ({sockets:,} open)", per_socket / 1024, "KiB", higher_is_better=False
        ),
        Row(
            "signalling",
            f"relay p99, one worker, {args.rate:g} msg/s",
            percentile(same["latencies"], 99) * 1000,
            "ms",
            echo_p99,
            "raw echo p99",
            False,
        ),
        Row(
            "signalling",
            f"relay p99, two workers, {args.rate:g} msg/s",
            percentile(cross["latencies"], 99) * 1000,
            "ms",
            echo_p99,
            "raw echo p99",
            False,
        ),
        Row("signalling", "server CPU per relayed message", relay_cpu_s / relayed * 1e6, "µs", higher_is_better=False),
    ]


def rows(quick: bool = False) -> list[Row]:
    """The figures for `make bench`'s table (bench.common.Row)."""
    return main(["--rooms", "50", "--active", "5", "--rate", "100", "--seconds", "1"] if quick else [])


if __name__ == "__main__":
    main()
