"""The signed-in user: who they are, their roles, and the patients they act for."""

from __future__ import annotations

import uuid

import msgspec
from litestar import Controller, get

from api.deps import Caller, Conn
from domain.audit import trail
from domain.principal import Membership


class Me(msgspec.Struct, kw_only=True):
    user_id: uuid.UUID
    phone: str
    display_name: str | None
    is_system_admin: bool
    practitioner_id: uuid.UUID | None
    roles: list[Membership]
    patient_ids: list[uuid.UUID]


class MeController(Controller):
    path = "/v1/me"
    tags = ["auth"]

    @get("/", summary="Who am I")
    async def me(self, conn: Conn, principal: Caller) -> Me:
        row = await conn.fetchrow(
            """SELECT u.phone, u.display_name,
                      coalesce(array_agg(pa.patient_id ORDER BY pa.patient_id)
                               FILTER (WHERE pa.patient_id IS NOT NULL), '{}') AS patient_ids
               FROM users u LEFT JOIN patient_accounts pa ON pa.user_id = u.id
               WHERE u.id = $1 GROUP BY u.id""",
            principal.user_id,
        )
        assert row is not None  # the token was issued to an existing user
        patient_ids = list(row["patient_ids"])
        if patient_ids:
            await trail.record(
                conn,
                principal,
                action="read",
                resource_type="PatientAccount",
                resource_id=principal.user_id,
                patient_ids=patient_ids,
            )
        return Me(
            user_id=principal.user_id,
            phone=row["phone"],
            display_name=row["display_name"],
            is_system_admin=principal.is_system_admin,
            practitioner_id=principal.practitioner_id,
            roles=list(principal.memberships),
            patient_ids=patient_ids,
        )
