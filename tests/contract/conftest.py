"""A real `spean serve` process on the suite's database, for checks that need a live server."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.config import Settings
from infra.embedded import free_port


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"{base}/ready", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"server not ready:\n{log.read_text()}")


@pytest.fixture(scope="session")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A `spean serve` process on the suite's database, logging JSON at info level."""
    folder = tmp_path_factory.mktemp("live")
    env = {
        **os.environ,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "SPEAN_SECRET_KEY": settings.secret_key,
        "SPEAN_DATA_DIR": str(folder),
        "SPEAN_LOG_LEVEL": "info",
        "SPEAN_LOG_JSON": "true",
        "SPEAN_OTP_PER_IP_PER_HOUR": "1000000",
    }
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spean.cli", "serve", "--port", str(port), "--no-migrate"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(base, proc, log)
        yield base, folder
    finally:
        proc.terminate()
        proc.wait(15)
