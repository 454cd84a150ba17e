"""The /v1/rtc WebSocket: authenticate, join the appointment's room, relay signalling.

Every frame is bounded in size and rate and decoded into a typed message; anything else gets an
`error` message (and, if it keeps coming, a close with a code), never a crash. Room state lives
in Redis (realtime.rooms) and messages cross workers through realtime.bus.

A guest invited by SMS link (domain.invitations) authenticates with `guest {token, device}`
instead of an access token, and may only join that invitation's consultation; in the room a
guest is like the patient (waits, is admitted by the specialist) but never ends the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from typing import Any, cast

import msgspec
import structlog
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from domain.booking import consultation
from domain.booking.model import Appointment
from domain.errors import DomainError, ErrorKind
from domain.invitations import guest as guests
from domain.principal import Principal
from infra import outage
from infra.db import Connection, in_transaction
from realtime import messages as m
from realtime.bus import RoomBus
from realtime.rooms import PeerState, Rooms
from realtime.turn import ice_servers_for
from realtime.ws_protocol import DIRECT_SEND, DirectSend

log = structlog.get_logger(__name__)

MAX_FRAME = 64 * 1024
AUTH_TIMEOUT_S = 10.0
RATE_PER_S = 30.0
BURST = 90.0
MAX_STRIKES = 10
MAX_QUEUED = 1000  # malformed or over-rate frames tolerated before the socket is closed

_CLOSE_BY_KIND = {
    ErrorKind.UNAUTHENTICATED: m.CLOSE_UNAUTHENTICATED,
    ErrorKind.FORBIDDEN: m.CLOSE_FORBIDDEN,
    ErrorKind.NOT_FOUND: m.CLOSE_NOT_FOUND,
    ErrorKind.CONFLICT: m.CLOSE_CONFLICT,
    ErrorKind.INVALID: m.CLOSE_MALFORMED,
}


class Closing(Exception):
    def __init__(self, code: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.error, self.detail = code, error, detail


class TokenBucket:
    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class PeerSession:
    """One socket's life in a room. Slotted, and its outbox and writer task exist only while
    there is something to write: tens of thousands of these sit idle in a worker."""

    __slots__ = (
        "appointment_id",
        "bucket",
        "bus",
        "close_code",
        "direct",
        "finished",
        "guest",
        "guest_keys",
        "language",
        "name",
        "outbox",
        "peer_id",
        "pool",
        "principal",
        "role",
        "room",
        "rooms",
        "side",
        "socket",
        "state",
        "strikes",
        "writer",
    )

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self.socket = socket
        state = socket.app.state
        self.rooms: Rooms = state.rtc_rooms
        self.bus: RoomBus = state.rtc_bus
        self.pool = state.pool
        self.outbox: deque[str | None] | None = None
        # Writes a frame at once when nothing is queued before it (uvicorn with realtime.ws_protocol)
        self.direct = cast("DirectSend | None", (socket.scope.get("extensions") or {}).get(DIRECT_SEND))
        self.writer: asyncio.Task[None] | None = None
        self.bucket = TokenBucket(RATE_PER_S, BURST)
        self.strikes = 0
        self.principal: Principal | None = None
        self.guest_keys: tuple[str, str] | None = None  # a guest's (link token, browser key)
        self.guest: guests.Guest | None = None
        self.room = ""
        self.appointment_id: uuid.UUID | None = None
        self.peer_id = ""
        self.side = ""
        self.name = ""  # how the room names this peer
        self.role = ""  # who is who: the side, or a guest's invitation role
        self.language: str | None = None  # an interpreter's language
        self.state: PeerState = "waiting"
        self.finished = False  # left the room, or the room ended: nothing more to relay
        self.close_code = 1000

    # -- frames -------------------------------------------------------------------------------

    async def receive(self, within_s: float | None = None) -> m.Incoming | None:
        """The next well-formed message; None for a malformed one (already answered)."""
        if within_s is None:
            event = await self.socket.receive()
        else:
            async with asyncio.timeout(within_s):
                event = await self.socket.receive()
        if event["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(detail="peer went away", code=event.get("code", 1000))
        frame = cast("str | bytes", event.get("text") or event.get("bytes") or b"")
        if len(frame) > MAX_FRAME:
            raise Closing(m.CLOSE_TOO_BIG, "message_too_big", f"messages are at most {MAX_FRAME} bytes")
        if not self.bucket.take():
            self.strike(m.CLOSE_RATE_LIMITED)
            self.send({"type": "error", "code": "rate_limited", "detail": "slow down"})
            return None
        try:
            return m.decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.strike(m.CLOSE_MALFORMED)
            self.send({"type": "error", "code": "malformed_message", "detail": str(exc)[:300]})
            return None

    def strike(self, code: int) -> None:
        self.strikes += 1
        if self.strikes > MAX_STRIKES:
            raise Closing(code, "too_many_errors", "too many malformed or excess messages")

    def send(self, message: dict[str, Any]) -> None:
        self._enqueue(m.encode(message))

    def _enqueue(self, item: str | None) -> None:
        """Write a frame at once if nothing is queued before it and the socket takes it now;
        else queue it (None: close after the frames before it) for a writer task, which runs
        only while there is something to write, so an idle socket costs no task of its own."""
        if self.outbox is None:
            if item is not None and self.direct is not None and self.direct.send_now(item):
                return  # written: no queue, no task
            self.outbox = deque()
        elif len(self.outbox) >= MAX_QUEUED and item is not None:
            # A peer that stopped reading: drop it rather than grow memory.
            raise Closing(m.CLOSE_RATE_LIMITED, "slow_consumer", "the connection cannot keep up")
        self.outbox.append(item)
        if self.writer is None:
            self.writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        outbox = self.outbox
        try:
            # The peer gone, what was queued is dropped; the reader side notices and cleans up.
            with contextlib.suppress(Exception):
                while outbox:
                    item = outbox.popleft()
                    if item is None:
                        await self.socket.close(self.close_code)
                        return
                    await self.socket.send_text(item)
        finally:
            # Nothing left to write (no await since the loop ended): the next frame starts afresh.
            self.outbox = self.writer = None

    async def flushed(self, within_s: float) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self.writer), within_s)

    def close_after_flush(self, code: int = 1000) -> None:
        self.close_code = code
        self._enqueue(None)

    def deliver(self, envelope_text: str) -> None:
        """Bus callback: "<seq>\n<envelope>" for the room; keep what is for this peer."""
        seq, _, envelope_json = envelope_text.partition("\n")
        envelope = msgspec.json.decode(envelope_json)
        if envelope.get("from") == self.peer_id or envelope.get("to") not in (None, self.peer_id):
            return
        message = envelope["msg"]
        if message["type"].startswith("peer_") and message.get("peer") == self.peer_id:
            return  # news about this peer itself
        if message["type"] == "admitted" and envelope.get("to") == self.peer_id:
            self.state = "admitted"
        with contextlib.suppress(Closing):
            self.send({**message, "seq": seq or None})
        if message["type"] == "ended":
            self.finished = True
            self.close_after_flush()
        elif message["type"] == "revoked" and envelope.get("to") == self.peer_id:
            # This guest's invitation was withdrawn (realtime.guests): out of the room, for good.
            self.finished = True
            self.close_after_flush(m.CLOSE_FORBIDDEN)

    # -- room -----------------------------------------------------------------------------------

    async def publish(
        self, message: dict[str, Any], *, to: str | None = None, keep: bool = True, relay: bool = False
    ) -> bool:
        """To the room (or one peer): a peer's relayed message, or a room event from the server.
        False when it is for a peer that is not in the room (then nothing was sent)."""
        sender = self.peer_id if relay else "server"
        envelope = m.encode({"from": sender, "to": to, "msg": message})
        if keep:
            return await self.rooms.append_and_publish(self.room, sender, to, m.encode(message), envelope) is not None
        await self.bus.publish(self.room, "\n" + envelope)
        return True

    async def authenticate(self) -> None:
        try:
            first = await self.receive(within_s=AUTH_TIMEOUT_S)
        except TimeoutError:
            raise Closing(m.CLOSE_AUTH_TIMEOUT, "auth_timeout", "send {type: auth, token} first") from None
        if first is None:  # malformed (already answered with an `error` frame)
            raise Closing(m.CLOSE_MALFORMED, "auth_required", "the first message is {type: auth, token}")
        if isinstance(first, m.GuestAuth):
            self.guest_keys = (first.token, first.device)  # checked with the join, in the database
            return
        if not isinstance(first, m.Auth):
            raise Closing(m.CLOSE_UNAUTHENTICATED, "auth_required", "the first message is {type: auth, token}")
        try:
            self.principal = self.socket.app.state.verified_tokens.principal(first.token)
        except DomainError as exc:
            raise Closing(m.CLOSE_UNAUTHENTICATED, exc.code, exc.detail) from None

    async def join(self) -> None:
        try:
            message = await self.receive(within_s=AUTH_TIMEOUT_S)
        except TimeoutError:
            raise Closing(m.CLOSE_AUTH_TIMEOUT, "join_timeout", "send {type: join, appointment_id}") from None
        if not isinstance(message, m.Join):
            raise Closing(m.CLOSE_MALFORMED, "join_required", "the second message is {type: join, appointment_id}")
        try:
            user = await (self._enter_as_guest(message) if self.guest_keys else self._enter(message))
        except DomainError as exc:
            raise Closing(_CLOSE_BY_KIND.get(exc.kind, m.CLOSE_MALFORMED), exc.code, exc.detail) from None
        resumed = await self._resume(message, user) if message.resume else None
        if resumed is None:
            self.state = "admitted" if self.side == "specialist" else "waiting"
            self.peer_id, token = await self.rooms.add(
                self.room,
                user,
                self.side,
                self.state,
                self.name,
                role=self.role,
                language=self.language,
            )
        else:
            token = resumed
        await self.bus.join(self.room, self.deliver)
        if self.guest is not None:
            await self._require_still_invited(self.guest)
        peers = {pid: p.public() for pid, p in (await self.rooms.peers(self.room)).items() if pid != self.peer_id}
        ready: dict[str, Any] = {
            "type": "ready",
            "peer": self.peer_id,
            "session": token,
            "side": self.side,
            "role": self.role,
            "language": self.language,
            "name": self.name,
            "state": self.state,
            "peers": peers,
            "resumed": resumed is not None,
        }
        if self.guest is not None:
            # A guest has no access token for GET /v1/rtc/ice-servers: the servers come here.
            settings = self.socket.app.state.settings
            ready["ice_servers"] = msgspec.to_builtins(ice_servers_for(settings, user).ice_servers)
        self.send(ready)
        if resumed is not None:
            for seq, fields in await self.rooms.since(self.room, message.last_seq):
                replay = msgspec.json.decode(fields["msg"])
                if (
                    fields.get("from") != self.peer_id
                    and fields.get("to") in (None, self.peer_id)
                    and replay.get("peer") != self.peer_id
                ):
                    self.send({**replay, "seq": seq, "replayed": True})
        event = "peer_waiting" if self.state == "waiting" else "peer_joined"
        await self.publish(
            {
                "type": event,
                "peer": self.peer_id,
                "side": self.side,
                "role": self.role,
                "language": self.language,
                "name": self.name,
                "resumed": resumed is not None,
            }
        )

    async def _enter(self, message: m.Join) -> str:
        """A signed-in participant: their side and name; the patient side is checked in."""
        assert self.principal is not None
        principal = self.principal

        async def enter(conn: Connection) -> tuple[Appointment, consultation.Side, str]:
            appointment, side = await consultation.participant(conn, principal, message.appointment_id)
            name = await consultation.display_name(conn, appointment, principal, side)
            if side != "specialist":
                await consultation.arrive(conn, principal, appointment)
            return appointment, side, name

        appointment, side, self.name = await in_transaction(self.pool, enter)
        self.appointment_id, self.room, self.side, self.role = appointment.id, str(appointment.id), side, side
        return str(principal.user_id)

    async def _enter_as_guest(self, message: m.Join) -> str:
        """A guest with an opened invitation link: this consultation only (audited)."""
        assert self.guest_keys is not None
        token, device = self.guest_keys
        appointment, guest = await in_transaction(
            self.pool, lambda conn: guests.enter(conn, token, device, message.appointment_id)
        )
        self.guest = guest
        self.appointment_id, self.room, self.side = appointment.id, str(appointment.id), "guest"
        self.name, self.role, self.language = guest.name, guest.role, guest.language
        return f"guest:{guest.invitation_id}"

    async def _require_still_invited(self, guest: guests.Guest) -> None:
        """Revoked between entering and taking a place here: the revocation's clean-up may have
        looked at the room too early to find this peer, so the peer leaves by itself."""
        async with self.pool.acquire() as conn:
            invited = await guests.still_invited(conn, guest.invitation_id)
        if not invited:
            await self.rooms.remove(self.room, self.peer_id)
            self.finished = True
            raise Closing(m.CLOSE_FORBIDDEN, "invitation_revoked", "this invitation was withdrawn")

    async def _resume(self, message: m.Join, user: str) -> str | None:
        session = await self.rooms.session(self.room, message.resume or "")
        if session is None or session.room != self.room:
            raise Closing(m.CLOSE_FORBIDDEN, "invalid_resume", "that session cannot be resumed here")
        peer = await self.rooms.peer(self.room, session.peer)
        if peer is None or peer.user != user:
            raise Closing(m.CLOSE_FORBIDDEN, "invalid_resume", "that session has expired: join afresh")
        self.peer_id, self.state = session.peer, peer.state
        await self.rooms.update(self.room, self.peer_id, connected=True)
        return message.resume

    async def handle(self, message: m.Incoming) -> None:
        if isinstance(message, m.Ping):
            self.send({"type": "pong"})
        elif isinstance(message, (m.Auth, m.GuestAuth, m.Join)):
            self.send({"type": "error", "code": "already_joined", "detail": "this socket is in a room already"})
        elif isinstance(message, m.Admit):
            await self._admit(message.peer)
        elif isinstance(message, m.Leave):
            await self._leave(explicit=True)
        elif isinstance(message, m.End):
            if self.side != "specialist":
                self.send({"type": "error", "code": "specialist_only", "detail": "only the specialist ends the call"})
            else:
                await self._end()
        elif self.state != "admitted":
            self.send({"type": "error", "code": "not_admitted", "detail": "wait for the specialist to admit you"})
        else:
            await self._relay(message)

    async def _relay(self, message: m.Relayed) -> None:
        to = getattr(message, "to", None)
        # Whether `to` is in the room is checked by the same Redis call that relays (rooms.py).
        if to == self.peer_id or not await self.publish(
            {**m.relayed_body(message), "from": self.peer_id}, to=to, relay=True
        ):
            self.send({"type": "error", "code": "unknown_peer", "detail": f"no peer {to} in this room"})

    async def _admit(self, peer_id: str) -> None:
        if self.side != "specialist":
            self.send({"type": "error", "code": "specialist_only", "detail": "only the specialist admits"})
            return
        peer = await self.rooms.update(self.room, peer_id, state="admitted")
        if peer is None:
            self.send({"type": "error", "code": "unknown_peer", "detail": f"no peer {peer_id} in this room"})
            return
        assert self.principal is not None
        assert self.appointment_id is not None
        principal, appointment_id = self.principal, self.appointment_id
        await in_transaction(self.pool, lambda conn: consultation.start_call(conn, principal, appointment_id))
        await self.publish({"type": "admitted", "peer": peer_id}, to=peer_id)
        await self.publish({"type": "peer_joined", "peer": peer_id, **peer.public(), "resumed": False})

    async def leave_dropped(self) -> None:
        await self._leave(explicit=False)

    async def _leave(self, *, explicit: bool) -> None:
        if self.finished:
            return
        self.finished = True
        await self.bus.leave(self.room, self.deliver)
        if not explicit:
            # Dropped, perhaps by the network: hold the place for the grace period.
            await self.rooms.update(self.room, self.peer_id, connected=False)
            await self.publish({"type": "peer_disconnected", "peer": self.peer_id}, keep=False)
            asyncio.create_task(self._expire_after_grace())  # noqa: RUF006 - it ends by itself
            return
        if self.side == "specialist":
            await self._end()
            return
        await self.rooms.remove(self.room, self.peer_id)
        await self.publish({"type": "peer_left", "peer": self.peer_id})
        if self.guest is None and not await self.rooms.peers(self.room):
            await self._end()  # a guest never ends the call: the specialist may come back to it

    async def _expire_after_grace(self) -> None:
        await asyncio.sleep(self.rooms.grace_s)
        try:
            await self._expire()
        except Exception as exc:  # a task of its own: nobody else would see the error
            if outage.unavailable(exc) is None:
                log.exception("rtc_expire_failed", room=self.room, peer=self.peer_id)
            # Redis away: the peer's entry expires with the room's keys.

    async def _expire(self) -> None:
        peer = await self.rooms.peer(self.room, self.peer_id)
        if peer is not None and not peer.connected:
            await self.rooms.remove(self.room, self.peer_id)
            await self.publish({"type": "peer_left", "peer": self.peer_id, "reason": "timeout"})

    def fail_retryably(self, error: BaseException) -> None:
        """PostgreSQL or Redis is away: say which, and close with 1013 (try again later), as HTTP
        answers 503; the client reconnects after a pause and resumes with its session token."""
        dependency = outage.unavailable(error) or outage.POSTGRES
        dependency.down(error)
        with contextlib.suppress(Closing):
            self.send({"type": "error", "code": dependency.code, "detail": f"{dependency.name} is unavailable"})
        self.close_after_flush(m.CLOSE_TRY_AGAIN)

    async def _end(self) -> None:
        assert self.principal is not None
        assert self.appointment_id is not None
        principal, appointment_id = self.principal, self.appointment_id
        seconds = await in_transaction(self.pool, lambda conn: consultation.end_call(conn, principal, appointment_id))
        self.finished = True
        self.send({"type": "ended", "by": self.peer_id, "duration_s": seconds})
        await self.publish({"type": "ended", "by": self.peer_id, "duration_s": seconds})
        await self.rooms.close(self.room)


@websocket("/v1/rtc", opt={"exclude_from_auth": True, "transaction": False})
async def rtc(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    session = PeerSession(socket)
    joined = False
    try:
        await session.authenticate()
        await session.join()
        joined = True
        while not session.finished:
            message = await session.receive()
            if message is not None:
                await session.handle(message)
        session.close_after_flush()
    except Closing as closing:
        with contextlib.suppress(Closing):
            session.send({"type": "error", "code": closing.error, "detail": closing.detail})
        session.close_after_flush(closing.code)
    except WebSocketDisconnect:
        pass  # the peer went away; below, its place is held for the grace period
    except ConnectionError as exc:
        if isinstance(exc, ConnectionRefusedError):  # a refused server, not the peer's socket
            session.fail_retryably(exc)
        # else the peer's socket broke: as a disconnect
    except Exception as exc:
        if outage.unavailable(exc) is not None:
            session.fail_retryably(exc)
        else:
            log.exception("rtc_session_failed", room=session.room, peer=session.peer_id)
            session.close_after_flush(m.CLOSE_SERVER_ERROR)
    finally:
        await session.flushed(2)
        if joined and not session.finished:
            with contextlib.suppress(Exception):
                await session.leave_dropped()
        if session.room:
            await session.bus.leave(session.room, session.deliver)
