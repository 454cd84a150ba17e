"""The patient journeys over the USSD gateway callback, against real PostgreSQL and Redis: what
the patient reads on each screen, and what Spean recorded (appointments, consent, audit)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.redis_client import RedisClient
from sms import texts
from sms.ussd.session import SessionStore
from tests.factory import Factory, Network, auth, new_phone
from tests.sms.ussd.conftest import SECRET, Phone, patient_phone


async def _ussd_audit(db: asyncpg.Pool, patient_id: uuid.UUID) -> set[str]:
    rows = await db.fetch("SELECT action FROM audit_events WHERE patient_id = $1 AND channel = 'ussd'", patient_id)
    return {r["action"] for r in rows}


async def _first_slot(factory: Factory, network: Network) -> str:
    today = datetime.now(UTC).date()
    response = await factory.client.get(
        "/v1/slots",
        params={
            "from": str(today),
            "to": str(today + timedelta(days=14)),
            "practitioner_id": str(network.specialist.practitioner_id),
        },
        headers=network.specialist.headers,
    )
    assert response.status_code == 200, response.text
    start: str = response.json()["items"][0]["start"]
    return start


async def test_a_whole_booking_in_french(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, db: asyncpg.Pool
) -> None:
    patient_id, phone = await patient_phone(factory, ussd_client, network, "fr")
    verb, screen = await phone.dial()
    assert verb == "CON"
    assert "1 Prendre rendez-vous" in screen
    assert "5 Résultats" in screen
    verb, screen = await phone.send("1")
    assert verb == "CON"
    assert screen.startswith("Rendez-vous pour :")
    assert f"1 {network.specialty}" in screen
    verb, screen = await phone.send("1")
    assert verb == "CON"
    assert screen.startswith("Horaires libres :")
    assert "0 Retour 00 Menu" in screen
    verb, screen = await phone.send("1")
    assert verb == "CON"
    assert screen.startswith("Réserver ")
    assert "1 Oui" in screen
    verb, screen = await phone.send("1")
    assert verb == "END"
    assert screen.startswith("Rendez-vous pris :"), screen

    booked = await db.fetch("SELECT * FROM appointments WHERE patient_id = $1", patient_id)
    assert len(booked) == 1
    assert booked[0]["channel"] == "ussd"
    assert booked[0]["status"] == "booked"
    assert booked[0]["mode"] == "audio"
    assert booked[0]["practitioner_id"] == network.specialist.practitioner_id
    assert "book" in await _ussd_audit(db, patient_id)
    # Shown on the facility's clock: the slot's local wall-clock time is on the screen.
    local = booked[0]["start_at"].astimezone(ZoneInfo("Asia/Phnom_Penh"))
    assert local.strftime("%d/%m %H:%M") in screen


async def test_a_whole_booking_in_khmer(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, db: asyncpg.Pool
) -> None:
    patient_id, phone = await patient_phone(factory, ussd_client, network, "km")
    verb, screen = await phone.dial()
    assert verb == "CON"
    assert "1 កក់ពេល" in screen
    verb, screen = await phone.send("1")
    assert screen.startswith("កក់សម្រាប់:")
    verb, screen = await phone.send("1")
    assert screen.startswith("ម៉ោងទំនេរ:")
    assert "0 ថយ 00 ម៉ឺនុយ" in screen
    verb, screen = await phone.send("1")
    assert verb == "CON"
    assert screen.startswith("កក់ ")
    assert "1 បាទ/ចាស" in screen
    verb, screen = await phone.send("1")
    assert verb == "END"
    assert screen.startswith("បានកក់:")
    assert (
        await db.fetchval("SELECT count(*) FROM appointments WHERE patient_id = $1 AND channel = 'ussd'", patient_id)
        == 1
    )


async def test_a_waiting_referral_comes_first(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, db: asyncpg.Pool
) -> None:
    chw = await factory.staff(network.post, role="chw")
    patient_id, phone = await patient_phone(factory, ussd_client, network, "en")
    referral = {
        "patient_id": str(patient_id),
        "to_facility_id": str(network.centre),
        "specialty": network.specialty,
        "urgency": "routine",
        "reason": "chest pain on effort",
    }
    response = await factory.client.post("/v1/referrals", json=referral, headers=chw.headers)
    assert response.status_code == 201, response.text
    await phone.dial()
    _verb, screen = await phone.send("1")
    assert screen.splitlines()[:3] == ["Book for:", f"1 Referral: {network.specialty}", f"2 {network.specialty}"]
    verb, screen = await phone.send("1")
    assert verb == "CON"
    assert screen.startswith("Free times:")
    verb, screen = await phone.send("1")
    assert screen.startswith("Book ")
    verb, screen = await phone.send("1")
    assert verb == "END"
    assert screen.startswith("Booked:")
    booked = await db.fetchrow("SELECT * FROM appointments WHERE patient_id = $1", patient_id)
    assert booked is not None
    assert (booked["facility_id"], booked["practitioner_id"], booked["channel"]) == (
        network.centre,
        network.specialist.practitioner_id,
        "ussd",
    )
    # Booked: the referral no longer waits on the book menu.
    phone = phone.again()
    await phone.dial()
    _verb, screen = await phone.send("1")
    assert screen.splitlines()[:2] == ["Book for:", f"1 {network.specialty}"]


async def test_cancel_and_move_an_appointment(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, db: asyncpg.Pool
) -> None:
    patient_id, phone = await patient_phone(factory, ussd_client, network, "en")
    start = await _first_slot(factory, network)
    body = {"patient_id": str(patient_id), "practitioner_id": str(network.specialist.practitioner_id), "start": start}
    created = await factory.post("/v1/appointments", body, await factory.admin_token())

    await phone.dial()
    verb, screen = await phone.send("2")
    assert verb == "CON"
    assert screen.startswith("Your appointments:")
    assert "\n1 " in screen
    verb, screen = await phone.send("1")
    assert "1 Cancel" in screen
    assert "2 Change time" in screen
    verb, screen = await phone.send("2")
    assert screen.startswith("Free times:")
    verb, screen = await phone.send("1")
    assert screen.startswith("Move to ")
    verb, screen = await phone.send("1")
    assert verb == "END"
    assert screen.startswith("Your appointment is now"), screen
    moved = await db.fetchrow("SELECT start_at, status FROM appointments WHERE id = $1", uuid.UUID(created["id"]))
    assert moved is not None
    assert moved["status"] == "booked"
    assert moved["start_at"] != datetime.fromisoformat(start)

    phone = phone.again()
    await phone.dial()
    await phone.send("2")
    await phone.send("1")
    verb, screen = await phone.send("1")
    assert verb == "CON"
    assert screen.startswith("Cancel ")
    verb, screen = await phone.send("1")
    assert (verb, screen) == ("END", "Your appointment is cancelled.")
    assert await db.fetchval("SELECT status FROM appointments WHERE id = $1", uuid.UUID(created["id"])) == "cancelled"
    assert {"reschedule", "cancel"} <= await _ussd_audit(db, patient_id)

    # Nothing left to show: said plainly, and the session ends.
    phone = phone.again()
    await phone.dial()
    assert await phone.send("2") == ("END", "You have no upcoming appointment.")


async def test_back_main_menu_and_invalid_answers(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network
) -> None:
    _patient_id, phone = await patient_phone(factory, ussd_client, network, "en")
    _verb, main = await phone.dial()
    _verb, book = await phone.send("1")
    _verb, slots = await phone.send("1")
    assert slots.startswith("Free times:")
    assert await phone.send("0") == ("CON", book)  # back one screen
    assert await phone.send("0") == ("CON", main)  # and back again
    await phone.send("1")
    await phone.send("1")
    assert await phone.send("00") == ("CON", main)  # straight to the main menu
    verb, screen = await phone.send("9")  # not on the menu: asked again once, saying why
    assert verb == "CON"
    assert screen.startswith("Invalid choice.\n")
    verb, screen = await phone.send("1")  # a valid answer resets the count
    assert screen.startswith("Book for:")
    verb, _ = await phone.send("x")
    assert verb == "CON"
    assert await phone.send("") == ("END", "Sorry, we did not understand. Please dial again.")


async def test_a_timed_out_session_restarts_at_the_main_menu(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, redis: RedisClient
) -> None:
    _patient_id, phone = await patient_phone(factory, ussd_client, network, "en")
    _verb, main = await phone.dial()
    await phone.send("1")
    key = SessionStore.key(phone.session_id)
    assert 0 < await redis.ttl(key) <= 180  # the state lives no longer than a gateway session
    await redis.pexpire(key, 1)  # Redis itself expires it, as it would after 180 quiet seconds
    await asyncio.sleep(0.05)
    assert not await redis.exists(key)
    # The gateway still relays the old answers: they are not replayed onto a stale choice.
    assert await phone.send("1") == ("CON", main)
    verb, screen = await phone.send("1")
    assert verb == "CON"
    assert screen.startswith("Book for:")


async def test_the_results_pin(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, db: asyncpg.Pool
) -> None:
    patient_id, phone = await patient_phone(factory, ussd_client, network, "en")
    await phone.dial()
    verb, screen = await phone.send("5")  # no PIN yet: the patient sets one first
    assert verb == "CON"
    assert screen.startswith("To protect your results, choose a 4-digit PIN:")
    verb, screen = await phone.send("12")
    assert screen.startswith("A PIN is 4 digits.")
    verb, screen = await phone.send("1234")
    assert screen.startswith("Enter the same PIN again:")
    assert await phone.send("1234") == ("END", "Your PIN is saved. Dial again and choose Results.")
    stored = await db.fetchval("SELECT pin_hash FROM ussd_pins WHERE patient_id = $1", patient_id)
    assert stored.startswith("$argon2id$")
    assert "1234" not in stored

    phone = phone.again()
    await phone.dial()
    verb, screen = await phone.send("5")
    assert screen.startswith("Enter your 4-digit PIN:")
    assert await phone.send("1234") == ("END", "No new result.")

    # A result written at the health post: counted behind the PIN, never shown on USSD.
    chw = await factory.staff(network.post, role="chw")
    temperature = {"kind": "observation", "code": "8310-5", "value": 38.4, "unit": "Cel"}
    await factory.post(f"/v1/patients/{patient_id}/record", temperature, chw.token)
    phone = phone.again()
    await phone.dial()
    await phone.send("5")
    verb, screen = await phone.send("1234")
    assert (verb, screen) == ("END", "1 result(s) ready. See them in the Spean app or at your health post.")
    assert "38.4" not in screen
    assert "search" in await _ussd_audit(db, patient_id)

    # Wrong PINs count across sessions: the third locks the results, even for the right PIN.
    phone = phone.again()
    await phone.dial()
    await phone.send("5")
    verb, screen = await phone.send("0000")
    assert verb == "CON"
    assert screen.startswith("Wrong PIN.")
    verb, _ = await phone.send("1111")
    assert verb == "END"
    phone = phone.again()
    await phone.dial()
    await phone.send("5")
    locked = ("END", "Too many wrong PINs. Results are locked for 30 minutes.")
    assert await phone.send("2222") == locked
    phone = phone.again()
    await phone.dial()
    await phone.send("5")
    assert await phone.send("1234") == locked


async def test_consent_and_language(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, db: asyncpg.Pool
) -> None:
    patient_id, phone = await patient_phone(factory, ussd_client, network, "en")
    await phone.dial()
    verb, screen = await phone.send("3")
    assert screen.startswith("Sharing your record in the care network: not allowed")
    verb, screen = await phone.send("1")
    assert verb == "END"
    assert screen.startswith("Thank you")
    consent = await db.fetchrow("SELECT * FROM consents WHERE patient_id = $1", patient_id)
    assert consent is not None
    assert consent["method"] == "ussd"
    assert consent["scope"] == "network"

    phone = phone.again()
    await phone.dial()
    _verb, screen = await phone.send("3")
    assert "allowed" in screen
    assert "not allowed" not in screen
    verb, screen = await phone.send("2")
    assert verb == "END"
    assert screen.startswith("Done:")
    assert await db.fetchval("SELECT revoked_at IS NOT NULL FROM consents WHERE id = $1", consent["id"])
    assert {"consent", "revoke_consent"} <= await _ussd_audit(db, patient_id)

    phone = phone.again()
    await phone.dial()
    await phone.send("4")
    assert await phone.send("3") == ("END", "Votre langue est maintenant le français.")
    assert await db.fetchval("SELECT preferred_language FROM patients WHERE id = $1", patient_id) == "fr"
    _verb, screen = await phone.again().dial()
    assert "1 Prendre rendez-vous" in screen


async def test_a_shared_family_phone_first_asks_who(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network
) -> None:
    number = new_phone()
    await factory.patient(network.post, phone=number, preferred_language="en", names=[{"text": "Sok Dara"}])
    await factory.patient(network.post, phone=number, preferred_language="fr", names=[{"text": "Sok Malis"}])
    phone = Phone(ussd_client, number)
    verb, screen = await phone.dial()
    assert verb == "CON"
    assert screen == "Who is using this phone?\n1 Sok Dara\n2 Sok Malis"
    verb, screen = await phone.send("2")
    assert "1 Prendre rendez-vous" in screen  # the chosen patient's language
    assert await phone.send("00") == ("CON", screen)


async def test_an_unknown_number_is_sent_to_its_health_post(ussd_client: AsyncTestClient[Litestar]) -> None:
    assert await Phone(ussd_client, new_phone()).dial() == (
        "END",
        "លេខនេះមិនទាន់ចុះឈ្មោះ។ សូមទៅប៉ុស្តិ៍សុខភាព។",  # a Cambodian number: told in Khmer
    )
    assert await Phone(ussd_client, "+33612345678").dial() == (
        "END",
        "Ce numéro n'est pas inscrit sur Spean. Rendez-vous à votre poste de santé pour vous inscrire.",
    )
    verb, _ = await Phone(ussd_client, "not a number").dial()
    assert verb == "END"


async def test_the_gateway_must_authenticate(
    client: AsyncTestClient[Litestar], ussd_client: AsyncTestClient[Litestar]
) -> None:
    form = {"sessionId": "s1", "serviceCode": "*384*7#", "phoneNumber": new_phone(), "text": ""}
    for target, headers, params in (
        (ussd_client, {}, {}),
        (ussd_client, {"X-USSD-Secret": "wrong"}, {}),
        (ussd_client, {}, {"secret": SECRET[:-1]}),
        (client, {"X-USSD-Secret": ""}, {}),  # no secret configured: every call is refused
        (client, {"X-USSD-Secret": SECRET}, {}),
    ):
        response = await target.post("/v1/ussd", data=form, headers=headers, params=params)
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "gateway_not_authenticated"
    # The secret may come in the URL, for gateways that can only be given one.
    response = await ussd_client.post("/v1/ussd", data=form, params={"secret": SECRET})
    assert response.status_code == 200
    assert response.text.startswith("END ")
    # A bearer token is no substitute for the gateway's secret.
    response = await ussd_client.post("/v1/ussd", data=form, headers=auth("x"))
    assert response.status_code == 403


async def test_bad_input_from_the_gateway_ends_politely(ussd_client: AsyncTestClient[Litestar]) -> None:
    form = {"sessionId": "", "serviceCode": "*384*7#", "phoneNumber": new_phone(), "text": ""}
    hostile = ({"text": "1\x00"}, {"phoneNumber": "+855\x00"}, {"text": "١٢"}, {"sessionId": "s\x00"})
    for bad in ({"sessionId": ""}, {"sessionId": "s" * 500}, {"text": "1*" * 600}, *hostile):
        response = await ussd_client.post(
            "/v1/ussd", data={**form, "sessionId": "s2", **bad}, headers={"X-USSD-Secret": SECRET}
        )
        assert response.status_code == 200, (bad, response.text)
        assert response.text.startswith(("END ", "CON ")), (bad, response.text)


RACES = 5


async def test_a_ussd_booking_racing_an_app_booking_for_one_slot(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, db: asyncpg.Pool
) -> None:
    """Both confirm the same slot at once, several times over: exactly one booking each time; the
    loser is told in its own channel (USSD: an END in the patient's French; app: 409 slot_taken).
    tests/fault/test_ussd.py runs the same race between two server processes."""
    taken = texts.text("fr", "ussd_err_slot_taken")
    winners: list[str] = []
    for race in range(RACES):
        ussd_patient, phone = await patient_phone(factory, ussd_client, network, "fr")
        app_user = await factory.patient_login(network.post)
        start = await _first_slot(factory, network)
        await phone.dial()
        await phone.send("1")
        await phone.send("1")
        verb, screen = await phone.send("1")  # the first free slot, the one the app goes for too
        assert verb == "CON"
        assert screen.startswith("Réserver ")
        app_booking = {
            "patient_id": str(app_user.patient_id),
            "practitioner_id": str(network.specialist.practitioner_id),
            "start": start,
        }
        confirm = phone.send("1")
        app = factory.client.post("/v1/appointments", json=app_booking, headers=app_user.headers)
        # Each side goes first in turn (in one event loop, the first to start tends to win).
        if race % 2:
            app_reply, ussd_reply = await asyncio.gather(app, confirm)
        else:
            ussd_reply, app_reply = await asyncio.gather(confirm, app)
        ussd_won = ussd_reply[1].startswith("Rendez-vous pris :")
        assert ussd_won != (app_reply.status_code == 201), (ussd_reply, app_reply.text)
        if ussd_won:  # the app is told in its own channel
            assert app_reply.status_code == 409
            assert app_reply.headers["content-type"].startswith("application/problem+json")
            assert app_reply.json()["code"] == "slot_taken"
        else:  # and USSD in its own: the reason, and how to go on, in French
            assert ussd_reply == ("END", taken)
        rows = await db.fetch(
            "SELECT patient_id, channel FROM appointments WHERE practitioner_id = $1 AND start_at = $2 "
            "AND status = 'booked'",
            network.specialist.practitioner_id,
            datetime.fromisoformat(start),
        )
        expected = (ussd_patient, "ussd") if ussd_won else (app_user.patient_id, "app")
        assert [(r["patient_id"], r["channel"]) for r in rows] == [expected]
        winners.append("ussd" if ussd_won else "app")
    print(f"USSD vs app for one slot, {RACES} races: {winners}")

    # And the loser by USSD whatever the timing: the slot was taken before it confirmed.
    other, phone = await patient_phone(factory, ussd_client, network, "fr")
    app_user = await factory.patient_login(network.post)
    await phone.dial()
    await phone.send("1")
    await phone.send("1")
    await phone.send("1")
    app_booking = {
        "patient_id": str(app_user.patient_id),
        "practitioner_id": str(network.specialist.practitioner_id),
        "start": await _first_slot(factory, network),
    }
    response = await factory.client.post("/v1/appointments", json=app_booking, headers=app_user.headers)
    assert response.status_code == 201, response.text
    assert await phone.send("1") == ("END", taken)
    assert not await db.fetchval("SELECT count(*) FROM appointments WHERE patient_id = $1", other)


async def test_a_chw_books_and_cancels_for_a_patient_of_their_post(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, db: asyncpg.Pool
) -> None:
    chw = await factory.staff(network.post, role="chw")
    patient_id, patient = await patient_phone(factory, ussd_client, network, "km", names=[{"text": "Chan Sophea"}])
    elsewhere = await factory.facility(kind="health_post")
    _other, stranger = await patient_phone(factory, ussd_client, Network(network.centre, elsewhere, chw, ""), "en")
    phone = Phone(ussd_client, chw.phone)
    verb, screen = await phone.dial()  # a Cambodian number without a language of its own: Khmer
    assert verb == "CON"
    assert screen.startswith("Spean អ្នកស្ម័គ្រចិត្ត\n1 រកអ្នកជំងឺ")

    phone = phone.again()
    await phone.dial()
    await phone.send("1")
    verb, screen = await phone.send(stranger.number)  # a patient of another post is not found
    assert verb == "CON"
    assert screen.startswith("រកមិនឃើញអ្នកជំងឺ។")
    verb, screen = await phone.send(patient.number)
    assert screen.startswith("Chan Sophea\n1 កក់ពេល")
    await phone.send("1")  # book
    await phone.send("1")  # the specialty
    await phone.send("1")  # the first free time
    verb, screen = await phone.send("1")  # confirm
    assert verb == "END"
    assert screen.startswith("បានកក់:")
    booked = await db.fetchrow("SELECT * FROM appointments WHERE patient_id = $1", patient_id)
    assert booked is not None
    assert (booked["channel"], booked["booked_by"]) == ("ussd", chw.user_id)

    # Today's and tomorrow's consultations of the post, and a cancellation from there.
    phone = phone.again()
    await phone.dial()
    verb, screen = await phone.send("2")
    if booked["start_at"] < datetime.now(UTC) + timedelta(days=1):  # the first free time is soon
        assert verb == "CON"
        assert "Chan Sophea" in screen
        await phone.send("1")
        await phone.send("1")  # cancel
        verb, screen = await phone.send("1")  # confirm
        assert verb == "END"
        assert await db.fetchval("SELECT status FROM appointments WHERE id = $1", booked["id"]) == "cancelled"
    actions = await db.fetch(
        "SELECT action FROM audit_events WHERE actor_user_id = $1 AND channel = 'ussd'", chw.user_id
    )
    assert "book" in {r["action"] for r in actions}
