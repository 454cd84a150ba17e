"""The specialist's page in headless Chromium (fake camera) connects to an aiortc patient through
the same signalling server, and the patient receives the page's camera video."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame

from domain.identity.tokens import issue_access_token
from domain.principal import Principal
from infra.config import Settings
from tests.browser import ARGS, CHROMIUM, needs_chromium
from tests.factory import Consultation
from tests.realtime.client import Signal
from tests.realtime.conftest import Servers

pytestmark = needs_chromium


async def test_specialist_page_calls_an_aiortc_patient(
    rtc_servers: Servers, consultation: Consultation, db: asyncpg.Pool
) -> None:
    from playwright.async_api import async_playwright

    c = consultation
    name = await db.fetchval("SELECT names->0->>'text' FROM patients WHERE id = $1", c.patient.patient_id)
    patient = await Signal.open(rtc_servers.b)
    ready = await patient.join(c.patient.token, c.appointment_id)
    pc = RTCPeerConnection()
    pc.addTrack(VideoStreamTrack())  # the patient's side sends video too
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    pc.on("track", tracks.put_nowait)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(
                f"{rtc_servers.http_a}/rtc/consult#token={c.specialist.token}&appointment={c.appointment_id}"
            )
            # The waiting patient shows up by name; the specialist admits them with the page's button.
            waiting = page.locator(f"#waiting-{ready['peer']}")
            await waiting.wait_for(timeout=10_000)
            assert f"{name} is waiting" in await waiting.inner_text()
            await page.wait_for_function(
                "(name) => document.getElementById('status').textContent.includes(name + ' is waiting')", arg=name
            )
            await waiting.locator("button").click(timeout=10_000)
            await patient.next("admitted")
            # The status follows the admission (admitting, connecting, then in consultation).
            await page.wait_for_function(
                "(name) => /^(Admitting|Admitted|In consultation with) /.test(document.getElementById('status')"
                ".textContent) && document.getElementById('status').textContent.includes(name)",
                arg=name,
                timeout=10_000,
            )
            offer = await patient.next("offer", within=10)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await patient.send(type="answer", to=offer["from"], sdp=pc.localDescription.sdp)
            track = await asyncio.wait_for(tracks.get(), 15)
            while track.kind != "video":  # the page sends its microphone too
                track = await asyncio.wait_for(tracks.get(), 15)
            frame = await asyncio.wait_for(track.recv(), 15)
            assert isinstance(frame, VideoFrame)
            # And the browser shows the patient's video.
            await page.wait_for_function("document.getElementById('remote').videoWidth > 0", timeout=15_000)
            await page.wait_for_function(
                "(name) => document.getElementById('status').textContent === 'In consultation with ' + name",
                arg=name,
                timeout=15_000,
            )
            await page.click("#hangup")
            assert (await patient.next("ended", within=10))["type"] == "ended"
        finally:
            await browser.close()
            await pc.close()


async def test_the_page_says_in_words_why_it_was_disconnected(
    rtc_servers: Servers, consultation: Consultation, settings: Settings
) -> None:
    """Close codes become sentences (4401: sign in again; 4404: no such appointment), never a bare number."""
    from playwright.async_api import async_playwright

    c = consultation
    principal = Principal(user_id=c.specialist.user_id, practitioner_id=c.specialist.practitioner_id)
    expired = issue_access_token(principal, settings.secret_key, 60, now=time.time() - 3600)
    cases = [
        (expired, c.appointment_id, "4401", "Your sign-in expired — sign in again."),
        (c.specialist.token, uuid.uuid4(), "4404", "There is no such appointment — check the link."),
    ]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for token, appointment, code, words in cases:
                page = await browser.new_page()
                await page.goto(f"{rtc_servers.http_a}/rtc/consult#token={token}&appointment={appointment}")
                status = page.locator("#status")
                await page.wait_for_function(
                    "(code) => document.getElementById('status').dataset.closeCode === code", arg=code, timeout=10_000
                )
                text = await status.inner_text()
                assert text == words
                assert code not in text
                assert "disconnected" not in text
                await page.close()
        finally:
            await browser.close()
