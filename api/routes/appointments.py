"""Consultation booking: book, list, read, reschedule, cancel, check in, mark no-show."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from api.deps import Caller, Conn
from api.input_rules import calendar_problem
from api.schemas import (
    AppointmentPage,
    BookRequest,
    CancelRequest,
    RescheduleRequest,
    decode_cursor,
    encode_cursor,
    invalid_cursor,
)
from api.transaction import ONE_STATEMENT, finish_with
from domain.booking import appointments
from domain.booking.appointments import Appointment, AppointmentEvent, AppointmentQuery, Status


class AppointmentController(Controller):
    path = "/v1/appointments"
    tags = ["booking"]

    @post("/", opt=ONE_STATEMENT, summary="Book a consultation slot")
    async def book(
        self, request: Request[Any, Any, Any], data: JSONBody[BookRequest], conn: Conn, principal: Caller
    ) -> Appointment:
        appointment, write = await appointments.prepare_booking(
            conn,
            principal,
            patient_id=data.patient_id,
            practitioner_id=data.practitioner_id,
            start=data.start,
            mode=data.mode,
            reason=data.reason,
        )
        finish_with(request.scope, write)  # runs with the answer, and its Idempotency-Key, in one statement
        return appointment

    @get("/", summary="Appointments the caller may see, by start time")
    async def search(
        self,
        conn: Conn,
        principal: Caller,
        patient_id: FromQuery[uuid.UUID | None] = None,
        practitioner_id: FromQuery[uuid.UUID | None] = None,
        facility_id: FromQuery[uuid.UUID | None] = None,
        status: FromQuery[Status | None] = None,
        from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
        to: FromQuery[datetime | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> AppointmentPage:
        after = None
        if cursor:
            start, last_id = decode_cursor(cursor, 2)
            try:
                after = (datetime.fromisoformat(start), uuid.UUID(last_id))
            except ValueError:
                raise invalid_cursor() from None
            if calendar_problem(after[0]):  # not a cursor this server wrote
                raise invalid_cursor()
        query = AppointmentQuery(
            patient_id=patient_id,
            practitioner_id=practitioner_id,
            facility_id=facility_id,
            status=status,
            start_from=from_,
            start_to=to,
            after=after,
            limit=limit,
        )
        items = await appointments.search(conn, principal, query)
        next_cursor = encode_cursor(items[-1].start, items[-1].id) if len(items) == limit else None
        return AppointmentPage(items=items, next_cursor=next_cursor)

    @get("/{appointment_id:uuid}", summary="Read an appointment")
    async def read(self, appointment_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Appointment:
        return await appointments.get(conn, principal, appointment_id)

    @get("/{appointment_id:uuid}/history", summary="Every change to an appointment")
    async def history(
        self, appointment_id: FromPath[uuid.UUID], conn: Conn, principal: Caller
    ) -> list[AppointmentEvent]:
        return await appointments.history(conn, principal, appointment_id)

    @post("/{appointment_id:uuid}/reschedule", status_code=HTTP_200_OK, summary="Move to another free slot")
    async def reschedule(
        self, appointment_id: FromPath[uuid.UUID], data: JSONBody[RescheduleRequest], conn: Conn, principal: Caller
    ) -> Appointment:
        return await appointments.reschedule(conn, principal, appointment_id, start=data.start, reason=data.reason)

    @post("/{appointment_id:uuid}/cancel", status_code=HTTP_200_OK, summary="Cancel")
    async def cancel(
        self,
        appointment_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
        data: JSONBody[CancelRequest | None] = None,
    ) -> Appointment:
        return await appointments.cancel(conn, principal, appointment_id, reason=data.reason if data else None)

    @post("/{appointment_id:uuid}/check-in", status_code=HTTP_200_OK, summary="Patient has arrived (waiting room)")
    async def check_in(self, appointment_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Appointment:
        return await appointments.check_in(conn, principal, appointment_id)

    @post("/{appointment_id:uuid}/no-show", status_code=HTTP_200_OK, summary="Patient did not come (staff)")
    async def no_show(self, appointment_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Appointment:
        return await appointments.mark_no_show(conn, principal, appointment_id)
