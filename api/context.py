"""Per-request context: the request id (api.request_id) bound to every log line, plus request
metrics and an access log line. The X-Request-ID response header is stamped by the app's
`before_send` hook, so answers that never reach a route (404, 405) carry it too.

Everything here runs on every request: the metrics' labelled children are looked up once per
(method, route, status) and kept, instead of through `labels()` each time (a lock and a dict
walk per metric)."""

from __future__ import annotations

import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Counter, Histogram

from api.errors import status_of
from api.request_id import request_id_of
from infra import logging as logs

REQUESTS = Counter("spean_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "spean_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
_CHILDREN: dict[tuple[str, str, int], tuple[Any, Any]] = {}
_MAX_CHILDREN = 4096  # methods come from clients: past this, look up without keeping


def _observe(method: str, route: str, status: int, elapsed: float) -> None:
    children = _CHILDREN.get((method, route, status))
    if children is None:
        children = (REQUESTS.labels(method, route, str(status)), LATENCY.labels(method, route))
        if len(_CHILDREN) < _MAX_CHILDREN:
            _CHILDREN[(method, route, status)] = children
    children[0].inc()
    children[1].observe(elapsed)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        bound = logs.request_id.set(request_id_of(scope))
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        except Exception as exc:
            # Raised by an inner middleware (e.g. authentication): the app's exception handler,
            # outside this one, will answer with this status.
            status = status_of(exc)
            raise
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            method = scope.get("method", "")
            _observe(method, route, status, elapsed)
            if route not in ("/health", "/metrics"):
                logs.access(method, route, status, round(elapsed * 1000, 2))
            logs.request_id.reset(bound)
