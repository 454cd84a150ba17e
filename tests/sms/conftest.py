"""An app sending through the real Twilio SDK to a local Twilio-speaking server, on its own
database so the main suite's app (log sender) never claims its messages (tests/twilio_app.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from twilio.request_validator import RequestValidator

from infra import redis_client
from infra.config import Settings
from sms.outbox import SmsOutbox, policy_from
from sms.sender import LogSmsSender
from tests import twilio_app
from tests.twilio_app import TwilioAppConfig

# This package's own app (tests/twilio_app.py).
twilio, sms_database_url, sms_settings, sms_client, sms_db, sms_factory = twilio_app.FIXTURES

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-auth-token"
FROM_NUMBER = "+85523900900"
PUBLIC_BASE_URL = "https://spean.example.org"


@pytest.fixture(scope="package")
def twilio_app_config() -> TwilioAppConfig:
    return TwilioAppConfig(
        account_sid=ACCOUNT_SID,
        auth_token=AUTH_TOKEN,
        from_number=FROM_NUMBER,
        database_prefix="spean_test_sms",
        public_base_url=PUBLIC_BASE_URL,
        settings={"otp_per_ip_per_hour": 100_000},
    )


@pytest.fixture(scope="package")
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
