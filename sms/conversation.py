"""A question Spean asked by SMS and the YES/NO that answers it: one open question per phone,
kept in Redis for 15 minutes (a late YES finds nothing and gets the help text). The answer is
checked again when it comes: the domain function decides, as in the app."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from redis.asyncio import Redis

from domain import constraints
from domain.booking import appointments
from domain.booking.availability import list_free_slots
from domain.booking.model import Appointment
from domain.errors import DomainError, Unavailable
from domain.principal import Principal
from infra.db import Connection

_KEY = "spean:sms:ask:"
TTL_S = 15 * 60
_SEARCH_DAYS = 14


class _Move(msgspec.Struct, frozen=True):
    appointment_id: uuid.UUID
    start: datetime
    timezone: str


def wall_clock(instant: datetime, timezone: str) -> str:
    return instant.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d %H:%M")


async def offer_move(
    conn: Connection, redis: Redis, phone: str, appointment: Appointment
) -> tuple[str, dict[str, object]]:
    today = datetime.now(UTC).date()
    slots = await list_free_slots(
        conn,
        first_day=today,
        last_day=today + timedelta(days=_SEARCH_DAYS),
        practitioner_id=appointment.practitioner_id,
        facility_id=appointment.facility_id,
        mode=appointment.mode,
    )
    later = [s for s in slots if s.start != appointment.start]
    if not later:
        return "sms_move_none", {}
    slot = min(later, key=lambda s: s.start)
    question = _Move(appointment.id, slot.start, slot.timezone)
    await redis.set(_KEY + phone, msgspec.json.encode(question), ex=TTL_S)
    return "sms_move_offer", {
        "when": wall_clock(appointment.start, appointment.timezone),
        "new": wall_clock(slot.start, slot.timezone),
    }


async def answer(
    conn: Connection, redis: Redis, principal: Principal, phone: str, *, yes: bool
) -> tuple[str, dict[str, object]]:
    raw = await redis.get(_KEY + phone)
    if raw is None:
        return "sms_help", {}  # no open question (or it expired)
    question = msgspec.json.decode(raw, type=_Move)
    if yes and not await refused_by_domain(
        appointments.reschedule(conn, principal, question.appointment_id, start=question.start, reason="moved by SMS"),
        conn,
    ):
        reply: tuple[str, dict[str, object]] = ("sms_moved", {"new": wall_clock(question.start, question.timezone)})
    else:
        reply = ("sms_move_taken", {}) if yes else ("sms_move_kept", {})
    # Kept until answered: a request that lost a race and runs again (api.transaction) finds it.
    await redis.delete(_KEY + phone)
    return reply


async def refused_by_domain(action: Awaitable[object], conn: Connection) -> bool:
    """Run a domain action in a savepoint: True if a rule refused it (its writes undone, the
    request's others kept), as the app would answer 4xx. Races and outages still propagate, so the
    request runs again whole."""
    try:
        async with conn.transaction():
            await action
    except DomainError:
        return True
    except asyncpg.PostgresError as exc:
        mapped = constraints.domain_error(exc)
        if mapped is None or isinstance(mapped, Unavailable):
            raise
        return True
    return False
