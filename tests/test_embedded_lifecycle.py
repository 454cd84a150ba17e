"""`spean serve` with embedded servers, as a laptop runs it: killed, restarted, stopped with Ctrl+C.

Real processes throughout: the server is SIGKILLed (its PostgreSQL and Redis are orphaned),
started again (it adopts them), and stopped the way a terminal's Ctrl+C does (SIGINT to the
whole process group). Afterwards no server of that data folder may be left, nothing may have
been logged at error level, and Redis state (a rate limit) must survive each restart.
"""

from __future__ import annotations

import json
import os
import signal
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from infra.embedded import free_port
from tests.live import start_server, wait_ready

PHONE = "+85512345678"


def _servers_of(data_dir: Path) -> list[psutil.Process]:
    """PostgreSQL (its data folder on the command line) and Redis (working in its folder) of `data_dir`."""
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        try:
            name = process.info["name"] or ""
            is_postgres = name == "postgres" and str(data_dir) in " ".join(process.info["cmdline"] or ())
            is_redis = "redis-server" in name and Path(process.cwd()).is_relative_to(data_dir)
        except psutil.Error:
            continue
        if is_postgres or is_redis:
            found.append(process)
    return found


def _otp(port: int) -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/auth/otp",
        data=json.dumps({"phone": PHONE}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


class Server:
    def __init__(self, env: dict[str, str], log: Path, workers: int = 2) -> None:
        self.port = free_port()
        self.log = log
        self.proc = start_server(env, self.port, log, "--workers", str(workers), new_session=True)
        wait_ready(self.port, self.proc, log, timeout_s=90)

    def signal_group(self, signum: int) -> int:
        os.killpg(self.proc.pid, signum)
        return self.proc.wait(60)


@pytest.fixture
def data_dir(scratch_dir: Path) -> Iterator[Path]:
    yield scratch_dir / "data"
    for process in _servers_of(scratch_dir):  # a failed test must not leak servers either
        process.kill()


@pytest.fixture
def env(data_dir: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return environ | {
        "SPEAN_DATA_DIR": str(data_dir),
        "SPEAN_LOG_JSON": "true",
        "SPEAN_LOG_LEVEL": "info",
        "SPEAN_OTP_PER_PHONE_PER_HOUR": "2",
    }


def _errors(log: Path) -> list[str]:
    """Lines above info level (a server killed instead of stopped logs a warning), or unstructured."""
    bad = []
    for line in log.read_text().splitlines():
        try:
            level = json.loads(line).get("level")
        except ValueError:
            level = "raw"  # tracebacks and anything not logged through structlog
        if level not in {"debug", "info"}:
            bad.append(line)
    return bad


def test_killed_restarted_and_interrupted_server_leaves_nothing_behind(
    env: dict[str, str], data_dir: Path, tmp_path: Path
) -> None:
    first = Server(env, tmp_path / "first.log")
    assert [_otp(first.port), _otp(first.port)] == [202, 202]
    assert first.signal_group(signal.SIGKILL) == -signal.SIGKILL
    orphans = _servers_of(data_dir)
    assert {p.name() for p in orphans} >= {"postgres"}, "the scenario needs orphaned servers"

    second = Server(env, tmp_path / "second.log")
    assert _otp(second.port) == 429  # counted before the crash
    started = [json.loads(line) for line in second.log.read_text().splitlines() if "_started" in line]
    assert {(e["event"], e["adopted"]) for e in started} == {
        ("embedded_postgres_started", True),
        ("embedded_redis_started", True),
    }
    assert second.signal_group(signal.SIGINT) == 0
    assert _servers_of(data_dir) == []
    assert _errors(second.log) == []

    third = Server(env, tmp_path / "third.log", workers=1)  # uvicorn serves in this process
    assert _otp(third.port) == 429  # Redis kept its data on disk across a clean stop
    assert third.signal_group(signal.SIGINT) == 0
    assert _servers_of(data_dir) == []
    assert _errors(third.log) == []
    assert not list(data_dir.glob("prometheus-*"))  # each server's metrics folder went with it
