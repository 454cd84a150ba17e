"""Outbound SMS and Twilio's webhooks over HTTP: Spean's app sends through the real `twilio` SDK
to a local server speaking Twilio's REST format (tests/twilio_server.py), which records what it got;
webhooks are signed as Twilio signs them (the SDK's RequestValidator)."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from litestar import Litestar
from litestar.testing import AsyncTestClient
from twilio.request_validator import RequestValidator

from sms import conversation, notices, texts
from sms.outbox import SmsOutbox
from tests.factory import Factory, iso, new_phone, next_local
from tests.sms.conftest import AUTH_TOKEN, FROM_NUMBER, PUBLIC_BASE_URL
from tests.twilio_server import TwilioServer

Client = AsyncTestClient[Litestar]


async def _until(check: Callable[[], Any], timeout_s: float = 20.0) -> Any:
    """Poll until `check()` is truthy (the sender loop works in the background)."""
    for _ in range(int(timeout_s / 0.05)):
        if found := check():
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("timed out waiting")


def _signed(path: str, form: dict[str, str], token: str = AUTH_TOKEN) -> dict[str, str]:
    signature = RequestValidator(token).compute_signature(PUBLIC_BASE_URL + path, form)
    return {"X-Twilio-Signature": signature}


async def _sms_in(client: Client, phone: str, body: str, sid: str | None = None) -> Any:
    form = {
        "MessageSid": sid or "SM" + uuid.uuid4().hex,
        "AccountSid": "AC" + "0" * 32,
        "From": phone,
        "To": FROM_NUMBER,
        "Body": body,
        "NumSegments": "1",
    }
    return await client.post("/v1/sms/inbound", data=form, headers=_signed("/v1/sms/inbound", form))


async def _registered(factory: Factory, language: str = "km") -> str:
    phone = new_phone()
    await factory.patient(await factory.facility(kind="health_post"), phone=phone, preferred_language=language)
    return phone


class TestOutbound:
    async def test_sign_in_code_goes_through_twilio_and_the_ledger(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        phone = await _registered(sms_factory, "en")
        response = await sms_client.post("/v1/auth/otp", json={"phone": phone})
        assert response.status_code == 202
        [received] = [m for m in twilio.messages if m.form["To"] == phone]  # sent right after commit
        assert received.form["From"] == FROM_NUMBER
        assert received.form["StatusCallback"] == PUBLIC_BASE_URL + "/v1/sms/status"
        code = re.search(r"\b(\d{6})\b", received.form["Body"])
        assert code is not None
        tokens = await sms_client.post("/v1/auth/token", json={"phone": phone, "code": code[1]})
        assert tokens.status_code == 200, tokens.text
        row = await sms_db.fetchrow("SELECT * FROM sms_messages WHERE to_phone = $1", phone)
        assert row is not None
        assert (row["status"], row["provider_id"]) == ("sent", received.sid)
        assert (row["template"], row["language"]) == ("login_code", "en")
        assert (row["segments"], row["encoding"]) == (1, "GSM-7")
        assert row["body"] is None  # a sign-in code is not kept once sent

    async def test_provider_outage_then_recovery_loses_and_doubles_nothing(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        phones = [await _registered(sms_factory) for _ in range(3)]
        twilio.fail_next(2, 503, retry_after="0")
        twilio.fail_next(1, 429, code=20429, retry_after="0")
        for phone in phones:
            assert (await sms_client.post("/v1/auth/otp", json={"phone": phone})).status_code == 202
        await _until(lambda: all(twilio.sent_to(p) for p in phones))
        await asyncio.sleep(1.5)  # a loop round later: still one each
        assert [len(twilio.sent_to(p)) for p in phones] == [1, 1, 1]
        rows = await sms_db.fetch("SELECT status, attempts FROM sms_messages WHERE to_phone = ANY($1)", phones)
        assert {r["status"] for r in rows} == {"sent"}
        assert sum(r["attempts"] for r in rows) == 3 + 3  # three failures, then one success each

    async def test_an_invalid_number_fails_for_good_without_retries(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        phone = await _registered(sms_factory)
        twilio.invalid_numbers.add(phone)
        before = twilio.requests
        assert (await sms_client.post("/v1/auth/otp", json={"phone": phone})).status_code == 202
        row = await sms_db.fetchrow("SELECT status, attempts, last_error FROM sms_messages WHERE to_phone = $1", phone)
        assert row is not None
        assert (row["status"], row["attempts"]) == ("failed", 1)
        assert "21211" in row["last_error"]
        await asyncio.sleep(1.5)
        assert twilio.requests == before + 1

    async def test_a_send_cut_off_by_a_dead_worker_is_sent_again_once_its_lease_ran_out(
        self, sms_client: Client, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        dead, alive = new_phone(), new_phone()
        for phone, lease_s in ((dead, -1.0), (alive, 3600.0)):
            await sms_db.execute(
                """INSERT INTO sms_messages (id, idempotency_key, to_phone, template, language, body, segments,
                                             encoding, status, attempts, lease_until)
                   VALUES ($1, $2, $3, 'sms_help', 'en', 'hello', 1, 'GSM-7', 'sending', 1,
                           now() + make_interval(secs => $4))""",
                uuid.uuid4(),
                str(uuid.uuid4()),
                phone,
                lease_s,
            )
        assert await _until(lambda: twilio.sent_to(dead)) == ["hello"]
        await asyncio.sleep(1.5)  # the loop's next rounds: the live lease is left alone
        assert twilio.sent_to(dead) == ["hello"]
        assert twilio.sent_to(alive) == []
        row = await sms_db.fetchrow("SELECT status, attempts FROM sms_messages WHERE to_phone = $1", dead)
        assert row is not None
        assert (row["status"], row["attempts"]) == ("sent", 2)
        await sms_db.execute("UPDATE sms_messages SET status = 'failed' WHERE to_phone = $1", alive)

    async def test_codes_only_to_allowed_countries(self, sms_client: Client, twilio: TwilioServer) -> None:
        before = twilio.requests
        response = await sms_client.post("/v1/auth/otp", json={"phone": "+33612345678"})
        assert response.status_code == 422
        assert response.json()["code"] == "sms_country_not_allowed"
        assert twilio.requests == before

    async def test_status_callback_records_delivery(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        phone = await _registered(sms_factory)
        await sms_client.post("/v1/auth/otp", json={"phone": phone})
        [received] = [m for m in twilio.messages if m.form["To"] == phone]
        for status in ("delivered", "sent"):  # out of order: never moves back
            form = {"MessageSid": received.sid, "MessageStatus": status}
            answer = await sms_client.post("/v1/sms/status", data=form, headers=_signed("/v1/sms/status", form))
            assert answer.status_code == 204, answer.text
        assert await sms_db.fetchval("SELECT status FROM sms_messages WHERE provider_id = $1", received.sid) == (
            "delivered"
        )
        forged = {"MessageSid": received.sid, "MessageStatus": "failed"}
        answer = await sms_client.post("/v1/sms/status", data=forged, headers=_signed("/v1/sms/status", forged, "x"))
        assert answer.status_code == 403


class TestInbound:
    async def test_stop_is_honoured_and_start_undoes_it(
        self,
        sms_client: Client,
        sms_factory: Factory,
        twilio: TwilioServer,
        sms_db: asyncpg.Pool,
        sms_queue: SmsOutbox,
    ) -> None:
        phone = await _registered(sms_factory, "fr")
        patient_id = await sms_db.fetchval("SELECT id FROM patients WHERE phone = $1", phone)

        async def notify() -> uuid.UUID | None:
            async with sms_db.acquire() as conn, conn.transaction():
                return await notices.result_ready(conn, sms_queue, patient_id, detail="HbA1c 9%", key=str(uuid.uuid4()))

        answer = await _sms_in(sms_client, phone, "Arrêt")
        assert answer.status_code == 200
        assert answer.text.endswith("<Response />")
        assert twilio.sent_to(phone) == [texts.text("fr", "sms_stopped")]
        assert await notify() is None  # refused: opted out
        assert (await sms_client.post("/v1/auth/otp", json={"phone": phone})).status_code == 202
        assert "Spean" in twilio.sent_to(phone)[-1]  # sign-in codes still go
        await _sms_in(sms_client, phone, "start")
        assert twilio.sent_to(phone)[-1] == texts.text("fr", "sms_started")
        assert await notify() is not None
        last = await _until(lambda: twilio.sent_to(phone)[-1] if len(twilio.sent_to(phone)) == 4 else None)
        assert last == texts.text("fr", "sms_result_ready")  # no detail: the patient did not opt in
        assert "HbA1c" not in last

    async def test_detail_only_for_a_patient_who_opted_in(
        self,
        sms_client: Client,
        sms_factory: Factory,
        twilio: TwilioServer,
        sms_db: asyncpg.Pool,
        sms_queue: SmsOutbox,
    ) -> None:
        phone = await _registered(sms_factory, "en")
        patient_id = await sms_db.fetchval("SELECT id FROM patients WHERE phone = $1", phone)
        await sms_db.execute("UPDATE patients SET sms_details_opt_in = true WHERE id = $1", patient_id)
        async with sms_db.acquire() as conn, conn.transaction():
            await notices.result_ready(conn, sms_queue, patient_id, detail="HbA1c 9%", key=str(uuid.uuid4()))
        assert await _until(lambda: twilio.sent_to(phone)) == [texts.text("en", "sms_result_detail", detail="HbA1c 9%")]

    async def test_forged_or_unsigned_webhooks_are_refused_and_change_nothing(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        phone = await _registered(sms_factory)
        form = {"MessageSid": "SM" + uuid.uuid4().hex, "From": phone, "To": FROM_NUMBER, "Body": "STOP"}
        forged = await sms_client.post("/v1/sms/inbound", data=form, headers=_signed("/v1/sms/inbound", form, "wrong"))
        unsigned = await sms_client.post("/v1/sms/inbound", data=form)
        other_url = RequestValidator(AUTH_TOKEN).compute_signature("https://evil.example/v1/sms/inbound", form)
        wrong_url = await sms_client.post("/v1/sms/inbound", data=form, headers={"X-Twilio-Signature": other_url})
        tampered = await sms_client.post(
            "/v1/sms/inbound", data={**form, "Body": "START"}, headers=_signed("/v1/sms/inbound", form)
        )
        for answer in (forged, unsigned, wrong_url, tampered):
            assert answer.status_code == 403
            assert answer.headers["content-type"].startswith("application/problem+json")
            assert answer.json()["code"] == "invalid_signature"
        assert await sms_db.fetchval("SELECT count(*) FROM sms_inbound WHERE from_phone = $1", phone) == 0
        assert await sms_db.fetchval("SELECT count(*) FROM sms_opt_outs WHERE phone = $1", phone) == 0
        assert twilio.sent_to(phone) == []

    async def test_a_repeated_message_sid_is_processed_once(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer
    ) -> None:
        phone = await _registered(sms_factory, "vi")
        sid = "SM" + uuid.uuid4().hex
        for _ in range(3):
            assert (await _sms_in(sms_client, phone, "giúp", sid=sid)).status_code == 200
        assert twilio.sent_to(phone) == [texts.text("vi", "sms_help")]

    async def test_unknown_text_gets_help_and_an_unknown_number_is_sent_to_its_health_post(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer
    ) -> None:
        phone = await _registered(sms_factory, "km")
        await _sms_in(sms_client, phone, "សួស្តី")
        assert twilio.sent_to(phone) == [texts.text("km", "sms_help")]
        stranger = new_phone()
        await _sms_in(sms_client, stranger, "MY")
        assert twilio.sent_to(stranger) == [texts.text("km", "sms_unknown_number")]  # +855: Khmer

    async def test_my_lists_and_cancel_n_cancels_through_the_domain(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        centre = await sms_factory.facility()
        specialist = await sms_factory.staff(centre)
        await sms_factory.weekly(specialist)
        patient = await sms_factory.patient_login(await sms_factory.facility(kind="health_post"))
        await sms_db.execute("UPDATE patients SET preferred_language = 'km' WHERE id = $1", patient.patient_id)
        booked = []
        for at in ("08:00", "09:00"):
            response = await sms_client.post(
                "/v1/appointments",
                headers={"Authorization": f"Bearer {patient.token}"},
                json={
                    "patient_id": str(patient.patient_id),
                    "practitioner_id": str(specialist.practitioner_id),
                    "start": iso(next_local("Asia/Phnom_Penh", at)),
                },
            )
            assert response.status_code == 201, response.text
            booked.append(response.json())
        await _sms_in(sms_client, patient.phone, "ណាត់")
        listing = twilio.sent_to(patient.phone)[-1]
        whens = [b["start_local"][:16].replace("T", " ") for b in booked]
        assert listing.startswith("ការណាត់ជួបរបស់អ្នក")
        assert all(w in listing for w in whens)
        await _sms_in(sms_client, patient.phone, "បោះបង់ ២")  # Khmer digits
        assert twilio.sent_to(patient.phone)[-1] == texts.text("km", "sms_cancelled", when=whens[1])
        status = await sms_db.fetchval("SELECT status FROM appointments WHERE id = $1", uuid.UUID(booked[1]["id"]))
        assert status == "cancelled"
        channel = await sms_db.fetchval(
            "SELECT channel FROM audit_events WHERE resource_id = $1 AND action = 'cancel'", booked[1]["id"]
        )
        assert channel == "sms"
        await _sms_in(sms_client, patient.phone, "CANCEL 7")
        assert twilio.sent_to(patient.phone)[-1] == texts.text("km", "sms_cancel_unknown", n=7)

    async def test_move_n_asks_and_yes_moves_no_keeps(
        self, sms_client: Client, sms_factory: Factory, twilio: TwilioServer, sms_db: asyncpg.Pool
    ) -> None:
        centre = await sms_factory.facility()
        specialist = await sms_factory.staff(centre)
        await sms_factory.weekly(specialist)
        patient = await sms_factory.patient_login(await sms_factory.facility(kind="health_post"))
        await sms_db.execute("UPDATE patients SET preferred_language = 'km' WHERE id = $1", patient.patient_id)
        response = await sms_client.post(
            "/v1/appointments",
            headers={"Authorization": f"Bearer {patient.token}"},
            json={
                "patient_id": str(patient.patient_id),
                "practitioner_id": str(specialist.practitioner_id),
                "start": iso(next_local("Asia/Phnom_Penh", "11:30", days_ahead=3)),
            },
        )
        assert response.status_code == 201, response.text
        booked = response.json()
        when = booked["start_local"][:16].replace("T", " ")
        await _sms_in(sms_client, patient.phone, "YES")  # nothing was asked
        assert twilio.sent_to(patient.phone)[-1] == texts.text("km", "sms_help")
        await _sms_in(sms_client, patient.phone, "MOVE 1")
        offer = twilio.sent_to(patient.phone)[-1]
        assert offer.startswith(texts.text("km", "sms_move_offer", when=when, new="X").split("X")[0])
        await _sms_in(sms_client, patient.phone, "ទេ")  # no
        assert twilio.sent_to(patient.phone)[-1] == texts.text("km", "sms_move_kept")
        await _sms_in(sms_client, patient.phone, "ផ្លាស់ ១")
        assert twilio.sent_to(patient.phone)[-1] == offer
        await _sms_in(sms_client, patient.phone, "បាទ")  # yes
        row = await sms_db.fetchrow("SELECT start_at, status FROM appointments WHERE id = $1", uuid.UUID(booked["id"]))
        assert row is not None
        new = conversation.wall_clock(row["start_at"], "Asia/Phnom_Penh")
        assert new != when
        assert offer == texts.text("km", "sms_move_offer", when=when, new=new)
        assert twilio.sent_to(patient.phone)[-1] == texts.text("km", "sms_moved", new=new)
        channel = await sms_db.fetchval(
            "SELECT channel FROM audit_events WHERE resource_id = $1 AND action = 'reschedule'", booked["id"]
        )
        assert channel == "sms"


class TestWithoutAuthToken:
    async def test_every_webhook_is_refused(self, client: Client) -> None:
        form = {"MessageSid": "SM1", "From": "+85597000001", "Body": "STOP"}
        for path in ("/v1/sms/inbound", "/v1/sms/status"):
            answer = await client.post(path, data=form, headers={"X-Twilio-Signature": "anything"})
            assert answer.status_code == 403
            assert answer.json()["code"] == "sms_webhook_disabled"

    async def test_webhooks_are_documented_as_signed_forms(self, client: Client) -> None:
        schema = (await client.get("/schema/openapi.json")).json()
        for path, required in (("/v1/sms/inbound", "Body"), ("/v1/sms/status", "MessageStatus")):
            operation = schema["paths"][path]["post"]
            assert operation["security"] == []
            form = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
            assert required in form["required"]
            assert any(p["name"] == "X-Twilio-Signature" and p["in"] == "header" for p in operation["parameters"])
            assert "application/problem+json" in operation["responses"]["403"]["content"]
        assert "application/xml" in schema["paths"]["/v1/sms/inbound"]["post"]["responses"]["200"]["content"]

    async def test_a_body_that_is_not_a_form_is_refused_unread(self, client: Client) -> None:
        answer = await client.post(
            "/v1/sms/inbound",
            content=b"--x\r\nContent-Disposition: form-data; name=Body\r\n\r\nSTOP",
            headers={"content-type": "multipart/form-data; boundary=x", "X-Twilio-Signature": "x"},
        )
        assert answer.status_code == 403
