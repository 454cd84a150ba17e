"""Guests invited by SMS link, on an app of their own that sends through the real Twilio SDK to
the local Twilio stand-in (tests/twilio_app.py), so a test reads the invitation link from the SMS
as a guest would; two real `spean serve` processes on the same database carry the calls. All of
it lives for this package only: the servers and pools let go of their connections afterwards."""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.config import Settings
from infra.embedded import free_port
from tests import twilio_app
from tests.factory import Consultation, Factory, auth
from tests.live import server_env, serving
from tests.twilio_app import TwilioAppConfig
from tests.twilio_server import TwilioServer

# This package's own app (tests/twilio_app.py).
twilio, sms_database_url, sms_settings, sms_client, sms_db, sms_factory = twilio_app.FIXTURES

_LINK = re.compile(r"(https?://\S+/join/(km|vi|fr|en)#([A-Za-z0-9_-]{16,64}))")


@pytest.fixture(scope="package")
def live_ports() -> tuple[int, int]:
    return free_port(), free_port()


@pytest.fixture(scope="package")
def twilio_app_config(live_ports: tuple[int, int]) -> TwilioAppConfig:
    # Links point at the first live server: a browser test opens them there.
    return TwilioAppConfig(
        account_sid="AC" + "fedcba9876543210" * 2,
        auth_token="twilio-invitations-auth-token",
        from_number="+85523900901",
        database_prefix="spean_test_inv",
        public_base_url=f"http://127.0.0.1:{live_ports[0]}",
        env={
            # TURN configured, so a guest's `ready` carries credentials (nothing listens: not needed on loopback).
            "SPEAN_TURN_URLS": "turn:127.0.0.1:3478",
            "SPEAN_TURN_SECRET": "coturn-secret",
            "SPEAN_STUN_URLS": "stun:127.0.0.1:3478",
            # Every test opens links from this one address, run after run on this Redis: not the limit
            # under test here (tests/invitations/test_precall_echo.py tests it on an app of its own).
            "SPEAN_INVITATION_OPEN_PER_IP": str(10**6),
        },
        settings={"db_pool_max": 5},
    )


@dataclass
class Live:
    urls: tuple[str, str]  # http://127.0.0.1:port of each server process

    def ws(self, i: int) -> str:
        return self.urls[i].replace("http://", "ws://")


@pytest.fixture(scope="package")
def live(
    sms_settings: Settings,
    twilio: TwilioServer,
    twilio_app_config: TwilioAppConfig,
    live_ports: tuple[int, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Live]:
    """Two server processes on the invitations' database: signalling and revocations cross them."""
    folder = tmp_path_factory.mktemp("invitations")
    env = server_env(
        sms_settings,
        folder,
        SPEAN_RTC_GRACE="5",
        SPEAN_DB_POOL_MAX="5",  # the PostgreSQL server is shared: a few connections each are plenty here
        **twilio_app_config.server_env(twilio),
    )
    with serving(env, list(live_ports), folder, "--no-migrate"):
        yield Live((f"http://127.0.0.1:{live_ports[0]}", f"http://127.0.0.1:{live_ports[1]}"))


@pytest.fixture
async def consultation(sms_factory: Factory) -> Consultation:
    return await sms_factory.consultation()


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
    """The invitation link in the latest SMS the Twilio stand-in took for `phone`."""
    body = await twilio.latest_to(phone)
    match = _LINK.search(body)
    assert match is not None, body
    return Link(match[1], match[2], match[3], body)
