"""Request-scoped dependencies: the caller, and one database transaction per request.

Handlers pass the connection to domain functions; the transaction commits when the handler
returns and rolls back when it raises, before the response is sent. Under an Idempotency-Key the
middleware already holds the transaction (so the stored response commits with the writes), and
the handler joins it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide

from api.idempotency import SCOPE_CONN
from domain.principal import Principal
from infra.config import Settings
from infra.db import Connection


async def provide_conn(request: Request[Any, Any, Any]) -> AsyncGenerator[Connection, None]:
    bound: Connection | None = request.scope.get(SCOPE_CONN)  # type: ignore[assignment]
    if bound is not None:
        yield bound
        return
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        yield conn


def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    user = request.scope.get("user")
    assert isinstance(user, Principal), "route is missing authentication"
    return user


def provide_settings(state: State) -> Settings:
    settings: Settings = state.settings
    return settings


DEPENDENCIES = {
    "conn": Provide(provide_conn),
    "principal": Provide(provide_principal, sync_to_thread=False),
    "settings": Provide(provide_settings, sync_to_thread=False),
}

# Handler parameter types: the name of the parameter picks the dependency.
Conn = NamedDependency[Connection]
Caller = NamedDependency[Principal]
Config = NamedDependency[Settings]
