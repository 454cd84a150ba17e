"""Files in a call and consultation reports, on a database of their own: the app (in process)
sends SMS through the real Twilio SDK to the local Twilio stand-in (tests/twilio_server.py), so a
test reads the report's link from the SMS as the patient would; one `spean serve` process carries
the room's WebSockets for the test that listens to the room."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.config import Settings, load_settings
from infra.db import create_pool
from infra.embedded import free_port
from spean.app import create_app
from tests.conftest import new_database
from tests.factory import Factory, PatientLogin, Staff
from tests.live import server_env, start_server, wait_ready
from tests.twilio_server import TwilioServer, running

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-reports-auth-token"
FROM_NUMBER = "+85523900902"


@pytest.fixture(scope="package")
def rep_twilio() -> Iterator[TwilioServer]:
    with running(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


@pytest.fixture(scope="package")
async def rep_database_url(servers: tuple[str, str]) -> AsyncIterator[str]:
    async with new_database(servers[0], "spean_test_rep") as url:
        yield url


@pytest.fixture(scope="package")
def rep_port() -> int:
    return free_port()


def _env(twilio: TwilioServer, public_base_url: str) -> dict[str, str]:
    return {
        "SPEAN_SMS_SENDER": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": twilio.base_url,
        "SPEAN_PUBLIC_BASE_URL": public_base_url,
        "SPEAN_SMS_HOURLY_BUDGET": str(10**9),  # shared by every run on this Redis (tests/conftest.py)
        "SPEAN_ATTACHMENT_MAX_BYTES": "65536",
    }


@pytest.fixture(scope="package")
def rep_settings(rep_database_url: str, settings: Settings, rep_twilio: TwilioServer, rep_port: int) -> Settings:
    return load_settings(
        _env(rep_twilio, f"http://127.0.0.1:{rep_port}"),
        env="test",
        database_url=rep_database_url,
        redis_url=settings.redis_url,
        data_dir=settings.data_dir,
        secret_key=settings.secret_key,
        auto_migrate=False,
        log_level="warning",
        db_pool_max=4,
    )


@pytest.fixture(scope="package")
async def rep_client(rep_settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(rep_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="package")
async def rep_db(rep_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(rep_database_url, min_size=1, max_size=3)
    yield pool
    await pool.close()


@pytest.fixture(scope="package")
async def rep_factory(rep_client: AsyncTestClient[Litestar], rep_db: asyncpg.Pool, rep_settings: Settings) -> Factory:
    return Factory(rep_client, rep_db, rep_settings)


@pytest.fixture(scope="package")
def rep_live(
    rep_settings: Settings, rep_twilio: TwilioServer, rep_port: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One server process on this package's database and Redis: the room's WebSockets."""
    folder: Path = tmp_path_factory.mktemp("reports")
    env = server_env(rep_settings, folder, SPEAN_DB_POOL_MAX="3", **_env(rep_twilio, f"http://127.0.0.1:{rep_port}"))
    proc: subprocess.Popen[bytes] = start_server(env, rep_port, folder / "server.log", "--no-migrate")
    try:
        wait_ready(rep_port, proc, folder / "server.log")
        yield f"http://127.0.0.1:{rep_port}"
    finally:
        proc.terminate()
        proc.wait(15)


@dataclass(frozen=True)
class Consultation:
    appointment_id: uuid.UUID
    specialist: Staff
    chw: Staff
    patient: PatientLogin
    centre: uuid.UUID
    post: uuid.UUID


@pytest.fixture
async def consultation(rep_factory: Factory) -> Consultation:
    """A video consultation starting in five minutes, booked by the post's CHW: its room is open."""
    scene = await rep_factory.scene()
    patient, appointment_id = await rep_factory.consultation_soon(scene)
    return Consultation(appointment_id, scene.specialist, scene.chw, patient, scene.centre, scene.post)
