"""Patients: register, search (identifier, phone, name), read, update."""

from __future__ import annotations

import uuid
from typing import Annotated

from litestar import Controller, get, patch, post
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from api.deps import Caller, Config, Conn
from api.schemas import PatientPage, invalid_cursor
from domain import patients
from domain.errors import InvalidInput


class PatientController(Controller):
    path = "/v1/patients"
    tags = ["patients"]

    @post("/", summary="Register a patient (health worker), or yourself (patient login)")
    async def register(
        self, data: JSONBody[patients.PatientIn], conn: Conn, principal: Caller, settings: Config
    ) -> patients.Patient:
        return await patients.register(conn, principal, data, default_region=settings.default_region)

    @get("/", summary="Search patients you may see, by identifier, phone or name")
    async def search(
        self,
        conn: Conn,
        principal: Caller,
        settings: Config,
        identifier: FromQuery[str | None] = None,
        phone: FromQuery[str | None] = None,
        name: FromQuery[str | None] = None,
        facility_id: FromQuery[uuid.UUID | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> PatientPage:
        after = None
        if cursor:
            try:
                after = uuid.UUID(cursor)
            except ValueError:
                raise invalid_cursor() from None
        query = patients.PatientQuery(
            identifier=identifier, phone=phone, name=name, facility_id=facility_id, after=after, limit=limit
        )
        items = await patients.search(conn, principal, query, default_region=settings.default_region)
        return PatientPage(items=items, next_cursor=str(items[-1].id) if len(items) == limit else None)

    @get("/{patient_id:uuid}", summary="Read a patient")
    async def read(self, patient_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> patients.Patient:
        return await patients.get(conn, principal, patient_id)

    @patch("/{patient_id:uuid}", summary="Update a patient (If-Match: the version you read)")
    async def update(
        self,
        patient_id: FromPath[uuid.UUID],
        data: JSONBody[patients.PatientPatch],
        conn: Conn,
        principal: Caller,
        settings: Config,
        if_match: Annotated[str | None, HeaderParameter(name="if-match")] = None,
    ) -> patients.Patient:
        expected = None
        if if_match is not None:
            stripped = if_match.strip().removeprefix("W/").strip('"')
            # A version is a positive int4: ASCII digits only (str.isdigit() also takes "²").
            if not (stripped.isascii() and stripped.isdigit() and 0 < int(stripped) < 2**31):
                raise InvalidInput("invalid_if_match", "If-Match is the patient's version number", field="If-Match")
            expected = int(stripped)
        return await patients.update(
            conn, principal, patient_id, data, default_region=settings.default_region, expected_version=expected
        )
