"""Places and time as FHIR: Location (a facility's site), Schedule (a practitioner's availability)
and Slot (free slots, computed from the weekly rules as the app API's /v1/slots are)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.params import FromPath, FromQuery, QueryParameter

from api.deps import Caller, Config, Conn
from api.fhir.bundle import bundle, date_bounds, fhir
from api.fhir.clinical import Resource, instant, ref
from domain import facilities, practitioners
from domain.booking import availability
from domain.booking.slots import Slot
from domain.errors import InvalidInput
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

    @get("/Slot", summary="Free slots of a Schedule (start=ge.../lt..., at most 31 days)")
    async def search_slots(
        self,
        conn: Conn,
        principal: Caller,
        settings: Config,
        schedule_ref: Annotated[str, QueryParameter(name="schedule")],
        start: FromQuery[list[str] | None] = None,
        count: Annotated[int, QueryParameter(name="_count", ge=1, le=2000)] = 500,
    ) -> Response[Any]:
        try:
            practitioner_id = uuid.UUID(schedule_ref.removeprefix("Schedule/"))
        except ValueError:
            raise InvalidInput("invalid_reference", "schedule is Schedule/{id}", field="schedule") from None
        low, high = date_bounds(start, "start")
        first = (low or datetime.now(UTC)).date()
        last = high.date() if high else first + timedelta(days=7)
        free = await availability.list_free_slots(conn, first_day=first, last_day=last, practitioner_id=practitioner_id)
        return fhir(
            bundle(settings.public_base_url, "searchset", [slot(s) for s in free[:count]], self_path="/fhir/Slot",
                   params={"schedule": schedule_ref, "start": start, "_count": count})
        )  # fmt: skip
