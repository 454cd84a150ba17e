"""An app sending through the real Twilio SDK to a local Twilio-speaking server (tests/twilio_server.py),
on its own database so the main suite's app (log sender) never claims its messages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from twilio.request_validator import RequestValidator

from infra import redis_client
from infra.config import Settings, load_settings
from infra.db import create_pool
from sms.outbox import SmsOutbox, policy_from
from sms.sender import LogSmsSender
from spean.app import create_app
from tests.conftest import new_database
from tests.factory import Factory
from tests.twilio_server import TwilioServer, running

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-auth-token"
FROM_NUMBER = "+85523900900"
PUBLIC_BASE_URL = "https://spean.example.org"


@pytest.fixture(scope="session")
def twilio() -> Iterator[TwilioServer]:
    with running(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


@pytest.fixture(scope="session")
async def sms_database_url(servers: tuple[str, str]) -> AsyncIterator[str]:
    async with new_database(servers[0], "spean_test_sms") as url:
        yield url


@pytest.fixture(scope="session")
def sms_settings(sms_database_url: str, settings: Settings, twilio: TwilioServer) -> Settings:
    return load_settings(
        {
            "SPEAN_SMS_SENDER": "twilio",
            "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
            "TWILIO_FROM_NUMBER": FROM_NUMBER,
            "TWILIO_API_BASE_URL": twilio.base_url,
            "SPEAN_PUBLIC_BASE_URL": PUBLIC_BASE_URL,
            "SPEAN_SMS_HOURLY_BUDGET": str(10**9),  # shared by every run on this Redis (tests/conftest.py)
        },
        env="test",
        database_url=sms_database_url,
        redis_url=settings.redis_url,
        data_dir=settings.data_dir,
        secret_key=settings.secret_key,
        auto_migrate=False,
        log_level="warning",
        otp_per_ip_per_hour=100_000,
    )


@pytest.fixture(scope="session")
def sms_app(sms_settings: Settings) -> Litestar:
    return create_app(sms_settings)


@pytest.fixture(scope="session")
async def sms_client(sms_app: Litestar) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(sms_app) as test_client:
        yield test_client


@pytest.fixture(scope="session")
async def sms_db(sms_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(sms_database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
async def sms_factory(sms_client: AsyncTestClient[Litestar], sms_db: asyncpg.Pool, sms_settings: Settings) -> Factory:
    return Factory(sms_client, sms_db, sms_settings)


@pytest.fixture(scope="session")
async def sms_queue(sms_db: asyncpg.Pool, sms_settings: Settings) -> AsyncIterator[SmsOutbox]:
    """The ledger as the domain writes to it, on the tests' own loop (the app's outbox lives on
    the test client's loop): what it queues, the app's sender loop sends through Twilio."""
    redis = redis_client.connect(sms_settings.redis_url)
    yield SmsOutbox(
        sms_db,
        redis,
        LogSmsSender(),
        policy_from(sms_settings.sms_countries, sms_settings.sms_hourly_budget, 8, sms_settings.public_base_url),
    )
    await redis.aclose()


def signed(path: str, form: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    """The X-Twilio-Signature Twilio would send for `form` posted to PUBLIC_BASE_URL + path."""
    return {"X-Twilio-Signature": RequestValidator(token).compute_signature(PUBLIC_BASE_URL + path, form)}


async def sms_in(client: AsyncTestClient[Litestar], phone: str, body: str, sid: str | None = None) -> str:
    """Send an SMS from `phone` to Spean as Twilio's webhook does (signed); its MessageSid."""
    form = {
        "MessageSid": sid or "SM" + uuid.uuid4().hex,
        "AccountSid": ACCOUNT_SID,
        "From": phone,
        "To": FROM_NUMBER,
        "Body": body,
        "NumSegments": "1",
    }
    answer = await client.post("/v1/sms/inbound", data=form, headers=signed("/v1/sms/inbound", form))
    assert answer.status_code == 200, answer.text
    assert answer.text.endswith("<Response />")
    return form["MessageSid"]
