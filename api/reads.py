"""Which requests read from the replica (DATABASE_REPLICA_URL), and what keeps that safe.

Only GETs of FHIR searches and of the routes of STALE_TOLERANT (exports, work lists, free slots)
read there: an answer a moment old is still a right answer to them. Everything else, and every write, uses the
primary. A request is served by the primary instead when:

- the replica is down, or further behind than SPEAN_DB_REPLICA_MAX_LAG (infra.replica);
- its caller wrote something in the last moments (read-your-writes): a committed write marks its
  user in Redis for longer than the replica may lag (`MarkWrites`), so whoever just booked sees
  the booking in their lists; while Redis is away, every read goes to the primary;
- the replica failed under it: the request runs again on the primary (`ReplicaFailed`), its
  answer never sent, since nothing leaves api.transaction before the transaction is settled.

Reads of patient data are audited, and a replica cannot write: the audit events of a request
served by the replica are kept aside (domain.audit.trail.written_later) and written on the
primary before its answer leaves; if that fails, the answer is a 503, as any read whose audit
cannot be written. Access is decided on the replica's data, so a consent revoked on the primary
stops reads there within the same bound.

The table names route templates, not handlers: the routes stay where their controllers put them,
and a FHIR search type added later reads from the replica by the same rule.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import AsyncIterator
from typing import Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter

from domain.audit import trail
from infra import outage, redis_keys
from infra.db import Connection
from infra.replica import CHECK_EVERY_S, Replica

log = structlog.get_logger(__name__)

# Besides every FHIR search (a GET on a type, /fhir/{Type}: see `stale_tolerant`).
STALE_TOLERANT: frozenset[str] = frozenset(
    {
        # free slots
        "/v1/slots",
        # exports
        "/fhir/Patient/{patient_id}/$everything",
        "/v1/facilities/{facility_id}/audit-events",
        # work lists
        "/v1/appointments",
        "/v1/facilities/{facility_id}/triage-queue",
        "/v1/facilities/{facility_id}/referrals",
        "/v1/facilities/{facility_id}/self-registrations",
    }
)
_FHIR_SEARCH = re.compile(r"/fhir/(?!metadata$)[A-Za-z]+|/fhir/\{resource_type\}")


@functools.cache
def stale_tolerant(template: str) -> bool:
    """Whether GETs of this route template may be answered from the replica."""
    return template in STALE_TOLERANT or _FHIR_SEARCH.fullmatch(template) is not None


SERVED = Counter(
    "spean_db_replica_reads_total",
    "Stale-tolerant reads, by the server that answered and why",
    ["served_by", "reason"],  # replica/fresh; primary/down, lagging, own_write, failover
)

_SCOPE_KEPT = "spean.audit_kept"  # audit events of a replica-served attempt, for the primary
_SCOPE_FAILED_OVER = "spean.replica_failed"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ReplicaFailed(Exception):
    """The replica died under a request: run it again on the primary."""


_wrote_key = redis_keys.db_wrote


def _sticky_ms(replica: Replica) -> int:
    # A read after this sees the write on any replica fresh enough to serve it: that one has
    # replayed all the primary had max_lag_s before the read. The margin covers the checks' own
    # round trips and the clocks of two processes.
    return int((replica.max_lag_s + 2 * CHECK_EVERY_S) * 1000) + 1


async def _replica_for(scope: Scope) -> Replica | None:
    """The replica if this request may read from it now, else None (and why, counted)."""
    replica: Replica | None = scope["app"].state.replica
    if replica is None or scope.get("method") != "GET" or not stale_tolerant(scope.get("path_template", "")):
        return None
    reason: str | None = "failover" if scope.get(_SCOPE_FAILED_OVER) else replica.unusable()
    if reason is None and (user := scope.get("user")) is not None:
        reason = await _own_write(scope, user.user_id)
    if reason is not None:
        SERVED.labels("primary", reason).inc()
        return None
    SERVED.labels("replica", "fresh").inc()
    return replica


async def _own_write(scope: Scope, user_id: object) -> str | None:
    try:
        wrote = await scope["app"].state.redis.exists(_wrote_key(user_id))
    except Exception as exc:
        if (dependency := outage.unavailable(exc)) is None:
            raise
        dependency.down(exc)
        return "own_write"  # cannot tell whether they just wrote: the primary is right either way
    outage.REDIS.up()
    return "own_write" if wrote else None


@contextlib.asynccontextmanager
async def connection(scope: Scope) -> AsyncIterator[Connection]:
    """The request's connection: the replica's when it may serve this request, else the primary's."""
    scope.pop(_SCOPE_KEPT, None)  # type: ignore[misc]
    replica = await _replica_for(scope)
    if replica is None:
        async with scope["app"].state.pool.acquire() as conn:
            yield conn
        return
    conn = None
    try:
        async with replica.pool.acquire() as conn:
            with trail.written_later(conn) as kept:
                scope[_SCOPE_KEPT] = kept  # type: ignore[literal-required]
                yield conn
            if conn.is_closed():  # died under the handler, whose answer then says so
                raise ConnectionError("the replica's connection closed during the request")
    except Exception as exc:
        if outage.unavailable(exc) is None or (conn is not None and not conn.is_closed()):
            raise
        replica.failed(exc)
        scope[_SCOPE_FAILED_OVER] = True  # type: ignore[literal-required]
        raise ReplicaFailed from exc


async def write_kept_audit(scope: Scope) -> None:
    """Write on the primary the audit events a replica-served request kept aside."""
    kept: list[trail.Event] | None = scope.pop(_SCOPE_KEPT, None)  # type: ignore[misc]
    if kept:
        async with scope["app"].state.pool.acquire() as conn, conn.transaction():
            await trail.write(conn, kept)


class MarkWrites:
    """Marks the caller of a committed write in Redis before its answer leaves, so that their
    next reads come from the primary (read-your-writes). Only in apps with a replica."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if scope["type"] != ScopeType.HTTP or scope.get("method") in _SAFE_METHODS or user is None:
            await self.app(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            if message["type"] == "http.response.start" and 200 <= message["status"] < 400:
                replica: Replica = scope["app"].state.replica
                try:
                    await scope["app"].state.redis.set(_wrote_key(user.user_id), 1, px=_sticky_ms(replica))
                except Exception as exc:
                    # Committed already: answer it. Reads check the same Redis, and go to the
                    # primary while it is away.
                    if (dependency := outage.unavailable(exc)) is None:
                        raise
                    dependency.down(exc)
            await send(message)

        await self.app(scope, receive, send_marked)


def check_table(routes: Any) -> list[str]:
    """Templates of STALE_TOLERANT that name no GET route of the app (a route renamed or gone)."""
    served = {route.path_format for route in routes if "GET" in getattr(route, "methods", ())}
    return sorted(STALE_TOLERANT - served)
