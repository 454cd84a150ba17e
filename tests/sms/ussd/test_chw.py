"""A community health worker on a basic phone, over the USSD gateway callback: find a patient of
the post by name (case and accents ignored, Khmer as written), by phone or by ID; the reference
centre's answers waiting at the post, the same list the app shows, acknowledged from either.
The CHW's number is Cambodian and belongs to no patient: the screens are in Khmer."""

from __future__ import annotations

import uuid

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient

from sms import texts
from tests.factory import Factory, Network, Staff, iso, next_local
from tests.sms.ussd.conftest import Phone


def km(message_id: str, **values: str) -> str:
    return texts.text("km", message_id, **values)


async def _patient(factory: Factory, facility: uuid.UUID, name: str) -> uuid.UUID:
    return await factory.patient(facility, names=[{"text": name}], preferred_language="km")


async def _find(phone: Phone, query: str) -> tuple[str, str]:
    await phone.dial()
    await phone.send("1")
    return await phone.send(query)


async def test_find_a_patient_by_name(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, db: asyncpg.Pool
) -> None:
    chw = await factory.staff(network.post, role="chw")
    tag = uuid.uuid4().hex[:5]  # names of this test only
    thi = await _patient(factory, network.post, f"Nguyễn Thị Phượng {tag}")
    van = await _patient(factory, network.post, f"Nguyễn Văn Phượng {tag}")
    dara = await _patient(factory, network.post, f"សុខ ដារ៉ា {tag}")
    elsewhere = await factory.facility(kind="health_post")
    await _patient(factory, elsewhere, f"Trần Phượng {tag}")  # same name, another post: never found

    # Without accents and in capitals, as typed on a keypad: both of the post's Phượng, by name.
    phone = Phone(ussd_client, chw.phone)
    verb, screen = await _find(phone, f"PHUONG {tag}")
    assert verb == "CON"
    assert screen.splitlines()[:3] == [
        km("ussd_chw_matches"),
        f"1 Nguyễn Thị Phượng {tag}",
        f"2 Nguyễn Văn Phượng {tag}",
    ]
    verb, screen = await phone.send("2")
    assert screen.splitlines()[:2] == [f"Nguyễn Văn Phượng {tag}", f"1 {km('ussd_opt_book')}"]

    # One match opens the patient's menu at once; Khmer is matched as written.
    verb, screen = await _find(phone.again(), f"thi phuong {tag}")
    assert screen.startswith(f"Nguyễn Thị Phượng {tag}\n")
    verb, screen = await _find(phone.again(), f"ដារ៉ា {tag}")
    assert screen.startswith(f"សុខ ដារ៉ា {tag}\n")

    # Every search is in the audit trail, channel ussd, naming the patients it found.
    found = await db.fetch(
        """SELECT DISTINCT patient_id FROM audit_events
           WHERE actor_user_id = $1 AND channel = 'ussd' AND action = 'search' AND resource_type = 'Patient'""",
        chw.user_id,
    )
    assert {r["patient_id"] for r in found} == {thi, van, dara}


async def test_too_many_or_no_match_asks_again_then_ends_politely(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network
) -> None:
    chw = await factory.staff(network.post, role="chw")
    tag = uuid.uuid4().hex[:5]
    for n in range(7):  # one more than a screen lists
        await _patient(factory, network.post, f"Mao {tag} {n}")
    phone = Phone(ussd_client, chw.phone)
    verb, screen = await _find(phone, f"mao {tag}")
    assert verb == "CON"
    assert screen.startswith(km("ussd_chw_too_many"))
    verb, screen = await phone.send(f"mao {tag} 6")  # more of the name: one patient
    assert screen.startswith(f"Mao {tag} 6\n")

    phone = phone.again()
    verb, screen = await _find(phone, f"nobody {tag}")
    assert (verb, screen.splitlines()[0]) == ("CON", km("ussd_chw_no_match"))
    assert await phone.send(f"still nobody {tag}") == ("END", km("ussd_bye_invalid"))


async def test_back_and_main_menu_on_the_chw_screens(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network
) -> None:
    chw = await factory.staff(network.post, role="chw")
    await _patient(factory, network.post, "Keo Bopha")
    phone = Phone(ussd_client, chw.phone)
    _verb, main = await phone.dial()
    assert main.splitlines() == [
        km("ussd_chw_main"),
        f"1 {km('ussd_chw_find')}",
        f"2 {km('ussd_chw_today')}",
        f"3 {km('ussd_chw_answers_opt')}",
    ]
    _verb, prompt = await phone.send("1")
    assert prompt.splitlines()[0] == km("ussd_chw_find_any")
    assert await phone.send("0") == ("CON", main)
    await phone.send("1")
    _verb, patient = await phone.send("Keo Bopha")
    _verb, book = await phone.send("1")
    assert book.splitlines()[0] == km("ussd_book")
    assert await phone.send("0") == ("CON", patient)
    assert await phone.send("00") == ("CON", main)


async def _referral(factory: Factory, network: Network, chw: Staff, patient: uuid.UUID, reason: str) -> str:
    body = {
        "patient_id": str(patient),
        "to_facility_id": str(network.centre),
        "specialty": network.specialty,
        "urgency": "routine",
        "reason": reason,
    }
    created: dict[str, str] = await factory.post("/v1/referrals", body, chw.token)
    return created["id"]


async def _triage(factory: Factory, network: Network, referral: str, decision: dict[str, str]) -> None:
    response = await factory.client.post(
        f"/v1/referrals/{referral}/triage", json=decision, headers=network.specialist.headers
    )
    assert response.status_code == 200, response.text


async def _waiting(factory: Factory, network: Network, chw: Staff) -> list[str]:
    response = await factory.client.get(
        f"/v1/facilities/{network.post}/referrals", params={"waiting": "true"}, headers=chw.headers
    )
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["items"]]


async def test_referral_answers_waiting_at_the_post(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, db: asyncpg.Pool
) -> None:
    chw = await factory.staff(network.post, role="chw")
    sophea = await _patient(factory, network.post, "Chan Sophea")
    malis = await _patient(factory, network.post, "Sok Malis")
    advised = await _referral(factory, network, chw, sophea, "chest pain on effort")
    declined = await _referral(factory, network, chw, malis, "palpitations")
    open_one = await _referral(factory, network, chw, malis, "follow-up")  # not answered yet: not listed
    await _triage(factory, network, advised, {"decision": "advise", "advice": "Amlodipine 5 mg daily, BP weekly."})
    await _triage(factory, network, declined, {"decision": "decline", "reason": "See the district hospital."})
    assert await _waiting(factory, network, chw) == [advised, declined]  # the app's list, oldest answer first

    phone = Phone(ussd_client, chw.phone)
    await phone.dial()
    verb, screen = await phone.send("3")
    assert verb == "CON"
    assert screen.splitlines()[:3] == [
        km("ussd_chw_answers"),
        f"1 Chan Sophea {network.specialty}",
        f"2 Sok Malis {network.specialty}",
    ]
    verb, screen = await phone.send("1")
    # The advice, as much of it as a Khmer screen (80 UCS-2 characters) holds beside the menu.
    name, advice = screen.splitlines()[:2]
    assert name == "Chan Sophea"
    assert advice.startswith(f"{km('ussd_answer_answered')} Amlodipine 5 mg")
    assert await phone.send("1") == ("END", km("ussd_chw_ack_done"))
    assert await _waiting(factory, network, chw) == [declined]  # gone from the app's list too
    seen = await db.fetchrow("SELECT outcome_seen_by, outcome_seen_at FROM referrals WHERE id = $1", uuid.UUID(advised))
    assert seen is not None
    assert seen["outcome_seen_by"] == chw.user_id
    assert seen["outcome_seen_at"] is not None
    audited = await db.fetchval(
        """SELECT count(*) FROM audit_events WHERE actor_user_id = $1 AND channel = 'ussd'
             AND resource_type = 'ServiceRequest' AND resource_id = $2""",
        chw.user_id,
        advised,
    )
    assert audited >= 2  # the answer read, and acknowledged

    # The declined one: its reason, then the patient's own menu (to book elsewhere, say).
    phone = phone.again()
    await phone.dial()
    await phone.send("3")
    _verb, screen = await phone.send("1")
    assert screen.splitlines()[0] == "Sok Malis"
    assert screen.splitlines()[1].startswith(f"{km('ussd_answer_declined')} See the district")
    _verb, screen = await phone.send("2")
    assert screen.splitlines()[:2] == ["Sok Malis", f"1 {km('ussd_opt_book')}"]

    # Acknowledged in the app: nothing waits any more, on USSD either.
    acknowledged = await factory.post(f"/v1/referrals/{declined}/acknowledge", None, chw.token, expect=200)
    assert acknowledged["outcome_seen_by"] == str(chw.user_id)
    again = await factory.post(f"/v1/referrals/{declined}/acknowledge", None, chw.token, expect=200)
    assert again["outcome_seen_at"] == acknowledged["outcome_seen_at"]  # the first reader stays
    phone = phone.again()
    await phone.dial()
    assert await phone.send("3") == ("END", km("ussd_chw_no_answers"))

    # Only an answered referral is acknowledged, and only by the referring facility.
    response = await factory.client.post(f"/v1/referrals/{open_one}/acknowledge", headers=chw.headers)
    assert (response.status_code, response.json()["code"]) == (409, "invalid_status")
    response = await factory.client.post(f"/v1/referrals/{advised}/acknowledge", headers=network.specialist.headers)
    assert (response.status_code, response.json()["code"]) == (403, "role_required")


async def test_the_posts_consultations_of_today_and_tomorrow_and_a_cancellation(
    factory: Factory, ussd_client: AsyncTestClient[Litestar], network: Network, db: asyncpg.Pool
) -> None:
    chw = await factory.staff(network.post, role="chw")
    sophea = await _patient(factory, network.post, "Chan Sophea")
    malis = await _patient(factory, network.post, "Sok Malis")
    elsewhere = await _patient(factory, await factory.facility(kind="health_post"), "Keo Dara")
    admin = await factory.admin_token()

    async def book(patient: uuid.UUID, days_ahead: int, at: str) -> str:
        body = {
            "patient_id": str(patient),
            "practitioner_id": str(network.specialist.practitioner_id),
            "start": iso(next_local("Asia/Phnom_Penh", at, days_ahead=days_ahead)),
        }
        booked: dict[str, str] = await factory.post("/v1/appointments", body, admin)
        return booked["id"]

    tomorrow = await book(sophea, 1, "09:00")
    await book(malis, 3, "10:00")  # later than tomorrow: not listed
    await book(elsewhere, 1, "10:30")  # another post's patient: not listed
    phone = Phone(ussd_client, chw.phone)
    await phone.dial()
    verb, screen = await phone.send("2")
    assert verb == "CON"
    lines = screen.splitlines()
    assert lines[0] == km("ussd_chw_consultations")
    assert len([line for line in lines if line[:2] in ("1 ", "2 ", "3 ")]) == 1
    assert lines[1].startswith("1 ")
    assert lines[1].endswith(" 09:00 Chan Sophea")  # the post's clock

    # Sok Malis's later consultation, cancelled by the CHW from the patient's own screens.
    phone = phone.again()
    await _find(phone, "Sok Malis")
    await phone.send("2")  # appointments
    await phone.send("1")  # the one
    verb, screen = await phone.send("1")  # cancel
    assert verb == "CON"
    assert await phone.send("1") == ("END", km("ussd_cancelled"))
    row = await db.fetchrow("SELECT status FROM appointments WHERE patient_id = $1", malis)
    assert row is not None
    assert row["status"] == "cancelled"
    audited = await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE actor_user_id = $1 AND channel = 'ussd' AND action = 'cancel'",
        chw.user_id,
    )
    assert audited == 1
    assert await db.fetchval("SELECT status FROM appointments WHERE id = $1", uuid.UUID(tomorrow)) == "booked"
