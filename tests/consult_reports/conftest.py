"""Files in a call and consultation reports, on an app of their own that sends SMS through the
real Twilio SDK to the local Twilio stand-in (tests/twilio_app.py), so a test reads the report's
link from the SMS as the patient would; one `spean serve` process carries the room's WebSockets
for the test that listens to the room."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from infra.config import Settings
from infra.embedded import free_port
from tests import twilio_app
from tests.factory import Consultation, Factory
from tests.live import server_env, serving
from tests.twilio_app import TwilioAppConfig
from tests.twilio_server import TwilioServer

# This package's own app (tests/twilio_app.py).
twilio, sms_database_url, sms_settings, sms_client, sms_db, sms_factory = twilio_app.FIXTURES


@pytest.fixture(scope="package")
def rep_port() -> int:
    return free_port()


@pytest.fixture(scope="package")
def twilio_app_config(rep_port: int) -> TwilioAppConfig:
    return TwilioAppConfig(
        account_sid="AC" + "0123456789abcdef" * 2,
        auth_token="twilio-reports-auth-token",
        from_number="+85523900902",
        database_prefix="spean_test_rep",
        public_base_url=f"http://127.0.0.1:{rep_port}",
        env={"SPEAN_ATTACHMENT_MAX_BYTES": "65536"},
        settings={"db_pool_max": 4},
        pool_max=3,
    )


@pytest.fixture(scope="package")
def rep_live(
    sms_settings: Settings,
    twilio: TwilioServer,
    twilio_app_config: TwilioAppConfig,
    rep_port: int,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    """One server process on this package's database and Redis: the room's WebSockets."""
    folder = tmp_path_factory.mktemp("reports")
    env = server_env(sms_settings, folder, SPEAN_DB_POOL_MAX="3", **twilio_app_config.server_env(twilio))
    with serving(env, [rep_port], folder, "--no-migrate"):
        yield f"http://127.0.0.1:{rep_port}"


@pytest.fixture
async def consultation(sms_factory: Factory) -> Consultation:
    return await sms_factory.consultation()
