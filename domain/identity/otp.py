"""One-time login codes sent by SMS: hashed, short-lived, single-use, attempts capped, and
rate-limited per phone and per client address. State lives in Redis (it is ephemeral)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from domain.errors import RateLimited, Unauthenticated
from infra import redis_keys
from infra.redis_client import RedisClient

_WINDOW_S = 3600

# Checked and consumed in one step, so two concurrent guesses cannot both pass the attempt cap
# and a code cannot be used twice. Returns 1 ok, 0 wrong, -1 none/expired, -2 wrong and no attempts left
# (the code is burnt).
_VERIFY = """
local h = redis.call('HGET', KEYS[1], 'h')
if not h then return -1 end
local n = redis.call('HINCRBY', KEYS[1], 'n', 1)
if h == ARGV[1] then redis.call('DEL', KEYS[1]); return 1 end
if n >= tonumber(ARGV[2]) then redis.call('DEL', KEYS[1]); return -2 end
return 0
"""


@dataclass(frozen=True)
class OtpPolicy:
    ttl_s: int
    max_attempts: int
    per_phone_per_hour: int
    per_ip_per_hour: int


class OtpService:
    def __init__(self, redis: RedisClient, secret: str, policy: OtpPolicy) -> None:
        self._redis = redis
        self._key = hashlib.sha256(b"spean-otp:" + secret.encode()).digest()
        self._policy = policy
        self._verify = redis.register_script(_VERIFY)

    def _hash(self, phone: str, code: str) -> str:
        return hmac.new(self._key, f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()

    async def issue(self, phone: str, client_ip: str) -> str:
        """Create a fresh code for `phone` (replacing any earlier one) and return it for sending."""
        await self._limit(f"ip:{client_ip}", self._policy.per_ip_per_hour, "otp_rate_limited_ip")
        await self._limit(f"phone:{phone}", self._policy.per_phone_per_hour, "otp_rate_limited_phone")
        code = f"{secrets.randbelow(1_000_000):06d}"
        key = redis_keys.otp_code(phone)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            pipe.hset(key, mapping={"h": self._hash(phone, code), "n": 0})
            pipe.expire(key, self._policy.ttl_s)
            await pipe.execute()
        return code

    async def verify(self, phone: str, code: str) -> None:
        result = await self._verify(
            keys=[redis_keys.otp_code(phone)], args=[self._hash(phone, code), self._policy.max_attempts]
        )
        if result == 1:
            return
        if result == -1:
            raise Unauthenticated("otp_expired", "no valid code for this phone: request a new one")
        if result == -2:
            raise Unauthenticated("otp_attempts_exceeded", "too many wrong codes: request a new one")
        raise Unauthenticated("otp_invalid", "the code is wrong")

    async def _limit(self, bucket: str, limit: int, code: str) -> None:
        key = redis_keys.otp_rate(bucket)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, _WINDOW_S, nx=True)
            pipe.ttl(key)
            count, _, ttl = await pipe.execute()
        if int(count) > limit:
            raise RateLimited(code, "too many codes requested: try again later", retry_after_s=max(int(ttl), 1))
