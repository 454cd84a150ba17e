"""The USSD gateway against real server processes (`spean serve --workers 2`) on a PostgreSQL and a
Redis of the test's own:

- while PostgreSQL or Redis is away, every callback still gets 200 and a polite `END` in the
  caller's language: the session's (Redis), else the patient's (PostgreSQL), else the one of the
  number's country calling code; never a 5xx, which the gateway would show as a raw error;
- a USSD confirmation and an app booking race for one slot between two processes, several times:
  exactly one wins, and the other is told in its own channel.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx
import pytest

from sms.ussd.render import end_text
from tests.factory import PatientLogin, Scene, new_phone
from tests.fault.servers import Stack, own_stack, seeding
from tests.sms.ussd.conftest import Phone

SECRET = "fault-ussd-" + secrets.token_hex(8)
RACES = 5


@dataclass
class World:
    scene: Scene
    french: str  # a French-speaking patient's Cambodian number
    app_users: list[PatientLogin]
    race_phones: list[str] = field(default_factory=list)  # French-speaking patients' numbers


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with own_stack("spean-fault-ussd-", SPEAN_USSD_SECRET=SECRET) as stack:
        yield stack


@pytest.fixture(scope="module")
async def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> World:
    """Seeded through an in-process app with the server's secret key, so its tokens work there."""
    async with seeding(stack, tmp_path_factory.mktemp("seed")) as factory:
        scene = await factory.scene()
        await factory.post(
            f"/v1/facilities/{scene.post}/referral-targets",
            {"facility_id": str(scene.centre)},
            await factory.admin_token(),
        )
        french = new_phone()
        await factory.patient(scene.post, phone=french, preferred_language="fr")
        world = World(scene, french, [await factory.patient_login(scene.post) for _ in range(RACES)])
        for _ in range(RACES):
            number = new_phone()
            await factory.patient(scene.post, phone=number, preferred_language="fr")
            world.race_phones.append(number)
    return world


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.server.url, timeout=30) as client:
        yield client


def _down(language: str) -> tuple[str, str]:
    return ("END", end_text(language, "ussd_err_unavailable"))


async def _until_menu(phone: Phone, within_s: float = 30) -> str:
    """Dial until the main menu shows (a worker's pool may meet its dead connections once)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        phone.session_id = f"ATUid_{uuid.uuid4().hex}"
        verb, screen = await phone.dial()
        if verb == "CON":
            return screen
        await asyncio.sleep(0.2)
    raise AssertionError("the USSD menu did not come back")


async def test_outages_end_politely_in_the_callers_language(
    stack: Stack, world: World, http: httpx.AsyncClient
) -> None:
    phone = Phone(http, world.french, secret=SECRET)
    assert (await _until_menu(phone)).startswith("Spean\n1 Prendre rendez-vous")

    # Redis away: the session cannot be read; PostgreSQL says the patient reads French.
    await asyncio.to_thread(stack.redis.stop)
    try:
        assert await phone.send("1") == _down("fr")
        assert await Phone(http, world.french, secret=SECRET).dial() == _down("fr")
        assert await Phone(http, "+84912345678", secret=SECRET).dial() == _down("vi")  # unknown: the calling code
    finally:
        await asyncio.to_thread(stack.redis.start)

    # PostgreSQL away: a session under way keeps its language (Redis); a new one from the same
    # Cambodian number can only go by the calling code: Khmer.
    await _until_menu(phone)
    await asyncio.to_thread(stack.postgres.stop)
    try:
        assert await phone.send("1") == _down("fr")
        assert await Phone(http, world.french, secret=SECRET).dial() == _down("km")
        assert await Phone(http, "+84912345678", secret=SECRET).dial() == _down("vi")
        assert await Phone(http, "+33612345678", secret=SECRET).dial() == _down("fr")
        # Both away.
        await asyncio.to_thread(stack.redis.stop)
        assert await Phone(http, world.french, secret=SECRET).dial() == _down("km")
    finally:
        await asyncio.to_thread(stack.postgres.start_if_stopped)
        if stack.redis.proc is None:
            await asyncio.to_thread(stack.redis.start)

    # Back by themselves: the next call walks the menus again.
    assert (await _until_menu(phone)).startswith("Spean\n1 Prendre rendez-vous")
    verb, screen = await phone.send("1")
    assert (verb, screen.splitlines()[0]) == ("CON", "Rendez-vous pour :")
    log = stack.server.log.read_text()
    assert "Traceback" not in log, log[-3000:]
    assert "ussd_turn_failed" not in log, log[-3000:]


async def _first_slot(http: httpx.AsyncClient, world: World) -> str:
    today = datetime.now(UTC).date()
    response = await http.get(
        "/v1/slots",
        params={
            "from": str(today),
            "to": str(today + timedelta(days=14)),
            "practitioner_id": str(world.scene.specialist.practitioner_id),
        },
        headers=world.scene.specialist.headers,
    )
    assert response.status_code == 200, response.text
    start: str = response.json()["items"][0]["start"]
    return start


async def test_ussd_and_app_race_for_one_slot_between_two_processes(stack: Stack, world: World) -> None:
    taken = end_text("fr", "ussd_err_slot_taken")
    winners = []
    # Two connection pools: the two requests travel on their own connections, to either worker.
    async with (
        httpx.AsyncClient(base_url=stack.server.url, timeout=30) as gateway,
        httpx.AsyncClient(base_url=stack.server.url, timeout=30) as app,
    ):
        for number, app_user in zip(world.race_phones, world.app_users, strict=True):
            phone = Phone(gateway, number, secret=SECRET)
            start = await _first_slot(app, world)
            await _until_menu(phone)
            await phone.send("1")
            await phone.send("1")
            verb, screen = await phone.send("1")
            assert (verb, screen.split(" ")[0]) == ("CON", "Réserver")
            booking = {
                "patient_id": str(app_user.patient_id),
                "practitioner_id": str(world.scene.specialist.practitioner_id),
                "start": start,
            }
            ussd_reply, app_reply = await asyncio.gather(
                phone.send("1"), app.post("/v1/appointments", json=booking, headers=app_user.headers)
            )
            ussd_won = ussd_reply[0] == "END" and ussd_reply[1].startswith("Rendez-vous pris :")
            assert ussd_won != (app_reply.status_code == 201), (ussd_reply, app_reply.text)
            if ussd_won:
                assert (app_reply.status_code, app_reply.json()["code"]) == (409, "slot_taken")
            else:
                assert ussd_reply == ("END", taken)
            winners.append("ussd" if ussd_won else "app")
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = await conn.fetch(
            """SELECT start_at, count(*) AS n FROM appointments
               WHERE practitioner_id = $1 AND status = 'booked' GROUP BY start_at""",
            world.scene.specialist.practitioner_id,
        )
    finally:
        await conn.close()
    assert len(rows) == RACES
    assert all(r["n"] == 1 for r in rows)
    print(f"USSD vs app across two processes, {RACES} races: {winners}")
