"""The consultation report: a PDF in the patient's language (Khmer and Vietnamese script shaped,
French), made from the record by the specialist, kept as a record attachment, the health post
told, and the patient sent an SMS whose link serves the PDF only for their results PIN."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from consult_reports import pdf
from domain.record.report import Finding, Medication, ReportContent
from notifications.plan import plan
from sms import texts as sms_texts
from sms.ussd import pin
from tests.factory import Consultation, auth
from tests.twilio_server import TwilioServer

Client = AsyncTestClient[Litestar]
_LINK = re.compile(r"(https?://\S+/r/([A-Za-z0-9_-]{16,64}))")

needs_pdftotext = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler's pdftotext is not installed (apt-get install -y poppler-utils)"
)


def text_of(document: bytes) -> str:
    """The PDF's text as poppler extracts it in drawing order, without whitespace: shaped Khmer
    comes out in logical order, split where a sign is drawn apart from its consonant."""
    out = subprocess.run(
        [shutil.which("pdftotext") or "pdftotext", "-raw", "-enc", "UTF-8", "-", "-"],
        input=document,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return "".join(out.split())


def squeeze(words: str) -> str:
    return "".join(words.split())


def _content(language: str) -> ReportContent:
    return ReportContent(
        appointment_id=uuid.uuid4(), patient_id=uuid.uuid4(), patient_name="សុខ ចាន់ធី", patient_phone=None,
        language=language, facility="Calmette Hospital", timezone="Asia/Phnom_Penh", specialist="Dr Lina Chea",
        start=datetime(2026, 12, 3, 2, 30, tzinfo=UTC), reason="ឈឺទ្រូង",
        findings=[Finding(code="I10", text="Essential hypertension")],
        prescriptions=[
            Medication(drug="Amlodipine", code="C08CA01", dose="5 mg", route="oral", frequency="1/day", days=30)
        ],
        follow_up=["Tái khám sau 2 tuần"], advice=[], referral_status="accepted", referral_note=None,
        encounter_id=None,
    )  # fmt: skip


@needs_pdftotext
@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("km", ["របាយការណ៍ពិគ្រោះជំងឺ", "វេជ្ជបញ្ជា", "លេប", "រយៈពេល 30 ថ្ងៃ", "ការបញ្ជូនត្រូវបានទទួលយក"]),
        ("vi", ["Báo cáo tư vấn khám bệnh", "Đơn thuốc", "uống", "trong 30 ngày", "Tái khám sau 2 tuần"]),
        (
            "fr",
            ["Compte rendu de consultation", "Prescriptions", "par voie orale", "pendant 30 jours", "3 décembre 2026"],
        ),
    ],
)
def test_the_pdf_is_written_in_the_patients_language_and_script(language: str, expected: list[str]) -> None:
    document = pdf.render(_content(language), datetime.now(UTC))
    assert document.startswith(b"%PDF-")
    extracted = text_of(document)
    for words in [*expected, "Amlodipine", "C08CA01", "I10", "សុខចាន់ធី"]:  # a Khmer name in any report
        assert squeeze(words) in extracted, (language, words)


async def completed(client: Client, db: asyncpg.Pool, c: Consultation, language: str) -> None:
    await db.execute("UPDATE patients SET preferred_language = $2 WHERE id = $1", c.patient.patient_id, language)
    checked_in = await client.post(
        f"/v1/appointments/{c.appointment_id}/check-in",
        headers=auth(c.chw.token, **{"Idempotency-Key": uuid.uuid4().hex}),
    )
    assert checked_in.status_code in (200, 201), checked_in.text
    results = {
        "entries": [
            {"kind": "condition", "code": "I10", "display": "Essential hypertension"},
            {"kind": "prescription", "drug": "Amlodipine", "drug_code": "C08CA01", "dose": "5 mg", "route": "oral",
             "frequency": "once a day", "duration_days": 30},
            {"kind": "note", "category": "plan", "text": "Quay lại trạm y tế sau 2 tuần để đo huyết áp"},
        ]
    }  # fmt: skip
    completed = await client.post(
        f"/v1/appointments/{c.appointment_id}/complete",
        json=results,
        headers=auth(c.specialist.token, **{"Idempotency-Key": uuid.uuid4().hex}),
    )
    assert completed.status_code in (200, 201), completed.text


async def make(client: Client, c: Consultation, token: str) -> tuple[int, dict[str, object]]:
    answer = await client.post(
        f"/v1/consultations/{c.appointment_id}/report", headers=auth(token, **{"Idempotency-Key": uuid.uuid4().hex})
    )
    body: dict[str, object] = answer.json()
    return answer.status_code, body


async def sms_link(twilio: TwilioServer, phone: str) -> tuple[str, str, str]:
    body = await twilio.latest_to(phone)
    match = _LINK.search(body)
    assert match is not None, body
    return body, match[1], match[2]


async def test_only_the_specialist_makes_the_report_of_a_completed_consultation(
    sms_client: Client, sms_db: asyncpg.Pool, consultation: Consultation
) -> None:
    c = consultation
    status, body = await make(sms_client, c, c.specialist.token)
    assert (status, body["code"]) == (409, "consultation_not_completed")
    await completed(sms_client, sms_db, c, "fr")
    status, body = await make(sms_client, c, c.chw.token)
    assert (status, body["code"]) == (403, "specialist_only")
    status, body = await make(sms_client, c, c.patient.token)
    assert (status, body["code"]) == (403, "specialist_only")


@needs_pdftotext
async def test_the_report_is_filed_in_the_record_and_its_sms_link_needs_the_pin(
    sms_client: Client, sms_db: asyncpg.Pool, twilio: TwilioServer, consultation: Consultation
) -> None:
    c = consultation
    await completed(sms_client, sms_db, c, "vi")
    status, made = await make(sms_client, c, c.specialist.token)
    assert status == 201, made
    assert (made["language"], made["sent_to_patient"]) == ("vi", True)
    # In the record: a PDF attachment of the patient, made from their record, in Vietnamese.
    content = await sms_client.get(f"/v1/record/{made['entry_id']}/content", headers=c.specialist.headers)
    assert content.headers["content-type"] == "application/pdf"
    extracted = text_of(content.content)
    for words in ("Báo cáo tư vấn khám bệnh", "Amlodipine (mã C08CA01)", "trong 30 ngày", "Quay lại trạm y tế"):
        assert squeeze(words) in extracted
    # The health post hears of it in the app (the outbox event the worker plans).
    event = await sms_db.fetchval(
        "SELECT count(*) FROM outbox WHERE topic = 'record.report_ready' AND payload->>'entry_id' = $1",
        made["entry_id"],
    )
    assert event == 1
    async with sms_db.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT id, payload FROM outbox WHERE topic = 'record.report_ready' AND payload->>'entry_id' = $1",
            made["entry_id"],
        )
        assert row is not None
        planned = await plan(conn, row["id"], "record.report_ready", row["payload"], ())
    assert [(p.user_id, p.kind, p.channel) for p in planned] == [(c.chw.user_id, "report_ready", "push")]
    assert planned[0].body == sms_texts.text(planned[0].language, "report_ready_staff")
    # The patient's SMS: a link, no health detail.
    body, url, token = await sms_link(twilio, c.patient.phone)
    assert "Amlodipine" not in body
    assert "I10" not in body
    assert url.endswith(f"/r/{token}")
    # Asking again gives the same report, and sends nothing more.
    again_status, again = await make(sms_client, c, c.specialist.token)
    assert (again_status, again["entry_id"]) == (201, made["entry_id"])
    await asyncio.sleep(0.3)
    assert len(twilio.sent_to(c.patient.phone)) == 1
    # The link's page asks for the PIN, in the patient's language.
    page = await sms_client.get(f"/r/{token}", headers={"Accept": "text/html"})
    assert page.status_code == 200
    assert "Nhập mã PIN kết quả" in page.text
    # Without a PIN set, without the PIN, with a wrong one: no PDF.
    refused = await sms_client.post(f"/r/{token}", data={"pin": "1234"})
    assert (refused.status_code, refused.json()["code"]) == (409, "pin_not_set")
    async with sms_db.acquire() as conn:
        await pin.set_pin(conn, c.patient.patient_id, "2580")
    refused = await sms_client.post(f"/r/{token}", data={})
    assert (refused.status_code, refused.json()["code"]) == (403, "wrong_pin")
    shown = await sms_client.post(f"/r/{token}", data={"pin": "1111"}, headers={"Accept": "text/html"})
    assert shown.status_code == 403
    assert "Mã PIN không đúng" in shown.text
    assert shown.headers["content-type"].startswith("text/html")
    # Signed in (the patient's app), the record's own route serves it without a PIN.
    signed_in = await sms_client.get(f"/v1/record/{made['entry_id']}/content", headers=c.patient.headers)
    assert signed_in.content == content.content
    # The right PIN: the PDF.
    opened = await sms_client.post(f"/r/{token}", data={"pin": "2580"})
    assert opened.status_code == 200
    assert opened.headers["content-type"] == "application/pdf"
    assert opened.content == content.content
    reads = await sms_db.fetch(
        """SELECT outcome FROM audit_events WHERE purpose = 'results_pin' AND patient_id = $1 ORDER BY id""",
        c.patient.patient_id,
    )
    assert [r["outcome"] for r in reads] == ["refused", "refused", "refused", "success"]
    # An unknown link: nothing.
    gone = await sms_client.post(f"/r/{'x' * 32}", data={"pin": "2580"})
    assert (gone.status_code, gone.json()["code"]) == (404, "report_link_not_found")


async def test_pin_tries_on_a_report_link_are_capped(
    sms_client: Client, sms_db: asyncpg.Pool, twilio: TwilioServer, consultation: Consultation
) -> None:
    c = consultation
    await completed(sms_client, sms_db, c, "km")
    status, made = await make(sms_client, c, c.specialist.token)
    assert status == 201, made
    _, _, token = await sms_link(twilio, c.patient.phone)
    async with sms_db.acquire() as conn:
        await pin.set_pin(conn, c.patient.patient_id, "2580")
    codes = []
    for _ in range(pin.MAX_ATTEMPTS):
        codes.append((await sms_client.post(f"/r/{token}", data={"pin": "0000"})).json()["code"])
    assert codes == ["wrong_pin"] * (pin.MAX_ATTEMPTS - 1) + ["pin_locked"]
    # Locked: even the right PIN is refused until the lock passes.
    locked = await sms_client.post(f"/r/{token}", data={"pin": "2580"})
    assert (locked.status_code, locked.json()["code"]) == (429, "pin_locked")
    await sms_db.execute(
        "UPDATE consultation_reports SET link_expires_at = now() - interval '1 second' WHERE appointment_id = $1",
        c.appointment_id,
    )
    expired = await sms_client.get(f"/r/{token}", headers={"Accept": "text/html"})
    assert expired.status_code == 409
    assert "របាយការណ៍" in expired.text


async def test_two_requests_at_once_make_one_report(
    sms_client: Client, sms_db: asyncpg.Pool, twilio: TwilioServer, consultation: Consultation
) -> None:
    c = consultation
    await completed(sms_client, sms_db, c, "en")
    answers = await asyncio.gather(*(make(sms_client, c, c.specialist.token) for _ in range(3)))
    assert {status for status, _ in answers} == {201}
    assert len({made["entry_id"] for _, made in answers}) == 1
    count = await sms_db.fetchval(
        "SELECT count(*) FROM record_entries WHERE patient_id = $1 AND kind = 'attachment'", c.patient.patient_id
    )
    assert count == 1
