"""USSD session state in Redis, one key per gateway session, expiring with the session.

A gateway holds a session at most ~180 s; the key lives as long after the last turn, so an
abandoned session leaves nothing behind, and a callback arriving after expiry finds no state and
starts again at the main menu instead of acting on a stale choice.
"""

from __future__ import annotations

import uuid

import msgspec

from infra import redis_keys
from infra.redis_client import RedisClient


class Session(msgspec.Struct, kw_only=True):
    user_id: uuid.UUID
    language: str
    screen: str
    patient_id: uuid.UUID | None = None  # whom the screens act for (a CHW picks one per errand)
    chw: bool = False  # a health worker's session: the CHW menu is its main menu
    stack: list[str] = []  # screens to return to with 0
    seen: int = 0  # how many `*`-joined inputs of the gateway's text were already handled
    strikes: int = 0  # invalid answers on the current screen
    choices: dict[str, str] = {}  # what was picked so far (specialty, slot, appointment, new PIN)
    options: dict[str, str] = {}  # the current screen's numbered choices: key -> value


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Session)


class SessionStore:
    def __init__(self, redis: RedisClient, ttl_s: int) -> None:
        self._redis = redis
        self.ttl_s = ttl_s

    @staticmethod
    def key(session_id: str) -> str:
        return redis_keys.ussd_session(session_id)

    async def load(self, session_id: str) -> Session | None:
        raw = await self._redis.get(self.key(session_id))
        if raw is None:
            return None
        try:
            return _decoder.decode(raw)
        except msgspec.DecodeError:  # written by an older version: start again
            return None

    async def save(self, session_id: str, session: Session) -> None:
        await self._redis.set(self.key(session_id), _encoder.encode(session), ex=self.ttl_s)

    async def end(self, session_id: str) -> None:
        await self._redis.delete(self.key(session_id))
