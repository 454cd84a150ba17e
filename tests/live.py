"""Real `spean serve` processes for the tests that need a live server (several workers, a log to
read, a process to kill): started the way an operator starts one, ready when /ready says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.config import Settings


def server_env(settings: Settings, folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a server on the suite's database, Redis and signing key."""
    return {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "SPEAN_SECRET_KEY": settings.secret_key or "",
        "SPEAN_DATA_DIR": str(folder),
        "SPEAN_LOG_LEVEL": "warning",
        "SPEAN_SMS_HOURLY_BUDGET": str(10**9),  # shared by every run on this Redis (tests/conftest.py)
        # The suite's database is shared: only the notification tests' own workers deliver from it.
        "SPEAN_WORKER_IN_API": "false",
        **extra,
    }


def start_server(
    env: dict[str, str], port: int, log: Path, *args: str, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """`spean serve --port PORT ARGS...`, its output in `log`; `new_session` gives it its own
    process group, as a terminal does."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "spean.cli", "serve", "--port", str(port), *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


def wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 30) -> None:
    """Until the server's /ready answers 200; fails with its log if it exits or takes too long."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"server on {port} not ready:\n{log.read_text()}"
        time.sleep(0.1)


@contextmanager
def serving(env: dict[str, str], ports: list[int], folder: Path, *args: str) -> Iterator[list[subprocess.Popen[bytes]]]:
    """One `spean serve ARGS...` per port, each logging to `folder`/server-PORT.log, all ready;
    stopped (SIGTERM, then waited for) afterwards. The list is the caller's to replace a process in."""
    procs = [start_server(env, port, folder / f"server-{port}.log", *args) for port in ports]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_ready(port, proc, folder / f"server-{port}.log")
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)
