"""Versions, so that every versioned reference this server writes can be read back: vread
(`{type}/{id}/_history/{vid}`) of every readable type, and type-level `_history` of Patient and
the record's clinical types. Provenance.target and a write's Location name such versions.

The record keeps every version of an entry, and patients keep theirs (migration 0024); the other
types keep only their current version, which vread serves (an earlier vid is 404
version_not_found: it is not kept, so it is not made up). Each read goes through the same domain
function, rule and audit as a plain read; `read` below is also what GET entries of a Bundle use.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import FromPath, QueryParameter

from api.deps import Caller, Config, Conn, DbPool
from api.fhir import admin
from api.fhir.bundle import fhir
from api.fhir.clinical import BY_KIND, KIND_OF, Resource, to_fhir
from api.fhir.current import CURRENT_ONLY, READERS
from api.fhir.documents import KINDS as DOCUMENT_KINDS
from api.fhir.documents import document_reference
from api.fhir.pages import history_bundle, query
from api.fhir.path_types import ClinicalType
from api.fhir.trail import provenance
from api.input_rules import EARLIEST, LATEST
from domain import patient_history, patients
from domain.errors import InvalidInput, NotFound
from domain.principal import Principal
from domain.record import changes
from domain.record import service as record
from infra.db import Connection, Pool

Count = Annotated[int, QueryParameter(name="_count", ge=1, le=1000)]
Since = Annotated[str | None, QueryParameter(name="_since")]


def _version(raw: str, resource_type: str) -> int:
    """A vid this server wrote is a positive integer; anything else names no version."""
    if not (raw.isascii() and raw.isdigit() and 0 < int(raw) < 2**31):
        raise NotFound("version_not_found", f"no such version of this {resource_type}")
    return int(raw)


async def _provenance(conn: Connection, principal: Principal, pool: Pool, provenance_id: str) -> Resource:
    """Provenance `{entry id}-v{version}`: one per entry version, never changed (version 1)."""
    entry_id, _, version = provenance_id.rpartition("-v")
    try:
        wanted = (uuid.UUID(entry_id), int(version))
    except ValueError:
        raise NotFound("provenance_not_found", "no such Provenance") from None
    for v in await record.history(conn, principal, wanted[0], pool=pool):
        if v.version == wanted[1] and v.kind in BY_KIND:
            return provenance(v)
    raise NotFound("provenance_not_found", "no such Provenance")


async def read(
    conn: Connection, principal: Principal, pool: Pool, resource_type: str, ident: str, version: str | None = None
) -> Resource:
    """A resource (read) or one of its versions (vread), by the type's own read rule."""
    wanted = None if version is None else _version(version, resource_type)
    if resource_type == "Provenance":
        resource = await _provenance(conn, principal, pool, ident)
    else:
        try:
            key = uuid.UUID(ident)
        except ValueError:
            raise NotFound("not_found", f"no such {resource_type}") from None
        if resource_type == "Patient":
            if wanted is None:
                return admin.patient(await patients.get(conn, principal, key))
            return admin.patient(await patient_history.version(conn, principal, key, wanted))
        if resource_type in KIND_OF or resource_type == "DocumentReference":
            return await _entry(conn, principal, pool, resource_type, key, wanted)
        if resource_type not in READERS:
            raise NotFound("unknown_resource_type", f"this server has no {resource_type} resources")
        resource = await READERS[resource_type](conn, principal, key)
    if wanted is not None and resource["meta"]["versionId"] != str(wanted):
        raise NotFound("version_not_found", f"only the current version of a {resource_type} is kept")
    return resource


async def _entry(
    conn: Connection, principal: Principal, pool: Pool, resource_type: str, key: uuid.UUID, wanted: int | None
) -> Resource:
    kinds = DOCUMENT_KINDS if resource_type == "DocumentReference" else [KIND_OF[resource_type]]
    as_fhir = document_reference if resource_type == "DocumentReference" else to_fhir
    if wanted is None:
        entry = await record.get(conn, principal, key, pool=pool)
        if entry.kind not in kinds:
            raise NotFound("entry_not_found", f"no such {resource_type}")
        return as_fhir(entry)
    versions = await record.history(conn, principal, key, pool=pool)
    if versions[0].kind not in kinds:
        raise NotFound("entry_not_found", f"no such {resource_type}")
    for v in versions:
        if v.version == wanted:
            return as_fhir(v)
    raise NotFound("version_not_found", f"{resource_type}/{key} has no version {wanted}")


def since_instant(raw: str | None) -> datetime | None:
    """`_since`: an instant with its offset (FHIR instant)."""
    if raw is None:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidInput("invalid_date", "_since is an instant, e.g. 2026-11-01T00:00:00Z", field="_since")
    if not EARLIEST <= moment.date() <= LATEST:
        raise InvalidInput("out_of_range", f"_since is between {EARLIEST} and {LATEST}", field="_since")
    return moment


def _patient_cursor(raw: str | None) -> tuple[datetime, uuid.UUID, int] | None:
    """The keyset of the last version seen, as `next` links write it: {updated_at}~{id}~{version}."""
    if raw is None:
        return None
    try:
        updated, ident, version = raw.split("~")
        moment = datetime.fromisoformat(updated)
        if moment.tzinfo is None or not EARLIEST <= moment.date() <= LATEST:
            raise ValueError(raw)
        return moment, uuid.UUID(ident), int(version)
    except ValueError:
        raise InvalidInput("invalid_cursor", "use the next link as given", field="_cursor") from None


class FhirHistoryController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    @get("/Patient/{ident:uuid}/_history/{version_id:str}", summary="One version of a Patient (vread)")
    async def vread_patient(
        self, ident: FromPath[uuid.UUID], version_id: FromPath[str], conn: Conn, principal: Caller, pool: DbPool
    ) -> Response[Any]:
        return fhir(await read(conn, principal, pool, "Patient", str(ident), version_id))

    @get("/Patient/{ident:uuid}/_history", summary="Every version of a Patient, newest first")
    async def history_of_patient(
        self, ident: FromPath[uuid.UUID], conn: Conn, principal: Caller, settings: Config
    ) -> Response[Any]:
        versions = await patient_history.versions(conn, principal, ident)
        base = settings.public_base_url
        resources = [admin.patient(p) for p in versions]
        return fhir(history_bundle(base, resources, f"{base}/fhir/Patient/{ident}/_history", None))

    @get("/Provenance/{provenance_id:str}/_history/{version_id:str}", summary="A Provenance (vread; version 1)")
    async def vread_provenance(
        self, provenance_id: FromPath[str], version_id: FromPath[str], conn: Conn, principal: Caller, pool: DbPool
    ) -> Response[Any]:
        return fhir(await read(conn, principal, pool, "Provenance", provenance_id, version_id))

    # One path per type: the router does not fall back from /Practitioner/{id}/... to /{type}/...
    @get([f"/{name}/{{ident:uuid}}/_history/{{version_id:str}}" for name in CURRENT_ONLY],
         summary="The current version of a resource that keeps no past versions (vread)")  # fmt: skip
    async def vread_current(
        self, request: Request[Any, Any, Any], ident: FromPath[uuid.UUID], version_id: FromPath[str], conn: Conn,
        principal: Caller, pool: DbPool,
    ) -> Response[Any]:  # fmt: skip
        resource_type = request.url.path.removeprefix("/fhir/").split("/", 1)[0]
        return fhir(await read(conn, principal, pool, resource_type, str(ident), version_id))

    @get("/{resource_type:str}/{entry_id:uuid}/_history/{version_id:str}",
         summary="One version of an Encounter, Observation, Condition or MedicationRequest (vread)")  # fmt: skip
    async def vread_entry(
        self, resource_type: ClinicalType, entry_id: FromPath[uuid.UUID], version_id: FromPath[str], conn: Conn,
        principal: Caller, pool: DbPool,
    ) -> Response[Any]:  # fmt: skip
        if resource_type not in KIND_OF:
            raise NotFound("unknown_resource_type", f"this server has no versioned {resource_type} resources")
        return fhir(await read(conn, principal, pool, resource_type, str(entry_id), version_id))

    @get("/Patient/_history", summary="Versions of the patients you may see, newest first")
    async def patient_type_history(
        self, conn: Conn, principal: Caller, settings: Config, since: Since = None, count: Count = 50,
        cursor: Annotated[str | None, QueryParameter(name="_cursor")] = None,
    ) -> Response[Any]:  # fmt: skip
        found = await patient_history.changes(
            conn, principal, since=since_instant(since), before=_patient_cursor(cursor), limit=count
        )
        base, params = settings.public_base_url, {"_since": since, "_count": count}
        next_url = None
        if len(found) == count:
            last = found[-1]
            after = f"{last.updated_at.astimezone(UTC).isoformat()}~{last.id}~{last.version}"
            next_url = f"{base}/fhir/Patient/_history{query({**params, '_cursor': after})}"
        resources = [admin.patient(p) for p in found]
        return fhir(history_bundle(base, resources, f"{base}/fhir/Patient/_history{query(params)}", next_url))

    @get("/{resource_type:str}/_history",
         summary="Versions of the Encounters, Observations, Conditions or MedicationRequests you may read")  # fmt: skip
    async def entry_type_history(
        self, resource_type: ClinicalType, conn: Conn, principal: Caller, settings: Config, since: Since = None,
        count: Count = 100, cursor: Annotated[int | None, QueryParameter(name="_cursor")] = None,
    ) -> Response[Any]:  # fmt: skip
        if resource_type not in KIND_OF:
            raise NotFound("unknown_resource_type", f"no type-level history of {resource_type}")
        found = await changes.changes(
            conn, principal, kinds=[KIND_OF[resource_type]], since=since_instant(since), before_seq=cursor, limit=count
        )
        base, params = settings.public_base_url, {"_since": since, "_count": count}
        path = f"{base}/fhir/{resource_type}/_history"
        next_url = f"{path}{query({**params, '_cursor': found[-1].seq})}" if len(found) == count else None
        return fhir(history_bundle(base, [to_fhir(e) for e in found], f"{path}{query(params)}", next_url))
