"""Consent (grant, list, revoke), break-glass access, the patient's access log and the audit export."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK

from api.deps import Caller, Conn
from domain.audit import access_log
from domain.audit.access_log import AccessLogEntry
from domain.audit.export import AuditEvent, export
from domain.consent import service
from domain.consent.service import BreakGlass, BreakGlassIn, Consent, ConsentIn
from domain.errors import Forbidden
from domain.fields import Reason


class RevokeIn(msgspec.Struct, kw_only=True):
    reason: Reason | None = None


class AccessLogPage(msgspec.Struct, kw_only=True):
    items: list[AccessLogEntry]
    next_before: int | None  # pass as ?before= for older events


class AuditPage(msgspec.Struct, kw_only=True):
    items: list[AuditEvent]
    next_after: int | None  # pass as ?after= for the next page


class ConsentController(Controller):
    tags = ["consent"]

    @post("/v1/patients/{patient_id:uuid}/consents", summary="Record a consent to read the patient's record")
    async def grant(
        self, patient_id: FromPath[uuid.UUID], data: JSONBody[ConsentIn], conn: Conn, principal: Caller
    ) -> Consent:
        return await service.grant(conn, principal, patient_id, data)

    @get("/v1/patients/{patient_id:uuid}/consents", summary="Every consent of a patient, revoked ones included")
    async def list_consents(self, patient_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> list[Consent]:
        return await service.list_for_patient(conn, principal, patient_id)

    @post("/v1/consents/{consent_id:uuid}/revoke", status_code=HTTP_200_OK, summary="Revoke a consent")
    async def revoke(
        self, consent_id: FromPath[uuid.UUID], conn: Conn, principal: Caller, data: JSONBody[RevokeIn | None] = None
    ) -> Consent:
        return await service.revoke(conn, principal, consent_id, data.reason if data else None)

    @post("/v1/patients/{patient_id:uuid}/break-glass", summary="Emergency access to a record: reason, time-limited")
    async def break_glass(
        self, patient_id: FromPath[uuid.UUID], data: JSONBody[BreakGlassIn], conn: Conn, principal: Caller
    ) -> BreakGlass:
        return await service.break_glass(conn, principal, patient_id, data)

    @get("/v1/me/access-log", summary="Who read or changed my record, or tried and was refused (patient login)")
    async def access_log(
        self,
        conn: Conn,
        principal: Caller,
        before: FromQuery[int | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> AccessLogPage:
        if principal.is_staff or principal.is_system_admin:
            raise Forbidden("patient_login_required", "the access log is the patient's own view; staff export it")
        items = await access_log.for_patient_login(conn, principal, before_id=before, limit=limit)
        return AccessLogPage(items=items, next_before=items[-1].id if len(items) == limit else None)

    @get("/v1/facilities/{facility_id:uuid}/audit-events", summary="Export the audit trail (facility admin)")
    async def export_audit(
        self,
        facility_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
        after: FromQuery[int | None] = None,
        since: FromQuery[datetime | None] = None,
        until: FromQuery[datetime | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=5000)] = 1000,
    ) -> AuditPage:
        items = await export(conn, principal, facility_id, after_id=after, since=since, until=until, limit=limit)
        return AuditPage(items=items, next_after=items[-1].id if len(items) == limit else None)
