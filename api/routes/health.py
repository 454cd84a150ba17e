"""Liveness, readiness and Prometheus metrics: unauthenticated, for load balancers and scrapers."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.openapi import ResponseSpec
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from api.transaction import NO_TRANSACTION
from infra import drain, outage

_PUBLIC = {"exclude_from_auth": True, **NO_TRANSACTION}


class Health(msgspec.Struct):
    status: str
    checks: dict[str, str] = {}


@get("/health", opt=_PUBLIC, tags=["ops"], summary="Liveness")
async def health() -> Health:
    return Health(status="ok")


@get(
    "/ready",
    opt=_PUBLIC,
    tags=["ops"],
    summary="Readiness: PostgreSQL and Redis answer, migrations applied, not shutting down",
    responses={
        503: ResponseSpec(data_container=Health, description="A dependency does not answer, or the process is draining")
    },
)
async def ready(request: Request[Any, Any, Any]) -> Response[Health]:
    if drain.draining():  # SIGTERM received: out of rotation while what is in flight finishes
        return Response(Health(status="draining"), status_code=503)
    state = request.app.state
    checks: dict[str, str] = {}

    async def postgres() -> None:
        async with state.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")

    async def redis() -> None:
        await state.redis.ping()

    for dependency, probe in ((outage.POSTGRES, postgres), (outage.REDIS, redis)):
        try:
            await asyncio.wait_for(probe(), timeout=2)
            checks[dependency.name] = "ok"
            dependency.up()
        except Exception as exc:
            checks[dependency.name] = f"error: {type(exc).__name__}"
            if outage.unavailable(exc) is not None:
                dependency.down(exc)
    if state.migrations_pending:  # started while PostgreSQL was away: not migrated yet
        checks["migrations"] = "pending"
    ok = all(v == "ok" for v in checks.values())
    return Response(Health(status="ok" if ok else "unavailable", checks=checks), status_code=200 if ok else 503)


@get("/metrics", opt=_PUBLIC, tags=["ops"], summary="Prometheus metrics", media_type="text/plain")
async def metrics() -> Response[bytes]:
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several workers: aggregate what every process wrote to the shared folder.
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    # Litestar appends "; charset=utf-8" to every text/* type: hand it the type without one.
    media_type = "; ".join(p for p in CONTENT_TYPE_LATEST.split("; ") if not p.startswith("charset="))
    return Response(generate_latest(registry), media_type=media_type)
