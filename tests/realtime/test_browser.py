"""The specialist's page in headless Chromium (fake camera) connects to an aiortc patient through
the same signalling server, and the patient receives the page's camera video."""

from __future__ import annotations

import asyncio
import shutil

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame

from tests.realtime.client import Signal
from tests.realtime.conftest import Consultation, Servers

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None, reason="Debian's chromium is not installed (apt-get install -y chromium)"
)


async def test_specialist_page_calls_an_aiortc_patient(rtc_servers: Servers, consultation: Consultation) -> None:
    from playwright.async_api import async_playwright

    c = consultation
    patient = await Signal.open(rtc_servers.b)
    ready = await patient.join(c.patient.token, c.appointment_id)
    pc = RTCPeerConnection()
    pc.addTrack(VideoStreamTrack())  # the patient's side sends video too
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    pc.on("track", tracks.put_nowait)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--use-fake-device-for-media-stream",
                "--use-fake-ui-for-media-stream",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            page = await browser.new_page()
            await page.goto(
                f"{rtc_servers.http_a}/rtc/consult#token={c.specialist.token}&appointment={c.appointment_id}"
            )
            # The waiting patient shows up; the specialist admits them with the page's button.
            admit = page.locator(f"#waiting-{ready['peer']} button")
            await admit.click(timeout=10_000)
            await patient.next("admitted")
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
            await page.click("#hangup")
            assert (await patient.next("ended", within=10))["type"] == "ended"
        finally:
            await browser.close()
            await pc.close()
