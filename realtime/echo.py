"""The pre-call check's echo peer: a WebRTC peer in this worker that sends every track it
receives straight back, so a patient's page can measure a real call's round trip, loss and
bitrate before joining (realtime/static/precall.js).

Signalled over HTTP, non-trickle: the page gathers its ICE candidates, POSTs the whole offer,
and gets the whole answer (aiortc gathers before answering). It goes through the same STUN/TURN
servers as a real call (realtime.turn), so a link that only works relayed is tested relayed.

Each echo decodes and re-encodes the media (aiortc has no pass-through), so it costs CPU: a
worker keeps at most `max_peers` (SPEAN_ECHO_PEERS_MAX; more get 503 `echo_busy` with
Retry-After), and closes each one after `seconds` (SPEAN_ECHO_SECONDS) whatever the page does.
"""

from __future__ import annotations

import asyncio
import time

from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack

from domain.errors import InvalidInput, Unavailable
from realtime.turn import IceServers


class EchoPeers:
    """This worker's echo peers: capped in number, each closed after a time limit."""

    def __init__(self, *, max_peers: int, seconds: float) -> None:
        self.max_peers = max_peers
        self.seconds = seconds
        self._peers: dict[RTCPeerConnection, float] = {}  # -> when it closes (monotonic)
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def open(self) -> int:
        return len(self._peers)

    async def answer(self, offer_sdp: str, ice: IceServers) -> str:
        """The answer to `offer_sdp` from a new echo peer (its candidates included)."""
        if "m=audio" not in offer_sdp and "m=video" not in offer_sdp:
            raise InvalidInput("invalid_sdp", "the offer has no audio or video", field="sdp")
        now = time.monotonic()
        if len(self._peers) >= self.max_peers:
            wait = min(self._peers.values()) - now
            raise Unavailable(
                "echo_busy", "the connection test is busy: try again shortly", retry_after_s=max(1, round(wait))
            )
        config = RTCConfiguration(
            iceServers=[
                RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice.ice_servers
            ]
        )
        pc = RTCPeerConnection(configuration=config)
        # The place is taken before the first await, so concurrent offers cannot pass the cap.
        self._peers[pc] = now + self.seconds
        relay = MediaRelay()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            pc.addTrack(relay.subscribe(track, buffered=False))

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._close(pc)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except (ValueError, KeyError, IndexError, TypeError) as exc:  # aiortc's refusals of a bad SDP
            await self._close(pc)
            raise InvalidInput("invalid_sdp", f"the offer cannot be answered: {exc}", field="sdp") from None
        except BaseException:
            await self._close(pc)
            raise
        timer = asyncio.get_running_loop().call_later(self.seconds, self._close_soon, pc)
        pc.on("connectionstatechange", lambda: timer.cancel() if pc.connectionState == "closed" else None)
        return str(pc.localDescription.sdp)

    def _close_soon(self, pc: RTCPeerConnection) -> None:
        task = asyncio.get_running_loop().create_task(self._close(pc))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, pc: RTCPeerConnection) -> None:
        if self._peers.pop(pc, None) is not None:
            await pc.close()

    async def close_all(self) -> None:
        """On shutdown: every echo peer closed."""
        for pc in list(self._peers):
            await self._close(pc)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
