"""Test set-up: real PostgreSQL and Redis, a fresh database per run, the app driven over HTTP.

With DATABASE_URL / REDIS_URL set, a new database is created on that server (and dropped after);
without them, embedded servers are started under a temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.config import Settings, load_settings
from infra.db import create_pool
from infra.embedded import EmbeddedServices
from infra.logging import configure as configure_logging
from infra.migrate import migrate
from sms.sender import LogSmsSender
from spean.app import create_app
from tests.factory import Factory
from tests.fhir_conformance import CONFORMANCE, capture_fhir
from tests.scale import redis_servers

configure_logging("warning", json=False)


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="spean-test-") as folder:
        yield Path(folder)


@pytest.fixture
def scratch_dir() -> Iterator[Path]:
    """A fresh folder for embedded servers, outside pytest's tmp_path: as root, PostgreSQL runs
    as another user who must traverse the folders above, and a concurrent pytest resets
    /tmp/pytest-of-<user> to 0700."""
    with tempfile.TemporaryDirectory(prefix="spean-scratch-") as folder:
        yield Path(folder).resolve()


@pytest.fixture(scope="session")
def servers(data_dir: Path) -> Iterator[tuple[str, str]]:
    """(server admin DSN, redis URL): the configured servers, or embedded ones.

    SPEAN_TEST_REDIS=cluster (or sentinel) runs the suite on a Redis Cluster (a Sentinel-watched
    master) of its own instead, on ports 7100-7105 (7110-7114)."""
    embedded = EmbeddedServices(data_dir)
    try:
        with contextlib.ExitStack() as own:
            admin_dsn = os.environ.get("DATABASE_URL") or embedded.start_postgres("postgres")
            kind = os.environ.get("SPEAN_TEST_REDIS", "")
            if kind == "cluster":
                redis_url = own.enter_context(redis_servers.own_cluster(range(7100, 7106))).url
            elif kind == "sentinel":
                redis_url = own.enter_context(redis_servers.own_sentinels(range(7110, 7115))).url
            else:
                redis_url = os.environ.get("REDIS_URL") or embedded.start_redis()
            yield admin_dsn, redis_url
    finally:
        embedded.stop()


def _with_database(dsn: str, name: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def new_database(admin_dsn: str, prefix: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """A database of its own on the server of `admin_dsn` (migrated unless told not to), dropped
    afterwards even if a connection is still open."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(admin_dsn, name)
    try:
        if migrated:
            await migrate(url)
        yield url
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(servers: tuple[str, str]) -> AsyncIterator[str]:
    async with new_database(servers[0], "spean_test") as url:
        yield url


@pytest.fixture(scope="session")
def settings(database_url: str, servers: tuple[str, str], data_dir: Path) -> Settings:
    return load_settings(
        {},
        env="test",
        database_url=database_url,
        redis_url=servers[1],
        data_dir=data_dir,
        secret_key=secrets.token_urlsafe(48),
        auto_migrate=False,
        log_level="warning",
        otp_per_ip_per_hour=100_000,
        otp_per_phone_per_hour=5,
        db_pool_max=60,
        # The hourly SMS budget counts in Redis per UTC hour, and every test run on this Redis
        # shares that counter: test runs are not one deployment (tests/sms/test_budget.py trips it).
        sms_hourly_budget=10**9,
    )


@pytest.fixture(scope="session")
def sms_outbox() -> LogSmsSender:
    return LogSmsSender()


@pytest.fixture(scope="session")
def app(settings: Settings, sms_outbox: LogSmsSender) -> Litestar:
    application = create_app(settings, sms_sender=sms_outbox)
    # Every FHIR body the app sends is queued for the independent validator (fhir_conformance).
    application.asgi_handler = capture_fhir(application.asgi_handler, CONFORMANCE)
    return application


@pytest.fixture(scope="session")
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """The tests' own pool: the app under test runs its pool on the test client's event loop."""
    pool = await create_pool(database_url, min_size=1, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def factory(client: AsyncTestClient[Litestar], db: asyncpg.Pool, settings: Settings) -> Factory:
    return Factory(client, db, settings)


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


# --- FHIR conformance: each test fails if a FHIR resource it received is not valid R4 ---
@pytest.fixture(autouse=True)
def fhir_conformance() -> Iterator[None]:
    yield
    failures = CONFORMANCE.failures()
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CONFORMANCE.checked:
        seconds = CONFORMANCE.validator.seconds
        checked = f"{CONFORMANCE.checked} emitted resources checked in {seconds:.1f} s"
        terminalreporter.write_line(f"FHIR R4 validation: {checked}")
        for warning in sorted(CONFORMANCE.warnings):
            terminalreporter.write_line(f"  warning: {warning}")


def pytest_sessionfinish() -> None:
    CONFORMANCE.validator.close()
