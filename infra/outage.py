"""When PostgreSQL or Redis is away: recognise it, say so once, and retry with a growing pause.

A dependency's outage is an expected event (a restart, a failover), not a bug: requests answer
503 with Retry-After, background loops back off, and each worker logs ONE line when a
dependency goes away and one when it returns, instead of a traceback per attempt.
"""

from __future__ import annotations

import random
import socket
import time
from dataclasses import dataclass, field

import asyncpg
import redis.exceptions
import structlog

__all__ = ["POSTGRES", "REDIS", "RETRY_AFTER_S", "Backoff", "Dependency", "unavailable"]

log = structlog.get_logger(__name__)

RETRY_AFTER_S = 3  # PostgreSQL restarts in about a second, Redis in less; phones retry after this

# Refused or dropped connections, a server shutting down or starting up (57P01-57P03), too many
# clients (53300), a connection lost in the middle of a statement.
_POSTGRES_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError included
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    ConnectionError,  # refused, reset, aborted: asyncpg lets the socket's own error through
    socket.gaierror,
    TimeoutError,  # a pool acquire or a statement that waited too long
)
_REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,  # BusyLoadingError and MaxConnectionsError included
    redis.exceptions.TimeoutError,
    # A Redis Cluster between a master's failure and its replica's promotion, or a Sentinel
    # failover that left a connection on the demoted master (it answers READONLY).
    redis.exceptions.ClusterError,  # ClusterDownError, MasterDownError; redirections exhausted
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.ReadOnlyError,
)


@dataclass
class Dependency:
    """One external server's state as this process last saw it; logs only the transitions."""

    name: str
    code: str  # the problem code requests get while it is away
    _down_since: float | None = field(default=None, repr=False)

    @property
    def is_down(self) -> bool:
        return self._down_since is not None

    def down(self, error: BaseException) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("dependency_unavailable", dependency=self.name, error=f"{type(error).__name__}: {error}")

    def up(self) -> None:
        if self._down_since is not None:
            seconds = round(time.monotonic() - self._down_since, 1)
            self._down_since = None
            log.warning("dependency_restored", dependency=self.name, after_s=seconds)


POSTGRES = Dependency("postgres", "database_unavailable")
REDIS = Dependency("redis", "cache_unavailable")


def unavailable(error: BaseException) -> Dependency | None:
    """The dependency whose absence raised `error`, or None for any other error."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := unavailable(inner)) is not None:
                return found
        return None
    if isinstance(error, _REDIS_ERRORS):
        return REDIS
    if isinstance(error, redis.exceptions.RedisClusterException) and "cannot be connected" in str(error):
        return REDIS  # no node of the cluster answered
    if isinstance(error, _POSTGRES_ERRORS):
        return POSTGRES
    if isinstance(error, asyncpg.InterfaceError) and "clos" in str(error):
        return POSTGRES  # "connection is closed", "pool is closing": the socket died under us
    if isinstance(error, asyncpg.InternalClientError) and "cannot switch to state" in str(error):
        return POSTGRES  # a pooled connection that the server's shutdown left half-closed
    return None


@dataclass
class Backoff:
    """Exponential pauses with full jitter, capped: retries spread out and never stop."""

    first_s: float = 0.5
    cap_s: float = 5.0
    _attempt: int = 0

    def next(self) -> float:
        ceiling = min(self.cap_s, self.first_s * 2**self._attempt)
        self._attempt = min(self._attempt + 1, 32)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security

    def reset(self) -> None:
        self._attempt = 0
