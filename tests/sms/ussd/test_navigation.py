"""The session rules on every screen a patient can reach: `0` goes back to the screen before,
`00` to the main menu, and an answer that is not on the screen is asked again once (saying so),
then the session ends politely. (The CHW's screens: tests/sms/ussd/test_chw.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from sms.ussd.menu import SCREENS
from tests.factory import Factory, Network
from tests.sms.ussd.conftest import Phone, patient_phone

# Each patient screen, and the answers from the main menu that reach it.
PATHS = {
    "book": ["1"],
    "book_slots": ["1", "1"],
    "book_confirm": ["1", "1", "1"],
    "appointments": ["2"],
    "appointment": ["2", "1"],
    "cancel_confirm": ["2", "1", "1"],
    "move_slots": ["2", "1", "2"],
    "move_confirm": ["2", "1", "2", "1"],
    "consent": ["3"],
    "language": ["4"],
    "pin_new": ["5"],
    "pin_repeat": ["5", "1234"],
}


def test_every_patient_screen_is_walked() -> None:
    chw_or_top = {"main", "who"} | {s for s in SCREENS if s.startswith("chw")} | {"pin_enter"}
    assert set(PATHS) | chw_or_top == set(SCREENS)  # pin_enter: tests/sms/ussd/test_journeys.py


@pytest.fixture
async def patient(factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network) -> Phone:
    """A patient with one booked appointment (so that the appointment screens have one)."""
    patient_id, phone = await patient_phone(factory, ussd_client, network, "en")
    today = datetime.now(UTC).date()
    slots = await factory.client.get(
        "/v1/slots",
        params={
            "from": str(today),
            "to": str(today + timedelta(days=14)),
            "practitioner_id": str(network.specialist.practitioner_id),
        },
        headers=network.specialist.headers,
    )
    body = {
        "patient_id": str(patient_id),
        "practitioner_id": str(network.specialist.practitioner_id),
        "start": slots.json()["items"][-1]["start"],  # the last: the first ones stay free to book
    }
    await factory.post("/v1/appointments", body, await factory.admin_token())
    return phone


async def _walk(phone: Phone, path: list[str]) -> list[str]:
    """The screens shown on the way (main menu first); all of them continue the session."""
    _verb, main = await phone.dial()
    shown = [main]
    for answer in path:
        verb, screen = await phone.send(answer)
        assert verb == "CON", (path, answer, screen)
        shown.append(screen)
    return shown


@pytest.mark.parametrize("screen_id", sorted(PATHS))
async def test_back_main_menu_and_invalid_answers_everywhere(patient: Phone, screen_id: str) -> None:
    path = PATHS[screen_id]
    shown = await _walk(patient, path)
    assert await patient.send("0") == ("CON", shown[-2])  # back one screen
    assert await patient.send("00") == ("CON", shown[0])  # the main menu

    phone = patient.again()
    shown = await _walk(phone, path)
    invalid = "99" if SCREENS[screen_id].answer is None else "12"  # a PIN screen: not 4 digits
    verb, screen = await phone.send(invalid)
    assert verb == "CON"
    assert screen.splitlines()[0] in ("Invalid choice.", "A PIN is 4 digits."), screen
    verb, screen = await phone.send(invalid)
    assert verb == "END"
    assert screen == "Sorry, we did not understand. Please dial again."
    # The session is over: the same gateway session id starts again at the top.
    assert await Phone(phone.client, phone.number, session_id=phone.session_id).dial() == ("CON", shown[0])


async def test_the_answers_of_one_turn_are_never_replayed(patient: Phone) -> None:
    """A gateway may resend a turn (a lost reply): the same text is not handled twice."""
    shown = await _walk(patient, ["1", "1"])
    again = await patient._post("*".join(patient.answers))
    assert again == ("CON", shown[-1])
