"""The shared record: write entries, correct them, mark them entered in error, read them and
their history; complete a consultation with its results."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from api.deps import Caller, Conn, DbPool
from api.transaction import LATE_KEY, ONE_READ
from domain.fields import Reason, Version
from domain.record import consultation, service
from domain.record.consultation import Completed, ConsultationResults
from domain.record.types import Entry, EntryIn, Kind


class Correction(msgspec.Struct, kw_only=True):
    expected_version: Version
    entry: EntryIn
    reason: Reason


class ErrorMark(msgspec.Struct, kw_only=True):
    expected_version: Version
    reason: Reason


class RecordPage(msgspec.Struct, kw_only=True):
    items: list[Entry]


class RecordController(Controller):
    tags = ["record"]

    # Every effect of a write is in the request's transaction: the key is written with the answer.
    @post("/v1/patients/{patient_id:uuid}/record", opt=LATE_KEY, summary="Add an entry to a patient's record")
    async def write(
        self, patient_id: FromPath[uuid.UUID], data: JSONBody[EntryIn], conn: Conn, principal: Caller
    ) -> Entry:
        return await service.write(conn, principal, patient_id, data)

    # Reads are one statement each, which audits itself (domain.record.reads): no BEGIN/COMMIT.
    @get("/v1/patients/{patient_id:uuid}/record", opt=ONE_READ, summary="A patient's current record, most recent first")
    async def patient_record(
        self,
        patient_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
        pool: DbPool,
        kind: FromQuery[Kind | None] = None,
        include_errors: FromQuery[bool] = False,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 200,
    ) -> RecordPage:
        items = await service.patient_record(
            conn, principal, patient_id, pool=pool, kind=kind, include_errors=include_errors, limit=limit
        )
        return RecordPage(items=items)

    @get("/v1/record/{entry_id:uuid}", opt=ONE_READ, summary="The current version of an entry")
    async def read(self, entry_id: FromPath[uuid.UUID], conn: Conn, principal: Caller, pool: DbPool) -> Entry:
        return await service.get(conn, principal, entry_id, pool=pool)

    @get("/v1/record/{entry_id:uuid}/history", summary="Every version of an entry, oldest first")
    async def history(self, entry_id: FromPath[uuid.UUID], conn: Conn, principal: Caller, pool: DbPool) -> list[Entry]:
        return await service.history(conn, principal, entry_id, pool=pool)

    @post("/v1/record/{entry_id:uuid}/correct", status_code=HTTP_200_OK, summary="Correct an entry (new version)")
    async def correct(
        self, entry_id: FromPath[uuid.UUID], data: JSONBody[Correction], conn: Conn, principal: Caller
    ) -> Entry:
        return await service.correct(
            conn, principal, entry_id, expected_version=data.expected_version, entry=data.entry, reason=data.reason
        )

    @post(
        "/v1/record/{entry_id:uuid}/entered-in-error",
        status_code=HTTP_200_OK,
        summary="Mark an entry entered in error (new version; never deleted)",
    )
    async def entered_in_error(
        self, entry_id: FromPath[uuid.UUID], data: JSONBody[ErrorMark], conn: Conn, principal: Caller
    ) -> Entry:
        return await service.mark_entered_in_error(
            conn, principal, entry_id, expected_version=data.expected_version, reason=data.reason
        )

    @post(
        "/v1/appointments/{appointment_id:uuid}/complete",
        status_code=HTTP_200_OK,
        summary="Complete a consultation and write its results, in one transaction",
    )
    async def complete(
        self,
        appointment_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
        data: JSONBody[ConsultationResults | None] = None,
    ) -> Completed:
        return await consultation.complete(conn, principal, appointment_id, data or ConsultationResults())
