"""A real `spean serve` process on the suite's database, for checks that need a live server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.config import Settings
from infra.embedded import free_port
from tests.live import server_env, start_server, wait_ready


@pytest.fixture(scope="session")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A `spean serve` process on the suite's database, logging JSON at info level."""
    folder = tmp_path_factory.mktemp("live")
    env = server_env(
        settings, folder, SPEAN_LOG_LEVEL="info", SPEAN_LOG_JSON="true", SPEAN_OTP_PER_IP_PER_HOUR="1000000"
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / "server.log"
    proc = start_server(env, port, log, "--no-migrate")
    try:
        wait_ready(port, proc, log)
        yield base, folder
    finally:
        proc.terminate()
        proc.wait(15)
