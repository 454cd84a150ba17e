"""Cross-worker delivery: ONE Redis pub/sub connection per worker, fanning out to local sockets.
(On a Redis Cluster, realtime.sharded_bus instead: `for_client` picks.)

A socket registers a callback for its room; the worker subscribes to the room's channel while it
has at least one local socket there. Pub/sub is at-most-once: what a peer must not miss is also
kept in the room's log (rooms.Rooms.append) and replayed when it resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from infra import outage, redis_client, redis_keys
from realtime.rooms import channel

log = structlog.get_logger(__name__)

Listener = Callable[[str], None]


class RoomBus(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def join(self, room: str, listener: Listener) -> None: ...
    async def leave(self, room: str, listener: Listener) -> None: ...
    async def publish(self, room: str, envelope: str) -> None: ...


def for_client(redis: redis_client.RedisClient, url: str) -> RoomBus:
    """Sharded pub/sub on a cluster; one pub/sub connection to the (Sentinel-named) master else."""
    if isinstance(redis, Redis):
        return Bus(redis)
    from realtime.sharded_bus import ShardedBus  # here: it imports this module's Listener

    return ShardedBus(redis, lambda host, port: redis_client.node(url, host, port))


async def as_is(response: Any) -> Any:
    """The pub/sub connection's push handler. redis-py's default one builds a debug log line,
    str() of every message, SDPs included, whatever the log level: ~5% of a relaying worker."""
    return response


async def next_reply(pubsub: PubSub) -> list[Any]:
    """The next reply on a subscribed connection, read straight from it: ["message", channel,
    data] (["smessage", ...] for a shard channel) or a subscription's confirmation.

    `PubSub.get_message` wraps each read in a retry policy, a timer, a health check, a dict and
    a metrics call, several times the read itself for every relayed message. Here a failed read
    raises, and the bus subscribes afresh (as it did when get_message raised); the read waits
    without a timer, since closing the pub/sub (`Bus._drop`, `ShardedBus._close_locked`) ends it."""
    conn = pubsub.connection
    if conn is None:
        raise RedisConnectionError("the pub/sub connection was closed")
    reply = await conn.read_response(timeout=math.inf, disconnect_on_error=False, push_request=True)
    if not isinstance(reply, list):
        raise RedisConnectionError(f"unexpected reply on a pub/sub connection: {reply!r}"[:200])
    return reply


def fan_out(listeners: list[Listener], data: str) -> None:
    """Hand a room's message to each of its local listeners. One that fails is logged and stops
    neither the others nor the reader, which serves every room of the worker."""
    for listener in list(listeners):
        try:
            listener(data)
        except Exception:
            log.exception("rtc_deliver_failed")


class Bus:
    """Subscriptions follow the local listeners. While Redis is away the pump retries with a
    growing pause (one log line per outage), then subscribes afresh to exactly the rooms that
    still have listeners here; what was published meanwhile is lost, as pub/sub always allows."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub: PubSub | None = None  # None: not subscribed (not started, or Redis was lost)
        self._own = f"rtc:worker:{uuid.uuid4().hex}"
        # A list, not a set: rooms hold one or two local listeners, and an empty set costs 216 B.
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        """Never fails: the first subscription is made by the pump, whenever Redis answers."""
        self._task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._drop()

    async def join(self, room: str, listener: Listener) -> None:
        """Listen to a room; raises a Redis error if Redis is away (the socket is told to retry)."""
        async with self._lock:
            first = not self._listeners[room]
            if listener not in self._listeners[room]:
                self._listeners[room].append(listener)
            try:
                if self._pubsub is None:
                    await self._subscribe_locked()  # Redis may be back before the pump's next try
                elif first:
                    await self._pubsub.subscribe(channel(room))
            except RedisError:
                await self._drop()  # the pump resubscribes, this room included
                raise

    async def leave(self, room: str, listener: Listener) -> None:
        """Stop listening; never raises (a lost subscription is renewed without this room)."""
        async with self._lock:
            listeners = self._listeners.get(room, [])
            if listener in listeners:
                listeners.remove(listener)
            if listeners:
                return
            self._listeners.pop(room, None)
            if self._pubsub is not None:
                try:
                    await self._pubsub.unsubscribe(channel(room))
                except RedisError:
                    await self._drop()

    async def publish(self, room: str, envelope: str) -> None:
        await self._redis.publish(channel(room), envelope)

    async def _subscribe(self) -> None:
        async with self._lock:
            if self._pubsub is None:
                await self._subscribe_locked()

    async def _subscribe_locked(self) -> None:
        """A fresh subscription to this worker's channel and every room with a local listener."""
        pubsub = self._redis.pubsub(push_handler_func=as_is)
        try:
            await pubsub.subscribe(self._own, *(channel(room) for room in self._listeners))
        except BaseException:
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            raise
        self._pubsub = pubsub

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _pump(self) -> None:
        backoff = outage.Backoff()
        while True:
            pubsub = self._pubsub
            try:
                if pubsub is None:
                    await self._subscribe()
                    outage.REDIS.up()
                    backoff.reset()
                    continue
                reply = await next_reply(pubsub)
                if reply[0] != "message":  # (un)subscribe confirmations: redis-py's bookkeeping
                    await pubsub.handle_message(reply)  # type: ignore[no-untyped-call]
                    continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._pubsub is not pubsub:
                    continue  # closed by a join or leave that failed, or replaced: no news
                if (dependency := outage.unavailable(exc)) is not None:
                    dependency.down(exc)
                else:
                    log.exception("rtc_bus_read_failed")
                await self._drop()
                await asyncio.sleep(backoff.next())
                continue
            listeners = self._listeners.get(redis_keys.rtc_room_of_live(reply[1]))
            if listeners:
                fan_out(listeners, reply[2])
