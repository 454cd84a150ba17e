"""`$validate` (POST /fhir/{type}/$validate) for the types this server writes: would this resource
be accepted? The answer is what a create (or, with mode=update, an update) would answer, found by
doing it in a savepoint that is then rolled back: the same decoding, FHIR mapping, domain rules,
access rules and database constraints, so the verdict cannot drift from the real write. Nothing
is kept, not even the audit event of the write that did not happen.

The body is the resource, or a Parameters resource with `resource` (and optionally `mode`). As
FHIR says, the answer is 200 with an OperationOutcome whether or not the resource is valid (an
error issue names the element, e.g. Observation.valueQuantity.value); a 4xx means the
validation itself could not be done (no JSON, an unknown type or mode).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, Response, post
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_200_OK

from api.body import decode_json_body
from api.deps import Caller, Config, Conn
from api.errors import InputRejected, http_status
from api.fhir.bundle import fhir
from api.fhir.errors import outcome
from api.fhir.inbound import Refs
from api.fhir.path_types import ClinicalType
from api.fhir.preconditions import BadRequest
from api.fhir.resources_in import FhirResource
from api.fhir.writes import WRITABLE, create, type_of, update
from domain import constraints
from domain.errors import DomainError, NotFound, RateLimited, Unavailable
from domain.principal import Principal
from domain.record import store
from infra.db import Connection

Mode = Annotated[str | None, QueryParameter(name="mode")]
_MODES = ("create", "update")


class _DryRun(Exception):
    """Leave the savepoint without keeping anything: the write was only a test."""


def _unwrap(document: Any, mode: str | None) -> tuple[Any, str]:
    """The resource and the mode, from a Parameters resource or the resource itself."""
    if isinstance(document, dict) and document.get("resourceType") == "Parameters":
        parameters = document.get("parameter")
        found = {p.get("name"): p for p in parameters if isinstance(p, dict)} if isinstance(parameters, list) else {}
        if "resource" not in found or not isinstance(found["resource"].get("resource"), dict):
            raise BadRequest("resource_required", "give the resource as the parameter named resource",
                             field="parameter")  # fmt: skip
        mode = found.get("mode", {}).get("valueCode", mode)
        document = found["resource"]["resource"]
    mode = mode or "create"
    if mode not in _MODES:
        raise BadRequest("unsupported_mode", f"mode is one of {', '.join(_MODES)}", field="mode")
    return document, mode


def _issue(error: DomainError) -> dict[str, Any]:
    return outcome(http_status(error), error.code, error.detail, [error.field] if error.field else None)


async def _dry_run(
    conn: Connection, principal: Principal, resource_type: str, resource: FhirResource, mode: str, region: str
) -> None:
    async with conn.transaction():  # a savepoint in the request's transaction
        if mode == "create":
            await create(conn, principal, resource, at=resource_type, refs=Refs(), default_region=region)
        else:
            try:
                key = uuid.UUID(resource.id or "")
            except ValueError:
                raise BadRequest("id_required", "an update names the resource's id",
                                 field=f"{resource_type}.id") from None  # fmt: skip
            head = await store.head(conn, key) if resource_type != "Patient" else None
            await update(
                conn, principal, resource_type, key, resource, at=resource_type, refs=Refs(),
                if_match=head.version if head else None, reason=None, default_region=region,
            )  # fmt: skip
        raise _DryRun


async def check(
    conn: Connection, principal: Principal, resource_type: str, document: Any, mode: str, region: str
) -> dict[str, Any]:
    """The OperationOutcome of one resource: an error issue, or one informational issue."""
    try:
        resource = decode_json_body(msgspec.json.encode(document), "application/fhir+json", FhirResource)
    except InputRejected as exc:
        errors = exc.errors or []
        fields = [f"{resource_type}.{e.field}" for e in errors if e.field != "body"] or None
        return outcome(400, exc.code, "; ".join(e.message for e in errors), fields)
    try:
        if type_of(resource) != resource_type:
            raise BadRequest("resource_type_mismatch", f"the resource is a {type_of(resource)}, not a {resource_type}",
                             field=f"{resource_type}.resourceType")  # fmt: skip
        await _dry_run(conn, principal, resource_type, resource, mode, region)
    except _DryRun:
        return {"resourceType": "OperationOutcome", "issue": [{
            "severity": "information", "code": "informational",
            "diagnostics": f"the {resource_type} is valid: this {mode} would be accepted"}]}  # fmt: skip
    except DomainError as exc:
        if isinstance(exc, Unavailable | RateLimited):
            raise
        return _issue(exc)
    except asyncpg.PostgresError as exc:
        mapped = constraints.domain_error(exc)
        if mapped is None or isinstance(mapped, Unavailable):
            raise  # a bug, or a lost race: the request runs again
        return _issue(mapped)
    raise AssertionError("a dry run always ends in _DryRun or an error")  # pragma: no cover


async def _validate(
    resource_type: str, request: Request[Any, Any, Any], conn: Connection, principal: Principal, region: str,
    mode: str | None,
) -> Response[Any]:  # fmt: skip
    if resource_type not in WRITABLE:
        raise NotFound("unknown_resource_type", f"this server does not take {resource_type} resources")
    document = decode_json_body(await request.body(), request.headers.get("content-type", ""), Any)
    resource, chosen = _unwrap(document, mode)
    return fhir(await check(conn, principal, resource_type, resource, chosen, region))


class FhirValidateController(Controller):
    path = "/fhir"
    tags = ["fhir"]

    @post("/Patient/$validate", status_code=HTTP_200_OK,
          summary="Would this Patient be accepted? (an OperationOutcome; nothing is written)")  # fmt: skip
    async def validate_patient(
        self, request: Request[Any, Any, Any], conn: Conn, principal: Caller, settings: Config, mode: Mode = None
    ) -> Response[Any]:
        return await _validate("Patient", request, conn, principal, settings.default_region, mode)

    @post("/{resource_type:str}/$validate", status_code=HTTP_200_OK,
          summary="Would this clinical resource be accepted? (an OperationOutcome; nothing is written)")  # fmt: skip
    async def validate_entry(
        self, resource_type: ClinicalType, request: Request[Any, Any, Any], conn: Conn, principal: Caller,
        settings: Config, mode: Mode = None,
    ) -> Response[Any]:  # fmt: skip
        return await _validate(resource_type, request, conn, principal, settings.default_region, mode)
