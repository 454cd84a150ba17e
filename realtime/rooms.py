"""Room state in Redis, so any worker can serve any peer and presence outlives a worker.

Per appointment room (names in infra.redis_keys; all of a room's keys share its hash tag, so on a
Redis Cluster they live on one node and the scripts and transactions below stay in one slot):
- peers    hash  peer id -> JSON {user, side, state: waiting|admitted, connected, name,
  role, language}; a guest's `user` is "guest:<invitation id>"
- log      stream of relayed messages (capped), replayed to a peer that resumes
- live     the channel relayed messages are published on (sharded on a cluster)
- session:<token>  -> JSON {room, peer}, for resuming
Keys expire a day after the last activity; a consultation never lasts that long.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any, Literal, cast

import hiredis
import msgspec
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from infra import redis_keys
from infra.redis_client import RedisClient, is_cluster

PeerState = Literal["waiting", "admitted"]
_TTL_S = 24 * 3600
_LOG_MAX = 500

# Keep a relayed message in the room's log and publish it with its log id, in one round trip.
# The published text is "<seq>\n<envelope JSON>": receivers learn the seq without a second lookup.
# A message for one peer (`to`) that is not in the room is neither kept nor published (nil): the
# sender learns it from the same round trip instead of looking the peer up first.
# On a cluster the channel is a sharded one (SPUBLISH, served by the node holding the room's
# slot, like its keys); on a single server plain PUBLISH, as before.
_APPEND_AND_PUBLISH = r"""
if ARGV[2] ~= '' and redis.call('HEXISTS', KEYS[3], ARGV[2]) == 0 then return false end
local fields = {'from', ARGV[1], 'msg', ARGV[3]}
if ARGV[2] ~= '' then table.insert(fields, 'to'); table.insert(fields, ARGV[2]) end
local seq = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', unpack(fields))
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', KEYS[2], seq .. '\n' .. ARGV[4])
return seq
"""
_APPEND_AND_SPUBLISH = _APPEND_AND_PUBLISH.replace("'PUBLISH'", "'SPUBLISH'")


class Peer(msgspec.Struct):
    user: str
    side: str
    state: PeerState
    connected: bool = True
    name: str = ""  # how the room names this peer (consultation.display_name, or a guest's name)
    # Who is who: the side for the patient, the CHW and the specialist; a guest's invitation role
    # (family_member, interpreter, specialist) with, for an interpreter, the language.
    role: str = ""
    language: str | None = None
    since: float = 0.0  # when it entered the room (epoch seconds): the workspace's time in the waiting room

    def public(self) -> dict[str, Any]:
        """What the other peers are told of this one."""
        return {
            "side": self.side,
            "role": self.role or self.side,
            "language": self.language,
            "state": self.state,
            "connected": self.connected,
            "name": self.name,
        }


class Session(msgspec.Struct):
    room: str
    peer: str


_peers = redis_keys.rtc_peers
log_key = redis_keys.rtc_log
channel = redis_keys.rtc_live


_Append = tuple[list[str], list[Any], "asyncio.Future[str | None]"]  # keys, args, the caller's answer


class Rooms:
    """Relayed messages are sent to Redis in batches: all that arrive while one batch is on its
    way go together in the next pipeline, one write and one read for the lot, over one pooled
    connection, instead of a round trip (and a connection) per message. A caller still awaits
    its own message's seq, so a sender's messages keep their order and a Redis failure reaches
    the socket that sent the message."""

    def __init__(self, redis: RedisClient, grace_s: int) -> None:
        self.redis = redis
        self.grace_s = grace_s
        self._script = _APPEND_AND_SPUBLISH if is_cluster(redis) else _APPEND_AND_PUBLISH
        self._sha = redis.register_script(self._script).sha
        self._pending: list[_Append] = []
        self._sending: asyncio.Task[None] | None = None

    async def add(
        self,
        room: str,
        user: str,
        side: str,
        state: PeerState,
        name: str = "",
        *,
        role: str = "",
        language: str | None = None,
    ) -> tuple[str, str]:
        """A new peer in the room: (peer id, session token for resuming)."""
        peer_id = secrets.token_hex(6)
        token = secrets.token_urlsafe(24)
        peer = Peer(user, side, state, name=name, role=role, language=language, since=time.time())
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(_peers(room), peer_id, msgspec.json.encode(peer))
            pipe.expire(_peers(room), _TTL_S)
            pipe.set(redis_keys.rtc_session(room, token), msgspec.json.encode(Session(room, peer_id)), ex=_TTL_S)
            await pipe.execute()
        return peer_id, token

    async def session(self, room: str, token: str) -> Session | None:
        """The session `token` in `room` (a token is looked up only in the room it is used for)."""
        raw = await self.redis.get(redis_keys.rtc_session(room, token))
        return None if raw is None else msgspec.json.decode(raw, type=Session)

    async def peers(self, room: str) -> dict[str, Peer]:
        raw: dict[str, str] = await self.redis.hgetall(_peers(room))  # type: ignore[assignment]
        return {k: msgspec.json.decode(v, type=Peer) for k, v in raw.items()}

    async def peers_of(self, rooms: list[str]) -> dict[str, dict[str, Peer]]:
        """The peers of several rooms, in one round trip (the specialist's day queue)."""
        if not rooms:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.hgetall(_peers(room))
            answers: list[dict[str, str]] = await pipe.execute()
        return {
            room: {k: msgspec.json.decode(v, type=Peer) for k, v in raw.items()}
            for room, raw in zip(rooms, answers, strict=True)
        }

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

    async def append_and_publish(
        self, room: str, sender: str, to: str | None, message: str, envelope: str
    ) -> str | None:
        """Keep `message` for replay and publish `envelope` to the room; returns its `seq`, or
        None (nothing kept or sent) when it is for a peer `to` that is not in the room."""
        answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        keys = [log_key(room), channel(room), _peers(room)]
        self._pending.append((keys, [sender, to or "", message, envelope, _LOG_MAX, _TTL_S], answer))
        if self._sending is None:
            self._sending = asyncio.create_task(self._send_batches())
        return await answer

    async def _send_batches(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                try:
                    results = await self._run(batch)
                except Exception as exc:  # Redis away: every sender in the batch hears of it
                    results = [exc] * len(batch)
                for (_, _, answer), result in zip(batch, results, strict=True):
                    if answer.done():  # its socket went away meanwhile
                        continue
                    if isinstance(result, Exception):
                        answer.set_exception(result)
                    else:
                        answer.set_result(None if result is None else str(result))
        finally:
            self._sending = None

    async def _run(self, batch: list[_Append]) -> list[Any]:
        """One pipeline of EVALSHA; a Redis that lost its scripts (restarted, or a replica just
        promoted) gets it again. (On a cluster the pipeline sends each to its room's node: redis-py
        refuses `pipe.evalsha` there only because it cannot see the keys of a script call, which
        EVALSHA's numkeys does tell it.)"""
        results: list[Any]
        if isinstance(self.redis, Redis):
            results = await self._pipelined(batch, self.redis)
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args, _ in batch:
                    pipe.execute_command("EVALSHA", self._sha, len(keys), *keys, *args)
                results = await pipe.execute(raise_on_error=False)
        missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
        if missing:
            await self.redis.script_load(self._script)
            again = await self._run([batch[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    async def _pipelined(self, batch: list[_Append], redis: Redis) -> list[Any]:
        """What `pipeline().execute(raise_on_error=False)` does on one server (or a Sentinel's
        master), less its Python: the commands packed by hiredis (redis-py packs them in Python,
        ~30 µs for a relayed message's, 4 µs here), written at once on a pooled connection, the
        replies read in order (an error reply in its command's place). A connection error is
        tried once more on a fresh connection, as the client's retry policy does."""
        packed = b"".join(
            hiredis.pack_command(("EVALSHA", self._sha, len(keys), *keys, *args)) for keys, args, _ in batch
        )
        pool = redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            for attempt in range(2):
                try:
                    await conn.send_packed_command(packed, check_health=False)
                    return [await _reply(conn) for _ in batch]
                except (RedisConnectionError, RedisTimeoutError, OSError):
                    await conn.disconnect()
                    if attempt:
                        raise
            raise AssertionError("unreachable")
        except BaseException:
            await conn.disconnect(nowait=True)  # replies may be left unread: no later user reads them
            raise
        finally:
            await pool.release(conn)

    async def since(self, room: str, last_seq: str | None) -> list[tuple[str, dict[str, str]]]:
        start = f"({last_seq}" if last_seq else "-"
        try:
            entries = await self.redis.xrange(log_key(room), min=start, max="+")
        except Exception:  # a malformed last_seq from the client: replay everything kept
            entries = await self.redis.xrange(log_key(room), min="-", max="+")
        return [(str(seq), cast("dict[str, str]", fields)) for seq, fields in entries or []]


async def _reply(conn: AbstractConnection) -> Any:
    try:
        return await conn.read_response()
    except ResponseError as error:  # read in full: the next reply follows it
        return error
