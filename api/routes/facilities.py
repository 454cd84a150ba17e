"""Facilities and the referral network."""

from __future__ import annotations

import uuid

from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, FromQuery, JSONBody

from api.deps import Caller, Config, Conn
from api.schemas import ExceptionIn, ReferralTargetIn
from domain import facilities
from domain.booking import time_off
from domain.booking.time_off import TimeOff


class FacilityController(Controller):
    path = "/v1/facilities"
    tags = ["facilities"]

    @post("/", summary="Create a facility (system admin)")
    async def create(
        self, data: JSONBody[facilities.FacilityIn], conn: Conn, principal: Caller, settings: Config
    ) -> facilities.Facility:
        return await facilities.create(conn, principal, data, default_region=settings.default_region)

    @get("/", summary="List facilities")
    async def search(
        self,
        conn: Conn,
        principal: Caller,
        kind: FromQuery[facilities.Kind | None] = None,
        country: FromQuery[str | None] = None,
        name: FromQuery[str | None] = None,
    ) -> list[facilities.Facility]:
        return await facilities.search(conn, kind=kind, country=country, name=name)

    @get("/{facility_id:uuid}", summary="Read a facility")
    async def read(self, facility_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> facilities.Facility:
        return await facilities.get(conn, facility_id)

    @patch("/{facility_id:uuid}", summary="Update a facility (its admin)")
    async def update(
        self, facility_id: FromPath[uuid.UUID], data: JSONBody[facilities.FacilityPatch], conn: Conn, principal: Caller
    ) -> facilities.Facility:
        return await facilities.update(conn, principal, facility_id, data)

    @post("/{facility_id:uuid}/referral-targets", summary="Let this facility refer to a reference centre")
    async def add_referral_target(
        self, facility_id: FromPath[uuid.UUID], data: JSONBody[ReferralTargetIn], conn: Conn, principal: Caller
    ) -> facilities.Facility:
        return await facilities.add_referral_target(conn, principal, facility_id, data.facility_id)

    @post("/{facility_id:uuid}/closures", summary="Close the facility for a period (holiday)")
    async def add_closure(
        self, facility_id: FromPath[uuid.UUID], data: JSONBody[ExceptionIn], conn: Conn, principal: Caller
    ) -> TimeOff:
        await facilities.get(conn, facility_id)
        return await time_off.add_exception(
            conn,
            principal,
            practitioner_id=None,
            facility_id=facility_id,
            starts_at=data.starts_at,
            ends_at=data.ends_at,
            reason=data.reason,
        )

    @delete("/{facility_id:uuid}/closures/{exception_id:uuid}", summary="Withdraw a closure")
    async def remove_closure(
        self, facility_id: FromPath[uuid.UUID], exception_id: FromPath[uuid.UUID], conn: Conn, principal: Caller
    ) -> None:
        await time_off.remove_exception(conn, principal, exception_id, facility_id=facility_id)

    @get("/{facility_id:uuid}/closures", summary="List the facility's closures")
    async def list_closures(self, facility_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> list[TimeOff]:
        return await time_off.list_exceptions(conn, facility_id=facility_id)
