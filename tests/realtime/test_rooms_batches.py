"""realtime.rooms: relayed messages go to Redis in batches (on a Redis of the test's own: it
flushes scripts and kills connections, which a shared server's other users would feel)."""

from __future__ import annotations

import asyncio
import uuid

from redis.asyncio import Redis

from realtime.bus import Bus
from realtime.rooms import Rooms, log_key


async def test_a_batch_keeps_each_message_in_order_and_refuses_only_an_absent_peer(private_redis: Redis) -> None:
    redis = private_redis
    rooms = Rooms(redis, grace_s=5)
    room = str(uuid.uuid4())
    sender, _ = await rooms.add(room, "user-a", "specialist", "admitted")
    other, _ = await rooms.add(room, "user-b", "patient", "admitted")
    sends = [
        rooms.append_and_publish(room, sender, other if n % 2 else None, f'{{"n":{n}}}', f'{{"env":{n}}}')
        for n in range(20)
    ]
    sends.insert(7, rooms.append_and_publish(room, sender, "no-such-peer", '{"n":"x"}', '{"env":"x"}'))
    seqs = await asyncio.gather(*sends)  # all queued before the first batch leaves: one or two batches
    assert seqs[7] is None  # neither kept nor published
    kept = [s for s in seqs if s is not None]
    assert len(kept) == 20
    assert kept == sorted(kept, key=lambda s: tuple(int(x) for x in s.split("-")))
    log = await rooms.since(room, None)
    assert [fields["msg"] for _, fields in log] == [f'{{"n":{n}}}' for n in range(20)]
    assert [seq for seq, _ in log] == kept
    assert await redis.exists(log_key(room))


async def test_a_batch_survives_lost_scripts_and_dead_connections(private_redis: Redis) -> None:
    """After a Redis restart or failover the scripts are gone and every pooled connection is dead:
    the next relayed messages still go through (the script is loaded again, the connection made
    afresh), none is refused for it."""
    redis = private_redis
    rooms = Rooms(redis, grace_s=5)
    room = str(uuid.uuid4())
    sender, _ = await rooms.add(room, "user-a", "specialist", "admitted")
    assert await rooms.append_and_publish(room, sender, None, "{}", "{}") is not None
    await redis.script_flush()
    await redis.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "no")  # type: ignore[no-untyped-call]
    seqs = await asyncio.gather(*(rooms.append_and_publish(room, sender, None, "{}", "{}") for _ in range(5)))
    assert all(seq is not None for seq in seqs)
    assert len(await rooms.since(room, None)) == 6


async def test_a_listener_that_fails_stops_neither_the_others_nor_the_bus(private_redis: Redis) -> None:
    bus = Bus(private_redis)
    room = str(uuid.uuid4())
    heard: list[str] = []
    all_heard = asyncio.Event()

    def broken(_: str) -> None:
        raise RuntimeError("a socket's own failure")

    def hear(data: str) -> None:
        heard.append(data)
        if len(heard) == 3:
            all_heard.set()

    await bus.start()
    try:
        await bus.join(room, broken)
        await bus.join(room, hear)
        for n in range(3):
            await bus.publish(room, f"m{n}")
        await asyncio.wait_for(all_heard.wait(), 10)
        assert heard == ["m0", "m1", "m2"]
    finally:
        await bus.stop()
