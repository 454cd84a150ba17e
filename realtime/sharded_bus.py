"""Cross-worker delivery on a Redis Cluster: sharded pub/sub (SSUBSCRIBE/SPUBLISH, Redis ≥ 7).

A room's channel lives on the node that holds the room's hash slot (infra.redis_keys), so a
message is published to, and read from, that one node instead of being broadcast to every node
as plain PUBLISH would be. A worker keeps ONE subscription connection per node it has rooms on
(a shard), each read by its own task, fanning out to local sockets as realtime.bus does.

When a node fails, or its slots move (a failover promotes a replica; a resharding migrates
slots; Redis then closes the connection or sends an unasked SUNSUBSCRIBE), the rooms it served
become orphans: the mender fetches the slot map again and subscribes them on their new node,
retrying with a growing pause while the cluster elects. What was published meanwhile is lost, as
pub/sub always allows: peers fetch it from the room's log when they resume.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError, SlotNotCoveredError

from infra import outage, redis_keys
from realtime.bus import Listener, as_is, fan_out, next_reply

log = structlog.get_logger(__name__)

_ERRORS = (RedisError, RedisClusterException, OSError)


@dataclass(eq=False)
class _Shard:
    node: str  # host:port
    client: Redis
    pubsub: PubSub
    rooms: set[str] = field(default_factory=set)
    reader: asyncio.Task[None] | None = None


class ShardedBus:
    def __init__(self, cluster: RedisCluster, node_client: Callable[[str, int], Redis]) -> None:
        self._cluster = cluster
        self._node_client = node_client
        self._listeners: dict[str, list[Listener]] = defaultdict(list)
        self._shards: dict[str, _Shard] = {}
        self._where: dict[str, _Shard] = {}  # room -> the shard it is subscribed on
        self._orphans: set[str] = set()  # rooms with local listeners and no subscription
        self._lock = asyncio.Lock()
        self._lost = asyncio.Event()  # set when there are orphans for the mender
        self._mender: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._mender = asyncio.create_task(self._mend())

    async def stop(self) -> None:
        if self._mender is not None:
            self._mender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mender
        async with self._lock:
            readers = [shard.reader for shard in self._shards.values() if shard.reader is not None]
            for shard in list(self._shards.values()):
                await self._close_locked(shard)
        await asyncio.gather(*readers, return_exceptions=True)

    async def join(self, room: str, listener: Listener) -> None:
        """Listen to a room; raises if its node cannot be reached (the socket is told to retry)."""
        async with self._lock:
            listeners = self._listeners[room]
            if listener not in listeners:
                listeners.append(listener)
            if room in self._where:
                return
            try:
                await self._subscribe_locked(room)
            except _ERRORS:
                self._orphans.add(room)  # the mender subscribes it once the cluster answers
                self._lost.set()
                raise

    async def leave(self, room: str, listener: Listener) -> None:
        """Stop listening; never raises."""
        async with self._lock:
            listeners = self._listeners.get(room, [])
            if listener in listeners:
                listeners.remove(listener)
            if listeners:
                return
            self._listeners.pop(room, None)
            self._orphans.discard(room)
            shard = self._where.pop(room, None)
            if shard is None:
                return
            shard.rooms.discard(room)
            try:
                if shard.rooms:
                    await shard.pubsub.sunsubscribe(redis_keys.rtc_live(room))
                else:
                    await self._close_locked(shard)
            except _ERRORS:
                await self._lose_locked(shard)

    async def publish(self, room: str, envelope: str) -> None:
        await self._cluster.spublish(redis_keys.rtc_live(room), envelope)

    # -- subscriptions ---------------------------------------------------------------------------

    async def _subscribe_locked(self, room: str) -> None:
        channel = redis_keys.rtc_live(room)
        node = self._cluster.get_node_from_key(channel)
        if node is None:
            raise SlotNotCoveredError(f"no node holds {channel}")
        shard = self._shards.get(node.name)
        if shard is None:
            client = self._node_client(node.host, int(node.port))
            shard = _Shard(node.name, client, client.pubsub(push_handler_func=as_is))
            self._shards[node.name] = shard
        try:
            await shard.pubsub.ssubscribe(channel)
        except _ERRORS:
            await self._lose_locked(shard)
            raise
        shard.rooms.add(room)
        self._where[room] = shard
        self._orphans.discard(room)
        if shard.reader is None:
            shard.reader = asyncio.create_task(self._read(shard))

    async def _close_locked(self, shard: _Shard) -> None:
        """Forget a shard (its rooms must be moved elsewhere or orphaned by the caller)."""
        if self._shards.get(shard.node) is shard:
            del self._shards[shard.node]
        if shard.reader is not None and shard.reader is not asyncio.current_task():
            shard.reader.cancel()
        with contextlib.suppress(Exception):
            await shard.pubsub.aclose()  # type: ignore[no-untyped-call]
        with contextlib.suppress(Exception):
            await shard.client.aclose()

    async def _lose_locked(self, shard: _Shard) -> None:
        """A shard's connection failed: its rooms become orphans for the mender."""
        for room in shard.rooms:
            if self._where.get(room) is shard:
                del self._where[room]
                self._orphans.add(room)
        shard.rooms.clear()
        await self._close_locked(shard)
        if self._orphans:
            self._lost.set()

    async def _read(self, shard: _Shard) -> None:
        while True:
            try:
                reply = await next_reply(shard.pubsub)
                message = None
                if reply[0] != "smessage":  # (un)subscriptions: redis-py's bookkeeping
                    message = await shard.pubsub.handle_message(reply)  # type: ignore[no-untyped-call]
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if (dependency := outage.unavailable(exc)) is not None:
                    dependency.down(exc)
                else:
                    log.warning("rtc_shard_lost", node=shard.node, error=repr(exc))
                async with self._lock:
                    await self._lose_locked(shard)
                return
            if reply[0] == "smessage":
                listeners = self._listeners.get(redis_keys.rtc_room_of_live(reply[1]))
                if listeners:
                    fan_out(listeners, reply[2])
                continue
            if message is None:
                continue
            kind = message.get("type")
            if kind == "sunsubscribe":
                # Redis unsubscribes a shard channel whose slot this node gave up; one we left
                # ourselves is no longer in _where for this shard.
                room = redis_keys.rtc_room_of_live(str(message["channel"]))
                async with self._lock:
                    if self._where.get(room) is shard:
                        del self._where[room]
                        shard.rooms.discard(room)
                        self._orphans.add(room)
                        self._lost.set()

    async def _mend(self) -> None:
        """Subscribe the orphans on their current node, after fetching the slot map again."""
        # Short pauses: a failover completes within the cluster's node timeout and an election,
        # and every room of the failed node is silent until it is subscribed again.
        backoff = outage.Backoff(first_s=0.2, cap_s=2.0)
        while True:
            await self._lost.wait()
            try:
                await self._cluster.nodes_manager.initialize()
                async with self._lock:
                    for room in list(self._orphans):
                        if room in self._listeners and room not in self._where:
                            await self._subscribe_locked(room)
                        self._orphans.discard(room)
                    if not self._orphans:
                        self._lost.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if (dependency := outage.unavailable(exc)) is not None:
                    dependency.down(exc)
                else:
                    log.warning("rtc_shard_resubscribe_failed", error=repr(exc))
                await asyncio.sleep(backoff.next())
                continue
            outage.REDIS.up()
            backoff.reset()
