"""/dev/phone in headless Chromium (Debian's, as the consult page's test drives it) on a live
`spean serve`: pick a patient, text HELP and see Spean's answer in the thread, then dial the USSD
code and walk to a booking and to the appointment list. And a production server has no /dev."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from infra.config import Settings
from infra.embedded import free_port
from sms import texts
from tests.browser import ARGS, CHROMIUM, needs_chromium
from tests.factory import Factory, Network, new_phone
from tests.live import server_env, start_server, wait_ready


def _serve(settings: Settings, folder: Path, env_name: str) -> Iterator[str]:
    env = server_env(settings, folder, SPEAN_ENV=env_name)
    port = free_port()
    log = folder / f"server-{env_name}.log"
    proc: subprocess.Popen[bytes] = start_server(env, port, log, "--no-migrate")
    try:
        wait_ready(port, proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture(scope="module")
def dev_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(settings, tmp_path_factory.mktemp("devphone"), "development")


@pytest.fixture(scope="module")
def production_server(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from _serve(settings, tmp_path_factory.mktemp("production"), "production")


@needs_chromium
async def test_a_patient_texts_help_and_books_by_ussd_from_the_page(
    dev_server: str, factory: Factory, network: Network, db: asyncpg.Pool
) -> None:
    from playwright.async_api import async_playwright

    phone = new_phone()
    patient_id = await factory.patient(
        network.post, phone=phone, preferred_language="en", names=[{"text": "Browser Patient"}]
    )
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone's screen
            await page.goto(f"{dev_server}/dev/phone")
            # Pick the patient by name from the list the server read from the database.
            option = page.locator(f"#number option[value='{phone}']")
            await option.wait_for(state="attached", timeout=10_000)
            assert await option.inner_text() == f"Browser Patient ({phone})"
            await page.get_by_label("Phone number").select_option(phone)

            # SMS: HELP, and Spean's answer read back from the ledger, sent.
            await page.get_by_label("Message").fill("HELP")
            await page.get_by_role("button", name="Send", exact=True).click()
            help_text = texts.text("en", "sms_help")
            answer = page.locator("#thread li.out", has_text=help_text)
            await answer.wait_for(timeout=10_000)
            await page.wait_for_function(
                "() => /· sent/.test(document.querySelector('#thread li.out .meta').textContent)", timeout=10_000
            )
            bubbles = await page.locator("#thread li").all_inner_texts()
            assert bubbles[0].startswith("HELP\nYou · ")  # newest at the bottom: the text, then its answer
            assert bubbles[1].startswith(help_text + "\nSpean · ")

            # USSD: dial, walk the menus (00 back to the main menu on the way), book, list.
            screen = page.locator("#ussd-screen")

            async def key(value: str | None, expect: str) -> str:
                if value is not None:
                    await page.get_by_label("Dial or answer").fill(value)
                await page.locator("#ussd-send").click()
                await page.wait_for_function(
                    "(want) => document.getElementById('ussd-screen').textContent.includes(want)",
                    arg=expect,
                    timeout=10_000,
                )
                return await screen.inner_text()

            book = f"1 {texts.text('en', 'ussd_opt_book')}"
            assert await page.get_by_label("Dial or answer").input_value() == "*384*7#"
            await key(None, book)
            await key("1", texts.text("en", "ussd_book"))
            await key("00", book)
            await key("1", network.specialty)
            await key("1", texts.text("en", "ussd_slots"))
            await key("1", "Book ")
            booked = await key("1", "Booked: ")
            assert "ended" in (await screen.get_attribute("class") or "")
            assert await page.locator("#ussd-send").inner_text() == "Call"

            await key(None, book)  # a new session
            listed = await key("2", texts.text("en", "ussd_appointments"))
            start = await db.fetchval(
                "SELECT start_at FROM appointments WHERE patient_id = $1 AND channel = 'ussd' AND status = 'booked'",
                patient_id,
            )
            assert start is not None
            when = booked.removeprefix("Booked: ").split(",")[0]
            assert when in listed, (booked, listed)
        finally:
            await browser.close()


def test_a_production_server_has_no_dev_phone(production_server: str) -> None:
    with httpx.Client(base_url=production_server, timeout=10) as http:
        for path in ("/dev/phone", "/dev/phone/numbers", "/dev/phone/thread"):
            response = http.get(path, params={"phone": new_phone()})
            assert response.status_code == 404, path
            assert response.json()["code"] == "route_not_found"
        response = http.post("/dev/phone/sms", json={"phone": new_phone(), "text": "HELP"})
        assert response.status_code == 404
        assert http.get("/health").status_code == 200
