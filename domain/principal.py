"""Who is acting: the authenticated user, their roles per facility, and the channel used."""

from __future__ import annotations

import uuid
from typing import Literal

import msgspec

Role = Literal["chw", "clinician", "specialist", "facility_admin"]
STAFF_ROLES: tuple[Role, ...] = ("chw", "clinician", "specialist", "facility_admin")
Channel = Literal["app", "web", "sms", "ussd", "api"]


class Membership(msgspec.Struct, frozen=True, array_like=True):
    facility_id: uuid.UUID
    role: Role


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    user_id: uuid.UUID
    memberships: tuple[Membership, ...] = ()
    is_system_admin: bool = False
    practitioner_id: uuid.UUID | None = None
    channel: Channel = "app"
    request_id: str | None = None
    # A backend client of SMART Backend Services (domain.smart): its granted system scopes. Such a
    # principal holds no role: it reaches bulk export only (api.smart.confine), never the app API.
    client_scopes: tuple[str, ...] | None = None

    def facilities_with(self, *roles: Role) -> frozenset[uuid.UUID]:
        return frozenset(m.facility_id for m in self.memberships if m.role in roles)

    def has_role(self, role: Role, facility_id: uuid.UUID | None = None) -> bool:
        return any(m.role == role and (facility_id is None or m.facility_id == facility_id) for m in self.memberships)

    @property
    def primary_role(self) -> str:
        """The role recorded in the audit trail: the most privileged one held."""
        if self.is_system_admin:
            return "system_admin"
        if self.client_scopes is not None:
            return "system_client"
        for role in ("facility_admin", "specialist", "clinician", "chw"):
            if any(m.role == role for m in self.memberships):
                return role
        return "patient"

    @property
    def is_client(self) -> bool:
        return self.client_scopes is not None

    @property
    def is_staff(self) -> bool:
        return bool(self.memberships)
