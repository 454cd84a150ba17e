"""Patient/$summary: the International Patient Summary of one patient (api/fhir/ips.py), by id
(`Patient/{id}/$summary`) or by identifier (`Patient/$summary?identifier=system|value`, as the
IPS IG's operation defines it; `?patient=Patient/{id}` too).

The record's rule decides, as for every clinical read: the entries are read and audited in one
statement (a search of the Record and a read of the Patient, with the basis as purpose), a
refusal is a 403 audited as refused. Found by identifier, the patient is one the caller may find
(the Patient search, audited as such); an identifier naming two patients is a 422, never a guess.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, Parameter

from api.deps import Caller, Config, Conn, DbPool
from api.errors import InputRejected
from api.fhir import admin, ips
from api.fhir.bundle import fhir
from api.fhir.clinical import Resource
from api.fhir.params import PATIENT
from api.fhir.query import parse, strict
from api.fhir.runners import RUNNERS, Ctx
from domain import facilities, patients, practitioners
from domain.errors import InvalidInput, NotFound
from domain.record import service as record_service
from infra.db import Connection

# A patient's record read at once for a summary: far above any real record (entries of the
# summarised kinds, current versions only), so nothing is left out in practice.
_ENTRY_LIMIT = 20000
Identifier = Annotated[str | None, Parameter(description="system|value (or a value in any system) of the patient")]
PatientRef = Annotated[str | None, Parameter(description="Patient/{id} or {id}")]


async def _referenced(conn: Connection, resources: list[Resource]) -> list[Resource]:
    """The facilities and practitioners the document's resources reference, each once."""
    wanted = dict.fromkeys(ref for r in resources for ref in ips.references(r))
    loaded: list[Resource] = []
    for reference in wanted:
        kind, _, ident = reference.partition("/")
        if kind == "Organization":
            loaded.append(admin.organization(await facilities.get(conn, uuid.UUID(ident))))
        elif kind == "Practitioner":
            loaded.append(admin.practitioner(await practitioners.get(conn, uuid.UUID(ident))))
    return loaded


async def summary(conn: Connection, principal: Caller, pool: DbPool, base: str, patient_id: uuid.UUID) -> Resource:
    entries = await record_service.search(
        conn, principal, patient_id, pool=pool, kinds=ips.KINDS, limit=_ENTRY_LIMIT, patient_read=True
    )
    found = (await patients.load_many(conn, [patient_id]))[patient_id]
    home = await facilities.get(conn, found.home_facility_id)
    patient = admin.patient(found)
    chosen = ips.sections(entries, datetime.now(UTC))
    referenced = await _referenced(conn, [patient, *(r for _, rs in chosen for r in rs)])
    author = next(r for r in referenced if r["resourceType"] == "Organization" and r["id"] == str(home.id))
    return ips.document(base, patient, author, chosen, referenced, ZoneInfo(home.timezone))


def _patient_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value.removeprefix("Patient/"))
    except ValueError:
        raise InputRejected("invalid_search_value", "patient", "patient is Patient/{id} or {id}", "query") from None


class FhirSummaryController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    @get("/Patient/{patient_id:uuid}/$summary", summary="International Patient Summary (IPS document Bundle)")
    async def summary_by_id(
        self, patient_id: FromPath[uuid.UUID], conn: Conn, principal: Caller, settings: Config, pool: DbPool
    ) -> Response[Any]:
        return fhir(await summary(conn, principal, pool, settings.public_base_url, patient_id))

    @get("/Patient/$summary", summary="International Patient Summary of the patient an identifier names")
    async def summary_by_identifier(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, settings: Config, pool: DbPool,
        identifier: Identifier = None, patient: PatientRef = None,
    ) -> Response[Any]:  # fmt: skip
        names = [k for k, _ in parse_qsl(request.scope.get("query_string", b"").decode(), keep_blank_values=True)]
        unknown = sorted(set(names) - {"identifier", "patient"})
        if unknown and strict(request.headers.get("prefer")):
            raise InputRejected("unknown_search_parameter", unknown[0], "$summary takes identifier or patient", "query")
        if names.count("identifier") + names.count("patient") != 1:
            raise InputRejected(
                "patient_required", "identifier", "name the patient once: identifier=system|value or patient", "query"
            )
        if "patient" in names:
            patient_id = _patient_id(patient or "")
        else:
            base = settings.public_base_url
            q = parse(PATIENT, [("identifier", identifier or "")], strict_handling=True, region=settings.default_region,
                      base=base)  # fmt: skip
            if not q.criteria:  # an empty value is no criterion: never a summary of whoever comes first
                raise InputRejected("invalid_search_value", "identifier", "identifier is system|value", "query")
            q.count = 2
            found, _ = await RUNNERS["Patient"](Ctx(conn, principal, pool, base), q.spec(), q)
            if not found:
                raise NotFound("patient_not_found", "no patient you may see has that identifier")
            if len(found) > 1:
                raise InvalidInput(
                    "identifier_ambiguous", "that identifier names more than one patient: give its system",
                    field="identifier",
                )  # fmt: skip
            patient_id = uuid.UUID(found[0]["id"])
        return fhir(await summary(conn, principal, pool, settings.public_base_url, patient_id))
