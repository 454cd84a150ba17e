"""Redis as a ministry runs it, started by the tests on loopback: a Redis Cluster of three masters
each with a replica (`redis-cli --cluster create`), and a master + replica watched by three
Sentinels. Real redis-server processes; a failover is a `kill -9` of a master."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fault.servers import wait_until

NODE_TIMEOUT_MS = 1000  # how long before a silent master is failed over (production: 15 s)
SERVICE = "spean"  # the Sentinel master name


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (apt-get install -y redis-server): the Redis Cluster suite needs it")
    return found


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")
    return False


def cli(port: int, *args: str) -> str:
    done = subprocess.run(
        [_binary("redis-cli"), "-p", str(port), *args], capture_output=True, timeout=30, text=True, check=False
    )
    assert done.returncode == 0, f"redis-cli {args}: {done.stdout} {done.stderr}"
    return done.stdout.strip()


@dataclass
class Server:
    port: int
    folder: Path
    extra: tuple[str, ...] = ()
    sentinel: bool = False
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / ("sentinel.conf" if self.sentinel else "redis.conf")
        if not conf.exists():
            lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.folder}", *self.extra]
            conf.write_text("\n".join(lines) + "\n")
        args = [_binary("redis-server"), str(conf), *(["--sentinel"] if self.sentinel else [])]
        with (self.folder / "server.log").open("ab") as out:
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        wait_until(lambda: _answers(self.port), 10, f"redis on {self.port} did not start: {self.log_tail()}")

    def kill(self) -> None:
        """A real failure: SIGKILL, no goodbye to peers or clients."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return (self.folder / "server.log").read_text()[-2000:]
        return ""


@dataclass
class Cluster:
    nodes: list[Server]
    folder: Path

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:3])

    def live_port(self) -> int:
        return next(n.port for n in self.nodes if n.running)

    def master_of(self, key: str) -> Server:
        serving = self.serving(key)
        assert serving is not None, f"no master serves {key}"
        return serving

    def serving(self, key: str) -> Server | None:
        """The master serving `key`'s slot now (asked of any live node), if any."""
        port = self.live_port()
        slot = int(cli(port, "CLUSTER", "KEYSLOT", key))
        for line in cli(port, "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if "master" not in fields[2] or "fail" in fields[2]:
                continue
            for part in fields[8:]:
                low, _, high = part.partition("-")
                if low.isdigit() and int(low) <= slot <= int(high or low):
                    node_port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                    return next(n for n in self.nodes if n.port == node_port)
        return None

    def replicated(self, master: Server) -> bool:
        """Whether every replica of `master` has everything written to it so far (replication is
        asynchronous: a failover keeps only what the promoted replica had)."""
        info = dict(line.split(":", 1) for line in cli(master.port, "INFO", "replication").splitlines() if ":" in line)
        offset = int(info["master_repl_offset"])
        replicas = [v for k, v in info.items() if k.startswith("slave") and k[5:].isdigit()]
        acked = [int(dict(f.split("=", 1) for f in r.split(","))["offset"]) for r in replicas]
        return bool(acked) and min(acked) >= offset

    def healthy(self) -> bool:
        port = self.live_port()
        info = cli(port, "CLUSTER", "INFO")
        return "cluster_state:ok" in info

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


@contextlib.contextmanager
def own_cluster(ports: range) -> Iterator[Cluster]:
    """Three masters, each with a replica, on six consecutive `ports`."""
    assert len(ports) == 6
    folder = Path(tempfile.mkdtemp(prefix="spean-redis-cluster-"))
    settings = (
        "cluster-enabled yes",
        "cluster-config-file nodes.conf",
        f"cluster-node-timeout {NODE_TIMEOUT_MS}",
        "cluster-replica-validity-factor 0",  # a replica may always take over (no data age limit)
        "save ''",
        "appendonly no",
    )
    cluster = Cluster([Server(p, folder / str(p), settings) for p in ports], folder)
    try:
        for node in cluster.nodes:
            node.start()
        cli(
            ports[0],
            *("--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)),
            *("--cluster-replicas", "1", "--cluster-yes"),
        )
        wait_until(cluster.healthy, 20, "the cluster did not become healthy")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class SentinelSet:
    master: Server
    replica: Server
    sentinels: list[Server]
    folder: Path
    _killed: list[Server] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels) + f"/{SERVICE}/0"

    def master_port(self) -> int:
        """The master's port as the sentinels now see it."""
        for sentinel in self.sentinels:
            if sentinel.running:
                host_port = cli(sentinel.port, "SENTINEL", "get-master-addr-by-name", SERVICE).split()
                return int(host_port[1])
        raise AssertionError("no sentinel runs")

    def stop(self) -> None:
        for server in (*self.sentinels, self.master, self.replica):
            server.kill()


@contextlib.contextmanager
def own_sentinels(ports: range) -> Iterator[SentinelSet]:
    """A master, its replica and three sentinels (quorum 2) on five consecutive `ports`."""
    assert len(ports) == 5
    folder = Path(tempfile.mkdtemp(prefix="spean-redis-sentinel-"))
    data = ("save ''", "appendonly no")
    master = Server(ports[0], folder / "master", data)
    replica = Server(ports[1], folder / "replica", (*data, f"replicaof 127.0.0.1 {ports[0]}"))
    watch = (
        f"sentinel monitor {SERVICE} 127.0.0.1 {ports[0]} 2",
        f"sentinel down-after-milliseconds {SERVICE} {NODE_TIMEOUT_MS}",
        f"sentinel failover-timeout {SERVICE} 10000",
        f"sentinel parallel-syncs {SERVICE} 1",
    )
    sentinels = [Server(p, folder / f"sentinel-{p}", watch, sentinel=True) for p in ports[2:]]
    group = SentinelSet(master, replica, sentinels, folder)
    try:
        master.start()
        replica.start()
        wait_until(lambda: "master_link_status:up" in cli(replica.port, "INFO", "replication"), 20, "no replication")
        for sentinel in sentinels:
            sentinel.start()
        # Every sentinel knows the replica and the other sentinels before a failover is asked of them.
        wait_until(
            lambda: all(
                "num-other-sentinels\n2" in cli(s.port, "SENTINEL", "master", SERVICE)
                and "num-slaves\n1" in cli(s.port, "SENTINEL", "master", SERVICE)
                for s in sentinels
            ),
            30,
            "the sentinels did not find each other",
        )
        yield group
    finally:
        group.stop()
        shutil.rmtree(folder, ignore_errors=True)
