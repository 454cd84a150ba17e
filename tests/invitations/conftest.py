"""Guests invited by SMS link, on a database of their own: an app (in process) and two real
`spean serve` processes send through the real Twilio SDK to the local Twilio stand-in
(tests/twilio_server.py), so a test reads the invitation link from the SMS as a guest would.
Their own database keeps the main suite's apps (log sender) from claiming these SMS. All of it
lives for this package only: the servers and pools let go of their connections afterwards."""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.config import Settings, load_settings
from infra.db import create_pool
from infra.embedded import free_port
from spean.app import create_app
from tests.conftest import new_database
from tests.factory import Factory, PatientLogin, Staff, auth
from tests.live import server_env, start_server, wait_ready
from tests.twilio_server import TwilioServer, running

ACCOUNT_SID = "AC" + "fedcba9876543210" * 2
AUTH_TOKEN = "twilio-invitations-auth-token"
FROM_NUMBER = "+85523900901"
_LINK = re.compile(r"(https?://\S+/join/(km|vi|fr|en)#([A-Za-z0-9_-]{16,64}))")


@pytest.fixture(scope="package")
def inv_twilio() -> Iterator[TwilioServer]:
    with running(ACCOUNT_SID, AUTH_TOKEN) as server:
        yield server


@pytest.fixture(scope="package")
async def inv_database_url(servers: tuple[str, str]) -> AsyncIterator[str]:
    async with new_database(servers[0], "spean_test_inv") as url:
        yield url


@pytest.fixture(scope="package")
def live_ports() -> tuple[int, int]:
    return free_port(), free_port()


def _twilio_env(twilio: TwilioServer, public_base_url: str) -> dict[str, str]:
    return {
        "SPEAN_SMS_SENDER": "twilio",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        "TWILIO_API_BASE_URL": twilio.base_url,
        "SPEAN_PUBLIC_BASE_URL": public_base_url,
        "SPEAN_SMS_HOURLY_BUDGET": str(10**9),  # shared by every run on this Redis (tests/conftest.py)
        # TURN configured, so a guest's `ready` carries credentials (nothing listens: not needed on loopback).
        "SPEAN_TURN_URLS": "turn:127.0.0.1:3478",
        "SPEAN_TURN_SECRET": "coturn-secret",
        "SPEAN_STUN_URLS": "stun:127.0.0.1:3478",
        # Every test opens links from this one address, run after run on this Redis: not the limit
        # under test here (tests/invitations/test_precall_echo.py tests it on an app of its own).
        "SPEAN_INVITATION_OPEN_PER_IP": str(10**6),
    }


@pytest.fixture(scope="package")
def inv_settings(
    inv_database_url: str, settings: Settings, inv_twilio: TwilioServer, live_ports: tuple[int, int]
) -> Settings:
    # Links point at the first live server: a browser test opens them there.
    return load_settings(
        _twilio_env(inv_twilio, f"http://127.0.0.1:{live_ports[0]}"),
        env="test",
        database_url=inv_database_url,
        redis_url=settings.redis_url,
        data_dir=settings.data_dir,
        secret_key=settings.secret_key,
        auto_migrate=False,
        log_level="warning",
        db_pool_max=5,
    )


@pytest.fixture(scope="package")
async def inv_client(inv_settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(create_app(inv_settings)) as test_client:
        yield test_client


@pytest.fixture(scope="package")
async def inv_db(inv_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(inv_database_url, min_size=1, max_size=5)
    yield pool
    await pool.close()


@pytest.fixture(scope="package")
async def inv_factory(inv_client: AsyncTestClient[Litestar], inv_db: asyncpg.Pool, inv_settings: Settings) -> Factory:
    return Factory(inv_client, inv_db, inv_settings)


@dataclass
class Live:
    urls: tuple[str, str]  # http://127.0.0.1:port of each server process

    def ws(self, i: int) -> str:
        return self.urls[i].replace("http://", "ws://")


@pytest.fixture(scope="package")
def live(
    inv_settings: Settings,
    inv_twilio: TwilioServer,
    live_ports: tuple[int, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    """Two server processes on the invitations' database: signalling and revocations cross them."""
    folder: Path = tmp_path_factory.mktemp("invitations")
    settings = inv_settings
    env = server_env(
        settings,
        folder,
        SPEAN_RTC_GRACE="5",
        SPEAN_DB_POOL_MAX="5",  # the PostgreSQL server is shared: a few connections each are plenty here
        **_twilio_env(inv_twilio, f"http://127.0.0.1:{live_ports[0]}"),
    )
    procs: list[subprocess.Popen[bytes]] = [
        start_server(env, port, folder / f"server-{port}.log", "--no-migrate") for port in live_ports
    ]
    try:
        for port, proc in zip(live_ports, procs, strict=True):
            wait_ready(port, proc, folder / f"server-{port}.log")
        yield Live((f"http://127.0.0.1:{live_ports[0]}", f"http://127.0.0.1:{live_ports[1]}"))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
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
async def consultation(inv_factory: Factory) -> Consultation:
    """A video consultation starting in five minutes, booked by the post's CHW: its room is open."""
    scene = await inv_factory.scene()
    patient, appointment_id = await inv_factory.consultation_soon(scene)
    return Consultation(appointment_id, scene.specialist, scene.chw, patient, scene.centre, scene.post)


async def eventually(db: asyncpg.Pool, query: str, *args: object, expect: object) -> None:
    """Until `query` answers `expect` (what another process or task commits a moment later)."""
    value = None
    for _ in range(300):
        value = await db.fetchval(query, *args)
        if value == expect:
            return
        await asyncio.sleep(0.05)
    assert value == expect, query


async def invite(client: AsyncTestClient[Litestar], appointment_id: uuid.UUID, token: str, **body: Any) -> Any:
    """POST an invitation (an interpreter for Khmer by default); the response."""
    payload = {"phone": new_guest_phone(), "name": "Chan Dara", "role": "interpreter", "language": "km", **body}
    return await client.post(
        f"/v1/appointments/{appointment_id}/invitations",
        json=payload,
        headers=auth(token, **{"Idempotency-Key": uuid.uuid4().hex}),
    )


_guest_numbers = itertools.count(secrets.randbelow(9_000_000))


def new_guest_phone() -> str:
    """A valid Vietnamese mobile number nobody else in the run uses (Viettel 098 range)."""
    return f"+8498{next(_guest_numbers) % 10**7:07d}"


@dataclass(frozen=True)
class Link:
    url: str
    locale: str
    token: str
    body: str


async def sms_link(twilio: TwilioServer, phone: str) -> Link:
    """The invitation link in the latest SMS the Twilio stand-in took for `phone` (sent right
    after commit; if that hand-over failed, a ledger loop sends it within seconds)."""
    for _ in range(300):
        if twilio.sent_to(phone):
            break
        await asyncio.sleep(0.05)
    assert twilio.sent_to(phone), f"no SMS reached {phone}"
    body = twilio.sent_to(phone)[-1]
    match = _LINK.search(body)
    assert match is not None, body
    return Link(match[1], match[2], match[3], body)
