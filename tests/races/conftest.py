"""Two real `spean serve` processes on the test database: races must hold across processes, where
nothing in one Python process can serialise them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import pytest

from infra.config import Settings
from infra.embedded import free_port
from tests.live import server_env, start_server, wait_ready


@dataclass(frozen=True)
class Live:
    urls: tuple[str, str]  # http://127.0.0.1:port of each server process

    def url(self, i: int) -> str:
        """The i-th request goes to server i % 2, so every race spans both processes."""
        return self.urls[i % 2]


@pytest.fixture(scope="package")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    folder = tmp_path_factory.mktemp("races")
    # 20 connections per worker, as in production; torn down after this package (the server is shared)
    env = server_env(settings, folder, SPEAN_DB_POOL_MAX="20")
    ports = [free_port(), free_port()]
    procs = [start_server(env, port, folder / f"server-{port}.log", "--no-migrate") for port in ports]
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_ready(port, proc, folder / f"server-{port}.log")
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
