"""The FHIR R4 interface: metadata, read and _history (search and Patient/$everything:
api/fhir/searches.py; create, update, batch and transaction: api/fhir/write_routes.py), with the same
authentication, access rules, consent and audit as the app API (it calls the same domain)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.params import FromPath, Parameter

from api.deps import Caller, Config, Conn, DbPool
from api.fhir import admin, capabilities
from api.fhir.bulk import capability as bulk_capability
from api.fhir.bundle import HISTORY, bundle, capability_statement, fhir
from api.fhir.clinical import BY_KIND, KIND_OF, to_fhir
from api.fhir.trail import provenance
from domain import facilities, patients, practitioners
from domain.booking import appointments
from domain.consent import service as consent
from domain.errors import NotFound
from domain.record import service as record
from domain.referral import service as referrals

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
        statement = capabilities.extend(capability_statement(settings.public_base_url))
        return fhir(bulk_capability.declare(statement, settings))

    @get("/Patient/{patient_id:uuid}", summary="Read a Patient")
    async def read_patient(self, patient_id: FromPath[uuid.UUID], conn: Conn, principal: Caller) -> Response[Any]:
        return fhir(admin.patient(await patients.get(conn, principal, patient_id)))

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
