"""bench/booking: bookings per second and latency through real server processes, beside pgbench.

    python -m bench.booking [--clients 64] [--seconds 15] [--workers 2]

Starts `spean serve` on a scratch database (on DATABASE_URL's server, or an embedded one),
seeds a network with free slots, fires bookings from a separate load-generator process, and runs
pgbench's TPC-B on the same database in the same run, printing both and their ratio.

What users get: the server runs as in production (SPEAN_ENV=production, the product's defaults
for log level and pool size: nothing here overrides them unless asked), every booking carries an
Idempotency-Key, as phones send them, and a `spean worker` process beside the server plans the
notifications of each booking, as a deployment runs it (`--worker-in-api` runs it inside the API
workers instead, as development does). Also printed: the CPU each booking costs the server
processes and the PostgreSQL backends serving them; the events the worker planned per second and
the CPU each cost it and its own backends (told apart by their connections' ports), and how many
were still unplanned at the end (whether it keeps up); and the share of the machine the load
generator used (so it is seen not to be the limit).

`--profile DIR` records the server workers with py-spy during the measured window (raw collapsed
stacks, one file per process, with idle samples left out), for bench/RESULTS.md's profile.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg

from bench.common import (
    Row,
    base_env,
    bench_environment,
    percentile,
    pgbench_tps,
    process_tree_cpu,
    spean_server,
)
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


@dataclass(frozen=True)
class Result:
    workers: int
    clients: int
    seconds: float
    booked: int
    statuses: dict[str, int]
    rate: float  # bookings/s
    p50_s: float
    p99_s: float
    tps: float  # pgbench TPC-B, same server and database, same run
    app_cpu_ms: float  # server processes' CPU per booking
    pg_cpu_ms: float  # PostgreSQL backends' CPU per booking
    load_share: float  # the load generator's CPU over the window, as a share of all cores
    planned_rate: float  # outbox events the notification worker planned per second, same window
    worker_cpu_ms: float  # the `spean worker` process's CPU per planned event (0 when it runs in the API)
    worker_pg_cpu_ms: float  # the PostgreSQL backends serving `spean worker`, per planned event
    outbox_backlog: int  # outbox events not yet planned when the load stopped
    wrk: WrkResult | None = None  # the same load from wrk, against the same server, if asked


@dataclass(frozen=True)
class WrkResult:
    rate: float  # bookings/s (2xx answers)
    p99_s: float
    errors: int  # non-2xx answers and socket errors
    load_share: float


_WRK_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def run_wrk(port: int, plan_path: Path, token: str, clients: int, seconds: float) -> WrkResult:
    """The same bookings from wrk (a compiled load generator), for comparison with ours."""
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    threads = 2
    script = Path(__file__).with_name("wrk.lua")
    command = [binary, "-t", str(threads), "-c", str(clients), "-d", f"{seconds:g}s", "--latency", "-s", str(script)]
    command += [f"http://127.0.0.1:{port}", "--", str(plan_path), token, str(threads)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    cpu0, t0 = process_tree_cpu(proc.pid), time.perf_counter()
    time.sleep(max(seconds - 2, 0.5))
    cpu1, window = process_tree_cpu(proc.pid), time.perf_counter() - t0
    out, _ = proc.communicate()
    summary = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    assert summary is not None, out
    total, duration = int(summary.group(1)), float(summary.group(2)) * _WRK_UNITS[summary.group(3)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    p99 = re.search(r"^\s*99%\s+([\d.]+)(\w+)", out, re.M)
    assert p99 is not None, out
    return WrkResult(
        rate=(total - errors) / duration,
        p99_s=float(p99.group(1)) * _WRK_UNITS[p99.group(2)],
        errors=errors,
        load_share=(cpu1 - cpu0) / (window * (os.cpu_count() or 1)),
    )


def run(
    *,
    clients: int = 64,
    seconds: float = 15,
    workers: int = 2,
    practitioners: int = 200,
    pgbench_seconds: int = 10,
    pool: int | None = None,
    log_level: str | None = None,
    idempotency_keys: bool = True,
    warmup: float = 2.0,
    pgbench_scale: int = 20,
    wrk: bool = False,
    worker_in_api: bool = False,
    profile: Path | None = None,
) -> Result:
    cores = os.cpu_count() or 1
    with bench_environment("spean-bench-booking") as bench:
        token, pairs = asyncio.run(seed(bench.database_url, practitioners, bench.secret))
        budget = int(seconds * 6000) + 10_000  # more bookings than any run can use
        plan(pairs, 2 * budget, bench.folder / "plan.jsonl")
        lines = (bench.folder / "plan.jsonl").read_bytes().splitlines(keepends=True)
        (bench.folder / "plan.jsonl").write_bytes(b"".join(lines[:budget]))
        (bench.folder / "wrk.jsonl").write_bytes(b"".join(lines[budget:]))  # slots ours never ask for
        port = free_port()
        env = base_env(bench.database_url, bench.redis_url, bench.folder / "data", bench.secret)
        env["SPEAN_AUTO_MIGRATE"] = "false"
        env["SPEAN_ENV"] = "production"
        env["SPEAN_WORKER_IN_API"] = "true" if worker_in_api else "false"
        # The product's defaults unless asked otherwise: what a deployment gets.
        for name, value in (("SPEAN_LOG_LEVEL", log_level), ("SPEAN_DB_POOL_MAX", pool)):
            if value is None:
                env.pop(name, None)
            else:
                env[name] = str(value)
        command = [
            sys.executable,
            "-m",
            "bench.booking.load",
            "--port",
            str(port),
            "--clients",
            str(clients),
            "--seconds",
            str(seconds),
            "--warmup",
            str(warmup),
            "--plan",
            str(bench.folder / "plan.jsonl"),
            "--token",
            token,
        ]
        if idempotency_keys:
            command.append("--idempotency-keys")
        with (
            spean_server(env, port, workers, bench.folder / "server.log") as server,
            notification_worker(env, None if worker_in_api else bench.folder / "worker.log") as worker,
        ):
            monitor = Monitor(bench.database_url)
            load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                # CPU over the measured window (after the load's warm-up), sampled from outside.
                assert load.stderr is not None
                load.stderr.readline()  # "measuring"
                time.sleep(min(0.5, seconds / 4))
                span = seconds - 2 * min(0.5, seconds / 4)
                spies = start_profiles(server.pid, profile, span) if profile else []
                app0, pg0, load0, worker0, planned0 = (
                    process_tree_cpu(server.pid),
                    monitor.backends_cpu(),
                    process_tree_cpu(load.pid),
                    process_tree_cpu(worker.pid) if worker else 0.0,
                    monitor.outbox()[0],
                )
                t0 = time.perf_counter()
                time.sleep(span)
                app1, pg1, load1, worker1, planned1 = (
                    process_tree_cpu(server.pid),
                    monitor.backends_cpu(),
                    process_tree_cpu(load.pid),
                    process_tree_cpu(worker.pid) if worker else 0.0,
                    monitor.outbox()[0],
                )
                window = time.perf_counter() - t0
                worker_backends = monitor.backends_of(worker.pid) if worker else set()
                out, err = load.communicate()
                if load.returncode:
                    raise RuntimeError(f"load generator failed ({load.returncode}):\n{err}")
                backlog = monitor.outbox()[1]
                for spy in spies:
                    spy.wait()
            finally:
                monitor.close()
            compared = run_wrk(port, bench.folder / "wrk.jsonl", token, clients, seconds) if wrk else None
        result = json.loads(out)
        tps = pgbench_tps(bench.database_url, clients=16, seconds=pgbench_seconds, scale=pgbench_scale)
    latencies = result["latencies"]
    booked = result["statuses"].get("201", 0)
    rate = booked / result["elapsed"]
    in_window = max(rate * window, 1.0)
    pg_used = {pid: used - pg0.get(pid, 0.0) for pid, used in pg1.items()}
    planned = max(planned1 - planned0, 1)
    return Result(
        workers=workers,
        clients=clients,
        seconds=seconds,
        booked=booked,
        statuses=result["statuses"],
        rate=rate,
        p50_s=percentile(latencies, 50),
        p99_s=percentile(latencies, 99),
        tps=tps,
        app_cpu_ms=(app1 - app0) / in_window * 1000,
        pg_cpu_ms=sum(used for pid, used in pg_used.items() if pid not in worker_backends) / in_window * 1000,
        load_share=(load1 - load0) / (window * cores),
        planned_rate=(planned1 - planned0) / window,
        worker_cpu_ms=(worker1 - worker0) / planned * 1000,
        worker_pg_cpu_ms=sum(used for pid, used in pg_used.items() if pid in worker_backends) / planned * 1000,
        outbox_backlog=backlog,
        wrk=compared,
    )


@contextmanager
def notification_worker(env: dict[str, str], log: Path | None) -> Iterator[subprocess.Popen[bytes] | None]:
    """`spean worker` beside the server, as a deployment runs it (None: the API runs it)."""
    if log is None:
        yield None
        return
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "spean.cli", "worker"], env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while b"ready" not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the notification worker did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


class Monitor:
    """One connection to the bench's database, opened before the load, for every look the bench
    takes during the run: on the shared server a new connection at the end of the window can
    find every slot taken."""

    def __init__(self, database_url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._conn = self._loop.run_until_complete(asyncpg.connect(database_url))

    def close(self) -> None:
        self._loop.run_until_complete(self._conn.close())
        self._loop.close()

    def _fetch(self, sql: str) -> list[asyncpg.Record]:
        return self._loop.run_until_complete(self._conn.fetch(sql))

    def backends_cpu(self) -> dict[int, float]:
        """CPU seconds used so far by each backend of the database but this one (a local server:
        read from /proc; the WAL writer and checkpointer serve every database and are left out)."""
        import psutil

        used: dict[int, float] = {}
        query = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        for row in self._fetch(query):
            try:
                times = psutil.Process(row["pid"]).cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            used[row["pid"]] = times.user + times.system
        return used

    def outbox(self) -> tuple[int, int]:
        """(planned, not yet planned) outbox events."""
        row = self._fetch("SELECT count(processed_at) AS done, count(*) - count(processed_at) AS waiting FROM outbox")
        return int(row[0]["done"]), int(row[0]["waiting"])

    def backends_of(self, pid: int) -> set[int]:
        """The backends serving process `pid` (its TCP connections, matched by port)."""
        import psutil

        ports = {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.raddr}
        rows = self._fetch(
            "SELECT pid, client_port FROM pg_stat_activity WHERE datname = current_database() AND client_port > 0"
        )
        return {r["pid"] for r in rows if r["client_port"] in ports}


def start_profiles(server_pid: int, folder: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    """py-spy on each of the server's worker processes for `seconds` (raw collapsed stacks)."""
    import psutil

    folder.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    options = ["--rate", "200", "--duration", str(max(int(seconds), 1)), "--format", "raw", "--nonblocking"]
    return [
        subprocess.Popen(
            [spy, "record", "--pid", str(child.pid), *options, "--output", str(folder / f"worker-{child.pid}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for child in psutil.Process(server_pid).children(recursive=True)
        if "spawn_main" in " ".join(child.cmdline())
    ]


def rows(quick: bool = False) -> list[Row]:
    """The figures for `make bench`'s table (bench.common.Row)."""
    r = (
        run(clients=8, seconds=1.5, practitioners=10, pgbench_seconds=1, warmup=0.3, pgbench_scale=1)
        if quick
        else run()
    )
    shape = f"{r.workers} workers, {r.clients} clients"
    return [
        Row("booking", f"bookings/s ({shape})", r.rate, "/s", r.tps, "pgbench TPC-B tps, 16 clients"),
        Row("booking", f"booking p99 ({r.clients} clients)", r.p99_s * 1000, "ms", 50.0, "built for", False),
        Row("booking", "app CPU per booking", r.app_cpu_ms, "ms", higher_is_better=False),
        Row("booking", "PostgreSQL CPU per booking", r.pg_cpu_ms, "ms", higher_is_better=False),
        Row("booking", "notification worker CPU per planned event", r.worker_cpu_ms, "ms", higher_is_better=False),
        Row("booking", "load generator CPU", r.load_share * 100, "% of cores", higher_is_better=False),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--practitioners", type=int, default=200)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument(
        "--pool", type=int, default=None, help="database connections per worker (default: the product's)"
    )
    parser.add_argument("--log-level", default=None, help="the server's log level (default: the product's)")
    parser.add_argument(
        "--no-idempotency-keys", action="store_true", help="send bookings without an Idempotency-Key (phones send one)"
    )
    parser.add_argument("--wrk", action="store_true", help="also send the same load from wrk, for comparison")
    parser.add_argument(
        "--worker-in-api", action="store_true", help="plan notifications in the API workers (development's shape)"
    )
    parser.add_argument("--profile", type=Path, help="record the server workers with py-spy into this folder")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks that the bench runs")
    args = parser.parse_args()
    if args.quick:  # as `make bench-quick` runs it
        args.clients, args.seconds, args.practitioners, args.pgbench_seconds = 8, 1.5, 10, 1
    r = run(
        clients=args.clients,
        seconds=args.seconds,
        practitioners=args.practitioners,
        pgbench_seconds=args.pgbench_seconds,
        warmup=0.3 if args.quick else 2.0,
        pgbench_scale=1 if args.quick else 20,
        workers=args.workers,
        pool=args.pool,
        log_level=args.log_level,
        idempotency_keys=not args.no_idempotency_keys,
        wrk=args.wrk,
        worker_in_api=args.worker_in_api,
        profile=args.profile,
    )
    settings = (
        f"pool={args.pool or 'default'} log={args.log_level or 'default'} "
        f"keys={'no' if args.no_idempotency_keys else 'yes'} "
        f"notifications={'in the API' if args.worker_in_api else 'spean worker'}"
    )
    print(
        f"bench/booking  workers={r.workers} clients={r.clients} seconds={r.seconds:g} "
        f"cores={os.cpu_count()} {settings}"
    )
    print(f"  bookings/s      {r.rate:10.0f}   ({r.booked} booked; statuses {r.statuses})")
    print(f"  latency p50     {r.p50_s * 1000:10.1f} ms")
    print(f"  latency p99     {r.p99_s * 1000:10.1f} ms")
    print(f"  pgbench TPC-B   {r.tps:10.0f} tps  (16 clients, same server and database)")
    print(f"  ratio           {r.rate / r.tps:10.2f}   bookings/s per pgbench tps")
    print(f"  app CPU         {r.app_cpu_ms:10.2f} ms per booking (server processes)")
    print(f"  PostgreSQL CPU  {r.pg_cpu_ms:10.2f} ms per booking (the backends serving the API)")
    if not args.worker_in_api:
        print(
            f"  spean worker    {r.planned_rate:10.0f} events planned/s; per event {r.worker_cpu_ms:.2f} ms of CPU "
            f"+ {r.worker_pg_cpu_ms:.2f} ms of its PostgreSQL backends"
        )
    print(f"  outbox backlog  {r.outbox_backlog:10d}   events not yet planned when the load stopped")
    print(f"  load average    {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"  load generator  {r.load_share * 100:10.1f} % of the machine's cores")
    if r.wrk is not None:
        print(
            f"  wrk, same server: {r.wrk.rate:.0f} bookings/s, p99 {r.wrk.p99_s * 1000:.1f} ms, "
            f"{r.wrk.errors} errors, {r.wrk.load_share * 100:.1f} % of the cores"
        )


if __name__ == "__main__":
    main()
