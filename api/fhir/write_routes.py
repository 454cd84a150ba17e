"""FHIR create (POST /fhir/{type}), conditional create (If-None-Exist) and update
(PUT /fhir/{type}/{id}, If-Match) for Patient and the record's clinical types (api.fhir.writes).

Answers follow FHIR: 201 Created (or 200 OK for an update, or a conditional create that found
its resource) with Location `{type}/{id}/_history/{vid}`, ETag W/"{vid}" and Last-Modified; the
body as `Prefer: return=` asks: the resource (representation, the default), nothing (minimal), or
an OperationOutcome. A POST retried with the same Idempotency-Key replays the first answer.
An update's reason (kept in its provenance) may come in an X-Provenance header, as FHIR defines.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, get_args

import msgspec
from litestar import Response, post, put
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, HeaderParameter, JSONBody
from litestar.status_codes import HTTP_200_OK

from api.deps import Caller, Config, Conn, DbPool
from api.fhir import transaction
from api.fhir.bundle import FHIR_JSON, fhir
from api.fhir.bundle_in import Bundle
from api.fhir.clinical import WRITTEN
from api.fhir.conditional import version_headers
from api.fhir.inbound import Refs
from api.fhir.path_types import ClinicalType
from api.fhir.preconditions import BadRequest, version_of
from api.fhir.resources_in import FhirResource
from api.fhir.writes import Written, conditional_create, create, type_of, update
from domain.errors import NotFound
from domain.fields import Reason

IfMatch = Annotated[str | None, HeaderParameter(name="if-match")]
IfNoneExist = Annotated[str | None, HeaderParameter(name="if-none-exist")]
Prefer = Annotated[str | None, HeaderParameter(name="prefer")]
XProvenance = Annotated[str | None, HeaderParameter(name="x-provenance")]
Return = Literal["minimal", "representation", "OperationOutcome"]


def preferred_return(prefer: str | None, default: Return = "representation") -> Return:
    """`Prefer: return=...` (RFC 7240), else `default`."""
    for part in (prefer or "").replace(";", ",").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "return" and value.strip().strip('"') in get_args(Return):
            return value.strip().strip('"')  # type: ignore[return-value]
    return default


def written_outcome(written: Written) -> dict[str, Any]:
    done = "created" if written.created else "updated or found"
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "information", "code": "informational",
                   "diagnostics": f"{written.location} {done}"}],
    }  # fmt: skip


def written_response(written: Written, prefer: str | None, base: str) -> Response[Any]:
    headers = {"Location": f"{base}/fhir/{written.location}", **version_headers(written.resource)}
    status = 201 if written.created else 200
    match preferred_return(prefer):
        case "minimal":
            return Response(content=b"", status_code=status, headers=headers, media_type=FHIR_JSON)
        case "OperationOutcome":
            response = fhir(written_outcome(written), status)
        case _:
            response = fhir(written.resource, status)
    response.headers.update(headers)
    return response


class _ProvenanceHeader(msgspec.Struct):
    class _Reason(msgspec.Struct):
        text: Reason | None = None

    resourceType: Literal["Provenance"]
    reason: Annotated[list[_Reason], msgspec.Meta(max_length=5)] = []


def reason_of(x_provenance: str | None) -> str | None:
    """The reason of an X-Provenance header (a Provenance resource as JSON), if it gives one."""
    if x_provenance is None:
        return None
    try:
        given = msgspec.json.decode(x_provenance, type=_ProvenanceHeader, strict=True)
    except msgspec.DecodeError:
        raise BadRequest("invalid_x_provenance", "X-Provenance is a Provenance resource as JSON",
                         field="X-Provenance") from None  # fmt: skip
    return next((r.text.strip() for r in given.reason if r.text and r.text.strip()), None)


def _writable(resource_type: str) -> None:
    if resource_type != "Patient" and resource_type not in WRITTEN:
        raise NotFound("unknown_resource_type", f"this server does not write {resource_type} resources")


async def _create(
    resource_type: str, data: FhirResource, conn: Conn, principal: Caller, settings: Config, pool: DbPool,
    if_none_exist: str | None, prefer: str | None,
) -> Response[Any]:  # fmt: skip
    _writable(resource_type)
    if type_of(data) != resource_type:
        raise BadRequest("resource_type_mismatch", f"POST a {resource_type} here", field="resourceType")
    refs, region = Refs(), settings.default_region
    if if_none_exist is not None:
        written = await conditional_create(
            conn, principal, data, if_none_exist, at=resource_type, field="If-None-Exist", refs=refs,
            default_region=region, pool=pool,
        )  # fmt: skip
    else:
        written = await create(conn, principal, data, at=resource_type, refs=refs, default_region=region)
    return written_response(written, prefer, settings.public_base_url)


async def _update(
    resource_type: str, ident: uuid.UUID, data: FhirResource, conn: Conn, principal: Caller, settings: Config,
    if_match: str | None, prefer: str | None, x_provenance: str | None,
) -> Response[Any]:  # fmt: skip
    _writable(resource_type)
    written = await update(
        conn, principal, resource_type, ident, data, at=resource_type, refs=Refs(),
        if_match=version_of(if_match), reason=reason_of(x_provenance), default_region=settings.default_region,
    )  # fmt: skip
    return written_response(written, prefer, settings.public_base_url)


# Plain handlers, not a Controller: these paths are also routed by FhirController (GET), and
# Litestar refuses one path from two controllers (each brings its own OPTIONS handler).
@post("/fhir", status_code=HTTP_200_OK, tags=["fhir"],
      summary="A batch or transaction Bundle (a transaction is all or nothing)")  # fmt: skip
async def post_bundle(
    data: JSONBody[Bundle], conn: Conn, principal: Caller, settings: Config, pool: DbPool, prefer: Prefer = None
) -> Response[Any]:
    answer = await transaction.apply(
        conn, principal, data, pool=pool, default_region=settings.default_region, base=settings.public_base_url,
        with_resources=preferred_return(prefer, "minimal") == "representation",
    )  # fmt: skip
    return fhir(answer)


@post("/fhir/Patient", tags=["fhir"],
      summary="Create a Patient (If-None-Exist: identifier=system|value for a conditional create)")  # fmt: skip
async def create_patient(
    data: JSONBody[FhirResource], conn: Conn, principal: Caller, settings: Config, pool: DbPool,
    if_none_exist: IfNoneExist = None, prefer: Prefer = None,
) -> Response[Any]:  # fmt: skip
    return await _create("Patient", data, conn, principal, settings, pool, if_none_exist, prefer)


def _create_route(resource_type: str) -> HTTPRouteHandler:
    async def create_entry(
        data: JSONBody[FhirResource], conn: Conn, principal: Caller, settings: Config, pool: DbPool,
        if_none_exist: IfNoneExist = None, prefer: Prefer = None,
    ) -> Response[Any]:  # fmt: skip
        return await _create(resource_type, data, conn, principal, settings, pool, if_none_exist, prefer)

    create_entry.__name__ = create_entry.__qualname__ = f"create_{resource_type}"
    summary = f"Create a {resource_type} (If-None-Exist: its search parameters, for a conditional create)"
    return post(f"/fhir/{resource_type}", tags=["fhir"], summary=summary)(create_entry)


# One route per clinical type: the search routes' fixed `GET /fhir/{type}` paths would otherwise
# shadow a `POST /fhir/{resource_type}` (Litestar does not fall back from a static segment).
CREATE_ENTRY = [_create_route(t) for t in sorted(WRITTEN)]


@post("/fhir/{resource_type:str}", tags=["fhir"], summary="Any other type: 404 unknown_resource_type",
      include_in_schema=False)  # fmt: skip
async def create_other(
    resource_type: FromPath[str], data: JSONBody[FhirResource], conn: Conn, principal: Caller, settings: Config,
    pool: DbPool, if_none_exist: IfNoneExist = None, prefer: Prefer = None,
) -> Response[Any]:  # fmt: skip
    return await _create(resource_type, data, conn, principal, settings, pool, if_none_exist, prefer)


@put("/fhir/Patient/{patient_id:uuid}", tags=["fhir"], summary="Update a Patient (If-Match: the version you read)")
async def update_patient(
    patient_id: FromPath[uuid.UUID], data: JSONBody[FhirResource], conn: Conn, principal: Caller, settings: Config,
    if_match: IfMatch = None, prefer: Prefer = None, x_provenance: XProvenance = None,
) -> Response[Any]:  # fmt: skip
    return await _update("Patient", patient_id, data, conn, principal, settings, if_match, prefer, x_provenance)


@put("/fhir/{resource_type:str}/{entry_id:uuid}", tags=["fhir"],
     summary="Correct a clinical resource: a new version (If-Match: the version you read)")  # fmt: skip
async def update_entry(
    resource_type: ClinicalType, entry_id: FromPath[uuid.UUID], data: JSONBody[FhirResource], conn: Conn,
    principal: Caller, settings: Config, if_match: IfMatch = None, prefer: Prefer = None,
    x_provenance: XProvenance = None,
) -> Response[Any]:  # fmt: skip
    return await _update(resource_type, entry_id, data, conn, principal, settings, if_match, prefer, x_provenance)


WRITE_HANDLERS = [post_bundle, create_patient, *CREATE_ENTRY, create_other, update_patient, update_entry]
