"""The SMS journeys over HTTP, as a phone lives them: signed webhooks in, and what Spean sent back
read from the local Twilio-speaking server (the app sends through the real `twilio` SDK).

BOOK in Khmer (Khmer keywords and digits) and in the other languages, a slot raced by the app,
CONSENT and WITHDRAW, REGISTER from an unknown number, help for anything else, and a repeated
MessageSid handled once. MY, CANCEL n and MOVE n are in test_twilio.py."""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from sms import texts
from sms.conversation import wall_clock
from tests.factory import Factory, Staff, new_phone
from tests.sms.conftest import sms_in
from tests.twilio_server import TwilioServer

Client = AsyncTestClient[Litestar]
TZ = "Asia/Phnom_Penh"
_TIME = re.compile(r"\d\) (\d{4}-\d\d-\d\d \d\d:\d\d)")


@dataclass
class Phone:
    """A patient's handset: what it sends, and the one reply each message gets."""

    client: Client
    twilio: TwilioServer
    number: str

    async def send(self, body: str, sid: str | None = None) -> str:
        before = len(self.twilio.sent_to(self.number))
        await sms_in(self.client, self.number, body, sid)
        # Sent right after commit; if that hand-over met an outage, the ledger's loop sends it.
        for _ in range(400):
            received = self.twilio.sent_to(self.number)
            if len(received) > before:
                break
            await asyncio.sleep(0.05)
        assert len(received) == before + 1, received[before:]
        return received[-1]


@dataclass
class Network:
    centre: uuid.UUID
    centre_name: str
    post: uuid.UUID
    specialists: list[Staff]
    specialties: list[str]


async def _network(factory: Factory, specialties: int = 1) -> Network:
    centre = await factory.facility()
    post = await factory.facility(kind="health_post")
    await factory.post(
        f"/v1/facilities/{post}/referral-targets", {"facility_id": str(centre)}, await factory.admin_token()
    )
    tag = uuid.uuid4().hex[:4]
    names = [f"{prefix}{tag}" for prefix in ("cardio", "derma", "neuro")[:specialties]]
    staff = []
    for specialty in names:
        specialist = await factory.staff(centre, specialties=[specialty])
        await factory.weekly(specialist)
        staff.append(specialist)
    name = await factory.db.fetchval("SELECT name FROM facilities WHERE id = $1", centre)
    return Network(centre, name, post, staff, names)


async def _patient(factory: Factory, client: Client, twilio: TwilioServer, network: Network, language: str) -> Phone:
    number = new_phone()
    await factory.patient(network.post, phone=number, preferred_language=language)
    return Phone(client, twilio, number)


async def _booked(db: asyncpg.Pool, phone: str) -> list[asyncpg.Record]:
    return await db.fetch(
        """SELECT a.id, a.start_at, a.channel, a.practitioner_id, a.mode FROM appointments a
           JOIN patients p ON p.id = a.patient_id WHERE p.phone = $1 AND a.status = 'booked' ORDER BY a.start_at""",
        phone,
    )


async def _audited(db: asyncpg.Pool, resource_id: uuid.UUID, action: str) -> str | None:
    channel: str | None = await db.fetchval(
        "SELECT channel FROM audit_events WHERE resource_id = $1 AND action = $2", str(resource_id), action
    )
    return channel


class TestBook:
    async def test_a_whole_booking_in_khmer_with_khmer_digits(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        network = await _network(sms_factory, specialties=2)
        phone = await _patient(sms_factory, sms_client, twilio, network, "km")
        needs = await phone.send("កក់")
        items = ", ".join(f"{n}) {s}" for n, s in enumerate(network.specialties, 1))
        assert needs == texts.text("km", "sms_book_needs", items=items)
        times = await phone.send("២")  # the second specialty
        offered = _TIME.findall(times)
        assert len(offered) == 4
        assert times == texts.text(
            "km",
            "sms_book_slots",
            specialty=network.specialties[1],
            items=", ".join(f"{n}) {t}" for n, t in enumerate(offered, 1)),
        )
        question = await phone.send("៣")
        doctor = await sms_db.fetchval(
            "SELECT name FROM practitioners WHERE id = $1", network.specialists[1].practitioner_id
        )
        assert question == texts.text(
            "km", "sms_book_confirm", when=offered[2], doctor=doctor[:28], facility=network.centre_name
        )
        assert await _booked(sms_db, phone.number) == []  # nothing until YES
        done = await phone.send("បាទ")
        assert done == texts.text("km", "sms_booked", when=offered[2], doctor=doctor[:28], facility=network.centre_name)
        [appointment] = await _booked(sms_db, phone.number)
        assert wall_clock(appointment["start_at"], TZ) == offered[2]  # shown on the facility's clock
        assert appointment["practitioner_id"] == network.specialists[1].practitioner_id
        assert (appointment["channel"], appointment["mode"]) == ("sms", "audio")  # a feature phone: a call
        assert await _audited(sms_db, appointment["id"], "book") == "sms"
        assert await phone.send("បាទ") == texts.text("km", "sms_help")  # the question is closed

    @pytest.mark.parametrize(
        ("language", "book", "yes"),
        [("vi", "Đặt lịch", "CÓ"), ("vi", "dat hen", "co"), ("fr", "Réserver", "oui"), ("en", "book", "YES")],
    )
    async def test_book_in_each_language(
        self,
        sms_client: Client,
        sms_factory: Factory,
        twilio: TwilioServer,
        sms_db: asyncpg.Pool,
        language: str,
        book: str,
        yes: str,
    ) -> None:
        network = await _network(sms_factory)
        phone = await _patient(sms_factory, sms_client, twilio, network, language)
        times = await phone.send(book)  # one specialty: straight to its free times
        offered = _TIME.findall(times)
        assert times.startswith(
            texts.text(language, "sms_book_slots", specialty=network.specialties[0], items="X").split("X")[0]
        )
        assert await phone.send("9") == texts.text(language, "sms_choose_number", n=4)  # asked again
        assert (await phone.send("1")).startswith(
            texts.text(language, "sms_book_confirm", when=offered[0], doctor="X", facility="Y").split("X")[0]
        )
        assert (await phone.send(yes)).startswith(
            texts.text(language, "sms_booked", when=offered[0], doctor="X", facility="Y").split("X")[0]
        )
        [appointment] = await _booked(sms_db, phone.number)
        assert wall_clock(appointment["start_at"], TZ) == offered[0]

    async def test_no_books_nothing_and_a_waiting_referral_comes_first(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        network = await _network(sms_factory, specialties=2)
        phone = await _patient(sms_factory, sms_client, twilio, network, "en")
        patient_id = await sms_db.fetchval("SELECT id FROM patients WHERE phone = $1", phone.number)
        chw = await sms_factory.staff(network.post, role="chw")
        referral = {
            "patient_id": str(patient_id),
            "to_facility_id": str(network.centre),
            "specialty": network.specialties[1],
            "urgency": "routine",
            "reason": "skin lesion growing for months",
        }
        await sms_factory.post("/v1/referrals", referral, chw.token)
        times = await phone.send("BOOK")  # the referral: straight to its times
        assert times.startswith(f"Free times for {network.specialties[1]}: 1) ")
        await phone.send("1")
        assert await phone.send("NO") == texts.text("en", "sms_book_dropped")
        assert await _booked(sms_db, phone.number) == []


class TestSlotRace:
    async def test_an_sms_and_an_app_booking_racing_for_one_slot(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        network = await _network(sms_factory)
        phone = await _patient(sms_factory, sms_client, twilio, network, "fr")
        app_user = await sms_factory.patient_login(network.post)
        offered = _TIME.findall(await phone.send("RESERVER"))
        await phone.send("1")  # the first free time, the one the app goes for too
        start = await _slot_start(sms_factory, network, offered[0])
        booking = {
            "patient_id": str(app_user.patient_id),
            "practitioner_id": str(network.specialists[0].practitioner_id),
            "start": start,
        }
        before = len(twilio.sent_to(phone.number))
        _, app_reply = await asyncio.gather(
            sms_in(sms_client, phone.number, "OUI"),
            sms_client.post("/v1/appointments", json=booking, headers=app_user.headers),
        )
        [sms_reply] = await _replies(twilio, phone.number, before)
        sms_won = sms_reply.startswith("Réservé")
        assert sms_won != (app_reply.status_code == 201), (sms_reply, app_reply.text)
        if sms_won:  # the app is told in its own channel
            assert app_reply.json()["code"] == "slot_taken"
        else:  # and the SMS in its own: the reason, and fresh times to choose from
            assert sms_reply.startswith("Désolé, cet horaire vient d'être pris.")
            assert offered[0] not in _TIME.findall(sms_reply)
        rows = await sms_db.fetch(
            "SELECT patient_id FROM appointments WHERE practitioner_id = $1 AND status = 'booked'",
            network.specialists[0].practitioner_id,
        )
        assert len(rows) == 1

    async def test_the_loser_by_sms_is_offered_fresh_times_and_books_one(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        network = await _network(sms_factory)
        phone = await _patient(sms_factory, sms_client, twilio, network, "km")
        other = await _patient(sms_factory, sms_client, twilio, network, "en")
        offered = _TIME.findall(await phone.send("កក់"))
        await phone.send("១")
        await other.send("BOOK")  # another patient by SMS takes the same time first
        await other.send("1")
        assert (await other.send("YES")).startswith("Booked: ")
        taken = await phone.send("បាទ")
        fresh = _TIME.findall(taken)
        assert taken == texts.text("km", "sms_book_taken", items=", ".join(f"{n}) {t}" for n, t in enumerate(fresh, 1)))
        assert offered[0] not in fresh
        assert await _booked(sms_db, phone.number) == []
        await phone.send("១")
        assert (await phone.send("បាទ")).startswith("បានកក់:")
        [appointment] = await _booked(sms_db, phone.number)
        assert wall_clock(appointment["start_at"], TZ) == fresh[0]


async def _replies(twilio: TwilioServer, phone: str, before: int) -> list[str]:
    """What reached the phone after its first `before` messages, once something did."""
    for _ in range(400):
        if len(twilio.sent_to(phone)) > before:
            break
        await asyncio.sleep(0.05)
    return twilio.sent_to(phone)[before:]


async def _slot_start(factory: Factory, network: Network, local: str) -> str:
    """The UTC instant (ISO) of a wall-clock time offered by SMS, from the app's slot list."""
    today = datetime.now(UTC).date()
    response = await factory.client.get(
        "/v1/slots",
        params={
            "from": str(today),
            "to": str(today.fromordinal(today.toordinal() + 14)),
            "practitioner_id": str(network.specialists[0].practitioner_id),
        },
        headers=network.specialists[0].headers,
    )
    assert response.status_code == 200, response.text
    for item in response.json()["items"]:
        if wall_clock(datetime.fromisoformat(item["start"]), TZ) == local:
            start: str = item["start"]
            return start
    raise AssertionError(f"{local} is not a free slot")


class TestConsent:
    async def test_consent_then_withdraw_after_a_yes(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        network = await _network(sms_factory)
        phone = await _patient(sms_factory, sms_client, twilio, network, "km")
        patient_id = await sms_db.fetchval("SELECT id FROM patients WHERE phone = $1", phone.number)
        assert await phone.send("ដកចេញ") == texts.text("km", "sms_consent_none")
        assert await phone.send("យល់ព្រម") == texts.text("km", "sms_consent_given")
        [given] = await sms_db.fetch("SELECT * FROM consents WHERE patient_id = $1", patient_id)
        assert (given["scope"], given["method"], given["facility_id"]) == ("network", "sms", network.post)
        assert await _audited(sms_db, given["id"], "consent") == "sms"
        assert await phone.send("CONSENT") == texts.text("km", "sms_consent_already")
        assert await phone.send("ដកចេញ") == texts.text("km", "sms_withdraw_confirm")
        assert await phone.send("ទេ") == texts.text("km", "sms_withdraw_kept")
        assert await sms_db.fetchval("SELECT revoked_at FROM consents WHERE id = $1", given["id"]) is None
        assert await phone.send("WITHDRAW") == texts.text("km", "sms_withdraw_confirm")
        assert await phone.send("បាទ") == texts.text("km", "sms_withdrawn")
        assert await sms_db.fetchval("SELECT revoked_at FROM consents WHERE id = $1", given["id"]) is not None
        assert await _audited(sms_db, given["id"], "revoke_consent") == "sms"
        assert await phone.send("Rút") == texts.text("km", "sms_consent_none")  # any language's word


class TestRegister:
    async def test_an_unknown_number_registers_end_to_end(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        tag = uuid.uuid4().hex[:6]
        admin = await sms_factory.admin_token()
        posts = []
        for name in (f"Kampong {tag} Leu", f"Kampong {tag} Kraom"):
            body = {"name": name, "kind": "health_post", "timezone": TZ, "country": "KH"}
            posts.append(uuid.UUID((await sms_factory.post("/v1/facilities", body, admin))["id"]))
        phone = Phone(sms_client, twilio, new_phone())
        assert await phone.send("សួស្តី") == texts.text("km", "sms_help_new")  # +855: Khmer
        assert await phone.send("កក់") == texts.text("km", "sms_unknown_number")
        assert await phone.send("ចុះឈ្មោះ") == texts.text("km", "sms_register_name")
        assert await phone.send("សុខ ចាន់ណា") == texts.text("km", "sms_register_birth_year")
        assert await phone.send("ឆ្នាំមុន") == texts.text("km", "sms_register_birth_year")  # not a year: again
        assert await phone.send("១៩៨៥") == texts.text("km", "sms_register_village")
        assert await phone.send("ភូមិថ្មី") == texts.text("km", "sms_register_post")
        choice = await phone.send(f"kampong {tag}")  # both match: a numbered choice (by name)
        assert choice == texts.text(
            "km", "sms_register_post_choice", items=f"1) Kampong {tag} Kraom, 2) Kampong {tag} Leu"
        )
        assert await phone.send("២") == texts.text("km", "sms_registered", name="សុខ ចាន់ណា", post=f"Kampong {tag} Leu")
        patient = await sms_db.fetchrow("SELECT * FROM patients WHERE phone = $1", phone.number)
        assert patient is not None
        assert (patient["home_facility_id"], patient["birth_year"]) == (posts[0], 1985)
        assert (patient["preferred_language"], patient["preferred_channel"]) == ("km", "sms")
        assert patient["names"][0]["text"] == "សុខ ចាន់ណា"
        login = await sms_db.fetchval("SELECT id FROM users WHERE phone = $1", phone.number)
        assert patient["created_by"] == login  # the number's own login registered itself
        pending = await sms_db.fetchrow("SELECT * FROM patient_self_registrations WHERE patient_id = $1", patient["id"])
        assert pending is not None
        assert (pending["village"], pending["channel"], pending["verified_at"]) == ("ភូមិថ្មី", "sms", None)
        assert await _audited(sms_db, patient["id"], "create") == "sms"
        assert await phone.send("ណាត់") == texts.text("km", "sms_my_none")  # now known

    async def test_no_matching_health_post_sends_it_to_its_health_post(
        self, sms_client: Client, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        phone = Phone(sms_client, twilio, new_phone())
        assert await phone.send("Register") == texts.text("en", "sms_register_name")  # written in English
        for answer in ("Dara Chan", "1990", "Svay", "Nowhere " + uuid.uuid4().hex):
            reply = await phone.send(answer)
        assert reply == texts.text("en", "sms_register_no_post")
        assert await sms_db.fetchval("SELECT count(*) FROM patients WHERE phone = $1", phone.number) == 0
        assert await phone.send("1") == texts.text("km", "sms_help_new")  # the conversation is over


class TestOnce:
    async def test_a_repeated_message_sid_books_and_answers_once(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        network = await _network(sms_factory)
        phone = await _patient(sms_factory, sms_client, twilio, network, "en")
        await phone.send("BOOK")
        await phone.send("1")
        sid = "SM" + uuid.uuid4().hex
        before = len(twilio.sent_to(phone.number))
        await asyncio.gather(*(sms_in(sms_client, phone.number, "YES", sid) for _ in range(3)))
        await sms_in(sms_client, phone.number, "YES", sid)  # and once more, later
        replies = await _replies(twilio, phone.number, before)
        await asyncio.sleep(1)  # a ledger loop round later: still one
        assert twilio.sent_to(phone.number)[before:] == replies
        assert replies[0].startswith("Booked: ")
        assert len(await _booked(sms_db, phone.number)) == 1
