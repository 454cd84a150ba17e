"""The guest's page keeps its place across a server restart: the server it is connected to
stops (SIGTERM: its sockets are closed with 1012/1001), comes back on the same address, and the
page reconnects on its own and resumes its place in the waiting room (the same peer), as the
consultation page does."""

from __future__ import annotations

import signal
from typing import Any

from infra.config import Settings
from infra.embedded import free_port
from realtime.guest_page import texts
from tests.browser import CHROMIUM, GUEST_ARGS, needs_chromium
from tests.factory import Consultation
from tests.invitations.test_precall_browser import PHONE_SIZE, _guest_link
from tests.live import server_env, start_server, wait_ready
from tests.twilio_app import TwilioAppConfig
from tests.twilio_server import TwilioServer

pytestmark = needs_chromium

_STATUS = "(text) => document.getElementById('status').textContent === text"


async def test_the_guest_page_comes_back_after_a_server_restart_in_its_place(
    sms_settings: Settings,
    sms_client: Any,
    twilio: TwilioServer,
    twilio_app_config: TwilioAppConfig,
    consultation: Consultation,
    tmp_path: Any,
) -> None:
    from playwright.async_api import async_playwright

    port = free_port()
    env = server_env(
        sms_settings,
        tmp_path,
        SPEAN_DB_POOL_MAX="3",
        **twilio_app_config.server_env(twilio, f"http://127.0.0.1:{port}"),
    )
    proc = start_server(env, port, tmp_path / "first.log", "--no-migrate")
    wait_ready(port, proc, tmp_path / "first.log")
    link = await _guest_link(sms_client, twilio, consultation, "fr")
    waiting = texts("fr")["join_waiting"]
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=GUEST_ARGS)
            page = await (await browser.new_context(viewport=PHONE_SIZE, is_mobile=True)).new_page()
            await page.goto(f"http://127.0.0.1:{port}{link}")
            await page.click("#join")
            await page.click("#enter")
            await page.wait_for_function(_STATUS, arg=waiting, timeout=30_000)
            peer = await page.evaluate("me")

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
            await page.wait_for_function(_STATUS, arg=texts("fr")["join_lost"], timeout=30_000)
            proc = start_server(env, port, tmp_path / "second.log", "--no-migrate")
            wait_ready(port, proc, tmp_path / "second.log")

            await page.wait_for_function(_STATUS, arg=waiting, timeout=30_000)
            assert await page.evaluate("window.spean.reconnects") >= 1
            assert await page.evaluate("me") == peer  # its place, resumed: not a newcomer
            await browser.close()
    finally:
        proc.terminate()
        proc.wait(15)
