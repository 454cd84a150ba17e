"""Patients who registered themselves by SMS, for the CHW of their health post to verify."""

from __future__ import annotations

import uuid

from litestar import Controller, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from api.deps import Caller, Conn
from domain import self_registration
from domain.self_registration import SelfRegistration


class SelfRegistrationController(Controller):
    tags = ["patients"]

    @get(
        "/v1/facilities/{facility_id:uuid}/self-registrations",
        summary="The health post's self-registrations (by SMS) not verified yet",
    )
    async def pending(self, facility_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> list[SelfRegistration]:
        return await self_registration.pending(conn, principal, facility_id)

    @post(
        "/v1/patients/{patient_id:uuid}/self-registration/verify",
        status_code=HTTP_200_OK,
        summary="Mark a patient's self-registration as checked in person",
    )
    async def verify(self, patient_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> SelfRegistration:
        return await self_registration.verify(conn, principal, patient_id)
