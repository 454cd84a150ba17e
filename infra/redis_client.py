"""The one place a Redis client is built from REDIS_URL: a single server, a Sentinel-watched
master, or a Redis Cluster, chosen by the URL's scheme.

    redis://[user:password@]host:port/db          one server (also rediss://, unix://)
    redis+sentinel://[user:password@]host:port,host:port,.../service[/db]
    redis+cluster://[user:password@]host:port,host:port,...
    (rediss+sentinel://, rediss+cluster://: the same over TLS)

For Sentinel the hosts are the sentinels, `service` the monitored master's name (as in
sentinel.conf), the credentials those of the Redis servers; `?sentinel_password=` if the sentinels
want one. For a cluster the hosts are a few of its nodes (the rest are discovered); a cluster has
database 0 only.

Every client waits a few seconds for a free connection rather than failing at once under load, and
retries a command once on a fresh connection (after a restart or a failover every pooled
connection is dead, and only the first command on each would notice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff, NoBackoff

__all__ = ["RedisClient", "RedisUrl", "RedisUrlError", "connect", "is_cluster", "parse"]

RedisClient = Redis | RedisCluster
Mode = Literal["single", "sentinel", "cluster"]

MAX_CONNECTIONS = 64  # per worker, per server; a blocking pool waits up to POOL_TIMEOUT_S for one
POOL_TIMEOUT_S = 5
CONNECT_TIMEOUT_S = 5


class RedisUrlError(ValueError):
    """REDIS_URL cannot be used; the message says why."""


@dataclass(frozen=True)
class RedisUrl:
    mode: Mode
    url: str  # single: the URL as given (redis-py parses it)
    nodes: tuple[tuple[str, int], ...] = ()  # sentinels, or cluster nodes
    service: str = ""  # sentinel: the master's name
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    tls: bool = False


def parse(url: str) -> RedisUrl:
    scheme, _, _ = url.partition("://")
    if scheme in ("redis", "rediss", "unix"):
        return RedisUrl("single", url)
    mode: Mode
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        mode = "sentinel"
    elif scheme in ("redis+cluster", "rediss+cluster"):
        mode = "cluster"
    else:
        raise RedisUrlError(
            f"REDIS_URL scheme {scheme!r} is not one of redis, rediss, unix, redis+sentinel, redis+cluster"
        )
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username, password = (unquote(user) or None), (unquote(secret) if colon else None)
    nodes = tuple(_node(h, mode) for h in hosts.split(",") if h)
    if not nodes:
        raise RedisUrlError(f"REDIS_URL ({scheme}) names no host:port")
    path = [p for p in parts.path.split("/") if p]
    query = parse_qs(parts.query)
    service, db = "", 0
    if mode == "sentinel":
        if not path or len(path) > 2:
            raise RedisUrlError("REDIS_URL (redis+sentinel) must end in /<master name>[/<db>]")
        service = unquote(path[0])
        db = _db(path[1]) if len(path) == 2 else 0
    elif path and (len(path) > 1 or _db(path[0]) != 0):
        raise RedisUrlError("REDIS_URL (redis+cluster): a cluster has database 0 only")
    return RedisUrl(
        mode,
        url,
        nodes,
        service,
        db,
        username,
        password,
        sentinel_password=query.get("sentinel_password", [None])[0],
        tls=scheme.startswith("rediss"),
    )


def _node(text: str, mode: Mode) -> tuple[str, int]:
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit():
        default = 26379 if mode == "sentinel" else 6379
        if ":" not in text:
            return text, default
        raise RedisUrlError(f"REDIS_URL: {text!r} is not host:port")
    return host.strip("[]"), int(port)


def _db(text: str) -> int:
    if not text.isdigit():
        raise RedisUrlError(f"REDIS_URL: database {text!r} is not a number")
    return int(text)


def connect(url: str) -> RedisClient:
    """A client for REDIS_URL (no connection is made until first use)."""
    spec = parse(url)
    if spec.mode == "single":
        # from_pool hands the pool to the client, so closing the client closes its connections.
        return Redis.from_pool(
            BlockingConnectionPool.from_url(
                url,
                max_connections=MAX_CONNECTIONS,
                timeout=POOL_TIMEOUT_S,
                decode_responses=True,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                retry=Retry(NoBackoff(), 1),
            )
        )
    if spec.mode == "sentinel":
        return _sentinel(spec)
    return _cluster(spec)


def _sentinel(spec: RedisUrl) -> Redis:
    sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": 1, "socket_timeout": 1}
    if spec.sentinel_password:
        sentinel_kwargs["password"] = spec.sentinel_password
    sentinel = Sentinel(list(spec.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    master: Redis = sentinel.master_for(
        spec.service,
        redis_class=_SentinelMaster,
        connection_pool_class=_BlockingSentinelPool,
        db=spec.db,
        username=spec.username,
        password=spec.password,
        ssl=spec.tls,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        # A fresh connection asks the sentinels where the master is now: after a failover the
        # retry lands on the promoted replica.
        retry=Retry(NoBackoff(), 1),
    )
    return master


class _SentinelMaster(Redis):
    """The master's client; closing it closes its connections to the sentinels too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            for sentinel in pool.sentinel_manager.sentinels:
                await sentinel.aclose()


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """Sentinel's pool (connections go to whichever server the sentinels name master) that waits
    for a free connection like BlockingConnectionPool instead of failing at once."""

    def __init__(self, service_name: str, sentinel_manager: Sentinel, **kwargs: Any) -> None:
        kwargs.setdefault("max_connections", MAX_CONNECTIONS)
        kwargs.setdefault("timeout", POOL_TIMEOUT_S)
        super().__init__(service_name, sentinel_manager, **kwargs)  # type: ignore[no-untyped-call]


def _cluster(spec: RedisUrl) -> RedisCluster:
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in spec.nodes],
        username=spec.username,
        password=spec.password,
        ssl=spec.tls,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        max_connections=MAX_CONNECTIONS,
        # While a failed master's replica is being promoted (the cluster's node timeout plus an
        # election: a few seconds) commands on its slots fail; a few paced retries, each after
        # fetching the slot map again, ride out the short ones.
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.1), 3),
    )


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


def node(url: str, host: str, port: int) -> Redis:
    """A plain client of one cluster node (REDIS_URL's credentials and TLS), for what must stay on
    that node: a sharded subscription. Errors are not retried here: its owner reacts to them."""
    spec = parse(url)
    return Redis(
        host=host,
        port=port,
        username=spec.username,
        password=spec.password,
        ssl=spec.tls,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )
