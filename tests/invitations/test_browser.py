"""The issue's end to end: the specialist's page (headless Chromium, fake camera and microphone)
is in a call with an aiortc patient; from the page it invites an interpreter by SMS; the SMS
reaches the local Twilio stand-in; a second Chromium opens the link from the SMS body, joins,
waits, is admitted from the page, and then sees and hears both the specialist and the patient,
who receives the interpreter's video in turn. Each page names who is who."""

from __future__ import annotations

import array
import asyncio
import math
import os
from typing import Any

from aiortc import RTCIceCandidate, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import AudioStreamTrack, MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from av import AudioFrame, VideoFrame
from playwright.async_api import ViewportSize

from tests.browser import CHROMIUM, GUEST_ARGS, needs_chromium
from tests.factory import Consultation
from tests.invitations.conftest import Live, new_guest_phone, sms_link
from tests.realtime.client import Signal
from tests.twilio_server import TwilioServer

PHONE_SIZE: ViewportSize = {"width": 360, "height": 740}  # a small Android phone

pytestmark = needs_chromium


class Tone(AudioStreamTrack):
    """A 440 Hz tone, so that what the interpreter hears of the patient is not silence."""

    def __init__(self) -> None:
        super().__init__()
        self._phase = 0

    async def recv(self) -> AudioFrame:
        frame = await super().recv()  # silence with the right timing
        assert isinstance(frame, AudioFrame)
        samples = frame.samples
        step = 2 * math.pi * 440 / frame.sample_rate
        tone = array.array("h", (int(8000 * math.sin(step * (self._phase + i))) for i in range(samples)))
        self._phase += samples
        frame.planes[0].update(tone.tobytes())
        return frame


async def _answer_ice(signal: Signal, pc: RTCPeerConnection, peer: str) -> None:
    """Trickled candidates from `peer` (the browser) for the aiortc connection."""
    for message in list(signal.seen):
        if message["type"] == "ice" and message.get("from") == peer and message.get("candidate"):
            candidate: RTCIceCandidate = candidate_from_sdp(
                message["candidate"]["candidate"].removeprefix("candidate:")
            )
            candidate.sdpMid = message["candidate"].get("sdpMid")
            candidate.sdpMLineIndex = message["candidate"].get("sdpMLineIndex")
            await pc.addIceCandidate(candidate)


_AUDIO_IN = """async (peer) => {
  const pc = window.spean.peers.get(peer);
  if (!pc) return null;
  let found = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio") {
      found = { packets: s.packetsReceived || 0, energy: s.totalAudioEnergy || 0 };
    }
  });
  return found;
}"""


_PICTURE = "(peer) => { const v = document.querySelector(`#tile-${peer} video`); return v && v.videoWidth > 0; }"


async def _shot(page: Any, name: str) -> None:
    """With SPEAN_SCREENSHOTS=<folder>, keep the page as a phone shows it (the README's pictures)."""
    if folder := os.environ.get("SPEAN_SCREENSHOTS"):
        await page.screenshot(path=os.path.join(folder, f"{name}.png"))  # Playwright makes the folder


async def _hears(page: Any, peer: str) -> dict[str, float]:
    """The guest page's incoming audio from `peer`, once some has arrived with sound in it."""
    audio: dict[str, float] | None = None
    for _ in range(300):
        audio = await page.evaluate(_AUDIO_IN, peer)
        if audio and audio["packets"] > 0 and audio["energy"] > 0:
            return audio
        await asyncio.sleep(0.1)
    raise AssertionError(f"no sound from {peer}: {audio}")


async def test_an_interpreter_invited_by_sms_joins_from_the_link_and_sees_and_hears_the_call(
    live: Live, twilio: TwilioServer, consultation: Consultation
) -> None:
    from playwright.async_api import async_playwright

    c = consultation
    patient = await Signal.open(live.ws(1))
    patient_ready = await patient.join(c.patient.token, c.appointment_id)
    to_specialist, to_interpreter = RTCPeerConnection(), RTCPeerConnection()
    tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    to_interpreter.on("track", tracks.put_nowait)
    for pc in (to_specialist, to_interpreter):
        pc.addTrack(VideoStreamTrack())
        pc.addTrack(Tone())
    phone = new_guest_phone()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=GUEST_ARGS)
        try:
            specialist = await (await browser.new_context()).new_page()
            await specialist.goto(
                f"{live.urls[0]}/rtc/consult#token={c.specialist.token}&appointment={c.appointment_id}"
            )
            # The specialist admits the patient, as before: the page calls, aiortc answers.
            await specialist.locator(f"#waiting-{patient_ready['peer']} button").click(timeout=20_000)
            await patient.next("admitted", within=20)
            offer = await patient.next("offer", within=20)
            await to_specialist.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
            await to_specialist.setLocalDescription(await to_specialist.createAnswer())
            await patient.send(type="answer", to=offer["from"], sdp=to_specialist.localDescription.sdp)
            await specialist.wait_for_function("() => document.getElementById('remote').videoWidth > 0", timeout=30_000)

            # From the page: an interpreter for Khmer, invited by SMS in Khmer.
            await specialist.fill("#invite-phone", phone)
            await specialist.fill("#invite-name", "Chan Dara")
            await specialist.select_option("#invite-role", "interpreter")
            await specialist.fill("#invite-language", "km")
            await specialist.select_option("#invite-locale", "km")
            await specialist.click("#invite-send")
            await specialist.wait_for_function(
                "() => document.getElementById('invite-result').textContent.startsWith('Invitation sent')",
                timeout=20_000,
            )
            link = await sms_link(twilio, phone)
            assert link.url.startswith(f"{live.urls[0]}/join/km#")
            assert "ការពិគ្រោះតាមវីដេអូ" in link.body  # Khmer

            # The interpreter's phone opens the link from the SMS and joins.
            interpreter = await (await browser.new_context(viewport=PHONE_SIZE, is_mobile=True)).new_page()
            await interpreter.goto(link.url)
            assert await interpreter.locator("html").get_attribute("lang") == "km"
            await _shot(interpreter, "guest-invited-km")
            await interpreter.click("#join")
            await interpreter.click("#enter")  # past the pre-call check (tests/invitations/test_precall_browser.py)
            waiting = specialist.locator("#waiting li", has_text="Chan Dara (interpreter, km) is waiting")
            await waiting.wait_for(timeout=30_000)
            await interpreter.wait_for_function(
                "(text) => document.getElementById('status').textContent === text",
                arg="អ្នកនៅក្នុងបន្ទប់រង់ចាំ។ វេជ្ជបណ្ឌិតនឹងអនុញ្ញាតឱ្យអ្នកចូលឆាប់ៗ។",
                timeout=30_000,
            )
            await _shot(interpreter, "guest-waiting-km")
            await waiting.locator("button").click()

            # The patient, already in the call, calls the newcomer (the room's rule).
            joined = await patient.next("peer_joined", within=20)
            assert (joined["role"], joined["language"], joined["name"]) == ("interpreter", "km", "Chan Dara")
            await to_interpreter.setLocalDescription(await to_interpreter.createOffer())
            await patient.send(type="offer", to=joined["peer"], sdp=to_interpreter.localDescription.sdp)
            answer = await patient.next("answer", within=20)
            assert answer["from"] == joined["peer"]
            await to_interpreter.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
            await _answer_ice(patient, to_interpreter, joined["peer"])

            # The interpreter sees both: a tile each, with a picture, named with their role.
            people: dict[str, dict[str, Any]] = await interpreter.evaluate("Object.fromEntries(window.spean.people)")
            doctor = next(p for p, info in people.items() if info["side"] == "specialist")
            sick = next(p for p, info in people.items() if info["side"] == "patient")
            for peer in (doctor, sick):
                await interpreter.wait_for_function(
                    _PICTURE,
                    arg=peer,
                    timeout=30_000,
                )
            assert "វេជ្ជបណ្ឌិត" in await interpreter.inner_text(f"#tile-{doctor} figcaption")  # "Doctor"
            assert "អ្នកជំងឺ" in await interpreter.inner_text(f"#tile-{sick} figcaption")  # "Patient"
            await _shot(interpreter, "guest-in-call-km")
            # ...and hears both (Chromium's fake microphone beeps; the patient sends a tone).
            await _hears(interpreter, doctor)
            await _hears(interpreter, sick)
            # The specialist's page shows the interpreter's video beside the patient's, named.
            await specialist.wait_for_function(
                _PICTURE,
                arg=joined["peer"],
                timeout=30_000,
            )
            assert await specialist.inner_text(f"#tile-{joined['peer']} figcaption") == "Chan Dara (interpreter, km)"
            await _shot(specialist, "specialist-with-interpreter")
            # The patient receives the interpreter's camera.
            track = await asyncio.wait_for(tracks.get(), 30)
            while track.kind != "video":
                track = await asyncio.wait_for(tracks.get(), 30)
            assert isinstance(await asyncio.wait_for(track.recv(), 30), VideoFrame)
            # The invitation is listed as joined on the page.
            await specialist.wait_for_function(
                "() => [...document.querySelectorAll('#invitations li')].some((li) => li.dataset.state === 'joined')",
                timeout=20_000,
            )
            await specialist.click("#hangup")
            assert (await patient.next("ended", within=20))["type"] == "ended"
            await interpreter.wait_for_function(
                "(text) => document.getElementById('status').textContent === text",
                arg="ការពិគ្រោះបានបញ្ចប់។ អ្នកអាចបិទទំព័រនេះបាន។",
                timeout=20_000,
            )
        finally:
            await browser.close()
            await to_specialist.close()
            await to_interpreter.close()
            await patient.close()
