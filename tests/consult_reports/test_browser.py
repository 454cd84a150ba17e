"""The specialist's page with files in the chat (headless Chromium, fake camera and microphone):
a file the patient shares shows as a chip, the specialist attaches one from the page, downloads
the patient's, and files it into the record with one click."""

from __future__ import annotations

import asyncio
import os
import uuid
from typing import Any

import asyncpg
import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from playwright.async_api import FilePayload, ViewportSize

from sms.ussd import pin
from tests.browser import ARGS, CHROMIUM, needs_chromium
from tests.consult_reports.test_report import completed, make, sms_link
from tests.factory import Consultation, auth
from tests.realtime.client import Signal
from tests.twilio_server import TwilioServer

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
PDF = b"%PDF-1.4\n" + b"%" * 64 + b"\n%%EOF\n"

PHONE_SIZE: ViewportSize = {"width": 360, "height": 740}  # a small Android phone


async def shot(page: Any, name: str) -> None:
    """With SPEAN_SCREENSHOTS=<folder>, keep the page as shown (the README's pictures)."""
    if folder := os.environ.get("SPEAN_SCREENSHOTS"):
        await page.screenshot(path=os.path.join(folder, f"{name}.png"))


pytestmark = needs_chromium


async def test_files_in_the_chat_of_the_specialists_page(
    rep_live: str,
    sms_db: asyncpg.Pool,
    consultation: Consultation,
    tmp_path: object,
) -> None:
    from playwright.async_api import async_playwright

    c = consultation
    patient = await Signal.open(rep_live.replace("http://", "ws://"))
    try:
        await patient.join(c.patient.token, c.appointment_id)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                page = await (await browser.new_context(accept_downloads=True)).new_page()
                await page.goto(f"{rep_live}/rtc/consult#token={c.specialist.token}&appointment={c.appointment_id}")
                await page.wait_for_selector("#call-file-attach")
                await page.locator("#status", has_text="waiting").wait_for()
                # Through the server the page talks to (its blob store is the one the page reads).
                async with httpx.AsyncClient(base_url=rep_live, timeout=30) as http:
                    shared = await http.post(
                        f"/v1/appointments/{c.appointment_id}/files",
                        params={"name": "rash.png"},
                        content=PNG,
                        headers=auth(
                            c.patient.token, **{"Content-Type": "image/png", "Idempotency-Key": uuid.uuid4().hex}
                        ),
                    )
                assert shared.status_code == 201, shared.text
                file_id = shared.json()["id"]
                chip = page.locator(f"#file-{file_id}")
                await chip.wait_for()
                assert "rash.png" in await chip.inner_text()
                # The specialist attaches a PDF from the page: the patient's socket hears of it.
                ecg: FilePayload = {"name": "ECG.pdf", "mimeType": "application/pdf", "buffer": PDF}
                await page.set_input_files("#call-file-input", files=[ecg])
                announced = await patient.next("file", within=10)  # first the patient's own, then the page's
                if announced["file"]["id"] == file_id:
                    announced = await patient.next("file", within=10)
                assert announced["file"]["name"] == "ECG.pdf"
                await page.locator(f"#file-{announced['file']['id']}").wait_for()
                # Download the patient's file with the page's credentials.
                async with page.expect_download() as waiting:
                    await chip.locator(".file-download").click()
                download = await waiting.value
                saved = await download.path()
                assert saved is not None
                assert await asyncio.to_thread(saved.read_bytes) == PNG
                # File it into the record: one click.
                await chip.locator(".file-into-record").click()
                await chip.locator(".file-into-record", has_text="Filed in the record").wait_for()
                filed = await sms_db.fetchval("SELECT filed_entry_id FROM call_files WHERE id = $1", uuid.UUID(file_id))
                assert filed is not None
                await shot(page, "specialist-call-files")
            finally:
                await browser.close()
    finally:
        await patient.ws.close()


async def test_the_report_links_page_at_phone_size(
    rep_live: str,
    sms_client: AsyncTestClient[Litestar],
    sms_db: asyncpg.Pool,
    twilio: TwilioServer,
    consultation: Consultation,
) -> None:
    """The patient's page from the SMS, in Khmer on a small phone: it asks for the PIN, and says so
    when the PIN is wrong."""
    from playwright.async_api import async_playwright

    c = consultation
    await completed(sms_client, sms_db, c, "km")
    status, made = await make(sms_client, c, c.specialist.token)
    assert status == 201, made
    _, url, _ = await sms_link(twilio, c.patient.phone)
    async with sms_db.acquire() as conn:
        await pin.set_pin(conn, c.patient.patient_id, "2580")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await (await browser.new_context(viewport=PHONE_SIZE, is_mobile=True)).new_page()
            await page.goto(url)
            assert "សូមបញ្ចូលលេខសម្ងាត់" in await page.inner_text("body")
            await shot(page, "report-pin-km")
            await page.fill("input[name=pin]", "1111")
            await page.click("button")
            await page.locator(".problem").wait_for()
            assert "លេខសម្ងាត់មិនត្រឹមត្រូវ" in await page.inner_text(".problem")
            await shot(page, "report-pin-wrong-km")
        finally:
            await browser.close()
