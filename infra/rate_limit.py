"""Fixed-window request counters in Redis, shared by every worker: how many times a bucket (a
client address, a phone, a link) was used in the current window, and how long until it resets."""

from __future__ import annotations

from redis.asyncio import Redis

from infra import redis_keys


async def over_limit(redis: Redis, bucket: str, limit: int, window_s: int) -> int | None:
    """Count one use of `bucket`; None while within `limit` per `window_s`, else the seconds
    until the window resets (for Retry-After)."""
    key = redis_keys.rate(bucket)  # one key: a transaction of its own, in one slot on a cluster
    async with redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.expire(key, window_s, nx=True)
        pipe.ttl(key)
        count, _, ttl = await pipe.execute()
    return max(int(ttl), 1) if int(count) > limit else None
