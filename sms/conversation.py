"""A question Spean asked by SMS and the answer that comes back: one open question per phone,
kept in Redis for 15 minutes (a late answer finds nothing and gets the help text).

A question is a tagged Struct holding what the answer acts on (the slots offered, the patient it
is for...), so the answer needs no other state; the act is checked again when the answer comes:
the domain function decides, as in the app. The question is written or cleared only after every
domain statement of the turn ran (sms.inbound), so a request that lost a race and runs again
(api.transaction) still finds the question it answers.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

import asyncpg
import msgspec

from domain import constraints
from domain.booking.offers import Need
from domain.booking.slots import Slot
from domain.errors import DomainError, Unavailable
from domain.self_registration import Post
from infra import redis_keys
from infra.db import Connection
from infra.redis_client import RedisClient

TTL_S = 15 * 60


class AskMove(msgspec.Struct, frozen=True, tag="move"):
    """MOVE n: YES moves the appointment to `start`."""

    appointment_id: uuid.UUID
    start: datetime
    timezone: str


class AskNeed(msgspec.Struct, frozen=True, tag="need"):
    """BOOK: which of these (a number)."""

    patient_id: uuid.UUID
    needs: list[Need]


class AskSlot(msgspec.Struct, frozen=True, tag="slot"):
    """BOOK: which of these free times (a number)."""

    patient_id: uuid.UUID
    need: Need
    slots: list[Slot]


class AskBook(msgspec.Struct, frozen=True, tag="book"):
    """BOOK: YES books `slot`."""

    patient_id: uuid.UUID
    need: Need
    slot: Slot


class AskWithdraw(msgspec.Struct, frozen=True, tag="withdraw"):
    """WITHDRAW: YES revokes every active consent of the patient."""

    patient_id: uuid.UUID


RegisterStep = Literal["name", "birth_year", "village", "post", "post_choice"]


class AskRegister(msgspec.Struct, frozen=True, tag="register"):
    """REGISTER from an unknown number: the answers so far, and which one is asked now."""

    step: RegisterStep
    language: str
    name: str = ""
    birth_year: int = 0
    village: str = ""
    posts: list[Post] = []


Ask = AskMove | AskNeed | AskSlot | AskBook | AskWithdraw | AskRegister
KEEP: Literal["keep"] = "keep"


@dataclass(frozen=True)
class Reply:
    """What a turn answers (a catalogue id and its values) and what becomes of the question:
    a new one, None (closed) or KEEP (still open: the answer did not fit, it is asked again)."""

    template: str
    values: dict[str, object] = field(default_factory=dict)
    ask: Ask | Literal["keep"] | None = None


async def load(redis: RedisClient, phone: str) -> Ask | None:
    raw = await redis.get(redis_keys.sms_ask(phone))
    if raw is None:
        return None
    try:
        question: Ask = msgspec.json.decode(raw, type=Ask)
    except msgspec.DecodeError:  # a question of an older release: forget it
        return None
    return question


async def forget(redis: RedisClient, phone: str) -> None:
    await redis.delete(redis_keys.sms_ask(phone))


async def settle(redis: RedisClient, phone: str, pending: Ask | None, reply: Reply) -> None:
    if reply.ask == KEEP:
        return
    if reply.ask is None:
        if pending is not None:
            await redis.delete(redis_keys.sms_ask(phone))
        return
    await redis.set(redis_keys.sms_ask(phone), msgspec.json.encode(reply.ask), ex=TTL_S)


def wall_clock(instant: datetime, timezone: str) -> str:
    """A time as the facility's clock shows it (times are stored in UTC)."""
    return instant.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


async def attempt(action: Awaitable[object], conn: Connection) -> DomainError | None:
    """Run a domain action in a savepoint: the rule that refused it (its writes undone, the
    request's others kept), as the app would answer 4xx; None if it was done. Races and outages
    still propagate, so the request runs again whole."""
    try:
        async with conn.transaction():
            await action
    except DomainError as refused:
        return refused
    except asyncpg.PostgresError as exc:
        mapped = constraints.domain_error(exc)
        if mapped is None or isinstance(mapped, Unavailable):
            raise
        return mapped
    return None
