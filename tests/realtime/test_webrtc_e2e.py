"""Two real WebRTC peers (aiortc) negotiate through the signalling server, one on each worker:
the patient side receives video frames and a data-channel message, then drops and resumes."""

from __future__ import annotations

import asyncio

import asyncpg
from aiortc import RTCPeerConnection, RTCSessionDescription, VideoStreamTrack
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame

from tests.factory import Consultation
from tests.realtime.client import Signal
from tests.realtime.conftest import Servers


async def test_aiortc_peers_exchange_video_and_data_across_workers(
    rtc_servers: Servers, consultation: Consultation, db: asyncpg.Pool
) -> None:
    c = consultation
    patient_signal = await Signal.open(rtc_servers.b)
    patient_ready = await patient_signal.join(c.patient.token, c.appointment_id)
    specialist_signal = await Signal.open(rtc_servers.a)
    specialist_ready = await specialist_signal.join(c.specialist.token, c.appointment_id)
    await specialist_signal.send(type="admit", peer=patient_ready["peer"])
    await patient_signal.next("admitted")
    await specialist_signal.next("peer_joined")

    specialist_pc, patient_pc = RTCPeerConnection(), RTCPeerConnection()
    received_tracks: asyncio.Queue[MediaStreamTrack] = asyncio.Queue()
    received_text: asyncio.Queue[str] = asyncio.Queue()
    patient_pc.on("track", received_tracks.put_nowait)

    @patient_pc.on("datachannel")
    def _on_channel(channel: object) -> None:
        channel.on("message", received_text.put_nowait)  # type: ignore[attr-defined]

    try:
        # Specialist offers video and a chat channel (aiortc gathers candidates into the SDP).
        specialist_pc.addTrack(VideoStreamTrack())
        chat = specialist_pc.createDataChannel("chat")
        await specialist_pc.setLocalDescription(await specialist_pc.createOffer())
        await specialist_signal.send(type="offer", to=patient_ready["peer"], sdp=specialist_pc.localDescription.sdp)

        offer = await patient_signal.next("offer")
        await patient_pc.setRemoteDescription(RTCSessionDescription(sdp=offer["sdp"], type="offer"))
        await patient_pc.setLocalDescription(await patient_pc.createAnswer())
        await patient_signal.send(type="answer", to=specialist_ready["peer"], sdp=patient_pc.localDescription.sdp)

        answer = await specialist_signal.next("answer")
        await specialist_pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))

        track = await asyncio.wait_for(received_tracks.get(), 10)
        frame = await asyncio.wait_for(track.recv(), 10)
        assert isinstance(frame, VideoFrame)
        assert (frame.width, frame.height) == (640, 480)

        opened = asyncio.Event()
        if chat.readyState == "open":
            opened.set()
        chat.on("open", opened.set)
        await asyncio.wait_for(opened.wait(), 10)
        chat.send("blood pressure 150/95 this morning")
        assert await asyncio.wait_for(received_text.get(), 10) == "blood pressure 150/95 this morning"

        # The patient's signalling drops; media keeps flowing peer to peer; it resumes on the other worker.
        await patient_signal.close()
        await specialist_signal.next("peer_disconnected")
        resumed = await Signal.open(rtc_servers.a)
        ready = await resumed.join(c.patient.token, c.appointment_id, resume=patient_ready["session"])
        assert ready["resumed"] is True
        assert ready["peer"] == patient_ready["peer"]
        assert isinstance(await asyncio.wait_for(track.recv(), 10), VideoFrame)
        await specialist_signal.send(type="end")
        assert (await resumed.next("ended"))["duration_s"] >= 0
    finally:
        await specialist_pc.close()
        await patient_pc.close()
    ended = await db.fetchrow("SELECT status, call_seconds FROM appointments WHERE id = $1", c.appointment_id)
    assert ended is not None
    assert (ended["status"], ended["call_seconds"] is not None) == ("in_progress", True)
