"""/dev/phone's endpoints over HTTP: a text goes through the inbound SMS handler and its answer is
read back from the ledger with its state; a USSD turn goes through the USSD engine (a booking
made there is an ordinary `ussd` booking, audited as such); bad input is a 4xx; and a production
server has no /dev route at all."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from infra.config import Settings
from sms import texts
from sms.sender import LogSmsSender
from spean.app import create_app
from tests.factory import Factory, Network, new_phone


async def _until(check: Callable[[], Awaitable[Any]], what: str) -> Any:
    """Poll `check` until it answers something truthy: the reply leaves after commit."""
    for _ in range(100):
        if found := await check():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"never: {what}")


async def _thread(client: AsyncTestClient[Litestar], phone: str) -> list[dict[str, Any]]:
    response = await client.get("/dev/phone/thread", params={"phone": phone})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_help_sent_as_a_patient_is_answered_in_the_thread(
    client: AsyncTestClient[Litestar], factory: Factory, network: Network, db: asyncpg.Pool
) -> None:
    phone = new_phone()
    await factory.patient(network.post, phone=phone, preferred_language="en")
    assert await _thread(client, phone) == []

    # National form, as a developer might type it: the same number.
    sent = await client.post("/dev/phone/sms", json={"phone": "0" + phone[4:], "text": "help"})
    assert sent.status_code == 200, sent.text
    assert sent.json()["phone"] == phone

    async def answered() -> list[dict[str, Any]] | None:
        items = await _thread(client, phone)
        return items if len(items) == 2 and items[1]["status"] == "sent" else None

    items = await _until(answered, "the answer is sent")
    assert [(i["direction"], i["text"]) for i in items] == [("in", "help"), ("out", texts.text("en", "sms_help"))]
    assert items[1]["template"] == "sms_help"
    assert items[1]["segments"] >= 1
    # The very handler of the webhook: the MessageSid is recorded once, with its keyword.
    row = await db.fetchrow(
        "SELECT message_sid, keyword FROM sms_inbound WHERE message_sid = $1", sent.json()["message_sid"]
    )
    assert row is not None
    assert row["keyword"] == "help"


async def test_my_lists_what_a_ussd_booking_made(
    client: AsyncTestClient[Litestar], factory: Factory, network: Network, db: asyncpg.Pool
) -> None:
    phone = new_phone()
    patient_id = await factory.patient(network.post, phone=phone, preferred_language="en")
    session = f"dev-{uuid.uuid4()}"
    answers: list[str] = []

    async def turn(answer: str | None) -> dict[str, Any]:
        if answer is not None:
            answers.append(answer)
        response = await client.post(
            "/dev/phone/ussd", json={"phone": phone, "session_id": session, "text": "*".join(answers)}
        )
        assert response.status_code == 200, response.text
        reply: dict[str, Any] = response.json()
        assert reply["wire"] == ("END " if reply["ends"] else "CON ") + reply["text"]
        return reply

    menu = await turn(None)
    assert not menu["ends"]
    assert f"1 {texts.text('en', 'ussd_opt_book')}" in menu["text"]
    assert (await turn("1"))["text"].startswith(texts.text("en", "ussd_book"))
    assert (await turn("1"))["text"].startswith(texts.text("en", "ussd_slots"))
    # 0 goes back a screen, as on a gateway's session.
    assert (await turn("0"))["text"].startswith(texts.text("en", "ussd_book"))
    assert (await turn("1"))["text"].startswith(texts.text("en", "ussd_slots"))
    assert (await turn("1"))["text"].startswith("Book ")
    booked = await turn("1")
    assert booked["ends"], booked
    assert booked["text"].startswith("Booked: ")

    rows = await db.fetch("SELECT channel, status FROM appointments WHERE patient_id = $1", patient_id)
    assert [(r["channel"], r["status"]) for r in rows] == [("ussd", "booked")]
    assert await db.fetchval(
        "SELECT count(*) FROM audit_events WHERE patient_id = $1 AND channel = 'ussd' AND action = 'book'", patient_id
    )

    sent = await client.post("/dev/phone/sms", json={"phone": phone, "text": "MY"})
    assert sent.status_code == 200, sent.text

    async def listed() -> str | None:
        items = await _thread(client, phone)
        outs = [i for i in items if i["direction"] == "out" and i["template"] == "sms_my_list"]
        return outs[0]["text"] if outs else None

    assert "1" in await _until(listed, "MY is answered with the list")


async def test_numbers_name_patients_and_chws(
    client: AsyncTestClient[Litestar], factory: Factory, network: Network
) -> None:
    chw = await factory.staff(network.post, role="chw")
    family = new_phone()
    await factory.patient(
        network.post, phone=family, names=[{"text": "សុខ ចន្ថា"}, {"text": "Sok Chantha", "use": "usual"}]
    )
    await factory.patient(network.post, phone=family, names=[{"text": "Mao Sopheap"}])
    response = await client.get("/dev/phone/numbers")
    assert response.status_code == 200, response.text
    items = {(i["kind"], i["phone"]): i for i in response.json()["items"]}
    assert items[("patient", family)]["label"] == "Sok Chantha · សុខ ចន្ថា / Mao Sopheap"
    assert items[("chw", chw.phone)]["label"].endswith(
        "Facility " + items[("chw", chw.phone)]["label"].split("Facility ")[-1]
    )
    assert "—" in items[("chw", chw.phone)]["label"]


async def test_the_page_is_served_offline_ready(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/dev/phone")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert 'id="thread"' in page
    assert 'id="ussd-screen"' in page
    assert "http://" not in page
    assert "https://" not in page  # nothing from a CDN: it works offline
    assert "default-src 'self'" in response.headers["content-security-policy"]


async def test_bad_input_is_a_clear_4xx(client: AsyncTestClient[Litestar]) -> None:
    phone = new_phone()
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("/dev/phone/sms", {"phone": "not a number", "text": "HELP"}, 422, "invalid_phone"),
        ("/dev/phone/sms", {"phone": phone, "text": ""}, 400, ""),
        ("/dev/phone/sms", {"phone": phone, "text": "x" * 1601}, 400, ""),
        ("/dev/phone/sms", {"phone": phone}, 400, ""),
        ("/dev/phone/ussd", {"phone": phone, "session_id": "has space", "text": ""}, 400, ""),
        ("/dev/phone/ussd", {"phone": phone, "session_id": "s1", "text": "1*" * 600}, 400, ""),
        ("/dev/phone/ussd", {"phone": "+1", "session_id": "s1"}, 422, "invalid_phone"),
    ]
    for path, body, status, code in cases:
        response = await client.post(path, json=body)
        assert response.status_code == status, (body, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        if code:
            assert response.json()["code"] == code
    response = await client.get("/dev/phone/thread", params={"phone": "12"})
    assert response.status_code == 422
    assert response.json()["code"] == "invalid_phone"


async def test_production_does_not_serve_dev_phone(settings: Settings) -> None:
    production = msgspec.structs.replace(
        settings, env="production", secret_key=secrets.token_urlsafe(48), db_pool_min=1, db_pool_max=2
    )
    app = create_app(production, sms_sender=LogSmsSender())
    assert not [r.path for r in app.routes if r.path.startswith("/dev")]
    async with AsyncTestClient(app) as client:
        for method, path in [("GET", "/dev/phone"), ("GET", "/dev/phone/numbers"), ("POST", "/dev/phone/sms")]:
            response = await client.request(method, path, json={"phone": new_phone(), "text": "HELP"})
            assert response.status_code == 404, (path, response.text)
            assert response.json()["code"] == "route_not_found"
        assert (await client.get("/health")).status_code == 200  # the same app serves the rest
