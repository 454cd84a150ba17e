"""An app on a database of its own that sends SMS through the real Twilio SDK to the local Twilio
stand-in (tests/twilio_server.py), so a test reads an SMS as the phone would. Its own database
keeps the main suite's apps (log sender) from claiming these SMS.

The SMS, invitation and consultation-report packages each import these fixtures into their
conftest and give their own `twilio_app_config`: each package then has its own stand-in,
database, app and pool, let go of after its last test (package scope)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.config import Settings, load_settings
from infra.db import create_pool
from spean.app import create_app
from tests.conftest import new_database
from tests.factory import Factory
from tests.twilio_server import TwilioServer, running


@dataclass(frozen=True)
class TwilioAppConfig:
    """One package's Twilio account, database name prefix and settings."""

    account_sid: str
    auth_token: str
    from_number: str
    database_prefix: str
    public_base_url: str
    env: Mapping[str, str] = field(default_factory=dict)  # more SPEAN_* variables
    settings: Mapping[str, Any] = field(default_factory=dict)  # load_settings overrides
    pool_max: int = 5  # the tests' own pool

    def server_env(self, twilio: TwilioServer, public_base_url: str | None = None) -> dict[str, str]:
        """The variables that make an app (in process or `spean serve`) send through `twilio`;
        its links point at `public_base_url` (this config's by default)."""
        return {
            "SPEAN_SMS_SENDER": "twilio",
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_FROM_NUMBER": self.from_number,
            "TWILIO_API_BASE_URL": twilio.base_url,
            "SPEAN_PUBLIC_BASE_URL": public_base_url or self.public_base_url,
            "SPEAN_SMS_HOURLY_BUDGET": str(10**9),  # shared by every run on this Redis (tests/conftest.py)
            **self.env,
        }


@pytest.fixture(scope="package")
def twilio(twilio_app_config: TwilioAppConfig) -> Iterator[TwilioServer]:
    with running(twilio_app_config.account_sid, twilio_app_config.auth_token) as server:
        yield server


@pytest.fixture(scope="package")
async def sms_database_url(servers: tuple[str, str], twilio_app_config: TwilioAppConfig) -> AsyncIterator[str]:
    async with new_database(servers[0], twilio_app_config.database_prefix) as url:
        yield url


@pytest.fixture(scope="package")
def sms_settings(
    sms_database_url: str, settings: Settings, twilio: TwilioServer, twilio_app_config: TwilioAppConfig
) -> Settings:
    """The suite's Redis and signing key, this package's database and Twilio account."""
    return load_settings(
        twilio_app_config.server_env(twilio),
        env="test",
        database_url=sms_database_url,
        redis_url=settings.redis_url,
        data_dir=settings.data_dir,
        secret_key=settings.secret_key,
        auto_migrate=False,
        log_level="warning",
        **twilio_app_config.settings,
    )


@pytest.fixture(scope="package")
async def sms_client(sms_settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(sms_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="package")
async def sms_db(sms_database_url: str, twilio_app_config: TwilioAppConfig) -> AsyncIterator[asyncpg.Pool]:
    """The tests' own pool: the app under test runs its pool on the test client's event loop."""
    pool = await create_pool(sms_database_url, min_size=1, max_size=twilio_app_config.pool_max)
    yield pool
    await pool.close()


@pytest.fixture(scope="package")
async def sms_factory(sms_client: AsyncTestClient[Litestar], sms_db: asyncpg.Pool, sms_settings: Settings) -> Factory:
    return Factory(sms_client, sms_db, sms_settings)


FIXTURES = (twilio, sms_database_url, sms_settings, sms_client, sms_db, sms_factory)
