"""The specialist's workspace (/rtc/workspace): the day's queue, the patient's summary from the
shared record, the results form that completes the consultation, in headless Chromium at tablet
size; and its API, GET /v1/me/consultation-queue."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import asyncpg
import httpx
import pytest
from babel.messages.pofile import read_po
from playwright.async_api import ViewportSize
from redis.asyncio import Redis

from consult_reports import fonts
from infra.config import Settings
from realtime.guest_page import LANGUAGES
from realtime.rooms import Rooms
from tests.browser import ARGS, CHROMIUM, needs_chromium
from tests.factory import Consultation, Factory, Scene, move
from tests.realtime.conftest import Servers

TABLET: ViewportSize = {"width": 1024, "height": 768}


async def _prepare(
    factory: Factory, db: asyncpg.Pool, c: Consultation, scene_post: uuid.UUID, *, check_in: bool = True
) -> dict[str, Any]:
    """The patient's record (a problem, a medicine, vitals), a referral that led to the
    consultation with one observation, and the patient checked in."""
    chw = c.chw
    record = f"/v1/patients/{c.patient.patient_id}/record"
    await factory.post(record, {"kind": "condition", "code": "I10", "display": "Essential hypertension"}, chw.token)
    await factory.post(
        record,
        {
            "kind": "prescription",
            "drug": "Amlodipine",
            "dose": "5 mg",
            "route": "oral",
            "frequency": "once a day",
            "duration_days": 30,
        },
        chw.token,
    )
    pulse = await factory.post(
        record, {"kind": "observation", "code": "8867-4", "value": 112, "unit": "/min"}, chw.token
    )
    centre = await db.fetchval("SELECT facility_id FROM appointments WHERE id = $1", c.appointment_id)
    await factory.post(
        f"/v1/facilities/{scene_post}/referral-targets", {"facility_id": str(centre)}, await factory.admin_token()
    )
    reason = f"Palpitations at rest, is it atrial fibrillation? {uuid.uuid4().hex[:6]}"
    referral = await factory.post(
        "/v1/referrals",
        {
            "patient_id": str(c.patient.patient_id),
            "to_facility_id": str(centre),
            "specialty": "cardiology",
            "urgency": "urgent",
            "reason": reason,
            "observation_ids": [pulse["id"]],
        },
        chw.token,
    )
    await db.execute(
        "UPDATE referrals SET status = 'accepted', appointment_id = $2 WHERE id = $1",
        uuid.UUID(referral["id"]),
        c.appointment_id,
    )
    if check_in:
        await factory.post(f"/v1/appointments/{c.appointment_id}/check-in", None, chw.token, expect=200)
    name = await db.fetchval("SELECT names->0->>'text' FROM patients WHERE id = $1", c.patient.patient_id)
    return {"name": name, "reason": reason}


async def _clocks_at_midday(db: asyncpg.Pool, scene: Scene) -> None:
    """Put the scene's facilities on a clock where it is about noon now: the queue is the local
    day's, and a consultation an hour from now must not fall on tomorrow at any hour of the run."""
    hours_east = (12 - datetime.now(UTC).hour + 11) % 24 - 11  # -11..12: local noon, give or take an hour
    zone = "Etc/GMT" if hours_east == 0 else f"Etc/GMT{-hours_east:+d}"  # POSIX signs: Etc/GMT-7 is UTC+7
    await db.execute("UPDATE facilities SET timezone = $1 WHERE id = ANY($2::uuid[])", zone, [scene.centre, scene.post])


def _fonts_missing() -> str | None:
    """Why the report cannot be written here (it needs fonts-khmeros and fonts-dejavu-core), or None."""
    try:
        fonts.khmer()
        fonts.latin()
    except fonts.FontMissing as exc:
        return str(exc)
    return None


needs_report_fonts = pytest.mark.skipif(_fonts_missing() is not None, reason=str(_fonts_missing()))


@needs_chromium
@needs_report_fonts
async def test_the_workspace_shows_the_queue_the_summary_and_completes_the_consultation(
    rtc_servers: Servers, factory: Factory, db: asyncpg.Pool
) -> None:
    from playwright.async_api import async_playwright

    scene: Scene = await factory.scene()
    patient, appointment_id = await factory.consultation_soon(scene)
    await _clocks_at_midday(db, scene)
    c = Consultation(appointment_id, scene.specialist, scene.chw, patient, scene.centre, scene.post)
    seeded = await _prepare(factory, db, c, scene.post, check_in=False)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport=TABLET)
            await page.goto(f"{rtc_servers.http_a}/rtc/workspace/en#token={c.specialist.token}")
            # The queue: the consultation is next, and is opened; the patient arrives at the post
            # and the specialist checks them in from the page: now they are waiting.
            entry = page.locator(f"#queue-{appointment_id}")
            await entry.wait_for(timeout=10_000)
            assert await entry.get_attribute("data-standing") == "next"
            await page.click("#ws-checkin", timeout=10_000)
            # (a selector, not a script: the page's policy allows no eval)
            await page.locator(f"#queue-{appointment_id}[data-standing=waiting]").wait_for(timeout=10_000)
            assert await page.locator("#ws-checkin").is_hidden()
            text = await entry.inner_text()
            assert seeded["name"] in text
            assert re.search(r"Waiting for \d+ min", text), text
            await page.locator("#ws-summary").wait_for(state="visible", timeout=10_000)
            # The summary from the record: the referral's question and its observation, the
            # problems, the medicines, the latest vitals.
            assert seeded["name"] in await page.inner_text("#ws-patient")
            assert seeded["reason"] in await page.inner_text("#ws-referral-reason")
            assert "Heart rate: 112 /min" in await page.inner_text("#ws-referral-obs")
            assert "(I10)" in await page.inner_text("#ws-problems")
            assert "Amlodipine 5 mg" in await page.inner_text("#ws-medications")
            assert "Heart rate: 112 /min" in await page.inner_text("#ws-vitals")
            # The call is the consultation page in a frame, for this appointment.
            frame = page.locator("#ws-frame")
            assert str(appointment_id) in (await frame.get_attribute("src") or "")
            # Tablet: nothing wider than the screen, the queue beside the call, the form reachable.
            assert await page.evaluate("document.documentElement.scrollWidth") <= TABLET["width"]
            queue_box = await page.locator("#ws-queue").bounding_box()
            call_box = await page.locator("#ws-call").bounding_box()
            assert queue_box is not None
            assert call_box is not None
            assert queue_box["x"] + queue_box["width"] <= call_box["x"]
            # A half-filled prescription is stopped on the page, in words.
            await page.fill(".prescription [name=drug]", "Bisoprolol")
            await page.click("#ws-complete")
            assert "Each medicine needs" in await page.inner_text("#ws-result")
            # The results, then complete.
            await page.fill("#ws-findings", "Irregular pulse on video, no distress.")
            await page.fill(".diagnosis [name=code]", "i48")
            await page.fill(".diagnosis [name=display]", "Atrial fibrillation")
            await page.fill(".prescription [name=dose]", "2.5 mg")
            await page.fill(".prescription [name=frequency]", "once a day")
            await page.fill(".prescription [name=duration_days]", "60")
            await page.fill("#ws-plan", "ECG at the health post this week.")
            await page.click("#ws-complete")
            await page.wait_for_selector("#ws-result.ok", timeout=10_000)
            assert "4 results written" in await page.inner_text("#ws-result")
            await page.locator(f"#queue-{appointment_id}[data-standing=done]").wait_for(timeout=10_000)
            assert await page.locator("#ws-complete").is_disabled()
            # Completed: the report is offered; made, the page says so and opens its PDF.
            make = page.locator("#ws-make-report")
            await make.wait_for(state="visible", timeout=10_000)
            assert await make.inner_text() == "Make the report and send it"
            await make.click()
            await page.wait_for_selector("#ws-report-result.ok", timeout=30_000)
            said = await page.inner_text("#ws-report-result")
            assert said.startswith("Report sent: the patient has an SMS with its link"), said
            pdf_link = page.locator("#ws-report-pdf")
            await pdf_link.wait_for(state="visible", timeout=10_000)
            assert (await pdf_link.get_attribute("href") or "").startswith("blob:")
            assert await make.is_hidden()
            entry_id = await page.locator("#ws-report-result").get_attribute("data-entry")
            # Picked again from the queue, the completed consultation shows its report as sent.
            again = await browser.new_page(viewport=TABLET)
            await again.goto(f"{rtc_servers.http_a}/rtc/workspace/en#token={c.specialist.token}")
            await again.click(f"#queue-{appointment_id}", timeout=10_000)
            await again.wait_for_selector("#ws-report-result.ok", timeout=30_000)
            assert (await again.inner_text("#ws-report-result")).startswith("Report sent")
            assert await again.locator("#ws-report-result").get_attribute("data-entry") == entry_id
            await again.locator("#ws-report-pdf").wait_for(state="visible", timeout=10_000)
            assert await again.locator("#ws-make-report").is_hidden()
        finally:
            await browser.close()
    # The results are in the record, through the API.
    response = await factory.client.get(f"/v1/appointments/{appointment_id}", headers=c.specialist.headers)
    assert response.json()["status"] == "completed"
    record = await factory.client.get(f"/v1/patients/{patient.patient_id}/record", headers=c.specialist.headers)
    entries = [e for e in record.json()["items"] if e["appointment_id"] == str(appointment_id) or e["encounter_id"]]
    by_kind = {e["kind"]: e for e in record.json()["items"] if e["encounter_id"]}
    assert by_kind["condition"]["code"] == "I48"
    assert by_kind["prescription"]["body"]["drug"] == "Bisoprolol"
    assert {e["body"]["text"] for e in entries if e["kind"] == "note"} == {
        "Irregular pulse on video, no distress.",
        "ECG at the health post this week.",
    }
    # One report: a PDF attachment of the patient's record, and one SMS to the patient with its link.
    reports = [e for e in record.json()["items"] if e["kind"] == "attachment" and e["body"].get("report_for")]
    assert [e["id"] for e in reports] == [entry_id]
    assert reports[0]["body"]["report_for"] == str(appointment_id)
    async with httpx.AsyncClient(base_url=rtc_servers.http_a) as live:  # the server that keeps its bytes
        pdf = await live.get(f"/v1/record/{entry_id}/content", headers=c.specialist.headers)
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")
    filed = await db.fetchrow(
        """SELECT r.entry_id, s.to_phone, s.template FROM consultation_reports r JOIN sms_messages s ON s.id = r.sms_id
            WHERE r.appointment_id = $1""",
        appointment_id,
    )
    assert filed is not None
    assert (str(filed["entry_id"]), filed["template"]) == (entry_id, "report_link")
    phone = await db.fetchval("SELECT phone FROM patients WHERE id = $1", patient.patient_id)
    assert filed["to_phone"] == phone
    assert (
        await db.fetchval("SELECT count(*) FROM sms_messages WHERE idempotency_key = $1", f"report:{appointment_id}")
        == 1
    )


@needs_chromium
async def test_another_facilitys_specialist_sees_nothing_of_the_patient(
    rtc_servers: Servers, factory: Factory, db: asyncpg.Pool
) -> None:
    from playwright.async_api import async_playwright

    scene = await factory.scene()
    patient, appointment_id = await factory.consultation_soon(scene)
    await _clocks_at_midday(db, scene)
    c = Consultation(appointment_id, scene.specialist, scene.chw, patient, scene.centre, scene.post)
    seeded = await _prepare(factory, db, c, scene.post)
    stranger = await factory.staff(await factory.facility())
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport=TABLET)
            await page.goto(
                f"{rtc_servers.http_a}/rtc/workspace/fr#token={stranger.token}&appointment={appointment_id}"
            )
            problem = page.locator("#ws-problem")
            await problem.wait_for(state="visible", timeout=10_000)
            assert await problem.inner_text() == "Vous n'avez pas accès à cette consultation."
            assert await page.locator("#ws-summary").is_hidden()
            assert await page.locator("#ws-results").is_hidden()
            assert await page.locator("iframe").count() == 0
            assert await page.locator(f"#queue-{appointment_id}").count() == 0
            body = await page.inner_text("body")
            assert seeded["name"] not in body
            assert seeded["reason"] not in body
        finally:
            await browser.close()


async def test_the_queue_api_tells_where_each_consultation_stands(
    factory: Factory, db: asyncpg.Pool, settings: Settings
) -> None:
    scene = await factory.scene()
    patients = [await factory.patient_login(scene.post) for _ in range(3)]
    ids = []
    for i, p in enumerate(patients):
        booked = await factory.post(
            "/v1/appointments", {**scene.booking(f"0{8 + i}:00"), "patient_id": str(p.patient_id)}, scene.chw.token
        )
        ids.append(uuid.UUID(booked["id"]))
    await move(db, ids[0], start_in_min=-10, minutes=15)  # started ten minutes ago, patient not here: late
    await move(db, ids[1], start_in_min=20, minutes=15)  # checked in: waiting
    await move(db, ids[2], start_in_min=40, minutes=15)  # the next one not yet here
    await _clocks_at_midday(db, scene)
    await factory.post(f"/v1/appointments/{ids[1]}/check-in", None, scene.chw.token, expect=200)
    answer = await factory.client.get("/v1/me/consultation-queue", headers=scene.specialist.headers)
    assert answer.status_code == 200, answer.text
    items = {uuid.UUID(i["appointment"]["id"]): i for i in answer.json()["items"]}
    assert set(ids) <= set(items)
    assert items[ids[0]]["standing"] == "late"
    assert items[ids[0]]["late_s"] >= 590
    assert items[ids[1]]["standing"] == "waiting"
    assert 0 <= items[ids[1]]["waiting_s"] < 120
    assert items[ids[1]]["checked_in_at"] is not None
    assert items[ids[2]]["standing"] == "next"
    assert items[ids[1]]["patient_name"].startswith("Patient ")
    # The patient of the third one opened the call page: in the video room's waiting room, they
    # are waiting (not next), for as long as they have been there; admitted, in consultation.
    redis = Redis.from_url(settings.redis_url or "")
    rooms = Rooms(redis, grace_s=5)  # the store the signalling server writes
    peer, _ = await rooms.add(str(ids[2]), f"user-{uuid.uuid4()}", "patient", "waiting", "P")
    await rooms.add(str(ids[0]), f"user-{uuid.uuid4()}", "specialist", "admitted", "Dr")  # not the patient
    again = await factory.client.get("/v1/me/consultation-queue", headers=scene.specialist.headers)
    now_items = {uuid.UUID(i["appointment"]["id"]): i for i in again.json()["items"]}
    assert now_items[ids[2]]["standing"] == "waiting"
    assert now_items[ids[2]]["in_room"]["state"] == "waiting"
    assert 0 <= now_items[ids[2]]["waiting_s"] < 60
    assert now_items[ids[0]]["standing"] == "late"
    assert now_items[ids[0]]["in_room"] is None
    await rooms.update(str(ids[2]), peer, state="admitted")
    again = await factory.client.get("/v1/me/consultation-queue", headers=scene.specialist.headers)
    assert {i["appointment"]["id"]: i["standing"] for i in again.json()["items"]}[str(ids[2])] == "in_progress"
    await redis.aclose()
    # The read is audited, one event per patient listed.
    audited = await db.fetchval(
        """SELECT count(DISTINCT patient_id) FROM audit_events WHERE actor_user_id = $1 AND action = 'search'
           AND resource_type = 'Appointment' AND patient_id = ANY($2::uuid[])""",
        scene.specialist.user_id,
        [p.patient_id for p in patients],
    )
    assert audited == 3
    # Only a practitioner has a queue; a bad date is a 400; no token, 401.
    refused = await factory.client.get("/v1/me/consultation-queue", headers=patients[0].headers)
    assert (refused.status_code, refused.json()["code"]) == (403, "not_a_practitioner")
    bad = await factory.client.get("/v1/me/consultation-queue?date=yesterday", headers=scene.specialist.headers)
    assert bad.status_code == 400
    assert (await factory.client.get("/v1/me/consultation-queue")).status_code == 401
    # Another day is empty for this new specialist.
    other = await factory.client.get("/v1/me/consultation-queue?date=2020-01-01", headers=scene.specialist.headers)
    assert other.json()["items"] == []


def test_every_text_of_the_workspace_is_translated_into_every_language() -> None:
    def messages(language: str) -> dict[str, str]:
        with (resources.files("realtime") / "locales" / "workspace" / f"{language}.po").open("rb") as fh:
            return {str(m.id): str(m.string) for m in read_po(fh, locale=language) if m.id}

    english = messages("en")
    script = (resources.files("realtime") / "static" / "workspace.js").read_text(encoding="utf-8")
    page = (resources.files("realtime") / "static" / "workspace.html").read_text(encoding="utf-8")
    used = set(re.findall(r"""t\("(ws_\w+)"|data-t="(ws_\w+)\"""", script + page))
    for key in {k for pair in used for k in pair if k}:
        assert key in english, key
    for language in LANGUAGES:
        translated = messages(language)
        assert sorted(k for k in english if not translated.get(k)) == [], language
        assert set(translated) == set(english), language
        for key, text in translated.items():
            assert set(re.findall(r"\{\w+\}", text)) == set(re.findall(r"\{\w+\}", english[key])), (language, key)


async def test_the_workspace_page_and_its_files(factory: Factory) -> None:
    answer = await factory.client.get("/rtc/workspace/km")
    assert answer.status_code == 200
    assert '<html lang="km">' in answer.text
    assert "កន្លែងធ្វើការរបស់គ្រូពេទ្យឯកទេស" in answer.text
    policy = answer.headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy
    assert "frame-src 'self'" in policy
    assert (await factory.client.get("/rtc/workspace/xx")).text.count('lang="en"') == 1
    script = await factory.client.get("/rtc/static/workspace.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert (await factory.client.get("/rtc/static/workspace.css")).headers["content-type"].startswith("text/css")
    assert (await factory.client.get("/rtc/static/consult.html")).status_code == 404
    assert (await factory.client.get("/rtc/static/..%2Froutes.py")).status_code == 404
