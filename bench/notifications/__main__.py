"""bench/notifications: pushes per second per `spean worker` process, for one and for two of them
(each outbox event makes one push: plan, claim, firebase-admin `send_each_async`, record), the
worker CPU per push, commit → FCM request latency p50/p99 under a steady stream of commits, and
beside them, in the same run, the rate at which the same local FCM accepts requests from a bare
HTTP client (wrk): the ceiling a worker's rate is compared with.

    python -m bench.notifications [--events 6000] [--rate 1000] [--seconds 5] [--profile]

The local FCM is bench/notifications/fcm_stand_in.py (asyncio, a process of its own), so the
figures measure Spean, not the tests' threaded stand-in (tests/fcm_server.py, ~200 requests/s
here: printed too, for comparison). Events are `record.result_ready` outbox rows as a completed
consultation writes them, each for its own patient with one device, so each push is told apart
by its token. --profile records the first worker with py-spy (bench-notifications.folded).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import asyncpg
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bench.common import BenchEnvironment, Row, bench_environment, percentile
from infra.migrate import migrate
from tests.fcm_server import FcmServer

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '{"message":{"token":"raw","data":{"kind":"bench"},"notification":{"title":"t","body":"b"}}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer local-fcm-access-token"
"""


class StandIn:
    """The fast local FCM, in its own process."""

    def __init__(self, folder: Path) -> None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = folder / "fcm-public.pem"
        public.write_bytes(
            key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        self._key = key
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.notifications.fcm_stand_in", "--public-key", str(public)],
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdout is not None
        self.base_url = f"http://127.0.0.1:{int(self._proc.stdout.readline())}"

    def service_account(self, folder: Path) -> Path:
        pem = self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        path = folder / "service-account.json"
        path.write_text(
            json.dumps(
                {
                    "type": "service_account",
                    "project_id": "spean-bench",
                    "private_key_id": "local",
                    "private_key": pem,
                    "client_email": "spean@spean-bench.iam.gserviceaccount.com",
                    "client_id": "1",
                    "token_uri": f"{self.base_url}/token",
                }
            )
        )
        return path

    def arrivals(self) -> list[tuple[float, str]]:
        with urllib.request.urlopen(f"{self.base_url}/arrivals") as response:  # noqa: S310 - our own http URL
            return [(t, token) for t, token in json.loads(response.read())]

    def reset(self) -> None:
        reset = urllib.request.Request(f"{self.base_url}/reset", method="POST")  # noqa: S310 - our own http URL
        urllib.request.urlopen(reset).read()  # noqa: S310

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(10)


def _wrk_rate(base_url: str, seconds: int = 3, connections: int = 64) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script.name,
             f"{base_url}/v1/projects/bench/messages:send"],
            check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
    finally:
        os.unlink(script.name)
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert found, out
    return float(found.group(1))


async def _seed(database_url: str, patients: int) -> list[tuple[uuid.UUID, str]]:
    """Patients who use the app, each with a login and one device; their facility has no quiet
    hours (the bench runs at any hour)."""
    conn = await asyncpg.connect(database_url)
    try:
        facility = uuid.uuid4()
        await conn.execute(
            """INSERT INTO facilities (id, name, kind, timezone, country, quiet_start, quiet_end)
               VALUES ($1, 'Bench post', 'health_post', 'Asia/Phnom_Penh', 'KH', '00:00', '00:00')""",
            facility,
        )
        people = [(uuid.uuid4(), uuid.uuid4(), f"+8559{i:08d}") for i in range(patients)]
        await conn.copy_records_to_table(
            "users", records=[(u, phone) for _, u, phone in people], columns=["id", "phone"]
        )
        await conn.copy_records_to_table(
            "patients",
            records=[(p, '[{"text": "Bench"}]', "bench", phone, "en", "app", facility) for p, _, phone in people],
            columns=["id", "names", "search_text", "phone", "preferred_language", "preferred_channel",
                     "home_facility_id"],
        )  # fmt: skip
        await conn.copy_records_to_table(
            "patient_accounts", records=[(u, p) for p, u, _ in people], columns=["user_id", "patient_id"]
        )
        await conn.copy_records_to_table(
            "devices",
            records=[(u, f"bench-{p}", "android") for p, u, _ in people],
            columns=["user_id", "token", "platform"],
        )
        return [(p, f"bench-{p}") for p, _, _ in people]
    finally:
        await conn.close()


def _events(patients: list[tuple[uuid.UUID, str]]) -> list[tuple[str, str]]:
    return [
        ("record.result_ready", json.dumps({"patient_id": str(p), "encounter_id": str(uuid.uuid4())}))
        for p, _ in patients
    ]


async def _commit(conn: asyncpg.Connection, events: list[tuple[str, str]]) -> float:
    async with conn.transaction():
        await conn.executemany("INSERT INTO outbox (topic, payload) VALUES ($1, $2::jsonb)", events)
    return time.time()


async def _wait_for(stand_in: StandIn, count: int, timeout_s: float = 300) -> list[tuple[float, str]]:
    deadline = time.monotonic() + timeout_s
    while True:
        arrivals = stand_in.arrivals()
        if len(arrivals) >= count:
            return arrivals
        assert time.monotonic() < deadline, f"only {len(arrivals)} of {count} pushes arrived"
        await asyncio.sleep(0.2)


def _start_workers(n: int, env: dict[str, str], profile: Path | None) -> list[subprocess.Popen[bytes]]:
    procs = []
    for _ in range(n):
        command = [sys.executable, "-m", "spean.cli", "worker"]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL))
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert "ready" in line, f"worker did not start: {line!r}"
    if profile is not None:  # attached to the first worker; SIGINT makes it write the flame graph
        spy = [
            "py-spy",
            "record",
            "--pid",
            str(procs[0].pid),
            "-o",
            str(profile),
            "-f",
            "raw",
            "-r",
            "250",
            "--nonblocking",
        ]
        procs.append(subprocess.Popen(spy, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    return procs


def _cpu_s(procs: list[subprocess.Popen[bytes]]) -> float:
    """CPU seconds (user + system) the processes used so far, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for proc in procs:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in reversed(procs):  # py-spy first, while its worker still runs
        proc.send_signal(signal.SIGINT)
        proc.wait(60)


async def _run(
    env: BenchEnvironment, events: int, rate: int, seconds: int, profile: bool, workers: tuple[int, ...]
) -> list[Row]:
    await migrate(env.database_url)
    steady = rate * seconds
    patients = await _seed(env.database_url, 2 * (20 + events + steady))
    stand_in = StandIn(env.folder)
    tests_server = FcmServer().start()
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
        "GOOGLE_APPLICATION_CREDENTIALS": str(stand_in.service_account(env.folder)),
        "FCM_API_BASE_URL": stand_in.base_url,
    }
    bare = _wrk_rate(stand_in.base_url)
    print(f"bare HTTP client (wrk, 64 connections) → local FCM stand-in: {bare:,.0f} requests/s")
    print(
        f"  (→ the tests' threaded server, tests/fcm_server.py: {_wrk_rate(tests_server.base_url, 2):,.0f} requests/s)"
    )
    tests_server.stop()
    conn = await asyncpg.connect(env.database_url)
    unused = iter(patients)
    found: list[Row] = []
    try:
        for n in workers:
            flame = Path.cwd() / "bench-notifications.folded" if profile and n == 1 else None
            procs = _start_workers(n, worker_env, flame)
            try:
                # warm: connections opened, OAuth token fetched
                await _commit(conn, _events([next(unused) for _ in range(20)]))
                await _wait_for(stand_in, 20)
                stand_in.reset()

                batch = [next(unused) for _ in range(events)]
                cpu = _cpu_s(procs[:n])
                committed = await _commit(conn, _events(batch))
                arrivals = await _wait_for(stand_in, events)
                drained = events / (max(t for t, _ in arrivals) - committed)
                cpu_per_event = (_cpu_s(procs[:n]) - cpu) / events
                stand_in.reset()

                stream = [next(unused) for _ in range(steady)]
                at: dict[str, float] = {}
                tick = 0.01  # a commit of rate/100 events every 10 ms
                per_tick = max(1, rate // 100)
                started = time.monotonic()
                for i in range(0, steady, per_tick):
                    chunk = stream[i : i + per_tick]
                    done = await _commit(conn, _events(chunk))
                    at.update({token: done for _, token in chunk})
                    pause = started + (i // per_tick + 1) * tick - time.monotonic()
                    if pause > 0:
                        await asyncio.sleep(pause)
                offered = steady / (time.monotonic() - started)
                arrivals = await _wait_for(stand_in, steady)
                latencies = [t - at[token] for t, token in arrivals]
                stand_in.reset()
                per_worker = drained / n
                p50, p99 = percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
                print(
                    f"{n} worker(s), {events} events committed at once (one push each):\n"
                    f"  pushes/s per worker  {per_worker:>8,.0f}   ({drained:,.0f}/s in all; built for ≥ 2,000)\n"
                    f"  bare client (wrk)    {bare:>8,.0f}   requests/s into the same local FCM: the ceiling "
                    f"(ratio {per_worker / bare:.3f})\n"
                    f"  worker CPU per push  {cpu_per_event * 1000:>8.3f}   ms (plan + push + record; "
                    f"≈ {1 / cpu_per_event:,.0f} pushes/s per busy core; 2,000/s needs ≤ 0.45 ms beside "
                    f"PostgreSQL and FCM on 2 cores)\n"
                    f"  commit → FCM request p50 {p50:,.0f} ms, p99 {p99:,.0f} ms under a steady "
                    f"{offered:,.0f} events/s for {seconds} s (built for p99 < 1 s)\n"
                    f"  load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
                )
                found += [
                    Row("notifications", f"pushes/s per worker, {n} worker(s)", per_worker, "/s", bare,
                        "bare client (wrk) → local FCM"),
                    Row("notifications", f"worker CPU per push, {n} worker(s)", cpu_per_event * 1000, "ms", None, "",
                        False, note=f"≈ {1 / cpu_per_event:,.0f}/s per busy core; built for ≥ 2,000/s per worker"),
                    Row("notifications", f"commit → FCM p99 at {offered:,.0f}/s, {n} worker(s)", p99, "ms", None, "",
                        False, "built for < 1 s"),
                ]  # fmt: skip
            finally:
                _stop(procs)
            if flame is not None:
                print(f"  profile of the first worker: {flame}")
    finally:
        await conn.close()
        stand_in.stop()
    return found


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=6000, help="committed at once, to measure the drain rate")
    parser.add_argument("--rate", type=int, default=1000, help="events/s of the steady stream (latency)")
    parser.add_argument("--seconds", type=int, default=5, help="how long the steady stream lasts")
    parser.add_argument("--profile", action="store_true", help="record the first worker with py-spy")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure, comma-separated")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("bench/notifications needs wrk (apt-get install wrk) for the bare-client rate")
    workers = tuple(int(n) for n in args.workers.split(","))
    with bench_environment("spean-bench-notify") as env:
        return asyncio.run(_run(env, args.events, args.rate, args.seconds, args.profile, workers))


def rows(quick: bool = False) -> list[Row]:
    """The figures for `make bench`'s table (bench.common.Row)."""
    return main(["--events", "200", "--rate", "100", "--seconds", "1", "--workers", "1"] if quick else [])


if __name__ == "__main__":
    main()
