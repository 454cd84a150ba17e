"""Two real `spean serve` processes sharing PostgreSQL and Redis: the signalling must cross them."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from infra import redis_client
from infra.config import Settings
from infra.embedded import EmbeddedServices, free_port
from tests.factory import Consultation, Factory
from tests.live import server_env, serving, start_server, wait_ready


@dataclass
class Servers:
    a: str  # ws://127.0.0.1:port
    b: str
    http_a: str
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]]
    ports: list[int]
    folder: Path

    def kill_and_restart_b(self) -> None:
        """Worker B dies without any clean-up (SIGKILL), and a new B starts on the same port."""
        self.procs[1].kill()
        self.procs[1].wait(10)
        log = self.folder / f"server-{self.ports[1]}-restarted.log"
        self.procs[1] = start_server(self.env, self.ports[1], log, "--no-migrate")
        wait_ready(self.ports[1], self.procs[1], log)


@pytest.fixture(scope="session")
def rtc_servers(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    folder = tmp_path_factory.mktemp("rtc")
    env = server_env(
        settings,
        folder,
        SPEAN_RTC_GRACE="5",
        SPEAN_TURN_URLS="turn:127.0.0.1:3478",
        SPEAN_TURN_SECRET="coturn-secret",
        SPEAN_STUN_URLS="stun:127.0.0.1:3478",
    )
    ports = [free_port(), free_port()]
    with serving(env, ports, folder, "--no-migrate") as procs:
        yield Servers(
            f"ws://127.0.0.1:{ports[0]}",
            f"ws://127.0.0.1:{ports[1]}",
            f"http://127.0.0.1:{ports[0]}",
            env,
            procs,
            ports,
            folder,
        )


@pytest.fixture
async def consultation(factory: Factory) -> Consultation:
    return await factory.consultation()


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[Redis]:
    """An embedded Redis of the test's own, for tests that flush scripts or kill connections."""
    services = EmbeddedServices(tmp_path / "data")
    try:
        client = redis_client.connect(services.start_redis())
        assert isinstance(client, Redis)
        yield client
        await client.aclose()
    finally:
        services.stop()
