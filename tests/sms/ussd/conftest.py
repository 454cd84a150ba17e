"""A Spean app whose USSD gateway secret is configured (the suite's main app has none), on the
suite's database and Redis, and a phone that dials it the way a gateway relays a session."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra import redis_client
from infra.config import Settings
from infra.redis_client import RedisClient
from sms.sender import LogSmsSender
from spean.app import create_app
from tests.factory import Factory, Network, new_phone

SECRET = "gateway-secret-" + uuid.uuid4().hex
_sessions = itertools.count(1)


@pytest.fixture(scope="session")
async def ussd_client(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    # A small pool: this second app shares the test server's PostgreSQL with the main one.
    configured = msgspec.structs.replace(settings, ussd_secret=SECRET, db_pool_min=1, db_pool_max=5)
    app = create_app(configured, sms_sender=LogSmsSender())
    async with AsyncTestClient(app) as client:
        yield client


@pytest.fixture(scope="session")
async def redis(settings: Settings) -> AsyncIterator[RedisClient]:
    client = redis_client.connect(settings.redis_url)
    yield client
    await client.aclose()


@dataclass
class Phone:
    """One USSD session: each answer is appended to the `*`-joined text, as a gateway does."""

    client: httpx.AsyncClient  # the in-process test client, or one to a real server
    number: str
    session_id: str = field(default_factory=lambda: f"ATUid_{uuid.uuid4().hex}_{next(_sessions)}")
    answers: list[str] = field(default_factory=list)
    secret: str = SECRET

    async def dial(self) -> tuple[str, str]:
        self.answers.clear()
        return await self._post("")

    async def send(self, answer: str) -> tuple[str, str]:
        self.answers.append(answer)
        return await self._post("*".join(self.answers))

    async def _post(self, text: str) -> tuple[str, str]:
        response = await self.client.post(
            "/v1/ussd",
            data={
                "sessionId": self.session_id,
                "serviceCode": "*384*7#",
                "phoneNumber": self.number,
                "networkCode": "45606",
                "text": text,
            },
            headers={"X-USSD-Secret": self.secret},
        )
        assert response.status_code == 200, response.text  # never a 5xx, whatever is away
        assert response.headers["content-type"].startswith("text/plain")
        verb, _, screen = response.text.partition(" ")
        assert verb in ("CON", "END"), response.text
        return verb, screen

    def again(self) -> Phone:
        """A new session from the same phone."""
        return Phone(self.client, self.number, secret=self.secret)


@pytest.fixture
async def network(factory: Factory) -> Network:
    return await factory.network("cardio")


async def patient_phone(
    factory: Factory, client: AsyncTestClient[Litestar], network: Network, language: str, **fields: Any
) -> tuple[uuid.UUID, Phone]:
    number = new_phone()
    patient_id = await factory.patient(network.post, phone=number, preferred_language=language, **fields)
    return patient_id, Phone(client, number)
