"""bench/signalling: idle sockets' memory and relay latency, beside a bare WebSocket server's.

    python -m bench.signalling [--rooms 10000] [--rate 2000] [--seconds 10] [--active 100]

Starts two `spean serve` processes (A and B, the product's defaults: log level, WebSocket
implementation) on a scratch database and a shared Redis, opens `--rooms` rooms with two idle
sockets each (specialist on A, patient on B) and reports server memory per socket; then relays
chat at `--rate` messages/s across `--active` rooms, once with both peers on A (one worker) and
once across A and B (through Redis pub/sub), while the idle sockets stay open. The references,
in the same run: a bare `websockets` echo server holding as many idle sockets as one Spean worker
(memory per socket), and the same message load echoed by it (latency). Latencies are one way,
sender to receiver, one process clock.

20,000 sockets need more open files than the usual 1,024 (raised here for this process and what
it starts, as far as the hard limit allows; as root, beyond it) and loopback source ports: Linux
shares its ephemeral range (/proc/sys/net/ipv4/ip_local_port_range, ~28,000 ports) per
destination, and each server listens on its own port, so up to ~28,000 sockets per server.
`rows()` gives the figures to `make bench` (bench.common.Row).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
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


def raise_open_files(needed: int) -> None:
    """Enough file descriptors for this process and the servers and loaders it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))  # root may go past hard
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def run_load(args: list[str], window: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run a load process to its end; `window` is called with each marker line it prints
    ("relaying", "relayed"), at the moment it prints it."""
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: nobody reads it until the end
        load = subprocess.Popen(
            [sys.executable, "-m", "bench.signalling.load", *args], stdout=subprocess.PIPE, stderr=errors, text=True
        )
        assert load.stdout is not None
        lines = []
        for line in load.stdout:
            if line.strip() in ("relaying", "relayed") and window is not None:
                window(line.strip())
            lines.append(line)
        if load.wait() != 0:
            errors.seek(0)
            raise RuntimeError(f"the {args[0]} load failed:\n{errors.read()[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


class Window:
    """The servers' CPU between a relay load's markers, and py-spy on them meanwhile if asked."""

    def __init__(self, pids: list[int], profile: Path | None, name: str, seconds: float) -> None:
        self.pids, self.profile, self.name, self.seconds = pids, profile, name, seconds
        self.cpu_s = 0.0
        self._spies: list[subprocess.Popen[bytes]] = []

    def __call__(self, marker: str) -> None:
        cpu = sum(process_tree_cpu(pid) for pid in self.pids)
        if marker == "relaying":
            self.cpu_s = -cpu
            if self.profile is not None:
                self._spies = start_profiles(self.pids, self.profile / self.name, self.seconds)
        else:
            self.cpu_s += cpu
            for spy in self._spies:
                spy.wait()


def start_profiles(pids: list[int], folder: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    """py-spy on each server process for `seconds` (raw collapsed stacks, idle left out)."""
    folder.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    options = ["--rate", "200", "--duration", str(max(int(seconds), 1)), "--format", "raw", "--nonblocking"]
    return [
        subprocess.Popen(
            [spy, "record", "--pid", str(pid), *options, "--output", str(folder / f"server-{i}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, pid in enumerate(pids)
    ]


def summary(name: str, latencies: list[float], seconds: float) -> str:
    return (
        f"  {name:<28} {len(latencies) / seconds:8.0f} msg/s   p50 {percentile(latencies, 50) * 1000:6.2f} ms"
        f"   p99 {percentile(latencies, 99) * 1000:6.2f} ms"
    )


class IdleLoad:
    """Load processes holding idle sockets (at most 10,000 each), added in steps; the memory
    per socket is the servers' growth from the first step to the last, so that pools, caches and
    imports warmed up by the first step do not count."""

    def __init__(self, folder: Path, mode: str, a: str, b: str) -> None:
        self.folder, self.mode, self.a, self.b = folder, mode, a, b
        self.loaders: list[subprocess.Popen[str]] = []
        self.sizes: list[tuple[int, int]] = []  # (sockets open, servers' RSS)
        self.summaries: list[dict[str, Any]] = []  # what each load process said at the end

    def add(self, plan: list[dict[str, str]], sockets: int, pids: list[int]) -> None:
        path = self.folder / f"{self.mode}-{len(self.loaders)}.json"
        path.write_text(json.dumps(plan))
        loader = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.signalling.load",
                self.mode,
                "--plan",
                str(path),
                "--a",
                self.a,
                "--b",
                self.b,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert loader.stdout is not None
        if loader.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the {self.mode} load failed to open its sockets")
        self.loaders.append(loader)
        opened = (self.sizes[-1][0] if self.sizes else 0) + sockets
        self.sizes.append((opened, sum(rss(pid) for pid in pids)))

    @property
    def sockets(self) -> int:
        return self.sizes[-1][0]

    @property
    def per_socket(self) -> float:
        """Bytes of server memory per socket, from the first step to the last."""
        (n0, rss0), (n1, rss1) = self.sizes[0], self.sizes[-1]
        return (rss1 - rss0) / max(n1 - n0, 1)

    def close(self) -> None:
        for loader in self.loaders:
            assert loader.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                loader.stdin.write("done\n")
                loader.stdin.flush()
        for loader in self.loaders:
            assert loader.stdout is not None
            with contextlib.suppress(ValueError):
                self.summaries.append(json.loads(loader.stdout.readline() or "null") or {})
            loader.wait(120)

    def opening(self) -> str:
        """How the sockets were opened: seconds, joins retried, join latency (worst step)."""
        steps = [x for x in self.summaries if x]
        if not steps:
            return ""
        seconds = sum(x.get("open_seconds", 0.0) for x in steps)
        retried = sum(x.get("retried", 0) for x in steps)
        p99 = max((x["join_p99"] for x in steps if "join_p99" in x), default=float("nan"))
        return f"opened in {seconds:.0f} s, {retried} join(s) retried, join p99 {p99 * 1000:.0f} ms"


@contextlib.contextmanager
def echo_server(folder: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.signalling.echo", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        server.stdout.readline()
        yield f"ws://127.0.0.1:{port}", server.pid
    finally:
        server.terminate()
        server.wait(10)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rooms", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=100)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--ws", default=None, help="`spean serve --ws` (default: the product's)")
    parser.add_argument("--profile", type=Path, help="record both servers with py-spy while relaying, into this folder")
    parser.add_argument("--no-echo", action="store_true", help="skip the bare server's references (to iterate)")
    args = parser.parse_args(argv)
    raise_open_files(2 * args.rooms + 4 * args.active + 1024)
    steps = max(2, -(-args.rooms // 5000))  # memory is read after each step of at most 5,000 rooms
    phases: list[tuple[str, float]] = []
    clock = time.perf_counter()

    def phase(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases.append((name, now - clock))
        clock = now

    with bench_environment("spean-bench-rtc") as bench:
        tmp, database_url, redis_url, secret = bench.folder, bench.database_url, bench.redis_url, bench.secret
        plan = asyncio.run(seed(database_url, args.rooms + 2 * args.active, secret))
        idle_plan, relay_plan = plan[: args.rooms], plan[args.rooms :]
        env = {**base_env(database_url, redis_url, tmp / "data", secret), "SPEAN_AUTO_MIGRATE": "false"}
        env.pop("SPEAN_LOG_LEVEL")  # the product's default, as users get it
        extra = ("--ws", args.ws) if args.ws else ()
        port_a, port_b = free_port(), free_port()
        a, b = f"ws://127.0.0.1:{port_a}", f"ws://127.0.0.1:{port_b}"
        phase("seed")
        with (
            spean_server(env, port_a, 1, tmp / "a.log", extra) as server_a,
            spean_server(env, port_b, 1, tmp / "b.log", extra) as server_b,
        ):
            idle = IdleLoad(tmp, "idle", a, b)
            servers = [server_a.pid, server_b.pid]
            phase("start servers")
            try:
                size = -(-len(idle_plan) // steps)
                for part in range(0, len(idle_plan), size):
                    chunk = idle_plan[part : part + size]
                    idle.add(chunk, 2 * len(chunk), servers)
                phase("open idle sockets")
                (tmp / "same.json").write_text(json.dumps(relay_plan[: args.active]))
                (tmp / "cross.json").write_text(json.dumps(relay_plan[args.active :]))
                common = ["--rate", str(args.rate), "--seconds", str(args.seconds)]
                same_window = Window(servers, args.profile, "one-worker", args.seconds)
                same = run_load(["relay", "--plan", str(tmp / "same.json"), "--a", a, "--b", a, *common], same_window)
                phase("relay, one worker")
                cross_window = Window(servers, args.profile, "two-workers", args.seconds)
                cross_plan = ["--plan", str(tmp / "cross.json"), "--a", a, "--b", b]
                cross = run_load(["relay", *cross_plan, *common], cross_window)
                phase("relay, two workers")
            except Exception:
                for log in ("a.log", "b.log"):  # what the servers said, before the folder goes
                    lines = (tmp / log).read_text(errors="replace").splitlines()
                    print(f"--- {log}", *[x for x in lines if "error" in x.lower()][-20:], sep="\n", file=sys.stderr)
                raise
            finally:
                idle.close()
        bare = None
        echo: dict[str, Any] = {"latencies": []}
        if not args.no_echo:
            with echo_server(tmp) as (echo_url, echo_pid):
                # As many idle sockets on the bare server as one Spean worker holds, in as many steps.
                bare = IdleLoad(tmp, "hold", echo_url, echo_url)
                try:
                    size = -(-args.rooms // steps)
                    for part in range(0, args.rooms, size):
                        count = min(size, args.rooms - part)
                        bare.add([{}] * count, count, [echo_pid])
                finally:
                    bare.close()
                echo = run_load(["echo", "--a", echo_url, "--connections", str(args.active), *common])
            phase("bare server")
    same_us = same_window.cpu_s / max(len(same["latencies"]), 1) * 1e6
    cpu_us = cross_window.cpu_s / max(len(cross["latencies"]), 1) * 1e6
    load1, load5, _ = os.getloadavg()
    print(
        f"bench/signalling  rooms={args.rooms} active={args.active} rate={args.rate:g}/s "
        f"seconds={args.seconds:g} cores={os.cpu_count()} load average {load1:.1f} (5 min {load5:.1f})"
    )
    print(
        f"  idle sockets                 {idle.sockets:8d}      server memory "
        f"{idle.sizes[-1][1] / 2**20:7.0f} MiB   per socket {idle.per_socket / 1024:5.1f} KiB   {idle.opening()}"
    )
    if bare is not None:
        print(
            f"  bare websockets server       {bare.sockets:8d}      server memory "
            f"{bare.sizes[-1][1] / 2**20:7.0f} MiB   per socket {bare.per_socket / 1024:5.1f} KiB"
        )
    print(summary("relay, one worker", same["latencies"], args.seconds))
    print(summary("relay, two workers (Redis)", cross["latencies"], args.seconds))
    if bare is not None:
        print(summary("raw echo server", echo["latencies"], args.seconds))
    print(f"  server CPU per relayed message, one worker   {same_us:6.0f} µs (both servers, idle sockets open)")
    print(f"  server CPU per relayed message, two workers  {cpu_us:6.0f} µs")
    print("  phases: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in phases))
    if bare is None:
        return []
    return rows_of(args.rate, idle, bare, same["latencies"], cross["latencies"], echo["latencies"], cpu_us)


def rows_of(
    rate: float,
    idle: IdleLoad,
    bare: IdleLoad,
    same: list[float],
    cross: list[float],
    echo: list[float],
    cpu_us: float,
) -> list[Row]:
    def latency(figure: str, values: list[float], pct: float) -> Row:
        return Row(
            "signalling",
            f"relay p{pct:g}, {figure}, {rate:g} msg/s",
            percentile(values, pct) * 1000,
            "ms",
            percentile(echo, pct) * 1000,
            f"raw echo p{pct:g}",
            higher_is_better=False,
            note="built for < 10 ms and ≤ 2x echo" if pct == 99 else "",
        )

    return [
        Row(
            "signalling",
            f"memory per idle socket ({idle.sockets:,} open, two workers)",
            idle.per_socket / 1024,
            "KiB",
            bare.per_socket / 1024,
            f"bare websockets server, {bare.sockets:,} open",
            higher_is_better=False,
            note="built for ≤ 30 KiB",
        ),
        latency("one worker", same, 50),
        latency("one worker", same, 99),
        latency("two workers", cross, 50),
        latency("two workers", cross, 99),
        Row("signalling", "server CPU per relayed message", cpu_us, "µs", higher_is_better=False),
    ]


def rows(quick: bool = False) -> list[Row]:
    """The figures for `make bench`'s table (bench.common.Row)."""
    return main(["--rooms", "50", "--active", "5", "--rate", "100", "--seconds", "1"] if quick else [])


if __name__ == "__main__":
    main()
