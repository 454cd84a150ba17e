"""Two real `spean serve` processes on the test database: races must hold across processes, where
nothing in one Python process can serialise them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from infra.config import Settings
from infra.embedded import free_port


@dataclass(frozen=True)
class Live:
    urls: tuple[str, str]  # http://127.0.0.1:port of each server process

    def url(self, i: int) -> str:
        """The i-th request goes to server i % 2, so every race spans both processes."""
        return self.urls[i % 2]


def _wait_ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"server on {port} not ready:\n{log.read_text()}")


@pytest.fixture(scope="package")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("races")
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SPEAN_SECRET_KEY": settings.secret_key,
        "SPEAN_DATA_DIR": str(folder),
        "SPEAN_LOG_LEVEL": "warning",
        "SPEAN_DB_POOL_MAX": "20",  # as in production; torn down after this package (the server is shared)
    }
    ports = [free_port(), free_port()]
    procs = []
    for port in ports:
        with (folder / f"server-{port}.log").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "spean.cli", "serve", "--port", str(port), "--no-migrate"],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        for port, proc in zip(ports, procs, strict=True):
            _wait_ready(port, proc, folder / f"server-{port}.log")
        yield Live((f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}"))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(15)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        yield client
