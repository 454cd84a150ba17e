"""Cross-worker delivery: ONE Redis pub/sub connection per worker, fanning out to local sockets.

A socket registers a callback for its room; the worker subscribes to the room's channel while it
has at least one local socket there. Pub/sub is at-most-once: what a peer must not miss is also
kept in the room's log (rooms.Rooms.append) and replayed when it resumes.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import Callable

import structlog
from redis.asyncio import Redis

from realtime.rooms import channel

log = structlog.get_logger(__name__)

Listener = Callable[[str], None]


class Bus:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub = redis.pubsub()
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        # A channel of our own keeps the subscription alive while no room is open here.
        await self._pubsub.subscribe(f"rtc:worker:{uuid.uuid4().hex}")
        self._task = asyncio.create_task(self._pump())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]

    async def join(self, room: str, listener: Listener) -> None:
        async with self._lock:
            if not self._listeners[room]:
                await self._pubsub.subscribe(channel(room))
            self._listeners[room].add(listener)

    async def leave(self, room: str, listener: Listener) -> None:
        async with self._lock:
            self._listeners[room].discard(listener)
            if not self._listeners[room]:
                del self._listeners[room]
                await self._pubsub.unsubscribe(channel(room))

    async def publish(self, room: str, envelope: str) -> None:
        await self._redis.publish(channel(room), envelope)

    async def _pump(self) -> None:
        while True:
            try:
                message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception:  # a dropped Redis connection: redis-py reconnects on the next read
                log.exception("rtc_bus_read_failed")
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            room = str(message["channel"]).removeprefix("rtc:").removesuffix(":live")
            for listener in list(self._listeners.get(room, ())):
                listener(str(message["data"]))
