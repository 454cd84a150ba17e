"""A request header read straight from the ASGI scope (names are lower-case there).

Per-request code reads the one or two headers it needs this way: Litestar's header map, which
`request.headers` builds for the whole list, costs more than most of what such code does."""

from __future__ import annotations

from typing import Any

__all__ = ["header"]


def header(scope: Any, name: bytes) -> str | None:
    """The first value of header `name` (lower-case), or None."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None
