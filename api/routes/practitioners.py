"""Practitioners, their weekly availability and their leave."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from api.deps import Caller, Config, Conn
from api.schemas import AvailabilityIn, ExceptionIn, RuleOut
from domain import practitioners
from domain.booking import availability, time_off
from domain.booking.slots import Rule
from domain.booking.time_off import TimeOff


def _rule_out(rule: Rule) -> RuleOut:
    return RuleOut(
        facility_id=rule.facility_id,
        timezone=rule.timezone,
        weekday=rule.weekday,
        start=rule.start_local,
        end=rule.end_local,
        slot_minutes=rule.slot_minutes,
        modes=list(rule.modes),
        valid_from=rule.valid_from,
        valid_until=rule.valid_until,
    )


class PractitionerController(Controller):
    path = "/v1/practitioners"
    tags = ["practitioners"]

    @post("/", summary="Add a practitioner to a facility (facility admin)")
    async def create(
        self, data: JSONBody[practitioners.PractitionerIn], conn: Conn, principal: Caller, settings: Config
    ) -> practitioners.Practitioner:
        return await practitioners.create(conn, principal, data, default_region=settings.default_region)

    @get("/", summary="Find practitioners by specialty, facility or language")
    async def search(
        self,
        conn: Conn,
        principal: Caller,
        specialty: FromQuery[str | None] = None,
        facility_id: FromQuery[uuid.UUID | None] = None,
        language: FromQuery[str | None] = None,
    ) -> list[practitioners.Practitioner]:
        return await practitioners.search(conn, specialty=specialty, facility_id=facility_id, language=language)

    @get("/{practitioner_id:uuid}", summary="Read a practitioner")
    async def read(
        self, practitioner_id: FromPath[uuid.UUID], conn: Conn, principal: Caller
    ) -> practitioners.Practitioner:
        return await practitioners.get(conn, practitioner_id)

    @put("/{practitioner_id:uuid}/availability", summary="Replace weekly availability at one facility")
    async def set_availability(
        self, practitioner_id: FromPath[uuid.UUID], data: JSONBody[AvailabilityIn], conn: Conn, principal: Caller
    ) -> list[RuleOut]:
        rules = await availability.replace_rules(conn, principal, practitioner_id, data.facility_id, data.rules)
        return [_rule_out(r) for r in rules]

    @get("/{practitioner_id:uuid}/availability", summary="Weekly availability")
    async def get_availability(
        self, practitioner_id: FromPath[uuid.UUID], conn: Conn, principal: Caller
    ) -> list[RuleOut]:
        await practitioners.get(conn, practitioner_id)
        return [_rule_out(r) for r in await availability.rules_of(conn, [practitioner_id])]

    @post("/{practitioner_id:uuid}/exceptions", summary="Block time off (leave, training)")
    async def add_exception(
        self, practitioner_id: FromPath[uuid.UUID], data: JSONBody[ExceptionIn], conn: Conn, principal: Caller
    ) -> TimeOff:
        return await time_off.add_exception(
            conn,
            principal,
            practitioner_id=practitioner_id,
            facility_id=None,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            reason=data.reason,
        )

    @delete("/{practitioner_id:uuid}/exceptions/{exception_id:uuid}", summary="Withdraw time off")
    async def remove_exception(
        self, practitioner_id: FromPath[uuid.UUID], exception_id: FromPath[uuid.UUID], conn: Conn, principal: Caller
    ) -> None:
        await time_off.remove_exception(conn, principal, exception_id, practitioner_id=practitioner_id)

    @get("/{practitioner_id:uuid}/exceptions", summary="Time off")
    async def list_exceptions(
        self, practitioner_id: FromPath[uuid.UUID], conn: Conn, principal: Caller
    ) -> list[TimeOff]:
        return await time_off.list_exceptions(conn, practitioner_id=practitioner_id)
