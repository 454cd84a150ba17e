"""Room state in Redis, so any worker can serve any peer and presence outlives a worker.

Per appointment room:
- `rtc:{room}:peers`  hash  peer id -> JSON {user, side, state: waiting|admitted, connected, name}
- `rtc:{room}:log`    stream of relayed messages (capped), replayed to a peer that resumes
- `rtc:session:{token}`  -> JSON {room, peer}, lives for the reconnection grace period
Keys expire a day after the last activity; a consultation never lasts that long.
"""

from __future__ import annotations

import secrets
from typing import Any, Literal, cast

import msgspec
from redis.asyncio import Redis

PeerState = Literal["waiting", "admitted"]
_TTL_S = 24 * 3600
_LOG_MAX = 500

# Keep a relayed message in the room's log and publish it with its log id, in one round trip.
# The published text is "<seq>\n<envelope JSON>": receivers learn the seq without a second lookup.
_APPEND_AND_PUBLISH = r"""
local fields = {'from', ARGV[1], 'msg', ARGV[3]}
if ARGV[2] ~= '' then table.insert(fields, 'to'); table.insert(fields, ARGV[2]) end
local seq = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', KEYS[2], seq .. '\n' .. ARGV[4])
return seq
"""


class Peer(msgspec.Struct):
    user: str
    side: str
    state: PeerState
    connected: bool = True
    name: str = ""  # how the room names this peer (consultation.display_name)


class Session(msgspec.Struct):
    room: str
    peer: str


def _peers(room: str) -> str:
    return f"rtc:{room}:peers"


def log_key(room: str) -> str:
    return f"rtc:{room}:log"


def channel(room: str) -> str:
    return f"rtc:{room}:live"


class Rooms:
    def __init__(self, redis: Redis, grace_s: int) -> None:
        self.redis = redis
        self.grace_s = grace_s
        self._append_and_publish = redis.register_script(_APPEND_AND_PUBLISH)

    async def add(self, room: str, user: str, side: str, state: PeerState, name: str = "") -> tuple[str, str]:
        """A new peer in the room: (peer id, session token for resuming)."""
        peer_id = secrets.token_hex(6)
        token = secrets.token_urlsafe(24)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(_peers(room), peer_id, msgspec.json.encode(Peer(user, side, state, name=name)))
            pipe.expire(_peers(room), _TTL_S)
            pipe.set(f"rtc:session:{token}", msgspec.json.encode(Session(room, peer_id)), ex=_TTL_S)
            await pipe.execute()
        return peer_id, token

    async def session(self, token: str) -> Session | None:
        raw = await self.redis.get(f"rtc:session:{token}")
        return None if raw is None else msgspec.json.decode(raw, type=Session)

    async def peers(self, room: str) -> dict[str, Peer]:
        raw: dict[str, str] = await self.redis.hgetall(_peers(room))  # type: ignore[assignment]
        return {k: msgspec.json.decode(v, type=Peer) for k, v in raw.items()}

    async def peer(self, room: str, peer_id: str) -> Peer | None:
        raw = await self.redis.hget(_peers(room), peer_id)
        return None if raw is None else msgspec.json.decode(raw, type=Peer)

    async def update(self, room: str, peer_id: str, **changes: Any) -> Peer | None:
        current = await self.peer(room, peer_id)
        if current is None:
            return None
        updated = msgspec.structs.replace(current, **changes)
        await self.redis.hset(_peers(room), peer_id, msgspec.json.encode(updated))
        return updated

    async def remove(self, room: str, peer_id: str) -> None:
        await self.redis.hdel(_peers(room), peer_id)

    async def close(self, room: str) -> None:
        await self.redis.delete(_peers(room), log_key(room))

    async def append_and_publish(self, room: str, sender: str, to: str | None, message: str, envelope: str) -> str:
        """Keep `message` for replay and publish `envelope` to the room; returns its `seq`."""
        seq = await self._append_and_publish(
            keys=[log_key(room), channel(room)], args=[sender, to or "", message, envelope, _LOG_MAX, _TTL_S]
        )
        return str(seq)

    async def since(self, room: str, last_seq: str | None) -> list[tuple[str, dict[str, str]]]:
        start = f"({last_seq}" if last_seq else "-"
        try:
            entries = await self.redis.xrange(log_key(room), min=start, max="+")
        except Exception:  # a malformed last_seq from the client: replay everything kept
            entries = await self.redis.xrange(log_key(room), min="-", max="+")
        return [(str(seq), cast("dict[str, str]", fields)) for seq, fields in entries or []]
