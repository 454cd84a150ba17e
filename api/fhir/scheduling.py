"""Places and time as FHIR: Location (a facility's site), Schedule (a practitioner's availability)
and Slot (free slots, computed from the weekly rules as the app API's /v1/slots are)."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, Response, get
from litestar.params import FromPath

from api.deps import Caller, Conn
from api.fhir.bundle import fhir
from api.fhir.clinical import Resource, instant, ref
from domain import facilities, practitioners
from domain.booking.slots import Slot
from domain.facilities import Facility
from domain.practitioners import Practitioner


def location(f: Facility) -> Resource:
    resource: Resource = {
        "resourceType": "Location",
        "id": str(f.id),
        "meta": {"versionId": "1", "lastUpdated": instant(f.updated_at)},
        "status": "active",
        "name": f.name,
        "mode": "instance",
        "address": {"country": f.country, **({"state": f.province} if f.province else {})},
        "managingOrganization": ref("Organization", f.id),  # one site per facility: same id
    }
    if f.latitude is not None and f.longitude is not None:
        resource["position"] = {"latitude": f.latitude, "longitude": f.longitude}
    return resource


def schedule(p: Practitioner) -> Resource:
    sites = sorted({str(m.facility_id) for m in p.roles if m.role in ("specialist", "clinician")})
    resource: Resource = {
        "resourceType": "Schedule",
        "id": str(p.id),  # one schedule per practitioner, across the sites they consult at
        "meta": {"versionId": "1", "lastUpdated": instant(p.created_at)},  # not versioned: see current.py
        "active": True,
        "actor": [ref("Practitioner", p.id), *(ref("Location", s) for s in sites)],
    }
    if p.specialties:
        resource["specialty"] = [{"text": s} for s in p.specialties]
    return resource


def slot(s: Slot) -> Resource:
    return {
        "resourceType": "Slot",
        "id": f"{s.practitioner_id}-{int(s.start.timestamp())}",
        "schedule": ref("Schedule", s.practitioner_id),
        "status": "free",
        "start": instant(s.start),
        "end": instant(s.end),
        "comment": f"modes: {', '.join(s.modes)}; site Location/{s.facility_id}",
    }


class FhirSchedulingController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    @get("/Location/{facility_id:uuid}", summary="Read a Location (a facility's site)")
    async def read_location(self, facility_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Response[Any]:
        return fhir(location(await facilities.get(conn, facility_id)))

    @get("/Schedule/{practitioner_id:uuid}", summary="Read a practitioner's Schedule")
    async def read_schedule(self, practitioner_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Response[Any]:
        return fhir(schedule(await practitioners.get(conn, practitioner_id)))
