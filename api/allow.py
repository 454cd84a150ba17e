"""OPTIONS answers list every method of the path.

Litestar's automatic OPTIONS handler reads the methods of the route it was made for, which is a
partial route when several handlers share a path (GET and POST /v1/appointments): it answered
`Allow: OPTIONS, POST`. This `before_send` hook writes the full list, the same one a 405 gives.
"""

from __future__ import annotations

from typing import Any

from litestar.routes import HTTPRoute


async def full_allow_header(message: Any, scope: Any) -> None:
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    handler = scope.get("route_handler")
    if handler is None or handler.handler_name != "options_handler":
        return
    # OPTIONS is rare: reading the (final) route table each time costs less than keeping a copy.
    for route in scope["app"].routes:
        if isinstance(route, HTTPRoute) and route.path in handler.paths:
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"allow"]
            message["headers"] = [*headers, (b"allow", ", ".join(sorted(route.methods)).encode())]
            return
