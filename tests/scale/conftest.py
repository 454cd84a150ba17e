"""One PostgreSQL of the scale suites' own for the whole session (PgBouncer sits in front of it,
a streaming replica follows it), migrated once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.migrate import migrate
from tests.fault.servers import OwnPostgres
from tests.scale.servers import own_primary


@pytest.fixture(scope="session")
def primary_server() -> Iterator[OwnPostgres]:
    with own_primary() as server:
        yield server


@pytest.fixture(scope="session")
async def primary(primary_server: OwnPostgres) -> OwnPostgres:
    await migrate(primary_server.admin_url)
    return primary_server
