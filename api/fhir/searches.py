"""FHIR search for the workflow and directory types: Appointment, ServiceRequest, Practitioner,
Organization, Location and Schedule. Each calls the app API's domain query, so a caller finds in
FHIR exactly what the app API shows them (and the same searches are audited)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Protocol, get_args

from litestar import Controller, Response, get
from litestar.params import FromQuery, QueryParameter

from api.deps import Caller, Config, Conn
from api.fhir import admin
from api.fhir.bundle import bundle, date_bounds, fhir
from api.fhir.scheduling import location, schedule
from api.input_rules import calendar_problem
from domain import facilities, practitioners
from domain.booking import appointments
from domain.booking.model import Status
from domain.errors import InvalidInput, NotFound
from domain.facilities import Kind
from domain.referral import worklists
from domain.referral.service import ReferralStatus

Count = Annotated[int, QueryParameter(name="_count", ge=1, le=1000)]
IdCursor = Annotated[uuid.UUID | None, QueryParameter(name="_cursor")]


def reference_id(value: str, resource_type: str, field: str) -> uuid.UUID:
    """`Type/{id}` or a bare id."""
    try:
        return uuid.UUID(value.removeprefix(f"{resource_type}/"))
    except ValueError:
        raise InvalidInput("invalid_reference", f"{field} is {resource_type}/{{id}}", field=field) from None


def _domain_statuses(fhir_status: str | None, mapping: dict[str, str], field: str = "status") -> list[str] | None:
    """The domain statuses a FHIR status stands for (several may map to one FHIR code)."""
    if fhir_status is None:
        return None
    found = [domain for domain, code in mapping.items() if code == fhir_status]
    if not found:
        raise InvalidInput(
            "invalid_status", f"status is one of {', '.join(sorted(set(mapping.values())))}", field=field
        )
    return found


def _appointment_cursor(raw: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The keyset of the last appointment seen, written by `next` links as {start}~{id}."""
    if raw is None:
        return None
    start, _, ident = raw.partition("~")
    try:
        after = datetime.fromisoformat(start), uuid.UUID(ident)
    except ValueError:
        after = None
    if after is None or calendar_problem(after[0]):  # not a link this server wrote
        raise InvalidInput("invalid_cursor", "use the next link as given", field="_cursor")
    return after


class FhirSearchController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    @get("/Appointment", summary="Search Appointments (patient, practitioner or actor, date, status)")
    async def search_appointments(
        self,
        conn: Conn,
        principal: Caller,
        settings: Config,
        patient: FromQuery[str | None] = None,
        practitioner: FromQuery[str | None] = None,
        actor: FromQuery[str | None] = None,
        date: FromQuery[list[str] | None] = None,
        status: FromQuery[str | None] = None,
        count: Count = 50,
        cursor: Annotated[str | None, QueryParameter(name="_cursor")] = None,
    ) -> Response[Any]:
        patient_id = reference_id(patient, "Patient", "patient") if patient else None
        practitioner_id = reference_id(practitioner, "Practitioner", "practitioner") if practitioner else None
        if actor is not None:  # actor names a Patient or a Practitioner participant
            if actor.startswith("Patient/"):
                patient_id = reference_id(actor, "Patient", "actor")
            else:
                practitioner_id = reference_id(actor, "Practitioner", "actor")
        low, high = date_bounds(date, "date")
        statuses = _domain_statuses(status, admin.APPOINTMENT_STATUS)
        # Every FHIR appointment status maps to exactly one domain status.
        domain_status: Status | None = statuses[0] if statuses else None  # type: ignore[assignment]
        query = appointments.AppointmentQuery(
            patient_id=patient_id, practitioner_id=practitioner_id, status=domain_status,
            start_from=low, start_to=high, after=_appointment_cursor(cursor), limit=count,
        )  # fmt: skip
        found = await appointments.search(conn, principal, query)
        params = {"patient": patient, "practitioner": practitioner, "actor": actor, "date": date, "status": status,
                  "_count": count}  # fmt: skip
        last = found[-1] if found else None
        more = {"_cursor": f"{last.start.isoformat()}~{last.id}"} if last and len(found) == count else None
        return fhir(
            bundle(settings.public_base_url, "searchset", [admin.appointment(a) for a in found],
                   self_path="/fhir/Appointment", params=params, next_params=more)
        )  # fmt: skip

    @get("/ServiceRequest", summary="Search referrals of a patient (patient, status)")
    async def search_referrals(
        self,
        conn: Conn,
        principal: Caller,
        settings: Config,
        patient: FromQuery[str],
        status: FromQuery[str | None] = None,
        count: Count = 50,
        cursor: IdCursor = None,
    ) -> Response[Any]:
        statuses: list[ReferralStatus] | None = _domain_statuses(status, admin.REFERRAL_STATUS)  # type: ignore[assignment]
        found = await worklists.for_patient(
            conn, principal, reference_id(patient, "Patient", "patient"), statuses=statuses, after=cursor, limit=count
        )
        more = _after_last(found, count)
        return fhir(
            bundle(settings.public_base_url, "searchset", [admin.service_request(r) for r in found],
                   self_path="/fhir/ServiceRequest",
                   params={"patient": patient, "status": status, "_count": count}, next_params=more)
        )  # fmt: skip

    @get("/Practitioner", summary="Search Practitioners (name)")
    async def search_practitioners(
        self,
        conn: Conn,
        principal: Caller,
        settings: Config,
        name: FromQuery[str | None] = None,
        count: Count = 50,
        cursor: IdCursor = None,
    ) -> Response[Any]:
        found = await practitioners.search(conn, name=name, after=cursor, limit=count)
        more = _after_last(found, count)
        return fhir(
            bundle(settings.public_base_url, "searchset", [admin.practitioner(p) for p in found],
                   self_path="/fhir/Practitioner", params={"name": name, "_count": count}, next_params=more)
        )  # fmt: skip

    @get("/Organization", summary="Search Organizations (name, type: the facility kind, e.g. health_post)")
    async def search_organizations(
        self,
        conn: Conn,
        principal: Caller,
        settings: Config,
        name: FromQuery[str | None] = None,
        type_: Annotated[str | None, QueryParameter(name="type")] = None,
        count: Count = 50,
        cursor: IdCursor = None,
    ) -> Response[Any]:
        kind = _facility_kind(type_)
        found = await facilities.search(conn, name=name, kind=kind, after=cursor, limit=count)
        more = _after_last(found, count)
        return fhir(
            bundle(settings.public_base_url, "searchset", [admin.organization(f) for f in found],
                   self_path="/fhir/Organization", params={"name": name, "type": type_, "_count": count},
                   next_params=more)
        )  # fmt: skip

    @get("/Location", summary="Search Locations (name)")
    async def search_locations(
        self,
        conn: Conn,
        principal: Caller,
        settings: Config,
        name: FromQuery[str | None] = None,
        count: Count = 50,
        cursor: IdCursor = None,
    ) -> Response[Any]:
        found = await facilities.search(conn, name=name, after=cursor, limit=count)
        more = _after_last(found, count)
        return fhir(
            bundle(settings.public_base_url, "searchset", [location(f) for f in found],
                   self_path="/fhir/Location", params={"name": name, "_count": count}, next_params=more)
        )  # fmt: skip

    @get("/Schedule", summary="Search Schedules (actor: Practitioner/{id} or Location/{id})")
    async def search_schedules(
        self,
        conn: Conn,
        principal: Caller,
        settings: Config,
        actor: FromQuery[str],
        count: Count = 50,
        cursor: IdCursor = None,
    ) -> Response[Any]:
        found: list[practitioners.Practitioner] = []
        if actor.startswith("Location/"):
            site = reference_id(actor, "Location", "actor")
            page = await practitioners.search(conn, facility_id=site, after=cursor, limit=count)
            # A schedule names the sites where its practitioner consults, not every membership.
            found = [p for p in page if any(m.facility_id == site and m.role in _CONSULTING for m in p.roles)]
            more = {"_cursor": str(page[-1].id)} if len(page) == count else None
        else:
            more = None
            try:
                if cursor is None:
                    found = [await practitioners.get(conn, reference_id(actor, "Practitioner", "actor"))]
            except NotFound:
                pass  # a search finds nothing rather than failing
        return fhir(
            bundle(settings.public_base_url, "searchset", [schedule(p) for p in found],
                   self_path="/fhir/Schedule", params={"actor": actor, "_count": count}, next_params=more)
        )  # fmt: skip


_CONSULTING = ("specialist", "clinician")


class _HasId(Protocol):
    id: uuid.UUID


def _after_last(found: Sequence[_HasId], count: int) -> dict[str, str] | None:
    """The next page starts after the last id of a full page; a short page is the last."""
    return {"_cursor": str(found[-1].id)} if len(found) == count else None


def _facility_kind(value: str | None) -> Kind | None:
    if value is None:
        return None
    kind = value.replace(" ", "_")
    if kind not in get_args(Kind):
        raise InvalidInput("invalid_type", f"type is one of {', '.join(get_args(Kind))}", field="type")
    return kind  # type: ignore[return-value]
