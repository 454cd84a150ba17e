"""The FHIR R4 interface: metadata, read, search, _history and Patient/$everything, with the same
authentication, access rules, consent and audit as the app API (it calls the same domain)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, Parameter, QueryParameter

from api.deps import Caller, Config, Conn, DbPool
from api.fhir import admin, capabilities
from api.fhir.bundle import HISTORY, bundle, capability_statement, date_bounds, fhir, fhir_date
from api.fhir.clinical import BY_KIND, KIND_OF, Resource, to_fhir
from api.fhir.trail import audit_event, provenance
from domain import facilities, patients, practitioners
from domain.audit.export import export
from domain.booking import appointments
from domain.consent import service as consent
from domain.errors import NotFound
from domain.record import service as record
from domain.referral import service as referrals

Count = Annotated[int, QueryParameter(name="_count", ge=1, le=1000)]
Cursor = Annotated[int | None, QueryParameter(name="_cursor")]
LastUpdated = Annotated[list[str] | None, QueryParameter(name="_lastUpdated")]
_EVERYTHING_KINDS = list(BY_KIND)
# The clinical types the generic routes serve. Documented as an enum so that the schema does not
# claim these routes (and their search parameters) for Practitioner, Slot... whose own routes win;
# any other type is still a 404 unknown_resource_type (below), not a 400.
ClinicalType = Annotated[str, Parameter(description="a clinical resource type", schema_extra={"enum": sorted(KIND_OF)})]


def _kind(resource_type: str) -> str:
    if resource_type not in KIND_OF:
        raise NotFound("unknown_resource_type", f"this server has no {resource_type} resources")
    return KIND_OF[resource_type]


class FhirController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    @get("/metadata", opt={"exclude_from_auth": True}, summary="CapabilityStatement")
    async def metadata(self, settings: Config) -> Response[Any]:
        return fhir(capabilities.extend(capability_statement(settings.public_base_url)))

    @get("/Patient/{patient_id:uuid}", summary="Read a Patient")
    async def read_patient(self, patient_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Response[Any]:
        return fhir(admin.patient(await patients.get(conn, principal, patient_id)))

    @get("/Patient", summary="Search Patients")
    async def search_patients(
        self,
        conn: Conn,
        principal: Caller,
        settings: Config,
        identifier: FromQuery[str | None] = None,
        name: FromQuery[str | None] = None,
        phone: FromQuery[str | None] = None,
        birthdate: FromQuery[str | None] = None,
        count: Count = 50,
        cursor: Annotated[uuid.UUID | None, QueryParameter(name="_cursor")] = None,
    ) -> Response[Any]:
        birthdate = fhir_date(birthdate, "birthdate")
        query = patients.PatientQuery(identifier=identifier, phone=phone, name=name, after=cursor, limit=count)
        found = await patients.search(conn, principal, query, default_region=settings.default_region)
        # birthdate narrows each page (a year matches a full date within it).
        matches = [p for p in found if birthdate is None or _born(p, birthdate)]
        params = {"identifier": identifier, "name": name, "phone": phone, "birthdate": birthdate, "_count": count}
        more = {"_cursor": str(found[-1].id)} if len(found) == count else None
        return fhir(
            bundle(settings.public_base_url, "searchset", [admin.patient(p) for p in matches],
                   self_path="/fhir/Patient", params=params, next_params=more)
        )  # fmt: skip

    @get("/Practitioner/{practitioner_id:uuid}", summary="Read a Practitioner")
    async def read_practitioner(
        self, practitioner_id: FromPath[uuid.UUID], conn: Conn, principal: Caller
    ) -> Response[Any]:
        return fhir(admin.practitioner(await practitioners.get(conn, practitioner_id)))

    @get("/Organization/{facility_id:uuid}", summary="Read an Organization (facility)")
    async def read_organization(self, facility_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Response[Any]:
        return fhir(admin.organization(await facilities.get(conn, facility_id)))

    @get("/Appointment/{appointment_id:uuid}", summary="Read an Appointment")
    async def read_appointment(
        self, appointment_id: FromPath[uuid.UUID], conn: Conn, principal: Caller
    ) -> Response[Any]:
        return fhir(admin.appointment(await appointments.get(conn, principal, appointment_id)))

    @get("/ServiceRequest/{referral_id:uuid}", summary="Read a referral")
    async def read_referral(self, referral_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Response[Any]:
        return fhir(admin.service_request(await referrals.get(conn, principal, referral_id)))

    @get("/Consent/{consent_id:uuid}", summary="Read a Consent (the patient's side, as the consent list)")
    async def read_consent(self, consent_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Response[Any]:
        return fhir(admin.consent(await consent.get(conn, principal, consent_id)))

    @get("/Consent", summary="A patient's consents")
    async def search_consents(
        self, conn: Conn, principal: Caller, settings: Config, patient: FromQuery[uuid.UUID]
    ) -> Response[Any]:
        found = await consent.list_for_patient(conn, principal, patient)
        return fhir(
            bundle(settings.public_base_url, "searchset", [admin.consent(c) for c in found],
                   self_path="/fhir/Consent", params={"patient": str(patient)})
        )  # fmt: skip

    @get("/Provenance", summary="Provenance of a patient's current record entries")
    async def search_provenance(
        self,
        conn: Conn,
        principal: Caller,
        settings: Config,
        patient: FromQuery[uuid.UUID],
        pool: DbPool,
        count: Count = 100,
        cursor: Cursor = None,
    ) -> Response[Any]:
        entries = await record.search(
            conn, principal, patient, pool=pool, kinds=_EVERYTHING_KINDS, include_errors=True, after_seq=cursor,
            limit=count,
        )  # fmt: skip
        more = {"_cursor": entries[-1].seq} if len(entries) == count else None
        return fhir(
            bundle(settings.public_base_url, "searchset", [provenance(e) for e in entries],
                   self_path="/fhir/Provenance",
                   params={"patient": str(patient), "_count": count}, next_params=more)
        )  # fmt: skip

    @get("/Provenance/{provenance_id:str}", summary="Provenance of one version of an entry ({id}-v{version})")
    async def read_provenance(
        self, provenance_id: FromPath[str], conn: Conn, principal: Caller, pool: DbPool
    ) -> Response[Any]:
        entry_id, _, version = provenance_id.rpartition("-v")
        try:
            wanted = (uuid.UUID(entry_id), int(version))
        except ValueError:
            raise NotFound("provenance_not_found", "no such Provenance") from None
        for v in await record.history(conn, principal, wanted[0], pool=pool):
            if v.version == wanted[1] and v.kind in BY_KIND:
                return fhir(provenance(v))
        raise NotFound("provenance_not_found", "no such Provenance")

    @get("/AuditEvent", summary="The audit trail of a facility (site), for its admins")
    async def search_audit(
        self,
        conn: Conn,
        principal: Caller,
        settings: Config,
        site: FromQuery[uuid.UUID],
        count: Count = 100,
        cursor: Cursor = None,
    ) -> Response[Any]:
        events = await export(conn, principal, site, after_id=cursor, since=None, until=None, limit=count)
        more = {"_cursor": events[-1].id} if len(events) == count else None
        return fhir(
            bundle(settings.public_base_url, "searchset", [audit_event(e) for e in events],
                   self_path="/fhir/AuditEvent",
                   params={"site": str(site), "_count": count}, next_params=more)
        )  # fmt: skip

    @get(
        "/{resource_type:str}/{entry_id:uuid}", summary="Read an Encounter, Observation, Condition or MedicationRequest"
    )
    async def read_entry(
        self, resource_type: ClinicalType, entry_id: FromPath[uuid.UUID], conn: Conn, principal: Caller, pool: DbPool
    ) -> Response[Any]:
        kind = _kind(resource_type)
        entry = await record.get(conn, principal, entry_id, pool=pool)
        if entry.kind != kind:
            raise NotFound("entry_not_found", f"no such {resource_type}")
        return fhir(to_fhir(entry))

    @get("/{resource_type:str}/{entry_id:uuid}/_history", summary="Every version of a clinical resource")
    async def history(
        self,
        resource_type: ClinicalType,
        entry_id: FromPath[uuid.UUID],
        conn: Conn,
        principal: Caller,
        settings: Config,
        pool: DbPool,
    ) -> Response[Any]:
        self_path = f"/fhir/{resource_type}/{entry_id}/_history"
        kind = _kind(resource_type)
        versions = await record.history(conn, principal, entry_id, pool=pool)
        if not versions or versions[0].kind != kind or resource_type not in HISTORY:
            raise NotFound("entry_not_found", f"no such {resource_type}")
        resources = [to_fhir(v) for v in reversed(versions)]  # newest first, as FHIR history is
        return fhir(bundle(settings.public_base_url, "history", resources, self_path=self_path))

    @get("/{resource_type:str}", summary="Search Encounters, Observations, Conditions or MedicationRequests")
    async def search_entries(
        self,
        resource_type: ClinicalType,
        conn: Conn,
        principal: Caller,
        settings: Config,
        pool: DbPool,
        # Optional to the framework only so that an unknown type is a 404 before it is checked.
        patient: Annotated[uuid.UUID | None, QueryParameter(description="required")] = None,
        date: FromQuery[list[str] | None] = None,
        status: FromQuery[str | None] = None,
        last_updated: LastUpdated = None,
        count: Count = 100,
        cursor: Cursor = None,
    ) -> Response[Any]:
        kind = _kind(resource_type)
        if patient is None:
            raise ValidationException("Missing required query parameter 'patient'")
        effective_from, effective_to = date_bounds(date, "date")
        since, _ = date_bounds(last_updated, "_lastUpdated")
        entries = await record.search(
            conn, principal, patient, pool=pool, kinds=[kind], include_errors=status is not None,
            effective_from=effective_from, effective_to=effective_to, recorded_since=since,
            after_seq=cursor, limit=count,
        )  # fmt: skip
        resources = [r for r in map(to_fhir, entries) if status is None or status in _statuses(r)]
        params: dict[str, Any] = {"patient": str(patient), "date": date, "status": status, "_lastUpdated": last_updated}
        more = {"_cursor": entries[-1].seq} if len(entries) == count else None
        return fhir(
            bundle(settings.public_base_url, "searchset", resources, self_path=f"/fhir/{resource_type}",
                   params={**params, "_count": count}, next_params=more)
        )  # fmt: skip


def _born(p: patients.Patient, birthdate: str) -> bool:
    if p.birth_date is not None:
        return p.birth_date.isoformat().startswith(birthdate)
    return p.birth_year is not None and birthdate.startswith(f"{p.birth_year:04d}")


def _statuses(resource: Resource) -> set[str]:
    """What `status` matches: the status, or for a Condition its clinical and verification status."""
    found = {resource["status"]} if "status" in resource else set()
    for field in ("clinicalStatus", "verificationStatus"):
        found |= {c["code"] for c in resource.get(field, {}).get("coding", [])}
    return found
