"""The pre-call check's echo peer, driven by an aiortc client: it sends our own frames back; it
answers only the consultation's participants and its guests; a worker keeps no more than its
cap (503 `echo_busy` with Retry-After) and closes each after its time limit. And opening
invitation links is rate-limited, per address and per link (429 with Retry-After)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from av import VideoFrame
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from infra.config import Settings
from realtime.echo import EchoPeers
from spean.app import create_app
from tests.factory import Consultation, Factory, auth
from tests.invitations.conftest import Link, invite, new_guest_phone, sms_link
from tests.twilio_server import TwilioServer

Client = AsyncTestClient[Litestar]
SHADE = 200  # the brightness of our frames: what comes back must be ours, not black


class Shade(VideoStreamTrack):
    """Frames of one flat grey, so the echo's frames can be told for ours."""

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = _grey()
        frame.pts, frame.time_base = pts, time_base
        return frame


def _grey() -> VideoFrame:
    frame = VideoFrame(width=160, height=120, format="yuv420p")
    frame.planes[0].update(bytes([SHADE]) * frame.planes[0].buffer_size)
    for plane in frame.planes[1:]:
        plane.update(bytes([128]) * plane.buffer_size)
    return frame


@pytest.fixture
async def small(sms_settings: Settings) -> AsyncIterator[Client]:
    """An app whose worker keeps one echo peer at most, for 2 s, and lets a link be opened 3
    times and an address 5 times per window."""
    settings = msgspec.structs.replace(
        sms_settings, echo_peers_max=1, echo_seconds=2, invitation_open_per_ip=5, invitation_open_per_token=3
    )
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


async def _offer(pc: RTCPeerConnection) -> str:
    pc.addTrack(Shade())
    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers before returning: no trickle
    return str(pc.localDescription.sdp)


async def _own_frames_back(pc: RTCPeerConnection, answer: dict[str, Any], frames: asyncio.Queue[Any]) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
    track = await asyncio.wait_for(frames.get(), 20)
    ours = _brightness(_grey())
    for _ in range(5):
        frame = await asyncio.wait_for(track.recv(), 20)
        assert (frame.width, frame.height) == (160, 120)
        assert abs(_brightness(frame) - ours) < 8, (_brightness(frame), ours)  # through two VP8 encodings


def _brightness(frame: VideoFrame) -> float:
    grey = bytes(frame.reformat(format="gray").planes[0])
    return sum(grey) / len(grey)


def _tracks(pc: RTCPeerConnection) -> asyncio.Queue[Any]:
    queue: asyncio.Queue[Any] = asyncio.Queue()
    pc.on("track", lambda track: queue.put_nowait(track) if track.kind == "video" else None)
    return queue


async def test_the_patient_gets_their_own_frames_back(sms_client: Client, consultation: Consultation) -> None:
    pc = RTCPeerConnection()
    frames = _tracks(pc)
    try:
        sdp = await _offer(pc)
        answer = await sms_client.post(
            "/v1/rtc/echo",
            json={"appointment_id": str(consultation.appointment_id), "sdp": sdp},
            headers=auth(consultation.patient.token),
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["seconds"] == 20
        await _own_frames_back(pc, answer.json(), frames)
    finally:
        await pc.close()


async def _guest_link(client: Client, twilio: TwilioServer, c: Consultation) -> Link:
    phone = new_guest_phone()
    answer = await invite(client, c.appointment_id, c.specialist.token, phone=phone)
    assert answer.status_code == 201, answer.text
    return await sms_link(twilio, phone)


async def test_a_guest_tests_with_their_opened_link_and_nobody_else_does(
    sms_client: Client, twilio: TwilioServer, consultation: Consultation, sms_factory: Factory
) -> None:
    link = await _guest_link(sms_client, twilio, consultation)
    device = secrets.token_urlsafe(24)
    keys = {"token": link.token, "device": device}
    # Not opened yet on this browser: no STUN/TURN, no echo.
    refused = await sms_client.post("/v1/invitations/ice-servers", json=keys)
    assert (refused.status_code, refused.json()["code"]) == (401, "invalid_guest_credentials")
    assert (await sms_client.post("/v1/invitations/open", json=keys)).status_code == 200
    ice = await sms_client.post("/v1/invitations/ice-servers", json=keys)
    assert ice.status_code == 200, ice.text
    turn = [s for s in ice.json()["ice_servers"] if s.get("credential")]
    assert turn
    assert turn[0]["username"].endswith(":guest:" + (await _invitation_id(sms_client, consultation)))
    pc = RTCPeerConnection()
    frames = _tracks(pc)
    try:
        answer = await sms_client.post("/v1/invitations/echo", json={**keys, "sdp": await _offer(pc)})
        assert answer.status_code == 200, answer.text
        await _own_frames_back(pc, answer.json(), frames)
    finally:
        await pc.close()
    # Another browser with the same link, a signed-in stranger, nobody: refused.
    stranger = await sms_client.post(
        "/v1/invitations/echo", json={"token": link.token, "device": secrets.token_urlsafe(24), "sdp": "v=0"}
    )
    assert (stranger.status_code, stranger.json()["code"]) == (401, "invalid_guest_credentials")
    other = await sms_factory.scene()
    foreign = await sms_client.post(
        "/v1/rtc/echo",
        json={"appointment_id": str(consultation.appointment_id), "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"},
        headers=auth(other.specialist.token),
    )
    assert (foreign.status_code, foreign.json()["code"]) == (403, "not_a_participant")
    anonymous = await sms_client.post(
        "/v1/rtc/echo", json={"appointment_id": str(consultation.appointment_id), "sdp": "v=0"}
    )
    assert anonymous.status_code == 401


async def _invitation_id(client: Client, c: Consultation) -> str:
    listed = await client.get(f"/v1/appointments/{c.appointment_id}/invitations", headers=auth(c.specialist.token))
    return str(listed.json()["items"][-1]["id"])


async def test_an_offer_that_is_not_one_is_refused(sms_client: Client, consultation: Consultation) -> None:
    for sdp, code in [("hello", "invalid_sdp"), ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n", "invalid_sdp")]:
        answer = await sms_client.post(
            "/v1/rtc/echo",
            json={"appointment_id": str(consultation.appointment_id), "sdp": sdp},
            headers=auth(consultation.patient.token),
        )
        assert (answer.status_code, answer.json()["code"]) == (422, code), answer.text
    assert sms_client.app.state.rtc_echo.open == 0  # a refused offer keeps no peer


async def test_a_worker_keeps_no_more_echo_peers_than_its_cap_and_closes_each_in_time(
    small: Client, consultation: Consultation
) -> None:
    echo: EchoPeers = small.app.state.rtc_echo
    body = {"appointment_id": str(consultation.appointment_id)}
    first, second, third = RTCPeerConnection(), RTCPeerConnection(), RTCPeerConnection()
    try:
        taken = await small.post(
            "/v1/rtc/echo", json={**body, "sdp": await _offer(first)}, headers=auth(consultation.patient.token)
        )
        assert taken.status_code == 200, taken.text
        assert taken.json()["seconds"] == 2
        full = await small.post(
            "/v1/rtc/echo", json={**body, "sdp": await _offer(second)}, headers=auth(consultation.patient.token)
        )
        assert (full.status_code, full.json()["code"]) == (503, "echo_busy"), full.text
        assert 1 <= int(full.headers["Retry-After"]) <= 2
        assert echo.open == 1
        for _ in range(50):  # closed by its time limit, whatever the client does
            if echo.open == 0:
                break
            await asyncio.sleep(0.1)
        assert echo.open == 0
        again = await small.post(
            "/v1/rtc/echo", json={**body, "sdp": await _offer(third)}, headers=auth(consultation.patient.token)
        )
        assert again.status_code == 200, again.text
    finally:
        for pc in (first, second, third):
            await pc.close()


async def test_opening_links_is_rate_limited_per_link_and_per_address(
    small: Client, sms_client: Client, twilio: TwilioServer, consultation: Consultation, sms_settings: Settings
) -> None:
    redis = Redis.from_url(sms_settings.redis_url)
    await redis.delete("spean:rate:invitation_open:ip:testclient")  # this test's address, from earlier runs
    await redis.aclose()
    link = await _guest_link(sms_client, twilio, consultation)
    keys = {"token": link.token, "device": secrets.token_urlsafe(24)}
    for _ in range(3):  # a reload, an answer lost: the same browser opens again
        assert (await small.post("/v1/invitations/open", json=keys)).status_code == 200
    limited = await small.post("/v1/invitations/open", json=keys)
    assert (limited.status_code, limited.json()["code"]) == (429, "invitation_open_rate_limited_link")
    assert 500 < int(limited.headers["Retry-After"]) <= 600
    # Guessing other links from one address: the fifth (with the four above) and later are refused.
    guess = await small.post("/v1/invitations/open", json={**keys, "token": secrets.token_urlsafe(24)})
    assert (guess.status_code, guess.json()["code"]) == (404, "invitation_not_found")
    guess = await small.post("/v1/invitations/open", json={**keys, "token": secrets.token_urlsafe(24)})
    assert (guess.status_code, guess.json()["code"]) == (429, "invitation_open_rate_limited_ip")
    assert int(guess.headers["Retry-After"]) > 0
