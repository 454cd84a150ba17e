"""The no-configuration default: real PostgreSQL and Redis from pip-installed binaries."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import psutil
from redis.asyncio import Redis

from infra.embedded import EmbeddedServices
from infra.migrate import migrate


async def test_embedded_postgres_and_redis_start_migrate_and_stop(scratch_dir: Path) -> None:
    services = EmbeddedServices(scratch_dir / "data")
    try:
        database_url = services.start_postgres()
        redis_url = services.start_redis()
        assert len(await migrate(database_url)) >= 1
        conn = await asyncpg.connect(database_url)
        try:
            assert await conn.fetchval("SELECT count(*) FROM facilities") == 0
            assert "btree_gist" in {r["extname"] for r in await conn.fetch("SELECT extname FROM pg_extension")}
        finally:
            await conn.close()
        redis = Redis.from_url(redis_url)
        assert await redis.ping()
        await redis.aclose()
    finally:
        services.stop()
    assert (scratch_dir / "data" / "postgres" / "PG_VERSION").exists()


def _postgres_of(pgdata: Path) -> list[psutil.Process]:
    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and str(pgdata) in " ".join(p.info["cmdline"] or ())
    ]


async def test_a_shared_server_stops_with_its_last_user(scratch_dir: Path) -> None:
    """Two processes' worth of users (e.g. `spean serve` and `spean admin`): the first to leave
    does not pull the server from under the other; the last one stops it."""
    data = (scratch_dir / "data").resolve()
    first, second = EmbeddedServices(data), EmbeddedServices(data)
    try:
        url = first.start_postgres()
        assert second.start_postgres() == url  # adopted, not a second server
        first.stop()
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    finally:
        first.stop()
        second.stop()
    assert _postgres_of(data / "postgres") == []


def test_a_pid_file_naming_another_process_is_not_a_server(scratch_dir: Path) -> None:
    """A stale postmaster.pid whose pid now belongs to some other process: not adopted, not
    signalled; a real server is started and stopped."""
    data = (scratch_dir / "data").resolve()
    services = EmbeddedServices(data)
    services.start_postgres()
    services.stop()
    bystander = subprocess.Popen(["sleep", "60"])  # noqa: S607 - coreutils
    try:
        (data / "postgres" / "postmaster.pid").write_text(f"{bystander.pid}\n{data / 'postgres'}\n")
        services = EmbeddedServices(data)
        try:
            services.start_postgres()
            assert len(_postgres_of(data / "postgres")) > 0
        finally:
            services.stop()
        assert _postgres_of(data / "postgres") == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


_USE_AT = """
import asyncio, os, sys, time
from pathlib import Path
import asyncpg, redis
from infra.embedded import EmbeddedServices
from infra.logging import configure
configure("info", json=True)
start, barrier = float(sys.argv[2]), Path(sys.argv[3])
while time.time() < start:
    pass
services = EmbeddedServices(Path(sys.argv[1]))
try:
    database_url, redis_url = services.start_postgres(), services.start_redis()
    (barrier / str(os.getpid())).touch()
    while len(list(barrier.iterdir())) < 4:  # everyone is started before anyone leaves
        time.sleep(0.05)
    assert asyncio.run(asyncpg.connect(database_url)).is_closed() is False
    assert redis.Redis.from_url(redis_url).incr("users") >= 1
finally:
    services.stop()
"""


def test_processes_starting_together_share_one_server_of_each(scratch_dir: Path) -> None:
    data, barrier = scratch_dir / "data", scratch_dir / "barrier"
    barrier.mkdir()
    start = time.time() + 2.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _USE_AT, str(data), str(start), str(barrier)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=90) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in results]
    started = [json.loads(line) for out, err in results for line in (out + err).splitlines() if "_started" in line]
    assert len(started) == 8
    assert sorted(e["event"] for e in started if not e["adopted"]) == [  # one of each server was started
        "embedded_postgres_started",
        "embedded_redis_started",
    ]
    assert _postgres_of(data / "postgres") == []
    assert not (data / "redis" / "server.json").exists()
